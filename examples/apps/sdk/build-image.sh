#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the SDK example's Docker image offline (no registry): busybox-static, this machine's
# node binary with the libraries it loads, the official @phala/dstack-sdk from the npm
# registry (cached in OUTDIR/npm; or $SDK_NODE_MODULES, a node_modules holding it already, for
# machines without the registry), and image/app; a `docker save` tarball tagged
# moonstack-examples/sdk:1.
#   build-image.sh OUTDIR   -> OUTDIR/image.tar
set -euo pipefail
# scripts/busybox-image.sh of the moonstack tree: $MOONSTACK_SRC (`moonstack dev up` sets it), else
# this app's place in it (a copy of this app elsewhere needs MOONSTACK_SRC)
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUTDIR}
node=$(command -v node) || { echo "build-image.sh: node is needed (Debian package nodejs)" >&2; exit 1; }
mkdir -p "$out"
modules=${SDK_NODE_MODULES:-$out/npm/node_modules}
if [ ! -d "$modules/@phala/dstack-sdk" ]; then
  mkdir -p "$out/npm"
  timeout 180 npm install --prefix "$out/npm" --no-audit --no-fund --loglevel=error \
    @phala/dstack-sdk@0.5.8 '@noble/curves@^1.8.1' '@noble/hashes@^1.6.1' >&2 ||
    { echo "build-image.sh: npm install @phala/dstack-sdk failed (is the npm registry reachable?)" >&2; exit 1; }
fi
overlay=$(mktemp -d "$out/.overlay.XXXXXX")
trap 'rm -rf "$overlay"' EXIT
cp -a "$here/image/." "$overlay/"
cp -a "$modules" "$overlay/app/node_modules"
mkdir -p "$overlay/usr/local/bin"
cp "$(readlink -f "$node")" "$overlay/usr/local/bin/node"
# the libraries node loads, and the loader, at the paths the binary names
for lib in $(ldd "$node" | grep -o '/[^ ]*'); do
  mkdir -p "$overlay$(dirname "$lib")"
  cp -L "$lib" "$overlay$lib"
done
"${MOONSTACK_SRC:-$here/../../..}/scripts/busybox-image.sh" "$out" moonstack-examples/sdk:1 "$overlay" \
  /usr/local/bin/node /app/app.js
