#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack image build --kind qemu` (plain flavour) end to end (labels functional and e2e):
# build with the shared cache (only the first run fetches the kernel deb), check the image
# directory (metadata.json fields, sha256sum.txt, digest.txt = SHA-256 of sha256sum.txt, the
# uncompressed ELF vmlinux), look inside the initramfs (owner root and mtime 0 everywhere; the
# moonstack binary and exactly the libraries ldd gives for it, bash and lws's libuv plugin; the
# modules in /etc/moonstack/modules and no others; the agent.lua contract), rebuild into another
# directory (byte-identical files, same digest, seconds), then boot under TCG with QEMU as the
# VMM would: with the image's own agent.lua (the init's boot stages, then the VM powers off by
# itself when the agent exits, or by QMP if the agent stays up) and with a test agent.lua the
# current agent accepts (sim TEE): the stages within ~10 s, the app's output (the bash runner
# prints /run/moonstack/boot-progress) on the serial log, the agent's public page through the
# host forward, and QMP system_powerdown stopping the agent and powering off.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/image_lib.sh"

for prog in qemu-system-x86_64 python3 cpio jq curl apt-get depmod xz; do
  if ! command -v "$prog" >/dev/null; then
    not_ok "$prog is installed (scripts/install-deps.sh test)"; finish; exit 1
  fi
done

A=$TEST_ROOT/a B=$TEST_ROOT/b C=$TEST_ROOT/c
build() { # build OUT [ARGS...]: sets BUILD_MS; output in OUT.out / OUT.err
  local out=$1; shift
  local t0; t0=$(now_ms)
  "$MOONSTACK" image build --kind qemu --output "$out" --cache "$IMAGE_CACHE" "$@" \
    >"$out.out" 2>"$out.err"
  local rc=$?
  BUILD_MS=$(($(now_ms) - t0))
  return $rc
}

# ---- build ----
if build "$A" --version 9.9.9-test; then
  ok "image build --kind qemu ($(secs $BUILD_MS) s with cache $IMAGE_CACHE)"
else
  not_ok "image build --kind qemu" "$(tail -5 "$A.err")"; finish; exit 1
fi
echo "# build A: $(secs $BUILD_MS) s ($(grep -c 'fetched' "$A.err") steps fetched, cache $IMAGE_CACHE)"
for step in 'kernel: linux-image-' 'modules: [0-9]+ in load order' 'initramfs: [0-9]+ entries' \
    'done: os_image_hash [0-9a-f]{64}'; do
  check_match "progress line on stderr: $step" "moonstack image: \[ *[0-9.]+s\] $step" "$(cat "$A.err")"
done
digest=$(cat "$A/digest.txt")
check_match "stdout names the os_image_hash" "os_image_hash $digest" "$(cat "$A.out")"
check "the image directory holds exactly the image's files" \
  "digest.txt initramfs.cpio.gz measurements.json metadata.json sha256sum.txt vmlinux" \
  "$(ls "$A" | tr '\n' ' ' | sed 's/ $//')"

# ---- metadata, checksums ----
m=$A/metadata.json
check "metadata: kind, flavour" "qemu plain" "$(jq -r '"\(.kind) \(.flavour)"' "$m")"
check "metadata: kernel, initrd, rootfs, bios" "vmlinux initramfs.cpio.gz  " \
  "$(jq -r '"\(.kernel) \(.initrd) \(.rootfs) \(.bios)"' "$m")"
check "metadata: cmdline" "console=ttyS0 quiet panic=-1" "$(jq -r .cmdline "$m")"
check "metadata: version, is_dev, shared_ro, host_share_mode" "9.9.9-test true false 9p" \
  "$(jq -r '"\(.version) \(.is_dev) \(.shared_ro) \(.host_share_mode)"' "$m")"
kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1)
kver=$(apt-cache policy "$kpkg" | sed -n 's/^ *Candidate: //p')
check "metadata: the kernel package linux-image-amd64 points at, its candidate version" "$kver" \
  "$(jq -r --arg p "$kpkg" '.packages[$p]' "$m")"
check "metadata: kernel_version" "${kpkg#linux-image-}" "$(jq -r .kernel_version "$m")"
check "metadata: moonstack_sha256 is this binary's" "$(sha256sum <"$MOONSTACK" | cut -d' ' -f1)" \
  "$(jq -r .moonstack_sha256 "$m")"
if (cd "$A" && sha256sum --quiet -c sha256sum.txt); then ok "sha256sum.txt matches the files"; else
  not_ok "sha256sum.txt matches the files"; fi
