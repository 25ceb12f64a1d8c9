"""sasp_model.py: the PyTorch reference of the SAS-P model and of the Pre-LN baseline.

The math is docs/sasp-block.md (in the repository: docs/ and the spec the engine is tested
against). This is both the model the trainer trains and the reference the C engine is checked against,
so it is written to be read: one block class per architecture, each forward pass top to bottom.

The parameter names of SASPModel are exactly the checkpoint's tensor names
(tok_emb.weight, layers.N.attn.wq.weight, layers.N.attn.alpha, layers.N.attn_gain, ...), so
model.state_dict() is what checkpoint_io.py writes, and what it reads loads with load_state_dict().

    cfg = ModelConfig(d_model=96, n_heads=3, d_ff=200, vocab_size=301, n_layers=2)
    model = SASPModel(cfg); init_paper_(model)
    logits = model(tokens)            # tokens: LongTensor [B, T] -> logits [B, T, vocab_size]
"""
import json
import math
from dataclasses import dataclass, field, asdict
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHITECTURES = ("sasp", "preln")
NORMS = ("rmsnorm", "layernorm", "none")
ACTIVATIONS = ("relu", "gelu", "silu")
POSITIONS = ("rope", "learned")


@dataclass
class ModelConfig:
    """config.json (docs/checkpoint-format.md), plus four optional keys that say which
    optional tensors a model has: the engine reads those from model.safetensors itself, and
    checkpoint_io.load_checkpoint infers them from the tensor names too."""
    architecture: str = "sasp"
    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    d_ff: int = 1024
    max_seq_len: int = 1024
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    activation: str = "relu"
    position: str = "rope"
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    bos_token_id: int = 0
    eos_token_id: int = 0
    # Optional tensors (not part of the spec's config.json; readers ignore unknown keys).
    qk_bias: bool = False                                  # layers.N.attn.wq.bias / wk.bias
    value_layers: List[int] = field(default_factory=list)  # sasp: layers with layers.N.attn.wv.weight
    out_layers: List[int] = field(default_factory=list)    # sasp: layers with layers.N.attn.wo.weight
    skip_gain: bool = False                                # sasp: layers.N.skip_gain

    # Keys a config.json must have; the others fall back to the defaults above.
    REQUIRED = ("architecture", "vocab_size", "d_model", "n_layers", "n_heads", "d_ff",
                "max_seq_len", "norm", "activation", "position")

    def __post_init__(self):
        self.validate()

    @property
    def d_head(self):
        return self.d_model // self.n_heads

    def has_wv(self, layer):
        return self.architecture == "preln" or layer in self.value_layers

    def has_wo(self, layer):
        return self.architecture == "preln" or layer in self.out_layers

    def validate(self):
        """Raise ValueError naming the first key whose value is outside its set."""
        def bad(key, why):
            raise ValueError(f"config: \"{key}\" {why} (got {getattr(self, key)!r})")
        for key, allowed in (("architecture", ARCHITECTURES), ("norm", NORMS),
                             ("activation", ACTIVATIONS), ("position", POSITIONS)):
            if getattr(self, key) not in allowed:
                bad(key, "must be one of " + ", ".join(allowed))
        for key in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                bad(key, "must be a positive integer")
        if self.d_model % self.n_heads:
            bad("n_heads", f"must divide d_model = {self.d_model}")
        if self.position == "rope" and self.d_head % 2:
            bad("n_heads", "must leave an even head size for rope")
        for key in ("norm_eps", "rope_theta"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                bad(key, "must be a positive number")
        for key in ("bos_token_id", "eos_token_id"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < self.vocab_size:
                bad(key, "must be a token id in [0, vocab_size)")
        for key in ("tie_embeddings", "qk_bias", "skip_gain"):
            if not isinstance(getattr(self, key), bool):
                bad(key, "must be true or false")
        for key in ("value_layers", "out_layers"):
            v = getattr(self, key)
            if not isinstance(v, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.n_layers for i in v):
                bad(key, "must be a list of layer indices")
        if self.architecture == "preln" and self.skip_gain:
            bad("skip_gain", "is for sasp only (preln has its residual connections)")

    @classmethod
    def from_dict(cls, d):
        """Build from a parsed config.json: required keys must be present, unknown keys are ignored."""
        if not isinstance(d, dict):
            raise ValueError("config: not a JSON object")
        for key in cls.REQUIRED:
            if key not in d:
                raise ValueError(f"config: missing required key \"{key}\"")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in d.items() if k in known}
        for key in ("norm_eps", "rope_theta"):  # JSON may spell 1.0 as 1
            if isinstance(kwargs.get(key), int) and not isinstance(kwargs[key], bool):
                kwargs[key] = float(kwargs[key])
        for key in ("value_layers", "out_layers"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = sorted(set(kwargs[key])) if all(
                    isinstance(i, int) for i in kwargs[key]) else kwargs[key]
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path):
        with open(path, "r", encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON: {e}") from None
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self):
        """The config.json object: the spec's keys, then the optional-tensor keys."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Pieces

class RMSNorm(nn.Module):
    """y = g * x / sqrt(mean(x^2) + eps)."""

    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def make_norm(kind, d, eps):
    """The module for a norm of kind "rmsnorm" or "layernorm"; None for "none" (identity)."""
    if kind == "rmsnorm":
        return RMSNorm(d, eps)
    if kind == "layernorm":
        return nn.LayerNorm(d, eps=eps)  # weight and bias, biased variance
    return None


def apply_norm(norm, x):
    return x if norm is None else norm(x)


def activation(name, x):
    if name == "relu":
        return F.relu(x)
    if name == "gelu":
        return F.gelu(x, approximate="tanh")
    return F.silu(x)


def rope_tables(n_pos, d_head, theta, dtype, device):
    """cos and sin of p * theta_k, [n_pos, d_head/2], with theta_k = theta^(-2k/d_head).
    Computed in float64 and then rounded once to dtype."""
    k = torch.arange(d_head // 2, dtype=torch.float64, device=device)
    inv_freq = theta ** (-2.0 * k / d_head)
    angles = torch.arange(n_pos, dtype=torch.float64, device=device)[:, None] * inv_freq[None, :]
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def apply_rope(x, cos, sin):
    """Rotate x [..., T, d_head] in the half-split form: pairs (k, k + d_head/2).
    cos, sin: [T, d_head/2]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def causal_mask(T, device):
    """True above the diagonal: the positions j > i that query i must not see."""
    return torch.ones(T, T, dtype=torch.bool, device=device).triu(1)


_BIAS_CACHE = {}


def causal_bias(T, dtype, device):
    """The causal mask M as an additive [T, T] bias: 0 on and below the diagonal, -inf above.
    Cached: every layer of every step uses the same one."""
    key = (T, dtype, str(device))
    b = _BIAS_CACHE.get(key)
    if b is None:
        b = torch.zeros(T, T, dtype=dtype, device=device).masked_fill(causal_mask(T, device), float("-inf"))
        _BIAS_CACHE[key] = b
    return b


def stacked_linear(z, linears):
    """z through several nn.Linear of the same input at once, split back into one output each: one
    matrix product over the stacked weights (the engine's [W_Q; W_K; W1]) instead of one per matrix,
    the same numbers up to the order of float additions."""
    w = torch.cat([m.weight for m in linears])
    if any(m.bias is not None for m in linears):
        b = torch.cat([m.bias if m.bias is not None else w.new_zeros(m.out_features) for m in linears])
    else:
        b = None
    return F.linear(z, w, b).split([m.out_features for m in linears], dim=-1)


class Attention(nn.Module):
    """Queries, keys, optional value and output matrices, and (sasp) the shaped-attention gains."""

    def __init__(self, cfg, layer):
        super().__init__()
        d, H = cfg.d_model, cfg.n_heads
        self.cfg = cfg
        self.shaped = cfg.architecture == "sasp"
        self.wq = nn.Linear(d, d, bias=cfg.qk_bias)
        self.wk = nn.Linear(d, d, bias=cfg.qk_bias)
        self.wv = nn.Linear(d, d, bias=False) if cfg.has_wv(layer) else None
        self.wo = nn.Linear(d, d, bias=False) if cfg.has_wo(layer) else None
        if self.shaped:
            self.alpha = nn.Parameter(torch.ones(H))
            self.beta = nn.Parameter(torch.ones(H))
            self.gamma = nn.Parameter(torch.ones(H))

    def split_heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.cfg.n_heads, self.cfg.d_head).transpose(1, 2)  # [B, H, T, dh]

    def forward(self, z, rope, q=None, k=None, v=None):
        """z: the normalised input [B, T, d]; rope: (cos, sin) or None. Returns [B, T, d].
        q, k (and v) may be given already projected (by one stacked product with other matrices)."""
        B, T, d = z.shape
        H, dh = self.cfg.n_heads, self.cfg.d_head
        if q is None:
            q, k = self.wq(z), self.wk(z)
        if v is None:
            v = z if self.wv is None else self.wv(z)
        q, k, v = self.split_heads(q), self.split_heads(k), self.split_heads(v)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        # P = softmax(Q K^T / sqrt(dh) + M): the scale and the mask folded into one product
        scores = torch.baddbmm(causal_bias(T, q.dtype, q.device), q.reshape(B * H, T, dh),
                               k.reshape(B * H, T, dh).transpose(1, 2), alpha=1.0 / math.sqrt(dh))
        p = torch.softmax(scores, dim=-1)
        pv = torch.bmm(p, v.reshape(B * H, T, dh)).view(B, H, T, dh)
        if self.shaped:
            # o = alpha v + beta P v - gamma C v, with (C v)[i] = (1/(i+1)) sum_{j<=i} v[j].
            inv_counts = 1.0 / torch.arange(1, T + 1, dtype=v.dtype, device=v.device)[:, None]
            cv = torch.cumsum(v, dim=-2) * inv_counts
            gain = lambda g: g.view(1, -1, 1, 1)  # noqa: E731  per head
            o = torch.addcmul(gain(self.alpha) * v - gain(self.gamma) * cv, gain(self.beta), pv)
        else:
            o = pv
        o = o.transpose(1, 2).reshape(B, T, d)
        return o if self.wo is None else self.wo(o)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.act = cfg.activation
        self.w1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, z):
        return self.w2(activation(self.act, self.w1(z)))


