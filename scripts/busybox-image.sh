#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A tiny Docker image made offline from Debian's busybox-static (no registry, no engine needed):
# the example apps' images (examples/apps/*/image) and the per-CVM Docker engine tests.
#   busybox-image.sh OUTDIR [TAG [OVERLAY_DIR [CMD...]]]   (TAG defaults to local/busybox:1)
# OVERLAY_DIR's files are copied over the root filesystem (an app's own files); CMD, when given,
# is the image's default command (else `sh`). Writes
#   OUTDIR/rootfs.tar  the root filesystem: /bin/busybox, a link per applet, /tmp, /www, the
#                      overlay (for `docker import OUTDIR/rootfs.tar TAG`)
#   OUTDIR/image.tar   the same as a `docker save` tarball tagged TAG (for `docker load -i`):
#                      manifest.json, the image config named by its SHA-256, one layer
# Both are reproducible (sorted, owner 0, mtime 0).
set -euo pipefail
out=${1:?usage: busybox-image.sh OUTDIR [TAG [OVERLAY_DIR [CMD...]]]}
tag=${2:-local/busybox:1}
overlay=${3:-}
shift $(($# < 3 ? $# : 3))
if [ -n "$overlay" ] && [ ! -d "$overlay" ]; then
  echo "busybox-image.sh: overlay $overlay is not a directory" >&2
  exit 1
fi
cmd='["sh"]'
if [ $# -gt 0 ]; then
  cmd='['
  for a in "$@"; do
    a=${a//\\/\\\\}
    cmd+="\"${a//\"/\\\"}\","
  done
  cmd="${cmd%,}]"
fi
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1; then
  echo "busybox-image.sh: $bb is missing or not a full busybox (install busybox-static)" >&2
  exit 1
fi
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/bin" "$root/tmp" "$root/www"
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
if [ -n "$overlay" ]; then
  cp -a "$overlay/." "$root/"
fi
tarflags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime=@0)
tar -C "$root" "${tarflags[@]}" -cf "$out/rootfs.tar" .

# the docker-save layout: one layer (the rootfs), its config, the manifest
img=$work/image
layer_sha=$(sha256sum "$out/rootfs.tar" | cut -d' ' -f1)
mkdir -p "$img/$layer_sha"
cp "$out/rootfs.tar" "$img/$layer_sha/layer.tar"
printf '1.0' >"$img/$layer_sha/VERSION"
printf '{"id":"%s"}' "$layer_sha" >"$img/$layer_sha/json"
printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",%s,%s,%s}' \
  '"config":{"Env":["PATH=/bin"],"Cmd":'"$cmd"',"WorkingDir":"/"}' \
  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer_sha\"]}" \
  '"history":[{"created":"1970-01-01T00:00:00Z","created_by":"busybox-image.sh"}]' \
  >"$work/config.json"
config_sha=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$img/$config_sha.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' \
  "$config_sha" "$tag" "$layer_sha" >"$img/manifest.json"
repo=${tag%:*}
printf '{"%s":{"%s":"%s"}}' "$repo" "${tag##*:}" "$layer_sha" >"$img/repositories"
tar -C "$img" "${tarflags[@]}" -cf "$out/image.tar" .
echo "$out/image.tar"
