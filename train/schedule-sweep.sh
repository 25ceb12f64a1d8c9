#!/bin/sh
# train/schedule-sweep.sh: which learning-rate schedule continued training should use, measured on a
# small shape before a working period spends hours on the default model.
#
#   OUT=runs/schedule nohup train/schedule-sweep.sh > runs/schedule.log 2>&1 &
#
# A period of the default model starts from weights whose last learning rate was small (the end of a
# decay) and adds about two thirds of the tokens already in them. The sweep copies that on a small
# shape (d_model 128, 4 layers, context 256, FIM 0.5, the corpus's epoch order):
#   1. pretrain: PRE steps from scratch, warm-up then cosine from 1e-3 to 1e-4, exported;
#   2. one continuation per candidate, each from the exported weights, on the same next chunks of
#      data (same cursor, same seed), CONT steps of warm-up-stable-decay (40 warm-up steps, sqrt decay
#      over the last 20% to 5% of the peak) at the peak learning rates in PEAKS.
# Every run is scored on the same fixed windows of both validation splits (train.py's evaluation at the
# last step: 64 windows of 256 tokens a split, a paired comparison); the table at the end compares them
# with the pretrained weights' own loss (the "no more training" line).
# Runs that already finished are not run again, so an interrupted sweep continues.
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-runs/schedule}
pre=${PRE:-600}
cont=${CONT:-400}
peaks=${PEAKS:-"1e-3 3e-4 1e-4"}
bf16=""; [ "${PRECISION:-bf16}" = bf16 ] && bf16=--bf16
shape="--d-model 128 --n-layers 4 --n-heads 4 --ctx 256 --fim-rate 0.5 --batch-size 16"
common="--data ${DATA:-data/corpus} --data-order epoch --data-seed 7 --threads 2 --eval-every 100000
        --eval-windows 64 --ckpt-minutes 5 $bf16"
mkdir -p "$out"

done_run() { grep -q '"kind": "final"' "$1/log.jsonl" 2>/dev/null; }

done_run "$out/pre" || /usr/bin/python3 train/train.py --out "$out/pre" $shape $common --seed 1 \
  --steps "$pre" --schedule cosine --lr 1e-3 --min-lr-frac 0.1 --warmup-frac 0.05 --data-cursor 0 \
  --export "$out/pre/model" || exit 1
cursor=$(grep '"kind": "final"' "$out/pre/log.jsonl" | /usr/bin/python3 -c \
  "import json, sys; print(json.loads(sys.stdin.read())['data_cursor'])") || exit 1

for peak in $peaks; do
  run="$out/peak-$peak"
  done_run "$run" && continue
  /usr/bin/python3 train/train.py --out "$run" $shape $common --seed 2 --init-from "$out/pre/model" \
    --steps "$cont" --schedule wsd --lr "$peak" --warmup-steps 40 --decay-frac 0.2 --decay sqrt \
    --min-lr-frac 0.05 --data-cursor "$cursor" --no-final-eval || exit 1
done

/usr/bin/python3 - "$out" $peaks <<'EOF'
import json, sys
out, peaks = sys.argv[1], sys.argv[2:]
def last(run):
    recs = [json.loads(line) for line in open(f"{out}/{run}/log.jsonl")]
    final = next(r for r in recs if r.get("kind") == "final")
    val = [r for r in recs if r.get("kind") == "val" and r["step"] == final["step"]][-1]
    return final, val
print("| run | tokens | val-files | val-packages | minutes |")
print("|---|---|---|---|---|")
def row(name, run):
    final, val = last(run)
    print(f"| {name} | {final['tokens']:,} | {val['val_loss']:.4f} | {val['val_packages']:.4f} | "
          f"{final['train_seconds'] / 60:.1f} |")
row("pretrained (no more training)", "pre")
for peak in peaks:
    row(f"+ continuation, peak {peak}", f"peak-{peak}")
EOF
