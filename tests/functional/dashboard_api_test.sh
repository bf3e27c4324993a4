#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M11: the dashboard's server side against real daemons — a KMS (policy auth, admin listener),
# a gateway (proxy, routing policy, admin listener) and a VMM whose `dashboard` listener is the
# hub reading the other two parts. Checked over real HTTP and a real websocket client (Node's):
#   - the one-time login token opens a session once, then is refused; the token and the cookie
#     never reach a log;
#   - no credential: 401, and the websocket upgrade is refused; a cookie POST without
#     X-Moonstack-CSRF is refused (403), with it accepted; a session websocket from another
#     origin is refused;
#   - the hub's websocket: a snapshot with the vmm, kms and gateway parts, then events as a
#     kms_enabled VM is created (pRPC on the dashboard listener), boots, is stopped and started
#     again and removed; its log lines after subscribe_logs; the KMS's auth decision for it;
#   - policy reload through the hub: a broken KMS policy is refused and its error shown (the
#     old version keeps deciding), a good one loads; the gateway's routing policy reloads;
#   - POST /dashboard/api/verify: the verdict on a real TDX quote (vectors), and on garbage.
#   - POST /dashboard/api/lint: the security lint's findings (field, line, severity) for a
#     docker-compose and an app-compose; 400 naming the line for YAML it does not understand.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/proxy_lib.sh"

V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
if ! node --experimental-websocket -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
  not_ok "node with --experimental-websocket (Node >= 20.10)"; finish; exit 1
fi
[ -f "$V/dcap-qvl/tdx_quote" ] || { not_ok "test vectors at $V (set MOONSTACK_VECTORS)"; finish; exit 1; }
WSJS=$MOONSTACK_SRC/tests/functional/fixtures/dashboard_ws.js

d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 \
  || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }
TOKEN=dash-admin-$(openssl rand -hex 12)
printf '%s\n' "$TOKEN" >"$d/admin.token"
LOGIN=$(openssl rand -hex 32)
printf '%s\n' "$LOGIN" >"$d/login.token"
chmod 600 "$d/admin.token" "$d/login.token"

# ---- the KMS: policy auth (no file watch: reloads come from the dashboard), admin listener ----
kms_policy() { # VERSION [BROKEN]
  if [ -n "${2:-}" ]; then
    printf 'return { name = "dash-kms", version = "%s", on_auth = function( end }\n' "$1" >"$d/kms-policy.lua"
  else
    cat >"$d/kms-policy.lua" <<EOF
return { name = 'dash-kms', version = '$1',
  on_auth = function(b) return { allow = true, reason = 'dashboard test v$1', gateway_app_id = 'any' } end }
EOF
  fi
}
kms_policy 1
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'policy', path = '$d/kms-policy.lua', watch = false, workers = 1 },
  image = { verify = false },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
KADMIN=$(ready_field "$d/kms.log" 'admin listener ready' address)
check_match "KMS started with its admin listener" '^127\.0\.0\.1:[0-9]+$' "$KADMIN"

# ---- the gateway: data path, routing policy, admin listener ----
gw_cert "$d" dash.test
cat >"$d/route.lua" <<'EOF'
return { name = 'dash-route', version = 'r1', on_route = function(m) return { allow = true } end }
EOF
cat >"$d/gateway.lua" <<EOF
return {
  proxy = { listen = { host = '127.0.0.1', port = $(free_port) }, base_domain = 'dash.test',
    certs = { { cert = '$d/cert.pem', key = '$d/key.pem' } }, workers = 1 },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
  routing_policy = '$d/route.lua',
}
EOF
daemon_start gateway "$d/gateway.lua" "$d/gateway.log" 'gateway ready'
GADMIN=$(ready_field "$d/gateway.log" 'gateway ready' admin)
check_match "gateway started with its admin listener" '^127\.0\.0\.1:[0-9]+$' "$GADMIN"

# ---- the VMM with its dashboard, the hub ----
cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  kms_urls = { 'https://localhost:$KMS_PORT' }, kms_ca = '$d/kms-keys/root-ca.crt',
  process = { sim_dir = '$d/sim', network = 'host' },
  auth = { enabled = true, token_file = '$d/admin.token' },
  stop_vms_on_exit = true,
  dashboard = {
    listen = { host = '127.0.0.1', port = 0 },
    login_token_file = '$d/login.token',
    kms = { url = 'http://$KADMIN', token_file = '$d/admin.token' },
    gateway = { url = 'http://$GADMIN', token_file = '$d/admin.token' },
    verify = { collateral = '$V/dcap-qvl/tdx_quote_collateral.json' },
    poll_ms = 200,
  },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(tail -20 "$d/vmm.log")"; finish; exit 1; }
