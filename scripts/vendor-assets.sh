#!/usr/bin/env bash
# Refresh the vendored front-end assets in static/vendor/ from the npm registry, and axe-core (for the
# browser tests only, never served) in tests/browser/vendor/axe-core/.
# The app never loads anything from a CDN and the tests never need npm: run this, review the diff, commit the files.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSTRAP_VERSION=5.3.8
SWAGGER_UI_VERSION=5.29.0
AXE_CORE_VERSION=4.14.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "bootstrap@$BOOTSTRAP_VERSION" "swagger-ui-dist@$SWAGGER_UI_VERSION" \
  "axe-core@$AXE_CORE_VERSION" >/dev/null)
mkdir -p "$work/bs" "$work/sw" "$work/axe"
tar -xzf "$work"/bootstrap-*.tgz -C "$work/bs"
tar -xzf "$work"/swagger-ui-dist-*.tgz -C "$work/sw"
tar -xzf "$work"/axe-core-*.tgz -C "$work/axe"
rm -rf static/vendor/bootstrap static/vendor/swagger-ui
mkdir -p static/vendor/bootstrap static/vendor/swagger-ui
cp "$work/bs/package/dist/css/bootstrap.min.css" "$work/bs/package/dist/js/bootstrap.bundle.min.js" \
   "$work/bs/package/LICENSE" static/vendor/bootstrap/
for f in swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js LICENSE; do
  cp "$work/sw/package/$f" static/vendor/swagger-ui/
done
echo "bootstrap $BOOTSTRAP_VERSION, swagger-ui-dist $SWAGGER_UI_VERSION" > static/vendor/VERSIONS
echo "vendored into static/vendor/: $(cat static/vendor/VERSIONS)"

axe=tests/browser/vendor/axe-core
rm -f "$axe/axe.min.js" "$axe/LICENSE" "$axe/LICENSE-3RD-PARTY.txt"
mkdir -p "$axe"
cp "$work/axe/package/axe.min.js" "$work/axe/package/LICENSE" "$work/axe/package/LICENSE-3RD-PARTY.txt" "$axe/"
(cd "$axe" && echo "axe-core $AXE_CORE_VERSION" > VERSIONS && sha256sum axe.min.js >> VERSIONS)
echo "vendored into $axe/: $(head -1 "$axe/VERSIONS") (see its README.md)"
