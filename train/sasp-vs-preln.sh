#!/bin/sh
# train/sasp-vs-preln.sh: SAS-P against Pre-LN at equal width, depth, data, tokens, schedule and
# precision, two seeds each (issue 23, section 3; docs/sasp-vs-preln.md). Resumable.
#
#   nohup train/sasp-vs-preln.sh > runs/cmp10m.log 2>&1 &
#
# Shape d_model 128, 4 layers, 4 heads, MLP 512, context 128, batch 16 (the earlier short comparison's),
# STEPS steps each (default 5,000: 10,240,000 tokens), AdamW at 1e-3 with 5% warm-up and cosine decay
# to 1e-4. For each seed the two blocks train at the same time, one thread each, on the same windows
# (the seed draws them), so both see the same machine load. Precision: bf16 autocast when
# train/step_bench.py measures it faster than float32 at this shape (the same for both blocks), unless
# PRECISION=bf16|f32. A run that was stopped continues from its checkpoint; a finished one is kept.
# At the end train/compare_runs.py plots the four loss curves (docs/sasp-vs-preln-10m.png) and prints
# the table.
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-runs/cmp10m}
steps=${STEPS:-5000}
seeds=${SEEDS:-1 2}
shape="--d-model 128 --n-layers 4 --n-heads 4 --d-ff 512 --ctx 128 --batch-size 16"
mkdir -p "$out"

if [ -z "${PRECISION:-}" ]; then
  rate() { /usr/bin/python3 train/step_bench.py --threads 1 --shape 128,4,4,128,16 --rounds 4 "$@" |
           awk -F'|' '/\| sasp \|/ {gsub(/ /, "", $7); print $7}'; }
  bf=$(rate); f32=$(rate --no-bf16)
  echo "sasp-vs-preln.sh: training step at d 128: bf16 autocast $bf tokens/s, float32 $f32 tokens/s"
  PRECISION=$(awk -v b="$bf" -v f="$f32" 'BEGIN { print (b + 0 > 1.05 * f) ? "bf16" : "f32" }')
fi
bf16=""; [ "$PRECISION" = bf16 ] && bf16=--bf16
echo "sasp-vs-preln.sh: precision $PRECISION, $steps steps each, seeds $seeds"

# One run to its end: started, or resumed from its checkpoint; nothing when it has finished.
run() { # arch seed
  dir="$out/$1-s$2"
  grep -q '"kind": "final"' "$dir/log.jsonl" 2>/dev/null && return 0
  if [ -f "$dir/ckpt.pt" ]; then
    /usr/bin/python3 train/train.py --out "$dir" --resume --threads 1
  else
    # shellcheck disable=SC2086
    /usr/bin/python3 train/train.py --out "$dir" --arch "$1" --seed "$2" $shape --steps "$steps" \
      --lr 1e-3 --warmup-frac 0.05 --min-lr-frac 0.1 --eval-every 250 --eval-windows 128 \
      --final-eval-ctx model --threads 1 $bf16
  fi
}

for seed in $seeds; do
  run sasp "$seed" > "$out/sasp-s$seed.log" 2>&1 &
  a=$!
  run preln "$seed" > "$out/preln-s$seed.log" 2>&1 &
  b=$!
  wait $a; ra=$?
  wait $b; rb=$?
  echo "sasp-vs-preln.sh: seed $seed: sasp exited $ra, preln $rb"
  [ $ra = 0 ] && [ $rb = 0 ] || exit 1
done
dirs=""
for seed in $seeds; do dirs="$dirs $out/sasp-s$seed $out/preln-s$seed"; done
# shellcheck disable=SC2086
/usr/bin/python3 train/compare_runs.py --png "${PNG:-docs/sasp-vs-preln-10m.png}" $dirs
