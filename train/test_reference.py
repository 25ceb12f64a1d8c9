#!/usr/bin/python3
"""test_reference.py: self-tests of the PyTorch reference (sasp_model.py) and checkpoint_io.py.

    /usr/bin/python3 train/test_reference.py        (plain asserts; prints one line per test)

Checks the vectorised model against a direct, position-by-position transcription of
docs/sasp-block.md in float64 (every architecture, norm, position and activation, with
random gains and every optional tensor), RoPE against complex multiplication, the identity at the
paper's initialisation, causality, save -> load round trips for each dtype, the loader's errors,
and that a tiny model can overfit a short sequence.
"""
import json
import math
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sasp_model import (ModelConfig, SASPModel, apply_rope, rope_tables, init_paper_,  # noqa: E402
                        init_random_, random_gains_, param_count, forward_flops)
from checkpoint_io import (save_checkpoint, load_checkpoint, round_to_dtype_, read_safetensors,  # noqa: E402
                           write_safetensors, CheckpointError)

torch.set_num_threads(1)


def small_cfg(**kw):
    base = dict(vocab_size=37, d_model=12, n_layers=2, n_heads=3, d_ff=20, max_seq_len=24)
    base.update(kw)
    return ModelConfig(**base)


def all_cfgs():
    """Every architecture x norm x position, activations rotating, optional tensors in some."""
    acts = ["relu", "gelu", "silu"]
    n = 0
    for arch in ("sasp", "preln"):
        for norm in ("rmsnorm", "layernorm", "none"):
            for pos in ("rope", "learned"):
                extra = n % 2 == 1
                yield small_cfg(architecture=arch, norm=norm, position=pos, activation=acts[n % 3],
                                qk_bias=extra, tie_embeddings=not extra,
                                value_layers=[0] if extra and arch == "sasp" else [],
                                out_layers=[1] if extra and arch == "sasp" else [],
                                skip_gain=extra and arch == "sasp")
                n += 1


# ---------------------------------------------------------------------------------------------
# A direct transcription of the spec, one position at a time, in float64.

