#!/bin/sh
# guard.sh: `make check` entry of tests/fault/test_guard.py: Host and Origin checks (curl, and headless
# Chromium when installed), the header deadline and the per-client limits of sasp-server.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "guard.sh: python3 not found; skipping"; exit 77; }
SASP_SRCDIR=$src SASP_BUILDDIR=$build exec "$py" "$src/tests/fault/test_guard.py" "$@"
