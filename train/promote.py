#!/usr/bin/python3
"""promote.py: decide whether a continued-training run's model becomes the default, and make it so.

The rule of issue 23: the new model replaces models/sasp-small only when its held-out loss is lower
on BOTH validation splits than the current default's, scored the same way (the whole split in windows
of the model's context, float32, the method of train.py's final evaluation and sasp-cli
--perplexity), and when the C engine agrees with the trainer (sasp-cli --perplexity within 1%).

  /usr/bin/python3 train/promote.py runs/continue            # report only
  /usr/bin/python3 train/promote.py runs/continue --apply    # and copy it in, update the state file

--apply copies config.json, model.safetensors and tokenizer.json into models/sasp-small and records the
period in train/default-state.json: the data cursor the run ended at (the next period starts there),
cumulative tokens and seconds, machine, precision and both losses. The run's trunk (its weights at the
first step of its decay, train.py --trunk) goes into train/trunk with --apply whatever the verdict:
the next period goes on from it at the stable learning rate, so a period too short to beat the
default after its own decay still adds its stable-phase tokens to the ones after it
(warmup-stable-decay; state["trunk"] counts the tokens in those weights).
"""
import argparse
import datetime
import json
import math
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

SPLITS = ("val-files", "val-packages")


def read_log(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
    start = next(r for r in rows if r["kind"] == "start")
    final = next((r for r in rows if r["kind"] == "final"), None)
    if final is None:
        sys.exit(f"promote: {run_dir}/log.jsonl has no final record: the run has not finished")
    trunk = next((dict(r) for r in rows if r["kind"] == "trunk"), None)
    if trunk:  # the running time at the trunk: that of the last step logged before it
        trunk["time"] = max((r["time"] for r in rows if r["kind"] == "train" and r["step"] <= trunk["step"]),
                            default=0.0)
    return start, final, trunk


def copy_model(src, dest):
    """A model directory's three files from src into dest."""
    os.makedirs(dest, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copyfile(os.path.join(src, f), os.path.join(dest, f))


def keep_trunk(run_dir, dest, state, trunk, base_tokens, lr, uncounted_seconds):
    """Copy the run's trunk into dest (train/trunk) and count its tokens in state["trunk"], with the
    seconds of training in it that cumulative_seconds does not count yet (those of runs that were not
    promoted: a promoted period adds them when it goes on from this trunk)."""
    copy_model(os.path.join(run_dir, "trunk"), dest)
    state["trunk"] = {"date": datetime.date.today().isoformat(), "tokens": base_tokens + trunk["tokens"],
                      "lr": lr, "uncounted_seconds": round(uncounted_seconds),
                      "note": "weights before the decay of the last period, in BF16: the next "
                              "period starts here at this stable learning rate (continue-run.sh)"}
    print(f"promote: the trunk ({base_tokens + trunk['tokens']:,} tokens) copied into {dest}")


def score_default(model_dir, data_dir, ctx_key):
    """The current default's loss on each split, by train.py's own final-evaluation code."""
    import numpy as np  # noqa: F401
    import torch
    from checkpoint_io import load_checkpoint
    from train import load_tokens, mean_loss, split_windows
    torch.set_num_threads(2)
    model, cfg = load_checkpoint(model_dir)
    return {s: mean_loss(model, split_windows(load_tokens(data_dir, s), cfg.max_seq_len)) for s in SPLITS}


def engine_loss(model_dir, text_path, weights="f32"):
    """sasp-cli --perplexity's mean NLL (nats/token) of a text file, the matrices in `weights` (auto: the
    type the server loads by default on this CPU)."""
    cli = os.path.join(ROOT, "sasp-cli")
    out = subprocess.run([cli, "-m", model_dir, "-t", "2", "--weights", weights, "--perplexity", text_path],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"mean NLL:\s+([0-9.]+)", out).group(1))


def ship_in(model_dir, wtype, data):
    """Store model_dir's matrices in wtype (sasp-quantize) when that moves the held-out loss by at most
    0.1% on both splits, each scored by the C engine as the server serves it by default (issue 25: ship
    the model in the type it is served in; bf16 halves the file, and continued training resumes from
    train/trunk, not from these weights). Returns what was measured and decided."""
    tmp = model_dir.rstrip("/") + ".ship"
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([os.path.join(ROOT, "sasp-quantize"), model_dir, tmp, "--type", wtype], check=True,
                   capture_output=True)
    rec = {"type": wtype, "served_as": "auto"}
    for s in SPLITS:
        text = os.path.join(data, s + ".txt")
        rec[s.replace("-", "_")] = {"as_exported": engine_loss(model_dir, text, "auto"),
                                    wtype: engine_loss(tmp, text, "auto")}
    worst = max(abs(v[wtype] / v["as_exported"] - 1) for k, v in rec.items() if k.startswith("val_"))
    rec["shipped"] = worst <= 0.001
    if rec["shipped"]:
        shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(model_dir, "model.safetensors"))
    shutil.rmtree(tmp)
    print(f"promote: {wtype} moves the served loss by at most {100 * worst:.4f}% (limit 0.1%): "
          f"{'shipped in ' + wtype if rec['shipped'] else 'kept as exported'}")
    return rec


def write_state(path, state):
    with open(path, "w") as f:
        json.dump(state, f, indent=2)
        f.write("\n")


