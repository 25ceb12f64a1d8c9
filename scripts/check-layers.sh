#!/bin/sh
# check-layers.sh: every include in src/ names a folder (a layer) that its own folder may include:
# src/README.md draws the layers, each folder's README.md says what it may include. A lower layer
# includes nothing from a higher one. Run by `make check`; prints each include that breaks the rule.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$src"
# what each layer may include (besides the C library and the system's headers in <>)
may() {
  case $1 in
    base) echo "base" ;;
    model) echo "model base simd" ;;
    text) echo "text base" ;;
    engine) echo "engine model text base simd" ;;
    api) echo "api engine model text base simd" ;;
    http) echo "http api engine model text base simd" ;;
    server) echo "server http api engine model text base simd" ;;
    programs) echo "programs server http api engine model text base simd" ;;
    *) echo "" ;;
  esac
}
bad=0
for f in src/*/*.c src/*/*.h; do
  layer=${f#src/}; layer=${layer%%/*}
  allowed=$(may "$layer")
  if [ -z "$allowed" ]; then
    echo "check-layers: $f: src/$layer/ is no layer of src/README.md"; bad=1; continue
  fi
  for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
    case $inc in
      kernels.h) to=simd ;;
      */*) to=${inc%%/*} ;;
      *) echo "check-layers: $f includes \"$inc\": name its folder (\"layer/$inc\")"; bad=1; continue ;;
    esac
    case " $allowed " in
      *" $to "*) ;;
      *) echo "check-layers: $f includes \"$inc\": src/$layer/ may include only $allowed"; bad=1 ;;
    esac
  done
done
# the kernels below the model include nothing of src/
for f in simd/*.c simd/*.h; do
  if grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*"(base|model|text|engine|api|http|server|programs)/' "$f"; then
    echo "check-layers: $f includes a header of src/: simd/ includes nothing of src/"; bad=1
  fi
done
[ $bad = 0 ] && echo "check-layers: every include of src/ and simd/ keeps to the layers"
exit $bad
