#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M11 "REPL for debugging CVMs": `moonstack repl` under tmux against a real dev-stack layout
# (MOONSTACK_DEV_DIR with vmm.ctl, kms.ctl, gateway.ctl): a KMS (policy auth on the simulated
# platform), a gateway (proxy to a local TCP app holding one connection), a VMM (process
# backend) running a kms_enabled bash app that got its keys from the KMS. Covers: no argument
# finds the VMM (and a missing dev dir is named), help(), vm.list() as a pretty table,
# vm.info, vm.logs, vm.guest (Info over the guest channel), vm.quote (a fresh quote verified in
# place: TCB status, nonce-bound report_data, event-log replay), vm.qmp's error on the process
# backend, Tab completion (vm. Tab Tab, kms.dec Tab), history (Up), Ctrl-C interrupting
# `while true do end` and clearing an idle line with the session still usable, kms.decisions
# (newest first, with the policy version and sha256), policy.test (no side effect: the ring
# does not grow), policy.reload, gw.routes, gw.conns(app), and --json results of the helpers.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/proxy_lib.sh"

command -v tmux >/dev/null || { not_ok "tmux is installed"; finish; exit 1; }
d=$(tmpdir)
dev=$d/dev
mkdir -p "$d/sim" "$d/images" "$d/run" "$dev"
vmm_image "$d/images" proc || { finish; exit 1; }
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 \
  || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }

# ---- the daemons, their control sockets in the dev dir ----
cat >"$d/policy.lua" <<'EOF'
return { name = 'repl-test', version = '1',
  on_auth = function(b)
    if b.appId == string.rep('ee', 20) then return { allow = false, reason = 'app ee is banned' } end
    return { allow = true, reason = 'repl test: allowed', gateway_app_id = 'any' }
  end }
EOF
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost', control = '$dev/kms.ctl',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'policy', path = '$d/policy.lua', watch = false },
  image = { verify = false },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log" || { not_ok "KMS started" "$(cat "$d/kms.log")"; finish; exit 1; }
ok "KMS started"

gw_cert "$d" gw.test
"$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/tcp_hold.lua" "$d/app.port" >"$d/app.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 test -s "$d/app.port" || { not_ok "tcp app started" "$(cat "$d/app.log")"; finish; exit 1; }
gport=$(free_port)
gw_start "$d" gw.test "$gport" || { not_ok "gateway started" "$(cat "$d/gateway.log")"; finish; exit 1; }
ln -s "$d/gw.sock" "$dev/gateway.ctl"
ok "gateway started"
mkfifo "$d/hold"
"$MOONSTACK_TOOLS/hold_conns" 127.0.0.1 "$gport" 1 --tls "localhost-$(cat "$d/app.port").gw.test" \
  --timeout-ms 120000 <"$d/hold" >"$d/hold.out" 2>&1 &
defer "kill $! 2>/dev/null"
exec 5>"$d/hold" # the connection is held until this closes
wait_for 20 grep -q '^ready' "$d/hold.out" || not_ok "a connection held through the gateway" "$(cat "$d/hold.out")"

cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  control = '$dev/vmm.ctl',
  kms_urls = { 'https://localhost:$KMS_PORT' }, kms_ca = '$d/kms-keys/root-ca.crt',
  process = { sim_dir = '$d/sim' },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
defer "for v in \$(VMM=unix:$d/vmm.sock rpc Status '{}' 2>/dev/null | jq -r '.vms[]?.id'); do VMM=unix:$d/vmm.sock rpc RemoveVm \"{\\\"id\\\":\\\"\$v\\\"}\" >/dev/null 2>&1; done"
export VMM=unix:$d/vmm.sock
compose=$(jq -cn '{manifest_version:2, name:"repl-app", runner:"bash", kms_enabled:true,
  bash_script:"echo repl-app-started; exec sleep 1000"}')
id=$(rpc CreateVm "$(create_body repl-app proc "$compose")" | jq -r .id)
check_match "CreateVm" '^[0-9a-f-]{36}$' "$id"
wait_vm "$id" 60 '.boot_progress=="done"' || not_ok "the VM booted" "$(tail -20 "$d/run/$id/stderr.log" 2>&1)"
wait_for 20 grep -q 'repl-app-started' "$d/run/$id/serial.log"
app_id=$(vm_field "$id" .app_id)

export MOONSTACK_DEV_DIR=$dev
# ---- a missing dev stack is named ----
out=$(MOONSTACK_DEV_DIR=$d/nowhere timeout 20 "$MOONSTACK" repl -e 1 2>&1)
check "no dev stack: exit code 2" 2 $?
check_match "no dev stack: the dir looked at and how to start it" \
  "no vmm control socket in the dev stack directory $d/nowhere .*moonstack dev up" "$out"

