#!/usr/bin/env bash
# Install the offline English corpora that docs/PRESETS.md measures the presets on, and render
# the man pages to plain text. Needs Debian's apt (as root or with sudo without a password).
#
#   bash scripts/corpora.sh [OUT]        (OUT defaults to ~/.cache/interp/corpora)
#
# Afterwards (the paths printed at the end):
#   pydoc   data.source=files data.path=/usr/share/doc/python3.11/html/_sources   (reST sources of
#           the Python documentation: prose with code examples, 497 files, 11 MB)
#   man     data.source=files data.path=OUT/man   (the Linux man-pages project, sections 2-8,
#           rendered at 80 columns: technical prose, about 2,500 pages)
#   foldoc  data.source=dictd data.path=/usr/share/dictd/foldoc.index   (the Free On-line
#           Dictionary of Computing: 12,000 short entries, 5.6 MB)
#   jargon  data.source=dictd data.path=/usr/share/dictd/jargon.index   (the Jargon File, 1.4 MB)
set -euo pipefail
OUT=${1:-${INTERP_CACHE:-$HOME/.cache/interp}/corpora}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
need=()
for pkg in python3-doc dict-foldoc dict-jargon manpages manpages-dev man-db bsdextrautils; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# man pages: the pages of the manpages and manpages-dev packages only (not whatever else this
# machine happens to have installed), so the corpus is the same on every Debian 12 machine.
# Pages that only point at another page (.so) render to almost nothing and are left out.
mkdir -p "$OUT/man"
dpkg -L manpages manpages-dev | grep -E '^/usr/share/man/man[2-8]/.*\.gz$' | sort |
  xargs -P "$(nproc)" -I{} sh -c 'f="{}"; b=$(basename "$f" .gz); \
    MANWIDTH=80 man -l "$f" 2>/dev/null | col -bx > "'"$OUT"'/man/$b.txt"; \
    [ "$(wc -c < "'"$OUT"'/man/$b.txt")" -ge 200 ] || rm -f "'"$OUT"'/man/$b.txt"'
echo "pydoc   data.source=files data.path=$(ls -d /usr/share/doc/python3.[0-9]*/html/_sources | head -1)"
echo "man     data.source=files data.path=$OUT/man   ($(ls "$OUT/man" | wc -l) pages)"
echo "foldoc  data.source=dictd data.path=/usr/share/dictd/foldoc.index"
echo "jargon  data.source=dictd data.path=/usr/share/dictd/jargon.index"
