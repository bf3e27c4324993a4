#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The shipped example configs start as shipped, from any directory, or say what is missing
# (M7 items 9 and 13). Run in private mount and network namespaces (tmpfs over /run and
# /var/cache, a fresh loopback), so the examples' fixed paths and ports are theirs alone:
#   verifier.lua   starts: /run/moonstack (absent) is created for its control socket (0600);
#                  a control path whose directory cannot be made is refused naming it and the fix
#   kms.lua        (a KMS in a TDX CVM) exits 1 naming the guest agent socket it lacks
#   kms-dev.lua    exits 1 naming the simulated platform it lacks (and `moonstack sim init`);
#   + agent-dev.lua  after `moonstack sim init`, the dev KMS runs and the agent boots the shared
#                  folder's app through it (its key-provider event names the KMS root)
#   vmm.lua        starts; `moonstack vm deploy` boots a bash app with a port mapping; rm
#   vmm-qemu.lua   starts with the qemu backend and answers ListImages
#   gateway-local.lua  starts (the proxy alone); gateway.lua starts beside kms-dev.lua (its root
#                  CA for client certificates, a WireGuard hub, the example routing policy)
source "$(dirname "$0")/lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -mn true 2>/dev/null; then
    not_ok "private namespaces (unshare -mn: run as root)"
    finish
    exit 1
  fi
  MOONSTACK_IN_NS=1 exec unshare -mn bash "$0" "$@"
fi
mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /var/cache && ip link set lo up \
  || { not_ok "namespace set up (tmpfs on /run and /var/cache, lo up)"; finish; exit 1; }
EX=$MOONSTACK_SRC/examples/configs
t=$(tmpdir)
mkdir -p "$t/elsewhere"
cd "$t/elsewhere" || exit 1 # any directory but the tree's

# ---- verifier.lua ----
"$MOONSTACK" verifier -c "$EX/verifier.lua" >"$t/verifier.log" 2>&1 &
vpid=$!
defer "kill -KILL $vpid 2>/dev/null"
if wait_for 20 test -S /run/moonstack/verifier-control.sock; then ok "verifier.lua starts as shipped"; else
  not_ok "verifier.lua starts as shipped" "$(cat "$t/verifier.log")"; fi
check "its control socket directory was created (0700)" 700 "$(stat -c %a /run/moonstack 2>&1)"
check "its control socket is 0600" 600 "$(stat -c %a /run/moonstack/verifier-control.sock 2>&1)"
check "the REPL answers" '"running"' "$("$MOONSTACK" repl /run/moonstack/verifier-control.sock -e 'daemon:status().state' 2>&1)"
check_match "GET /health" '"status":"ok"' "$(curl -sS --max-time 10 http://127.0.0.1:8080/health)"
kill -TERM "$vpid"; wait "$vpid"
check "verifier.lua: SIGTERM exits 0" 0 $?

# a control socket whose directory cannot be made: refused, the path and the fix named
touch "$t/afile"
sed "s#control = .*#control = '$t/afile/run/verifier.sock',#" "$EX/verifier.lua" >"$t/verifier-bad.lua"
timeout 20 "$MOONSTACK" verifier -c "$t/verifier-bad.lua" >"$t/verifier-bad.log" 2>&1
check "an impossible control directory: exit 1" 1 $?
check_match "names the directory, the socket and the fix" \
  "cannot create $t/afile/run, the directory of the control socket $t/afile/run/verifier.sock .*install -d -m 0700 $t/afile/run" \
  "$(cat "$t/verifier-bad.log")"
sed "s#control = .*#control = '$t/afile/verifier.sock',#" "$EX/verifier.lua" >"$t/verifier-bad2.lua"
timeout 20 "$MOONSTACK" verifier -c "$t/verifier-bad2.lua" >"$t/verifier-bad2.log" 2>&1
check "a control socket that cannot be bound: exit 1" 1 $?
check_match "names the socket" "ENOTDIR: cannot bind the control socket $t/afile/verifier.sock" \
  "$(cat "$t/verifier-bad2.log")"

