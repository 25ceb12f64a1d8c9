"""checkpoint_io.py: read and write the checkpoint format (docs/checkpoint-format.md).

A model is a directory: config.json, model.safetensors, and optionally tokenizer.json.
safetensors is written and read here directly (Debian has no package for it):

    8 bytes    header length N, unsigned little-endian
    N bytes    JSON: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}}
               padded with spaces so that the data starts at a multiple of 64 bytes
    the data   every tensor's bytes, little-endian, row-major, back to back (offsets relative to here)

    save_checkpoint(model, cfg, "models/tiny", dtype="BF16", metadata={"step": "1000"})
    model, cfg = load_checkpoint("models/tiny")
"""
import json
import math
import os
import shutil

import numpy as np
import torch

from sasp_model import ModelConfig, SASPModel

MAX_HEADER_BYTES = 100 * 1000 * 1000
DTYPES = {  # safetensors dtype -> (bytes per element, torch dtype)
    "F32": (4, torch.float32),
    "F16": (2, torch.float16),
    "BF16": (2, torch.bfloat16),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------
# safetensors

def _tensor_bytes(t, dtype):
    """The little-endian bytes of t stored as dtype (rounded to nearest even, as torch converts)."""
    t = t.detach().to("cpu").contiguous().to(DTYPES[dtype][1])
    if dtype == "BF16":  # numpy has no bfloat16: reinterpret the bits as int16
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype("<f4" if dtype == "F32" else "<f2").tobytes()


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """Write the dict name -> tensor to path, every tensor as dtype (F32, F16 or BF16).
    metadata: dict of strings for "__metadata__"."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (F32, F16 or BF16)")
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        data = _tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 64)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for data in chunks:
            f.write(data)
    os.replace(tmp, path)


def read_safetensors(path):
    """Read path -> (dict name -> float32 tensor, metadata dict). Raises CheckpointError naming the
    file (and tensor) for a header longer than the file or than 100 MB, JSON that does not parse,
    an unknown dtype, a shape that disagrees with its extent, offsets outside the data section, and
    overlapping extents."""
    def fail(msg):
        raise CheckpointError(f"{path}: {msg}")

    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        fail(f"file of {len(blob)} bytes is too short for a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if n > MAX_HEADER_BYTES:
        fail(f"header length {n} is larger than the limit of {MAX_HEADER_BYTES} bytes")
    if 8 + n > len(blob):
        fail(f"header length {n} is longer than the file ({len(blob)} bytes)")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        fail("__metadata__ is not an object")
    data = memoryview(blob)[8 + n:]
    tensors, extents = {}, []
    for name, info in header.items():
        if not isinstance(info, dict):
            fail(f"tensor {name}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            fail(f"tensor {name}: unknown dtype {dtype!r} (F32, F16 or BF16)")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            fail(f"tensor {name}: bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)):
            fail(f"tensor {name}: bad data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            fail(f"tensor {name}: data_offsets [{begin}, {end}] outside the data section "
                 f"of {len(data)} bytes")
        size, tdtype = DTYPES[dtype]
        numel = math.prod(shape)
        if end - begin != numel * size:
            fail(f"tensor {name}: {end - begin} bytes do not hold shape {shape} of {dtype}")
        raw = data[begin:end]
        if dtype == "F32":
            arr = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32))
        elif dtype == "F16":
            arr = torch.from_numpy(np.frombuffer(raw, dtype="<f2").astype(np.float32))
        else:  # BF16: the top 16 bits of a float32
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = torch.from_numpy(bits.view(np.float32).copy())
        tensors[name] = arr.reshape(shape)
        if end > begin:
            extents.append((begin, end, name))
    extents.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(extents, extents[1:]):
        if b1 < e0:
            fail(f"tensor {n1}: data overlaps tensor {n0}")
    return tensors, metadata


@torch.no_grad()
def round_to_dtype_(model, dtype):
    """Round every parameter of model to what a checkpoint of dtype stores (the values load_checkpoint
    gives back), keeping the model's own float type. For references computed from stored weights."""
    for p in model.parameters():
        p.copy_(p.to(DTYPES[dtype][1]).to(p.dtype))
    return model


# ---------------------------------------------------------------------------------------------
# checkpoints

def expected_shapes(cfg):
    """name -> shape of every tensor a model of cfg has (what SASPModel(cfg).state_dict() holds)."""
    return {name: tuple(t.shape) for name, t in SASPModel(cfg).state_dict().items()}


def save_checkpoint(model, cfg, out_dir, dtype="F32", metadata=None, tokenizer_json_path=None):
    """Write out_dir/config.json and out_dir/model.safetensors (and copy tokenizer.json).
    Tied embeddings store no lm_head (the model has none)."""
    os.makedirs(out_dir, exist_ok=True)
    state = model.state_dict()
    want = expected_shapes(cfg)
    if set(state) != set(want):
        raise ValueError(f"model does not match its config: extra {sorted(set(state) - set(want))}, "
                         f"missing {sorted(set(want) - set(state))}")
    meta = {"format": "pt"}
    meta.update(metadata or {})
    write_safetensors(os.path.join(out_dir, "model.safetensors"), state, dtype, meta)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg.to_dict(), f, indent=2)
        f.write("\n")
    if tokenizer_json_path:
        dst = os.path.join(out_dir, "tokenizer.json")
        if os.path.abspath(tokenizer_json_path) != os.path.abspath(dst):
            shutil.copyfile(tokenizer_json_path, dst)
    return out_dir


def _optional_tensors_from_names(cfg, names):
    """Set cfg's optional-tensor keys from the tensor names a file actually holds."""
    L = cfg.n_layers
    cfg.qk_bias = any(f"layers.{i}.attn.wq.bias" in names for i in range(L))
    if cfg.architecture == "sasp":
        cfg.value_layers = [i for i in range(L) if f"layers.{i}.attn.wv.weight" in names]
        cfg.out_layers = [i for i in range(L) if f"layers.{i}.attn.wo.weight" in names]
        cfg.skip_gain = any(f"layers.{i}.skip_gain" in names for i in range(L))
    return cfg


def load_checkpoint(model_dir, device="cpu"):
    """Read model_dir -> (SASPModel in eval mode, float32, ModelConfig). Raises CheckpointError
    naming the file and the tensor for an unknown tensor name, a missing required tensor and a
    shape that disagrees with config.json (and everything read_safetensors checks)."""
    config_path = os.path.join(model_dir, "config.json")
    weights_path = os.path.join(model_dir, "model.safetensors")
    for path in (config_path, weights_path):
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such file")
    try:
        cfg = ModelConfig.from_json(config_path)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    tensors, metadata = read_safetensors(weights_path)
    try:
        _optional_tensors_from_names(cfg, set(tensors))
        cfg.validate()
    except ValueError as e:
        raise CheckpointError(f"{weights_path}: {e}") from None
    want = expected_shapes(cfg)
    for name, t in tensors.items():
        if name not in want:
            raise CheckpointError(f"{weights_path}: tensor {name}: unknown tensor name")
        if tuple(t.shape) != want[name]:
            raise CheckpointError(f"{weights_path}: tensor {name}: shape {list(t.shape)} disagrees "
                                  f"with config.json, which needs {list(want[name])}")
    for name in want:
        if name not in tensors:
            raise CheckpointError(f"{weights_path}: tensor {name}: required tensor is missing")
    model = SASPModel(cfg)
    model.load_state_dict(tensors, strict=True)
    model.checkpoint_metadata = metadata
    return model.to(device).eval(), cfg
