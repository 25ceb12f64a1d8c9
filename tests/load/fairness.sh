#!/bin/sh
# fairness.sh: `make check` entry of tests/load/fairness.py: one client with 32 concurrent long streams,
# another with sequential short requests: the short ones wait about as long as on an idle server
# (docs/reliability.md).
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "fairness.sh: python3 not found; skipping"; exit 77; }
log=$(mktemp /tmp/sasp-fairness-XXXXXX.log)
"$py" "$src/tests/load/fairness.py" --server "$build/sasp-server" -m "$src/tests/fixtures/tiny-model" \
  --server-log "$log" "$@" || { rc=$?; tail -20 "$log"; rm -f "$log"; exit $rc; }
rm -f "$log"
