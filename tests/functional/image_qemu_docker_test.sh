#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack image build --kind qemu --flavour docker` end to end (labels functional and e2e):
# build with the shared cache (the first run bootstraps the Debian root file system, about a
# minute; later ones take seconds), check the image (metadata rootfs, a squashfs rootfs.img
# holding dockerd, docker-compose, moonstack, the image's agent.lua with the docker runner
# keys and the init), rebuild (same digest, identical files), then boot it under TCG with QEMU
# as the VMM would, the rootfs read only on virtio-blk and a share holding a docker-compose
# app and images/busybox.tar (no registry): the init's stages, dockerd ready, the tarball
# loaded, the app answering through the host forward, and QMP system_powerdown stopping the
# app and the VM.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/image_lib.sh"

for prog in qemu-system-x86_64 python3 jq curl apt-get depmod xz debootstrap mksquashfs unsquashfs busybox; do
  if ! command -v "$prog" >/dev/null; then
    not_ok "$prog is installed (scripts/install-deps.sh test)"; finish; exit 1
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  echo "ok - # SKIP the docker flavour bootstraps a Debian root file system: needs root"
  finish; exit 0
fi

D1=$TEST_ROOT/d1 D2=$TEST_ROOT/d2 T=$TEST_ROOT/t
build() { # build OUT [ARGS...]: sets BUILD_MS
  local out=$1; shift
  local t0; t0=$(now_ms)
  "$MOONSTACK" image build --kind qemu --flavour docker --output "$out" --cache "$IMAGE_CACHE" "$@" \
    >"$out.out" 2>"$out.err"
  local rc=$?
  BUILD_MS=$(($(now_ms) - t0))
  return $rc
}

if build "$D1"; then
  ok "image build --flavour docker ($(secs $BUILD_MS) s)"
else
  not_ok "image build --flavour docker" "$(tail -8 "$D1.err")"; finish; exit 1
fi
echo "# build D1: $(secs $BUILD_MS) s: $(grep -o 'root file system [0-9a-f]*: [a-z]*' "$D1.err")"
check_match "progress: the root file system" 'moonstack image: .* root file system [0-9a-f]{12}: (cached|bootstrapped) \([0-9]+ packages\)' \
  "$(cat "$D1.err")"
check_match "progress: rootfs.img" 'rootfs.img: squashfs \(zstd\)' "$(cat "$D1.err")"
m=$D1/metadata.json
check "metadata: flavour, rootfs, rootfs_type" "docker rootfs.img squashfs" \
  "$(jq -r '"\(.flavour) \(.rootfs) \(.rootfs_type)"' "$m")"
check "sha256sum.txt lists the four files" "initramfs.cpio.gz metadata.json rootfs.img vmlinux" \
  "$(awk '{print $2}' "$D1/sha256sum.txt" | tr '\n' ' ' | sed 's/ $//')"
check "digest.txt is the SHA-256 of sha256sum.txt" "$(sha256sum <"$D1/sha256sum.txt" | cut -d' ' -f1)" \
  "$(cat "$D1/digest.txt")"
check_match "rootfs.img is a zstd squashfs" 'Compression zstd' "$(unsquashfs -s "$D1/rootfs.img" 2>&1)"
files=$(unsquashfs -lc "$D1/rootfs.img" 2>/dev/null | sed 's|^squashfs-root||')
for f in /usr/bin/moonstack /usr/lib/moonstack/init /etc/moonstack/agent.lua /etc/moonstack/image.conf \
    /usr/sbin/dockerd /usr/bin/docker /usr/bin/docker-compose /usr/sbin/iptables /usr/bin/busybox \
    /usr/lib/x86_64-linux-gnu/libwebsockets-evlib_uv.so /usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2; do
  grep -qx -- "$f" <<<"$files" && ok "rootfs has $f" || not_ok "rootfs has $f"
done
check "no apt lists or logs in the rootfs" "" "$(grep -E '^/var/lib/apt/lists/.|^/var/log/.' <<<"$files" |
  grep -v '^/var/lib/apt/lists/partial$')"
ex=$TEST_ROOT/ex
unsquashfs -q -d "$ex" "$D1/rootfs.img" etc/moonstack/agent.lua usr/bin/moonstack >/dev/null 2>&1
cmp -s "$MOONSTACK" "$ex/usr/bin/moonstack" && ok "the rootfs's moonstack is this binary" ||
  not_ok "the rootfs's moonstack is this binary"
grep -qF "docker_host = 'unix:///var/run/docker.sock', compose = 'standalone'," "$ex/etc/moonstack/agent.lua" &&
  ok "agent.lua: the docker runner keys" || not_ok "agent.lua: the docker runner keys" "$(cat "$ex/etc/moonstack/agent.lua")"
mods=$(zcat "$D1/initramfs.cpio.gz" | cpio -i --quiet --to-stdout etc/moonstack/modules 2>/dev/null)
for m_ in virtio_blk squashfs overlay bridge br_netfilter veth nf_tables nft_compat nft_chain_nat xt_MASQUERADE \
    xt_addrtype xt_conntrack xt_tcpudp; do
  grep -q "/$m_\.ko$" <<<"$mods" && ok "module $m_ is loaded" || not_ok "module $m_ is loaded"
