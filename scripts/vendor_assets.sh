#!/usr/bin/env bash
# Refresh the vendored front-end assets from the npm registry. Not needed to run the
# product: the copies under static/vendor/ are committed, so nothing is fetched at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent @picocss/pico@2 htmx.org@2 >/dev/null && for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
cp "$tmp"/picocss-pico-*/package/css/pico.min.css static/vendor/pico/
cp "$tmp"/htmx.org-*/package/dist/htmx.min.js static/vendor/htmx/
echo "vendored: $(ls "$tmp"/*.tgz | xargs -n1 basename | tr '\n' ' ')"