def block_norm(cfg, layer):
    """The input norm of a layer: "none" keeps a layernorm on the first layer's input only."""
    if cfg.norm == "none":
        return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if layer == 0 else None
    return make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)


class SASPBlock(nn.Module):
    """Y = beta_SA * shaped_attn(Z) + beta_FF * mlp(Z) (+ alpha_skip * X), Z = N(X)."""

    def __init__(self, cfg, layer):
        super().__init__()
        self.norm = block_norm(cfg, layer)
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)
        self.attn_gain = nn.Parameter(torch.ones(1))
        self.mlp_gain = nn.Parameter(torch.ones(1))
        self.skip_gain = nn.Parameter(torch.ones(1)) if cfg.skip_gain else None

    def forward(self, x, rope):
        z = apply_norm(self.norm, x)
        # W_Q, W_K and W1 all read z: one product over the three (as the engine does)
        q, k, u = stacked_linear(z, (self.attn.wq, self.attn.wk, self.mlp.w1))
        mlp = self.mlp.w2(activation(self.mlp.act, u))
        y = self.attn_gain * self.attn(z, rope, q, k) + self.mlp_gain * mlp
        if self.skip_gain is not None:
            y = y + self.skip_gain * x
        return y


class PreLNBlock(nn.Module):
    """X' = X + MHA(N1(X)); Y = X' + W2 act(W1 N2(X'))."""

    def __init__(self, cfg, layer):
        super().__init__()
        self.norm = block_norm(cfg, layer)
        self.attn = Attention(cfg, layer)
        self.norm2 = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, rope):
        z = apply_norm(self.norm, x)
        q, k, v = stacked_linear(z, (self.attn.wq, self.attn.wk, self.attn.wv))  # one product, as sasp
        x = x + self.attn(z, rope, q, k, v)
        return x + self.mlp(apply_norm(self.norm2, x))


class SASPModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, d) if cfg.position == "learned" else None
        block = SASPBlock if cfg.architecture == "sasp" else PreLNBlock
        self.layers = nn.ModuleList(block(cfg, i) for i in range(cfg.n_layers))
        # The final norm: the kind of "norm", but a layernorm when "norm" is "none".
        self.norm_f = make_norm("layernorm" if cfg.norm == "none" else cfg.norm, d, cfg.norm_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(d, cfg.vocab_size, bias=False)

    def forward(self, tokens):
        """tokens: LongTensor [B, T] (T <= max_seq_len), positions 0..T-1 -> logits [B, T, vocab]."""
        return self.hidden(tokens) @ self.head_weight().t()

    def head_weight(self):
        """The output matrix [vocab, d]: the embedding when tied."""
        return self.tok_emb.weight if self.lm_head is None else self.lm_head.weight

    def hidden(self, tokens):
        """The final hidden states N_f(X_L) [B, T, d]: everything but the head."""
        B, T = tokens.shape
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than max_seq_len {self.cfg.max_seq_len}")
        x = self.tok_emb(tokens)
        rope = None
        if self.pos_emb is not None:
            x = x + self.pos_emb.weight[:T]
        else:
            rope = rope_tables(T, self.cfg.d_head, self.cfg.rope_theta, x.dtype, x.device)
        for layer in self.layers:
            x = layer(x, rope)
        return self.norm_f(x)


# ---------------------------------------------------------------------------------------------
# The loss: the head and the cross-entropy together, a chunk of rows at a time

LOSS_CHUNK = 512  # rows of logits at a time: 16 MB of float32 at a vocabulary of 8,192


class ChunkedHeadLoss(torch.autograd.Function):
    """sum over rows of cross_entropy(h @ w.T, targets), without ever holding the logits of all rows:
    for each chunk of rows the logits, their log-sum-exp and, when gradients are wanted, the softmax
    less the one-hot targets, multiplied back into the gradients of h and w right there. Training
    at shape A spent 1.2 of its 1.9 s a step on the [16 x 256, 8192] logits (the float32 copy,
    log_softmax and its backward, the zero-filled gradient); this takes about 0.24 s
    (train/profile_step.py, docs/sasp-vs-preln.md). With bf16, h and w are rounded to bfloat16 for the
    products and the logits come out rounded to bfloat16, as CPU autocast does for `h @ w.t()`; the
    softmax is float32, as cross_entropy(logits.float()) computes it. The gradient of w is summed over
    the chunks in float32 (autocast rounds the whole product once to bfloat16)."""

    @staticmethod
    def forward(ctx, h, w, targets, chunk, bf16, want_grad):
        N = h.shape[0]
        wl = w.to(torch.bfloat16) if bf16 else w
        total = torch.zeros((), dtype=torch.float32)
        grad_h = torch.empty_like(h) if want_grad else None
        grad_w = torch.zeros(w.shape, dtype=torch.float32) if want_grad else None
        for s in range(0, N, chunk):
            hc = h[s:s + chunk]
            hl = hc.to(torch.bfloat16) if bf16 else hc
            logits = (hl @ wl.t()).float()
            t = targets[s:s + chunk]
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if want_grad:
                g = logits.sub_(lse[:, None]).exp_()  # the softmax, in place of the logits
                g[torch.arange(g.shape[0]), t] -= 1.0
                gl = g.to(torch.bfloat16) if bf16 else g
                grad_h[s:s + chunk] = gl @ wl
                grad_w += (gl.t() @ hl).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.w_dtype = w.dtype
        return total

    @staticmethod
    def backward(ctx, g):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * g, (grad_w * g).to(ctx.w_dtype), None, None, None, None


def lm_loss(model, x, y, bf16=False, reduction="mean", chunk=LOSS_CHUNK):
    """Next-token cross-entropy of model on tokens x [B, T] against targets y [B, T] (nats, the mean
    or the sum over positions): F.cross_entropy(model(x).float(), y) under CPU autocast when bf16,
    the head computed by ChunkedHeadLoss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        h = model.hidden(x)
    h = h.reshape(-1, h.shape[-1])
    w = model.head_weight()
    want_grad = torch.is_grad_enabled() and (h.requires_grad or w.requires_grad)
    total = ChunkedHeadLoss.apply(h, w, y.reshape(-1), chunk, bf16, want_grad)
    return total / y.numel() if reduction == "mean" else total


# ---------------------------------------------------------------------------------------------
# Initialisations and counts

def _shaped_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SASPBlock)]


@torch.no_grad()
def init_paper_(model, std=0.02, mlp_gain=None):
    """The paper's initialisation (spec, "Training recipe"): W_Q = 0; W_K, W1, W2, E (and the other
    matrices: W_V, W_O, learned positions, a separate head) ~ N(0, std^2); alpha = beta = gamma = 1;
    beta_SA = 1; beta_FF = mlp_gain (default 1/sqrt(n_layers)); alpha_skip = 1; norm weights 1,
    biases 0. For preln: GPT-2's init (W_Q too ~ N(0, std^2), W_O and W2 scaled by 1/sqrt(2L))."""
    cfg = model.cfg
    if mlp_gain is None:
        mlp_gain = 1.0 / math.sqrt(cfg.n_layers)
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if p.dim() == 2:
            nn.init.normal_(p, 0.0, std)
        elif leaf == "bias":
            p.zero_()
        else:  # norm weights and the sasp gains
            p.fill_(1.0)
    for layer in model.layers:
        if isinstance(layer, SASPBlock):
            layer.attn.wq.weight.zero_()
            layer.mlp_gain.fill_(mlp_gain)
        else:
            scale = std / math.sqrt(2 * cfg.n_layers)
            nn.init.normal_(layer.attn.wo.weight, 0.0, scale)
            nn.init.normal_(layer.mlp.w2.weight, 0.0, scale)
    return model


