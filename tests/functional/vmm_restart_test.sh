#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M8: the supervisor never loses or doubles a VM. `kill -9` of the VMM while VMs boot and run,
# then a restart (on its unix socket, driven by `moonstack vm`): every VM is found again in its
# right state (running ones adopted by pid + start time: the same processes, none started
# twice; the stopped one stopped), the guests' reports reach the new VMM; a half-written VM
# directory and an interrupted creation are reported and skipped, never used; a VM killed
# behind the VMM's back is restarted with backoff; one whose boot always fails is restarted
# max_retries times, then says so in its events (vmm.auto_restart.exhausted); after RemoveVm
# of all, no process of them remains (a /proc walk).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  auto_restart = { interval = 0.2, initial_backoff = 0.2, max_backoff = 0.4, max_retries = 2,
    reset_window = 300 },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=unix:$d/vmm.sock
check "the API socket is 0600" 600 "$(stat -c %a "$d/vmm.sock")"
vm() { "$MOONSTACK" vm --url "$VMM" "$@"; }

printf '%s' "$(bash_compose runner 'echo up; exec sleep 1000')" >"$d/run.json"
printf '%s' "$(bash_compose slow 'sleep 0.5; echo up; exec sleep 1000')" >"$d/slow.json"
a=$(vm deploy --name a --image proc --compose "$d/run.json" --memory 256M 2>&1 | sed -n 's/^Created VM with ID: //p')
check_match "moonstack vm deploy follows the boot to its end" "^[0-9a-f-]{36}$" "$a"
c=$(vm deploy --name c --image proc --compose "$d/run.json" --memory 256M --stopped 2>&1 | sed -n 's/^Created VM with ID: //p')
b=$(vm deploy --name b --image proc --compose "$d/slow.json" --memory 256M --no-wait 2>&1 | sed -n 's/^Created VM with ID: //p')
pid_a=$(jq .pid "$d/run/$a/process.json")
pid_b=$(jq .pid "$d/run/$b/process.json")
{ kill -KILL "$VMM_PID"; wait "$VMM_PID"; } 2>/dev/null
ok "kill -9 of the VMM while b boots"
check "the CVMs outlive it" "1 1" "$(agents_of "$d/run/$a") $(agents_of "$d/run/$b")"

# leftovers a crash could leave: an interrupted creation, a directory with a broken manifest
mkdir -p "$d/run/.creating-1234" "$d/run/broken/shared"
printf '{"id":"broken","name":' >"$d/run/broken/vm-manifest.json"
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM restarted" "$(tail "$d/vmm.log")"; finish; exit 1; }
ok "VMM restarted"
check "a: running again, the same process (adopted)" "running $pid_a" "$(vm_field "$a" .status) $(jq .pid "$d/run/$a/process.json")"
check "b: running again, the same process (adopted)" "running $pid_b" "$(vm_field "$b" .status) $(jq .pid "$d/run/$b/process.json")"
check "c: still stopped" stopped "$(vm_field "$c" .status)"
check "none runs twice" "1 1 0" "$(agents_of "$d/run/$a") $(agents_of "$d/run/$b") $(agents_of "$d/run/$c")"
if wait_vm "$b" 10 '.boot_progress=="done"'; then ok "b's boot reports reach the new VMM"; else
  not_ok "b's boot reports reach the new VMM" "$(vm_field "$b" .)"; fi
check "a's last report is kept across the restart" done "$(vm_field "$a" .boot_progress)"
check_match "the adoption is in a's events" 'vmm.adopted' "$(vm_field "$a" '.events | map(.event) | join(",")')"
check_match "the broken directory is reported" '"id":"broken".*half-written|half-written.*"id":"broken"' "$(grep broken "$d/vmm.log")"
check "... and skipped (left as it is)" "0 yes" "$(rpc Status '{}' | jq '[.vms[] | select(.id=="broken")] | length') $([ -d "$d/run/broken" ] && echo yes)"
check "the interrupted creation is removed" no "$([ -e "$d/run/.creating-1234" ] && echo yes || echo no)"
rm -rf "$d/run/broken"

# a VM killed behind the VMM's back: restarted with backoff
kill -KILL "$pid_a"
if wait_vm "$a" 10 '.status=="running" and ([.events[].event] | index("vmm.auto_restart") != null)' \
    && [ "$(jq .pid "$d/run/$a/process.json")" != "$pid_a" ]; then
  ok "a, killed, is restarted (a new process)"; else not_ok "a, killed, is restarted" "$(vm_field "$a" .)"; fi
check_match "its events say so" 'vmm.exited.*vmm.auto_restart.*vmm.start' "$(vm_field "$a" '.events | map(.event) | join(",")')"
check "still one copy" 1 "$(agents_of "$d/run/$a")"

# a VM whose boot always fails: max_retries restarts, then exhausted
printf '%s' '{"manifest_version":"3","name":"nope","runner":"bash","bash_script":"true","requirements":{"platforms":[]}}' >"$d/bad.json"
x=$(vm deploy --name x --image proc --compose "$d/bad.json" --memory 256M --no-wait 2>&1 | sed -n 's/^Created VM with ID: //p')
if wait_vm "$x" 15 '[.events[].event] | index("vmm.auto_restart.exhausted") != null'; then
  ok "a VM that never boots: auto-restart exhausted, said in its events"; else
  not_ok "a VM that never boots: exhausted" "$(vm_field "$x" .)"; fi
check_match "its boot error names the cause" 'requirements.platforms' "$(vm_field "$x" .boot_error)"
check "2 automatic restarts" 2 "$(vm_field "$x" '.events | map(select(.event=="vmm.auto_restart")) | length')"
check "its status: exited" exited "$(vm_field "$x" .status)"
check_match "moonstack vm deploy reports a failing boot" 'boot failed: .*requirements.platforms' \
  "$(vm deploy --name y --image proc --compose "$d/bad.json" --memory 256M 2>&1)"

# remove everything: no process remains
for id in $(rpc Status '{}' | jq -r '.vms[].id'); do vm rm "$id" >/dev/null 2>&1; done
check "every VM removed" 0 "$(rpc Status '{}' | jq .total)"
check "no VM directory left" "" "$(ls "$d/run")"
check "no process of any VM remains (/proc walk)" "" "$(procs_under "$d/run")"
kill -TERM "$VMM_PID"; wait "$VMM_PID"
check "SIGTERM: exit 0" 0 $?
finish