check "sha256sum.txt lists the files, sorted" "initramfs.cpio.gz metadata.json vmlinux" \
  "$(awk '{print $2}' "$A/sha256sum.txt" | tr '\n' ' ' | sed 's/ $//')"
check "digest.txt is the SHA-256 of sha256sum.txt (os_image_hash)" \
  "$(sha256sum <"$A/sha256sum.txt" | cut -d' ' -f1)" "$digest"
# measurements.json (moonstack.mr.report): RTMR2 only, the reasons for the rest
mj=$A/measurements.json
check "measurements.json: os_image_hash, not measurable" "$digest false" \
  "$(jq -r '"\(.os_image_hash) \(.tdx.measurable)"' "$mj")"
check "measurements.json: initrd_sha384 = sha384 of the initramfs" \
  "$(sha384sum <"$A/initramfs.cpio.gz" | cut -d' ' -f1)" "$(jq -r .tdx.initrd_sha384 "$mj")"
check_match "measurements.json: rtmr2" '^[0-9a-f]{96}$' "$(jq -r .tdx.rtmr2 "$mj")"
check_match "measurements.json: why no MRTD, RTMR1" 'no TDVF firmware.*not a PE bzImage|not a PE bzImage.*no TDVF' \
  "$(jq -r '.tdx.reasons | join(" ")' "$mj")"
rtmr2_py=$(python3 - "$A" <<'PY'
import hashlib, json, sys
d = sys.argv[1]
cmd = json.load(open(d + '/metadata.json'))['cmdline'] + ' initrd=initrd'
log = [hashlib.sha384(cmd.encode('utf-16-le') + b'\0\0').digest(),
       hashlib.sha384(open(d + '/initramfs.cpio.gz', 'rb').read()).digest()]
mr = bytes(48)
for x in log:
    mr = hashlib.sha384(mr + x).digest()
print(mr.hex())
PY
)
check "measurements.json: rtmr2 = spec §7.6 computed by python3" "$rtmr2_py" "$(jq -r .tdx.rtmr2 "$mj")"
check "vmlinux is an uncompressed ELF (PVH boot)" "7f454c46" "$(head -c 4 "$A/vmlinux" | od -An -tx1 | tr -d ' \n')"

# ---- inside the initramfs ----
x=$TEST_ROOT/x
mkdir -p "$x"
(cd "$x" && zcat "$A/initramfs.cpio.gz" | cpio -id --quiet 2>/dev/null)
listing=$(zcat "$A/initramfs.cpio.gz" | cpio -tv --quiet --numeric-uid-gid 2>/dev/null)
check "every entry is owned by 0:0" "" "$(awk '$3 != 0 || $4 != 0' <<<"$listing")"
check "every entry has mtime 0 (1970)" "" "$(grep -v ' 1970 ' <<<"$listing")"
check "entries are sorted by name" "$(zcat "$A/initramfs.cpio.gz" | cpio -t --quiet 2>/dev/null | LC_ALL=C sort)" \
  "$(zcat "$A/initramfs.cpio.gz" | cpio -t --quiet 2>/dev/null)"
for f in init usr/bin/busybox usr/bin/bash usr/bin/moonstack etc/moonstack/agent.lua \
    etc/moonstack/image.conf etc/ssl/certs/ca-certificates.crt; do
  if [ -f "$x/$f" ]; then ok "initramfs has /$f"; else not_ok "initramfs has /$f"; fi
done
if cmp -s "$MOONSTACK" "$x/usr/bin/moonstack"; then ok "/usr/bin/moonstack is this binary"; else
  not_ok "/usr/bin/moonstack is this binary"; fi
check "/init is a busybox sh script, executable" "#!/bin/busybox sh yes" \
  "$(head -1 "$x/init") $([ -x "$x/init" ] && echo yes)"
check "sh is busybox" "/usr/bin/busybox" "$(readlink "$x/usr/bin/sh")"
# exactly the libraries: ldd of moonstack, of bash, lws's libuv plugin (dlopen) and its ldd
plugin=/usr/lib/x86_64-linux-gnu/libwebsockets-evlib_uv.so
want=$( { ldd "$MOONSTACK"; ldd /usr/bin/bash; ldd "$plugin"; echo "$plugin"; } |
  sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p; s/^\(\/[^ ]*\)$/\1/p' |
  xargs -n1 readlink -f | sed 's|^/||' | LC_ALL=C sort -u)
