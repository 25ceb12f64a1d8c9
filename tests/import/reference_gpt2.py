"""reference_gpt2.py: a re-implementation, for tests, of the models the SAS-P authors' reference code
trains (github.com/bobby-he/simplified_transformers, simplified_transformers/model_utils.py): a
Hugging Face GPT2LMHeadModel whose blocks are their myGPT2Block.

Written from reading their code, not copied: the module tree and parameter names are theirs, so
state_dict() has exactly the keys their save_pretrained writes (transformer.h.N.attn.qk_attn.weight,
transformer.h.N.attn.attn_mat_skip_gain, ...), and forward() computes what theirs computes, including
the details the converter has to get right:
  - RMSNorm: scale * x / (||x|| / sqrt(d) + eps), eps outside the square root;
  - MyConv1D: y = x W + b with W stored [in, out]; the reparameterised form uses
    resid_gain * W + skip_gain * id, where id is a plain attribute (not saved in the state dict);
  - the frozen zero bias every MyConv1D(bias=False) still carries;
  - shaped attention: resid_gain * softmax (+ skip_gain * I - centre_gain * uniform causal) only
    when centre_attn is set;
  - the parallel block's output, with the skip term only when the configured mlp_block_skip_gain != 0;
  - GPT-2 around the blocks: learned positions, ln_f LayerNorm, lm_head tied to wte.
No transformers library is needed: the config is a plain dict with GPT2Config's key names.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# GPT2Config's defaults (for the keys the model reads), what their run_clm.py passes on top, and
# their default.yaml values.
GPT2_DEFAULTS = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
    "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1,
    "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
    "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False, "tie_word_embeddings": True,
    "bos_token_id": 50256, "eos_token_id": 50256,
}
RUN_CLM = {  # code-search-net-tokenizer: <|endoftext|> is id 0; context_length 128; no dropout
    "n_ctx": 128, "bos_token_id": 0, "eos_token_id": 0,
    "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
}
THEIR_DEFAULT_YAML = {
    "norm_type": "rmsnorm", "norm_position": "pre", "qk_norm_type": "none", "dot_norm_type": "none",
    "attn_block_resid_gain": 1, "attn_block_skip_gain": 1,
    "mlp_block_resid_gain": 1, "mlp_block_skip_gain": 1,
    "attn_mat_resid_gain": 1, "attn_mat_skip_gain": 0,
    "value_resid_gain": 1, "value_skip_gain": None, "first_layer_value_resid_gain": None,
    "proj_resid_gain": 1, "proj_skip_gain": None, "last_layer_proj_resid_gain": None,
    "centre_attn": False, "centre_attn_gain": 1,
    "trainable_attn_block_gains": False, "trainable_mlp_block_gains": False,
    "trainable_attn_mat_gains": False, "trainable_value_gains": False, "trainable_proj_gains": False,
    "val_proj_init_std": None, "query_init_std": None, "key_init_std": None,
    "val_init_type": "normal", "proj_init_type": "normal", "tie_valproj_init": None,
    "activation_function": "leaky_relu", "lrelu_neg_slope": 0, "mlp_proj_init_std": None,
    "parallel_layers": False,
}
# skipless.yaml on top of default.yaml, then skipless-parallel.yaml: the SAS-P configuration.
SKIPLESS = {
    "attn_block_skip_gain": 0, "mlp_block_resid_gain": 0.1, "attn_mat_skip_gain": 1,
    "value_resid_gain": 0, "value_skip_gain": 1, "first_layer_value_resid_gain": 1,
    "proj_resid_gain": 0, "proj_skip_gain": 1, "centre_attn": True, "centre_attn_gain": 1,
    "trainable_attn_block_gains": True, "trainable_mlp_block_gains": True,
    "trainable_attn_mat_gains": True, "trainable_value_gains": True, "trainable_proj_gains": True,
    "query_init_std": 0, "val_init_type": "id", "proj_init_type": "id",
}
SKIPLESS_PARALLEL = dict(SKIPLESS, mlp_block_skip_gain=0, parallel_layers=True)
DEFAULT_PARALLEL = {"attn_block_skip_gain": 0, "parallel_layers": True}


def make_config(*layers, **overrides):
    """A config.json dict: GPT2Config defaults, run_clm.py's values, their default.yaml, then each
    dict of layers (later
    ones win, as Hydra's defaults lists), then overrides."""
    cfg = dict(GPT2_DEFAULTS)
    cfg.update(RUN_CLM)
    cfg.update(THEIR_DEFAULT_YAML)
    for layer in layers:
        cfg.update(layer)
    cfg.update(overrides)
    return cfg


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.eps, self.d = eps, d
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        rms = x.norm(2, dim=-1, keepdim=True) * self.d ** (-1.0 / 2)
        return self.scale * (x / (rms + self.eps))


class MyConv1D(nn.Module):
    def __init__(self, nf, nx, resid_gain=None, skip_gain=None, init_type="normal", bias=True):
        super().__init__()
        self.nf = nf
        self.bias = nn.Parameter(torch.zeros(nf), requires_grad=bias)
        self.skip = skip_gain is not None
        if not self.skip:
            self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        else:
            self.resid_gain = nn.Parameter(torch.tensor([float(resid_gain)]))
            self.skip_gain = nn.Parameter(torch.tensor([float(skip_gain)]))
            self.weight = nn.Parameter(torch.zeros(nx, nx))
            # Not registered: like theirs, it is not in the state dict.
            self.id = torch.eye(nx) if init_type == "id" else torch.randn(nx, nx) / math.sqrt(nx)

    def forward(self, x):
        if self.skip:
            w = self.resid_gain * self.weight + self.skip_gain * self.id.to(self.weight.dtype)
        else:
            w = self.weight
        return x @ w + self.bias


class Attention(nn.Module):
    def __init__(self, cfg, i):
        super().__init__()
        d, H = cfg["n_embd"], cfg["n_head"]
        self.d, self.H, self.dh, self.i, self.cfg = d, H, d // H, i, cfg
        self.qk_attn = MyConv1D(2 * d, d)
        vr = cfg["first_layer_value_resid_gain"] if (
            cfg["first_layer_value_resid_gain"] is not None and i == 0) else cfg["value_resid_gain"]
        if cfg["value_skip_gain"] != 1 or vr != 0 or cfg["val_init_type"] != "id":
            self.v_attn = MyConv1D(d, d, vr, cfg["value_skip_gain"], cfg["val_init_type"], bias=False)
        else:
            self.v_attn = nn.Identity()
        pr = cfg["last_layer_proj_resid_gain"] if (
            cfg["last_layer_proj_resid_gain"] is not None and i == cfg["n_layer"] - 1
        ) else cfg["proj_resid_gain"]
        if cfg["proj_skip_gain"] != 1 or pr != 0 or cfg["proj_init_type"] != "id":
            self.c_proj = MyConv1D(d, d, pr, cfg["proj_skip_gain"], cfg["proj_init_type"], bias=False)
        else:
            self.c_proj = nn.Identity()
        ones = torch.ones(1, H, 1, 1)
        self.attn_mat_resid_gain = nn.Parameter(cfg["attn_mat_resid_gain"] * ones)
        self.attn_mat_skip_gain = nn.Parameter(cfg["attn_mat_skip_gain"] * ones)
        self.centre_attn_gain = nn.Parameter(cfg["centre_attn_gain"] * ones)

    def heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.H, self.dh).permute(0, 2, 1, 3)

    def forward(self, x):
        B, T, d = x.shape
        q, k = self.qk_attn(x).split(d, dim=2)
        v = self.v_attn(x)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        s = q @ k.transpose(-1, -2)
        if self.cfg["scale_attn_weights"]:
            s = s / v.size(-1) ** 0.5
        if self.cfg["scale_attn_by_inverse_layer_idx"]:
            s = s / float(self.i + 1)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        s = torch.where(causal, s, torch.tensor(torch.finfo(s.dtype).min, dtype=s.dtype))
        p = F.softmax(s, dim=-1)
        a = self.attn_mat_resid_gain * p
        if self.cfg["centre_attn"]:
            uniform = torch.tril(torch.ones(T, T, dtype=s.dtype)) / torch.arange(
                1, T + 1, dtype=s.dtype).view(-1, 1)
            a = a + self.attn_mat_skip_gain * torch.eye(T, dtype=s.dtype) \
                - self.centre_attn_gain * uniform
        o = (a @ v).permute(0, 2, 1, 3).reshape(B, T, d)
        return self.c_proj(o)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        inner = cfg["n_inner"] or 4 * d
        self.c_fc = MyConv1D(inner, d, bias=False)
        self.c_proj = MyConv1D(d, inner, bias=False)
        self.cfg = cfg

    def act(self, x):
        name = self.cfg["activation_function"]
        if name == "leaky_relu":
            return torch.where(x >= 0.0, x, x * self.cfg["lrelu_neg_slope"])
        if name == "relu":
            return F.relu(x)
        if name in ("gelu_new", "gelu_pytorch_tanh"):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
        if name == "gelu":
            return F.gelu(x)
        if name in ("silu", "swish"):
            return F.silu(x)
        raise ValueError(name)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    """myGPT2Block."""

    def __init__(self, cfg, i):
        super().__init__()
        d, eps = cfg["n_embd"], cfg["layer_norm_epsilon"]
        if cfg["norm_type"] == "ln":
            self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        elif cfg["norm_type"] == "rmsnorm":
            self.ln_1, self.ln_2 = RMSNorm(d, eps), RMSNorm(d, eps)
        else:
            self.ln_1 = nn.Identity() if i > 0 else nn.LayerNorm(d, eps=eps)
            self.ln_2 = nn.Identity()
        self.cfg = cfg
        self.attn = Attention(cfg, i)
        self.mlp = MLP(cfg)
        self.attn_block_resid_gain = nn.Parameter(torch.tensor([float(cfg["attn_block_resid_gain"])]))
        self.attn_block_skip_gain = nn.Parameter(torch.tensor([float(cfg["attn_block_skip_gain"])]))
        self.mlp_block_resid_gain = nn.Parameter(torch.tensor([float(cfg["mlp_block_resid_gain"])]))
        self.mlp_block_skip_gain = nn.Parameter(torch.tensor([float(cfg["mlp_block_skip_gain"])]))

    def forward(self, x):
        c = self.cfg
        if c["norm_position"] == "post":
            x = self.ln_1(x)
        skip = x
        if c["norm_position"] == "pre":
            x = self.ln_1(x)
        a = self.attn(x)
        if c["parallel_layers"]:
            h = self.mlp_block_resid_gain * self.mlp(x) + self.attn_block_resid_gain * a
            if c["mlp_block_skip_gain"] != 0:
                h = h + self.mlp_block_skip_gain * skip
            return h
        h = self.attn_block_resid_gain * a
        if c["attn_block_skip_gain"] != 0:
            h = h + self.attn_block_skip_gain * skip
        if c["norm_position"] == "post":
            h = self.ln_2(h)
        skip = h
        if c["norm_position"] == "pre":
            h = self.ln_2(h)
        h2 = self.mlp_block_resid_gain * self.mlp(h)
        if c["mlp_block_skip_gain"] != 0:
            h2 = h2 + self.mlp_block_skip_gain * skip
        return h2


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        self.wte = nn.Embedding(cfg["vocab_size"], d)
        self.wpe = nn.Embedding(cfg["n_positions"], d)
        self.h = nn.ModuleList(Block(cfg, i) for i in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(d, eps=cfg["layer_norm_epsilon"])


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2's tie_weights()

    def forward(self, ids):
        t = self.transformer
        T = ids.shape[1]
        x = t.wte(ids) + t.wpe(torch.arange(T))
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x))


