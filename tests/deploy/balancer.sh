#!/bin/sh
# balancer.sh: deploy/haproxy.cfg in front of three sasp-server replicas on loopback, one killed with
# SIGKILL under a mixed load and restarted (tests/deploy/balancer_test.py says what is checked).
# Exits 77 (skipped) without haproxy or python3 (scripts/install-deps.sh --test installs both).
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
command -v haproxy >/dev/null || { echo "balancer.sh: haproxy not installed (apt-get install haproxy); skipped"; exit 77; }
command -v python3 >/dev/null || { echo "balancer.sh: python3 not installed; skipped"; exit 77; }
[ -x "$build/sasp-server" ] || { echo "balancer.sh: $build/sasp-server not built; run make first" >&2; exit 1; }
haproxy -c -q -f "$src/deploy/haproxy.cfg" || { echo "FAIL: haproxy -c rejects deploy/haproxy.cfg"; exit 1; }
exec python3 "$src/tests/deploy/balancer_test.py" "$build/sasp-server" "$src/tests/fixtures/tiny-model" \
  "$src/deploy/haproxy.cfg" "$@"
