#!/bin/sh
# hostile.sh: `make check` entry of tests/load/hostile.py: 5,000 idle connections and 1,000 that trickle
# their headers, from 127.0.0.2 and up, while a normal client's 200 requests must all succeed with a p99
# within 2x of the same run without them; the daemon's threads must not grow (docs/reliability.md).
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "hostile.sh: python3 not found; skipping"; exit 77; }
log=$(mktemp /tmp/sasp-hostile-XXXXXX.log)
"$py" "$src/tests/load/hostile.py" --server "$build/sasp-server" -m "$src/tests/fixtures/tiny-model" \
  --server-log "$log" "$@" || { rc=$?; tail -20 "$log"; rm -f "$log"; exit $rc; }
rm -f "$log"
