#!/bin/sh
# run.sh: `make check` entry for tests/import/test_import.py (the reference-checkpoint converter,
# scripts/import-reference.py, checked end to end through sasp-cli). Exit 77 (skip) without PyTorch.
srcdir=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
py=${TORCH_PYTHON:-/usr/bin/python3}
if [ "${HAVE_TORCH:-1}" != 1 ] || ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "SKIP: no PyTorch (HAVE_TORCH=${HAVE_TORCH:-?}, or $py cannot import torch)"
  exit 77
fi
exec "$py" "$srcdir/tests/import/test_import.py"
