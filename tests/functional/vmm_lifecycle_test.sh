#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M8: a bash-runner app through the VMM API with curl: CreateVm, boot progress from the guest
# (host API Notify) until `done`, its logs (tail, channels, follow), the work directory as
# §4.4 says (manifest, state, shared/ files, the sys-config with vm_config), StopVm (hard),
# StartVm, ShutdownVm (the guest stops itself), RemoveVm (no process, directory, cgroup or sim
# state left); port mappings validated (ranges, conflicts, the host's ports in use: carried
# out in vmm_ports_test.sh); every bad input a 400
# naming its field with nothing created; the control socket's vm.* helpers; `moonstack vm`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
cat >"$d/vmm.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 },
  run_dir = '$d/run', image_dir = '$d/images', control = '$d/vmm.ctl',
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 21000, to = 21100 } } },
  shutdown_timeout = 5,
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT
ok "VMM started (process backend)"

compose=$(bash_compose hello 'echo "hello from the app"; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done')
id=$(rpc CreateVm "$(create_body hello proc "$compose")" | jq -r .id)
check "CreateVm answers an id" 200 "$(rpc_status)"
if wait_vm "$id" 20 '.boot_progress=="done" and .status=="running"'; then ok "the guest reports its boot until done"; else
  not_ok "the guest reports its boot until done" "$(rpc GetInfo "{\"id\":\"$id\"}"; tail -20 "$d/run/$id/stderr.log")"; fi
check_match "boot progress events, in order" 'requesting app keys.*running main script.*done' \
  "$(vm_field "$id" '.events | map(.body) | join(",")')"
check_match "instance id reported by the guest" '^[0-9a-f]{40}$' "$(vm_field "$id" .instance_id)"
check "Status lists it running" running "$(rpc Status '{"brief":true}' | jq -r --arg id "$id" '.vms[] | select(.id==$id) | .status')"
check "one agent runs it" 1 "$(agents_of "$d/run/$id")"

# ---- the work directory (§4.4) ----
w=$d/run/$id
check "vm-manifest.json names the VM" "$id hello proc 256" "$(jq -r '"\(.id) \(.name) \(.image) \(.memory)"' "$w/vm-manifest.json")"
check "vm-state.json: started" true "$(jq -r .started "$w/vm-state.json")"
check "shared/app-compose.json is the compose as sent" "$compose" "$(cat "$w/shared/app-compose.json")"
check "GetComposeHash is its SHA-256" "$(sha256sum "$w/shared/app-compose.json" | cut -d' ' -f1)" \
  "$(rpc GetComposeHash "$(create_body x proc "$compose")" | jq -r .hash)"
check "the app id is the compose's (40 hex digits of its hash)" "$(sha256sum "$w/shared/app-compose.json" | cut -c1-40)" "$(vm_field "$id" .app_id)"
check_match ".instance_info kept what the guest reported" '"instance_id":"[0-9a-f]{40}"' "$(cat "$w/shared/.instance_info")"
check_match ".sys-config.json carries vm_config (a JSON string) and the host API" \
  '"host_api_url":"unix:.*host-api.sock".*"vm_config":"\{\\"os_image_hash\\":\\"[0-9a-f]{64}\\",\\"cpu_count\\":1,\\"memory_size\\":268435456' \
  "$(cat "$w/shared/.sys-config.json")"
check "process.json records pid and start time" true "$(jq '(.pid > 1) and (.start_time > 0) and (.boot_id | length > 0)' "$w/process.json")"
check "the host API socket is 0600" 600 "$(stat -c %a "$w/host-api.sock")"
check "no temporaries left" "" "$(ls -a "$w" "$w/shared" | grep '\.tmp\.' || true)"

# ---- logs ----
check_match "serial log: the boot separator and the app's output" '^===== boot @ [0-9T:-]+Z =====$' "$(head -1 "$w/serial.log")"
check_match "GET /logs: the last lines of the console" 'app: tick' "$(curl -sS "$VMM/logs?id=$id&lines=3&ansi=false")"
check "GET /logs?lines=2 gives 2 lines" 2 "$(curl -sS "$VMM/logs?id=$id&lines=2" | wc -l)"
check_match "ch=stderr: the agent's log" 'agent booted' "$(curl -sS "$VMM/logs?id=$id&ch=stderr&lines=100")"
check_match "ch=stdout: the VMM's notes on the process" 'started: pid [0-9]+' "$(curl -sS "$VMM/logs?id=$id&ch=stdout")"
check "an unknown channel: 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$VMM/logs?id=$id&ch=nope")"
check "an unknown VM: 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$VMM/logs?id=nope")"
last=$(curl -sS "$VMM/logs?id=$id&lines=1" | grep -o '[0-9]*$')
followed=$(curl -sN --max-time 1.5 "$VMM/logs?id=$id&lines=1&follow=true" || true)
check_match "follow streams the new lines as they come" "tick $((last + 2))" "$followed"

