#!/bin/sh
# run-e2e.sh: end-to-end test of the demo page (www/) in headless Debian Chromium against a real
# sasp-server. Needs ./sasp-server built, chromium (scripts/install-deps.sh --test) and a model
# (tests/fixtures/tiny-model, models/sasp-small, or SASP_E2E_MODEL=DIR), and example.test.mjs the page's
# own example on the shipped model (models/sasp-small). Exits non-zero on failure.
# Screenshots and the server's log land in tests/e2e/output/.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
[ -x "${SASP_SERVER:-$root/sasp-server}" ] || { echo "run-e2e.sh: no sasp-server binary; run make first" >&2; exit 1; }
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "run-e2e.sh: no chromium; run scripts/install-deps.sh --test" >&2; exit 1; }
cd tests/e2e
# playwright-core never downloads a browser; the test drives /usr/bin/chromium.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
exec node --test demo.test.mjs example.test.mjs
