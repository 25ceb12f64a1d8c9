#!/bin/sh
# train/filter-compare.sh: does filtering the corpus for quality help, at equal tokens? (issue 23,
# section 2; the result is in models/README.md, "Filtering the corpus for quality").
#
#   nohup train/filter-compare.sh > runs/filter-compare.log 2>&1 &
#
# train/quality_filter.py writes data/corpus-filtered (the training split without tests, data tables and
# undocumented files); then the same small model (d_model 128, 4 layers, context 128, batch 16, STEPS
# steps: 1,500 by default, 3,072,000 tokens) trains on each corpus, side by side, one thread each, the same
# seed and schedule; last, sasp-cli --perplexity scores both on the whole held-out splits and on the
# held-out files that pass the filter (the code the filter prefers).
cd "$(dirname "$0")/.." || exit 1
steps=${STEPS:-1500}
[ -f data/corpus-filtered/train.bin ] || /usr/bin/python3 train/quality_filter.py || exit 1
common="--d-model 128 --n-layers 4 --n-heads 4 --d-ff 512 --ctx 128 --batch-size 16 --steps $steps --lr 1e-3
  --warmup-frac 0.05 --min-lr-frac 0.1 --eval-every 250 --eval-windows 128 --final-eval-ctx model --threads 1
  --bf16 --seed 7"
for run in all kept; do
  data=data/corpus; [ $run = kept ] && data=data/corpus-filtered
  # shellcheck disable=SC2086
  [ -f runs/filter-$run/model/config.json ] ||
    /usr/bin/python3 train/train.py --out runs/filter-$run --data $data $common --export runs/filter-$run/model \
      > runs/filter-$run.log 2>&1 &
done
wait
nll() { # run held-out-text: mean NLL in nats/token
  ./sasp-cli -m "runs/filter-$1/model" -t 2 --perplexity "data/corpus-filtered/$2.txt" 2>/dev/null |
    sed -n "s/^mean NLL: *\([0-9.]*\).*/\1/p"
}
echo "| held-out text | trained on all files | trained on the filtered files |"
echo "|---|---:|---:|"
for f in val-files val-packages val-files-kept val-packages-kept; do
  echo "| $f | $(nll all $f) | $(nll kept $f) |"
done
