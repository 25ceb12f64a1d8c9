#!/bin/sh
# make-models.sh DIR: write the random-weight models of shapes A and B that run.py times, in every
# engine's format, into DIR (about 1 GB; a minute or two).
#   DIR/sasp_S/                 sasp (f32; sasp-bench --weights converts to bf16 / q8_0)
#   DIR/llama_S_W.gguf          llama.cpp, W = f32 f16 bf16 q8_0
#   DIR/gpt2_S_W.bin            ggml's gpt-2 example, W = f32 f16 q8_0
#   DIR/l2c_S.bin, l2c_S_q80.bin, tok_S.bin     llama2.c (run, runq)
set -e
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-/usr/bin/python3}
mkdir -p "$1"
for S in A B; do
  $PY "$HERE/gen_sasp.py" "$1/sasp_$S" $S
  for W in f32 f16 bf16 q8_0; do $PY "$HERE/gen_gguf.py" "$1/llama_${S}_$W.gguf" $S $W; done
  for W in f32 f16 q8_0; do $PY "$HERE/gen_ggml_gpt2.py" "$1/gpt2_${S}_$W.bin" $S $W; done
  $PY "$HERE/gen_llama2c.py" "$1" $S
done
echo "make-models.sh: models in $1"
