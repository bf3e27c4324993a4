#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the SDK example's Docker image offline (no registry): busybox-static, this machine's
# node binary with the libraries it loads, the official @phala/dstack-sdk from the npm
# registry (cached in OUTDIR/npm), and image/app; a `docker save` tarball tagged
# moonstack-examples/sdk:1.
#   build-image.sh OUTDIR   -> OUTDIR/image.tar
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUTDIR}
node=$(command -v node) || { echo "build-image.sh: node is needed (Debian package nodejs)" >&2; exit 1; }
mkdir -p "$out"
npmdir=$out/npm
if [ ! -d "$npmdir/node_modules/@phala/dstack-sdk" ]; then
  mkdir -p "$npmdir"
  npm install --prefix "$npmdir" --no-audit --no-fund --loglevel=error \
    @phala/dstack-sdk@0.5.8 '@noble/curves@^1.8.1' '@noble/hashes@^1.6.1' >&2
fi
overlay=$(mktemp -d "$out/.overlay.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
cp -a "$here/image/." "$overlay/"
cp -a "$npmdir/node_modules" "$overlay/app/node_modules"
mkdir -p "$overlay/usr/local/bin"
cp "$(readlink -f "$node")" "$overlay/usr/local/bin/node"
# the libraries node loads, and the loader, at the paths the binary names
for lib in $(ldd "$node" | grep -o '/[^ ]*'); do
  mkdir -p "$overlay$(dirname "$lib")"
  cp -L "$lib" "$overlay$lib"
done
"$here/../../../scripts/busybox-image.sh" "$out" moonstack-examples/sdk:1 "$overlay" \
  /usr/local/bin/node /app/app.js
