#!/bin/sh
# install-deps.sh: install every Debian package sasp needs. Idempotent and non-interactive.
#   scripts/install-deps.sh          build and run (compiler, autotools, libraries, help2man)
#   scripts/install-deps.sh --test   also what `make check` and .ci/run use (PyTorch, Node, Chromium, cross tools,
#                                    debhelper, lintian, systemd-analyze, HAProxy)
#   scripts/install-deps.sh --train  also what rebuilding the corpus and training use
set -eu
want_test=no; want_train=no
for a in "$@"; do
  case "$a" in
    --test) want_test=yes ;;
    --train) want_train=yes; want_test=yes ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root (it calls apt-get)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

BUILD="build-essential autoconf automake pkg-config git ca-certificates
  libmicrohttpd-dev libjansson-dev libsleef-dev libpcre2-dev check help2man"
TEST="python3 python3-torch python3-numpy python3-regex python3-matplotlib libopenblas0-pthread curl openssl valgrind clang-14
  libclang-rt-14-dev clang-format-14 chromium"
# packaging, the systemd unit and the balancer (tests/deploy/): dpkg-buildpackage with debhelper,
# lintian, systemd-analyze (the systemd package; nothing is started in a container) and HAProxy
DEPLOY="debhelper lintian systemd haproxy"
# the NEON kernels are cross-built and tested under qemu (scripts/check-neon.sh): arm64 multiarch libs
CROSS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libsleef-dev:arm64 check:arm64
  libjansson-dev:arm64 libpcre2-dev:arm64 libmicrohttpd-dev:arm64"
TRAIN="python3-sympy python3-networkx python3-django libpython3.11-stdlib"

pkgs=$BUILD
[ $want_test = yes ] && pkgs="$pkgs $TEST $DEPLOY $CROSS"
[ $want_train = yes ] && pkgs="$pkgs $TRAIN"

# the :arm64 packages need the architecture enabled (idempotent: only added when absent)
if [ $want_test = yes ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi

# Node.js and npm (the OpenAI client and browser tests) from Debian, unless a node with npm is already
# installed some other way (NodeSource's nodejs bundles npm and conflicts with Debian's npm package)
if [ $want_test = yes ] && ! { command -v node >/dev/null && command -v npm >/dev/null; }; then
  pkgs="$pkgs nodejs npm"
fi

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
fi
echo "install-deps.sh: all packages present"
