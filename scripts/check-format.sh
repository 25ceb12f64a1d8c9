#!/bin/sh
# check-format.sh: every C source and header of the project (git's tracked files, or src/, simd/,
# bench/, tests/ and scripts/ outside a git checkout) is formatted as the .clang-format at the top
# says, by clang-format 14 (other versions format some constructs differently). Run by
# `make check-all`; names each file that differs and the command that formats it. Exit 77 (skipped)
# without clang-format 14.
#   scripts/check-format.sh          check
#   scripts/check-format.sh --fix    format every file in place
set -eu
src=${SASP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$src"
cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1 && "$c" --version | grep -q 'version 14\.'; then cf=$c; break; fi
  done
fi
[ -n "$cf" ] || { echo "check-format.sh: clang-format 14 not found (scripts/install-deps.sh --test installs clang-format-14)"; exit 77; }
[ -f .clang-format ] || { echo "check-format.sh: $src/.clang-format is missing" >&2; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.c' '*.h')
else
  files=$(find src simd bench tests scripts -name '*.[ch]' | sort)
fi
if [ "${1:-}" = --fix ]; then
  # shellcheck disable=SC2086
  "$cf" -i --style=file $files
  exit 0
fi
bad=0
n=0
for f in $files; do
  n=$((n + 1))
  if ! "$cf" --style=file "$f" | cmp -s - "$f"; then
    lines=$("$cf" --style=file "$f" | diff "$f" - | grep -c '^<' || true)
    echo "check-format.sh: $f: $lines lines differ from .clang-format ($cf -i $f)"
    bad=$((bad + 1))
  fi
done
if [ $bad -gt 0 ]; then
  echo "check-format.sh: $bad of $n files are not formatted; scripts/check-format.sh --fix formats them"
  exit 1
fi
echo "check-format.sh: all $n C files are formatted as .clang-format says"
