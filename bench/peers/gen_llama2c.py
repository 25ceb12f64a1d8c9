#!/usr/bin/python3
"""Write a random-weight LLaMA model for llama2.c: the f32 .bin that run.c reads, the q8_0 .bin that
runq.c reads (the same weights) and a tokenizer.bin.

    gen_llama2c.py OUT_DIR SHAPE        writes OUT_DIR/l2c_SHAPE.bin, l2c_SHAPE_q80.bin, tok_SHAPE.bin

f32 (export.py's legacy version 0): int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size (positive: shared classifier), seq_len; then float32 token embeddings, rms_att, wq, wk,
wv, wo, rms_ffn, w1, w2, w3, rms_final and the unused freq_cis tables.
q8_0 (export.py's version 2): a 256-byte header (magic "ak42", version 2, the 7 ints, uint8 shared
classifier, int32 group size 64), the f32 norms (att, ffn, final), then for the token embeddings and
every layer's wq, wk, wv, wo, w1, w2, w3: int8 values, then one f32 scale (max|w| / 127) per group.
tokenizer.bin: int32 max token length; per token f32 score, int32 length, bytes. The embedding row
of BOS (id 1) is zero: run.c stops when it generates BOS.
"""
import os
import struct
import sys

import numpy as np

from shapes import Weights, shape

GROUP = 64


def quantize(a):
    g = a.reshape(-1, GROUP)
    s = np.abs(g).max(axis=1) / 127.0
    s[s == 0] = 1.0
    return np.round(g / s[:, None]).astype(np.int8).tobytes() + s.astype("<f4").tobytes()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out, name = sys.argv[1], sys.argv[2]
    s = shape(name)
    V, d, L, H, F, ctx = s["vocab"], s["d"], s["layers"], s["heads"], s["mlp"], s["ctx"]
    w = Weights()
    emb = w.matrix(V, d)
    emb[1] = 0.0
    mats = {k: np.stack([w.matrix(r, c) for _ in range(L)]) for k, (r, c) in
            (("wq", (d, d)), ("wk", (d, d)), ("wv", (d, d)), ("wo", (d, d)),
             ("w1", (F, d)), ("w2", (d, F)), ("w3", (F, d)))}
    rms_l, rms_f = np.ones((L, d), np.float32), np.ones(d, np.float32)
    cfg = struct.pack("<7i", d, F, L, H, H, V, ctx)

    with open(os.path.join(out, "l2c_%s.bin" % name), "wb") as f:
        f.write(cfg)
        for a in (emb, rms_l, mats["wq"], mats["wk"], mats["wv"], mats["wo"], rms_l,
                  mats["w1"], mats["w2"], mats["w3"], rms_f, np.zeros(ctx * (d // H), np.float32)):
            f.write(a.astype("<f4").tobytes())

    with open(os.path.join(out, "l2c_%s_q80.bin" % name), "wb") as f:
        head = struct.pack("<Ii", 0x616B3432, 2) + cfg + struct.pack("<Bi", 1, GROUP)
        f.write(head + b"\0" * (256 - len(head)))
        f.write(rms_l.tobytes() + rms_l.tobytes() + rms_f.tobytes())
        f.write(quantize(emb))
        for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
            for l in range(L):
                f.write(quantize(mats[k][l]))

    toks = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(256)]
    toks += [bytes([c]) for c in range(32, 127)]  # " " is the dummy prefix
    toks += [b"<t%d>" % i for i in range(len(toks), V)]
    with open(os.path.join(out, "tok_%s.bin" % name), "wb") as f:
        f.write(struct.pack("<i", max(map(len, toks))))
        for t in toks:
            f.write(struct.pack("<fi", 0.0, len(t)) + t)


if __name__ == "__main__":
    main()