have=$(awk '$1 ~ /^-/ {print $NF}' <<<"$listing" | grep -E '^usr/lib(64)?/(x86_64-linux-gnu/)?[^/]+$' | LC_ALL=C sort)
check "the shared libraries are exactly those ldd lists (+ the libuv plugin)" "$want" "$have"
if [ -x "$x/usr/lib64/ld-linux-x86-64.so.2" ] || [ -L "$x/usr/lib64/ld-linux-x86-64.so.2" ]; then
  ok "the dynamic loader is there (/lib64/ld-linux-x86-64.so.2)"
else not_ok "the dynamic loader is there (/lib64/ld-linux-x86-64.so.2)"; fi
# modules: listed in load order, each present, nothing else
mods=$(cat "$x/etc/moonstack/modules")
kv=$(jq -r .kernel_version "$m")
check "the modules file and the .ko files agree" "$(sed "s|^|usr/lib/modules/$kv/|" <<<"$mods" | LC_ALL=C sort)" \
  "$(grep -E '\.ko$' <<<"$(awk '{print $NF}' <<<"$listing")" | LC_ALL=C sort)"
pos() { grep -n "/$1\.ko$" <<<"$mods" | cut -d: -f1; }
for m_ in virtio_pci virtio_net 9p 9pnet_virtio virtio_console vmw_vsock_virtio_transport button evdev wireguard; do
  [ -n "$(pos "$m_")" ] && ok "module $m_ is loaded" || not_ok "module $m_ is loaded"
done
order_ok=yes
for pair in "virtio_ring virtio" "virtio virtio_pci" "9pnet 9p" "9pnet 9pnet_virtio" "vsock vmw_vsock_virtio_transport" \
    "udp_tunnel wireguard" "failover net_failover" "net_failover virtio_net"; do
  set -- $pair
  [ "$(pos "$1")" -lt "$(pos "$2")" ] || { order_ok="$1 after $2"; }
done
check "modules come after their dependencies" yes "$order_ok"
check "no 9p-less cloud kernel, no ext4 in the plain flavour" "" "$(grep -E '/(ext4|virtio_blk)\.ko$' <<<"$mods")"
agent=$x/etc/moonstack/agent.lua
for line in "shared_dir = '/dstack/.host-shared', state_dir = '/var/lib/moonstack'," \
    "tee = { name = 'auto', remote = { serial = 'org.moonstack.tee' } }," \
    "public = { host = '0.0.0.0', port = 8090 }, guest = { serial = 'org.moonstack.guest-api' } }," \
    "host_api = { serial = 'org.moonstack.host-api' }," \
    "boot_progress_file = '/run/moonstack/boot-progress'," \
    "runner = { echo = true, stop_grace_ms = 3000 }," "code_reload = false,"; do
  if grep -qF -- "$line" "$agent"; then ok "agent.lua: $line"; else not_ok "agent.lua: $line" "$(cat "$agent")"; fi
done

# ---- reproducible, cached ----
if build "$B" --version 9.9.9-test; then
  ok "rebuild into another directory ($(secs $BUILD_MS) s)"
else
  not_ok "rebuild into another directory" "$(tail -5 "$B.err")"
fi
echo "# rebuild B: $(secs $BUILD_MS) s"
check "the rebuild has the same os_image_hash" "$digest" "$(cat "$B/digest.txt" 2>/dev/null)"
same=yes
for f in vmlinux initramfs.cpio.gz metadata.json sha256sum.txt digest.txt measurements.json; do
  cmp -s "$A/$f" "$B/$f" || same="$f differs"
done
check "the rebuild's files are byte-identical" yes "$same"
check "the rebuild takes seconds (everything cached)" yes "$([ "$BUILD_MS" -lt 60000 ] && echo yes)"
grep -q 'kernel [^ ]*: cached' "$B.err" && ok "the rebuild used the cached kernel" ||
  not_ok "the rebuild used the cached kernel" "$(cat "$B.err")"

# ---- boot: the image's own agent.lua ----
share=$TEST_ROOT/share
mkdir -p "$share"
printf '%s' '{"manifest_version":2,"name":"image-test","runner":"bash","bash_script":"echo app-started; while read -r l; do echo \"progress: $l\"; done < /run/moonstack/boot-progress; exec sleep 1000","public_logs":true}' \
  >"$share/app-compose.json"
echo '{}' >"$share/.sys-config.json"
run=$TEST_ROOT/run-a
boot_image "$A" "$run" "$share" 1024 "$(free_port)" 8090
t_agent=$(wait_serial 60 "$run" 'moonstack-init: starting the agent') &&
  ok "the image's own agent.lua: boots to the agent ($(secs "$t_agent") s)" ||
  not_ok "the image's own agent.lua: boots to the agent" "$(cat "$run/serial.log" "$run/qemu.out")"
