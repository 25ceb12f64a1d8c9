#!/usr/bin/python3
"""sample.py: continue a prompt with the PyTorch reference model of a checkpoint directory (greedy by
default, or temperature/top-k sampling with a seed). Slow (the whole window is recomputed per
token) but independent of the C engine, so the two can be compared.

  /usr/bin/python3 train/sample.py -m models/sasp-small -p "def fibonacci(n):" -n 64
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bpe import Tokenizer  # noqa: E402
from checkpoint_io import load_checkpoint  # noqa: E402


@torch.no_grad()
def generate(model, cfg, ids, n, temperature=0.0, top_k=0, generator=None, stop_at_eos=True):
    ids = list(ids)
    out = []
    for _ in range(n):
        if len(ids) >= cfg.max_seq_len:
            break
        logits = model(torch.tensor([ids]))[0, -1].double()
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            logits = logits / temperature
            if top_k > 0:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits[logits < kth] = float("-inf")
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        if stop_at_eos and nxt == cfg.eos_token_id:
            break
        ids.append(nxt)
        out.append(nxt)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", default="models/sasp-small")
    ap.add_argument("-p", "--prompt", required=True)
    ap.add_argument("-n", "--generate", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, cfg = load_checkpoint(args.model)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    ids = tok.encode(args.prompt)
    g = torch.Generator().manual_seed(args.seed)
    out = generate(model, cfg, ids, args.generate, args.temperature, args.top_k, g)
    sys.stdout.buffer.write(args.prompt.encode() + tok.decode(out) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
