#!/bin/sh
# check-sanitizers.sh: build sasp with the sanitizers and run its tests that way.
#
#   scripts/check-sanitizers.sh           AddressSanitizer + UndefinedBehaviorSanitizer
#                                         (./configure --enable-sanitizers), the whole `make check`:
#                                         a memory error, a leak or undefined behaviour fails the test
#                                         that hit it. In CI (.ci/run). Builds in build-san/
#                                         (SASP_SAN_BUILD to choose another directory).
#   scripts/check-sanitizers.sh --thread  ThreadSanitizer (--enable-sanitizers=thread) over what has
#                                         threads meeting: the thread pool, the scheduler and the model
#                                         (Check suites), the server over HTTP (tests/server/), its
#                                         fault and guard tests and the two load tests; fails on a test
#                                         that fails or on any TSan report (a data race, a lock-order
#                                         inversion, a leaked thread). By hand: about 20 minutes on two
#                                         cores. Builds in build-tsan/ (SASP_TSAN_BUILD).
#
# The sources (git's tracked and untracked, not ignored, files) are copied into BUILD/src, keeping
# their times so rebuilds are incremental, and configured there: a copy, because configure refuses an
# out-of-tree build when the main tree is configured in place (as scripts/check-neon.sh does).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = --thread ]; then
  mode=thread flag=thread build=${SASP_TSAN_BUILD:-$top/build-tsan} name="ThreadSanitizer"
else
  mode=address flag=yes build=${SASP_SAN_BUILD:-$top/build-san} name="ASan + UBSan"
fi
jobs=${SASP_SAN_JOBS:-2}
die() { echo "check-sanitizers.sh: $*" >&2; exit 1; }

mkdir -p "$build/src"
(cd "$top" && git ls-files -co --exclude-standard) | grep -v '^build-' > "$build/.files"
(cd "$top" && tar -cf - -T "$build/.files") | (cd "$build/src" && tar -xf -)
cd "$build/src"
if [ ! -f config.status ] || [ configure.ac -nt config.status ]; then
  echo "== $(date -u +%T) check-sanitizers.sh: configure --enable-sanitizers=$flag in $build/src"
  autoreconf -fi >/dev/null 2>&1 || die "autoreconf failed"
  ./configure -q --enable-sanitizers=$flag >configure.out 2>&1 || { cat configure.out; die "configure failed"; }
fi

# ThreadSanitizer: the threaded unit suites and the server's tests, each run once; any report fails
thread_checks() {
  units="tests/check_threadpool tests/check_scheduler tests/check_model"
  make -j"$jobs" sasp-server $units >build.out 2>&1 || { tail -40 build.out; die "build failed"; }
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
}

# ASan + UBSan: the whole make check
address_checks() {
  make -j"$jobs" >build.out 2>&1 || { tail -40 build.out; die "build failed"; }
  # ASan stops at the first error and reports leaks at exit (LeakSanitizer, on by default); UBSan stops
  # at the first error too (-fno-sanitize-recover=undefined)
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
  echo "== $(date -u +%T) check-sanitizers.sh: make check"
  status=0
  # suites run under tests/bounded.sh with 3 times the native time limit (the sanitizers are slower);
  # check_kernels runs a quarter of its sweeps of shapes (SASP_TEST_QUICK, every size still met: the
  # native make check runs them all), which would otherwise be the last five minutes of this pass
  SASP_TEST_QUICK=${SASP_TEST_QUICK:-1} SASP_TEST_TIMEOUT_SCALE=${SASP_TEST_TIMEOUT_SCALE:-3} \
    make -j"$jobs" check >check.out 2>&1 || status=$?
  grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):|^# ' check.out || true
  if [ $status -ne 0 ]; then
    for f in $(grep -lE '^(FAIL|ERROR)' $(find . -name '*.log' -path './tests/*') 2>/dev/null); do
      echo "---- $f"; grep -E 'ERROR|runtime error|FAIL|Traceback|Assertion' "$f" | head -20
    done
    die "tests failed with sanitizers (logs in $build/src/tests/)"
  fi
  "$top/scripts/no-skips.sh" . || die "suites skipped under the sanitizers"
}

echo "== $(date -u +%T) check-sanitizers.sh: building with $name"
if [ $mode = thread ]; then
  grep -q 'fsanitize=thread' Makefile || die "configure did not enable ThreadSanitizer"
  thread_checks
else
  grep -q 'fsanitize=address,undefined' Makefile || die "configure did not enable the sanitizers"
  address_checks
fi
echo "== $(date -u +%T) check-sanitizers.sh: all passed ($name)"