stages=$(sed -n 's/^.*moonstack-init: \(kernel up\|share mounted\|network up\) (uptime.*$/\1/p' "$run/serial.log" | tr '\n' ',')
check "boot stages on the serial log, in order" "kernel up,share mounted,network up," "$stages"
if wait_serial 15 "$run" 'moonstack-init: the agent exited' >/dev/null; then
  echo "# the agent refused the image's agent.lua (until it supports serial transports): VM powered off"
else # an agent that accepts the image's config keeps running: power it off
  qmp "$run/qmp.sock" system_powerdown >/dev/null
  echo "# the agent accepted the image's agent.lua; powered off by QMP"
fi
if qemu_exits 30; then ok "QEMU exits (status $QRC)"; else not_ok "QEMU exits" "$(tail -5 "$run/serial.log")"; fi
check_match "the init powers off after the agent" 'moonstack-init: the agent exited' "$(cat "$run/serial.log")"

# ---- boot: a test agent.lua the current agent accepts ----
cat >"$TEST_ROOT/agent-test.lua" <<'EOF'
-- test only: the agent on the sim TEE, random keys, the listeners of the image's agent.lua
return {
  shared_dir = '/dstack/.host-shared', state_dir = '/var/lib/moonstack',
  key_provider = { kind = 'none' },
  tee = { name = 'sim', dir = '/var/lib/moonstack/sim', cvm = 'c', create = true },
  listen = { dstack = { unix = '/var/run/dstack/dstack.sock' },
    tappd = { unix = '/var/run/dstack/tappd.sock' }, public = { host = '0.0.0.0', port = 8090 } },
  runner = { echo = true, stop_grace_ms = 3000 },
}
EOF
if build "$C" --agent-config "$TEST_ROOT/agent-test.lua"; then
  ok "build with --agent-config ($(secs $BUILD_MS) s)"
else
  not_ok "build with --agent-config" "$(tail -5 "$C.err")"; finish; exit 1
fi
cmp -s "$TEST_ROOT/agent-test.lua" <(zcat "$C/initramfs.cpio.gz" | cpio -i --quiet --to-stdout etc/moonstack/agent.lua 2>/dev/null) &&
  ok "--agent-config replaces /etc/moonstack/agent.lua" || not_ok "--agent-config replaces /etc/moonstack/agent.lua"
run=$TEST_ROOT/run-c
port=$(free_port)
boot_image "$C" "$run" "$share" 1024 "$port" 8090
for s in 'kernel up' 'share mounted' 'network up'; do
  if t=$(wait_serial 30 "$run" "moonstack-init: $s"); then
    ok "serial: $s at $(secs "$t") s after QEMU started"
    [ "$s" = 'network up' ] && t_net=$t
  else
    not_ok "serial: $s" "$(cat "$run/serial.log")"
  fi
done
check "the boot stages come within ~10 s under TCG" yes "$([ "${t_net:-99999}" -lt 15000 ] && echo yes)"
echo "# TCG boot: QEMU exec -> network up $(secs "${t_net:-0}") s"
if t=$(wait_serial 30 "$run" 'app: app-started'); then
  ok "the agent runs the app ($(secs "$t") s after QEMU started)"
  echo "# TCG boot: QEMU exec -> app running $(secs "$t") s"
else
  not_ok "the agent runs the app" "$(tail -20 "$run/serial.log")"
fi
wait_serial 10 "$run" 'app: progress: network up' >/dev/null
check "/run/moonstack/boot-progress holds the stages" \
  "progress: kernel up,progress: share mounted,progress: network up," \
  "$(tr -d '\r' <"$run/serial.log" | sed -n 's/^app: \(progress: .*\)$/\1/p' | tr '\n' ',')"
code=$(curl -s -m 10 -o "$run/page.html" -w '%{http_code}' "http://127.0.0.1:$port/")
check "the agent's public page answers through the host forward" 200 "$code"
if ans=$(qmp "$run/qmp.sock" system_powerdown); then ok "QMP system_powerdown ($ans)"; else
  not_ok "QMP system_powerdown" "$ans"; fi
t0=$(now_ms)
if qemu_exits 20; then
  ok "QEMU exits after the power button ($(secs $(($(now_ms) - t0))) s)"
  check "QEMU's exit status" 0 "$QRC"
else
  not_ok "QEMU exits after the power button" "$(tail -10 "$run/serial.log")"
fi
log=$(cat "$run/serial.log")
check_match "the init stops the agent on the power button" 'moonstack-init: power button: stopping the agent' "$log"
check_match "the agent stops cleanly, then the VM powers off" 'moonstack-init: the agent exited \(status 0\)' "$log"

finish
