#!/usr/bin/env bash
# Refresh the vendored front-end assets in static/vendor/ from the npm registry.
# The app never loads anything from a CDN: run this, review the diff, commit the files.
set -euo pipefail
cd "$(dirname "$0")/.."
BOOTSTRAP_VERSION=5.3.8
SWAGGER_UI_VERSION=5.29.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "bootstrap@$BOOTSTRAP_VERSION" "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null)
mkdir -p "$work/bs" "$work/sw"
tar -xzf "$work"/bootstrap-*.tgz -C "$work/bs"
tar -xzf "$work"/swagger-ui-dist-*.tgz -C "$work/sw"
rm -rf static/vendor/bootstrap static/vendor/swagger-ui
mkdir -p static/vendor/bootstrap static/vendor/swagger-ui
cp "$work/bs/package/dist/css/bootstrap.min.css" "$work/bs/package/dist/js/bootstrap.bundle.min.js" \
   "$work/bs/package/LICENSE" static/vendor/bootstrap/
for f in swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js LICENSE; do
  cp "$work/sw/package/$f" static/vendor/swagger-ui/
done
echo "bootstrap $BOOTSTRAP_VERSION, swagger-ui-dist $SWAGGER_UI_VERSION" > static/vendor/VERSIONS
echo "vendored into static/vendor/: $(cat static/vendor/VERSIONS)"
