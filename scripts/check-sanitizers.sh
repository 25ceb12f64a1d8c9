#!/bin/sh
# check-sanitizers.sh: build sasp with AddressSanitizer and UndefinedBehaviorSanitizer
# (./configure --enable-sanitizers) and run the whole `make check` that way. Exits non-zero when the
# build or a test fails; a memory error, a leak or undefined behaviour fails the test that hit it.
#
#   scripts/check-sanitizers.sh        build in build-san/ (SASP_SAN_BUILD to choose another directory)
#
# The sources (git's tracked and untracked, not ignored, files) are copied into build-san/src, keeping
# their times so rebuilds are incremental, and configured there: a copy, because configure refuses an
# out-of-tree build when the main tree is configured in place (as scripts/check-neon.sh does).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SASP_SAN_BUILD:-$top/build-san}
jobs=${SASP_SAN_JOBS:-2}
die() { echo "check-sanitizers.sh: $*" >&2; exit 1; }

mkdir -p "$build/src"
(cd "$top" && git ls-files -co --exclude-standard) | grep -v '^build-' > "$build/.files"
(cd "$top" && tar -cf - -T "$build/.files") | (cd "$build/src" && tar -xf -)
cd "$build/src"
if [ ! -f config.status ] || [ configure.ac -nt config.status ]; then
  echo "== check-sanitizers.sh: configure --enable-sanitizers in $build/src"
  autoreconf -fi >/dev/null 2>&1 || die "autoreconf failed"
  ./configure -q --enable-sanitizers >configure.out 2>&1 || { cat configure.out; die "configure failed"; }
fi
grep -q 'fsanitize=address,undefined' Makefile || die "configure did not enable the sanitizers"
echo "== check-sanitizers.sh: building with ASan + UBSan"
make -j"$jobs" >build.out 2>&1 || { tail -40 build.out; die "build failed"; }
# ASan stops at the first error and reports leaks at exit (LeakSanitizer, on by default); UBSan stops
# at the first error too (-fno-sanitize-recover=undefined)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
echo "== check-sanitizers.sh: make check"
status=0
# suites run under tests/bounded.sh with 3 times the native time limit (the sanitizers are slower)
SASP_TEST_TIMEOUT_SCALE=${SASP_TEST_TIMEOUT_SCALE:-3} make -j"$jobs" check >check.out 2>&1 || status=$?
grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):|^# ' check.out || true
if [ $status -ne 0 ]; then
  for f in $(grep -lE '^(FAIL|ERROR)' $(find . -name '*.log' -path './tests/*') 2>/dev/null); do
    echo "---- $f"; grep -E 'ERROR|runtime error|FAIL|Traceback|Assertion' "$f" | head -20
  done
  die "tests failed with sanitizers (logs in $build/src/tests/)"
fi
"$top/scripts/no-skips.sh" . || die "suites skipped under the sanitizers"
echo "== check-sanitizers.sh: all passed"
