#!/bin/sh
# run.sh: `make check` entry of the HTTP tests of sasp-server: tests/server/test_server.py (the APIs),
# tests/server/test_editor.py (the code-completion backend: /infill, /completion, the prompt cache,
# long prompts), tests/server/test_dialects.py (Anthropic's messages, OpenAI's responses) and
# tests/server/test_edge.py (slot save/restore, /apply-template, --trusted-proxy, HTTPS) and
# tests/server/test_models.py (models loaded and unloaded at run time: --models-dir, keep_alive). Needs
# python3 (standard library only) and the committed fixtures tests/fixtures/tiny-model and
# tests/fixtures/tiny-fim.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "run.sh: python3 not found; skipping the server tests"; exit 77; }
[ -f "$src/tests/fixtures/tiny-model/model.safetensors" ] || {
  echo "run.sh: tests/fixtures/tiny-model is missing (scripts/gen-server-fixture.sh makes it)" >&2; exit 1; }
[ -f "$src/tests/fixtures/tiny-fim/model.safetensors" ] || {
  echo "run.sh: tests/fixtures/tiny-fim is missing (scripts/gen-fim-fixture.sh makes it)" >&2; exit 1; }
rc=0
SASP_SRCDIR=$src SASP_BUILDDIR=$build "$py" "$src/tests/server/test_server.py" "$@" || rc=1
SASP_SRCDIR=$src SASP_BUILDDIR=$build "$py" "$src/tests/server/test_editor.py" "$@" || rc=1
SASP_SRCDIR=$src SASP_BUILDDIR=$build "$py" "$src/tests/server/test_dialects.py" "$@" || rc=1
SASP_SRCDIR=$src SASP_BUILDDIR=$build "$py" "$src/tests/server/test_edge.py" "$@" || rc=1
SASP_SRCDIR=$src SASP_BUILDDIR=$build "$py" "$src/tests/server/test_models.py" "$@" || rc=1
exit $rc
