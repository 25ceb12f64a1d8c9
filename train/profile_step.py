#!/usr/bin/python3
"""profile_step.py: where a training step's time goes, SAS-P against Pre-LN at the same shape.

Runs train.py's step (step_bench.step: forward, cross-entropy, backward, clipping, AdamW) under
torch.profiler for each architecture, the two alternating step by step after warm-up steps, and
prints per operator the self CPU time per step of each and the difference, largest first: what
SAS-P spends that Pre-LN does not, and what it saves (docs/sasp-vs-preln.md, "Where the step goes").

  /usr/bin/python3 train/profile_step.py --threads 2 --shape 256,6,4,256,16 [--no-bf16] [--steps 6]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runtime  # noqa: E402,F401  (first: OMP_WAIT_POLICY and malloc's thresholds, as train.py)

import argparse  # noqa: E402
from collections import defaultdict  # noqa: E402

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from step_bench import make, step  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="256,6,4,256,16", help="d,L,H,ctx,batch")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6, help="profiled steps per architecture")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-bf16", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bf16 = not args.no_bf16
    d, L, H, ctx, B = map(int, args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, args.vocab, (B, ctx), generator=g)
    y = torch.randint(0, args.vocab, (B, ctx), generator=g)
    runs = {a: make(a, d, L, H, ctx, args.vocab)[1:] for a in ("sasp", "preln")}
    for _ in range(args.warmup):
        for m, opt in runs.values():
            step(m, opt, x, y, bf16)
    per_op = {a: defaultdict(float) for a in runs}
    total = {a: 0.0 for a in runs}
    for _ in range(args.steps):
        for a, (m, opt) in runs.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(m, opt, x, y, bf16)
            for ev in prof.key_averages():
                per_op[a][ev.key] += ev.self_cpu_time_total / 1e3 / args.steps  # ms per step
            total[a] += sum(ev.self_cpu_time_total for ev in prof.key_averages()) / 1e3 / args.steps
    print(f"shape d={d} L={L} H={H} ctx={ctx} batch={B}, {'bf16 autocast' if bf16 else 'float32'}, "
          f"{args.threads} threads, {args.steps} steps each; self CPU ms per step")
    print(f"total: sasp {total['sasp']:.1f}, preln {total['preln']:.1f} "
          f"(sasp / preln {total['sasp'] / total['preln']:.3f})")
    ops = set(per_op["sasp"]) | set(per_op["preln"])
    rows = sorted(ops, key=lambda k: -abs(per_op["sasp"][k] - per_op["preln"][k]))[:args.top]
    print("| operator | sasp ms | preln ms | sasp - preln |")
    print("|---|---:|---:|---:|")
    for k in rows:
        s, p = per_op["sasp"][k], per_op["preln"][k]
        print(f"| {k} | {s:.2f} | {p:.2f} | {s - p:+.2f} |")


if __name__ == "__main__":
    main()
