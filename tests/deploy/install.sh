#!/bin/sh
# install.sh: `make install` and `make uninstall` into a DESTDIR. After install: the three programs in
# $(bindir), every model directory of models/ complete under $(pkgdatadir)/models/, www/ under
# $(pkgdatadir)/www/, the options file, the unit (when configure found systemd's unit directory) and
# the man pages (when help2man was found); the installed sasp-server names the installed paths as its
# defaults and the installed sasp-cli loads the installed model. After uninstall: not one file left.
# Run by `make check-deploy` (MAKE and SASP_BUILDDIR from there).
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SASP_BUILDDIR:-$src}
make=${MAKE:-make}
unset MAKEFLAGS MFLAGS MAKELEVEL
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /tmp/sasp-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root

# the configured directories, as make expands them (after make has brought the build up to date)
$make -s -C "$build" all > "$tmp/all.log" 2>&1 || { tail -30 "$tmp/all.log"; fail "make all"; }
var() { printf 'print-var:\n\t@echo $(%s)\n' "$1" | $make -s -C "$build" -f Makefile -f - print-var; }
bindir=$(var bindir); pkgdatadir=$(var pkgdatadir); mandir=$(var mandir); sysconfdir=$(var sysconfdir)
unitdir=$(var systemdsystemunitdir); help2man=$(var HELP2MAN)

$make -s -C "$build" install DESTDIR="$root" > "$tmp/install.log" 2>&1 || { tail -30 "$tmp/install.log"; fail "make install"; }
for p in sasp-server sasp-cli sasp-bench; do [ -x "$root$bindir/$p" ] || fail "$bindir/$p not installed"; done
n=0
for d in "$src"/models/*/; do
  d=${d%/}
  [ -f "$d/config.json" ] && [ -f "$d/model.safetensors" ] && [ -f "$d/tokenizer.json" ] || continue
  for f in "$d"/*; do
    [ -f "$f" ] || continue
    cmp -s "$f" "$root$pkgdatadir/models/${d##*/}/${f##*/}" || fail "models/${d##*/}/${f##*/} not installed intact"
  done
  n=$((n + 1))
done
[ $n -gt 0 ] || fail "no model directory under $src/models"
(cd "$src/www" && find . -type f) | while read -r f; do
  cmp -s "$src/www/$f" "$root$pkgdatadir/www/$f" || fail "www/$f not installed"
done
[ -f "$root$sysconfdir/default/sasp-server" ] || fail "$sysconfdir/default/sasp-server not installed"
if [ -n "$unitdir" ]; then
  u=$root$unitdir/sasp-server.service
  [ -f "$u" ] || fail "the unit is not in $unitdir"
  grep -qx "ExecStart=$bindir/sasp-server \$SASP_OPTS" "$u" || fail "ExecStart of the installed unit: $(grep ExecStart "$u")"
  grep -qx "EnvironmentFile=-$sysconfdir/default/sasp-server" "$u" || fail "EnvironmentFile of the installed unit"
else
  echo "install.sh: configure found no systemd unit directory: no unit installed (--with-systemdsystemunitdir=DIR)"
fi
if [ -n "$help2man" ]; then
  for p in sasp-server sasp-cli sasp-bench; do [ -s "$root$mandir/man1/$p.1" ] || fail "man page $p.1 not installed"; done
else
  echo "install.sh: help2man not found by configure: no man pages"
fi
"$root$bindir/sasp-server" --help | grep -qF "$pkgdatadir/models/sasp-small" || fail "sasp-server's default model is not under $pkgdatadir"
"$root$bindir/sasp-server" --help | grep -qF "$pkgdatadir/www" || fail "sasp-server's default www is not under $pkgdatadir"
(cd "$tmp" && "$root$bindir/sasp-cli" -m "$root$pkgdatadir/models/sasp-small" --info | grep -q "parameters:") ||
  fail "the installed sasp-cli cannot load the installed model"
echo "install.sh: make install: $(find "$root" -type f | wc -l) files ($n model directories) under DESTDIR"

$make -s -C "$build" uninstall DESTDIR="$root" > "$tmp/uninstall.log" 2>&1 || { tail -30 "$tmp/uninstall.log"; fail "make uninstall"; }
left=$(find "$root" ! -type d)
[ -z "$left" ] || fail "left after make uninstall: $left"
[ ! -e "$root$pkgdatadir" ] || fail "$pkgdatadir is left after make uninstall"
echo "install.sh: make uninstall: no file left"
