#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# VMM (process backend): create -> agent-ready, the time from CreateVm until the guest agent
# reports its boot `done` to the VMM (host API Notify), for a bash app; one VM at a time
# (median and p90 of BENCH_VMS runs), then BENCH_VMS created at once (until all are ready);
# and the VMM's RSS. The peer, measured in the same run on the same machine: `docker run -d`
# of a busybox container on a Docker engine started here (images from a local tarball), the
# usual way to start an isolated app; also the bare agent started by hand (no VMM), to show
# what the VMM adds. Not pass/fail: it fails only if it cannot run.
set -euo pipefail
moonstack=${1:?usage: run.sh MOONSTACK}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
n=${BENCH_VMS:-10}

dir=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-bench-vmm.XXXXXX")
vmm_pid= dockerd_pid=
stop_docker() {
  if [ -n "$dockerd_pid" ]; then
    local ids
    ids=$(DOCKER_HOST=unix://$dir/d/docker.sock docker ps -aq 2>/dev/null || true)
    [ -n "$ids" ] && DOCKER_HOST=unix://$dir/d/docker.sock docker rm -f $ids >/dev/null 2>&1
    kill -TERM "$dockerd_pid" 2>/dev/null; wait "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=
    umount -R "$dir/d/data" 2>/dev/null || true
    rm -rf "/run/msb-$$"
  fi
}
cleanup() {
  [ -n "$vmm_pid" ] && kill -TERM "$vmm_pid" 2>/dev/null && wait "$vmm_pid" 2>/dev/null
  stop_docker
  rm -rf "$dir" 2>/dev/null || true
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
stats() { # numbers on stdin -> "median p90" (nearest rank)
  sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; p=a[int(NR*0.9+0.999)]; if (p=="") p=a[NR]; print m, p}'
}

# ---- the VMM ----
mkdir -p "$dir/images" "$dir/run"
"$moonstack" image build --kind process --output "$dir/images/proc" >/dev/null
cat >"$dir/vmm.lua" <<EOF
return { listen = { host = '127.0.0.1', port = 0 }, run_dir = '$dir/run', image_dir = '$dir/images',
  auto_restart = { enabled = false } }
EOF
"$moonstack" vmm -c "$dir/vmm.lua" >"$dir/vmm.log" 2>&1 &
vmm_pid=$!
for _ in $(seq 200); do grep -q 'VMM ready' "$dir/vmm.log" && break; sleep 0.05; done
port=$(grep 'VMM ready' "$dir/vmm.log" | sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p')
[ -n "$port" ] || { cat "$dir/vmm.log"; exit 1; }
VMM=http://127.0.0.1:$port
rpc() { curl -sS --max-time 30 -H 'content-type: application/json' -d "$2" "$VMM/prpc/$1?json"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$vmm_pid/status"; }
compose=$(jq -cn '{manifest_version:2,name:"bench",runner:"bash",bash_script:"exec sleep 1000"}')
body() { jq -cn --arg n "$1" --arg c "$compose" '{name:$n,image:"proc",compose_file:$c,vcpu:1,memory:256}'; }
ready() { [ "$(rpc GetInfo "{\"id\":\"$1\"}" | jq -r .info.boot_progress)" = done ]; }
rss0=$(rss)

# one at a time
: >"$dir/one"
for i in $(seq "$n"); do
  t0=$(now_ms)
  id=$(rpc CreateVm "$(body "one-$i")" | jq -r .id)
  until ready "$id"; do sleep 0.01; done
  echo $(( $(now_ms) - t0 )) >>"$dir/one"
  rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
done
read -r one_med one_p90 < <(stats <"$dir/one")

# all at once
t0=$(now_ms)
for i in $(seq "$n"); do rpc CreateVm "$(body "many-$i")" | jq -r .id >>"$dir/ids" & done
wait $(jobs -p | grep -v "^$vmm_pid$") 2>/dev/null || true
until [ "$(rpc Status '{"brief":true}' | jq '[.vms[] | select(.boot_progress=="done")] | length')" = "$n" ]; do sleep 0.02; done
many=$(( $(now_ms) - t0 ))
rss_many=$(rss)
for id in $(cat "$dir/ids"); do rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null; done
rss1=$(rss)

# ---- peer: the bare agent, started by hand with the VMM's own config ----
: >"$dir/bare"
for i in $(seq "$n"); do
  w=$dir/bare.$i
  mkdir -p "$w/shared"
  printf '%s' "$compose" >"$w/shared/app-compose.json"
  echo '{}' >"$w/shared/.sys-config.json"
  cat >"$w/agent.lua" <<EOF
return { shared_dir = '$w/shared', state_dir = '$w/state', key_provider = { kind = 'none' },
  tee = { name = 'sim', dir = '$dir/sim-bare', cvm = 'c$i' },
  listen = { dstack = { unix = '$w/dstack.sock' }, tappd = { unix = '$w/tappd.sock' }, public = false } }
EOF
  t0=$(now_ms)
  "$moonstack" --log-level warn agent -c "$w/agent.lua" >"$w/log" 2>&1 &
  apid=$!
  until curl -sf --max-time 1 --unix-socket "$w/dstack.sock" http://localhost/Info >/dev/null 2>&1; do sleep 0.01; done
  echo $(( $(now_ms) - t0 )) >>"$dir/bare"
  kill -TERM "$apid"; wait "$apid" 2>/dev/null || true
done
read -r bare_med _ < <(stats <"$dir/bare")

echo "create -> agent-ready (process backend, bash app, $n VMs):"
printf '  one at a time:       median %5d ms   p90 %5d ms\n' "$one_med" "$one_p90"
printf '  %2d at once:          %5d ms until all ready (%d ms per VM)\n' "$n" "$many" $((many / n))
printf '  bare agent (no VMM, until its API answers): median %5d ms   -> the VMM adds %d ms (x%s)\n' "$bare_med" \
  $((one_med - bare_med)) "$(echo "scale=2; $one_med / $bare_med" | bc)"
printf '  VMM RSS: %d KiB idle, %d KiB with %d VMs, %d KiB after removing them\n' "$rss0" "$rss_many" "$n" "$rss1"

# ---- peer: docker run -d (a busybox container) on an engine of our own ----
if command -v dockerd >/dev/null && command -v docker >/dev/null && [ "$(id -u)" = 0 ]; then
  mkdir -p "$dir/d"
  "$src/scripts/busybox-image.sh" "$dir/img" local/busybox:1 >/dev/null
  dockerd --data-root "$dir/d/data" --exec-root "/run/msb-$$" -H "unix://$dir/d/docker.sock" \
    --pidfile "$dir/d/docker.pid" --bridge none --iptables=false >"$dir/d/log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST=unix://$dir/d/docker.sock
  for _ in $(seq 300); do docker info >/dev/null 2>&1 && break; sleep 0.1; done
  docker load -i "$dir/img/image.tar" >/dev/null
  docker run --rm --network none local/busybox:1 true >/dev/null # warm
  : >"$dir/docker"
  for i in $(seq "$n"); do
    t0=$(now_ms)
    docker run -d --network none --name "b$i" local/busybox:1 sleep 1000 >/dev/null
    echo $(( $(now_ms) - t0 )) >>"$dir/docker"
  done
  read -r docker_med _ < <(stats <"$dir/docker")
  printf '  peer: docker run -d:  median %5d ms   -> ratio VMM create->ready / docker run = %s\n' \
    "$docker_med" "$(echo "scale=2; $one_med / $docker_med" | bc)"
  stop_docker
else
  echo "  peer: docker run -d: skipped (needs root, dockerd and docker)"
fi
