#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The guest API's wire forms (guest-and-attestation.md §1.2–1.5) on `moonstack agent
# --simulator`: GET / ?json / protobuf requests, the /prpc/ forms of each socket, headers, the
# public listener (Worker.Info, Version, GetAttestationForAppKey, the dashboard, /metrics,
# /logs) as the app-compose public_* flags allow, socket modes, and a second agent refused on
# live sockets.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fixtures/agent_sim.sh"

dir=$(tmpdir)
start_agent "$dir" || { finish; exit 1; }
D=$dir/dstack.sock
T=$dir/tappd.sock
H=http://127.0.0.1:$AGENT_PORT

# get URL [CURL ARGS...]: sets $code, $body, $headers
get() {
  local url=$1; shift
  code=$(curl -s -D "$dir/headers" -o "$dir/body" -w '%{http_code}' --max-time 30 "$@" "$url")
  body=$(tr -d '\0' <"$dir/body")
  headers=$(tr -d '\r' <"$dir/headers")
}
# json FIELD: a field of $body (JSON), via moonstack's cjson
json() {
  "$MOONSTACK" -e "local v = require('cjson').decode(io.read('*a'))$1; io.write(tostring(v))" <"$dir/body"
}

# ---- dstack.sock: forms ----
get http://localhost/Info --unix-socket "$D"
check "GET /Info: 200" 200 "$code"
check "GET /Info: JSON app_id" "$SIM_APP_ID" "$(json .app_id)"
check_match "GET /Info: Server header" '^server: moonstack guest agent \(simulator\)$' "$(grep -i '^server:' <<<"$headers")"
get 'http://localhost/Info?json' --unix-socket "$D" -X POST
check "POST /Info?json without Content-Type: JSON" "$SIM_APP_ID" "$(json .app_id)"
get http://localhost/Info --unix-socket "$D" -X POST
check_match "POST /Info without Content-Type: protobuf" 'application/octet-stream' "$(grep -i '^content-type:' <<<"$headers")"
check_match "... holding the app name" 'sdk-conformance' "$(tr -c '[:print:]' '.' <"$dir/body")"
rd=$(printf 'ab%.0s' $(seq 64))
get "http://localhost/GetQuote?report_data=$rd" --unix-socket "$D"
check "GET /GetQuote?report_data=: 200" 200 "$code"
check "... the quote carries it" "$rd" "$(json '.quote' | cut -c1137-1264)"
check "... and so does the answer" "$rd" "$(json .report_data)"
for p in /prpc/GetKey /prpc/DstackGuest.GetKey /GetKey; do
  get "http://localhost$p" --unix-socket "$D" -H 'Content-Type: application/json' -d '{"path":"vms","purpose":"signing"}'
  check "$p" 1091a4d6721f6a719ca57320e4975f7e237649131111ee1c5032f661dc1cfef2 "$(json .key)"
done
get http://localhost/prpc/Tappd.GetKey --unix-socket "$D" -H 'Content-Type: application/json' -d '{}'
check "another service's name is not a method: 400" 400 "$code"

# ---- tappd.sock ----
for p in /prpc/Tappd.Info /prpc/Info; do
  get "http://localhost$p" --unix-socket "$T" -H 'Content-Type: application/json' -d '{}'
  check "tappd $p" "$SIM_APP_ID" "$(json .app_id)"
done
get http://localhost/prpc/Tappd.Version --unix-socket "$T" -H 'Content-Type: application/json' -d '{}'
check_match "tappd Version" '^\{"version":"[0-9.]+","rev":"git:[0-9a-f]{20}"\}$' "$body"
get http://localhost/prpc/Tappd.RawQuote --unix-socket "$T" -H 'Content-Type: application/json' -d "{\"report_data\":\"$rd\"}"
check "tappd RawQuote" "$rd raw" "$(json '.quote' | cut -c1137-1264) $(json .hash_algorithm)"
get http://localhost/prpc/Tappd.DeriveK256Key --unix-socket "$T" -H 'Content-Type: application/json' -d '{"path":"vms"}'
check "tappd DeriveK256Key" 1091a4d6721f6a719ca57320e4975f7e237649131111ee1c5032f661dc1cfef2 "$(json .k256_key)"

