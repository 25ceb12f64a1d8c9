#!/bin/sh
# gen-tokenizer-fixture.sh: regenerate tests/fixtures/tokenizer/, the small tokenizer the C tests use
# and the Python encoder's answers for them (used when /usr/bin/python3 lacks the regex module).
#   tokenizer.json  vocab 2048, trained by train/bpe.py on Python 3.11's standard library, files a*-m*
#   heldout.txt     text it was not trained on (the start of textwrap.py and zipfile.py)
#   expected.txt    count and hash of the reference ids of each fixed case in tests/check_tokenizer.c
# Run from a configured build tree (it builds and runs tests/check_tokenizer): scripts/gen-tokenizer-fixture.sh
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${SASP_BUILDDIR:-$top}
py=/usr/bin/python3
std=/usr/lib/python3.11
out=$top/tests/fixtures/tokenizer
$py -c 'import regex' || { echo "gen-tokenizer-fixture.sh: $py needs python3-regex" >&2; exit 1; }
mkdir -p "$out"
list=$(mktemp)
trap 'rm -f "$list"' EXIT
ls "$std"/[a-m]*.py | LC_ALL=C sort > "$list"
$py "$top/train/bpe.py" train --vocab-size 2048 --out "$out/tokenizer.json" --files-from "$list"
{ head -c 12000 "$std/textwrap.py"; head -c 12000 "$std/zipfile.py"; } > "$out/heldout.txt"
make -C "$build" tests/check_tokenizer
SASP_TOKENIZER_WRITE_EXPECTED="$out/expected.txt" "$build/tests/check_tokenizer"
echo "gen-tokenizer-fixture.sh: wrote $out"
