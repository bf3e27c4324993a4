#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M8: 20 VMs (process backend) created, started, stopped and removed concurrently: every one
# boots once, none runs twice, and afterwards no process, file descriptor, socket, cgroup, sim
# state or directory is left; the VMM's RSS before and after is printed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

N=${VMM_SCALE_N:-20}
d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
cat >"$d/vmm.lua" <<EOF
return { listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/run', image_dir = '$d/images',
  auto_restart = { enabled = false } }
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT
compose=$(bash_compose scale 'echo up; exec sleep 1000')

# one VM created and removed first: what is allocated once is in the baseline
w=$(rpc CreateVm "$(create_body warm proc "$compose")" | jq -r .id)
wait_vm "$w" 20 '.boot_progress=="done"'
rpc RemoveVm "{\"id\":\"$w\"}" >/dev/null
sleep 0.3
fds0=$(ls /proc/$VMM_PID/fd | wc -l)
rss0=$(awk '/VmRSS/ {print $2}' /proc/$VMM_PID/status)

all() { # METHOD: call it on every VM at once
  local id pids=""
  for id in $ids; do rpc "$1" "{\"id\":\"$id\"}" >/dev/null & pids="$pids $!"; done
  wait $pids # (a bare wait would wait for the VMM too)
}
count_status() { rpc Status '{"brief":true}' | jq "[.vms[] | select(.status==\"$1\")] | length"; }
wait_all() { # SECONDS JQ-CONDITION over .vms
  local deadline=$((SECONDS + $1))
  until [ "$(rpc Status '{"brief":true}' | jq "$2")" = true ]; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.2
  done
}

t0=$(date +%s.%N)
pids=""
for i in $(seq "$N"); do
  rpc CreateVm "$(create_body "vm-$i" proc "$compose")" >"$d/create.$i" &
  pids="$pids $!"
done
wait $pids
ids=$(cat "$d"/create.* | jq -r .id | sort -u)
check "$N VMs created concurrently, $N distinct ids" "$N" "$(echo "$ids" | grep -c .)"
if wait_all 60 "[.vms[] | select(.boot_progress==\"done\" and .status==\"running\")] | length == $N"; then
  ok "all $N booted ($(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)") s from the first CreateVm)"; else
  not_ok "all $N booted" "$(count_status running) running"; fi
twice=0
for id in $ids; do [ "$(agents_of "$d/run/$id")" = 1 ] || twice=$((twice + 1)); done
check "each runs exactly once" 0 "$twice"

all StopVm
check "StopVm on all at once: all stopped" "$N" "$(count_status stopped)"
check "no VM process left running" "" "$(procs_under "$d/run")"
all StartVm
if wait_all 60 "[.vms[] | select(.boot_progress==\"done\" and .status==\"running\")] | length == $N"; then
  ok "StartVm on all at once: all boot again"; else not_ok "StartVm on all: all boot again" "$(count_status running) running"; fi
twice=0
for id in $ids; do [ "$(agents_of "$d/run/$id")" = 1 ] || twice=$((twice + 1)); done
check "each runs exactly once again" 0 "$twice"
fds_mid=$(ls /proc/$VMM_PID/fd | wc -l)
all RemoveVm
check "RemoveVm on all at once: none left" 0 "$(rpc Status '{}' | jq .total)"
sleep 0.3
check "no directory left" "" "$(ls -A "$d/run")"
check "no process left (/proc walk)" "" "$(procs_under "$d/run")"
left_cg=0
for id in $ids; do
  for c in /sys/fs/cgroup/*/moonstack-cvm-$id /sys/fs/cgroup/*/*/*/moonstack-cvm-$id; do [ -e "$c" ] && left_cg=$((left_cg + 1)); done
done
check "no cgroup left" 0 "$left_cg"
check "no sim TEE state left" "" "$(ls -A "$d/sim/cvms" 2>/dev/null)"
fds1=$(ls /proc/$VMM_PID/fd | wc -l)
check "the VMM's file descriptors are back to the baseline ($fds0; $fds_mid with $N running)" "$fds0" "$fds1"
rss1=$(awk '/VmRSS/ {print $2}' /proc/$VMM_PID/status)
echo "# VMM RSS: ${rss0} KiB before, ${rss1} KiB after $N VMs created, started, stopped and removed"
if [ "${MOONSTACK_SANITIZE:-0}" = 1 ]; then
  ok "# SKIP the RSS bound under ASan (its quarantine keeps freed memory)"
else
  check "the VMM's RSS grew by less than 16 MiB" true "$([ $((rss1 - rss0)) -lt 16384 ] && echo true || echo false)"
fi
kill -TERM "$VMM_PID"; wait "$VMM_PID"
check "SIGTERM: exit 0" 0 $?
finish
