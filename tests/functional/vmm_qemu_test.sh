#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M9 (labels functional and e2e): real VMs. `moonstack image build --kind qemu` (cached across
# runs) gives a Debian-kernel guest with the moonstack agent; the VMM's qemu backend (TCG here:
# its KVM probe refuses this machine's /dev/kvm) deploys a bash-runner app with a port mapping
# (hostfwd). Checks: the app answers on the mapped port; boot progress from the guest's init and
# agent reaches Status; the guest agent's Info through the VMM's guest-API proxy (virtio-serial
# channel); a quote from the guest (Worker.GetAttestationForAppKey on its mapped :8090) made by
# the VMM's simulated quote service verifies with the simulator's root and its event log
# replays; ShutdownVm powers it off through QMP (the guest's power button); StartVm boots it
# again with the same MRTD/RTMR0-2; two VMs survive a kill -9 of the VMM and are adopted, none
# doubled; RemoveVm leaves no QEMU behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/image_lib.sh"

command -v qemu-system-x86_64 >/dev/null || { not_ok "qemu-system-x86 is installed"; finish; exit 1; }
d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
cache=$IMAGE_CACHE
t0=$SECONDS
if "$MOONSTACK" image build --kind qemu --output "$d/images/guest" --cache "$cache" >"$d/build.log" 2>&1; then
  ok "image build --kind qemu ($((SECONDS - t0)) s, cache $cache)"
else
  not_ok "image build --kind qemu" "$(tail -20 "$d/build.log")"; finish; exit 1
fi
read -r APP_PORT WORKER_PORT APP2_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
cat >"$d/vmm.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/run', image_dir = '$d/images',
  backend = 'qemu', shutdown_timeout = 20, control = '$d/vmm.ctl',
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 1024, to = 65535 } } },
  process = { sim_dir = '$d/sim' },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM (qemu backend) started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT
qemus() { # the QEMU processes of this test
  local p
  for p in $(pgrep -f "qemu-system-x86_64.*$d/run" 2>/dev/null); do
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || echo "$p"
  done
}
defer "for p in \$(pgrep -f 'qemu-system-x86_64.*$d/run'); do kill -KILL \$p; done"