@torch.no_grad()
def randomise_(model, gen):
    """Random weights and gains away from their initial values, with O(1) activations: matrices
    ~ N(0, 1/fan_in), embeddings ~ N(0, 1), qk biases ~ N(0, 0.1^2), shaped-attention gains and
    block gains in [0.5, 1.5] (gamma in [0.2, 1.0]), norm scales in [0.5, 1.5], norm biases small.
    Frozen zero biases (MyConv1D bias=False) stay zero; the reparameterised gains get random values
    too (skip gains stay as they are where the config has them at 0)."""
    def unif(p, lo, hi):
        p.copy_(lo + (hi - lo) * torch.rand(p.shape, generator=gen, dtype=p.dtype))

    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("wte.weight") or name.endswith("wpe.weight"):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        elif p.dim() == 2:  # Conv1D weights: [in, out]
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(p.shape[0]))
        elif leaf == "bias" and p.requires_grad and "qk_attn" in name:
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        elif leaf == "bias" and ("ln_" in name):
            p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        elif leaf in ("scale", "weight") and "ln_" in name:
            unif(p, 0.5, 1.5)
        elif leaf == "centre_attn_gain":
            unif(p, 0.2, 1.0)
        elif "gain" in leaf:
            if leaf == "mlp_block_skip_gain" and model.cfg["mlp_block_skip_gain"] == 0:
                continue
            unif(p, 0.5, 1.5)
    return model
