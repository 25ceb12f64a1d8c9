#!/usr/bin/python3
"""train.py: train a SAS-P model (or the Pre-LN baseline, --arch preln) on the corpus of corpus.py.

The paper's recipe (docs/sasp-block.md, "Training recipe"): its initialisation
(sasp_model.init_paper_), AdamW (lr 1e-3, weight decay 0.1 on the matrices, eps 1e-8), 5% linear
warm-up then cosine decay to --min-lr-frac of the peak, gradient clipping at 1.0. Batches are random
windows of the training tokens; with --fim-rate, that share of windows is rearranged for
fill-in-the-middle (fim_window). With --long-ctx, the last --long-frac of the steps train on windows of
that length (the same tokens per step, fewer windows): the model learns its full context at the end,
where a long window costs the most.

Every --eval-every steps the loss on a fixed set of windows of each validation split (held-out files
of the training packages, and whole held-out packages) is logged; at the end each split is scored
whole in non-overlapping windows of the model's context (the method of eval_perplexity.py and
sasp-cli --perplexity), in nats per token and bits per byte.

Outputs, under --out (runs/NAME):
  log.jsonl     one JSON object per line: {"kind": "start"|"plan"|"train"|"val"|"stopped"|"final", ...}
  loss.png      training and validation loss against tokens seen (redrawn at every evaluation)
  ckpt.pt       model + optimizer + step + RNG states + args, written every --ckpt-minutes and at
                the end; --resume continues from it with the same schedule and the budget left
                (or, with --time-budget, a new budget for the whole run, re-planned as it goes)
and with --export DIR, the checkpoint format (config.json, model.safetensors, tokenizer.json).

The length of a run is --steps, or --flops-budget (a fixed amount of compute, for comparing shapes),
or --time-budget MINUTES of running time: the step time is measured over the first steps and the step
count set so that the run, its evaluations included, ends in that time. It re-plans at each
evaluation until 85% of the run (this machine's throughput varies with other work). Time spent
stopped (between a SIGTERM and --resume, or in a kill -STOP pause during a step) does not count.

Continued training (train/continue-run.sh): --init-from a model directory, --schedule wsd (warm-up,
stable, a decay over the last --decay-frac before the export), and --data-order epoch with
--data-cursor, so that each working period trains on chunks the model has not seen this epoch.
--trunk DIR writes the weights at the first step of the decay (BF16): warmup-stable-decay's trunk, from
which the next period goes on at the stable learning rate while the decayed branch is the export.

  /usr/bin/python3 train/train.py --out runs/default --time-budget 240 --long-ctx 1024 --export models/sasp-small
  /usr/bin/python3 train/train.py --arch preln --d-model 128 --n-layers 4 --steps 3000 --out runs/cmp-preln
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import runtime  # noqa: E402,F401  (first: OMP_WAIT_POLICY and malloc's thresholds, train/runtime.py)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from sasp_model import ModelConfig, SASPModel, init_paper_, lm_loss, param_count, forward_flops  # noqa: E402
from checkpoint_io import save_checkpoint, load_checkpoint  # noqa: E402

VAL_SPLITS = ("val-files", "val-packages")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="train a SAS-P (or Pre-LN) model",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="data/corpus", help="corpus.py output directory")
    ap.add_argument("--out", required=True, help="run directory (log, plot, resumable checkpoint)")
    ap.add_argument("--export", help="write the trained model here in the checkpoint format")
    ap.add_argument("--trunk", help="write the weights (BF16) here at the first step of the decay: the next "
                                    "period's start (wsd)")
    ap.add_argument("--export-dtype", default="auto", choices=["auto", "F32", "F16", "BF16"],
                    help="auto: F32 unless the weights would exceed 25 MB, then BF16")
    # model
    ap.add_argument("--arch", default="sasp", choices=["sasp", "preln"])
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=6)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=0, help="0: 4 * d-model")
    ap.add_argument("--ctx", type=int, default=256, help="training window")
    ap.add_argument("--long-ctx", type=int, default=0,
                    help="the model's context (max_seq_len), trained in the last --long-frac of steps")
    ap.add_argument("--long-frac", type=float, default=0.1)
    ap.add_argument("--norm", default="rmsnorm", choices=["rmsnorm", "layernorm", "none"])
    ap.add_argument("--activation", default="relu", choices=["relu", "gelu", "silu"])
    ap.add_argument("--fim-rate", type=float, default=0.0,
                    help="share of windows rearranged as prefix/suffix/middle (needs the FIM tokens)")
    # optimisation
    ap.add_argument("--batch-size", type=int, default=16, help="windows of --ctx per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1, help="final lr / peak lr")
    ap.add_argument("--decay", default="cosine", choices=["cosine", "linear", "sqrt"],
                    help="shape of the decay (sqrt: 1 - sqrt(fraction), the usual WSD cool-down)")
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "wsd"],
                    help="cosine: warm-up then decay over the whole run; wsd: warm-up, stable at --lr, "
                         "then --decay over the last --decay-frac of the steps")
    ap.add_argument("--decay-frac", type=float, default=0.2, help="wsd: share of the steps that decay")
    ap.add_argument("--warmup-frac", type=float, default=0.05)
    ap.add_argument("--warmup-steps", type=int, default=0, help="overrides --warmup-frac when > 0")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--beta2", type=float, default=0.95,
                    help="AdamW's second-moment decay (the paper's Hugging Face runs: 0.999)")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--bf16", action="store_true",
                    help="CPU autocast to bfloat16 for the matrices (fast only where the CPU has AVX512_BF16 or AMX)")
    # length
    ap.add_argument("--steps", type=int, default=0, help="total optimizer steps")
    ap.add_argument("--time-budget", type=float, default=0, help="minutes of running time")
    ap.add_argument("--flops-budget", type=float, default=0,
                    help="training FLOPs (3 x forward_flops per token): a fixed compute budget")
    ap.add_argument("--probe-steps", type=int, default=12, help="steps timed for --time-budget")
    # bookkeeping
    ap.add_argument("--eval-every", type=int, default=200, help="steps between validation losses")
    ap.add_argument("--eval-windows", type=int, default=48, help="windows of each split per evaluation")
    ap.add_argument("--final-eval-ctx", default="both", choices=["both", "model"],
                    help="the final evaluation's windows: the model's context and --ctx, or the model's only "
                         "(continued training: half the time, and the only figure promote.py reads)")
    ap.add_argument("--no-final-eval", action="store_true",
                    help="skip scoring the whole validation splits at the end")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--ckpt-minutes", type=float, default=5.0)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--init-from", help="start from this model directory's weights (continued training; "
                                        "the optimiser starts afresh, so give a warm-up)")
    ap.add_argument("--data-order", default="random", choices=["random", "epoch"],
                    help="random: windows at random offsets; epoch: a permutation of --chunk-tokens "
                         "chunks taken in turn from --data-cursor, so no chunk is seen twice in an epoch")
    ap.add_argument("--data-seed", type=int, default=1, help="epoch order: seed of epoch 0's permutation")
    ap.add_argument("--data-cursor", type=int, default=0,
                    help="epoch order: chunks already consumed (epochs * chunks + position)")
    ap.add_argument("--chunk-tokens", type=int, default=1024, help="epoch order: chunk length")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not args.d_ff:
        args.d_ff = 4 * args.d_model
    if args.long_ctx and args.long_ctx < args.ctx:
        ap.error("--long-ctx must be at least --ctx")
    if not (args.steps or args.time_budget or args.flops_budget or args.resume):
        ap.error("give --steps, --time-budget or --flops-budget")
    return args


# ---------------------------------------------------------------------------------------------
# data

def load_tokens(data_dir, split):
    path = os.path.join(data_dir, f"{split}.bin")
    if not os.path.isfile(path):
        sys.exit(f"train: {path} is missing: run train/corpus.py build first")
    return np.memmap(path, dtype=np.uint16, mode="r")


def fim_window(w, fim, eot, rng):
    """Rearrange the first document of window w (int64, n tokens) for fill-in-the-middle, in the
    prefix-suffix-middle order: [PRE] prefix [SUF] suffix [MID] middle [EOT], then the rest of the
    window, cut back to n tokens. The cuts are two uniform token positions of the document; a window
    with no <|endoftext|> is taken as a document of n - 4 tokens, so that its [EOT] stays in."""
    pre, suf, mid = fim
    n = len(w)
    ends = np.flatnonzero(w == eot)
    if len(ends) and ends[0] <= n - 4:
        doc_end, rest = int(ends[0]), w[int(ends[0]) + 1:]
    else:  # no document end, or too near the window's end to keep the rearranged middle whole
        doc_end, rest = n - 4, w[:0]
    if doc_end < 2:
        return w
    doc = w[:doc_end]
    i, j = sorted(rng.integers(0, doc_end + 1, size=2))
    out = np.concatenate([[pre], doc[:i], [suf], doc[j:], [mid], doc[i:j], [eot], rest])
    return out[:n]


def random_batch(tokens, batch, ctx, rng, fim=None, fim_rate=0.0, eot=0):
    """batch random windows: inputs [B, ctx] and their next tokens [B, ctx]. fim: the ids of
    (<|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>) when fim_rate > 0."""
    starts = rng.integers(0, len(tokens) - ctx - 1, size=batch)
    w = np.stack([tokens[s:s + ctx + 1] for s in starts]).astype(np.int64)
    if fim_rate > 0:
        for b in range(batch):
            if rng.random() < fim_rate:
                w[b] = fim_window(w[b], fim, eot, rng)
    w = torch.from_numpy(w)
    return w[:, :-1], w[:, 1:]


class EpochOrder:
    """The training tokens as chunks of chunk_tokens taken in a seeded random order, one epoch after
    another (epoch e's order is a permutation seeded by seed + e). cursor counts the chunks consumed
    since the first epoch began: saved with a run and carried from one run to the next, it keeps a
    continued training run off the chunks its predecessors saw until the epoch ends."""

    def __init__(self, n_tokens, chunk_tokens, seed, cursor):
        self.chunk, self.seed, self.cursor = chunk_tokens, seed, cursor
        self.n_chunks = (n_tokens - 1) // chunk_tokens
        self.epoch, self.perm = -1, None

    def take(self, n):
        """The start offsets of the next n chunks."""
        out = []
        for _ in range(n):
            e, i = divmod(self.cursor, self.n_chunks)
            if e != self.epoch:
                self.epoch = e
                self.perm = np.random.default_rng(self.seed + e).permutation(self.n_chunks)
            out.append(int(self.perm[i]) * self.chunk)
            self.cursor += 1
        return out


def epoch_batch(tokens, order, batch, ctx, rng, fim=None, fim_rate=0.0, eot=0):
    """batch windows of ctx tokens cut from the next chunks of order (a chunk of 1,024 gives four
    windows of 256): the same inputs and targets as random_batch, from data not seen this epoch."""
    per_chunk = max(1, order.chunk // ctx)
    starts = [s + k * ctx for s in order.take(-(-batch // per_chunk)) for k in range(per_chunk)][:batch]
    w = np.stack([tokens[s:s + ctx + 1] for s in starts]).astype(np.int64)
    if fim_rate > 0:
        for b in range(batch):
            if rng.random() < fim_rate:
                w[b] = fim_window(w[b], fim, eot, rng)
    w = torch.from_numpy(w)
    return w[:, :-1], w[:, 1:]


def val_windows(tokens, ctx, n):
    """n non-overlapping windows of ctx + 1 tokens spread evenly over a validation split (all of
    them when n is 0): a fixed set, so the curve is comparable from evaluation to evaluation."""
    total = (len(tokens) - 1) // ctx
    idx = range(total) if n <= 0 or n >= total else np.linspace(0, total - 1, n).round().astype(int)
    return [np.asarray(tokens[i * ctx:i * ctx + ctx + 1], dtype=np.int64) for i in idx]


def split_windows(tokens, ctx):
    """The whole split in non-overlapping windows of ctx tokens (the last may be shorter), each
    predicting its tokens 1..n-1: the method of eval_perplexity.py and sasp-cli --perplexity."""
    return [np.asarray(tokens[s:s + ctx], dtype=np.int64) for s in range(0, len(tokens), ctx)
            if len(tokens[s:s + ctx]) > 1]


@torch.no_grad()
def mean_loss(model, windows, batch=16, bf16=False):
    """Mean next-token NLL (nats) over every predicted position of the windows (which may differ in
    length: windows of one length are batched together)."""
    model.eval()
    total, count = 0.0, 0
    by_len = {}
    for w in windows:
        by_len.setdefault(len(w), []).append(w)
    for group in by_len.values():
        for i in range(0, len(group), batch):
            w = torch.from_numpy(np.stack(group[i:i + batch]))
            total += lm_loss(model, w[:, :-1], w[:, 1:], bf16, reduction="sum").item()
            count += w[:, 1:].numel()
    model.train()
    return total / max(1, count)


def bits_per_byte(nats_per_token, split_facts):
    """nats/token to bits/byte with the split's bytes per token (corpus.py's manifest)."""
    if not split_facts or not split_facts.get("bytes") or not split_facts.get("tokens"):
        return float("nan")
    return nats_per_token * split_facts["tokens"] / split_facts["bytes"] / math.log(2)


# ---------------------------------------------------------------------------------------------
# schedule and optimiser

def decay_start(total, args):
    """The first step of the decay: after the warm-up (cosine) or at 1 - decay_frac (wsd)."""
    warm = getattr(args, "warmup_steps", 0) or max(1, int(round(args.warmup_frac * total)))
    if getattr(args, "schedule", "cosine") == "wsd":
        return max(warm, total - int(round(args.decay_frac * total)))
    return warm


def lr_at(step, total, args):
    """Linear warm-up over --warmup-steps (or warmup_frac of total), then either a decay over the
    rest (cosine) or the peak until decay_start and a decay over the last decay_frac (wsd), to
    min_lr_frac of the peak."""
    warm = getattr(args, "warmup_steps", 0) or max(1, int(round(args.warmup_frac * total)))
    if step < warm:
        return args.lr * (step + 1) / warm
    start = decay_start(total, args)
    if step < start:
        return args.lr
    frac = min(1.0, (step - start) / max(1, total - start))
    shape = {"cosine": 0.5 * (1 + math.cos(math.pi * frac)), "linear": 1 - frac,
             "sqrt": 1 - math.sqrt(frac)}[args.decay]
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * shape)


def has_long_stage(args):
    return bool(args.long_ctx) and args.long_ctx > args.ctx


def long_start(total, args):
    """The first step of the last --long-frac of the steps, at --long-ctx when there is a long stage."""
    return total - int(round(args.long_frac * total))


def window_at(step, total, args):
    """(window length, windows per step) at a step: --ctx, then --long-ctx for the last --long-frac."""
    if has_long_stage(args) and step >= long_start(total, args):
        return args.long_ctx, max(1, args.batch_size * args.ctx // args.long_ctx)
    return args.ctx, args.batch_size


def make_optimizer(model, args):
    """AdamW; weight decay on the matrices (embedding included), none on gains, norms and biases."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": other, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, getattr(args, "beta2", 0.95)), eps=args.eps)


