#!/bin/sh
# run.sh: the OpenAI Node client test (tests/node/openai.test.mjs) against a fresh sasp-server on a
# free loopback port with the tiny test model. Called by `make check-all` / .ci/run; needs node and
# `npm ci` in tests/node (done here when npm is there). Exits 77 (skip) without node or node_modules.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${SASP_SRCDIR:-$(cd "$here/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
server=${SASP_SERVER:-$build/sasp-server}
command -v node >/dev/null || { echo "tests/node/run.sh: node not installed; skipped (scripts/install-deps.sh --test)"; exit 77; }
[ -x "$server" ] || { echo "tests/node/run.sh: $server not built; run make first" >&2; exit 1; }
if [ ! -d "$here/node_modules/openai" ]; then
  if [ "${SASP_NODE_INSTALL:-1}" = 1 ] && command -v npm >/dev/null; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  else
    echo "tests/node/run.sh: tests/node/node_modules is absent (cd tests/node && npm ci); skipped"
    exit 77
  fi
fi
log=$(mktemp)
out=$(mktemp)
"$server" -m "$src/tests/fixtures/tiny-model" --host 127.0.0.1 --port 0 -t 1 >"$out" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log" "$out"' EXIT INT TERM
url=
for _ in $(seq 1 300); do
  url=$(sed -n 's|.*listening on \(http://[^ ]*[0-9]\)/.*|\1|p' "$out")
  [ -n "$url" ] && break
  kill -0 $pid 2>/dev/null || { echo "tests/node/run.sh: sasp-server failed to start:"; cat "$log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "tests/node/run.sh: sasp-server did not print its URL"; cat "$log"; exit 1; }
cd "$here"
if SASP_URL=$url node --test openai.test.mjs; then
  exit 0
else
  echo "---- server log ----"; tail -50 "$log"; exit 1
fi