def naive_forward(model, tokens):
    cfg = model.cfg
    P = {k: v.double() for k, v in model.state_dict().items()}
    T, d, H = len(tokens), cfg.d_model, cfg.n_heads
    dh = d // H

    def norm(x, prefix, kind):
        if prefix + ".weight" not in P:
            return x
        g = P[prefix + ".weight"]
        if kind == "rmsnorm":
            return g * x / math.sqrt(float((x * x).mean()) + cfg.norm_eps)
        mu = x.mean()
        var = ((x - mu) ** 2).mean()
        return g * (x - mu) / math.sqrt(float(var) + cfg.norm_eps) + P[prefix + ".bias"]

    def kind(layer):
        return "layernorm" if cfg.norm == "none" else cfg.norm

    def act(x):
        if cfg.activation == "relu":
            return torch.clamp(x, min=0)
        if cfg.activation == "gelu":
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return x / (1 + torch.exp(-x))

    def lin(name, x):
        y = P[name + ".weight"] @ x
        return y + P[name + ".bias"] if name + ".bias" in P else y

    def rope(x, p):
        out = x.clone()
        for h in range(H):
            for k in range(dh // 2):
                th = cfg.rope_theta ** (-2.0 * k / dh)
                c, s = math.cos(p * th), math.sin(p * th)
                a, b = x[h * dh + k], x[h * dh + k + dh // 2]
                out[h * dh + k] = a * c - b * s
                out[h * dh + k + dh // 2] = a * s + b * c
        return out

    X = [P["tok_emb.weight"][t].clone() for t in tokens]
    if cfg.position == "learned":
        X = [x + P["pos_emb.weight"][i] for i, x in enumerate(X)]
    for l in range(cfg.n_layers):
        pre = f"layers.{l}"
        Z = [norm(x, pre + ".norm", kind(l)) for x in X]
        Q = [lin(pre + ".attn.wq", z) for z in Z]
        K = [lin(pre + ".attn.wk", z) for z in Z]
        V = [lin(pre + ".attn.wv", z) if pre + ".attn.wv.weight" in P else z for z in Z]
        if cfg.position == "rope":
            Q = [rope(q, i) for i, q in enumerate(Q)]
            K = [rope(k, i) for i, k in enumerate(K)]
        attn = []
        for i in range(T):
            o = torch.zeros(d, dtype=torch.float64)
            for h in range(H):
                sl = slice(h * dh, (h + 1) * dh)
                s = torch.tensor([float(Q[i][sl] @ K[j][sl]) / math.sqrt(dh) for j in range(i + 1)],
                                 dtype=torch.float64)
                p = torch.exp(s - s.max())
                p = p / p.sum()
                if cfg.architecture == "sasp":
                    a = P[pre + ".attn.alpha"][h]
                    b = P[pre + ".attn.beta"][h]
                    g = P[pre + ".attn.gamma"][h]
                    # row i of A = alpha I + beta P - gamma C
                    row = [b * p[j] - g / (i + 1) + (a if j == i else 0.0) for j in range(i + 1)]
                else:
                    row = list(p)
                for j in range(i + 1):
                    o[sl] += row[j] * V[j][sl]
            attn.append(lin(pre + ".attn.wo", o) if pre + ".attn.wo.weight" in P else o)
        if cfg.architecture == "sasp":
            Y = []
            for i in range(T):
                mlp = P[pre + ".mlp.w2.weight"] @ act(P[pre + ".mlp.w1.weight"] @ Z[i])
                y = P[pre + ".attn_gain"][0] * attn[i] + P[pre + ".mlp_gain"][0] * mlp
                if pre + ".skip_gain" in P:
                    y = y + P[pre + ".skip_gain"][0] * X[i]
                Y.append(y)
        else:
            Y = []
            for i in range(T):
                x1 = X[i] + attn[i]
                z2 = norm(x1, pre + ".norm2", cfg.norm)
                Y.append(x1 + P[pre + ".mlp.w2.weight"] @ act(P[pre + ".mlp.w1.weight"] @ z2))
        X = Y
    head = P["lm_head.weight"] if "lm_head.weight" in P else P["tok_emb.weight"]
    return torch.stack([head @ norm(x, "norm_f", kind(-1)) for x in X])


# ---------------------------------------------------------------------------------------------

def test_matches_spec_transcription():
    worst = 0.0
    for n, cfg in enumerate(all_cfgs()):
        g = torch.Generator().manual_seed(100 + n)
        model = init_random_(SASPModel(cfg), g).double()
        tokens = torch.randint(0, cfg.vocab_size, (19,), generator=g)
        with torch.no_grad():
            fast = model(tokens[None])[0]
        ref = naive_forward(model, tokens.tolist())
        err = float((fast - ref).abs().max() / ref.abs().max())
        worst = max(worst, err)
        assert err < 1e-12, (cfg, err)
    print(f"ok  vectorised model == spec transcription, 12 configs, worst rel err {worst:.2e}")


def test_rope_matches_complex():
    g = torch.Generator().manual_seed(1)
    T, dh, theta = 50, 16, 10000.0
    x = torch.randn(2, 3, T, dh, generator=g, dtype=torch.float64)
    cos, sin = rope_tables(T, dh, theta, torch.float64, "cpu")
    got = apply_rope(x, cos, sin)
    half = dh // 2
    c = torch.complex(x[..., :half], x[..., half:])
    k = torch.arange(half, dtype=torch.float64)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta ** (-2 * k / dh)
    want = c * torch.polar(torch.ones_like(angle), angle)
    assert torch.allclose(got, torch.cat((want.real, want.imag), -1), atol=1e-12, rtol=0)
    assert torch.allclose(got[..., 0, :], x[..., 0, :])  # position 0 is not rotated
    print("ok  rope (half-split) == complex multiplication by e^(i p theta_k)")


def test_paper_init_is_identity_attention():
    for norm in ("rmsnorm", "layernorm", "none"):
        cfg = small_cfg(norm=norm, qk_bias=True, n_layers=3)
        g = torch.Generator().manual_seed(7)
        model = init_paper_(SASPModel(cfg)).double()
        z = torch.randn(2, 17, cfg.d_model, generator=g, dtype=torch.float64)
        rope = rope_tables(17, cfg.d_head, cfg.rope_theta, torch.float64, "cpu")
        for layer in model.layers:
            attn = layer.attn
            assert float(attn.wq.weight.abs().max()) == 0.0
            with torch.no_grad():
                # alpha = beta = gamma = 1: A = I
                assert torch.allclose(attn(z, rope), z, atol=1e-12)
                # alpha = 1, beta = gamma (any value): P = C, so A = I still
                attn.beta.copy_(torch.tensor([0.3, 1.7, 0.9]))
                attn.gamma.copy_(attn.beta)
                assert torch.allclose(attn(z, rope), z, atol=1e-12)
                # alpha != 1: A = alpha I, per head
                attn.alpha.copy_(torch.tensor([0.5, 2.0, -1.0]))
                want = z * attn.alpha.repeat_interleave(cfg.d_head)
                assert torch.allclose(attn(z, rope), want, atol=1e-12)
                # and with W_Q non-zero the attention is no longer the identity
                attn.alpha.fill_(1.0)
                attn.wq.weight.normal_(0, 1)
                assert not torch.allclose(attn(z, rope), z, atol=1e-3)
    cfg = small_cfg(n_layers=9)
    model = init_paper_(SASPModel(cfg))
    assert abs(float(model.layers[0].mlp_gain) - 1 / 3) < 1e-7
    assert float(model.layers[0].attn_gain) == 1.0
    print("ok  paper init: W_Q = 0 gives A = alpha I (identity when alpha = 1, beta = gamma)")


def test_causal():
    for cfg in all_cfgs():
        g = torch.Generator().manual_seed(3)
        model = init_random_(SASPModel(cfg), g).double()
        a = torch.randint(0, cfg.vocab_size, (1, 20), generator=g)
        b = a.clone()
        b[0, 12:] = (b[0, 12:] + 1) % cfg.vocab_size
        with torch.no_grad():
            la, lb = model(a), model(b)
        assert torch.allclose(la[0, :12], lb[0, :12], atol=1e-12, rtol=0)
        assert not torch.allclose(la[0, 12:], lb[0, 12:])
    print("ok  causal: changing later tokens leaves earlier logits unchanged")


def test_random_gains_move_every_gain():
    cfg = small_cfg(skip_gain=True, norm="layernorm")
    model = init_paper_(SASPModel(cfg))
    random_gains_(model, torch.Generator().manual_seed(5))
    for layer in model.layers:
        for p in (layer.attn.alpha, layer.attn.beta, layer.attn.gamma, layer.attn_gain,
                  layer.mlp_gain, layer.skip_gain, layer.norm.weight):
            assert float((p - 1).abs().min()) > 1e-4
        assert float(layer.norm.bias.abs().min()) > 0
        assert float(layer.attn.wq.weight.abs().max()) > 0
    print("ok  random_gains_ moves every gain off its initial value and makes W_Q non-zero")


def test_round_trip_each_dtype():
    with tempfile.TemporaryDirectory() as tmp:
        for n, cfg in enumerate(all_cfgs()):
            for dtype in ("F32", "F16", "BF16"):
                g = torch.Generator().manual_seed(n)
                model = round_to_dtype_(init_random_(SASPModel(cfg), g), dtype).eval()
                out = os.path.join(tmp, f"m{n}{dtype}")
                save_checkpoint(model, cfg, out, dtype=dtype, metadata={"step": "12"})
                back, cfg2 = load_checkpoint(out)
                assert cfg2 == cfg, (cfg, cfg2)
                assert back.checkpoint_metadata == {"format": "pt", "step": "12"}
                tokens = torch.randint(0, cfg.vocab_size, (2, 15), generator=g)
                with torch.no_grad():
                    assert torch.equal(model(tokens), back(tokens)), (cfg, dtype)
                with open(os.path.join(out, "model.safetensors"), "rb") as f:
                    n_header = int.from_bytes(f.read(8), "little")
                    header = json.loads(f.read(n_header))
                assert (8 + n_header) % 64 == 0
                assert ("lm_head.weight" in header) == (not cfg.tie_embeddings)
                assert all(v["dtype"] == dtype for k, v in header.items() if k != "__metadata__")
    print("ok  save -> load gives identical logits for F32, F16, BF16 (12 configs each)")


def test_loader_errors():
    cfg = small_cfg()
    model = init_random_(SASPModel(cfg), torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(model, cfg, tmp)
        path = os.path.join(tmp, "model.safetensors")
        good = dict(read_safetensors(path)[0])

        def expect(tensors, words, raw=None, file=path):
            if raw is not None:
                with open(path, "wb") as f:
                    f.write(raw)
            else:
                write_safetensors(path, tensors)
            try:
                load_checkpoint(tmp)
            except CheckpointError as e:
                assert file in str(e) and all(w in str(e) for w in words), (str(e), words)
            else:
                raise AssertionError(f"no error for {words}")

        expect({**good, "layers.0.attn.bogus": torch.zeros(3)}, ["layers.0.attn.bogus", "unknown"])
        expect({k: v for k, v in good.items() if k != "layers.1.mlp.w2.weight"},
               ["layers.1.mlp.w2.weight", "missing"])
        expect({**good, "layers.0.attn.alpha": torch.zeros(4)}, ["layers.0.attn.alpha", "shape"])
        expect({}, ["longer than the file"], raw=(1000).to_bytes(8, "little") + b"{}")
        expect({}, ["not valid JSON"], raw=(4).to_bytes(8, "little") + b"{x}x")
        hdr = b'{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}'
        expect({}, ["unknown dtype"], raw=len(hdr).to_bytes(8, "little") + hdr + bytes(8))
        hdr = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
        expect({}, ["outside the data section"], raw=len(hdr).to_bytes(8, "little") + hdr + bytes(4))
        hdr = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
               b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}')
        expect({}, ["overlaps"], raw=len(hdr).to_bytes(8, "little") + hdr + bytes(12))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump({k: v for k, v in cfg.to_dict().items() if k != "d_ff"}, f)
        expect(good, ["d_ff", "missing"], file=os.path.join(tmp, "config.json"))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump({**cfg.to_dict(), "norm": "batchnorm"}, f)
        expect(good, ["norm", "batchnorm"], file=os.path.join(tmp, "config.json"))
    print("ok  loader rejects unknown, missing, misshapen tensors, bad headers and bad configs")


def test_overfits_short_sequence():
    torch.manual_seed(0)
    for arch in ("sasp", "preln"):
        cfg = small_cfg(architecture=arch, vocab_size=50, d_model=32, n_heads=4, d_ff=64,
                        max_seq_len=32, n_layers=2)
        model = init_paper_(SASPModel(cfg))
        seq = torch.randint(0, cfg.vocab_size, (1, 25))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        losses = []
        for _ in range(100):
            logits = model(seq[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size),
                                                     seq[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        assert losses[-1] < 0.1 * losses[0] and losses[-1] < 0.5, (arch, losses[0], losses[-1])
        print(f"ok  {arch} overfits 24 tokens in 100 steps: loss {losses[0]:.3f} -> {losses[-1]:.4f}")


def test_counts():
    cfg = ModelConfig(d_model=768, n_layers=18, n_heads=12, d_ff=3072, vocab_size=50257)
    sasp = param_count(SASPModel(cfg), include_embeddings=False)
    preln = param_count(SASPModel(ModelConfig(**{**cfg.to_dict(), "architecture": "preln"})),
                        include_embeddings=False)
    d = 768
    assert sasp == 18 * (2 * d * d + 2 * d * 3072 + 1 * d + 3 * 12 + 2) + d
    assert preln == 18 * (4 * d * d + 2 * d * 3072 + 2 * d) + d
    f_sasp, f_preln = forward_flops(cfg, 0), forward_flops(ModelConfig(
        **{**cfg.to_dict(), "architecture": "preln"}), 0)
    assert f_sasp < f_preln
    print(f"ok  counts: 18x768 non-embedding params sasp {sasp / 1e6:.1f}M, preln {preln / 1e6:.1f}M")


if __name__ == "__main__":
    test_rope_matches_complex()
    test_paper_init_is_identity_attention()
    test_random_gains_move_every_gain()
    test_matches_spec_transcription()
    test_causal()
    test_round_trip_each_dtype()
    test_loader_errors()
    test_overfits_short_sequence()
    test_counts()
    print("all reference tests passed")
