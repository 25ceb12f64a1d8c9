#!/bin/sh
# unit.sh: the systemd unit and the readiness protocol it relies on. `systemd-analyze verify` checks
# the unit made by `make` (deploy/sasp-server.service, ExecStart pointed at the built sasp-server, the
# built man pages on MANPATH for Documentation=) and must print nothing: it exits 0 even on unknown
# keys, so any message fails the test. `systemd-analyze security --offline` prints the sandbox's
# exposure score. Then notify_test.py plays systemd's part of Type=notify (tests/deploy/notify_test.py).
# Exits 77 (skipped) without systemd-analyze or python3.
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
command -v python3 >/dev/null || { echo "unit.sh: python3 not installed; skipped"; exit 77; }
unit=$build/deploy/sasp-server.service
[ -f "$unit" ] || { echo "unit.sh: $unit is missing; run make first" >&2; exit 1; }
fail() { echo "FAIL: $*"; exit 1; }

if command -v systemd-analyze >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/man/man1"
  [ -d "$build/man" ] && cp "$build"/man/*.1 "$tmp/man/man1/"
  grep -q '^ExecStart=[^ ]*/sasp-server \$SASP_OPTS$' "$unit" || fail "ExecStart of $unit is not '<bindir>/sasp-server \$SASP_OPTS'"
  sed "s|^ExecStart=[^ ]*/sasp-server |ExecStart=$build/sasp-server |" "$unit" > "$tmp/sasp-server.service"
  man=yes
  [ -f "$tmp/man/man1/sasp-server.1" ] || { man=no; echo "unit.sh: no man pages built (help2man missing): Documentation= not checked"; }
  out=$(MANPATH=$tmp/man SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=$man "$tmp/sasp-server.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify printed: $out"
  echo "unit.sh: systemd-analyze verify: no complaints"
  systemd-analyze security --offline=yes "$tmp/sasp-server.service" 2>/dev/null | grep 'Overall exposure' ||
    echo "unit.sh: (this systemd-analyze has no offline security check)"
else
  echo "unit.sh: systemd-analyze not installed (apt-get install systemd, or scripts/install-deps.sh --test): unit not verified"
fi

python3 "$src/tests/deploy/notify_test.py" "$build/sasp-server" "$src/tests/fixtures/tiny-model"