# ---- kms.lua: a KMS in a TDX CVM, here without its guest agent ----
timeout 20 "$MOONSTACK" kms -c "$EX/kms.lua" >"$t/kms.log" 2>&1
check "kms.lua without a guest agent: exit 1" 1 $?
check_match "kms.lua names the guest agent socket it lacks" 'guest agent at /var/run/dstack.sock' "$(cat "$t/kms.log")"
check "kms.lua wrote no key" no "$([ -e /etc/kms/certs ] && echo yes || echo no)"

# ---- kms-dev.lua + agent-dev.lua ----
dev=$t/dev
export MOONSTACK_DEV_DIR=$dev
timeout 20 "$MOONSTACK" kms -c "$EX/kms-dev.lua" >"$t/kms-dev0.log" 2>&1
check "kms-dev.lua without its platform: exit 1" 1 $?
check_match "kms-dev.lua names the platform and the fix" \
  "no simulated platform in $dev/sim .*moonstack sim init $dev/sim" "$(cat "$t/kms-dev0.log")"
"$MOONSTACK" sim init "$dev/sim" >"$t/sim.log" 2>&1
check "moonstack sim init" 0 $?
"$MOONSTACK" kms -c "$EX/kms-dev.lua" >"$t/kms-dev.log" 2>&1 &
kpid=$!
defer "kill -KILL $kpid 2>/dev/null"
if wait_for 20 test -S "$dev/kms.sock"; then ok "kms-dev.lua starts"; else
  not_ok "kms-dev.lua starts" "$(cat "$t/kms-dev.log")"; fi
check "kms-dev.lua listens where agent-dev's sys-config says" 8000 \
  "$("$MOONSTACK" repl "$dev/kms.sock" -e 'kms:port()' 2>&1)"
"$MOONSTACK" agent -c "$EX/agent-dev.lua" >"$t/agent-dev.log" 2>&1 &
apid=$!
defer "kill -KILL $apid 2>/dev/null"
if wait_for 30 grep -q 'dev-app started with keys from the dev KMS' "$dev/agent/logs/app.log"; then
  ok "agent-dev.lua boots its app through the dev KMS"
else
  not_ok "agent-dev.lua boots its app through the dev KMS" "$(tail -20 "$t/agent-dev.log")"
fi
root_spki=$(openssl x509 -in "$dev/kms-keys/root-ca.crt" -pubkey -noout | openssl pkey -pubin -outform DER \
  | od -An -tx1 | tr -d ' \n')
check "its key-provider event names the dev KMS root" "{\"name\":\"kms\",\"id\":\"$root_spki\"}" \
  "$(jq -r 'select(.event=="key-provider") | .payload' "$dev/sim/cvms/dev-app.runtime/runtime_events.log" \
    2>/dev/null | base64 -d 2>/dev/null)"
check "its guest API answers" dev-app \
  "$(curl -sS --max-time 10 --unix-socket "$dev/dstack.sock" http://localhost/Info | jq -r .app_name)"
check_match "the dev KMS logged the decision" 'GetAppKey decision' "$(cat "$t/kms-dev.log")"
kill -TERM "$apid"; wait "$apid"
check "agent-dev.lua: SIGTERM exits 0" 0 $?

# ---- vmm.lua: the process backend, a bash app deployed with moonstack vm ----
"$MOONSTACK" image build --kind process --output "$dev/vmm/images/moonstack" >/dev/null
"$MOONSTACK" vmm -c "$EX/vmm.lua" >"$t/vmm.log" 2>&1 &
vpid=$!
defer "kill -KILL $vpid 2>/dev/null"
wait_for 20 test -S "$dev/vmm.sock" || not_ok "vmm.lua starts" "$(cat "$t/vmm.log")"
printf '%s' '{"manifest_version":2,"name":"hello","runner":"bash","bash_script":"echo hello; exec sleep 1000"}' \
  >"$t/hello.json"
out=$("$MOONSTACK" vm --url "unix:$dev/vmm.sock" deploy --name hello --image moonstack \
  --compose "$t/hello.json" --memory 256M --port tcp:127.0.0.1:20080:8080 --timeout 30 2>&1)
check_match "vmm.lua: moonstack vm deploy boots an app (port mapped)" 'done' "$out"
check_match "vmm.lua: moonstack vm ls shows it running" 'hello +running' \
  "$("$MOONSTACK" vm --url "unix:$dev/vmm.sock" ls 2>&1)"
