#!/bin/sh
# deb.sh: the Debian package, end to end, on this machine (CI's fresh Debian 12 container included,
# where systemd is not PID 1). From a copy of the source tree (git's file list, or the tree less its
# data when it is not a git checkout): dpkg-buildpackage -us -uc -b; lintian on the .deb (any error
# fails); the .deb installed with apt-get (its maintainer scripts must succeed without a running
# systemd); the installed unit's ExecStart line run by hand as an unprivileged user from / with the
# options file sourced, as systemd would (deb_run.py: READY=1 on $NOTIFY_SOCKET, the installed model
# and www/ found without arguments, a completion, a stream, SIGTERM and exit 0); then purged, leaving
# none of its files. Needs root. Exits 77 (skipped, saying why) without root, dpkg-buildpackage,
# debhelper or python3, or when a package named sasp is already installed (it is not touched).
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
here=$src/tests/deploy
skip() { echo "deb.sh: $*; skipped"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" = 0 ] || skip "not root (installing a package needs it)"
for t in dpkg-buildpackage dh python3 apt-get; do
  command -v $t >/dev/null || skip "$t not installed (scripts/install-deps.sh --test installs it)"
done
installed() { dpkg-query -W -f='${Status}' sasp 2>/dev/null | grep -q 'ok installed'; }
! installed || skip "a package named sasp is already installed here; remove it to run this test"

tmp=$(mktemp -d /tmp/sasp-deb-XXXXXX)
ours=no
cleanup() {
  [ $ours = yes ] && installed && { echo "deb.sh: purging the test's package"; apt-get purge -y -q sasp >/dev/null 2>&1 || :; }
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# 1. a clean copy of the source (debian/rules builds in place, so never in the working tree)
mkdir "$tmp/sasp"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files --cached --others --exclude-standard | while read -r f; do
     [ -f "$f" ] && printf '%s\n' "$f"; done) > "$tmp/files"
else
  (cd "$src" && find . -path ./data -prune -o -path ./runs -prune -o -path ./.git -prune -o -name node_modules -prune \
     -o -name 'build-*' -prune -o -type f -print) > "$tmp/files"
fi
(cd "$src" && tar -cf - -T "$tmp/files") | tar -xf - -C "$tmp/sasp"
echo "deb.sh: building the package from a copy of $(wc -l < "$tmp/files") files"

# 2. build (nocheck: make check has run the unit tests; without the make variables of a surrounding
# make check, which are not ours)
unset MAKEFLAGS MFLAGS MAKELEVEL SASP_SRCDIR SASP_BUILDDIR
t0=$(date +%s)
(cd "$tmp/sasp" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b) > "$tmp/build.log" 2>&1 ||
  { tail -40 "$tmp/build.log"; fail "dpkg-buildpackage failed"; }
deb=$(ls "$tmp"/sasp_*.deb)
echo "deb.sh: built $(basename "$deb") ($(du -k "$deb" | cut -f1) kB) in $(( $(date +%s) - t0 )) s"

# 3. lintian: errors fail, the rest is shown
if command -v lintian >/dev/null; then
  lintian --display-info --fail-on error "$deb" > "$tmp/lintian.log" 2>&1 || { cat "$tmp/lintian.log"; fail "lintian found errors"; }
  echo "deb.sh: lintian: $(grep -c '^E:' "$tmp/lintian.log") errors, $(grep -c '^W:' "$tmp/lintian.log") warnings, $(grep -c '^[IP]:' "$tmp/lintian.log") notes"
  sed 's/^/  /' "$tmp/lintian.log"
else
  echo "deb.sh: lintian not installed (scripts/install-deps.sh --test): the package is not linted"
fi
dpkg-deb --contents "$deb" | awk '{print $6}' | grep -q '^\./lib/systemd/system/sasp-server\.service$' || fail "the .deb has no unit"

# 4. install: apt resolves the libraries; the maintainer scripts must work without systemd running
ours=yes
apt-get install -y -q --no-install-recommends "$deb" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "apt-get install failed"; }
installed || fail "dpkg does not list sasp as installed"
dpkg -L sasp > "$tmp/package-files"
[ -d /run/systemd/system ] && echo "deb.sh: systemd is running here" || echo "deb.sh: installed with no systemd running (as in CI)"
for f in /usr/bin/sasp-server /usr/bin/sasp-cli /usr/bin/sasp-bench /lib/systemd/system/sasp-server.service \
         /etc/default/sasp-server /usr/share/sasp/models/sasp-small/model.safetensors /usr/share/sasp/www/index.html \
         /usr/share/man/man1/sasp-server.1.gz; do
  [ -e "$f" ] || fail "$f is not installed"
done
[ -L /etc/systemd/system/multi-user.target.wants/sasp-server.service ] || fail "the postinst did not enable the unit"
/usr/bin/sasp-server --version | grep -q '^sasp-server ' || fail "sasp-server --version"
echo "deb.sh: installed $(wc -l < "$tmp/package-files") paths; the unit is enabled"

# 5. the installed daemon, started the way the unit starts it
python3 "$here/deb_run.py" /lib/systemd/system/sasp-server.service || fail "the installed daemon"

# 6. purge: nothing of the package may remain
apt-get purge -y -q sasp > "$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "apt-get purge failed"; }
ours=no
! installed || fail "sasp is still installed after purge"
left=$(while read -r f; do if [ ! -d "$f" ] && { [ -e "$f" ] || [ -L "$f" ]; }; then echo "$f"; fi; done < "$tmp/package-files")
[ -z "$left" ] || fail "left after purge: $left"
[ ! -e /etc/systemd/system/multi-user.target.wants/sasp-server.service ] || fail "the enable link is left after purge"
[ ! -e /usr/share/sasp ] || fail "/usr/share/sasp is left after purge"
echo "deb.sh: purged; no file of the package is left"
