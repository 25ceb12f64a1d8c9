#!/usr/bin/python3
"""Write a random-weight LLaMA model as GGUF v3, for llama.cpp (architecture "llama").

    gen_gguf.py OUT.gguf SHAPE WTYPE        SHAPE: A or B; WTYPE: f32, f16, bf16 or q8_0

The model: RMSNorm, RoPE, SwiGLU MLP (gate, up, down: 3 matrices of MLP x d), n_kv_heads = n_heads,
tied embeddings (no output.weight). Matrices and token_embd are stored in WTYPE (q8_0: ggml's
block_q8_0, 32 int8 with one f16 scale), the norms in f32. The vocabulary is a SentencePiece one
laid out as <unk>, <s>, </s>, 256 byte tokens, printable ASCII, then fillers; the embedding rows of
<unk>, <s> and </s> are zero, so that greedy decoding never stops on an end-of-sequence token.
"""
import struct
import sys

import numpy as np

from shapes import Weights, bf16_bits, shape

U32, I32, F32, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9  # GGUF metadata value types
GGML_TYPE = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30}
FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # llama_ftype
ALIGN = 32


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, val):
    fmt = {U32: "<I", I32: "<i", F32: "<f", BOOL: "<B"}
    body = gstr(val) if vtype == STR else struct.pack(fmt[vtype], val)
    return gstr(key) + struct.pack("<I", vtype) + body


def kv_array(key, etype, vals):
    head = gstr(key) + struct.pack("<IIQ", ARR, etype, len(vals))
    if etype == STR:
        return head + b"".join(gstr(v) for v in vals)
    return head + np.asarray(vals, "<f4" if etype == F32 else "<i4").tobytes()


def q8_0(w):
    g = w.reshape(-1, 32)
    d = np.abs(g).max(axis=1) / 127.0
    q = np.round(g / np.where(d > 0, d, 1.0)[:, None]).clip(-127, 127)
    blocks = np.zeros(len(g), dtype=[("d", "<f2"), ("qs", "i1", (32,))])
    blocks["d"], blocks["qs"] = d, q
    return blocks.tobytes()


def encode(a, wtype):
    if wtype == "f32":
        return a.astype("<f4").tobytes()
    if wtype == "f16":
        return a.astype("<f2").tobytes()
    if wtype == "bf16":
        return bf16_bits(a).tobytes()
    return q8_0(a)


def vocabulary(n):
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, byte
    toks += ["\u2581" if c == 32 else chr(c) for c in range(32, 127)]
    toks += ["<t%d>" % i for i in range(len(toks), n)]
    types += [1] * (n - len(types))  # normal
    return toks[:n], types[:n]


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in GGML_TYPE:
        sys.exit(__doc__)
    out, s, wtype = sys.argv[1], shape(sys.argv[2]), sys.argv[3]
    V, d, L, H, F = s["vocab"], s["d"], s["layers"], s["heads"], s["mlp"]
    w = Weights()
    emb = w.matrix(V, d)
    emb[:3] = 0.0
    ones = np.ones(d, np.float32)
    tensors = [("token_embd.weight", emb), ("output_norm.weight", ones)]
    for l in range(L):
        p = "blk.%d." % l
        tensors += [(p + "attn_norm.weight", ones), (p + "attn_q.weight", w.matrix(d, d)),
                    (p + "attn_k.weight", w.matrix(d, d)), (p + "attn_v.weight", w.matrix(d, d)),
                    (p + "attn_output.weight", w.matrix(d, d)), (p + "ffn_norm.weight", ones),
                    (p + "ffn_gate.weight", w.matrix(F, d)), (p + "ffn_up.weight", w.matrix(F, d)),
                    (p + "ffn_down.weight", w.matrix(d, F))]
    toks, types = vocabulary(V)
    meta = [kv("general.architecture", STR, "llama"), kv("general.name", STR, "random-" + sys.argv[2]),
            kv("general.alignment", U32, ALIGN), kv("general.file_type", U32, FILE_TYPE[wtype]),
            kv("llama.context_length", U32, s["ctx"]), kv("llama.embedding_length", U32, d),
            kv("llama.block_count", U32, L), kv("llama.feed_forward_length", U32, F),
            kv("llama.attention.head_count", U32, H), kv("llama.attention.head_count_kv", U32, H),
            kv("llama.rope.dimension_count", U32, d // H), kv("llama.rope.freq_base", F32, 10000.0),
            kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5), kv("llama.vocab_size", U32, V),
            kv("tokenizer.ggml.model", STR, "llama"), kv_array("tokenizer.ggml.tokens", STR, toks),
            kv_array("tokenizer.ggml.scores", F32, [0.0] * V),
            kv_array("tokenizer.ggml.token_type", I32, types),
            kv("tokenizer.ggml.unknown_token_id", U32, 0), kv("tokenizer.ggml.bos_token_id", U32, 1),
            kv("tokenizer.ggml.eos_token_id", U32, 2), kv("tokenizer.ggml.add_bos_token", BOOL, 1),
            kv("tokenizer.ggml.add_eos_token", BOOL, 0)]
    infos, blobs, off = [], [], 0
    for name, a in tensors:
        t = wtype if a.ndim == 2 else "f32"
        data = encode(a, t)
        dims = a.shape[::-1]  # ggml's ne: innermost first
        infos.append(gstr(name) + struct.pack("<I", len(dims)) + struct.pack("<%dQ" % len(dims), *dims)
                     + struct.pack("<IQ", GGML_TYPE[t], off))
        data += b"\0" * (-len(data) % ALIGN)
        blobs.append(data)
        off += len(data)
    with open(out, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)))
        f.write(b"".join(meta) + b"".join(infos))
        f.write(b"\0" * (-f.tell() % ALIGN))
        f.write(b"".join(blobs))


if __name__ == "__main__":
    main()