def train_step(model, opt, x, y, args):
    """Forward, cross-entropy, backward, clipping, AdamW. Returns (loss, gradient norm)."""
    loss = lm_loss(model, x, y, args.bf16)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
    opt.step()
    return loss.item(), gnorm


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


def last_records(rows):
    """A resumed run repeats the steps after its last checkpoint: the last record of each step."""
    last = {}
    for r in rows:
        if r.get("kind") in ("train", "val"):
            last[(r["kind"], r["step"])] = r
    return sorted(last.values(), key=lambda r: r["step"])


def plot_losses(runs, path, title, x_key="tokens"):
    """runs: list of (label, rows from log.jsonl). Training loss (smoothed) and validation losses
    against tokens seen (or x_key "flops"), in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    shown = []
    for i, (label, rows) in enumerate(runs):
        color = f"C{i}"
        rows = last_records(rows)
        tr = [(r[x_key], r["loss"]) for r in rows if r.get("kind") == "train" and x_key in r]
        if tr:
            x, y = zip(*tr)
            y = np.asarray(y)
            k = max(1, min(len(y) // 15, 25))
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            shown.extend(ys)
            ax.plot(np.asarray(x)[k - 1:] / 1e6, ys, color=color, alpha=0.35, lw=1,
                    label=f"{label} train (smoothed)")
        for key, style in (("val_loss", "o-"), ("val_packages", "s--")):
            va = [(r[x_key], r[key]) for r in rows if r.get("kind") == "val" and key in r and x_key in r]
            if va:
                x, y = zip(*va)
                shown.extend(y)
                name = "held-out files" if key == "val_loss" else "held-out packages"
                ax.plot(np.asarray(x) / 1e6, y, style, color=color, ms=3, lw=1.2, label=f"{label} {name}")
    ax.set_xlabel("training tokens (millions)" if x_key == "tokens" else f"{x_key} (millions)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if shown:  # the start of training (loss ~ log(vocab)) would flatten the rest
        lo = min(shown)
        ax.set_ylim(lo - 0.1, min(max(shown), lo + 3.0) + 0.1)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def save_state(path, run):
    state = {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "step": run.step,
             "total_steps": run.total, "tokens_seen": run.tokens_seen, "elapsed": run.elapsed(),
             "numpy_rng": run.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
             "args": vars(run.args), "budget": run.budget, "eval_seconds": run.eval_seconds,
             "final_eval_cost": run.final_eval_cost, "long_step_ratio": run.long_step_ratio,
             "data_cursor": run.order.cursor if run.order else None}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# a run

class Run:
    """The state of one training run: model, optimiser, data, schedule, budget, log."""

    def __init__(self, args):
        self.ckpt_path = os.path.join(args.out, "ckpt.pt")
        state, new_budget = None, args.time_budget if args.resume else 0
        if args.resume:
            if not os.path.isfile(self.ckpt_path):
                sys.exit(f"train: --resume: {self.ckpt_path} does not exist")
            state = torch.load(self.ckpt_path)
            saved = argparse.Namespace(**{"final_eval_ctx": "both", **state["args"]})  # runs before the option
            # The run's shape and schedule come from the checkpoint; bookkeeping options from this call.
            for k in ("threads", "export", "export_dtype", "eval_every", "log_every", "ckpt_minutes",
                      "no_final_eval"):
                setattr(saved, k, getattr(args, k))
            args, args.resume = saved, True
        self.args = args
        self.load_data()
        self.build_model()
        self.step, self.total, self.tokens_seen, elapsed = 0, args.steps, 0, 0.0
        self.budget = args.time_budget * 60.0
        self.eval_seconds, self.final_eval_cost, self.long_step_ratio = None, 0.0, None
        if state is not None:
            self.restore(state)
            if new_budget and self.budget:  # a new length for a time-budget run: re-planned as it goes
                self.budget, args.time_budget = new_budget * 60.0, new_budget
                print(f"train: time budget now {new_budget:g} minutes", file=sys.stderr)
            elapsed = state["elapsed"]
        self.t_start = time.time() - elapsed
        self.log_f = open(os.path.join(args.out, "log.jsonl"), "a")

    def load_data(self):
        a = self.args
        path = os.path.join(a.data, "manifest.json")
        self.manifest = json.load(open(path)) if os.path.isfile(path) else {}
        tok = self.manifest.get("tokenizer", {})
        if tok.get("vocab_size") is None:
            sys.exit(f"train: {path} has no tokenizer: run train/corpus.py build first")
        self.vocab_size, self.eot = tok["vocab_size"], tok.get("eot_id", 0)
        sp = tok.get("specials", {})
        self.fim = tuple(sp.get(k) for k in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"))
        if a.fim_rate > 0 and None in self.fim:
            sys.exit("train: --fim-rate needs a tokenizer with the <|fim_*|> tokens (corpus.py build)")
        self.train_tokens = load_tokens(a.data, "train")
        splits = [s for s in VAL_SPLITS if os.path.isfile(os.path.join(a.data, f"{s}.bin"))] or ["val"]
        self.val = {s: load_tokens(a.data, s) for s in splits}
        self.vwin = {s: val_windows(t, a.ctx, a.eval_windows) for s, t in self.val.items()}
        self.order = None
        if getattr(a, "data_order", "random") == "epoch":
            self.order = EpochOrder(len(self.train_tokens), a.chunk_tokens, a.data_seed, a.data_cursor)

    def batch(self, batch, ctx):
        """The next training batch, in the run's data order."""
        a = self.args
        if self.order:
            return epoch_batch(self.train_tokens, self.order, batch, ctx, self.rng, self.fim, a.fim_rate, self.eot)
        return random_batch(self.train_tokens, batch, ctx, self.rng, self.fim, a.fim_rate, self.eot)

    def build_model(self):
        a = self.args
        self.cfg = ModelConfig(architecture=a.arch, vocab_size=self.vocab_size, d_model=a.d_model,
                               n_layers=a.n_layers, n_heads=a.n_heads, d_ff=a.d_ff,
                               max_seq_len=max(a.ctx, a.long_ctx), norm=a.norm, activation=a.activation,
                               position="rope", tie_embeddings=True, bos_token_id=self.eot,
                               eos_token_id=self.eot)
        torch.manual_seed(a.seed)
        self.model = SASPModel(self.cfg)
        init_paper_(self.model)
        if getattr(a, "init_from", None):
            start, cfg = load_checkpoint(a.init_from)
            if cfg.to_dict() != self.cfg.to_dict():
                sys.exit(f"train: --init-from {a.init_from}: its config.json differs from this run's shape")
            self.model.load_state_dict(start.state_dict())
            print(f"train: weights from {a.init_from}", file=sys.stderr)
        self.opt = make_optimizer(self.model, a)
        self.rng = np.random.default_rng(a.seed)

    def restore(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step, self.total = state["step"], state["total_steps"]
        self.tokens_seen = state["tokens_seen"]
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.budget = state.get("budget", self.budget)
        self.eval_seconds = state.get("eval_seconds")
        self.final_eval_cost = state.get("final_eval_cost", 0.0)
        self.long_step_ratio = state.get("long_step_ratio")
        if self.order and state.get("data_cursor") is not None:
            self.order.cursor = state["data_cursor"]
        print(f"train: resumed {self.ckpt_path} at step {self.step}/{self.total}", file=sys.stderr)

    def elapsed(self):
        return time.time() - self.t_start

    def log(self, obj):
        self.log_f.write(json.dumps(obj) + "\n")
        self.log_f.flush()

    def train_flops_per_token(self, ctx):
        return 3 * forward_flops(self.cfg, ctx)

    def evaluate(self):
        """Loss on the fixed windows of each validation split, logged and plotted."""
        t = time.time()
        losses = {s: mean_loss(self.model, w, bf16=self.args.bf16) for s, w in self.vwin.items()}
        self.eval_seconds = time.time() - t
        rec = {"kind": "val", "step": self.step, "tokens": self.tokens_seen, "flops": self.flops_seen(),
               "time": self.elapsed()}
        rec["val_loss"] = losses.get("val-files", losses.get("val"))
        if "val-packages" in losses:
            rec["val_packages"] = losses["val-packages"]
        self.log(rec)
        a = self.args
        plot_losses([(a.arch, read_log(os.path.join(a.out, "log.jsonl")))], os.path.join(a.out, "loss.png"),
                    f"{a.arch} d={a.d_model} L={a.n_layers} ctx={a.ctx}")
        return rec

    def flops_seen(self):
        """Training FLOPs so far (the long-window steps counted at their length)."""
        a = self.args
        long_steps = max(0, self.step - (self.total - int(round(a.long_frac * self.total)))) if a.long_ctx else 0
        short = (self.step - long_steps) * a.batch_size * a.ctx * self.train_flops_per_token(a.ctx)
        if long_steps:
            ctx, b = window_at(self.total - 1, self.total, a)
            short += long_steps * b * ctx * self.train_flops_per_token(ctx)
        return short


# ---------------------------------------------------------------------------------------------
# planning a budget

def time_left(run):
    """Seconds of the budget left for steps and evaluations: 20 s of margin and the final evaluation
    set aside."""
    return run.budget - run.elapsed() - 20.0 - (0.0 if run.args.no_final_eval else run.final_eval_cost)


def plan_steps(run, step_time):
    """Steps that fit in what is left of the time budget, evaluations, the long-window stage and
    the final evaluation included."""
    a = run.args
    left = time_left(run)
    per_step = step_time * (1 + (a.long_frac * ((run.long_step_ratio or 1.0) - 1) if a.long_ctx else 0))
    per_step += (run.eval_seconds or 0.0) / a.eval_every
    return run.step + max(1, int(left / per_step))


def probe(run, progress):
    """Time --probe-steps steps (and a few at --long-ctx) with a small warm-up learning rate, then the
    evaluations: sets run.total for --time-budget. The probe steps are real training steps."""
    a = run.args
    times = []
    for i in range(a.probe_steps):
        x, y = run.batch(a.batch_size, a.ctx)
        for g in run.opt.param_groups:
            g["lr"] = lr_at(run.step, 100 * a.probe_steps, a)
        t = time.time()
        train_step(run.model, run.opt, x, y, a)
        times.append(time.time() - t)
        run.step += 1
        run.tokens_seen += x.numel()
    st = float(np.median(times[2:]))
    if has_long_stage(a):  # the cost of a long-window step against a short one, forward and backward
        # (forward passes alone said 2.3x where period 6's steps took 3.2x); the gradients are
        # dropped, nothing is learnt from these. fit_tail corrects the plan with the real long steps.
        ctx, b = window_at(1, 1, a)
        t_long, t_short = [], []
        for _ in range(3):
            for n, c, dest in ((b, ctx, t_long), (a.batch_size, a.ctx, t_short)):
                x, y = random_batch(run.train_tokens, n, c, run.rng)
                t = time.time()
                lm_loss(run.model, x, y, a.bf16).backward()
                dest.append(time.time() - t)
                run.opt.zero_grad(set_to_none=True)
        run.long_step_ratio = float(np.median(t_long) / np.median(t_short))
    run.evaluate()
    if not a.no_final_eval:
        n_full = sum((len(t) - 1) // run.cfg.max_seq_len for t in run.val.values())
        per_window = run.eval_seconds / max(1, sum(len(w) for w in run.vwin.values()))
        # Windows of the model's context cost about (L / ctx) of a probe window each; the final
        # evaluation runs in float32 (about 2x a bf16 probe) and, with "both", once more at --ctx.
        n_ctx = 2 if a.final_eval_ctx == "both" else 1
        run.final_eval_cost = (1.25 * per_window * n_full * (run.cfg.max_seq_len / a.ctx) * n_ctx
                               * (2.0 if a.bf16 else 1.0))
    run.total = plan_steps(run, st)
    print(f"train: measured {st * 1000:.0f} ms/step ({a.batch_size * a.ctx / st:.0f} tok/s), "
          f"{run.eval_seconds:.1f} s/eval, long-window steps x{run.long_step_ratio or 1:.2f}: "
          f"{run.total} steps fit in the budget", file=sys.stderr)
    run.log({"kind": "plan", "step": run.step, "step_seconds": st, "eval_seconds": run.eval_seconds,
             "long_step_ratio": run.long_step_ratio, "total_steps": run.total})


def replan(run, step_times):
    """Re-plan on the mean of the recent step times (slow steps under other load cost wall time
    all the same), until 85% of the run."""
    a = run.args
    st = float(np.mean(step_times[-4 * a.eval_every:]))
    if window_at(run.step, run.total, a)[0] != a.ctx:
        return
    new_total = plan_steps(run, st)
    if abs(new_total - run.total) > 0.02 * run.total:
        run.log({"kind": "plan", "step": run.step, "step_seconds": st, "total_steps": new_total})
        run.total = run.logged_total = new_total


def fit_tail(run, short_times, long_times):
    """From the decay on, where replan no longer runs: when the steps left would overrun the time
    budget at the step times measured (the long-window ones once there are a few), end the schedule
    sooner, so that the learning rate still decays to its floor instead of being cut where the
    budget runs out. Only ever shortens."""
    a = run.args
    st = float(np.median(short_times[-50:]))
    lt = (float(np.median(long_times[-20:])) if len(long_times) >= 5
          else st * (run.long_step_ratio or 1.0))
    left = time_left(run)

    def cost(total):
        start = long_start(total, a) if has_long_stage(a) else total
        n_short, n_long = max(0, start - run.step), total - max(run.step, start)
        return n_short * st + n_long * lt + (total - run.step) / a.eval_every * (run.eval_seconds or 0.0)

    total = run.total
    while total > run.step + 1 and cost(total) > left:
        total -= 1
    if total < run.total:
        if total < 0.99 * run.logged_total:  # a plan record for every 1% it shortens
            run.log({"kind": "plan", "step": run.step, "step_seconds": st, "long_step_seconds": lt,
                     "total_steps": total})
            run.logged_total = total
        run.total = total


# ---------------------------------------------------------------------------------------------

def final_eval(run):
    """Each validation split whole, in windows of the model's context (and of --ctx when shorter, unless
    --final-eval-ctx model), in nats/token and bits/byte."""
    res = {}
    ctxs = sorted({run.cfg.max_seq_len} | ({run.args.ctx} if run.args.final_eval_ctx == "both" else set()))
    for s, toks in run.val.items():
        for ctx in ctxs:
            t = time.time()
            loss = mean_loss(run.model, split_windows(toks, ctx), bf16=False)
            key = f"{s}@{ctx}"
            res[key] = {"loss": loss, "bpb": bits_per_byte(loss, run.manifest.get(s)),
                        "seconds": round(time.time() - t, 1)}
            print(f"train: {key}: {loss:.4f} nats/token, {res[key]['bpb']:.4f} bits/byte", file=sys.stderr)
    return res


def export(run, result):
    a, n_params = run.args, param_count(run.model)
    dtype = a.export_dtype
    if dtype == "auto":
        dtype = "F32" if n_params * 4 <= 25 * 1000 * 1000 else "BF16"
    meta = {"steps": str(run.step), "tokens_seen": str(run.tokens_seen),
            "train_seconds": f"{result['train_seconds']:.0f}",
            "corpus_sha256": str(run.manifest.get("corpus_sha256")), "arch": a.arch, "lr": str(a.lr),
            "batch_size": str(a.batch_size), "fim_rate": str(a.fim_rate)}
    if run.order:
        meta.update({"data_seed": str(a.data_seed), "data_cursor_start": str(a.data_cursor),
                     "data_cursor_end": str(run.order.cursor), "chunk_tokens": str(a.chunk_tokens)})
    if getattr(a, "init_from", None):
        meta["init_from"] = a.init_from
    ev = result.get("eval", {})
    key = f"val-files@{run.cfg.max_seq_len}"
    if key in ev:
        meta["val_loss"] = f"{ev[key]['loss']:.5f}"
    tok_path = os.path.join(a.data, "tokenizer.json")
    save_checkpoint(run.model, run.cfg, a.export, dtype=dtype, metadata=meta, tokenizer_json_path=tok_path)
    print(f"train: exported {a.export} ({dtype})", file=sys.stderr)


def export_trunk(run):
    """The weights before the decay's first step, in BF16, with the data cursor they have seen to."""
    a = run.args
    meta = {"steps": str(run.step), "tokens_seen": str(run.tokens_seen), "lr": str(a.lr), "trunk": "1",
            "data_cursor": str(run.order.cursor if run.order else "")}
    save_checkpoint(run.model, run.cfg, a.trunk, dtype="BF16", metadata=meta,
                    tokenizer_json_path=os.path.join(a.data, "tokenizer.json"))
    run.log({"kind": "trunk", "step": run.step, "tokens": run.tokens_seen, "dir": a.trunk,
             "data_cursor": run.order.cursor if run.order else None})
    print(f"\ntrain: the trunk (step {run.step}, before the decay) exported to {a.trunk}", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    run = Run(args)
    a = run.args
    if run.step == 0:
        run.log({"kind": "start", "time": time.time(), "args": vars(a), "config": run.cfg.to_dict(),
                 "params": param_count(run.model), "params_non_embedding": param_count(run.model, False),
                 "corpus_sha256": run.manifest.get("corpus_sha256"), "train_tokens": len(run.train_tokens),
                 "val_tokens": {s: len(t) for s, t in run.val.items()}, "torch": torch.__version__,
                 "threads": a.threads, "train_flops_per_token": run.train_flops_per_token(a.ctx)})
    print(f"train: {a.arch} d={a.d_model} L={a.n_layers} H={a.n_heads} F={a.d_ff} ctx={a.ctx}"
          f"{f'/{a.long_ctx}' if a.long_ctx else ''} vocab={run.vocab_size}: {param_count(run.model):,} "
          f"parameters; {len(run.train_tokens):,} training tokens", file=sys.stderr)
    if a.flops_budget and not a.resume:
        run.total = max(1, int(a.flops_budget / (a.batch_size * a.ctx * run.train_flops_per_token(a.ctx))))
    progress = Progress()
    if run.budget and run.step == 0:
        probe(run, progress)
    rc = train_loop(run, progress)
    if rc:
        return rc
    result = {"kind": "final", "step": run.step, "tokens": run.tokens_seen, "flops": run.flops_seen(),
              "data_cursor": run.order.cursor if run.order else None,
              "train_seconds": run.elapsed(), "params": param_count(run.model),
              "mean_tok_s": run.tokens_seen / max(1e-9, run.elapsed())}
    save_state(run.ckpt_path, run)
    if not a.no_final_eval:
        result["eval"] = final_eval(run)
        vf = result["eval"].get(f"val-files@{run.cfg.max_seq_len}") or result["eval"].get(f"val@{run.cfg.max_seq_len}")
        result["val_loss_full"] = vf["loss"]
        result["val_ppl_full"] = math.exp(vf["loss"])
    run.log(result)
    if a.export:
        export(run, result)
    run.log_f.close()
    return 0


def train_loop(run, progress):
    """Steps until run.total (or the time budget, or a signal). Returns 3 when stopped by a signal."""
    a = run.args
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    run.model.train()
    last_ckpt, window_t, window_tokens = time.time(), time.time(), 0
    step_times, short_times, long_times = [], [], []
    run.logged_total = run.total  # the total of the last plan record (replan and fit_tail write them)
    while run.step < run.total:
        if run.budget and run.elapsed() > run.budget - 10 - (0 if a.no_final_eval else run.final_eval_cost):
            print(f"\ntrain: time budget reached at step {run.step}/{run.total}: stopping", file=sys.stderr)
            run.total = run.step
            break
        t0 = time.time()
        ctx, batch = window_at(run.step, run.total, a)
        lr = lr_at(run.step, run.total, a)
        for g in run.opt.param_groups:
            g["lr"] = lr
        x, y = run.batch(batch, ctx)
        loss, gnorm = train_step(run.model, run.opt, x, y, a)
        if not math.isfinite(loss):
            sys.exit(f"train: loss is {loss} at step {run.step + 1}: stopping")
        if getattr(a, "trunk", None) and a.schedule == "wsd" and run.step == decay_start(run.total, a):
            export_trunk(run)
        run.step += 1
        run.tokens_seen += x.numel()
        window_tokens += x.numel()
        dt = time.time() - t0
        if len(step_times) >= 20 and dt > 10 * float(np.median(step_times[-50:])):
            # a pause (kill -STOP while a benchmark has the machine): not running time, not a step time
            run.t_start += dt - float(np.median(step_times[-50:]))
            dt = float(np.median(step_times[-50:]))
        step_times.append(dt)
        (long_times if ctx != a.ctx else short_times).append(dt)
        if run.budget and run.step % a.eval_every == 0 and run.step < min(0.85 * run.total,
                                                                            decay_start(run.total, a) - a.eval_every):
            replan(run, step_times)
        elif run.budget and run.step % 10 == 0 and short_times and run.step >= decay_start(run.total, a):
            fit_tail(run, short_times, long_times)
        if run.step % a.log_every == 0 or run.step == run.total:
            now = time.time()
            tok_s = window_tokens / max(1e-9, now - window_t)
            window_t, window_tokens = now, 0
            run.log({"kind": "train", "step": run.step, "tokens": run.tokens_seen, "flops": run.flops_seen(),
                     "loss": loss, "lr": lr, "grad_norm": gnorm, "tok_s": tok_s, "ctx": ctx,
                     "time": run.elapsed(), "data_cursor": run.order.cursor if run.order else None})
        rate = x.numel() / max(1e-9, float(np.median(step_times[-50:])))
        progress.show(f"step {run.step}/{run.total} loss {loss:.3f} lr {lr:.2e} {rate:.0f} tok/s "
                      f"elapsed {fmt_time(run.elapsed())} ETA {fmt_time((run.total - run.step) * step_times[-1])}")
        if run.step % a.eval_every == 0 or run.step == run.total:
            rec = run.evaluate()
            progress.show(f"step {run.step}/{run.total} val loss {rec['val_loss']:.4f}"
                          + (f" held-out packages {rec['val_packages']:.4f}" if "val_packages" in rec else ""),
                          force=True)
            progress.newline()
        if stop:
            save_state(run.ckpt_path, run)
            run.log({"kind": "stopped", "step": run.step, "signal": stop[0]})
            print(f"\ntrain: signal {stop[0]}: saved {run.ckpt_path} at step {run.step}; "
                  f"continue with --resume", file=sys.stderr)
            return 3
        if time.time() - last_ckpt > a.ckpt_minutes * 60:
            save_state(run.ckpt_path, run)
            last_ckpt = time.time()
    progress.newline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
