#!/usr/bin/python3
"""compare_runs.py: put the loss curves of several train.py runs in one plot and print their figures
(parameters, training tokens/s, final losses) as a Markdown table.

  /usr/bin/python3 train/compare_runs.py --png docs/sasp-vs-preln.png runs/cmp-sasp runs/cmp-preln
"""
import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train import plot_losses, read_log  # noqa: E402


def summary(run_dir):
    rows = read_log(os.path.join(run_dir, "log.jsonl"))
    start = next((r for r in rows if r.get("kind") == "start"), None)
    if start is None:
        sys.exit(f"compare_runs: {run_dir}/log.jsonl has no start record")
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]
    final = next((r for r in rows if r.get("kind") == "final"), None)
    out = {"run": run_dir, "arch": start["args"]["arch"], "params": start["params"],
           "params_non_embedding": start["params_non_embedding"], "rows": rows,
           "steps": train[-1]["step"] if train else 0, "tokens": train[-1]["tokens"] if train else 0,
           "val_loss": val[-1]["val_loss"] if val else float("nan")}
    if final:
        out["tok_s"] = final["mean_tok_s"]
        out["train_seconds"] = final["train_seconds"]
        out["val_loss_full"] = final.get("val_loss_full", float("nan"))
    elif train:
        out["tok_s"] = train[-1]["tokens"] / max(1e-9, train[-1]["time"])
        out["train_seconds"] = train[-1]["time"]
        out["val_loss_full"] = float("nan")
    # the mean training loss over the last 10% of logged steps (less noisy than one batch)
    tail = train[-max(1, len(train) // 10):]
    out["train_loss_tail"] = sum(r["loss"] for r in tail) / max(1, len(tail))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories of train.py")
    ap.add_argument("--png", required=True)
    ap.add_argument("--title", default="SAS-P vs Pre-LN: same width, depth, data, tokens and schedule")
    args = ap.parse_args(argv)
    runs = [summary(r) for r in args.runs]
    plot_losses([(f"{os.path.basename(os.path.normpath(s['run']))}: {s['arch']} ({s['params'] / 1e6:.2f}M params)",
                  s["rows"]) for s in runs],
                args.png, args.title)
    print("| run | architecture | parameters (non-embedding) | steps | tokens | training tok/s "
          "| wall time | final val loss (fixed windows) | val loss, whole split | train loss, last 10% |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in runs:
        print(f"| {s['run']} | {s['arch']} | {s['params']:,} ({s['params_non_embedding']:,}) | "
              f"{s['steps']} | {s['tokens']:,} | {s['tok_s']:.0f} | {s['train_seconds'] / 60:.1f} min | "
              f"{s['val_loss']:.4f} | {s['val_loss_full']:.4f} | {s['train_loss_tail']:.4f} |")
    by_arch = {}
    for s in runs:
        by_arch.setdefault(s["arch"], []).append(s)
    if len(by_arch) == 2 and any(len(v) > 1 for v in by_arch.values()):
        print("\n| architecture | runs | mean training tok/s | mean val loss, whole split | per run |")
        print("|---|---|---|---|---|")
        for arch, rs in by_arch.items():
            mean = lambda key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
            print(f"| {arch} | {len(rs)} | {mean('tok_s'):.0f} | {mean('val_loss_full'):.4f} | "
                  + ", ".join(f"{r['val_loss_full']:.4f}" for r in rs) + " |")
    if len(runs) == 2 and not any(math.isnan(s["val_loss"]) for s in runs):
        a, b = runs
        print(f"\n{a['arch']} / {b['arch']}: parameters {a['params'] / b['params']:.3f} "
              f"(non-embedding {a['params_non_embedding'] / b['params_non_embedding']:.3f}), "
              f"throughput {a['tok_s'] / b['tok_s']:.3f}, final val loss difference "
              f"{a['val_loss'] - b['val_loss']:+.4f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