DASH=$(ready_field "$d/vmm.log" 'VMM ready' dashboard)
check_match "VMM started with its dashboard listener" '^127\.0\.0\.1:[0-9]+$' "$DASH"
U=http://$DASH
defer "for v in \$(curl -s -H 'Authorization: Bearer $TOKEN' -H 'content-type: application/json' -d '{}' $U/prpc/Status?json | jq -r '.vms[]?.id'); do curl -s -H 'Authorization: Bearer $TOKEN' -H 'content-type: application/json' -d \"{\\\"id\\\":\\\"\$v\\\"}\" $U/prpc/RemoveVm?json >/dev/null; done"

# tcurl ARGS...: curl with the admin token; ccurl ARGS...: curl with the session cookie
tcurl() { curl -s --max-time 30 -H "Authorization: Bearer $TOKEN" "$@"; }
ccurl() { curl -s --max-time 30 -H "Cookie: moonstack_session=$SESSION" "$@"; }
status_of() { curl -s --max-time 30 -o /dev/null -w '%{http_code}' "$@"; }

# ---- auth ----
check "no credential: 401 on the feed" 401 "$(status_of "$U/dashboard/feed?since=0")"
check "a wrong token: 401" 401 "$(status_of -H 'Authorization: Bearer nope' "$U/dashboard/feed?since=0")"
check "no credential: 401 on the pRPC methods" 401 "$(status_of -d '{}' "$U/prpc/Status?json")"
check "the UI path redirects to /dashboard/" 301 "$(status_of "$U/dashboard")"
curl -s -D "$d/login1.h" -o /dev/null "$U/dashboard/login?once=wrong-token"
check_match "a wrong login token: 403" '^HTTP/1.1 403' "$(head -1 "$d/login1.h")"
curl -s -D "$d/login2.h" -o /dev/null "$U/dashboard/login?once=$LOGIN"
check_match "the login token: 303 to /dashboard/" '^HTTP/1.1 303' "$(head -1 "$d/login2.h")"
check_match "... Location /dashboard/" '^[Ll]ocation: /dashboard/' "$(grep -i '^location' "$d/login2.h" | tr -d '\r')"
cookie=$(grep -i '^set-cookie:' "$d/login2.h" | tr -d '\r')
check_match "... a session cookie, HttpOnly, SameSite=Strict, Path=/" \
  'moonstack_session=[0-9a-f]{64};.*HttpOnly.*SameSite=Strict.*Path=/' "$cookie"
SESSION=$(printf '%s' "$cookie" | sed -n 's/.*moonstack_session=\([0-9a-f]*\).*/\1/p')
check "the login token file is gone" gone "$([ -e "$d/login.token" ] && echo present || echo gone)"
check_match "the same login token again: 403" '^HTTP/1.1 403' \
  "$(curl -s -D - -o /dev/null "$U/dashboard/login?once=$LOGIN" | head -1)"
check "the session reads the feed" vmm "$(ccurl "$U/dashboard/feed?since=0" | jq -r .part)"
check "the session's info lists the parts" 'vmm kms gateway' "$(ccurl "$U/dashboard/info" | jq -r '.parts | join(" ")')"
check "a cookie POST without X-Moonstack-CSRF: 403" 403 \
  "$(status_of -H "Cookie: moonstack_session=$SESSION" -H 'content-type: application/json' -d '{}' "$U/prpc/Status?json")"
check "... and on a part's action" 403 \
  "$(status_of -H "Cookie: moonstack_session=$SESSION" -d '{}' "$U/dashboard/api/gateway/policy_reload")"
check "a cookie POST with X-Moonstack-CSRF: 1 is served" 200 \
  "$(status_of -H "Cookie: moonstack_session=$SESSION" -H 'X-Moonstack-CSRF: 1' -H 'content-type: application/json' -d '{}' "$U/prpc/Status?json")"
check "the token POSTs without the CSRF header" 200 \
  "$(status_of -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{}' "$U/prpc/Status?json")"

# ws NAME [HEADER=VALUE...]: a websocket client in the background; messages in $d/NAME.out,
# commands to send appended to $d/NAME.cmd
ws() {
  local name=$1
  shift
  : >"$d/$name.out"
  : >"$d/$name.cmd"
  node --experimental-websocket --no-warnings "$WSJS" "ws://$DASH/dashboard/ws" "$d/$name.out" "$d/$name.cmd" "$@" \
    >"$d/$name.node.log" 2>&1 &
  defer "kill $! 2>/dev/null"
}
# msgs NAME JQ-FILTER: the messages of NAME that match (compact JSON, one per line)
msgs() { jq -c "select($2)" "$d/$1.out" 2>/dev/null; }
has() { [ -n "$(msgs "$1" "$2" | head -1)" ]; }

