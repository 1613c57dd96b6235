#!/usr/bin/env bash
# Debian packages the tests need: chromium (console tests in a real browser), prometheus (promtool) and
# redis-server (the production-parity test's Celery broker, started by the test on a free port);
# with --bench, wrk too (the load generator of bench/pip.py).
# Installed where we are root with apt; elsewhere the tests that need them skip with the reason
# (never under CI=true, where they fail instead).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ "${1:-}" = "--bench" ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "note: ${missing[*]} not installed and not root with apt; the tests that need them will skip" >&2
fi
