#!/usr/bin/python3
"""Write a random-weight SAS-P model directory for sasp (docs/checkpoint-format.md).

    gen_sasp.py OUT_DIR SHAPE        writes OUT_DIR/config.json and OUT_DIR/model.safetensors (f32)

The block of docs/sasp-block.md with rmsnorm, RoPE and a ReLU MLP (2 matrices, d_ff x d), no W_V /
W_O, tied embeddings: the tensors train/checkpoint_io.py writes. sasp-bench converts the matrices
to bf16 or q8_0 at load (--weights), and sasp-quantize stores them so.
"""
import json
import os
import struct
import sys

import numpy as np

from shapes import Weights, shape


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        b = np.ascontiguousarray(a, "<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out, s = sys.argv[1], shape(sys.argv[2])
    V, d, L, H, F = s["vocab"], s["d"], s["layers"], s["heads"], s["mlp"]
    w = Weights()
    per_head = lambda v: np.full(H, v, np.float32)
    one = np.ones(1, np.float32)
    tensors = [("tok_emb.weight", w.matrix(V, d))]
    for l in range(L):
        p = "layers.%d." % l
        tensors += [(p + "norm.weight", np.ones(d, np.float32)), (p + "attn.wq.weight", w.matrix(d, d)),
                    (p + "attn.wk.weight", w.matrix(d, d)), (p + "attn.alpha", per_head(1.0)),
                    (p + "attn.beta", per_head(1.0)), (p + "attn.gamma", per_head(0.5)),
                    (p + "attn_gain", one), (p + "mlp_gain", one),
                    (p + "mlp.w1.weight", w.matrix(F, d)), (p + "mlp.w2.weight", w.matrix(d, F))]
    tensors.append(("norm_f.weight", np.ones(d, np.float32)))
    config = {"architecture": "sasp", "vocab_size": V, "d_model": d, "n_layers": L, "n_heads": H,
              "d_ff": F, "max_seq_len": s["ctx"], "norm": "rmsnorm", "norm_eps": 1e-5,
              "activation": "relu", "position": "rope", "rope_theta": 10000.0, "tie_embeddings": True,
              "bos_token_id": 0, "eos_token_id": 0}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)


if __name__ == "__main__":
    main()
