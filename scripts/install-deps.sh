#!/usr/bin/env bash
# Installs the Debian packages moonstack needs to build, test and run, only if missing.
# Usage: scripts/install-deps.sh [build|run|image|test|bench]   (run adds what `moonstack dev
# up` runs: WireGuard, a Docker engine per CVM, busybox for the example app's image; image adds
# the tools `moonstack image build --kind qemu` runs; test adds those, QEMU and the test and
# lint tools; bench adds the peers the benchmarks measure beside moonstack)
set -euo pipefail
what=${1:-test}

build_pkgs=(build-essential cmake pkg-config libluajit-5.1-dev luajit libssl-dev libuv1-dev
  lua-luv-dev lua-cjson-dev libwebsockets-dev libwebsockets-evlib-uv libedit-dev
  libsecp256k1-dev)
test_pkgs=(libcmocka-dev lua-busted lua-check clang-format curl socat valgrind tmux openssl apache2-utils jq nodejs npm
  procps docker.io docker-compose busybox-static qemu-system-x86 wireguard-go wireguard-tools iproute2 wrk
  haproxy dnsmasq-base python3 clang libclang-rt-14-dev chromium etcd-server etcd-client pebble
  bind9-dnsutils luarocks osslsigncode ovmf)
# what `moonstack image build --kind qemu` runs: depmod, xz, debootstrap and mksquashfs (docker
# flavour); busybox-static and cpio for the tests that look inside an initramfs
image_pkgs=(kmod xz-utils debootstrap squashfs-tools busybox-static cpio)

bench_pkgs=(nginx libnginx-mod-stream)
# `make run`: the dev stack's daemons and CVMs (moonstack.devstack.prereq checks the same), and
# QEMU with what its guest image builder runs, so `dev up` can pick the qemu backend
run_pkgs=(wireguard-go wireguard-tools iproute2 docker.io docker-compose busybox-static curl
  qemu-system-x86)

pkgs=("${build_pkgs[@]}")
[ "$what" = run ] && pkgs+=("${run_pkgs[@]}")
[ "$what" = run ] || [ "$what" = image ] || [ "$what" = test ] || [ "$what" = bench ] &&
  pkgs+=("${image_pkgs[@]}")
[ "$what" = test ] || [ "$what" = bench ] && pkgs+=("${test_pkgs[@]}")
[ "$what" = bench ] && pkgs+=("${bench_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  # npm/nodejs may come from outside apt (a preinstalled node): accept the commands.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
