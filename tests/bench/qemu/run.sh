#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Real VMs (the VMM's qemu backend): the guest image build, cold (an empty cache: the Debian
# kernel and packages downloaded and unpacked) and cached (the same inputs again); the boot of
# a bash-runner app to agent-ready (CreateVm until the guest reports `done`) under the
# accelerator the VMM picks here (TCG on these machines: their KVM cannot run a stock kernel),
# median of BENCH_VMS boots; and the RSS of an idle guest's QEMU. Printed beside upstream's
# published figures (dstack: a Yocto/mkosi image built in hours, booted in 30-60 s on TDX).
# Not pass/fail: it fails only if it cannot run.
set -euo pipefail
moonstack=${1:?usage: run.sh MOONSTACK}
n=${BENCH_VMS:-5}
dir=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-bench-qemu.XXXXXX")
vmm_pid=
cleanup() {
  [ -n "$vmm_pid" ] && kill -TERM "$vmm_pid" 2>/dev/null && wait "$vmm_pid" 2>/dev/null
  for p in $(pgrep -f "qemu-system-x86_64.*$dir" 2>/dev/null); do kill -KILL "$p"; done
  rm -rf "$dir"
}
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

mkdir -p "$dir/images" "$dir/run"
t0=$(now_ms)
"$moonstack" image build --kind qemu --output "$dir/images/cold" --cache "$dir/cache" >"$dir/cold.log" 2>&1 \
  || { tail -20 "$dir/cold.log"; exit 1; }
cold=$(( $(now_ms) - t0 ))
t0=$(now_ms)
"$moonstack" image build --kind qemu --output "$dir/images/guest" --cache "$dir/cache" >"$dir/warm.log" 2>&1
warm=$(( $(now_ms) - t0 ))
same=$([ "$(cat "$dir/images/cold/digest.txt")" = "$(cat "$dir/images/guest/digest.txt")" ] && echo yes || echo NO)
size=$(du -sk "$dir/images/guest" | cut -f1)

cat >"$dir/vmm.lua" <<EOF
return { listen = { host = '127.0.0.1', port = 0 }, run_dir = '$dir/run', image_dir = '$dir/images',
  backend = 'qemu', auto_restart = { enabled = false }, process = { sim_dir = '$dir/sim' } }
EOF
"$moonstack" vmm -c "$dir/vmm.lua" >"$dir/vmm.log" 2>&1 &
vmm_pid=$!
for _ in $(seq 200); do grep -q 'VMM ready' "$dir/vmm.log" && break; sleep 0.05; done
port=$(grep 'VMM ready' "$dir/vmm.log" | sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p')
[ -n "$port" ] || { cat "$dir/vmm.log"; exit 1; }
VMM=http://127.0.0.1:$port
# the accelerator probe runs when the VMM starts (up to its timeout): boots are timed after it
for _ in $(seq 300); do grep -q 'QEMU accelerator' "$dir/vmm.log" && break; sleep 0.05; done
rpc() { curl -sS --max-time 30 -H 'content-type: application/json' -d "$2" "$VMM/prpc/$1?json"; }
compose=$(jq -cn '{manifest_version:2,name:"bench",runner:"bash",bash_script:"exec sleep 100000"}')
body() { jq -cn --arg n "$1" --arg c "$compose" '{name:$n,image:"guest",compose_file:$c,vcpu:1,memory:512}'; }

: >"$dir/boot"
rss=0
for i in $(seq "$n"); do
  t0=$(now_ms)
  id=$(rpc CreateVm "$(body "b$i")" | jq -r .id)
  until [ "$(rpc GetInfo "{\"id\":\"$id\"}" | jq -r .info.boot_progress)" = done ]; do
    [ $(( $(now_ms) - t0 )) -gt 120000 ] && { echo "boot $i did not finish"; tail -20 "$dir/run/$id/serial.log"; exit 1; }
    sleep 0.02
  done
  echo $(( $(now_ms) - t0 )) >>"$dir/boot"
  if [ "$i" = 1 ]; then
    sleep 3 # idle
    qpid=$(jq -r .pid "$dir/run/$id/process.json")
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$qpid/status")
  fi
  rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
done
read -r med p90 < <(sort -n "$dir/boot" | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; p=a[int(NR*0.9+0.999)]; if (p=="") p=a[NR]; print m, p}')
accel=$(grep 'QEMU accelerator' "$dir/vmm.log" | grep -o '"accel":"[a-z]*"' | head -1 | cut -d'"' -f4)

echo "guest image (moonstack image build --kind qemu, plain flavour):"
printf '  build cold:   %6.1f s (kernel + packages from the Debian registry, unpacked)\n' "$(echo "$cold / 1000" | bc -l)"
printf '  build cached: %6.1f s (reproducible: same digest.txt = %s), %d MiB\n' "$(echo "$warm / 1000" | bc -l)" "$same" $((size / 1024))
echo "  upstream: a Yocto/mkosi build, hours"
echo "boot to agent-ready ($accel, 1 vCPU, 512 MiB, $n VMs one after another):"
printf '  median %5.2f s   p90 %5.2f s   (target under 5 s; upstream: 30-60 s on TDX)\n' \
  "$(echo "$med / 1000" | bc -l)" "$(echo "$p90 / 1000" | bc -l)"
printf '  -> upstream / moonstack: x%.0f to x%.0f\n' "$(echo "30000 / $med" | bc -l)" "$(echo "60000 / $med" | bc -l)"
printf 'QEMU RSS of an idle guest: %d MiB\n' $((rss / 1024))
