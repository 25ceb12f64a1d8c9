#!/usr/bin/python3
"""make_test_model.py: write a random-initialised checkpoint plus the reference logits to test an
engine against.

    /usr/bin/python3 train/make_test_model.py --arch sasp --norm rmsnorm --position rope \\
        --d-model 96 --n-heads 3 --d-ff 200 --vocab 301 --n-layers 2 --n-tokens 80 --seed 1 --out /tmp/m

writes /tmp/m/config.json, /tmp/m/model.safetensors and /tmp/m/reference.json:
    {"tokens": [t0, t1, ...], "logits": [[logit per vocab entry] per position]}
The weights are random (O(1) activations and logits) and so are every gain (alpha, beta, gamma,
beta_SA, beta_FF, alpha_skip, norm weights and biases), so every term of the formula is exercised.
The logits are one full-sequence forward in float64 over exactly the weights the checkpoint stores
(rounded to --dtype first). Prints the directory.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sasp_model import ModelConfig, SASPModel, init_random_  # noqa: E402
from checkpoint_io import save_checkpoint, round_to_dtype_  # noqa: E402


def layer_list(text):
    return sorted({int(x) for x in text.split(",") if x.strip()}) if text else []


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=["sasp", "preln"], default="sasp")
    ap.add_argument("--norm", choices=["rmsnorm", "layernorm", "none"], default="rmsnorm")
    ap.add_argument("--position", choices=["rope", "learned"], default="rope")
    ap.add_argument("--activation", choices=["relu", "gelu", "silu"], default="relu")
    ap.add_argument("--d-model", type=int, default=96)
    ap.add_argument("--n-heads", type=int, default=3)
    ap.add_argument("--d-ff", type=int, default=200)
    ap.add_argument("--vocab", type=int, default=301)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--max-seq-len", type=int, default=128)
    ap.add_argument("--n-tokens", type=int, default=80)
    ap.add_argument("--norm-eps", type=float, default=1e-6)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qk-bias", action="store_true", help="biases on W_Q and W_K")
    ap.add_argument("--value-layers", type=layer_list, default=[], help="sasp: layers with W_V, e.g. 0,1")
    ap.add_argument("--out-layers", type=layer_list, default=[], help="sasp: layers with W_O, e.g. 0")
    ap.add_argument("--skip-gain", action="store_true", help="sasp: a skip connection alpha_skip * X")
    ap.add_argument("--untied", action="store_true", help="a separate lm_head")
    ap.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    ap.add_argument("--digits", type=int, default=17,
                    help="significant digits of the reference logits (17: exact float64)")
    ap.add_argument("--out", required=True, help="the model directory to write")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    try:
        cfg = ModelConfig(architecture=a.arch, vocab_size=a.vocab, d_model=a.d_model,
                          n_layers=a.n_layers, n_heads=a.n_heads, d_ff=a.d_ff,
                          max_seq_len=a.max_seq_len, norm=a.norm, norm_eps=a.norm_eps,
                          activation=a.activation, position=a.position, rope_theta=a.rope_theta,
                          tie_embeddings=not a.untied, qk_bias=a.qk_bias,
                          value_layers=a.value_layers if a.arch == "sasp" else [],
                          out_layers=a.out_layers if a.arch == "sasp" else [],
                          skip_gain=a.skip_gain and a.arch == "sasp")
    except ValueError as e:
        sys.exit(f"make_test_model: {e}")
    if not 1 <= a.n_tokens <= a.max_seq_len:
        sys.exit(f"make_test_model: --n-tokens must be in [1, --max-seq-len = {a.max_seq_len}]")

    gen = torch.Generator().manual_seed(a.seed)
    model = SASPModel(cfg)
    init_random_(model, gen)
    round_to_dtype_(model, a.dtype)  # the reference sees exactly the stored weights
    tokens = torch.randint(0, a.vocab, (a.n_tokens,), generator=gen)

    save_checkpoint(model, cfg, a.out, dtype=a.dtype,
                    metadata={"source": "make_test_model.py", "seed": str(a.seed)})
    with torch.no_grad():
        logits = model.double()(tokens[None, :])[0]
    fmt = "%.{}g".format(a.digits)
    rows = ",\n".join("[" + ",".join(fmt % v for v in row) + "]" for row in logits.tolist())
    with open(os.path.join(a.out, "reference.json"), "w", encoding="utf-8") as f:
        f.write('{"tokens": ' + json.dumps(tokens.tolist()) + ',\n"logits": [\n' + rows + "]}\n")
    print(a.out)


if __name__ == "__main__":
    main()