# ---- the public listener ----
get "$H/prpc/Worker.Version"
check "Worker.Version: 200" 200 "$code"
check_match "X-App-Version header" '^x-app-version: v[0-9.]+ \(git:[0-9a-f]{20}\)$' "$(grep -i '^x-app-version:' <<<"$headers")"
get "$H/prpc/Worker.Info?json" -X POST
check "Worker.Info app_id" "$SIM_APP_ID" "$(json .app_id)"
check_match "Worker.Info tcb_info (public_tcbinfo)" '"rtmr3"' "$(json .tcb_info)"
get "$H/prpc/Info" -H 'Content-Type: application/json' -d '{}'
check "/prpc/Info (Worker. optional)" "$SIM_APP_ID" "$(json .app_id)"
for alg in secp256k1 ed25519; do
  get http://localhost/Sign --unix-socket "$D" -H 'Content-Type: application/json' -d "{\"algorithm\":\"$alg\",\"data\":\"00\"}"
  pub=$(json .public_key)
  want=$("$MOONSTACK" -e "
    local c = require('moonstack.crypto')
    local d = require('moonstack.crypto.dstack')
    io.write(c.hex(d.app_key_report_data('$alg', c.unhex('$pub'))))")
  get "$H/prpc/Worker.GetAttestationForAppKey" -H 'Content-Type: application/json' -d "{\"algorithm\":\"$alg\"}"
  check "GetAttestationForAppKey $alg: report_data = dip1 string of the Sign key" "$want" "$(json .report_data)"
  check "... and the quote carries it" "$want" "$(json '.quote' | cut -c1137-1264)"
done
check_match "... 'dip1::ed25519-pk:' + base64url + 4 NULs" '^646970313a3a656432353531392d706b3a[0-9a-f]{86}00000000$' "$want"
get "$H/prpc/Worker.GetAttestationForAppKey" -H 'Content-Type: application/json' -d '{"algorithm":"secp256k1_prehashed"}'
check "GetAttestationForAppKey secp256k1_prehashed: 400" 400 "$code"
get "$H/prpc/Worker.GetKey" -H 'Content-Type: application/json' -d '{}'
check "no key methods on the public listener" 400 "$code"
get "$H/"
check "dashboard: 200" 200 "$code"
check_match "dashboard: the app and its TCB info" '<h1>sdk-conformance</h1>' "$body"
check_match "dashboard: TCB info shown" 'TCB info' "$body"
get "$H/metrics"
check "metrics (public_sysinfo): 200" 200 "$code"
check_match "metrics content" '^system_num_cpus [0-9]+$' "$(grep '^system_num_cpus' <<<"$body")"
get "$H/logs/app?text&bare"
check "logs (public_logs): 200" 200 "$code"
check_match "logs: an in-stream error without a log store" '^\{"error":' "$body"
get "$H/" -X POST
check "POST / is not a route" 404 "$code"

# ---- the REPL, a second agent on live sockets ----
out=$(timeout 20 "$MOONSTACK" repl "$dir/agent.ctl" -e 'agent.ctx:status().app_id' 2>&1)
check "repl: ctx:status()" "\"$SIM_APP_ID\"" "$out"
"$MOONSTACK" agent --simulator --keys "$APPKEYS" --compose "$dir/compose.json" --socket-dir "$dir" \
  --state-dir "$dir/state2" --control "$dir/agent2.ctl" >"$dir/agent2.log" 2>&1
check "a second agent on live sockets fails" 1 "$?"
check_match "... saying why" 'dstack listener' "$(cat "$dir/agent2.log")"
get http://localhost/Version --unix-socket "$D"
check "... and the first one still serves" 200 "$code"
stop_agent

# ---- private flags: public_tcbinfo, public_sysinfo, public_logs false; socket mode ----
dir2=$(tmpdir)
write_compose "$dir2/compose.json" false false false
start_agent "$dir2" --socket-mode 0660 || { finish; exit 1; }
H=http://127.0.0.1:$AGENT_PORT
check "--socket-mode 0660" 660 "$(stat -c %a "$dir2/dstack.sock")"
get "$H/prpc/Worker.Info?json" -X POST
check "Worker.Info without public_tcbinfo: tcb_info empty" "" "$(json .tcb_info)"
check "... vm_config empty" "" "$(json .vm_config)"
check "... the app id still shown" "$SIM_APP_ID" "$(json .app_id)"
get http://localhost/Info --unix-socket "$dir2/dstack.sock"
check_match "dstack.sock Info keeps tcb_info" '"rtmr3"' "$(json .tcb_info)"
get "$H/"
check "dashboard: 200" 200 "$code"
! grep -q 'TCB info' <<<"$body"
check "dashboard: no TCB info" 0 "$?"
get "$H/metrics"
check "metrics without public_sysinfo: 404" 404 "$code"
get "$H/logs/app"
check "logs without public_logs: 404" 404 "$code"
stop_agent
finish
