#!/usr/bin/python3
"""train.py: train a SAS-P model (or the Pre-LN baseline, --arch preln) on the corpus of corpus.py.

The paper's recipe (../shared/spec/sasp-block.md, "Training recipe"): its initialisation
(sasp_model.init_paper_), AdamW (lr 1e-3, weight decay 0.1 on the matrices, eps 1e-8), 5% linear
warm-up then cosine decay to --min-lr-frac of the peak, gradient clipping at 1.0. Batches are random
windows of the training tokens. Every --eval-every steps the loss on a fixed set of validation windows
is logged; at the end the whole validation split is scored in non-overlapping windows (the same
method as eval_perplexity.py and sasp-cli --perplexity).

Outputs, under --out (runs/NAME):
  log.jsonl     one JSON object per line: {"kind": "train"|"val"|"final"|"start", ...}
  loss.png      training and validation loss against tokens seen (redrawn at every evaluation)
  ckpt.pt       model + optimizer + step + RNG states + args, written every --ckpt-minutes and at
                the end; --resume continues from it with the same schedule
and with --export DIR, the checkpoint format (config.json, model.safetensors, tokenizer.json).

--time-budget MINUTES measures the step time over the first steps and sets the step count so that
the whole run, its evaluations included, ends in that time; it re-plans at each evaluation until 85%
of the run (this machine's throughput varies with other work), and stops at the deadline whatever
happens.

  /usr/bin/python3 train/train.py --out runs/sasp-small --time-budget 70 --export models/sasp-small
  /usr/bin/python3 train/train.py --arch preln --d-model 128 --n-layers 4 --ctx 128 --steps 3000 ...
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sasp_model import ModelConfig, SASPModel, init_paper_, param_count  # noqa: E402
from checkpoint_io import save_checkpoint  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="train a SAS-P (or Pre-LN) model",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="data/corpus", help="corpus.py output directory")
    ap.add_argument("--out", required=True, help="run directory (log, plot, resumable checkpoint)")
    ap.add_argument("--export", help="write the trained model here in the checkpoint format")
    ap.add_argument("--export-dtype", default="auto", choices=["auto", "F32", "F16", "BF16"],
                    help="auto: F32 unless the weights would exceed 25 MB, then F16")
    # model
    ap.add_argument("--arch", default="sasp", choices=["sasp", "preln"])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=6)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=0, help="0: 4 * d-model")
    ap.add_argument("--ctx", type=int, default=256, help="training window = the model's max_seq_len")
    ap.add_argument("--norm", default="rmsnorm", choices=["rmsnorm", "layernorm", "none"])
    ap.add_argument("--activation", default="relu", choices=["relu", "gelu", "silu"])
    # optimisation
    ap.add_argument("--batch-size", type=int, default=16, help="windows per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="final lr / peak lr")
    ap.add_argument("--decay", default="cosine", choices=["cosine", "linear"])
    ap.add_argument("--warmup-frac", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--beta2", type=float, default=0.95,
                    help="AdamW's second-moment decay (the paper's Hugging Face runs: 0.999)")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16 for the matrices")
    # length
    ap.add_argument("--steps", type=int, default=0, help="total optimizer steps")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="minutes for the whole run: sets --steps from measured throughput")
    ap.add_argument("--probe-steps", type=int, default=12, help="steps timed for --time-budget")
    # bookkeeping
    ap.add_argument("--eval-every", type=int, default=200, help="steps between validation losses")
    ap.add_argument("--eval-windows", type=int, default=48, help="validation windows per evaluation")
    ap.add_argument("--no-final-eval", action="store_true",
                    help="skip scoring the whole validation split at the end")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.d_ff:
        args.d_ff = 4 * args.d_model
    if not args.steps and not args.time_budget and not args.resume:
        ap.error("give --steps or --time-budget")
    return args


# ---------------------------------------------------------------------------------------------
# data

def load_tokens(data_dir, split):
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.isfile(path):
        sys.exit(f"train: {path} is missing: run train/corpus.py first")
    return np.memmap(path, dtype=np.uint16, mode="r")


def random_batch(tokens, batch, ctx, rng):
    """batch random windows: inputs [B, ctx] and their next tokens [B, ctx]."""
    starts = rng.integers(0, len(tokens) - ctx - 1, size=batch)
    w = np.stack([tokens[s:s + ctx + 1] for s in starts]).astype(np.int64)
    w = torch.from_numpy(w)
    return w[:, :-1], w[:, 1:]


def val_windows(tokens, ctx, n):
    """n non-overlapping windows of ctx + 1 tokens spread evenly over the validation split (all of
    them when n is 0): a fixed set, so the curve is comparable from evaluation to evaluation."""
    total = (len(tokens) - 1) // ctx
    idx = range(total) if n <= 0 or n >= total else np.linspace(0, total - 1, n).round().astype(int)
    return [np.asarray(tokens[i * ctx:i * ctx + ctx + 1], dtype=np.int64) for i in idx]


@torch.no_grad()
def mean_loss(model, windows, batch=16, bf16=False):
    """Mean next-token NLL (nats) over every predicted position of the windows."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = torch.from_numpy(np.stack(windows[i:i + batch]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                               reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
    model.train()
    return total / count