ws anon
ws badtoken "Authorization=Bearer nope"
ws evil "Cookie=moonstack_session=$SESSION" "Origin=http://evil.example"
wait_eval 10 'has anon ".type==\"_close\"" && has badtoken ".type==\"_close\"" && has evil ".type==\"_close\""'
check "a websocket without credentials is refused (no open)" "" "$(msgs anon '.type=="_open" or .type=="snapshot"')"
check "... with a wrong token too" "" "$(msgs badtoken '.type=="_open" or .type=="snapshot"')"
check "... and a session's from another origin" "" "$(msgs evil '.type=="_open" or .type=="snapshot"')"

ws hub "Authorization=Bearer $TOKEN"
ws browser "Cookie=moonstack_session=$SESSION" "Origin=http://$DASH"
wait_eval 10 'has hub ".type==\"snapshot\"" && has browser ".type==\"snapshot\""'
first=$(msgs hub '.type!="_open"' | head -1)
check "the hub's first message: a snapshot with the vmm, kms and gateway parts" "gateway kms vmm" \
  "$(printf '%s' "$first" | jq -r '.parts | keys | join(" ")')"
check "... with a seq per part" "gateway kms vmm" "$(printf '%s' "$first" | jq -r '.seq | keys | join(" ")')"
check "... the vmm part: no VM yet, the image" "0 proc" "$(printf '%s' "$first" | jq -r '"\(.parts.vmm.vms | length) \(.parts.vmm.images | join(","))"')"
check "... the kms part: the policy, version 1, its sha256" "dash-kms 1 $(sha256sum "$d/kms-policy.lua" | cut -d' ' -f1)" \
  "$(printf '%s' "$first" | jq -r '.parts.kms.policies[0] | "\(.name) \(.version) \(.sha256)"')"
check "... the gateway part: instances, connection counts, the routing policy" "0 0 dash-route r1" \
  "$(printf '%s' "$first" | jq -r '.parts.gateway | "\(.instances | length) \(.conns.total) \(.policies[0].name) \(.policies[0].version)"')"
check "the browser session's websocket gets the snapshot too" "gateway kms vmm" \
  "$(msgs browser '.type=="snapshot"' | head -1 | jq -r '.parts | keys | join(" ")')"

# ---- a kms_enabled VM through the dashboard's pRPC ----
jq -cn '{manifest_version:2, name:"dash-app", runner:"bash", kms_enabled:true,
  bash_script:"i=0; while true; do i=$((i+1)); echo \"dash-line-$i\"; sleep 0.3; done"}' >"$d/app.json"
body=$(jq -cn --rawfile c "$d/app.json" '{name:"dash-app", image:"proc", compose_file:$c, vcpu:1, memory:256}')
id=$(tcurl -H 'content-type: application/json' -d "$body" "$U/prpc/CreateVm?json" | jq -r .id)
check_match "CreateVm through the dashboard listener" '^[0-9a-f-]{36}$' "$id"
if wait_eval 60 "has hub '.type==\"event\" and .part==\"vmm\" and .topic==\"vm.status\" and .data.id==\"$id\" and .data.boot_progress==\"done\"'"; then
  ok "vm.status events follow the boot to done"
else
  not_ok "vm.status events follow the boot to done" "$(msgs hub '.part=="vmm"' | tail -5) $(tail -5 "$d/run/$id/stderr.log" 2>/dev/null)"
fi
check "... starting from running" running \
  "$(msgs hub ".type==\"event\" and .topic==\"vm.status\" and .data.id==\"$id\"" | head -1 | jq -r .data.status)"
check "the guest's reports come as vm.event" yes \
  "$(has hub ".type==\"event\" and .topic==\"vm.event\" and .data.id==\"$id\"" && echo yes || echo no)"
if wait_eval 20 "has hub '.type==\"event\" and .part==\"kms\" and .topic==\"kms.decision\"'"; then
  dec=$(msgs hub '.type=="event" and .part=="kms" and .topic=="kms.decision"' | head -1)
  check "the KMS's auth decision for the CVM, with its reason and policy version" "app true dashboard test v1 1" \
    "$(printf '%s' "$dec" | jq -r '.data | "\(.kind) \(.allowed) \(.reason) \(.policy_version)"')"
