#!/bin/sh
# run.sh: `make fuzz`: build the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan + libFuzzer,
# apart from the project's gcc build) and run each for FUZZ_SECONDS seconds, FUZZ_JOBS at a time.
#
#   make fuzz FUZZ_SECONDS=600                         every target for ten minutes
#   FUZZ_TARGETS="api writers" tests/fuzz/run.sh        chosen targets (api tokenizer checkpoint writers)
#
# Seeds: tests/fuzz/corpus/<target>/ (read only), and a dictionary tests/fuzz/<target>.dict where there
# is one. What a run learns goes to
# $FUZZ_WORK/<target>/ (default tests/fuzz/fuzz_work, ignored by git). Crashes, leaks and timeouts land in
# $FUZZ_WORK/<target>-artifacts/; the run goes on past them (-fork mode) and this script exits 1 when
# there is any, listing them. Copy each into tests/fuzz/regressions/<target>/ once fixed:
# make check replays them (tests/fuzz/replay.c). Needs clang-14 and libclang-rt-14-dev
# (scripts/install-deps.sh --test).
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${SASP_BUILDDIR:-$src}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-api tokenizer checkpoint writers}
cc=${FUZZ_CC:-clang-14}
out=$build/tests/fuzz/fuzz_build
work=${FUZZ_WORK:-$build/tests/fuzz/fuzz_work}
command -v $cc >/dev/null 2>&1 || { echo "run.sh: $cc not found: run scripts/install-deps.sh --test" >&2; exit 1; }
mkdir -p "$out"

# 1. the engine sources the targets need, instrumented once, then one binary per target
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -std=c11
  -D_GNU_SOURCE -I$src/src -I$src/simd $(pkg-config --cflags jansson libpcre2-8)"
libs="$(pkg-config --libs jansson libpcre2-8) -lm -lpthread"
objs=""
for s in checkpoint tokenizer sampler util json_schema $(cd "$src/src" && ls api*.c | sed 's/\.c$//') \
    ../simd/kernels_scalar; do
  o=$out/$(basename $s).o
  if [ ! -f "$o" ] || [ "$src/src/$s.c" -nt "$o" ] || [ -n "$(find "$src/src" "$src/simd" -name '*.h' -newer "$o")" ]; then
    echo "== fuzz: $cc $s.c"
    $cc $flags -fsanitize=fuzzer-no-link -c "$src/src/$s.c" -o "$o"
  fi
  objs="$objs $o"
done
for t in $targets; do
  echo "== fuzz: building fuzz_$t"
  $cc $flags -fsanitize=fuzzer -DSASP_SRCDIR="\"$src\"" "$src/tests/fuzz/fuzz_$t.c" $objs $libs -o "$out/fuzz_$t"
done

# 2. run, FUZZ_JOBS at a time; each keeps going past a crash (-fork=1 -ignore_crashes=1)
run_one() {
  t=$1
  mkdir -p "$work/$t" "$work/$t-artifacts"
  echo "== fuzz: $t for ${seconds}s (log $work/$t.log)"
  dict=; [ -f "$src/tests/fuzz/$t.dict" ] && dict=-dict="$src/tests/fuzz/$t.dict"
  "$out/fuzz_$t" $dict -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -fork=1 -ignore_crashes=1 \
    -ignore_ooms=1 -ignore_timeouts=1 -print_final_stats=1 -artifact_prefix="$work/$t-artifacts/" \
    "$work/$t" "$src/tests/fuzz/corpus/$t" >"$work/$t.log" 2>&1 || true
  grep -E '^#[0-9]+.*(DONE|cov:)' "$work/$t.log" | tail -1 | sed "s/^/   $t: /" || true
}
set -- $targets
while [ $# -gt 0 ]; do
  i=0
  while [ $# -gt 0 ] && [ $i -lt "$jobs" ]; do
    run_one "$1" &
    shift
    i=$((i + 1))
  done
  wait
done

# 3. findings
found=0
for t in $targets; do
  for f in "$work/$t-artifacts"/*; do
    [ -f "$f" ] || continue
    echo "FINDING $t: $f"
    found=1
  done
done
[ $found = 0 ] && echo "== fuzz: no findings"
exit $found