# ---- stop, start, shutdown ----
pid1=$(jq .pid "$w/process.json")
rpc StopVm "{\"id\":\"$id\"}" >/dev/null
check "StopVm answers" 200 "$(rpc_status)"
check "StopVm: stopped at once" stopped "$(vm_field "$id" .status)"
check "StopVm: its tree is gone" "" "$(procs_under "$w/agent.lua")"
check "vm-state.json: not started" false "$(jq -r .started "$w/vm-state.json")"
rpc StartVm "{\"id\":\"$id\"}" >/dev/null
if wait_vm "$id" 20 '.boot_progress=="done" and .status=="running"'; then ok "StartVm boots it again"; else not_ok "StartVm boots it again"; fi
check "a new process" true "$([ "$(jq .pid "$w/process.json")" != "$pid1" ] && echo true || echo false)"
check "a second boot separator in the console" 1 "$(grep -c '^===== boot @' "$w/serial.log")"
check "the previous boot rotated to serial.log.1" 1 "$(grep -c '^===== boot @' "$w/serial.log.1")"
rpc StartVm "{\"id\":\"$id\"}" >/dev/null
check "StartVm on a running VM starts no second copy" 1 "$(agents_of "$w")"
rpc ShutdownVm "{\"id\":\"$id\"}" >/dev/null
if wait_vm "$id" 10 '.status=="stopped"'; then ok "ShutdownVm: the guest stops"; else not_ok "ShutdownVm: the guest stops"; fi
check_match "ShutdownVm: the agent stopped the app and exited 0" '"exit_code":0' "$(grep '\[agent\] stopped' "$w/stderr.log")"
check "ShutdownVm: the guest said it powers off" "powering off" "$(vm_field "$id" .shutdown_progress)"
check "GetInfo of an unknown id: found false" false "$(rpc GetInfo '{"id":"nope"}' | jq .found)"

# ---- the control socket ----
check_match "repl vm.list()" "$id" "$("$MOONSTACK" repl "$d/vmm.ctl" -e 'vm.list()' 2>&1)"
check_match "repl vm.info(id)" 'stopped' "$("$MOONSTACK" repl "$d/vmm.ctl" -e "vm.info('$id').status" 2>&1)"
check_match "repl vm.logs(id, n)" 'app: tick' "$("$MOONSTACK" repl "$d/vmm.ctl" -e "vm.logs('$id', 5)" 2>&1)"
check_match "repl help() names vm.start" 'vm.start' "$("$MOONSTACK" repl "$d/vmm.ctl" -e 'help()' 2>&1)"
"$MOONSTACK" repl "$d/vmm.ctl" -e "vm.start('$id')" >/dev/null 2>&1
if wait_vm "$id" 20 '.status=="running"'; then ok "repl vm.start(id)"; else not_ok "repl vm.start(id)"; fi

# ---- bad input: a 400 naming the field, nothing created ----
n_before=$(ls "$d/run" | wc -l)
bad() { # NAME BODY-JQ EXPECTED-REGEX [METHOD]
  local out
  out=$(rpc "${4:-CreateVm}" "$2")
  if [ "$(rpc_status)" = 400 ] && printf '%s' "$out" | jq -r .error | grep -Eq -- "$3"; then ok "400: $1"; else
    not_ok "400: $1" "HTTP $(rpc_status) $out"; fi
}
bad "name characters" "$(create_body 'a/b' proc "$compose")" '^name: .*allowed'
bad "unknown image" "$(create_body n nope "$compose")" '^image: unknown image "nope"'
bad "compose that is not JSON" "$(create_body n proc 'not json')" '^compose_file: not a valid app-compose JSON'
bad "zero memory" "$(create_body n proc "$compose" '| .memory=0')" '^memory: must be above zero'
bad "zero vcpu" "$(create_body n proc "$compose" '| .vcpu=0')" '^vcpu: must be above zero'
bad "port outside the allowed ranges" "$(create_body n proc "$compose" '| .ports=[{protocol:"tcp",host_port:30000,vm_port:80}]')" \
  '^ports\[1\]\.host_port: tcp 30000 is outside the allowed ranges \(tcp 21000-21100\)'
