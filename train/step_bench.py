#!/usr/bin/python3
"""step_bench.py: training-step time of SAS-P against Pre-LN at the same shape, measured in one
process, alternating the two architectures step by step so that both see the same machine load
(this machine is shared and noisy). A step is what train.py does: forward, cross-entropy, backward,
gradient clipping, AdamW. Prints the median step time of each, tokens/s, parameters and the FLOPs
that sasp_model.forward_flops counts.

  /usr/bin/python3 train/step_bench.py --threads 1 --shape 128,4,4,128,16 --shape 256,6,4,256,8
  (each --shape: d_model, n_layers, n_heads, context, batch; d_ff = 4 d_model; vocab 8192)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime  # noqa: E402,F401  (first: OMP_WAIT_POLICY and malloc's thresholds, as train.py)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sasp_model import ModelConfig, SASPModel, init_paper_, param_count, forward_flops  # noqa: E402
from train import train_step  # noqa: E402


def make(arch, d, L, H, ctx, vocab):
    cfg = ModelConfig(architecture=arch, vocab_size=vocab, d_model=d, n_layers=L, n_heads=H,
                      d_ff=4 * d, max_seq_len=ctx)
    torch.manual_seed(0)
    m = SASPModel(cfg)
    init_paper_(m)
    return cfg, m, torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.1, eps=1e-8)


def step(m, opt, x, y, bf16):
    """One step exactly as train.py takes it (gradient clipping at train.py's default, 1.0)."""
    train_step(m, opt, x, y, argparse.Namespace(bf16=bf16, clip=1.0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", action="append", required=True, help="d,L,H,ctx,batch")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-bf16", action="store_true", help="float32 matrices (train.py --bf16 is on)")
    ap.add_argument("--arch", action="append", choices=["sasp", "preln"],
                    help="only these architectures (default both)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bf16 = not args.no_bf16
    print(f"| shape (d, L, H, ctx, batch) | arch | parameters (non-embedding) | forward GFLOP/step "
          f"| median step ms | tokens/s | sasp/preln throughput |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.shape:
        d, L, H, ctx, B = map(int, spec.split(","))
        archs = tuple(args.arch or ("sasp", "preln"))
        runs = {a: make(a, d, L, H, ctx, args.vocab) for a in archs}
        g = torch.Generator().manual_seed(1)
        x = torch.randint(0, args.vocab, (B, ctx), generator=g)
        y = torch.randint(0, args.vocab, (B, ctx), generator=g)
        times = {a: [] for a in runs}
        for r in range(args.rounds + 2):
            for a in (archs if r % 2 == 0 else archs[::-1]):
                _, m, opt = runs[a]
                t = time.perf_counter()
                step(m, opt, x, y, bf16)
                if r >= 2:  # the first rounds warm allocators and caches
                    times[a].append(time.perf_counter() - t)
        med = {a: float(np.median(times[a])) for a in runs}
        for a in archs:
            cfg, m, _ = runs[a]
            flops = forward_flops(cfg, ctx) * B * ctx / 1e9  # PyTorch scores all T x T pairs
            ratio = f"{med['preln'] / med['sasp']:.3f}" if a == "sasp" and len(archs) == 2 else ""
            print(f"| {d}, {L}, {H}, {ctx}, {B} | {a} | {param_count(m):,} ({param_count(m, False):,}) "
                  f"| {flops:.2f} | {med[a] * 1000:.0f} | {B * ctx / med[a]:.0f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