# ---- tmux on a private server ----
tmx=(tmux -L "moonstack-repl-tmux-$$" -f /dev/null)
defer "${tmx[*]} kill-server 2>/dev/null"
# A session that lives for the whole test keeps the server up: killing the
# only session makes the server exit, and a new-session racing that exit fails
# with "server exited unexpectedly" (seen once under CI load).
"${tmx[@]}" new-session -d -s keep "sleep 3600"
pane() { "${tmx[@]}" capture-pane -p -J -S -200 -t repl; }
# pane_has RE: the pane shows a line matching RE
pane_has() { pane | grep -Eq -- "$1"; }
keys() { "${tmx[@]}" send-keys -t repl "$@"; }
text() { "${tmx[@]}" send-keys -t repl -l "$1"; }
# expect NAME RE [SECONDS]: wait (bounded) until the pane matches RE
expect() {
  if wait_for "${3:-15}" pane_has "$2"; then ok "$1"; else not_ok "$1" "$(pane | grep -v "^$" | tail -25)"; fi
}
# session LABEL ARGS...: a new repl session under tmux (the previous one ended)
session() {
  "${tmx[@]}" kill-session -t repl 2>/dev/null
  "${tmx[@]}" new-session -d -s repl -x 200 -y 50 \
    "MOONSTACK_HISTORY='$d/history' MOONSTACK_DEV_DIR='$dev' '$MOONSTACK' repl $*; echo \"EXIT=\$?\"; sleep 60"
}
clear_pane() { keys C-l; "${tmx[@]}" clear-history -t repl; }
# leave NAME: Ctrl-D until the session reports its exit (bounded). A Ctrl-D that arrives while
# an evaluation still runs (an expect can match an earlier, equal line on a slow machine) is
# not an end of input at an empty prompt and is dropped: the next one leaves.
leave() {
  local i
  for i in 1 2 3 4 5; do
    keys C-d
    if wait_for 3 pane_has '^EXIT='; then break; fi
  done
  expect "$1" '^EXIT=0$' 1
}

# ---- the VMM (no argument) ----
session
expect "no argument: the dev stack's VMM (prompt vmm>)" '^vmm> *$'
text 'help()'; keys Enter
expect "help() lists the VMM helpers" 'vm\.quote'
clear_pane
text 'vm.'; keys Tab Tab
expect "Tab Tab after vm. lists its functions" 'vm\.info +.*vm\.list +.*vm\.logs'
keys C-u; text 'vm.li'; keys Tab
expect "Tab completes vm.li to vm.list" '^vmm> vm\.list *$'
text '()'; keys Enter
expect "vm.list(): a pretty table (header)" '^id +name +status'
expect "vm.list(): the VM's row and the count" "^$id +repl-app +running .*"
expect "vm.list(): the row count" '^\(1 row\)$'
clear_pane
text "id = '$id'"; keys Enter
text 'vm.info(id).status'; keys Enter
expect "vm.info(id)" '^"running"$'
text 'vm.logs(id, 50)'; keys Enter
expect "vm.logs(id, n)" 'repl-app-started'
clear_pane
text 'vm.guest(id, "Info").app_id'; keys Enter
expect "vm.guest(id, 'Info') over the guest channel" "^\"$app_id\"$"
text 'vm.qmp(id, "query-status")'; keys Enter
expect "vm.qmp on the process backend: a clear error" 'ENOTSUP: .*process backend, which has no QMP'
clear_pane
text 'q = vm.quote(id)'; keys Enter
text 'q.ok, q.status, q.nonce_bound, q.event_log.verified, q.simulated, #q.mrtd, q.app_id'; keys Enter
expect "vm.quote(id): verified in place, TCB status, nonce-bound, event log replayed" \
  '^true$' 30
out=$(pane | grep -A7 'q.ok, q.status' | tail -7 | tr '\n' ' ')
check "vm.quote(id): ok, UpToDate, nonce_bound, replayed, simulated, mrtd, app_id" \
  "true \"UpToDate\" true true true 96 \"$app_id\" " "$out"
clear_pane
# history: Up twice recalls the vm.quote(id) line before the summary line
keys Up Up
expect "history: Up recalls an earlier line" '^vmm> q = vm\.quote\(id\) *$'
keys C-u
# Ctrl-C: a runaway evaluation is interrupted, the session goes on
text 'while true do end'; keys Enter
sleep 0.5
keys C-c
expect "Ctrl-C interrupts while true do end" 'EINTR: evaluation interrupted'
text '6*7'; keys Enter
expect "the session is usable after the interrupt" '^42$'
# Ctrl-C at an idle prompt clears the line and keeps the session
text 'this line goes'; keys C-c
expect "Ctrl-C at the prompt clears the line" '^vmm> *$'
text '1+2'; keys Enter
expect "... and the session goes on" '^3$'
leave "Ctrl-D leaves (exit 0)"

