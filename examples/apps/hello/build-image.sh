#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build the hello app's Docker image offline: busybox-static plus image/ (the app's files), as
# a `docker save` tarball tagged moonstack-examples/hello:1.
#   build-image.sh OUTDIR   -> OUTDIR/image.tar
set -euo pipefail
# scripts/busybox-image.sh of the moonstack tree: $MOONSTACK_SRC (`moonstack dev up` sets it), else
# this app's place in it (a copy of this app elsewhere needs MOONSTACK_SRC)
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-image.sh OUTDIR}
exec "${MOONSTACK_SRC:-$here/../../..}/scripts/busybox-image.sh" "$out" moonstack-examples/hello:1 "$here/image" \
  /bin/sh /app/start.sh