app='mkdir -p www && echo "hello from a real VM" > www/index.html && echo serving && exec busybox httpd -f -p 8080 -h www'
compose=$(bash_compose qemu-app "$app")
t0=$(date +%s%N)
id=$(rpc CreateVm "$(create_body vm1 guest "$compose" \
  "| .memory=512 | .ports=[{protocol:\"tcp\",host_address:\"127.0.0.1\",host_port:$APP_PORT,vm_port:8080},
     {protocol:\"tcp\",host_address:\"127.0.0.1\",host_port:$WORKER_PORT,vm_port:8090}]")" | jq -r .id)
check "CreateVm (qemu backend)" 200 "$(rpc_status)"
if wait_vm "$id" 60 '.boot_progress=="done"'; then
  ok "the guest boots to agent-ready ($(( ($(date +%s%N) - t0) / 1000000 )) ms under $(grep -o '"accel":"[a-z]*"' "$d/vmm.log" | head -1))"
else
  not_ok "the guest boots to agent-ready" "$(vm_field "$id" '.boot_error'; tail -30 "$d/run/$id/serial.log")"
fi
check_match "boot progress from the guest's init, then the agent" 'kernel up.*share mounted.*done' \
  "$(vm_field "$id" '.events | map(.body) | join(",")')"
answers() { [ "$(curl -sS --max-time 2 "http://127.0.0.1:$APP_PORT/" 2>/dev/null)" = "hello from a real VM" ]; }
if wait_for 30 answers; then ok "the app answers on the mapped port (hostfwd)"; else
  not_ok "the app answers on the mapped port" "$(tail -10 "$d/run/$id/serial.log")"; fi
info=$(curl -sS -H 'content-type: application/json' -d "{\"id\":\"$id\"}" "$VMM/guest/Info?json")
check_match "the guest agent's Info through the VMM's guest API proxy" '"app_name":"qemu-app"' "$info"
# the REPL's helpers on a qemu VM: QMP, and a fresh quote over the virtio-serial guest channel
check "repl vm.qmp(id, 'query-status')" '"running"' \
  "$(timeout 30 "$MOONSTACK" repl "$d/vmm.ctl" -e "vm.qmp('$id', 'query-status').status" 2>&1)"
check_match "repl vm.qmp: QEMU's own error for an unknown command" 'EQMP: CommandNotFound' \
  "$(timeout 30 "$MOONSTACK" repl "$d/vmm.ctl" -e "vm.qmp('$id', 'no-such-command')" 2>&1)"
out=$(timeout 60 "$MOONSTACK" repl "$d/vmm.ctl" --json -e "vm.quote('$id')" 2>&1)
check "repl vm.quote(id): verified, nonce-bound, event log replayed" "true true true" \
  "$(jq -r '[.results[0].ok, .results[0].nonce_bound, .results[0].event_log.verified] | join(" ")' <<<"$out" 2>&1)"

curl -sS -H 'content-type: application/json' -d '{"algorithm":"secp256k1"}' \
  "http://127.0.0.1:$WORKER_PORT/prpc/Worker.GetAttestationForAppKey?json" >"$d/att.json"
jq -r .quote "$d/att.json" >"$d/quote.hex"
jq -r .event_log "$d/att.json" >"$d/events.json"
out=$("$MOONSTACK" verify --quote "$d/quote.hex" --event-log "$d/events.json" --simulator "$d/sim" --json 2>&1)
if [ $? = 0 ]; then ok "a quote from the guest verifies with the simulator's root (made on the host)"; else
  not_ok "a quote from the guest verifies with the simulator's root (made on the host)" "$out"; fi
check "... its event log replays to the quote's RTMR3" true "$(echo "$out" | jq -r '.event_log.verified // .result.event_log.verified')"
mrs() { echo "$1" | jq -r '[.report.mr_td // .quote.mr_td, .report.rt_mr0 // .quote.rt_mr0] | join(",")'; }
mr_before=$(mrs "$out")

rpc ShutdownVm "{\"id\":\"$id\"}" >/dev/null
check "ShutdownVm (QMP powerdown)" 200 "$(rpc_status)"
if wait_vm "$id" 30 '.status=="stopped"'; then ok "the guest powered itself off"; else
  not_ok "the guest powered itself off" "$(vm_field "$id" '.events | map(.body) | join(",")')"; fi
check_match "... by its power button (QMP POWERDOWN, then SHUTDOWN)" 'qemu.powerdown|qemu.shutdown' \
  "$(vm_field "$id" '.events | map(.event) | join(",")')"
check "no QEMU left after the power-off" "" "$(qemus)"
rpc StartVm "{\"id\":\"$id\"}" >/dev/null
if wait_vm "$id" 60 '.boot_progress=="done"' && wait_for 30 answers; then ok "StartVm boots it again"; else
  not_ok "StartVm boots it again" "$(tail -20 "$d/run/$id/serial.log")"; fi
curl -sS -H 'content-type: application/json' -d '{"algorithm":"secp256k1"}' \
  "http://127.0.0.1:$WORKER_PORT/prpc/Worker.GetAttestationForAppKey?json" | jq -r .quote >"$d/quote2.hex"
out2=$("$MOONSTACK" verify --quote "$d/quote2.hex" --simulator "$d/sim" --json 2>&1)
check "the same image measures the same MRTD/RTMR0 after a reboot" "$mr_before" "$(mrs "$out2")"

# ---- a second VM, then kill -9 of the VMM: both adopted, none doubled ----
id2=$(rpc CreateVm "$(create_body vm2 guest "$compose" \
  "| .memory=512 | .ports=[{protocol:\"tcp\",host_address:\"127.0.0.1\",host_port:$APP2_PORT,vm_port:8080}]")" | jq -r .id)
wait_vm "$id2" 60 '.boot_progress=="done"' || not_ok "the second VM boots" "$(tail -20 "$d/run/$id2/serial.log")"
before=$(qemus | sort | tr '\n' ' ')
check "two QEMUs run" 2 "$(qemus | wc -l)"
kill -KILL "$VMM_PID"; wait "$VMM_PID" 2>/dev/null
check "the VMs outlive the VMM" "$before" "$(qemus | sort | tr '\n' ' ')"
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM restarted" "$(tail -20 "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT
check "after the restart: both running" "running running" \
  "$(rpc Status '{}' | jq -r '[.vms[] | .status] | sort | join(" ")')"
sleep 1
check "the very same QEMUs, none doubled" "$before" "$(qemus | sort | tr '\n' ' ')"
check_match "the adopted VM's guest API answers through its channel again" '"app_name":"qemu-app"' \
  "$(curl -sS -H 'content-type: application/json' -d "{\"id\":\"$id2\"}" "$VMM/guest/Info?json")"
if wait_for 10 answers; then ok "the first app still answers"; else not_ok "the first app still answers"; fi

for v in "$id" "$id2"; do rpc RemoveVm "{\"id\":\"$v\"}" >/dev/null; done
check "RemoveVm of both" "" "$(ls -A "$d/run")"
check "no QEMU left behind" "" "$(qemus)"
kill -TERM "$VMM_PID"; wait "$VMM_PID"
finish
