#!/bin/sh
# bench-vs-torch.sh: sasp and PyTorch (eager, a lean KV-cache loop) on the same checkpoint, side by side.
#
#   scripts/bench-vs-torch.sh                      a random SAS-P model of shape A (peers.md), written
#                                                  by train/checkpoint_io.py, read by both engines
#   scripts/bench-vs-torch.sh --shape B            shape B
#   scripts/bench-vs-torch.sh -m MODEL_DIR         a given checkpoint
#   options: -t THREADS (default: every core), --reps N (default 5; each figure is a median);
#   ROUNDS=N alternating rounds of the two engines (default 3)
#
# Needs a built sasp-bench (in the top build directory, or SASP_BENCH=path) and /usr/bin/python3 with
# python3-torch (TORCH_PYTHON=path overrides). Prints prefill (512 and 256 tokens) and decode at
# batch 1 tokens/s for both, and the ratio sasp / PyTorch.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bench=${SASP_BENCH:-$top/sasp-bench}
py=${TORCH_PYTHON:-/usr/bin/python3}
model=""; shape=A; threads=$(nproc); reps=5
while [ $# -gt 0 ]; do
  case "$1" in
    -m) model=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench-vs-torch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$bench" ] || { echo "bench-vs-torch.sh: $bench not found: build first (make sasp-bench) or set SASP_BENCH" >&2; exit 1; }
"$py" -c "import torch" 2>/dev/null || { echo "bench-vs-torch.sh: $py cannot import torch (apt-get install python3-torch)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$model" ]; then
  model=$tmp/model
  "$py" "$top/bench/torch_bench.py" --make-random "$shape" "$model" >/dev/null
fi

# The engines take turns (rounds x (sasp, PyTorch)), so a change of load on a shared machine hits both.
rounds=${ROUNDS:-3}
r=1
while [ $r -le "$rounds" ]; do
  echo "== round $r of $rounds: sasp-bench -m $model -t $threads --reps $reps; torch_bench.py (same)"
  "$bench" -m "$model" -t "$threads" --reps "$reps" --json "$tmp/sasp.$r.json" >"$tmp/sasp.txt" 2>&1 ||
    { cat "$tmp/sasp.txt"; exit 1; }
  "$py" "$top/bench/torch_bench.py" -m "$model" -t "$threads" --reps "$reps" --json "$tmp/torch.$r.json" >"$tmp/torch.txt" ||
    { cat "$tmp/torch.txt"; exit 1; }
  r=$((r + 1))
done

"$py" - "$tmp" "$rounds" <<'EOF'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
S = [json.load(open(f"{tmp}/sasp.{r}.json"))["models"][0]["results"][0] for r in range(1, rounds + 1)]
T = [json.load(open(f"{tmp}/torch.{r}.json")) for r in range(1, rounds + 1)]
med = lambda rows, key: statistics.median(x[key] for x in rows)
keys = [("prefill, 512-token prompt", "prefill512_tok_s"), ("prefill, 256-token prompt", "prefill256_tok_s"),
        ("decode, batch 1", "decode_b1_tok_s")]
print()
print(f"{'tokens/s':28} {'sasp (' + S[0]['isa'] + ')':>14} {'PyTorch ' + T[0]['torch']:>18} {'sasp/PyTorch':>14}")
for name, k in keys:
    a, b = med(S, k), med(T, k)
    ratio = statistics.median(s[k] / t[k] for s, t in zip(S, T))
    print(f"{name:28} {a:14.0f} {b:18.0f} {ratio:13.1f}x")
t = T[0]
print(f"threads {t['threads']}; each figure: median over {rounds} alternating rounds of the median of {t['reps']} "
      f"runs (ratio: median of the per-round ratios); decode: {t['decode_tokens']} tokens after a "
      f"{t['decode_prompt']}-token prompt, greedy")
EOF