id=$("$MOONSTACK" vm --url "unix:$dev/vmm.sock" ls --json 2>/dev/null | jq -r '.[0].id // .vms[0].id')
"$MOONSTACK" vm --url "unix:$dev/vmm.sock" rm "$id" >/dev/null 2>&1
check "vmm.lua: moonstack vm rm" "" "$(ls -A "$dev/vmm/vm")"
kill -TERM "$vpid"; wait "$vpid"
check "vmm.lua: SIGTERM exits 0" 0 $?

# ---- vmm-qemu.lua: the qemu backend starts and answers (booting guests: vmm_qemu_test) ----
"$MOONSTACK" vmm -c "$EX/vmm-qemu.lua" >"$t/vmm-qemu.log" 2>&1 &
qpid=$!
defer "kill -KILL $qpid 2>/dev/null"
wait_for 20 test -S "$dev/vmm-qemu.sock" || not_ok "vmm-qemu.lua starts" "$(cat "$t/vmm-qemu.log")"
check "vmm-qemu.lua: the qemu backend answers ListImages" 0 \
  "$(curl -sS --unix-socket "$dev/vmm-qemu.sock" -H 'content-type: application/json' -d '{}' \
    'http://localhost/prpc/ListImages?json' | jq '.images | length')"
kill -TERM "$qpid"; wait "$qpid"
check "vmm-qemu.lua: SIGTERM exits 0" 0 $?
# ---- gateway-local.lua: the proxy alone (no WireGuard, no RPC) ----
"$MOONSTACK" gateway -c "$EX/gateway-local.lua" >"$t/gateway-local.log" 2>&1 &
glpid=$!
defer "kill -KILL $glpid 2>/dev/null"
if wait_for 20 test -S "$dev/gateway-local.sock"; then ok "gateway-local.lua starts as shipped"; else
  not_ok "gateway-local.lua starts as shipped" "$(cat "$t/gateway-local.log")"; fi
check "gateway-local.lua: localhost backends on, no WireGuard, no RPC" "true nil nil" \
  "$("$MOONSTACK" repl "$dev/gateway-local.sock" -e 'tostring(gw.routes().insecure_localhost) .. " " .. tostring(gateway:status().wg) .. " " .. tostring(gateway:status().rpc)' 2>&1 | tr -d '"')"
kill -TERM "$glpid"; wait "$glpid"
check "gateway-local.lua: SIGTERM exits 0" 0 $?

# ---- gateway.lua: beside kms-dev.lua (its root CA), WireGuard hub, routing policy ----
umask 077; printf 'example-admin-token\n' >"$dev/gateway-admin.token"; umask 022
"$MOONSTACK" gateway -c "$EX/gateway.lua" >"$t/gateway.log" 2>&1 &
gpid=$!
defer "kill -KILL $gpid 2>/dev/null"
if wait_for 30 grep -q 'gateway ready' "$t/gateway.log"; then ok "gateway.lua starts (beside kms-dev.lua)"; else
  not_ok "gateway.lua starts (beside kms-dev.lua)" "$(tail -20 "$t/gateway.log")"; fi
check "gateway.lua: Info on its rpc listener" app.localhost \
  "$(curl -sk --max-time 10 https://127.0.0.1:8010/prpc/Info?json | jq -r .base_domain)"
check "gateway.lua: admin GetMeta with the token" 0 \
  "$(curl -s --max-time 10 -H 'X-Admin-Token: example-admin-token' http://127.0.0.1:8011/prpc/GetMeta?json | jq .registered)"
check "gateway.lua: its WireGuard key was made (0600) and the routing policy loaded" "600 route" \
  "$(stat -c %a "$dev/gateway-wg.key") $("$MOONSTACK" repl "$dev/gateway.sock" -e 'gw.policy().name' 2>&1 | tr -d '"')"
kill -TERM "$gpid"; wait "$gpid"
check "gateway.lua: SIGTERM exits 0" 0 $?
kill -TERM "$kpid"; wait "$kpid"
check "kms-dev.lua: SIGTERM exits 0" 0 $?
finish
