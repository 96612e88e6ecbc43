#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with the Rust toolchain.
# Some tests run a real redis-server (the benchmark's quick mode, the Redis backend), the
# console's browser tests drive Debian's headless chromium through chromedriver, groff
# formats the manual pages, promtool checks the Prometheus rules and systemd-analyze the
# systemd unit, named-checkzone, unbound and dig check the exported policy zone: these are
# installed from Debian's packages when missing. Extra arguments go
# to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v named-checkzone >/dev/null 2>&1 || missing+=(bind9-utils)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
[ -x /usr/sbin/unbound ] || missing+=(unbound)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}, which the tests run…" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! $sudo apt-get install -y -q "${missing[@]}" >/dev/null; then
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null
  fi
fi
# The Python tools some tests run (the OpenAPI validator, a client generator), in a virtual
# environment of their own; the tests find it through REPNET_TEST_VENV.
venv=target/test-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s scripts/test-requirements.txt "$venv/requirements.txt"; then
  echo "test.sh: preparing $venv (scripts/test-requirements.txt)…" >&2
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" &&
         "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/test-requirements.txt &&
         cp scripts/test-requirements.txt "$venv/requirements.txt"; }; then
    echo "test.sh: cannot prepare $venv; the tests that run its tools say they skip" >&2
  fi
fi
export REPNET_TEST_VENV="$PWD/$venv"
exec cargo test --workspace --locked "$@"
