#!/bin/sh
# hostile_lb.sh: tests/load/hostile.py's attack (thousands of idle and trickling connections, then the
# per-address limit) through HAProxy with deploy/haproxy.cfg in front of a replica started with
# --trusted-proxy, and X-Forwarded-For carrying each client to the replica's per-client limit
# (issue 26, point 6). Exits 77 (skipped) without haproxy; check-all allows no skip.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
command -v haproxy >/dev/null || { echo "hostile_lb.sh: haproxy not installed (apt-get install haproxy); skipped"; exit 77; }
[ -x "$build/sasp-server" ] || { echo "hostile_lb.sh: $build/sasp-server not built; run make first" >&2; exit 1; }
log=$(mktemp /tmp/sasp-hostile-lb-XXXXXX.log)
python3 "$src/tests/load/hostile.py" --server "$build/sasp-server" -m "$src/tests/fixtures/tiny-model" \
  --via-haproxy "$src/deploy/haproxy.cfg" --server-log "$log" "$@" ||
  { rc=$?; tail -n 20 "$log" "$log.haproxy"; rm -f "$log" "$log.haproxy"; exit $rc; }
rm -f "$log" "$log.haproxy"
