#!/bin/sh
# check-tsan.sh: build sasp with ThreadSanitizer (./configure --enable-sanitizers=thread) and run what
# has threads meeting: the thread pool, the scheduler and the model (Check suites), the server over
# HTTP (tests/server/: every endpoint, models loaded and unloaded at run time, slots, the dialects, the
# editor), its fault and guard tests and the two load tests. Fails when a test fails or when TSan
# reports anything (a data race, a lock-order inversion, a thread leak). By hand, not in CI: about
# 20 minutes on two cores (TSan runs code 5-15 times slower).
#
#   scripts/check-tsan.sh        build in build-tsan/ (SASP_TSAN_BUILD to choose another directory)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SASP_TSAN_BUILD:-$top/build-tsan}
die() { echo "check-tsan.sh: $*" >&2; exit 1; }

mkdir -p "$build/src"
(cd "$top" && git ls-files -co --exclude-standard) | grep -v '^build-' > "$build/.files"
(cd "$top" && tar -cf - -T "$build/.files") | (cd "$build/src" && tar -xf -)
cd "$build/src"
if [ ! -f config.status ] || [ configure.ac -nt config.status ]; then
  echo "== check-tsan.sh: configure --enable-sanitizers=thread in $build/src"
  autoreconf -fi >/dev/null 2>&1 || die "autoreconf failed"
  ./configure -q --enable-sanitizers=thread >configure.out 2>&1 || { cat configure.out; die "configure failed"; }
fi
grep -q 'fsanitize=thread' Makefile || die "configure did not enable ThreadSanitizer"
units="tests/check_threadpool tests/check_scheduler tests/check_model"
echo "== check-tsan.sh: building"
make -j2 sasp-server $units >build.out 2>&1 || { tail -40 build.out; die "build failed"; }

reports=$build/reports
rm -rf "$reports" && mkdir -p "$reports"
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 log_path=$reports/tsan"
export SASP_SRCDIR=$build/src SASP_BUILDDIR=$build/src CK_DEFAULT_TIMEOUT=1200
failed=""
run() { # name, command...
  name=$1; shift
  if "$@" >"$reports/$name.out" 2>&1; then echo "ok   $name"; else echo "FAIL $name"; failed="$failed $name"; fi
}
for t in $units; do run "$(basename "$t")" timeout 1500 "./$t"; done
for t in test_server test_models test_edge test_dialects test_editor; do
  run "$t" timeout 1200 python3 "tests/server/$t.py"
done
run test_fault timeout 900 python3 tests/fault/test_fault.py
run test_guard timeout 900 python3 tests/fault/test_guard.py
run hostile timeout 900 tests/load/hostile.sh
run fairness timeout 900 tests/load/fairness.sh
found=$(ls "$reports"/tsan.* 2>/dev/null | wc -l)
if [ "$found" -gt 0 ]; then
  for f in "$reports"/tsan.*; do echo "---- $f"; grep -E 'WARNING|#[0-3] ' "$f" | head -12; done
  die "ThreadSanitizer wrote $found report(s) ($reports)"
fi
[ -z "$failed" ] || die "failed:$failed (output in $reports)"
echo "== check-tsan.sh: all passed, no report"
