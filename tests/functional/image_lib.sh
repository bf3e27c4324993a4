# SPDX-License-Identifier: Apache-2.0
# Helpers for the qemu image tests (sourced after lib.sh): the shared image cache,
# booting an image under TCG as the VMM would (PVH vmlinux, initramfs, 9p share host-shared,
# user network with restrict=on and a host forward, virtio-serial, QMP on a unix socket), a
# tiny QMP client (python3) and waiting on the serial log.

# The build cache, shared by every run and test (kernel, packages, docker root file system),
# so only the first run downloads: $MOONSTACK_IMAGE_CACHE or <build>/tests/tmp/image-cache.
IMAGE_CACHE=${MOONSTACK_IMAGE_CACHE:-${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/image-cache}
mkdir -p "$IMAGE_CACHE"

# now_ms: wall clock in milliseconds.
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }


# boot_image IMAGE_DIR RUN_DIR SHARE_DIR MEM_MB HOST_PORT GUEST_PORT [HOST_PORT GUEST_PORT]...:
# start QEMU in the background as the VMM's qemu backend would; sets QPID and QSTART (ms).
# Serial log RUN_DIR/serial.log, QMP RUN_DIR/qmp.sock, QEMU's own output RUN_DIR/qemu.out.
boot_image() {
  local img=$1 run=$2 share=$3 mem=$4; shift 4
  # one vCPU: under multi-threaded TCG on a 2-core host a second vCPU thread gets preempted
  # while the guest holds a spinlock, and the other spins: the docker guest logged soft
  # lockups of 26-78 s while runc started the container, and missed the test's 120 s
  local fwd="" rootfs=() smp=1
  while [ $# -ge 2 ]; do fwd+=",hostfwd=tcp:127.0.0.1:$1-:$2"; shift 2; done
  if [ -n "$(jq -r '.rootfs // ""' "$img/metadata.json")" ]; then
    rootfs=(-drive "file=$img/$(jq -r .rootfs "$img/metadata.json"),if=none,id=hd0,format=raw,readonly=on"
      -device virtio-blk-pci,drive=hd0)
  fi
  mkdir -p "$run"
  QSTART=$(now_ms)
  qemu-system-x86_64 -M pc -accel tcg -m "$mem" -smp "$smp" -nographic -nodefaults -no-reboot \
    -kernel "$img/$(jq -r .kernel "$img/metadata.json")" \
    -initrd "$img/$(jq -r .initrd "$img/metadata.json")" \
    -append "$(jq -r .cmdline "$img/metadata.json")" \
    -serial "file:$run/serial.log" -qmp "unix:$run/qmp.sock,server=on,wait=off" \
    "${rootfs[@]}" \
    -virtfs "local,path=$share,mount_tag=host-shared,security_model=none,id=virtfs0" \
    -netdev "user,id=net0,restrict=on$fwd" -device virtio-net-pci,netdev=net0,romfile= \
    -device virtio-serial-pci \
    -chardev "socket,id=hostapi,path=$run/host-api.sock,server=on,wait=off" \
    -device virtserialport,chardev=hostapi,name=org.moonstack.host-api \
    >"$run/qemu.out" 2>&1 &
  QPID=$!
  defer "kill -KILL $QPID 2>/dev/null"
}

# serial_has RUN_DIR REGEX: whether the serial log has a line matching REGEX.
serial_has() { grep -Eq -- "$2" "$1/serial.log" 2>/dev/null; }

# wait_serial SECONDS RUN_DIR REGEX: wait for a serial line; prints ms since QSTART.
wait_serial() {
  local deadline=$((SECONDS + $1))
  until serial_has "$2" "$3"; do
    [ $SECONDS -ge $deadline ] && return 1
    kill -0 "$QPID" 2>/dev/null || { serial_has "$2" "$3" && break; return 1; }
    sleep 0.05
  done
  echo $(($(now_ms) - QSTART))
}

# qmp SOCKET COMMAND: run one QMP command; prints its answer line.
qmp() {
  python3 - "$1" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile('rw')
f.readline()
f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n"); f.flush()
f.readline()
f.write(json.dumps({"execute": sys.argv[2]}) + "\n"); f.flush()
while True:
    line = f.readline()
    if not line:
        sys.exit(1)
    msg = json.loads(line)
    if "return" in msg or "error" in msg:
        print(line.strip())
        sys.exit(0 if "return" in msg else 1)
EOF
}

# qemu_exits SECONDS: wait for QEMU to exit; sets QRC (its exit status).
qemu_exits() {
  local deadline=$((SECONDS + $1))
  while kill -0 "$QPID" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
  wait "$QPID"
  QRC=$?
}

# secs MS: "1.234" seconds.
secs() { printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)); }
