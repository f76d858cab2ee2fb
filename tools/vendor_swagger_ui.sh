#!/usr/bin/env bash
# Puts Swagger UI's browser assets into the package (server/static/swagger-ui), so /docs needs no CDN.
# Usage: tools/vendor_swagger_ui.sh [VERSION]   (default: the version in server/static/swagger-ui/VERSION)
# Needs npm (the npm registry); the tarball's integrity is checked against the registry's sha512.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=server/static/swagger-ui
version=${1:-$(cut -d' ' -f1 "$dest/VERSION")}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
expected=$(npm view "swagger-ui-dist@$version" dist.integrity)
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" > /dev/null)
tarball=$work/swagger-ui-dist-$version.tgz
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$actual" != "$expected" ]]; then
    echo "integrity mismatch for swagger-ui-dist@$version: $actual != $expected" >&2
    exit 1
fi
tar -xzf "$tarball" -C "$work"
rm -rf "$dest" && mkdir -p "$dest"
for name in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
    cp "$work/package/$name" "$dest/"
done
echo "$version $expected" > "$dest/VERSION"
echo "swagger-ui-dist $version -> $dest"