bad "port protocol" "$(create_body n proc "$compose" '| .ports=[{protocol:"sctp",host_port:21001,vm_port:80}]')" '^ports\[1\]\.protocol'
bad "duplicate host port" "$(create_body n proc "$compose" '| .ports=[{protocol:"tcp",host_port:21001,vm_port:80},{protocol:"tcp",host_port:21001,vm_port:81}]')" \
  '^ports\[2\]: duplicate host port mapping'
bad "app_id not hex" "$(create_body n proc "$compose" '| .app_id="xyz"')" '^app_id: must be 20 bytes'
bad "unknown id (StartVm)" '{"id":"no-such-vm"}' '^id: unknown VM "no-such-vm"' StartVm
bad "unknown id (RemoveVm)" '{"id":"no-such-vm"}' '^id: unknown VM' RemoveVm
bad "UpdateVm with a compose that is not JSON" "{\"id\":\"$id\",\"compose_file\":\"{\"}" '^compose_file: ' UpdateVm
# port mappings: validated (carried out: vmm_ports_test.sh)
stopped_ports='| .stopped=true | .ports=[{protocol:"tcp",host_port:21005,vm_port:8080}]'
pid_created=$(rpc CreateVm "$(create_body mapped proc "$compose" "$stopped_ports")" | jq -r .id)
check "a stopped VM with a valid port mapping is created" 200 "$(rpc_status)"
bad "a host port another VM has" "$(create_body n proc "$compose" "$stopped_ports")" '^ports\[1\]\.host_port: tcp 127\.0\.0\.1:21005 is already taken by VM'
python3 -c 'import socket,time,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1",21010)); s.listen(1); time.sleep(30)' &
holder=$!
defer "kill $holder 2>/dev/null"
wait_for 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/21010' || true
bad "a host port in use on the host" "$(create_body n proc "$compose" '| .ports=[{protocol:"tcp",host_port:21010,vm_port:80}]')" \
  '^ports\[1\]\.host_port: tcp 127\.0\.0\.1:21010 is already in use on the host'
kill $holder 2>/dev/null
check "no bad request left a VM directory" $((n_before + 1)) "$(ls "$d/run" | wc -l)"
rpc RemoveVm "{\"id\":\"$pid_created\"}" >/dev/null

# ---- moonstack vm ----
out=$("$MOONSTACK" vm ls --url "$VMM" 2>&1)
check_match "moonstack vm ls" "$id +[0-9a-f]{40} +hello +running" "$out"
check_match "moonstack vm info" "Boot Progress: +done" "$("$MOONSTACK" vm info "$id" --url "$VMM" 2>&1)"
check_match "moonstack vm images (with its version)" '^proc +[0-9]' "$("$MOONSTACK" vm images --url "$VMM" 2>&1 | tail -1)"
check_match "moonstack vm logs -n 2" 'app: tick' "$("$MOONSTACK" vm logs "$id" -n 2 --url "$VMM" 2>&1)"
check_match "moonstack vm logs -f streams" 'app: tick' "$(timeout 1.5 "$MOONSTACK" vm logs "$id" -f -n 1 --url "$VMM" 2>&1)"
check_match "moonstack vm start of an unknown id fails naming it" 'id: unknown VM' "$("$MOONSTACK" vm start nope --url "$VMM" 2>&1)"

# ---- remove ----
cg=$(jq -r '.cgroups[]?' "$w/process.json" 2>/dev/null)
rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
check "RemoveVm answers" 200 "$(rpc_status)"
check "RemoveVm: the work directory is gone" no "$([ -e "$w" ] && echo yes || echo no)"
check "RemoveVm: no process of it remains (/proc walk)" "" "$(procs_under "$w")"
left=""
for c in $cg; do [ -e "$c" ] && left="$left $c"; done
check "RemoveVm: its cgroups are gone" "" "$left"
check "RemoveVm: its sim TEE state is gone" "" "$(ls "$d/run/../sim/cvms" 2>/dev/null | grep "$id" || true)"
check "Status: empty" 0 "$(rpc Status '{}' | jq .total)"
kill -TERM "$VMM_PID"; wait "$VMM_PID"
check "SIGTERM: the VMM exits 0" 0 $?
finish
