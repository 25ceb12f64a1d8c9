#!/bin/sh
# valgrind-server.sh: run the HTTP tests of sasp-server (tests/server/test_server.py, and the fault
# tests with --fault) with every daemon under valgrind memcheck, and report errors and leaks.
#
#   scripts/valgrind-server.sh [--fault] [test-name-substring ...]     from a configured, built tree
#
# Each daemon runs as `valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible
# --error-exitcode=99 sasp-server ...`, so an error or a leak makes it exit 99 at SIGTERM, which the
# tests report as a failure; the logs (one per daemon) are kept in $SASP_VG_DIR (default a temp dir)
# and summed up at the end. Slow: about 20 times the plain run.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SASP_BUILDDIR:-$top}
command -v valgrind >/dev/null 2>&1 || { echo "valgrind-server.sh: valgrind not found: run scripts/install-deps.sh --test" >&2; exit 1; }
[ -x "$build/sasp-server" ] || { echo "valgrind-server.sh: $build/sasp-server not built" >&2; exit 1; }
test=tests/server/test_server.py
if [ "${1:-}" = --fault ]; then test=tests/fault/test_fault.py; shift; fi
dir=${SASP_VG_DIR:-$(mktemp -d /tmp/sasp-valgrind-XXXXXX)}
mkdir -p "$dir"
cat > "$dir/sasp-server" <<EOS
#!/bin/sh
exec valgrind --tool=memcheck --leak-check=full --show-leak-kinds=all \\
  --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \\
  --log-file="$dir/vg.%p.log" "$build/sasp-server" "\$@"
EOS
chmod +x "$dir/sasp-server"
status=0
SASP_SERVER="$dir/sasp-server" SASP_SRCDIR=$top SASP_BUILDDIR=$build python3 "$top/$test" "$@" || status=$?
echo "== valgrind-server.sh: one log per daemon in $dir"
for f in "$dir"/vg.*.log; do
  [ -f "$f" ] || continue
  printf '%s: %s; %s\n' "$(grep -m1 'Command:' "$f" | sed 's/.*Command: //' | cut -c1-100)" \
    "$(grep 'ERROR SUMMARY' "$f" | sed 's/.*ERROR SUMMARY: //; s/ (suppressed.*//')" \
    "$(grep -E 'All heap blocks were freed|definitely lost' "$f" | sed 's/^==[0-9]*== *//' | head -1)"
  grep -q 'ERROR SUMMARY: 0 errors' "$f" || status=1
done
exit $status
