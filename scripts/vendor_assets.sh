#!/usr/bin/env bash
# Recreate _vendor/ (the JavaScript the rendered book needs) from the npm registry.
#
# The vendored files are committed, so building the book needs no network; run this
# only to change versions. Needs npm. Usage: scripts/vendor_assets.sh
#
#   MathJax 3 (es5 build): tex-mml-chtml.js plus what it loads at run time
#     (TeX extensions for \require/autoload, CHTML woff2 fonts).
#
# No widget manager: the book's explorers show precomputed frames in the pages
# (bilevel_lib.book.explorer), so no page renders ipywidgets state.
set -euo pipefail

MATHJAX_VERSION=3.2.2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vendor="$root/_vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent --loglevel=error \
  "mathjax@$MATHJAX_VERSION" >/dev/null
for pkg in mathjax; do
  mkdir "$pkg"
  tar -xzf "$pkg"-*.tgz -C "$pkg" --strip-components=1
done

rm -rf "$vendor"
mkdir -p "$vendor"

# MathJax: the combined component and the files it may fetch at run time.
mj="$vendor/mathjax"
mkdir -p "$mj/input/tex" "$mj/output/chtml/fonts"
cp mathjax/LICENSE "$mj/LICENSE"
cp mathjax/es5/tex-mml-chtml.js "$mj/"
cp -r mathjax/es5/input/tex/extensions "$mj/input/tex/"
cp -r mathjax/es5/output/chtml/fonts/woff-v2 "$mj/output/chtml/fonts/"

cat > "$vendor/VERSIONS.txt" <<TXT
Vendored by scripts/vendor_assets.sh from the npm registry; do not edit by hand.
mathjax $MATHJAX_VERSION (Apache-2.0, see mathjax/LICENSE)
TXT

du -sh "$vendor"
