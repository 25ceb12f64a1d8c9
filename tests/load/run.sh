#!/bin/sh
# run.sh: `make check`'s short run of the load generator (tests/load/loadgen.py): 2,000 requests from
# 32 connections against sasp-server with tests/fixtures/tiny-model; fails on any 5xx, unexpected
# status, truncated or malformed answer. The RSS criterion needs the full run (docs/reliability.md):
#   python3 tests/load/loadgen.py --server ./sasp-server -n 10000 -c 64
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "run.sh: python3 not found; skipping the load test"; exit 77; }
log=$(mktemp /tmp/sasp-loadgen-XXXXXX.log)
"$py" "$src/tests/load/loadgen.py" --server "$build/sasp-server" -m "$src/tests/fixtures/tiny-model" \
  -n 2000 -c 32 --warmup 200 --rss-limit 0 --server-log "$log" || { tail -20 "$log"; rm -f "$log"; exit 1; }
rm -f "$log"
