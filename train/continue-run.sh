#!/bin/sh
# train/continue-run.sh: one working period of the default model's continued training, resumable.
#
#   nohup train/continue-run.sh > runs/continue.log 2>&1 &
#
# 1. Measures this machine's faster training precision (bf16 autocast against float32,
#    train/step_bench.py at the model's shape) unless PRECISION=bf16|f32 is given.
# 2. Trains further on the next chunks of data/corpus (the cursor of train/default-state.json, so no
#    chunk is seen twice in an epoch): warm-up-stable-decay at peak LR, the decay over the last 20% of
#    the steps, the last 10% at the model's context of 1,024, for BUDGET minutes of running time (150
#    by default; kill -STOP pauses do not count). It starts from train/trunk, the weights of the last
#    period before its decay (promote.py keeps it), at that period's stable LR after 100 warm-up steps; or,
#    where there is no trunk yet, from models/sasp-small's decayed weights, re-warmed to LR (1e-3:
#    train/schedule-sweep.sh measured the re-warm; models/README.md has the table).
# 3. Exports runs/continue/model, and runs/continue/trunk at the first step of the decay.
#    train/promote.py --apply then decides whether the model becomes the default, and keeps the trunk
#    in train/trunk either way.
# A killed run (SIGTERM: it saves and exits 3) continues from runs/continue/ckpt.pt when started again
# (with BUDGET given again, that is the period's new length in minutes, the time already run included).
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-runs/continue}
mkdir -p "$out"
state=train/default-state.json
cursor=$(/usr/bin/python3 -c "import json; print(json.load(open('$state'))['data']['cursor'])") || exit 1
seed=$(/usr/bin/python3 -c "import json; print(json.load(open('$state'))['data']['seed'])") || exit 1

if [ -z "${PRECISION:-}" ] && [ ! -f "$out/ckpt.pt" ]; then
  rate() { /usr/bin/python3 train/step_bench.py --threads 2 --shape 256,6,4,256,16 --arch sasp --rounds 4 "$@" |
           awk -F'|' '/\| sasp \|/ {gsub(/ /, "", $7); print $7}'; }
  bf=$(rate); f32=$(rate --no-bf16)
  echo "continue-run.sh: training step at shape A: bf16 autocast $bf tokens/s, float32 $f32 tokens/s"
  PRECISION=$(awk -v b="$bf" -v f="$f32" 'BEGIN { print (b + 0 > 1.05 * f) ? "bf16" : "f32" }')
fi
echo "continue-run.sh: precision ${PRECISION:-(from the checkpoint)}, data cursor $cursor"
bf16=""; [ "${PRECISION:-}" = bf16 ] && bf16=--bf16
if [ -f train/trunk/model.safetensors ]; then
  from=train/trunk
  lr=${LR:-$(/usr/bin/python3 -c "import json; print(json.load(open('$state'))['trunk']['lr'])")} || exit 1
else from=models/sasp-small; lr=${LR:-1e-3}; fi
[ -f "$out/ckpt.pt" ] || echo "continue-run.sh: from $from, peak learning rate $lr"

while ! grep -q '"kind": "final"' "$out/log.jsonl" 2>/dev/null; do
  if [ -f "$out/ckpt.pt" ]; then
    /usr/bin/python3 train/train.py --out "$out" --resume --threads 2 --eval-every 250 --ckpt-minutes 5 \
      --export "$out/model" ${BUDGET:+--time-budget "$BUDGET"}
  else
    /usr/bin/python3 train/train.py --out "$out" --data "${DATA:-data/corpus}" --init-from "$from" --trunk "$out/trunk" \
      --d-model 256 --n-layers 6 --n-heads 4 --ctx 256 --long-ctx 1024 --long-frac 0.1 --fim-rate 0.5 \
      --schedule wsd --lr "$lr" --warmup-steps 100 --decay-frac 0.2 --decay sqrt --min-lr-frac 0.05 \
      --data-order epoch --data-seed "$seed" --data-cursor "$cursor" --seed "$(date +%s)" $bf16 \
      --time-budget "${BUDGET:-150}" --batch-size 16 --eval-every 250 --eval-windows 48 --threads 2 \
      --ckpt-minutes 5 --final-eval-ctx model --export "$out/model"
  fi
  rc=$?
  { [ $rc = 0 ] || [ $rc = 3 ]; } && break
  echo "continue-run.sh: train.py exited $rc; resuming in 30 s" >&2
  sleep 30
done
