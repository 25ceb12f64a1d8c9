#!/bin/sh
# run.sh: `make check` entry for tests/train/test_train.py (corpus split, trainer, resume, export and
# eval_perplexity on a tiny corpus). Exit 77 (skip) without PyTorch or python3-regex.
srcdir=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
py=${TORCH_PYTHON:-/usr/bin/python3}
if [ "${HAVE_TORCH:-1}" != 1 ] || ! "$py" -c "import torch, regex, matplotlib" >/dev/null 2>&1; then
  echo "SKIP: no PyTorch, python3-regex or matplotlib for $py"
  exit 77
fi
exec "$py" "$srcdir/tests/train/test_train.py"
