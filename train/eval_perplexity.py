#!/usr/bin/python3
"""eval_perplexity.py: mean negative log-likelihood and perplexity of a text file under a model
directory, computed by the PyTorch reference exactly as `sasp-cli --perplexity FILE` computes it:

  the file is encoded with the model's tokenizer.json (special tokens such as <|endoftext|>
  recognised), cut into non-overlapping windows of max_seq_len tokens (the last one may be
  shorter), each window is run on its own from position 0 and predicts its tokens 1..n-1, and the
  mean is over all predictions (a file of N tokens in W windows scores N - W of them), in float64.

  /usr/bin/python3 train/eval_perplexity.py -m models/sasp-small data/corpus/val.txt
"""
import argparse
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import Tokenizer  # noqa: E402
from checkpoint_io import load_checkpoint  # noqa: E402


@torch.no_grad()
def file_nll(model, cfg, ids, batch=16):
    """(sum of NLL in nats, predictions, windows) over ids in windows of cfg.max_seq_len."""
    C = cfg.max_seq_len
    windows = [ids[s:s + C] for s in range(0, len(ids), C)]
    full = [w for w in windows if len(w) == C]
    rest = [w for w in windows if 1 < len(w) < C]
    total, count = 0.0, 0
    groups = [full[i:i + batch] for i in range(0, len(full), batch)] + [[w] for w in rest]
    for g in groups:
        x = torch.tensor(g, dtype=torch.long)
        logits = model(x[:, :-1]).double()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                x[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += x[:, 1:].numel()
    return total, count, len(windows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", default="models/sasp-small", help="model directory")
    ap.add_argument("file", help="text file to score")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cfg = load_checkpoint(args.model)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    with open(args.file, "rb") as f:
        ids = tok.encode(f.read(), allow_special=True)
    t0 = time.time()
    total, count, windows = file_nll(model, cfg, ids)
    if count == 0:
        sys.exit(f"eval_perplexity: {args.file}: {len(ids)} tokens, too few to predict any")
    mean = total / count
    print(f"file:        {args.file}")
    print(f"tokens:      {len(ids)} in {windows} windows of up to {cfg.max_seq_len} ({count} predicted)")
    print(f"mean NLL:    {mean:.6f} nats/token")
    print(f"perplexity:  {math.exp(mean):.4f}")
    print(f"eval_perplexity: {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
