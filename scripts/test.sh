#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with the Rust toolchain.
# Some tests run a real redis-server (the benchmark's quick mode, the Redis backend), and the
# console's browser tests drive Debian's headless chromium through chromedriver: these are
# installed from Debian's packages when missing. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}, which the tests run…" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! $sudo apt-get install -y -q "${missing[@]}" >/dev/null; then
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null
  fi
fi
exec cargo test --workspace --locked "$@"
