#!/bin/sh
# train/default-run.sh: the training run of the default model (models/sasp-small), resumable.
#
#   nohup train/default-run.sh > runs/default.log 2>&1 &
#
# Builds nothing: data/corpus comes first (train/corpus.py, see models/README.md). The run measures
# its step time and plans its steps to end at the time budget (BUDGET minutes of running time, 130
# by default); a killed or stopped run (SIGTERM: it saves and exits 3) continues from its last
# checkpoint when this script is started again, until the log has its final record. Then
# runs/default/model is the exported model directory.
cd "$(dirname "$0")/.." || exit 1
out=${OUT:-runs/default}
data=${DATA:-data/corpus}
mkdir -p "$out"
while ! grep -q '"kind": "final"' "$out/log.jsonl" 2>/dev/null; do
  if [ -f "$out/ckpt.pt" ]; then
    /usr/bin/python3 train/train.py --out "$out" --resume --threads 2 --eval-every 250 --ckpt-minutes 5 \
      --export "$out/model"
  else
    /usr/bin/python3 train/train.py --out "$out" --data "$data" --d-model 256 --n-layers 6 --n-heads 4 \
      --ctx 256 --long-ctx 1024 --long-frac 0.1 --fim-rate 0.5 --time-budget "${BUDGET:-130}" \
      --batch-size 16 --eval-every 250 --eval-windows 48 --threads 2 --ckpt-minutes 5 --export "$out/model"
  fi
  rc=$?
  { [ $rc = 0 ] || [ $rc = 3 ]; } && break
  echo "default-run.sh: train.py exited $rc; resuming in 30 s" >&2
  sleep 30
done
