#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with the Rust toolchain.
# Some tests run a real redis-server (the benchmark's quick mode, the Redis backend): it is
# installed from Debian's packages when missing. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test.sh: installing redis-server, which the tests run…" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! $sudo apt-get install -y -q redis-server >/dev/null; then
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q redis-server >/dev/null
  fi
fi
exec cargo test --workspace --locked "$@"
