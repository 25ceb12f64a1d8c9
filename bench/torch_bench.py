#!/usr/bin/python3
"""torch_bench.py: the PyTorch baseline of sasp-bench, on the same checkpoint.

Runs train/sasp_model.py's model in eager PyTorch with a lean KV-cache loop (per layer: the new
tokens' queries, keys and values, keys and values appended to preallocated caches, attention over the
cache, and for SAS-P the centring term from a running sum of values), the way one would write decoding
without a serving framework. Measures, like sasp-bench and with the same prompts:
  prefill  tokens/s for a 512-token prompt and a 256-token one (logits of the last token);
  decode   tokens/s at batch 1: greedy, after a 32-token prompt, 128 tokens.
Each figure is the median of --reps runs. Before timing, the KV-cache loop is checked against the
model's full forward (prints the largest difference) so the baseline computes the same thing.

    /usr/bin/python3 bench/torch_bench.py -m MODEL_DIR [-t THREADS] [--reps 5] [--json FILE]
    /usr/bin/python3 bench/torch_bench.py --make-random A|B OUT_DIR [--arch sasp|preln]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
import checkpoint_io  # noqa: E402
import sasp_model as sm  # noqa: E402

SHAPES = {  # the benchmark shapes A and B of docs/performance.md
    "A": dict(vocab_size=8192, d_model=256, n_layers=6, n_heads=4, d_ff=1024),
    "B": dict(vocab_size=8192, d_model=512, n_layers=8, n_heads=8, d_ff=2048),
}


class KVDecoder:
    """Incremental forward of a SASPModel for B sequences: step(tokens [B, T]) -> logits of the last
    token [B, vocab], appending to the caches."""

    def __init__(self, model, batch, capacity):
        cfg = model.cfg
        self.m, self.cfg = model, cfg
        H, dh = cfg.n_heads, cfg.d_head
        self.k = [torch.zeros(batch, H, capacity, dh) for _ in model.layers]
        self.v = [torch.zeros(batch, H, capacity, dh) for _ in model.layers]
        self.vsum = [torch.zeros(batch, H, 1, dh) for _ in model.layers]
        self.len = 0
        self.cos, self.sin = (sm.rope_tables(capacity, dh, cfg.rope_theta, torch.float32, "cpu")
                              if cfg.position == "rope" else (None, None))
        self.head = model.tok_emb.weight if model.lm_head is None else model.lm_head.weight

    def reset(self):
        self.len = 0
        for s in self.vsum:
            s.zero_()

    def attention(self, i, att, z):
        cfg, B, T = self.cfg, z.shape[0], z.shape[1]
        p0, p1 = self.len, self.len + T
        q = att.split_heads(att.wq(z))
        k = att.split_heads(att.wk(z))
        v = att.split_heads(z if att.wv is None else att.wv(z))
        if self.cos is not None:
            q = sm.apply_rope(q, self.cos[p0:p1], self.sin[p0:p1])
            k = sm.apply_rope(k, self.cos[p0:p1], self.sin[p0:p1])
        self.k[i][:, :, p0:p1] = k
        self.v[i][:, :, p0:p1] = v
        keys, vals = self.k[i][:, :, :p1], self.v[i][:, :, :p1]
        scores = (q @ keys.transpose(-1, -2)) / math.sqrt(cfg.d_head)
        if T > 1:  # causal within the new tokens
            mask = torch.ones(T, p1, dtype=torch.bool).triu(p0 + 1)
            scores = scores.masked_fill(mask, float("-inf"))
        pv = torch.softmax(scores, dim=-1) @ vals
        if att.shaped:
            csum = self.vsum[i] + torch.cumsum(v, dim=-2)
            self.vsum[i] = csum[:, :, -1:]
            cv = csum / torch.arange(p0 + 1, p1 + 1, dtype=v.dtype)[:, None]
            g = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
            o = g(att.alpha) * v + g(att.beta) * pv - g(att.gamma) * cv
        else:
            o = pv
        o = o.transpose(1, 2).reshape(B, T, cfg.d_model)
        return o if att.wo is None else att.wo(o)

    @torch.no_grad()
    def step(self, tokens, all_logits=False):
        m, T = self.m, tokens.shape[1]
        x = m.tok_emb(tokens)
        if m.pos_emb is not None:
            x = x + m.pos_emb.weight[self.len:self.len + T]
        for i, layer in enumerate(m.layers):
            if isinstance(layer, sm.SASPBlock):
                z = sm.apply_norm(layer.norm, x)
                y = layer.attn_gain * self.attention(i, layer.attn, z) + layer.mlp_gain * layer.mlp(z)
                x = y + layer.skip_gain * x if layer.skip_gain is not None else y
            else:
                x = x + self.attention(i, layer.attn, sm.apply_norm(layer.norm, x))
                x = x + layer.mlp(sm.apply_norm(layer.norm2, x))
        self.len += T
        x = m.norm_f(x if all_logits else x[:, -1:])
        return x @ self.head.t()


def median_time(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def make_random(shape, out_dir, arch):
    cfg = sm.ModelConfig(architecture=arch, max_seq_len=1024, norm_eps=1e-5, **SHAPES[shape])
    model = sm.SASPModel(cfg)
    sm.init_random_(model, torch.Generator().manual_seed(42))
    checkpoint_io.save_checkpoint(model, cfg, out_dir)
    print(f"torch_bench: random {arch} model of shape {shape} in {out_dir}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", help="model directory")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--prompt-decode", type=int, default=32)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--make-random", nargs=2, metavar=("SHAPE", "OUT_DIR"))
    ap.add_argument("--arch", default="sasp", choices=sm.ARCHITECTURES)
    a = ap.parse_args()
    if a.make_random:
        if a.make_random[0] not in SHAPES:
            ap.error("shape must be A or B")
        make_random(a.make_random[0], a.make_random[1], a.arch)
        return 0
    if not a.model:
        ap.error("-m MODEL_DIR is required")
    torch.set_num_threads(max(1, a.threads))
    model, cfg = checkpoint_io.load_checkpoint(a.model)
    V, ctx = cfg.vocab_size, cfg.max_seq_len
    g = torch.Generator().manual_seed(12345)
    P = min(512, ctx)
    prompt = torch.randint(1, V, (1, P + 8), generator=g)

    # the KV-cache loop computes what the model computes
    with torch.no_grad():
        n = min(40, ctx)
        full = model(prompt[:, :n])[0]
        dec = KVDecoder(model, 1, ctx)
        parts = [dec.step(prompt[:, :n - 8], all_logits=True)[0]]
        parts += [dec.step(prompt[:, t:t + 1])[0] for t in range(n - 8, n)]
        err = (torch.cat(parts) - full).abs().max().item() / full.abs().max().item()
    print(f"torch_bench: KV-cache loop vs full forward: max relative difference {err:.2e}")
    if not err < 1e-4:
        print("torch_bench: the KV-cache loop disagrees with the model", file=sys.stderr)
        return 1

    dec = KVDecoder(model, 1, ctx)
    res = {"engine": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "model": a.model, "reps": a.reps}
    for n in (P, min(256, P)):
        def prefill():
            dec.reset()
            dec.step(prompt[:, :n])
        res[f"prefill{n}_tok_s"] = n / median_time(prefill, a.reps)

    steps = min(a.decode_tokens, ctx - a.prompt_decode - 1)

    def decode():
        dec.reset()
        logits = dec.step(prompt[:, :a.prompt_decode])
        tok = logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        for _ in range(steps):
            tok = dec.step(tok)[:, -1].argmax(-1, keepdim=True)
        return time.perf_counter() - t

    decode()  # warm-up
    res["decode_b1_tok_s"] = steps / statistics.median(decode() for _ in range(a.reps))
    res["decode_prompt"], res["decode_tokens"] = a.prompt_decode, steps
    print(f"torch_bench: {cfg.architecture} d_model {cfg.d_model}, {cfg.n_layers} layers, vocab {V}, "
          f"{res['threads']} threads: prefill{P} {res[f'prefill{P}_tok_s']:.0f} tok/s, "
          f"decode b1 {res['decode_b1_tok_s']:.0f} tok/s")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
