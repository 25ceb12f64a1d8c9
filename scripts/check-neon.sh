#!/bin/sh
# check-neon.sh: cross-build sasp for ARM64 (the NEON kernels) and run its kernel and model tests under
# qemu-aarch64. Exits non-zero when the build or a test fails.
#
#   scripts/check-neon.sh            build in build-arm64/ and run tests/check_kernels, check_model and
#                                    check_threadpool
#   SASP_NEON_TESTS="tests/check_kernels" scripts/check-neon.sh     a chosen list of tests
#
# The tests run twice: on qemu's `-cpu max` (FEAT_DotProd and FEAT_BF16: the neon, neon-dotprod and
# neon-bf16 tables are offered and tested), then check_kernels alone on `-cpu cortex-a57` (ARMv8.0:
# dispatch must offer the plain neon table only). SASP_EXPECT_TABLES tells check_kernels which tables
# dispatch must offer on each.
#
# Needs gcc-aarch64-linux-gnu, qemu-user and the :arm64 -dev packages (scripts/install-deps.sh --test).
# The sources (git's tracked and untracked, not ignored, files) are copied into build-arm64/src, keeping
# their times so rebuilds are incremental, and built there with ./configure --host=aarch64-linux-gnu:
# a copy, because an out-of-tree build is refused by configure when the main tree is configured in place.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SASP_NEON_BUILD:-$top/build-arm64}
tests=${SASP_NEON_TESTS:-tests/check_kernels tests/check_model tests/check_threadpool}
triplet=aarch64-linux-gnu
sysroot=/usr/$triplet
jobs=${SASP_NEON_JOBS:-2}

die() { echo "check-neon.sh: $*" >&2; exit 1; }
for tool in $triplet-gcc qemu-aarch64 pkg-config autoreconf git; do
  command -v $tool >/dev/null 2>&1 || die "$tool not found: run scripts/install-deps.sh --test"
done
[ -d /usr/lib/$triplet/pkgconfig ] || die "no arm64 libraries in /usr/lib/$triplet: run scripts/install-deps.sh --test"

# 1. a copy of the sources (only files that changed are rewritten)
mkdir -p "$build/src"
stamp="$build/.files"
(cd "$top" && git ls-files -co --exclude-standard) | grep -v '^build-' > "$stamp.new"
(cd "$top" && tar -cf - -T "$stamp.new") | (cd "$build/src" && tar -xf -) # keeps times: make stays incremental
mv "$stamp.new" "$stamp"

# 2. configure once (again when configure.ac or Makefile.am change: make re-runs automake itself)
cd "$build/src"
# a build of its own: not a sub-make of whatever make called this script (make check-all)
unset MAKEFLAGS MFLAGS MAKELEVEL
export PKG_CONFIG=pkg-config
export PKG_CONFIG_LIBDIR=/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig
export PKG_CONFIG_PATH=
if [ ! -f config.status ] || [ configure.ac -nt config.status ]; then
  echo "== $(date -u +%T) check-neon.sh: configure --host=$triplet in $build/src"
  autoreconf -fi >/dev/null 2>&1 || die "autoreconf failed"
  ./configure -q --host=$triplet CC=$triplet-gcc >configure.out 2>&1 || { cat configure.out; die "configure failed"; }
fi
grep -q '^#define SASP_HAVE_NEON 1' config.h || die "configure did not select the NEON kernels"

# 3. build the test programs, and run the chosen tests under qemu through automake's test driver
echo "== $(date -u +%T) check-neon.sh: building ($triplet-gcc)"
make -j"$jobs" $tests >build.out 2>&1 || { tail -40 build.out; die "cross build failed"; }
# compiler warnings only (file:line:col: warning:), not make's own notes
if grep -qE '^[^ ]+:[0-9]+:[0-9]+: warning:' build.out; then
  grep -E '^[^ ]+:[0-9]+:[0-9]+: warning:' build.out; die "cross build has warnings"
fi
# The programs run on the arm64 multiarch libraries (/lib/ld-linux-aarch64.so.1 and /usr/lib/$triplet,
# from the :arm64 packages). Not with -L $sysroot: its loader (libc6-arm64-cross) with the multiarch
# libc.so.6 of a different build hangs in the first pthread_create.
if [ -e /lib/ld-linux-aarch64.so.1 ]; then unset QEMU_LD_PREFIX; else export QEMU_LD_PREFIX=$sysroot; fi
# the tables this build has (configure drops a feature table the compiler cannot build)
max_tables="scalar neon"
grep -q '^#define SASP_HAVE_NEON_DOTPROD 1' config.h && max_tables="$max_tables neon-dotprod"
grep -q '^#define SASP_HAVE_NEON_BF16 1' config.h && max_tables="$max_tables neon-bf16"

# run_tests CPU "EXPECTED TABLES" TESTS...: the tests under qemu-aarch64 -cpu CPU (QEMU_CPU)
run_tests() {
  cpu=$1 expect=$2
  shift 2
  echo "== $(date -u +%T) check-neon.sh: running under qemu-aarch64 -cpu $cpu: $*"
  status=0
  # man1_MANS= : no man pages (help2man would run the ARM64 programs on this machine); Check's timeouts
  # times 10: qemu runs the kernels tens of times slower than the CPU would. Each suite runs under
  # tests/bounded.sh: a hang (no CPU used for 2 minutes) or a suite past 3 x 15 minutes fails, named.
  QEMU_CPU=$cpu SASP_EXPECT_TABLES=$expect SASP_TEST_QUICK=${quick:-0} SASP_TEST_TIMEOUT_SCALE=${SASP_TEST_TIMEOUT_SCALE:-3} \
    CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-10} make check TESTS="$*" \
    LOG_COMPILER="$build/src/tests/bounded.sh qemu-aarch64" man1_MANS= >check.out 2>&1 || status=$?
  grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):|^# ' check.out || true
  if [ $status -ne 0 ]; then
    tail -15 check.out
    for t in "$@"; do [ -f "$t.log" ] && grep -E 'F:|E:|seed|tables' "$t.log" | head -20; done
    die "tests failed under qemu -cpu $cpu (logs in $build/src/tests/*.log)"
  fi
  # the tables must really have been tested
  if echo " $* " | grep -q ' tests/check_kernels '; then
    grep -q "tables: $expect;" tests/check_kernels.log 2>/dev/null ||
      die "check_kernels under -cpu $cpu did not run the tables $expect"
    grep -E 'tables:|rms error' tests/check_kernels.log
  fi
}
run_tests max "$max_tables" $tests
# ARMv8.0: dispatch, and the neon table without an instruction of a later version; the tables were
# tested in full under -cpu max, so a quarter of check_kernels' sweeps of shapes (SASP_TEST_QUICK)
if echo " $tests " | grep -q ' tests/check_kernels '; then
  quick=1 && run_tests cortex-a57 "scalar neon" tests/check_kernels
fi
echo "== $(date -u +%T) check-neon.sh: all passed"