def bits_per_byte(nats, facts):
    return nats * facts["tokens"] / facts["bytes"] / math.log(2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="the run directory (log.jsonl, model/)")
    ap.add_argument("--default", default=os.path.join(ROOT, "models", "sasp-small"))
    ap.add_argument("--state", default=os.path.join(HERE, "default-state.json"))
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "corpus"))
    ap.add_argument("--trunk", default=os.path.join(HERE, "trunk"), help="where the kept trunk goes")
    ap.add_argument("--machine", default="", help="how to name this machine in the state file")
    ap.add_argument("--apply", action="store_true")
    ap.add_argument("--ship", default="bf16", choices=["bf16", "as-exported"],
                    help="the type the promoted model is stored in, when within 0.1%% (ship_in)")
    ap.add_argument("--rescore", action="store_true",
                    help="score the current default again (else its figures from the state file)")
    args = ap.parse_args(argv)
    start, final, trunk = read_log(args.run)
    new_dir = os.path.join(args.run, "model")
    ctx = start["config"]["max_seq_len"]
    manifest = json.load(open(os.path.join(args.data, "manifest.json")))
    new = {s: final["eval"][f"{s}@{ctx}"]["loss"] for s in SPLITS}
    state = json.load(open(args.state))
    last = state["periods"][-1]
    if args.rescore:
        old = score_default(args.default, args.data, ctx)
    else:  # the default's figures as its period recorded them (the validation splits do not change)
        old = {s: last[s.replace("-", "_")]["nats_per_token"] for s in SPLITS}
    c_engine = engine_loss(new_dir, os.path.join(args.data, "val-packages.txt"))
    agree = abs(c_engine - new["val-packages"]) / new["val-packages"]
    print("| split | default nats/token (bits/byte) | new | change |")
    print("|---|---|---|---|")
    for s in SPLITS:
        print(f"| {s} | {old[s]:.4f} ({bits_per_byte(old[s], manifest[s]):.4f}) | {new[s]:.4f} "
              f"({bits_per_byte(new[s], manifest[s]):.4f}) | {100 * (new[s] / old[s] - 1):+.2f}% |")
    print(f"C engine on val-packages.txt: {c_engine:.6f} nats/token against the trainer's {new['val-packages']:.6f} "
          f"({100 * agree:.3f}%; the text file also scores the separators)")
    better = all(new[s] < old[s] for s in SPLITS)
    ok = better and agree < 0.01
    print("verdict:", "promote" if ok else "keep the default" + ("" if better else " (held-out loss did not improve on both splits)")
          + ("" if agree < 0.01 else " (C engine disagrees by over 1%)"))
    a = start["args"]
    # the tokens already in the weights the run started from: the trunk's, or the default's
    from_trunk = os.path.normpath(a.get("init_from") or "") == os.path.normpath(os.path.join("train", "trunk"))
    base = state["trunk"]["tokens"] if from_trunk else state["cumulative_tokens"]
    # seconds of runs that were not promoted, in the trunk this run started from
    base_uncounted = state["trunk"].get("uncounted_seconds", 0) if from_trunk else 0
    if not args.apply:
        return 0 if ok else 1
    if trunk and os.path.isfile(os.path.join(args.run, "trunk", "model.safetensors")):
        keep_trunk(args.run, args.trunk, state, trunk, base, a["lr"], 0 if ok else base_uncounted + trunk["time"])
        state["data"]["cursor"] = final["data_cursor"]  # the trunk's lineage has taken these chunks
    if not ok:
        state.setdefault("not_promoted", []).append({
            "date": datetime.date.today().isoformat(), "tokens": final["tokens"], "machine": args.machine,
            **{s.replace("-", "_"): round(new[s], 4) for s in SPLITS}, "trunk_kept": bool(trunk)})
        write_state(args.state, state)
        return 1
    copy_model(new_dir, args.default)
    shipped = ship_in(args.default, args.ship, args.data) if args.ship != "as-exported" else None
    state["data"]["cursor"] = final["data_cursor"]
    state["cumulative_tokens"] = base + final["tokens"]
    state["cumulative_seconds"] += round(base_uncounted + final["train_seconds"])
    state["periods"].append({
        "date": datetime.date.today().isoformat(), "tokens": final["tokens"], "seconds": round(final["train_seconds"]),
        "steps": final["step"], "machine": args.machine, "precision": "bf16 autocast" if a.get("bf16") else "float32",
        "schedule": f"from {a.get('init_from')}: {a.get('warmup_steps')} warm-up steps, {a['lr']:g} stable, "
                    f"{a.get('decay')} decay over the last {a.get('decay_frac')} to {a['lr'] * a['min_lr_frac']:g}; "
                    f"context {a['ctx']}, last {a['long_frac']} at {a['long_ctx']}",
        "data": f"epoch order, chunks {a.get('data_cursor')} to {final['data_cursor']}",
        **{s.replace("-", "_"): {"nats_per_token": round(new[s], 4),
                                 "bits_per_byte": round(bits_per_byte(new[s], manifest[s]), 4)} for s in SPLITS},
        "c_engine_val_packages": round(c_engine, 6), **({"stored": shipped} if shipped else {})})
    write_state(args.state, state)
    print(f"promote: copied {new_dir} into {args.default}; {args.state} updated "
          f"(cumulative {state['cumulative_tokens']:,} tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