# ---- the KMS ----
session kms
expect "repl kms: the dev stack's KMS" '^kms> *$'
text 'kms.dec'; keys Tab
expect "Tab completes kms.dec (a method of the service view)" '^kms> kms\.decisions *$'
text '(5)'; keys Enter
expect "kms.decisions(5): a pretty table" '^time +kind +app_id +instance_id +allowed +reason'
expect "kms.decisions(5): the app's decision with the policy name, version and seq" \
  "app +$app_id +[0-9a-f]{40} +true +repl test: allowed +policy .* repl-test .* 1 +[0-9]+ *\$"
clear_pane
text 'policy.'; keys Tab Tab
expect "Tab Tab after policy. lists its functions" 'policy\.reload +policy\.status +policy\.test'
keys C-u
text "n0 = #kms.decisions(100)"; keys Enter
text "policy.test({ appId = ('ee'):rep(20) })"; keys Enter
expect "policy.test: the decision and reason" 'reason = "app ee is banned"'
text "policy.test({ appId = ('ab'):rep(20) }).allow"; keys Enter
expect "policy.test: an allowed input" '^true$'
text "#kms.decisions(100) - n0"; keys Enter
expect "policy.test has no side effect (the ring did not grow)" '^0$'
sed -i "s/version = '1'/version = '2'/" "$d/policy.lua"
clear_pane
text 'policy.reload().version'; keys Enter
expect "policy.reload() loads version 2" '^"2"$'
text "policy.test({ appId = ('ab'):rep(20) }).policy_version"; keys Enter
expect "policy.test runs the reloaded policy" '^"2"$'
leave "repl kms: exit 0"

# ---- the gateway ----
session gateway
expect "repl gateway: the dev stack's gateway" '^gateway> *$'
text 'gw.routes().version'; keys Enter
expect "gw.routes(): the published snapshot" '^[0-9]+$'
text 'gw.conns()'; keys Enter
expect "gw.conns(): live counts per app, as a table" '^app_id +active *$'
clear_pane
text 'c = gw.conns() a = c[1].app_id'; keys Enter
text 'c[1].active, #gw.conns(a), #gw.conns("no-such-app")'; keys Enter
expect "gw.conns(app): one app's counts (1 active)" '^1$'
# the three values print one per line; wait until the last one is there
# (the line typed may be echoed ahead of its prompt when the previous one is still running: the
# three lines after the last echo of it)
conns_out() {
  pane | awk '/c\[1\]\.active, #gw\.conns/ { n = 0; out = ""; on = 1; next }
    on && n < 3 { out = out $0 " "; n++ } END { printf "%s", out }'
}
conns_done() { [[ "$(conns_out)" == *" 0 " ]]; }
wait_for 10 conns_done
check "gw.conns(app) filters by app id" "1 1 0 " "$(conns_out)"
leave "repl gateway: exit 0"
"${tmx[@]}" kill-server 2>/dev/null

check_match "history saved across sessions" 'vm\.quote\(id\)' "$(cat "$d/history" 2>/dev/null)"

# ---- --json for tools ----
j=$(timeout 60 "$MOONSTACK" repl --json -e "vm.quote('$id')" 2>&1)
check "--json vm.quote: ok and status" "true UpToDate true" \
  "$(jq -r '[.results[0].ok, .results[0].status, .results[0].nonce_bound] | join(" ")' <<<"$j" 2>&1)"
j=$(timeout 20 "$MOONSTACK" repl --json -e 'vm.list()' 2>&1)
check "--json vm.list" "$id" "$(jq -r '.results[0][0].id' <<<"$j" 2>&1)"
j=$(timeout 20 "$MOONSTACK" repl kms --json -e 'kms.decisions(1)' 2>&1)
check "--json kms.decisions: newest first, with the policy's sha256" "app true 64" \
  "$(jq -r '.results[0][0] | "\(.kind) \(.allowed) \(.policy_sha256 | length)"' <<<"$j" 2>&1)"
j=$(timeout 20 "$MOONSTACK" repl gateway --json -e 'gw.conns()' 2>&1)
check "--json gw.conns" 1 "$(jq -r '.results[0][0].active' <<<"$j" 2>&1)"
j=$(timeout 20 "$MOONSTACK" repl --json -e "vm.guest('$id', 'SysInfo')" 2>&1)
check_match "--json vm.guest SysInfo" '^[1-9]' "$(jq -r '.results[0].num_cpus' <<<"$j" 2>&1)"

rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
finish