else
  not_ok "the KMS's auth decision reaches the hub's websocket" "$(tail -5 "$d/kms.log")"
fi
check "the KMS feed's snapshot lists it (newest first)" "true 1" \
  "$(tcurl "http://$KADMIN/dashboard/feed?since=0" | jq -r '.snapshot.decisions[0] | "\(.allowed) \(.policy_version)"')"

printf '{"type":"subscribe_logs","id":"%s"}\n' "$id" >>"$d/hub.cmd"
if wait_eval 15 "msgs hub '.type==\"log\" and .id==\"$id\"' | jq -r '.lines[]' | grep -q 'dash-line-'"; then
  ok "subscribe_logs: the VM's last lines"
else
  not_ok "subscribe_logs: the VM's last lines" "$(msgs hub '.type=="log"' | tail -3)"
fi
n1=$(msgs hub ".type==\"log\" and .id==\"$id\"" | wc -l)
if wait_eval 10 "[ \$(msgs hub '.type==\"log\" and .id==\"$id\"' | wc -l) -gt $((n1 + 1)) ]"; then
  ok "... then live lines as the app prints them"
else
  not_ok "... then live lines as the app prints them" "$n1 messages, no more"
fi
check "... as bare lines (no newline in one)" "" "$(msgs hub '.type=="log"' | jq -r '.lines[] | select(contains("\n"))')"

check "StopVm through /dashboard/api/vmm/StopVm" 200 \
  "$(status_of -H "Authorization: Bearer $TOKEN" -d "{\"id\":\"$id\"}" "$U/dashboard/api/vmm/StopVm")"
wait_eval 20 "has hub '.topic==\"vm.status\" and .data.id==\"$id\" and .data.status==\"stopped\"'" \
  && ok "vm.status: stopped" || not_ok "vm.status: stopped" "$(msgs hub '.topic=="vm.status"' | tail -3)"
check "StartVm with the session (and the CSRF header)" 200 \
  "$(status_of -H "Cookie: moonstack_session=$SESSION" -H 'X-Moonstack-CSRF: 1' -d "{\"id\":\"$id\"}" "$U/dashboard/api/vmm/StartVm")"
nrun=$(msgs hub ".topic==\"vm.status\" and .data.id==\"$id\" and .data.status==\"running\"" | wc -l)
wait_eval 20 "[ \$(msgs hub '.topic==\"vm.status\" and .data.id==\"$id\" and .data.status==\"running\"' | wc -l) -gt $nrun ]" \
  && ok "vm.status: running again" || not_ok "vm.status: running again" "$(msgs hub '.topic=="vm.status"' | tail -3)"
check "the browser's websocket saw the same events" yes \
  "$(has browser ".topic==\"vm.status\" and .data.id==\"$id\" and .data.status==\"stopped\"" && echo yes || echo no)"

# ---- policies through the hub ----
kms_policy 2 broken
out=$(tcurl -d '{}' -w '\n%{http_code}' "$U/dashboard/api/kms/policy_reload")
check "a broken KMS policy: the reload is refused (400)" 400 "${out##*$'\n'}"
check_match "... saying why" "EPOLICY.*kms-policy.lua:1" "$(printf '%s' "${out%$'\n'*}" | jq -r .error)"
wait_eval 5 "has hub '.part==\"kms\" and .topic==\"policy.reload\" and .data.ok==false'" \
  && ok "... a policy.reload event (ok false) on the hub" || not_ok "... a policy.reload event (ok false) on the hub"
snap=$(tcurl "http://$KADMIN/dashboard/feed?since=0")
check "... the KMS part shows the error, version 1 still active" "1 true" \
  "$(printf '%s' "$snap" | jq -r '.snapshot.policies[0] | "\(.version) \(.error != null and .error != "")"')"
kms_policy 2
out=$(tcurl -d '{}' -w '\n%{http_code}' "$U/dashboard/api/kms/policy_reload")
check "a good KMS policy reloads through the hub" "200 2" \
  "${out##*$'\n'} $(printf '%s' "${out%$'\n'*}" | jq -r '.policies[0].version')"
check "... the error is gone" null "$(tcurl "http://$KADMIN/dashboard/feed?since=0" | jq -r '.snapshot.policies[0].error')"
sed -i "s/version = 'r1'/version = 'r2'/" "$d/route.lua"
out=$(tcurl -d '{}' -w '\n%{http_code}' "$U/dashboard/api/gateway/policy_reload")
check "the gateway's routing policy reloads through the hub" "200 r2" \
  "${out##*$'\n'} $(printf '%s' "${out%$'\n'*}" | jq -r '.policies[0].version')"
