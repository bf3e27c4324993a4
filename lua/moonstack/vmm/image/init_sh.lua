-- SPDX-License-Identifier: Apache-2.0
-- The guest's /init (a busybox sh script; the same text for both flavours, which read
-- /etc/moonstack/image.conf and /etc/moonstack/modules written by the builder).
--
-- Stage 1, PID 1 in the initramfs: mount proc, sys, devtmpfs, devpts, /dev/shm, tmpfs /run
-- and /tmp; "kernel up"; insmod the modules in the computed order; mount the 9p share
-- `host-shared` at /dstack/.host-shared ("share mounted"); lo and eth0 as QEMU's user network
-- wants them (10.0.2.15/24 via 10.0.2.2; "network up"). Each stage is a line appended to
-- /run/moonstack/boot-progress and printed on the console (the VM's serial log).
-- Plain flavour: then run the agent (below).
-- Docker flavour: mount the read-only root filesystem (squashfs on virtio-blk) under a tmpfs
-- overlay, move the mounts into it and switch_root to this same script in it (`stage2`),
-- which mounts cgroup2, starts dockerd (data root on a tmpfs; "docker ready"), `docker load`s every
-- /dstack/.host-shared/images/*.tar, then runs the agent. The root file system is the first
-- virtio disk holding a squashfs (ROOTFS=squashfs in image.conf); without one after 5 s the
-- agent runs from the initramfs as in the plain flavour.
-- Running the agent: open the ACPI power button's input device first (a press before the
-- agent is up is not lost), start `moonstack agent -c /etc/moonstack/agent.lua` with its
-- output on the console, and watch the button: a press sends the agent SIGTERM and powers off
-- when it has exited (or after POWEROFF_TIMEOUT seconds). When the agent exits, for whatever
-- reason, the VM powers off (`poweroff -f`).
local M = {}

--- The script.
M.text = [=[
#!/bin/busybox sh
# moonstack guest init: written by `moonstack image build --kind qemu` (Apache-2.0).
# Stage 1 in the initramfs; `stage2` in the docker flavour's root filesystem.
BB=/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
SHARE=/dstack/.host-shared
PROGRESS=/run/moonstack/boot-progress
FLAVOUR=plain
KERNEL_VERSION=
ROOTFS=
POWEROFF_TIMEOUT=10
[ -r /etc/moonstack/image.conf ] && . /etc/moonstack/image.conf

say() { echo "moonstack-init: $*"; }
stage() {
  $BB mkdir -p /run/moonstack
  echo "$1" >>"$PROGRESS"
  read -r up _ </proc/uptime
  say "$1 (uptime ${up}s)"
}
halt() {
  $BB sync
  $BB poweroff -f
  while :; do $BB sleep 60; done
}
fatal() {
  say "FATAL: $*"
  halt
}

mounts() {
  $BB mkdir -p /proc /sys /dev /run /tmp
  $BB mount -t proc -o nosuid,nodev,noexec proc /proc
  $BB mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
  $BB mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
  $BB mkdir -p /dev/pts /dev/shm
  $BB mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
  $BB mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /dev/shm
  $BB mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
  $BB mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
}

load_modules() {
  [ -r /etc/moonstack/modules ] || return 0
  while read -r m; do
    [ -n "$m" ] || continue
    $BB insmod "/lib/modules/$KERNEL_VERSION/$m" || say "insmod $m failed"
  done </etc/moonstack/modules
}

mount_share() {
  $BB mkdir -p "$SHARE"
  if $BB mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host-shared "$SHARE"; then
    stage "share mounted"
  else
    say "no host share (9p mount tag host-shared)"
  fi
}

network() {
  $BB hostname moonstack
  $BB ip link set lo up
  if $BB ip link show eth0 >/dev/null 2>&1; then
    $BB ip link set eth0 up
    $BB ip addr add 10.0.2.15/24 dev eth0
    $BB ip route add default via 10.0.2.2
    stage "network up"
  else
    say "no eth0: no network"
  fi
}

mounted() { $BB grep -q " $1 " /proc/mounts; }

# Docker flavour, stage 1: the root filesystem (read only) under a tmpfs overlay.
# The first virtio disk holding a squashfs (the VMM may attach data disks beside it).
find_rootfs() {
  for d in /dev/vd[a-z]; do
    [ -b "$d" ] && [ "$($BB head -c 4 "$d" 2>/dev/null)" = hsqs ] && { echo "$d"; return 0; }
  done
  return 1
}

switch_to_rootfs() {
  n=0
  dev=
  until dev=$(find_rootfs) || [ $n -ge 100 ]; do $BB sleep 0.05; n=$((n + 1)); done
  if [ -z "$dev" ]; then
    say "no squashfs root filesystem on a virtio disk: running the agent from the initramfs, without docker"
    return 0
  fi
  ROOTFS=$dev
  $BB mkdir -p /rootfs.ro /rootfs.rw /sysroot
  $BB mount -t squashfs -o ro "$ROOTFS" /rootfs.ro || fatal "cannot mount the root filesystem $ROOTFS"
  $BB mount -t tmpfs -o mode=0755 tmpfs /rootfs.rw
  $BB mkdir -p /rootfs.rw/upper /rootfs.rw/work
  $BB mount -t overlay -o lowerdir=/rootfs.ro,upperdir=/rootfs.rw/upper,workdir=/rootfs.rw/work \
    overlay /sysroot || fatal "cannot mount the overlay on $ROOTFS"
  for m in "$SHARE" /tmp /run /dev /sys /proc; do
    if mounted "$m"; then
      $BB mkdir -p "/sysroot$m"
      $BB mount --move "$m" "/sysroot$m" || fatal "cannot move $m into the root filesystem"
    fi
  done
  exec $BB switch_root /sysroot /usr/lib/moonstack/init stage2 "$ROOTFS"
}

start_docker() {
  $BB mkdir -p /sys/fs/cgroup /var/lib/docker
  mounted /sys/fs/cgroup || $BB mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
  $BB mount -t tmpfs -o mode=0710 tmpfs /var/lib/docker
  dockerd --host=unix:///var/run/docker.sock --data-root=/var/lib/docker --log-level=warn \
    </dev/null >/run/moonstack/dockerd.log 2>&1 &
  DOCKERD=$!
  # compose v1 is Python: its first start reads a few MB off the squashfs, seconds under TCG.
  # Warm the page cache while dockerd starts, so the agent's `docker-compose version` probe
  # answers in time.
  command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1 &
  n=0
  until docker version >/dev/null 2>&1; do
    if ! $BB kill -0 $DOCKERD 2>/dev/null || [ $n -ge 600 ]; then
      say "dockerd did not start:"
      $BB tail -n 20 /run/moonstack/dockerd.log
      return 1
    fi
    $BB sleep 0.1
    n=$((n + 1))
  done
  stage "docker ready"
  for t in "$SHARE"/images/*.tar; do
    [ -f "$t" ] || continue
    docker load -q -i "$t" || say "docker load $t failed"
  done
}

run_agent() {
  $BB mkdir -p /var/lib/moonstack /run/dstack /run/moonstack
  PWR=
  n=0
  while [ -z "$PWR" ] && [ $n -lt 20 ]; do
    for d in /sys/class/input/event*; do
      [ "$($BB cat "$d/device/name" 2>/dev/null)" = "Power Button" ] && PWR=/dev/input/${d##*/}
    done
    [ -n "$PWR" ] || $BB sleep 0.05
    n=$((n + 1))
  done
  if [ -n "$PWR" ] && exec 3<"$PWR"; then
    :
  else
    PWR=
    say "no power button: ACPI shutdown requests are ignored"
  fi
  say "starting the agent"
  /usr/bin/moonstack agent -c /etc/moonstack/agent.lua </dev/null >/dev/console 2>&1 3<&- &
  AGENT=$!
  WATCH=
  if [ -n "$PWR" ]; then
    (
      $BB dd bs=24 count=1 <&3 >/dev/null 2>&1
      say "power button: stopping the agent"
      $BB kill -TERM $AGENT 2>/dev/null
      $BB sleep "$POWEROFF_TIMEOUT"
      say "the agent did not stop within ${POWEROFF_TIMEOUT}s"
      halt
    ) &
    WATCH=$!
    exec 3<&-
  fi
  wait $AGENT
  rc=$?
  say "the agent exited (status $rc): powering off"
  [ -n "$WATCH" ] && $BB kill $WATCH 2>/dev/null
  halt
}

if [ "$1" = stage2 ]; then
  say "root filesystem $2 (squashfs, read only, under a tmpfs overlay)"
  start_docker
  run_agent
fi
mounts
stage "kernel up"
load_modules
mount_share
network
[ -n "$ROOTFS" ] && switch_to_rootfs
run_agent
]=]

return M
