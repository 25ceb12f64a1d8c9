#!/bin/sh
# run.sh: the client-library suite (tests/clients/clients.test.mjs) against a fresh sasp-server on a
# free loopback port, serving the tiny test model under two names (tiny-model, and a copy tiny-copy).
# Called by `make check-all` / .ci/run; needs node and `npm ci` here (done when npm is there, from the
# pinned package-lock.json). Exits 77 (skip) without node, or without node_modules when
# SASP_NODE_INSTALL=0.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${SASP_SRCDIR:-$(cd "$here/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
server=${SASP_SERVER:-$build/sasp-server}
command -v node >/dev/null || { echo "tests/clients/run.sh: node not installed; skipped (scripts/install-deps.sh --test)"; exit 77; }
[ -x "$server" ] || { echo "tests/clients/run.sh: $server not built; run make first" >&2; exit 1; }
if [ ! -d "$here/node_modules/ollama" ]; then
  if [ "${SASP_NODE_INSTALL:-1}" = 1 ] && command -v npm >/dev/null; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "tests/clients/run.sh: tests/clients/node_modules is absent (cd tests/clients && npm ci); skipped"
    exit 77
  fi
fi
tmp=$(mktemp -d)
mkdir "$tmp/models"
cp -r "$src/tests/fixtures/tiny-model" "$tmp/models/tiny-model"
cp -r "$src/tests/fixtures/tiny-model" "$tmp/models/tiny-copy"
log=$tmp/server.log
out=$tmp/server.out
# two -m: the first model is the default; a request's "model" picks the other
"$server" -m "$tmp/models/tiny-model" -m "$tmp/models/tiny-copy" --host 127.0.0.1 --port 0 -t 1 >"$out" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
url=
for _ in $(seq 1 300); do
  url=$(sed -n 's|.*listening on \(http://[^ ]*[0-9]\)/.*|\1|p' "$out")
  [ -n "$url" ] && break
  kill -0 $pid 2>/dev/null || { echo "tests/clients/run.sh: sasp-server failed to start:"; cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "tests/clients/run.sh: sasp-server did not print its URL"; cat "$log"; exit 1; }
cd "$here"
if SASP_URL=$url node --test clients.test.mjs; then
  exit 0
else
  echo "---- server log ----"; tail -60 "$log"; exit 1
fi
