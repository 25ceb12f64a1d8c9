#!/bin/sh
# gen-server-fixture.sh: regenerate tests/fixtures/tiny-model/, the model the server tests run on:
# a random SAS-P model (train/make_test_model.py: d_model 64, 2 heads, d_ff 256, 2 layers, 256
# positions, F16) whose vocabulary is a 512-token tokenizer trained by train/bpe.py on a little
# English, code and multi-byte text (accented Latin, Greek, CJK, emoji), so that generated
# characters often span tokens. Needs Debian's python3 with python3-torch and python3-regex.
# Usage: scripts/gen-server-fixture.sh
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
py=${TORCH_PYTHON:-/usr/bin/python3}
out=$top/tests/fixtures/tiny-model
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -c 'import torch, regex' || { echo "gen-server-fixture.sh: $py needs python3-torch and python3-regex" >&2; exit 1; }

# the corpus: two standard-library modules and a multilingual paragraph, repeated
head -c 40000 /usr/lib/python3.11/textwrap.py > "$tmp/code.txt"
head -c 20000 /usr/lib/python3.11/this.py >> "$tmp/code.txt"
for i in 1 2 3 4 5 6 7 8; do cat >> "$tmp/multi.txt" <<'TXT'
The café served crème brûlée and a naïve piñata; Zoë and Chloë paid 5 € each.
Ωμέγα and άλφα are Greek letters; Москва and Київ are cities.
日本語のテキストと中文文本，한국어 텍스트도 있습니다。
Emoji: 😀 🎉 🚀 ✨ and symbols like ≤ ≥ ∑ √ ∞ → ←.
TXT
done
printf '%s\n%s\n' "$tmp/code.txt" "$tmp/multi.txt" > "$tmp/list"
rm -rf "$out"
mkdir -p "$out"
"$py" "$top/train/bpe.py" train --vocab-size 512 --out "$out/tokenizer.json" --files-from "$tmp/list"
"$py" "$top/train/make_test_model.py" --arch sasp --norm rmsnorm --position rope --activation relu \
    --d-model 64 --n-heads 2 --d-ff 256 --vocab 512 --n-layers 2 --max-seq-len 256 --n-tokens 8 \
    --dtype F16 --seed 11 --out "$tmp/model" >/dev/null
cp "$tmp/model/config.json" "$tmp/model/model.safetensors" "$out/"
du -sh "$out"
