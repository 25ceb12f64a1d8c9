#!/bin/sh
# run.sh: `make check` entry of the fault tests of sasp-server (tests/fault/test_fault.py).
# Needs python3 (standard library only) and the committed fixture tests/fixtures/tiny-model.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "run.sh: python3 not found; skipping the fault tests"; exit 77; }
SASP_SRCDIR=$src SASP_BUILDDIR=$build exec "$py" "$src/tests/fault/test_fault.py" "$@"
