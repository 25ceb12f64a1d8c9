#!/bin/sh
# gen-fixtures.sh: regenerate tests/fixtures/parity/<name>/, the committed random models and
# float64 reference logits that the C parity test uses where torch is absent.
# Each fixture is config.json + model.safetensors + reference.json, written by
# train/make_test_model.py at the odd size d=96, 3 heads, d_ff=200, vocab 301, 2 layers, 80 tokens.
# To stay near 3 MB the set is a pairwise cover of arch x norm x position (every pair of values
# appears once) rather than all 12 combinations; with torch the test makes all 12 fresh each run.
# Weights are F16 or BF16 (the reference is computed from the rounded weights, so it stays exact)
# and the optional tensors (qk biases, W_V, W_O, skip gain, separate head) and the three
# activations are spread over the set.
# Usage: scripts/gen-fixtures.sh            (run from anywhere; needs python3 with torch)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
py=${TORCH_PYTHON:-/usr/bin/python3}
out=$top/tests/fixtures/parity
size="--d-model 96 --n-heads 3 --d-ff 200 --vocab 301 --n-layers 2 --max-seq-len 80 --n-tokens 80 --digits 6"

"$py" -c 'import torch' 2>/dev/null || { echo "gen-fixtures.sh: $py has no torch (apt-get install python3-torch)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"

gen() { # name seed options...
    name=$1 seed=$2
    shift 2
    "$py" "$top/train/make_test_model.py" $size --seed "$seed" "$@" --out "$out/$name" >/dev/null
    echo "$out/$name"
}

gen sasp-rmsnorm-rope     1 --arch sasp  --norm rmsnorm   --position rope    --activation relu --dtype F16
gen sasp-layernorm-learned 2 --arch sasp --norm layernorm --position learned --activation gelu --dtype F16 \
    --qk-bias --value-layers 0 --out-layers 1 --skip-gain --untied
gen sasp-none-rope        3 --arch sasp  --norm none      --position rope    --activation silu --dtype BF16 \
    --value-layers 0,1 --out-layers 0,1
gen preln-rmsnorm-learned 4 --arch preln --norm rmsnorm   --position learned --activation gelu --dtype F16
gen preln-layernorm-rope  5 --arch preln --norm layernorm --position rope    --activation silu --dtype F16 \
    --qk-bias --untied
gen preln-none-learned    6 --arch preln --norm none      --position learned --activation relu --dtype BF16
du -sh "$out"