# ---------------------------------------------------------------------------------------------
# schedule and optimiser

def lr_at(step, total, args):
    """Linear warm-up over warmup_frac of total, then cosine (or linear) decay to min_lr_frac."""
    warm = max(1, int(round(args.warmup_frac * total)))
    if step < warm:
        return args.lr * (step + 1) / warm
    frac = min(1.0, (step - warm) / max(1, total - warm))
    shape = 0.5 * (1 + math.cos(math.pi * frac)) if args.decay == "cosine" else 1 - frac
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * shape)


def make_optimizer(model, args):
    """AdamW; weight decay on the matrices (embedding included), none on gains, norms and biases."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": other, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, getattr(args, "beta2", 0.95)), eps=args.eps)


# ---------------------------------------------------------------------------------------------
# logging, plotting, checkpoints

class Progress:
    """One stderr line, refreshed in place on a terminal; on a file, a new line every 30 s."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text, force=False):
        now = time.time()
        if self.tty:
            sys.stderr.write("\r" + text + "\033[K")
            sys.stderr.flush()
        elif force or now - self.last >= 30:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
            self.last = now

    def newline(self):
        if self.tty:
            sys.stderr.write("\n")


def fmt_time(s):
    s = int(max(0, s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def read_log(path):
    rows = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def plot_losses(runs, path, title):
    """runs: list of (label, rows from log.jsonl). Training loss (smoothed) and validation loss
    against tokens seen, in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    shown = []
    for i, (label, rows) in enumerate(runs):
        color = f"C{i}"
        # a resumed run repeats the steps after its last checkpoint: keep the last record of each
        last = {}
        for r in rows:
            if r.get("kind") in ("train", "val"):
                last[(r["kind"], r["step"])] = r
        rows = sorted(last.values(), key=lambda r: r["step"])
        tr = [(r["tokens"], r["loss"]) for r in rows if r.get("kind") == "train"]
        va = [(r["tokens"], r["val_loss"]) for r in rows if r.get("kind") == "val"]
        if tr:
            x, y = zip(*tr)
            y = np.asarray(y)
            k = max(1, min(len(y) // 15, 25))
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            shown.extend(ys)
            ax.plot(np.asarray(x)[k - 1:] / 1e6, ys, color=color, alpha=0.35, lw=1,
                    label=f"{label} train (smoothed)")
        if va:
            x, y = zip(*va)
            shown.extend(y)
            ax.plot(np.asarray(x) / 1e6, y, color=color, marker="o", ms=3, lw=1.5,
                    label=f"{label} validation")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if shown:  # the start of training (loss ~ log(vocab)) would flatten the rest
        lo = min(shown)
        ax.set_ylim(lo - 0.1, min(max(shown), lo + 3.0) + 0.1)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def save_state(path, model, opt, step, total, tokens_seen, elapsed, rng, args, extra=None):
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "total_steps": total, "tokens_seen": tokens_seen, "elapsed": elapsed,
             "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
             "args": vars(args)}
    state.update(extra or {})
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "ckpt.pt")
    log_path = os.path.join(args.out, "log.jsonl")

    state = None
    if args.resume:
        if not os.path.isfile(ckpt_path):
            sys.exit(f"train: --resume: {ckpt_path} does not exist")
        state = torch.load(ckpt_path)
        saved = argparse.Namespace(**state["args"])
        # The run's shape and schedule come from the checkpoint; bookkeeping options from this call.
        for k in ("threads", "export", "export_dtype", "eval_every", "log_every", "ckpt_minutes",
                  "no_final_eval"):
            setattr(saved, k, getattr(args, k))
        args = saved
        args.resume = True

    manifest_path = os.path.join(args.data, "manifest.json")
    manifest = json.load(open(manifest_path)) if os.path.isfile(manifest_path) else {}
    tok_path = os.path.join(args.data, "tokenizer.json")
    vocab_size = manifest.get("tokenizer", {}).get("vocab_size")
    if vocab_size is None:
        sys.exit(f"train: {manifest_path} has no tokenizer: run train/corpus.py first")
    eot = manifest["tokenizer"]["eot_id"]
    train_tokens = load_tokens(args.data, "train")
    val_tokens = load_tokens(args.data, "val")

    cfg = ModelConfig(architecture=args.arch, vocab_size=vocab_size, d_model=args.d_model,
                      n_layers=args.n_layers, n_heads=args.n_heads, d_ff=args.d_ff,
                      max_seq_len=args.ctx, norm=args.norm, activation=args.activation,
                      position="rope", tie_embeddings=True, bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(args.seed)
    model = SASPModel(cfg)
    init_paper_(model)
    opt = make_optimizer(model, args)
    rng = np.random.default_rng(args.seed)
    step, tokens_seen, elapsed_before = 0, 0, 0.0
    total = args.steps
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, total = state["step"], state["total_steps"]
        tokens_seen, elapsed_before = state["tokens_seen"], state["elapsed"]
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"train: resumed {ckpt_path} at step {step}/{total}", file=sys.stderr)
    n_params = param_count(model)
    tokens_per_step = args.batch_size * args.ctx
    vwin = val_windows(val_tokens, args.ctx, args.eval_windows)

    log_f = open(log_path, "a")

    def log(obj):
        log_f.write(json.dumps(obj) + "\n")
        log_f.flush()

    if state is None:
        log({"kind": "start", "time": time.time(), "args": vars(args), "config": cfg.to_dict(),
             "params": n_params, "params_non_embedding": param_count(model, False),
             "corpus_sha256": manifest.get("corpus_sha256"), "train_tokens": len(train_tokens),
             "val_tokens": len(val_tokens), "torch": torch.__version__, "threads": args.threads})
    print(f"train: {args.arch} d={args.d_model} L={args.n_layers} H={args.n_heads} F={args.d_ff} "
          f"ctx={args.ctx} vocab={vocab_size}: {n_params:,} parameters; {len(train_tokens):,} "
          f"training tokens; {tokens_per_step} tokens/step", file=sys.stderr)

    # --time-budget: plan the step count from measured step and evaluation times.
    budget = args.time_budget * 60.0
    t_start = time.time() - elapsed_before
    deadline = t_start + budget if budget else None
    planning = bool(budget) and state is None
    if planning:
        total = 10 ** 9  # provisional; fixed after the probe (probe steps use a tiny warm-up lr)
    eval_seconds = None
    final_eval_cost = 0.0
    if state is not None:  # a resumed run keeps its wall-clock deadline and measured costs
        deadline = state.get("deadline", deadline)
        eval_seconds = state.get("eval_seconds")
        final_eval_cost = state.get("final_eval_cost", 0.0)
    if args.no_final_eval:
        final_eval_cost = 0.0

    def plan(now, step_time):
        """Steps that fit in what is left of the budget, evaluations and export included."""
        left = deadline - now - 20.0 - (final_eval_cost if not args.no_final_eval else 0.0)
        per_step = step_time + (eval_seconds or 0.0) / args.eval_every
        return step + max(1, int(left / per_step))

    def extra():
        return {"deadline": deadline, "eval_seconds": eval_seconds, "final_eval_cost": final_eval_cost}

    # SIGTERM or SIGINT: finish the step, write ckpt.pt and stop (resume with --resume).
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    progress = Progress()
    model.train()
    last_ckpt = time.time()
    window_t, window_tokens = time.time(), 0
    step_times = []
    resume_step = step
    tok_s = 0.0
    while step < total:
        if deadline and time.time() > deadline - 10 - final_eval_cost:
            print(f"\ntrain: deadline reached at step {step}/{total}: stopping", file=sys.stderr)
            total = step
            break
        t0 = time.time()
        lr = lr_at(step, total if not planning else 100 * args.probe_steps, args)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = random_batch(train_tokens, args.batch_size, args.ctx, rng)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
        opt.step()
        step += 1
        tokens_seen += tokens_per_step
        window_tokens += tokens_per_step
        step_times.append(time.time() - t0)
        loss_v = loss.item()
        if not math.isfinite(loss_v):
            sys.exit(f"train: loss is {loss_v} at step {step}: stopping")

        if planning and step == args.probe_steps:
            # The first two steps warm caches and allocators; time the rest.
            st = float(np.median(step_times[2:]))
            t_e = time.time()
            mean_loss(model, vwin, bf16=args.bf16)
            eval_seconds = time.time() - t_e
            n_full = (len(val_tokens) - 1) // args.ctx
            # The final evaluation runs in float32: count it at 1.5 times the probe's cost.
            if not args.no_final_eval:
                final_eval_cost = 1.5 * eval_seconds * n_full / max(1, len(vwin))
            total = plan(time.time(), st)
            planning = False
            print(f"train: measured {st * 1000:.0f} ms/step ({tokens_per_step / st:.0f} tok/s), "
                  f"{eval_seconds:.1f} s/eval: {total} steps fit in the budget", file=sys.stderr)
            log({"kind": "plan", "step": step, "step_seconds": st, "eval_seconds": eval_seconds,
                 "total_steps": total})
        elif budget and state is not None and step == resume_step + args.probe_steps:
            # A resumed run may run at another speed (threads, load): re-plan on its first steps.
            st = float(np.mean(step_times[2:]))
            new_total = plan(time.time(), st)
            log({"kind": "plan", "step": step, "step_seconds": st, "total_steps": new_total})
            total = new_total
        elif budget and not planning and step % args.eval_every == 0 and step < 0.85 * total:
            # Re-plan at each evaluation until 85% of the run, on the mean of the recent step times
            # (the mean, not the median: slow steps under other load cost wall time all the same).
            st = float(np.mean(step_times[-4 * args.eval_every:]))
            new_total = plan(time.time(), st)
            if abs(new_total - total) > 0.02 * total:
                log({"kind": "plan", "step": step, "step_seconds": st, "total_steps": new_total})
                total = new_total

        if step % args.log_every == 0 or step == total:
            now = time.time()
            tok_s = window_tokens / max(1e-9, now - window_t)
            window_t, window_tokens = now, 0
            log({"kind": "train", "step": step, "tokens": tokens_seen, "loss": loss_v, "lr": lr,
                 "grad_norm": gnorm, "tok_s": tok_s, "time": now - t_start})
        now = time.time()
        rate = tokens_per_step / max(1e-9, float(np.median(step_times[-50:])))
        eta = (total - step) * tokens_per_step / rate if total < 10 ** 9 else 0
        progress.show(f"step {step}/{total if total < 10 ** 9 else '?'} loss {loss_v:.3f} "
                      f"lr {lr:.2e} {rate:.0f} tok/s elapsed {fmt_time(now - t_start)} "
                      f"ETA {fmt_time(eta)}")

        if step % args.eval_every == 0 or step == total:
            t_e = time.time()
            vl = mean_loss(model, vwin, bf16=args.bf16)
            eval_seconds = time.time() - t_e
            log({"kind": "val", "step": step, "tokens": tokens_seen, "val_loss": vl,
                 "time": time.time() - t_start})
            progress.show(f"step {step}/{total} val loss {vl:.4f} (ppl {math.exp(vl):.2f})",
                          force=True)
            progress.newline()
            plot_losses([(args.arch, read_log(log_path))], os.path.join(args.out, "loss.png"),
                        f"{args.arch} d={args.d_model} L={args.n_layers} ctx={args.ctx}")
        if stop:
            save_state(ckpt_path, model, opt, step, total, tokens_seen, time.time() - t_start,
                       rng, args, extra())
            log({"kind": "stopped", "step": step, "signal": stop[0]})
            print(f"\ntrain: signal {stop[0]}: saved {ckpt_path} at step {step}; "
                  f"continue with --resume", file=sys.stderr)
            return 3
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save_state(ckpt_path, model, opt, step, total, tokens_seen, time.time() - t_start,
                       rng, args, extra())
            last_ckpt = time.time()

    train_seconds = time.time() - t_start
    save_state(ckpt_path, model, opt, step, total, tokens_seen, train_seconds, rng, args, extra())
    progress.newline()
    result = {"kind": "final", "step": step, "tokens": tokens_seen, "train_seconds": train_seconds,
              "params": n_params, "mean_tok_s": tokens_seen / max(1e-9, train_seconds)}
    if not args.no_final_eval:
        t_e = time.time()
        full = mean_loss(model, val_windows(val_tokens, args.ctx, 0), bf16=False)
        result.update({"val_loss_full": full, "val_ppl_full": math.exp(full),
                       "val_windows": (len(val_tokens) - 1) // args.ctx,
                       "eval_seconds": time.time() - t_e})
        print(f"train: whole validation split: loss {full:.4f}, perplexity {math.exp(full):.2f}",
              file=sys.stderr)
    log(result)
    plot_losses([(args.arch, read_log(log_path))], os.path.join(args.out, "loss.png"),
                f"{args.arch} d={args.d_model} L={args.n_layers} ctx={args.ctx}")

    if args.export:
        dtype = args.export_dtype
        if dtype == "auto":
            dtype = "F32" if n_params * 4 <= 25 * 1000 * 1000 else "F16"
        meta = {"steps": str(step), "tokens_seen": str(tokens_seen),
                "train_seconds": f"{train_seconds:.0f}", "corpus_sha256": str(manifest.get("corpus_sha256")),
                "arch": args.arch, "lr": str(args.lr), "batch_size": str(args.batch_size)}
        if "val_loss_full" in result:
            meta["val_loss"] = f"{result['val_loss_full']:.5f}"
        save_checkpoint(model, cfg, args.export, dtype=dtype, metadata=meta, tokenizer_json_path=tok_path)
        print(f"train: exported {args.export} ({dtype})", file=sys.stderr)
    log_f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
