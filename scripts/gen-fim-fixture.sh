#!/bin/sh
# gen-fim-fixture.sh: a copy of a model directory with the fill-in-the-middle tokens the trainer's
# tokenizer carries (train/corpus.py: <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|> as special
# tokens, the last ids, in that order). The tokenizer gets the three added tokens; the embedding (and
# the separate head, if any) gets three rows of zeros, so the model's logits over its own tokens are
# those of the source model and the new tokens' logits are 0. Not a trained FIM model: for tests of
# /infill and for timing it (the latency of a model does not depend on what its weights learnt).
# Standard-library Python only (no torch, no numpy).
#
# Usage: scripts/gen-fim-fixture.sh [SRC_MODEL_DIR [OUT_DIR]]
#   default: tests/fixtures/tiny-model -> tests/fixtures/tiny-fim (the committed fixture)
#   editor replay bench: scripts/gen-fim-fixture.sh models/sasp-small /tmp/sasp-small-fim
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-$top/tests/fixtures/tiny-model}
out=${2:-$top/tests/fixtures/tiny-fim}
py=$(command -v python3) || { echo "gen-fim-fixture.sh: python3 not found" >&2; exit 1; }
[ -f "$src/config.json" ] || { echo "gen-fim-fixture.sh: $src has no config.json" >&2; exit 1; }
mkdir -p "$out"
"$py" - "$src" "$out" <<'PY'
import json, os, struct, sys

src, out = sys.argv[1], sys.argv[2]
FIM = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]
SIZE = {"F32": 4, "F16": 2, "BF16": 2}

cfg = json.load(open(os.path.join(src, "config.json")))
tok = json.load(open(os.path.join(src, "tokenizer.json")))
if any(a["content"] in FIM for a in tok.get("added_tokens") or []):
    sys.exit("gen-fim-fixture.sh: %s already has the FIM tokens" % src)
vocab = cfg["vocab_size"]
for k, s in enumerate(FIM):  # the last ids, in the trainer's order
    tok["model"]["vocab"][s] = vocab + k
    tok["added_tokens"].append({"id": vocab + k, "content": s, "single_word": False, "lstrip": False,
                                "rstrip": False, "normalized": False, "special": True})
cfg["vocab_size"] = vocab + len(FIM)

with open(os.path.join(src, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
meta = header.pop("__metadata__", None)
grown = {"tok_emb.weight", "lm_head.weight"}
parts, offset = [], 0
for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    a, b = t["data_offsets"]
    blob = data[a:b]
    if name in grown:
        assert t["shape"][0] == vocab, (name, t["shape"])
        blob += bytes(len(FIM) * t["shape"][1] * SIZE[t["dtype"]])
        t["shape"] = [vocab + len(FIM), t["shape"][1]]
    t["data_offsets"] = [offset, offset + len(blob)]
    offset += len(blob)
    parts.append(blob)
if meta is not None:
    header["__metadata__"] = dict(meta, fim_tokens="added by scripts/gen-fim-fixture.sh (zero rows)")
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for p in parts:
        f.write(p)
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
print("%s: vocabulary %d + %s" % (out, vocab, ", ".join(FIM)))
PY
