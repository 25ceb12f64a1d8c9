#!/usr/bin/python3
"""Write a random-weight GPT-2 (Pre-LN) model in ggml's gpt-2 example format (examples/gpt-2).

    gen_ggml_gpt2.py OUT.bin SHAPE WTYPE        SHAPE: A or B; WTYPE: f32, f16 or q8_0

Layout, as gpt2_model_load reads it: magic 0x67676d6c; int32 n_vocab, n_ctx, n_embd, n_head,
n_layer, ftype; int32 n_vocab and each token as (uint32 length, bytes); then every tensor as int32
n_dims, name length, ggml type, ne[] (innermost first), the name and the data. The matrices and wte
are stored in WTYPE (q8_0: ggml's block_q8_0, written here rather than by gpt-2-quantize), wpe,
biases and LayerNorm parameters in f32. No model/lm_head: wte is the tied head. The MLP is 4 x
d_model wide in this engine, which both shapes are. The vocabulary starts with the printable ASCII
characters, so a prompt of n letters is n tokens.
"""
import struct
import sys

import numpy as np

from gen_gguf import GGML_TYPE, encode
from shapes import Weights, shape

FTYPE = {"f32": 0, "f16": 1, "q8_0": 7}  # ggml_ftype


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in FTYPE:
        sys.exit(__doc__)
    out, s, wtype = sys.argv[1], shape(sys.argv[2]), sys.argv[3]
    V, E, L, H, ctx = s["vocab"], s["d"], s["layers"], s["heads"], s["ctx"]
    assert s["mlp"] == 4 * E
    w = Weights()
    toks = [chr(c).encode() for c in range(32, 127)]
    toks += [b"<|t%d|>" % i for i in range(len(toks), V)]
    with open(out, "wb") as f:
        f.write(struct.pack("<I6i", 0x67676D6C, V, ctx, E, H, L, FTYPE[wtype]))
        f.write(struct.pack("<i", V))
        for t in toks:
            f.write(struct.pack("<I", len(t)) + t)

        def tensor(name, a, t="f32"):
            n = name.encode()
            f.write(struct.pack("<3i", a.ndim, len(n), GGML_TYPE[t]))
            f.write(struct.pack("<%di" % a.ndim, *a.shape[::-1]) + n + encode(a, t))

        ones, zeros = np.ones(E, np.float32), np.zeros(E, np.float32)
        tensor("model/ln_f/g", ones)
        tensor("model/ln_f/b", zeros)
        tensor("model/wte", w.matrix(V, E), wtype)
        tensor("model/wpe", w.matrix(ctx, E))
        for l in range(L):
            p = "model/h%d/" % l
            for ln in ("ln_1", "ln_2"):
                tensor(p + ln + "/g", ones)
                tensor(p + ln + "/b", zeros)
            tensor(p + "attn/c_attn/w", w.matrix(3 * E, E), wtype)
            tensor(p + "attn/c_attn/b", np.zeros(3 * E, np.float32))
            tensor(p + "attn/c_proj/w", w.matrix(E, E), wtype)
            tensor(p + "attn/c_proj/b", zeros)
            tensor(p + "mlp/c_fc/w", w.matrix(4 * E, E), wtype)
            tensor(p + "mlp/c_fc/b", np.zeros(4 * E, np.float32))
            tensor(p + "mlp/c_proj/w", w.matrix(E, 4 * E), wtype)
            tensor(p + "mlp/c_proj/b", zeros)


if __name__ == "__main__":
    main()
