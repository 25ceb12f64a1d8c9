#!/bin/sh
# cli.sh: sasp-cli end to end on a committed parity fixture (tests/fixtures/parity/, made by
# scripts/gen-fixtures.sh): --logits agrees with the PyTorch reference's logits, --generate continues
# with the arg-max of those logits, --info and --help work, and bad arguments exit with status 2.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
build=${SASP_BUILDDIR:-$src}
cli=$build/sasp-cli
model=$src/tests/fixtures/parity/sasp-rmsnorm-rope
[ -d "$model" ] || model=$(ls -d "$src"/tests/fixtures/parity/*/ | head -n 1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

tokens=$(python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$model/reference.json")

# --logits: valid JSON, one row per position, within 1e-4 of the reference (f32: the reference's
# arithmetic; the default, --weights auto, is the kernels' fast type)
"$cli" -m "$model" -t 2 --weights f32 --tokens "$tokens" --logits > "$tmp/logits.json"
python3 - "$tmp/logits.json" "$model/reference.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
r = json.load(open(sys.argv[2]))["logits"]
assert len(c) == len(r), (len(c), len(r))
assert all(len(a) == len(b) for a, b in zip(c, r))
err = max(abs(x - y) for a, b in zip(c, r) for x, y in zip(a, b))
scale = max(abs(y) for b in r for y in b)
print("cli --logits: %d positions, max|C-ref|/max|ref| = %.3g" % (len(c), err / scale))
assert err / scale < 1e-4
EOF

# --generate 1 (with --ignore-eos): the arg-max of the reference's last row
first=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["logits"][-1]; print(max(range(len(r)), key=r.__getitem__))' "$model/reference.json")
got=$("$cli" -m "$model" --weights f32 --tokens "$tokens" --generate 1 --ignore-eos 2>/dev/null | head -n 1)
[ "$got" = "$first" ] || fail "--generate 1 gave '$got', the reference's arg-max is $first"
# --generate 5 after the first 20 tokens: starts with the arg-max of row 19, gives 5 ids (the whole
# sequence may fill the fixture's context)
short=$(echo "$tokens" | cut -d, -f1-20)
first=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["logits"][19]; print(max(range(len(r)), key=r.__getitem__))' "$model/reference.json")
got5=$("$cli" -m "$model" --weights f32 --tokens "$short" --generate 5 --ignore-eos 2>/dev/null | head -n 1)
[ "${got5%%,*}" = "$first" ] || fail "--generate 5 gave '$got5', the reference's arg-max is $first"
[ "$(echo "$got5" | tr ',' '\n' | wc -l)" -eq 5 ] || fail "--generate 5 gave '$got5'"

"$cli" -m "$model" --info > "$tmp/info"
grep -q "simd kernels:" "$tmp/info" || fail "--info prints no kernel name"
# the weights' type: by default (auto) the kernels' fast one, q8_0 on any SIMD path, f32 on scalar
if grep -q "^simd kernels: *scalar" "$tmp/info"; then want=f32; else want=q8_0; fi
grep -q "^weights: *$want\$" "$tmp/info" || fail "--info does not print weights $want: $(grep weights "$tmp/info")"
"$cli" -m "$model" --weights bf16 --info | grep -q "^weights: *bf16\$" || fail "--weights bf16 is not served as bf16"
# the config and what the checkpoint holds, as config.json and the model's own description say
arch=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["architecture"])' "$model/config.json")
grep -q "^architecture: *$arch\$" "$tmp/info" || fail "--info does not print architecture $arch"
grep -q "^optional: *W_V in [0-9]* layers, W_O in [0-9]* layers, skip gain in [0-9]*, q/k biases" "$tmp/info" ||
  fail "--info prints no optional tensors line"

# --help names every option the parser knows
help=$("$cli" --help)
for o in --model --tokens --prompt --logits --generate --ignore-eos --tokenize --perplexity --info --threads --weights --help \
         --prefix --suffix --no-token-healing; do
  echo "$help" | grep -q -- "$o" || fail "--help does not list $o"
done

# bad arguments: status 2 and a message
for args in "--tokens 1,x" "--bogus" "-t 0 --info" "--generate -1 --tokens 1" "--weights q4 --info" "--logits" "--tokens 1 -p x" "stray" \
            "--prefix x" "--prefix x --suffix y -p z"; do
  set +e
  # shellcheck disable=SC2086
  "$cli" -m "$model" $args > /dev/null 2> "$tmp/err"
  rc=$?
  set -e
  [ $rc -eq 2 ] || fail "'$args' exited $rc, not 2"
  [ -s "$tmp/err" ] || fail "'$args' printed no message"
done
# a model that is not there: status 1 and a message naming the file
set +e
"$cli" -m "$tmp/nowhere" --info > /dev/null 2> "$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "nowhere/config.json" "$tmp/err" || fail "a missing model exited $rc: $(cat "$tmp/err")"
# a token outside the vocabulary: status 1
set +e
"$cli" -m "$model" --tokens 1,999999999 --logits > /dev/null 2> "$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "outside the vocabulary" "$tmp/err" || fail "an out-of-range token exited $rc"
# text in: a model with a tokenizer (tests/fixtures/tiny-model)
tiny=$src/tests/fixtures/tiny-model
# token healing: the prompt's last token is backed off and regenerated; greedy, so the same from run
# to run; the prompt is printed first, with healing and without
a=$("$cli" -m "$tiny" -p "def f(x):" -n 8 2>/dev/null)
b=$("$cli" -m "$tiny" -p "def f(x):" -n 8 2>/dev/null)
[ "$a" = "$b" ] || fail "-p is not deterministic"
case "$a" in "def f(x):"*) ;; *) fail "-p does not print its prompt first: '$a'" ;; esac
c=$("$cli" -m "$tiny" -p "def f(x):" -n 8 --no-token-healing 2>/dev/null)
case "$c" in "def f(x):"*) ;; *) fail "--no-token-healing does not print its prompt first: '$c'" ;; esac
# fill in the middle needs the FIM tokens, which this model lacks: status 1, a message naming them
set +e
"$cli" -m "$tiny" --prefix "def f(" --suffix "):" > /dev/null 2> "$tmp/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "fim_prefix" "$tmp/err" || fail "--prefix on a model without FIM tokens exited $rc"
# --perplexity: bits per byte = mean NLL x tokens / bytes / ln 2
printf 'def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n' > "$tmp/ppl.txt"
"$cli" -m "$tiny" --perplexity "$tmp/ppl.txt" 2>/dev/null > "$tmp/ppl"
python3 - "$tmp/ppl" "$tmp/ppl.txt" <<'EOF'
import math, re, sys
out = open(sys.argv[1]).read()
tokens = int(re.search(r"tokens: +(\d+)", out).group(1))
nll = float(re.search(r"mean NLL: +([0-9.]+)", out).group(1))
bpb = float(re.search(r"bits/byte: +([0-9.]+)", out).group(1))
nbytes = len(open(sys.argv[2], "rb").read())
assert abs(bpb - nll * tokens / nbytes / math.log(2)) < 2e-5, (bpb, nll, tokens, nbytes)
EOF
echo "cli.sh: all passed"