@torch.no_grad()
def init_random_(model, generator=None):
    """Random weights with O(1) activations and logits, for tests: every matrix ~ N(0, 1/fan_in)
    (the embedding and a separate head ~ N(0, 1/d), so logits are O(1)); biases ~ N(0, 0.1^2).
    Then random_gains_. W_Q is non-zero, so the softmax is far from uniform."""
    for name, p in model.named_parameters():
        if p.dim() == 2:
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) / math.sqrt(p.shape[1]))
        elif name.endswith(".bias") and not _is_norm_param(model, name):
            p.copy_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    random_gains_(model, generator)
    return model


def _is_norm_param(model, name):
    owner = model.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(owner, (RMSNorm, nn.LayerNorm))


@torch.no_grad()
def random_gains_(model, generator=None):
    """Set every gain to a random value away from its initial one, so tests exercise every term:
    alpha, beta in [0.5, 1.5], gamma in [0.2, 1.0], beta_SA, beta_FF, alpha_skip in [0.5, 1.5],
    norm weights in [0.5, 1.5], norm biases ~ N(0, 0.1^2). W_Q gets N(0, 1/d) weights if it is zero."""
    def uniform(p, lo, hi):
        p.copy_(lo + (hi - lo) * torch.rand(p.shape, generator=generator, dtype=p.dtype))

    for module in model.modules():
        if isinstance(module, (RMSNorm, nn.LayerNorm)):
            uniform(module.weight, 0.5, 1.5)
            if getattr(module, "bias", None) is not None:
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator,
                                                    dtype=module.bias.dtype))
    for layer in model.layers:
        wq = layer.attn.wq.weight
        if not wq.abs().max() > 0:
            wq.copy_(torch.randn(wq.shape, generator=generator, dtype=wq.dtype) / math.sqrt(wq.shape[1]))
        if isinstance(layer, SASPBlock):
            uniform(layer.attn.alpha, 0.5, 1.5)
            uniform(layer.attn.beta, 0.5, 1.5)
            uniform(layer.attn.gamma, 0.2, 1.0)
            uniform(layer.attn_gain, 0.5, 1.5)
            uniform(layer.mlp_gain, 0.5, 1.5)
            if layer.skip_gain is not None:
                uniform(layer.skip_gain, 0.5, 1.5)
    return model


def param_count(model, include_embeddings=True):
    """Parameters in the checkpoint (tied embeddings counted once)."""
    n = sum(p.numel() for p in model.parameters())
    if not include_embeddings:
        n -= model.tok_emb.weight.numel()
        if model.pos_emb is not None:
            n -= model.pos_emb.weight.numel()
    return n


def forward_flops(cfg, n_ctx):
    """FLOPs (2 per multiply-add) per token of a forward pass with n_ctx positions of context:
    the matrices (Q, K, V, O, MLP, head) plus attention (scores and weighted sums over n_ctx)."""
    d, F_, L = cfg.d_model, cfg.d_ff, cfg.n_layers
    macs = 0
    for layer in range(L):
        macs += 2 * d * d                                   # W_Q, W_K
        macs += d * d * (cfg.has_wv(layer) + cfg.has_wo(layer))
        macs += 2 * d * F_                                  # W1, W2
        macs += 2 * n_ctx * d                               # Q K^T and P V
    macs += d * cfg.vocab_size                              # head
    return 2 * macs
