#!/usr/bin/env bash
# Recreate _vendor/ (the JavaScript the rendered book needs) from the npm registry.
#
# The vendored files are committed, so building the book needs no network; run this
# only to change versions. Needs npm. Usage: scripts/vendor_assets.sh
#
#   MathJax 3 (es5 build): tex-mml-chtml.js plus what it loads at run time
#     (TeX extensions for \require/autoload, CHTML woff2 fonts).
#   @jupyter-widgets/html-manager 1.x (for ipywidgets 8): embed-amd.js bundles the
#     base, controls and output widgets, so embedded widget state renders offline;
#     its Font Awesome woff2 fonts are kept for button icons.
#   RequireJS: the AMD loader embed-amd.js needs.
set -euo pipefail

MATHJAX_VERSION=3.2.2
HTML_MANAGER_VERSION=1.0.15
REQUIREJS_VERSION=2.3.8

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vendor="$root/_vendor"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent --loglevel=error \
  "mathjax@$MATHJAX_VERSION" \
  "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" \
  "requirejs@$REQUIREJS_VERSION" >/dev/null
for pkg in mathjax jupyter-widgets-html-manager requirejs; do
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

# Widget manager: the AMD bundle, its third-party licence notices, Font Awesome woff2.
wm="$vendor/jupyter-widgets/html-manager"
mkdir -p "$wm/dist"
cp jupyter-widgets-html-manager/dist/embed-amd.js "$wm/dist/"
cp jupyter-widgets-html-manager/dist/embed.js.LICENSE.txt "$wm/dist/"
cp jupyter-widgets-html-manager/dist/*.woff2 "$wm/dist/"

# RequireJS (MIT licence header is inside the file).
mkdir -p "$vendor/requirejs"
cp requirejs/require.js "$vendor/requirejs/"

# Our loader shim (kept in scripts/, copied in): tells the widget bundle where its
# fonts are, since it cannot infer that from a named AMD module.
cp "$root/scripts/widgets-setup.js" "$vendor/jupyter-widgets/"

cat > "$vendor/VERSIONS.txt" <<TXT
Vendored by scripts/vendor_assets.sh from the npm registry; do not edit by hand.
mathjax $MATHJAX_VERSION (Apache-2.0, see mathjax/LICENSE)
@jupyter-widgets/html-manager $HTML_MANAGER_VERSION (BSD-3-Clause; bundled notices in jupyter-widgets/html-manager/dist/embed.js.LICENSE.txt)
requirejs $REQUIREJS_VERSION (MIT, see the header of requirejs/require.js)
TXT

du -sh "$vendor"