done

if build "$D2"; then ok "rebuild ($(secs $BUILD_MS) s)"; else not_ok "rebuild" "$(tail -5 "$D2.err")"; fi
echo "# rebuild D2: $(secs $BUILD_MS) s"
check "the rebuild has the same os_image_hash" "$(cat "$D1/digest.txt")" "$(cat "$D2/digest.txt" 2>/dev/null)"
same=yes
for f in vmlinux initramfs.cpio.gz rootfs.img metadata.json sha256sum.txt; do
  cmp -s "$D1/$f" "$D2/$f" || same="$f differs"
done
check "the rebuild's files are byte-identical" yes "$same"
check "the rebuild takes seconds" yes "$([ "$BUILD_MS" -lt 90000 ] && echo yes)"
rm -rf "$D2"

# ---- boot a docker-compose app ----
cat >"$TEST_ROOT/agent-test.lua" <<'EOF'
-- test only: the agent on the sim TEE with the image's docker runner settings
return {
  shared_dir = '/dstack/.host-shared', state_dir = '/var/lib/moonstack',
  key_provider = { kind = 'none' },
  tee = { name = 'sim', dir = '/var/lib/moonstack/sim', cvm = 'c', create = true },
  listen = { dstack = { unix = '/var/run/dstack/dstack.sock' },
    tappd = { unix = '/var/run/dstack/tappd.sock' }, public = { host = '0.0.0.0', port = 8090 } },
  runner = { echo = true, stop_grace_ms = 3000, docker_host = 'unix:///var/run/docker.sock',
    compose = 'standalone' },
}
EOF
if build "$T" --agent-config "$TEST_ROOT/agent-test.lua"; then
  ok "build with --agent-config ($(secs $BUILD_MS) s)"
else
  not_ok "build with --agent-config" "$(tail -5 "$T.err")"; finish; exit 1
fi
share=$TEST_ROOT/share
mkdir -p "$share/images"
if "$MOONSTACK_SRC/scripts/busybox-image.sh" "$TEST_ROOT/bb" local/busybox:1 >/dev/null; then
  cp "$TEST_ROOT/bb/image.tar" "$share/images/busybox.tar"
  ok "busybox image tarball built offline"
else
  not_ok "busybox image tarball built offline"; finish; exit 1
fi
yaml=$(printf 'services:\n  web:\n    image: local/busybox:1\n    command: ["sh", "-c", %s]\n    ports:\n      - "8080:8080"\n' \
  '"echo hello-from-the-guest > /www/index.html && exec httpd -f -p 8080 -h /www"')
jq -n --arg yaml "$yaml" '{manifest_version: 2, name: "image-docker-test", runner: "docker-compose",
  docker_compose_file: $yaml, public_logs: true}' >"$share/app-compose.json"
echo '{}' >"$share/.sys-config.json"
run=$TEST_ROOT/run
app_port=$(free_port)
boot_image "$T" "$run" "$share" 2048 "$(free_port)" 8090 "$app_port" 8080
for s in 'kernel up' 'share mounted' 'network up' 'root filesystem /dev/vda' 'docker ready' \
    'Loaded image: local/busybox:1' 'moonstack-init: starting the agent'; do
  if t=$(wait_serial 120 "$run" "$s"); then
    ok "serial: $s ($(secs "$t") s after QEMU started)"
  else
    not_ok "serial: $s" "$(tail -30 "$run/serial.log")"; finish; exit 1
  fi
done
t0=$(now_ms)
answer=""
while [ $(($(now_ms) - t0)) -lt 120000 ] && kill -0 "$QPID" 2>/dev/null; do
  answer=$(curl -s -m 3 "http://127.0.0.1:$app_port/" 2>/dev/null) && [ -n "$answer" ] && break
  sleep 0.5
done
if [ "$answer" = hello-from-the-guest ]; then
  ok "the compose app answers through the host forward"
else
  not_ok "the compose app answers through the host forward" \
    "got [$answer]; serial log: $(tr -d '\r' <"$run/serial.log" | tail -40)"
fi
echo "# TCG docker boot: QEMU exec -> app answering $(secs $(($(now_ms) - QSTART))) s"
if ans=$(qmp "$run/qmp.sock" system_powerdown); then ok "QMP system_powerdown"; else
  not_ok "QMP system_powerdown" "$ans"; fi
t0=$(now_ms)
if qemu_exits 60; then
  ok "QEMU exits after the power button ($(secs $(($(now_ms) - t0))) s, status $QRC)"
else
  not_ok "QEMU exits after the power button" "$(tail -10 "$run/serial.log")"
fi
check_match "the agent stopped the app, then the VM powered off" 'moonstack-init: the agent exited \(status 0\)' \
  "$(cat "$run/serial.log")"

finish
