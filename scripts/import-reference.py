#!/usr/bin/python3
"""import-reference.py: convert a checkpoint trained with the SAS-P authors' reference code
(github.com/bobby-he/simplified_transformers) into a sasp model directory.

    /usr/bin/python3 scripts/import-reference.py SRC_DIR DST_DIR [--max-seq-len N] [--dtype F32]

SRC_DIR is what their training run saves with save_pretrained: config.json (a GPT2Config with their
extra keys: norm_type, parallel_layers, centre_attn, the *_gain values, ...) and model.safetensors or
pytorch_model.bin (sharded *.index.json files too), usually with tokenizer.json. DST_DIR receives
config.json, model.safetensors and tokenizer.json in our format (docs/checkpoint-format.md). The
mapping, and what does not map exactly, is docs/importing-reference-checkpoints.md; in short:

    transformer.wte / wpe                  -> tok_emb / pos_emb ("position": "learned")
    h.N.ln_1 (RMSNorm scale | LayerNorm)   -> layers.N.norm
    h.N.attn.qk_attn (Conv1D [d, 2d] + b)  -> layers.N.attn.wq / wk (+ bias), transposed and split
    h.N.attn.attn_mat_skip/resid_gain, centre_attn_gain [1,H,1,1] -> attn.alpha / beta / gamma
    h.N.attn.v_attn / c_proj (r*W + s*I)   -> attn.wv / wo, or nothing when that equals I
    h.N.attn_block_resid_gain, mlp_block_resid_gain, mlp_block_skip_gain -> attn_gain, mlp_gain, skip_gain
    h.N.mlp.c_fc / c_proj (Conv1D)         -> layers.N.mlp.w1 / w2, transposed
    transformer.ln_f (LayerNorm)           -> norm_f;  lm_head tied to wte

Every tensor in the source is either mapped, or named in the "unused by the reference's own forward
pass" list this prints (e.g. ln_2 of a parallel block), or the conversion stops naming it. What the
engine cannot compute exactly (serial blocks, a reparameterised matrix whose random "id" part the
reference never saved, erf GELU, leaky ReLU with a slope, post-norm with a skip) is refused with the
reason. Exit status 0 on success, 1 with one message on stderr otherwise.
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
from checkpoint_io import read_safetensors, write_safetensors, CheckpointError  # noqa: E402

IDENTITY_TOL = 1e-6

# save_pretrained writes config.json as a diff against GPT2Config's defaults: a key left out has
# the default value. (Their own keys, such as norm_type, are not GPT2Config attributes and are
# always written.)
GPT2_DEFAULTS = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
    "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False, "tie_word_embeddings": True,
    "bos_token_id": 50256, "eos_token_id": 50256,
}


class Refused(Exception):
    """The checkpoint cannot be converted (exactly); the message says why."""


# ---------------------------------------------------------------------------------------------
# Reading the source

def load_source_config(src):
    path = os.path.join(src, "config.json")
    if not os.path.isfile(path):
        raise Refused(f"{path}: no such file (a save_pretrained directory has config.json)")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Refused(f"{path}: cannot read: {e}")
    if not isinstance(cfg, dict):
        raise Refused(f"{path}: not a JSON object")
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise Refused(f"{path}: model_type is {cfg.get('model_type')!r}; the reference code builds "
                      f"GPT-2 models (model_type \"gpt2\")")
    if "parallel_layers" not in cfg or "norm_type" not in cfg:
        raise Refused(f"{path}: no \"parallel_layers\" / \"norm_type\" keys: this is not a config "
                      f"saved by the reference code (plain GPT-2 checkpoints are not SAS-P models)")
    full = dict(GPT2_DEFAULTS)
    full.update({k: v for k, v in cfg.items() if not (k in GPT2_DEFAULTS and v is None
                                                       and GPT2_DEFAULTS[k] is not None)})
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        v = full[key]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise Refused(f"{path}: \"{key}\" must be a positive integer (got {v!r})")
    return full


def _torch_load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # a PyTorch without weights_only
        return torch.load(path, map_location="cpu")


def _load_one(path):
    if path.endswith(".safetensors"):
        tensors, _ = read_safetensors(path)
        return tensors
    try:
        state = _torch_load(path)
    except Exception as e:  # torch.load raises many kinds for a corrupt or hostile file
        raise Refused(f"{path}: cannot load as a PyTorch state dict: {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:300] if str(e) else ''}")
    if not isinstance(state, dict):
        raise Refused(f"{path}: not a state dict")
    out = {}
    for k, v in state.items():
        if not torch.is_tensor(v):
            raise Refused(f"{path}: entry {k} is not a tensor")
        out[k] = v
    return out


def load_source_tensors(src):
    """name -> tensor from model.safetensors, pytorch_model.bin, or their sharded index files."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        path = os.path.join(src, single)
        if os.path.isfile(path):
            return _load_one(path), path
        ipath = os.path.join(src, index)
        if os.path.isfile(ipath):
            with open(ipath, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map", {})
            tensors = {}
            for shard in sorted(set(weight_map.values())):
                tensors.update(_load_one(os.path.join(src, shard)))
            return tensors, ipath
    raise Refused(f"{src}: no model.safetensors or pytorch_model.bin (or their .index.json)")


# ---------------------------------------------------------------------------------------------
# Interpreting their config

def act_from_config(cfg):
    """Their activation_function (+ lrelu_neg_slope) -> our "activation"."""
    act = cfg["activation_function"]
    if act == "leaky_relu":
        slope = cfg.get("lrelu_neg_slope", 0.01)  # their LeakyReLU's own default slope
        if slope != 0:
            raise Refused(f"activation leaky_relu with lrelu_neg_slope={slope}: the engine has ReLU "
                          f"(slope 0), GELU and SiLU only")
        return "relu"
    if act == "relu":
        return "relu"
    if act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return "gelu"  # all three are 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), our "gelu"
    if act in ("silu", "swish"):
        return "silu"
    if act == "gelu":
        raise Refused("activation \"gelu\" is the exact (erf) GELU; the engine computes the tanh "
                      "form (\"gelu_new\"), which differs by up to ~5e-4 per unit. Pass "
                      "--accept-gelu-tanh to convert anyway with that approximation")
    raise Refused(f"activation_function {act!r} is not one the engine has (relu, gelu tanh form, silu)")


def _need(cfg, key):
    if key not in cfg:
        raise Refused(f"config.json: the reference code always writes \"{key}\"; it is missing")
    return cfg[key]


# ---------------------------------------------------------------------------------------------
# The conversion

class Converter:
    def __init__(self, cfg, tensors, src_path, args):
        self.cfg, self.src_path, self.args = cfg, src_path, args
        # Bare GPT2Model state dicts have no "transformer." prefix; GPT2LMHeadModel ones do.
        if any(k.startswith("transformer.") for k in tensors):
            self.src = {(k[len("transformer."):] if k.startswith("transformer.") else k): v
                        for k, v in tensors.items()}
            self.prefix = "transformer."
        else:
            self.src, self.prefix = dict(tensors), ""
        self.used = set()
        self.unused = []  # (key, why): in the file, but the reference's forward pass never reads it
        self.out = {}
        self.notes = []

    # -- tensor access: every key read is marked; whatever is left at the end is an error --
    def full(self, key):
        return key if key == "lm_head.weight" else self.prefix + key

    def has(self, key):
        return key in self.src

    def take(self, key, shape=None):
        if key not in self.src:
            raise Refused(f"{self.src_path}: tensor {self.full(key)} is missing")
        t = self.src[key]
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise Refused(f"{self.src_path}: tensor {self.full(key)} has shape {list(t.shape)}, "
                          f"expected {list(shape)} from config.json")
        self.used.add(key)
        return t.detach().to(torch.float64)

    def skip(self, key, why):
        if key in self.src:
            self.used.add(key)
            self.unused.append((self.full(key), why))

    def zero_bias(self, key, n):
        """MyConv1D(bias=False) still stores a frozen zero bias; anything else cannot map."""
        if key in self.src:
            b = self.take(key, (n,))
            if b.abs().max().item() != 0.0:
                raise Refused(f"{self.src_path}: tensor {self.full(key)} is non-zero; the engine has "
                              f"no bias there (the reference creates it frozen at zero)")

    def put(self, name, t):
        self.out[name] = t.to(torch.float32).contiguous()

    # -- the model --
    def run(self):
        cfg, a = self.cfg, self.args
        d, L, H, V = cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["vocab_size"]
        n_pos = cfg["n_positions"]
        F = cfg["n_inner"] or 4 * d
        eps = float(cfg["layer_norm_epsilon"])
        if d % H:
            raise Refused(f"config.json: n_head {H} does not divide n_embd {d}")
        dh = d // H

        if not _need(cfg, "parallel_layers"):
            raise Refused("config.json: \"parallel_layers\": false. These are serial blocks "
                          "(attention then MLP, e.g. their default.yaml / skipless.yaml); the engine "
                          "serves parallel blocks (SAS-P: skipless-parallel.yaml, or "
                          "default-parallel.yaml) only")
        norm_type = _need(cfg, "norm_type")
        norm_position = cfg.get("norm_position", "pre")
        if norm_position not in ("pre", "post"):
            raise Refused(f"config.json: norm_position {norm_position!r} is not \"pre\" or \"post\"")
        add_skip = _need(cfg, "mlp_block_skip_gain") != 0
        if norm_position == "post" and add_skip:
            raise Refused("config.json: norm_position \"post\" with a skip connection "
                          "(mlp_block_skip_gain != 0): the skip carries the normalised input, which "
                          "the engine's block (skip of the raw input) does not compute")
        # With no skip, "post" and "pre" compute the same thing in a parallel block.
        for key in ("qk_norm_type", "dot_norm_type"):
            if cfg.get(key, "none") not in (None, "none"):
                self.notes.append(f"config.json has {key}={cfg[key]!r}, which the reference's "
                                  f"model_utils.py does not implement (the model trained without it)")
        if a.accept_gelu_tanh and cfg.get("activation_function") == "gelu":
            activation = "gelu"
            self.notes.append("erf GELU converted to the engine's tanh-form GELU (approximate)")
        else:
            activation = act_from_config(cfg)
        centre = bool(_need(cfg, "centre_attn"))
        q_scale = 1.0
        if not cfg["scale_attn_weights"]:
            q_scale *= math.sqrt(dh)  # the engine divides scores by sqrt(d_h): fold it back in W_Q
        inv_layer = bool(cfg["scale_attn_by_inverse_layer_idx"])
        if cfg["reorder_and_upcast_attn"]:
            self.notes.append("reorder_and_upcast_attn is ignored by their attention (and changes "
                              "only the precision of the scores)")

        if norm_type == "rmsnorm":
            norm = "rmsnorm"
            self.notes.append(
                "their RMSNorm is scale * x / (sqrt(mean(x^2)) + eps) (eps outside the square "
                "root); written as \"rmsnorm_eps_outside\": true so the engine computes exactly that")
        elif norm_type == "ln":
            norm = "layernorm"
        elif norm_type == "none":
            norm = "none"
        else:
            raise Refused(f"config.json: norm_type {norm_type!r} (expected rmsnorm, ln or none)")

        max_seq_len = n_pos
        if a.max_seq_len:
            max_seq_len = a.max_seq_len
        elif isinstance(cfg.get("n_ctx"), int) and 0 < cfg["n_ctx"] <= n_pos:
            max_seq_len = cfg["n_ctx"]  # the context it was trained at (run_clm.py sets n_ctx)
        if not 0 < max_seq_len <= n_pos:
            raise Refused(f"--max-seq-len {max_seq_len}: must be in [1, n_positions = {n_pos}]")

        # Embeddings
        self.put("tok_emb.weight", self.take("wte.weight", (V, d)))
        self.put("pos_emb.weight", self.take("wpe.weight", (n_pos, d))[:max_seq_len])

        for i in range(L):
            self.layer(i, d, H, F, norm_type, centre, add_skip, q_scale / (i + 1 if inv_layer else 1))

        # Final norm: GPT2Model's ln_f is a LayerNorm whatever norm_type is.
        self.put("norm_f.weight", self.take("ln_f.weight", (d,)))
        self.put("norm_f.bias", self.take("ln_f.bias", (d,)))

        tie = cfg["tie_word_embeddings"]
        if self.has("lm_head.weight"):
            head = self.take("lm_head.weight", (V, d))
            if tie:
                if not torch.equal(head, self.src["wte.weight"].to(torch.float64)):
                    raise Refused(f"{self.src_path}: lm_head.weight differs from wte.weight although "
                                  f"tie_word_embeddings is true")
                self.unused.append(("lm_head.weight", "tied: the same tensor as wte.weight"))
            else:
                self.put("lm_head.weight", head)
        elif not tie:
            raise Refused(f"{self.src_path}: tie_word_embeddings is false but lm_head.weight is missing")

        left = sorted(set(self.src) - self.used)
        if left:
            raise Refused(f"{self.src_path}: tensor {self.full(left[0])} is not one the converter "
                          f"understands" + (f" (and {len(left) - 1} more)" if len(left) > 1 else ""))

        out_cfg = {
            "architecture": "sasp",
            "vocab_size": V, "d_model": d, "n_layers": L, "n_heads": H, "d_ff": F,
            "max_seq_len": max_seq_len,
            "norm": norm, "norm_eps": eps,
            "activation": activation,
            "position": "learned",
            "rope_theta": 10000.0,
            "tie_embeddings": bool(tie),
        }
        if norm == "rmsnorm":
            # Two keys beyond the base spec (docs/checkpoint-format.md): the final norm is GPT-2's
            # LayerNorm, and eps sits outside the square root of their RMSNorm.
            out_cfg["norm_f"] = "layernorm"
            out_cfg["rmsnorm_eps_outside"] = True
        out_cfg["qk_bias"] = True
        out_cfg["value_layers"] = [i for i in range(L) if f"layers.{i}.attn.wv.weight" in self.out]
        out_cfg["out_layers"] = [i for i in range(L) if f"layers.{i}.attn.wo.weight" in self.out]
        out_cfg["skip_gain"] = add_skip
        return out_cfg

    def reparam(self, key, i, d, init_key):
        """The effective Conv1D matrix ([in, out]) of their v_attn / c_proj, or None when it is
        absent (nn.Identity in the reference)."""
        if not self.has(f"{key}.weight"):
            for leaf in ("resid_gain", "skip_gain", "bias"):
                if self.has(f"{key}.{leaf}"):
                    raise Refused(f"{self.src_path}: {self.full(key + '.' + leaf)} without "
                                  f"{self.full(key + '.weight')}")
            return None
        w = self.take(f"{key}.weight", (d, d))
        self.zero_bias(f"{key}.bias", d)
        if not self.has(f"{key}.skip_gain"):  # a plain linear layer (skip_gain None)
            if self.has(f"{key}.resid_gain"):
                raise Refused(f"{self.src_path}: {self.full(key + '.resid_gain')} without skip_gain")
            return w
        r = self.take(f"{key}.resid_gain", (1,)).item()
        s = self.take(f"{key}.skip_gain", (1,)).item()
        init = self.cfg.get(init_key, "id")
        if s != 0 and init != "id":
            raise Refused(f"{self.full(key)}: {init_key} is {init!r}, so its forward pass adds "
                          f"skip_gain ({s}) times a random matrix that the reference keeps outside "
                          f"the state dict (MyConv1D.id is not a parameter or buffer); the checkpoint "
                          f"does not hold the model")
        return r * w + s * torch.eye(d, dtype=torch.float64)

    def layer(self, i, d, H, F, norm_type, centre, add_skip, q_scale):
        p, o = f"h.{i}.", f"layers.{i}."
        # The one norm of a parallel block: ln_1. ln_2 exists but the parallel forward never uses it.
        if norm_type == "rmsnorm":
            self.put(o + "norm.weight", self.take(p + "ln_1.scale", (d,)))
        elif norm_type == "ln" or (norm_type == "none" and i == 0):
            self.put(o + "norm.weight", self.take(p + "ln_1.weight", (d,)))
            self.put(o + "norm.bias", self.take(p + "ln_1.bias", (d,)))
        for leaf in ("scale", "weight", "bias"):
            self.skip(p + "ln_2." + leaf, "ln_2: a parallel block normalises once (ln_1)")

        # Queries and keys: Conv1D weight [d, 2d] (y = x W + b): columns [0, d) are Q, [d, 2d) K.
        w = self.take(p + "attn.qk_attn.weight", (d, 2 * d))
        b = self.take(p + "attn.qk_attn.bias", (2 * d,))
        self.put(o + "attn.wq.weight", q_scale * w[:, :d].t())
        self.put(o + "attn.wq.bias", q_scale * b[:d])
        self.put(o + "attn.wk.weight", w[:, d:].t())
        self.put(o + "attn.wk.bias", b[d:])

        eye = torch.eye(d, dtype=torch.float64)
        for key, init_key, name in (("attn.v_attn", "val_init_type", "wv"),
                                    ("attn.c_proj", "proj_init_type", "wo")):
            m = self.reparam(p + key, i, d, init_key)
            if m is not None and (m - eye).abs().max().item() > IDENTITY_TOL:
                self.put(o + f"attn.{name}.weight", m.t())
            elif m is not None:
                self.notes.append(f"layer {i}: {key} equals the identity within {IDENTITY_TOL}: "
                                  f"stored as no tensor")

        beta = self.take(p + "attn.attn_mat_resid_gain", (1, H, 1, 1)).reshape(H)
        if centre:
            alpha = self.take(p + "attn.attn_mat_skip_gain", (1, H, 1, 1)).reshape(H)
            gamma = self.take(p + "attn.centre_attn_gain", (1, H, 1, 1)).reshape(H)
        else:  # without centre_attn their attention is resid_gain * softmax only
            alpha = torch.zeros(H, dtype=torch.float64)
            gamma = torch.zeros(H, dtype=torch.float64)
            self.skip(p + "attn.attn_mat_skip_gain", "centre_attn is false: not used")
            self.skip(p + "attn.centre_attn_gain", "centre_attn is false: not used")
        self.put(o + "attn.alpha", alpha)
        self.put(o + "attn.beta", beta)
        self.put(o + "attn.gamma", gamma)

        self.put(o + "attn_gain", self.take(p + "attn_block_resid_gain", (1,)))
        self.put(o + "mlp_gain", self.take(p + "mlp_block_resid_gain", (1,)))
        self.skip(p + "attn_block_skip_gain", "parallel block: the attention skip gain is not used")
        if add_skip:
            self.put(o + "skip_gain", self.take(p + "mlp_block_skip_gain", (1,)))
        else:
            self.skip(p + "mlp_block_skip_gain", "mlp_block_skip_gain is 0 in config.json: no skip")

        self.put(o + "mlp.w1.weight", self.take(p + "mlp.c_fc.weight", (d, F)).t())
        self.zero_bias(p + "mlp.c_fc.bias", F)
        self.put(o + "mlp.w2.weight", self.take(p + "mlp.c_proj.weight", (F, d)).t())
        self.zero_bias(p + "mlp.c_proj.bias", d)

        # Old transformers versions stored attention mask buffers; theirs are non-persistent.
        for leaf in ("bias", "masked_bias", "diag", "uniform_causal_attn_mat"):
            self.skip(p + "attn." + leaf, "a constant buffer (causal mask / identity / uniform)")


def endoftext_id(dst_tok):
    """The id of <|endoftext|> in tokenizer.json, or None."""
    eot = None
    if dst_tok and os.path.isfile(dst_tok):
        try:
            with open(dst_tok, encoding="utf-8") as f:
                doc = json.load(f)
            for at in doc.get("added_tokens") or []:
                if at.get("content") == "<|endoftext|>":
                    eot = at.get("id")
        except (OSError, ValueError):
            pass
    return eot


def group_layers(items):
    """[(transformer.h.3.ln_2.scale, why), ...] -> [(transformer.h.{0,1,3}.ln_2.scale, why), ...]."""
    groups = {}
    for key, why in items:
        parts = key.split(".")
        idx = next((i for i in range(len(parts) - 1) if parts[i] == "h" and parts[i + 1].isdigit()), None)
        if idx is None:
            groups.setdefault((key, why), [])
            continue
        pattern = ".".join(parts[:idx + 1] + ["{}"] + parts[idx + 2:])
        groups.setdefault((pattern, why), []).append(int(parts[idx + 1]))
    out = []
    for (pattern, why), layers in groups.items():
        if layers:
            pattern = pattern.replace("{}", "{" + ",".join(map(str, sorted(layers))) + "}"
                                      if len(layers) > 1 else str(layers[0]))
        out.append((pattern, why))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", metavar="SRC_DIR")
    ap.add_argument("dst", metavar="DST_DIR")
    ap.add_argument("--max-seq-len", type=int, default=0,
                    help="context to serve (default: n_ctx of config.json, the context it was trained "
                         "at, else n_positions)")
    ap.add_argument("--dtype", choices=["F32", "F16", "BF16"], default="F32")
    ap.add_argument("--accept-gelu-tanh", action="store_true",
                    help="convert an erf-GELU model to the engine's tanh-form GELU (approximate)")
    args = ap.parse_args(argv)
    try:
        cfg = load_source_config(args.src)
        tensors, src_path = load_source_tensors(args.src)
        conv = Converter(cfg, tensors, src_path, args)
        out_cfg = conv.run()
        if os.path.abspath(args.src) == os.path.abspath(args.dst):
            raise Refused("SRC_DIR and DST_DIR must differ")
        os.makedirs(args.dst, exist_ok=True)
        tok_src = os.path.join(args.src, "tokenizer.json")
        tok_dst = os.path.join(args.dst, "tokenizer.json")
        if os.path.isfile(tok_src):
            shutil.copyfile(tok_src, tok_dst)
        else:
            conv.notes.append("no tokenizer.json in SRC_DIR: copy the tokenizer.json the model was "
                              "trained with into DST_DIR before serving text")
        eot = endoftext_id(tok_dst if os.path.isfile(tok_src) else None)
        V = out_cfg["vocab_size"]
        for key in ("bos_token_id", "eos_token_id"):
            v = cfg.get(key)
            if not (isinstance(v, int) and 0 <= v < V):
                v = eot if isinstance(eot, int) and 0 <= eot < V else 0
            out_cfg[key] = v
        meta = {"format": "pt", "source": "simplified_transformers (reference code)",
                "converted_by": "scripts/import-reference.py"}
        write_safetensors(os.path.join(args.dst, "model.safetensors"), conv.out, args.dtype, meta)
        with open(os.path.join(args.dst, "config.json"), "w", encoding="utf-8") as f:
            json.dump(out_cfg, f, indent=2)
            f.write("\n")
    except (Refused, CheckpointError) as e:
        print(f"import-reference: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # unreadable input (a corrupt pickle, a truncated file, ...): no traceback
        print(f"import-reference: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for note in conv.notes:
        print(f"note: {note}", file=sys.stderr)
    for key, why in group_layers(conv.unused):
        print(f"unused by the reference's forward pass: {key}: {why}", file=sys.stderr)
    print(f"{args.dst}: {out_cfg['n_layers']} layers, d_model {out_cfg['d_model']}, "
          f"{out_cfg['n_heads']} heads, d_ff {out_cfg['d_ff']}, norm {out_cfg['norm']}, "
          f"activation {out_cfg['activation']}, max_seq_len {out_cfg['max_seq_len']}, "
          f"{len(conv.out)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
