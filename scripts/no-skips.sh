#!/bin/sh
# no-skips.sh: fail when a `make check` run skipped a suite, naming each one and its reason.
#
#   scripts/no-skips.sh [DIR]     reads DIR/test-suite.log (default .)
#
# A suite skips (exit 77) when something it needs is missing: in CI that is a missing install step,
# not a pass. `make check-all` and scripts/check-sanitizers.sh run this after their `make check`.
set -eu
dir=${1:-.}
log="$dir/test-suite.log"
[ -f "$log" ] || { echo "no-skips.sh: $log not found (did make check run?)" >&2; exit 1; }
skipped=$(grep -E '^SKIP: ' "$log" | sed 's/^SKIP: //' || true)
[ -z "$skipped" ] && exit 0
for t in $skipped; do
  echo "no-skips.sh: SKIPPED: $t" >&2
  [ -f "$dir/$t.log" ] && tail -3 "$dir/$t.log" | sed 's/^/    /' >&2
done
echo "no-skips.sh: $(echo "$skipped" | wc -w) suite(s) skipped: install what they need (scripts/install-deps.sh --test)" >&2
exit 1