check "an unknown part's action: 404" 404 "$(status_of -H "Authorization: Bearer $TOKEN" -d '{}' "$U/dashboard/api/nope/x")"

# ---- the verifier ----
q=$(od -An -v -tx1 "$V/dcap-qvl/tdx_quote" | tr -d ' \n')
out=$(tcurl -H 'content-type: application/json' -d "{\"quote_hex\":\"$q\",\"at\":1752919234}" "$U/dashboard/api/verify")
check "verify: a real TDX quote with its collateral at its time" "verified true UpToDate TDX" \
  "$(printf '%s' "$out" | jq -r '"\(.verdict) \(.verified) \(.result.status) \(.result.tee_type)"')"
out=$(tcurl -d '{"quote_hex":"00112233"}' "$U/dashboard/api/verify")
check "verify: garbage is not verified, with the reason" "not verified 2" \
  "$(printf '%s' "$out" | jq -r '"\(.verdict) \(.exit_code)"')"
check "verify: no quote is a 400" 400 "$(status_of -H "Authorization: Bearer $TOKEN" -d '{}' "$U/dashboard/api/verify")"

# ---- the security lint (the deploy form's findings) ----
bad='services:\n  web:\n    image: nginx:latest\n    privileged: true\n    ports:\n      - "8080:80"\n'
out=$(tcurl -d "$(jq -n --arg c "$(printf "$bad")" '{compose:$c}')" -w '\n%{http_code}' "$U/dashboard/api/lint")
check "lint: a bad docker-compose, its findings naming field and line" \
  "200 docker-compose false 2 1 image-not-pinned services.web.image 3 privileged-container" \
  "${out##*$'\n'} $(printf '%s' "${out%$'\n'*}" | jq -r '"\(.kind) \(.ok) \(.counts.error) \(.counts.warning) \(.findings[0].id) \(.findings[0].field) \(.findings[0].line) \(.findings[1].id)"')"
app=$(jq -n --arg dc "$(printf 'services:\n  web:\n    image: x@sha256:%s\n' "$(printf 'ab%.0s' $(seq 32))")" \
  '{manifest_version:2, name:"a", runner:"docker-compose", docker_compose_file:$dc, kms_enabled:true,
    key_provider_id:"00", public_logs:false, public_sysinfo:false, public_tcbinfo:false, secure_time:true,
    no_instance_id:true, gateway_enabled:true}')
out=$(tcurl -d "$(jq -n --arg c "$app" '{compose:$c}')" "$U/dashboard/api/lint")
check "lint: an app-compose (no_instance_id with the gateway)" "app-compose 1 no-instance-id-gateway no_instance_id error" \
  "$(printf '%s' "$out" | jq -r '"\(.kind) \(.findings|length) \(.findings[0].id) \(.findings[0].field) \(.findings[0].severity)"')"
out=$(tcurl -d '{"compose":"services:\n  a: &x 1\n"}' -w '\n%{http_code}' "$U/dashboard/api/lint")
check "lint: YAML it does not understand is a 400 naming the line" "400 docker-compose: line 2: anchors (&) are not supported" \
  "${out##*$'\n'} $(printf '%s' "${out%$'\n'*}" | jq -r .error)"
check "lint: no compose is a 400" 400 "$(status_of -H "Authorization: Bearer $TOKEN" -d '{}' "$U/dashboard/api/lint")"
check "lint: needs credentials" 401 "$(status_of -d '{"compose":"x"}' "$U/dashboard/api/lint")"

# ---- removal, logout, secrets ----
tcurl -H 'content-type: application/json' -d "{\"id\":\"$id\"}" "$U/prpc/RemoveVm?json" >/dev/null
wait_eval 20 "has hub '.topic==\"vm.status\" and .data.id==\"$id\" and .data.status==\"removed\"'" \
  && ok "vm.status: removed" || not_ok "vm.status: removed" "$(msgs hub '.topic=="vm.status"' | tail -2)"
check "logout (with the CSRF header)" 200 \
  "$(status_of -H "Cookie: moonstack_session=$SESSION" -H 'X-Moonstack-CSRF: 1' -d '' "$U/dashboard/logout")"
check "... the session is over" 401 "$(status_of -H "Cookie: moonstack_session=$SESSION" "$U/dashboard/feed?since=0")"
check "no log holds the login token, the session or the admin token" "" \
  "$(grep -l -e "$LOGIN" -e "$SESSION" -e "$TOKEN" "$d"/*.log 2>/dev/null)"
finish
