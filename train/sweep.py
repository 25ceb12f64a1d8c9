#!/usr/bin/python3
"""sweep.py: train several shapes for the same compute budget, one after the other on the same
machine, and compare their validation losses: the measurement the default model's shape, vocabulary
and fill-in-the-middle rate are chosen from.

Each run is train.py with --flops-budget BUDGET and its own options; runs that already finished
(their log has a "final" record) are not run again, so an interrupted sweep continues where it
stopped. At the end a Markdown table (shape, parameters, tokens, minutes, tokens/s, the losses on both
validation splits in nats/token and bits/byte) and a plot of validation loss against FLOPs.

  /usr/bin/python3 train/sweep.py --budget 5.4e13 --out runs/sweep \\
      --run "A:--d-model 256 --n-layers 6" --run "narrow:--d-model 192 --n-layers 6"
  /usr/bin/python3 train/sweep.py --out runs/sweep --report-only --png docs/sweep.png ...
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train import bits_per_byte, last_records, read_log  # noqa: E402


def finished(run_dir):
    return any(r.get("kind") == "final" for r in read_log(os.path.join(run_dir, "log.jsonl")))


def summary(name, run_dir):
    rows = read_log(os.path.join(run_dir, "log.jsonl"))
    start = next(r for r in rows if r.get("kind") == "start")
    final = next((r for r in rows if r.get("kind") == "final"), {})
    val = [r for r in last_records(rows) if r.get("kind") == "val"]
    data = start["args"]["data"]
    manifest = json.load(open(os.path.join(data, "manifest.json")))
    last = val[-1] if val else {}
    return {"name": name, "args": start["args"], "params": start["params"],
            "params_non_embedding": start["params_non_embedding"], "vocab": start["config"]["vocab_size"],
            "tokens": final.get("tokens", 0), "minutes": final.get("train_seconds", 0) / 60,
            "tok_s": final.get("mean_tok_s", 0), "val_files": last.get("val_loss", float("nan")),
            "val_packages": last.get("val_packages", float("nan")),
            "bpb_files": bits_per_byte(last.get("val_loss", float("nan")), manifest.get("val-files")),
            "bpb_packages": bits_per_byte(last.get("val_packages", float("nan")), manifest.get("val-packages")),
            "rows": rows}


def plot(summaries, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for i, s in enumerate(summaries):
        manifest = json.load(open(os.path.join(s["args"]["data"], "manifest.json")))
        val = [r for r in last_records(s["rows"]) if r.get("kind") == "val" and "val_packages" in r]
        x = [r["flops"] / 1e12 for r in val]
        y = [bits_per_byte(r["val_packages"], manifest.get("val-packages")) for r in val]
        ax.plot(x, y, "o-", ms=3, color=f"C{i}", label=f"{s['name']} ({s['params'] / 1e6:.1f}M)")
    ax.set_xlabel("training compute (TFLOP)")
    ax.set_ylabel("held-out packages, bits per byte")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=5.4e13, help="training FLOPs per run")
    ap.add_argument("--out", default="runs/sweep")
    ap.add_argument("--run", action="append", required=True, help="NAME:TRAIN_ARGS")
    ap.add_argument("--common", default="", help="train.py options for every run")
    ap.add_argument("--png", help="write the plot here (default OUT/sweep.png)")
    ap.add_argument("--title", default="validation loss at equal compute")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    runs = [r.split(":", 1) for r in args.run]
    for name, opts in runs:
        run_dir = os.path.join(args.out, name)
        if args.report_only or finished(run_dir):
            continue
        resume = ["--resume"] if os.path.isfile(os.path.join(run_dir, "ckpt.pt")) else []
        cmd = [sys.executable, os.path.join(HERE, "train.py"), "--out", run_dir, "--flops-budget",
               str(args.budget), "--no-final-eval"] + shlex.split(args.common) + shlex.split(opts)
        if resume:
            cmd = [sys.executable, os.path.join(HERE, "train.py"), "--out", run_dir, "--resume",
                   "--no-final-eval"]
        print(f"sweep: {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        rc = subprocess.run(cmd).returncode
        if rc:
            sys.exit(f"sweep: {name} stopped with status {rc}")
    sums = [summary(name, os.path.join(args.out, name)) for name, _ in runs
            if os.path.isfile(os.path.join(args.out, name, "log.jsonl"))]
    print(f"Budget {args.budget:.3g} training FLOPs per run.\n")
    print("| run | options | parameters (non-embedding) | vocab | tokens | minutes | tokens/s "
          "| held-out files nats/token (bits/byte) | held-out packages nats/token (bits/byte) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, opts), s in zip(runs, sums):
        print(f"| {name} | `{opts}` | {s['params'] / 1e6:.2f}M ({s['params_non_embedding'] / 1e6:.2f}M) | "
              f"{s['vocab']} | {s['tokens'] / 1e6:.2f}M | {s['minutes']:.1f} | {s['tok_s']:.0f} | "
              f"{s['val_files']:.4f} ({s['bpb_files']:.4f}) | {s['val_packages']:.4f} ({s['bpb_packages']:.4f}) |")
    plot(sums, args.png or os.path.join(args.out, "sweep.png"), args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
