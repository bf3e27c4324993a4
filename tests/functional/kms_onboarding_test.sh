#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack kms -c` in onboarding mode, as upstream deploys it: onboarding and RPC on one port.
# With an empty key directory the daemon serves the Onboard page and service over plain HTTP;
# curl bootstraps (no TEE here: an empty attestation), Finish hands the port over to the HTTPS
# RPC listener on the new keys; GetMeta carries bootstrap_info (ca_pubkey = the SPKI of
# root-ca.crt, checked with openssl), rpc-domain and bootstrap-info.json are 0600, and a restart
# goes straight to serving.
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
port=$("$MOONSTACK" run /dev/stdin <<'LUA'
local uv = require('luv')
local s = uv.new_tcp()
assert(s:bind('127.0.0.1', 0))
print(s:getsockname().port)
s:close()
LUA
)
cat >"$t/kms.lua" <<LUA
return {
  key_dir = '$t/keys', control = '$t/kms.ctl', auth = { kind = 'dev' },
  listen = { host = '127.0.0.1', port = $port },
  onboard = { listen = { host = '127.0.0.1', port = $port } },
}
LUA

"$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms.log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"
if wait_for 10 curl -sf "http://127.0.0.1:$port/health"; then ok "onboarding mode listens"; else
  not_ok "onboarding mode listens" "$(cat "$t/kms.log")"; finish; exit 1; fi
check_match "the page offers Bootstrap and Onboard" 'Bootstrap.*Onboard' "$(curl -s "http://127.0.0.1:$port/" | tr -d '\n')"
check_match "says so in the log" 'onboarding mode' "$(cat "$t/kms.log")"
check "Finish before any key: 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/finish")"

resp=$(curl -s -H 'Content-Type: application/json' -d '{"domain":"localhost"}' \
  "http://127.0.0.1:$port/prpc/Onboard.Bootstrap?json")
jget() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv.slice(1))v=v[k];process.stdout.write(String(v))})' "$@"; }
spki=$(openssl x509 -in "$t/keys/root-ca.crt" -pubkey -noout | openssl pkey -pubin -outform DER | od -An -tx1 -v | tr -d ' \n')
check "Bootstrap ca_pubkey = the SPKI of root-ca.crt" "$spki" "$(printf '%s' "$resp" | jget ca_pubkey)"
check_match "Bootstrap k256_pubkey" '^0[23][0-9a-f]{64}$' "$(printf '%s' "$resp" | jget k256_pubkey)"
check "no TEE: an empty attestation" "" "$(printf '%s' "$resp" | jget attestation)"
for f in bootstrap-info.json rpc-domain; do
  check "$f mode" 600 "$(stat -c %a "$t/keys/$f")"
done
check "rpc-domain" localhost "$(cat "$t/keys/rpc-domain")"

check "Finish" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/finish")"
prpc() { curl -s --max-time 10 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  -H 'Content-Type: application/json' -d '{}' "https://localhost:$port/prpc/$1"; }
if wait_for 10 curl -sf --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  "https://localhost:$port/health"; then ok "the RPC listener takes the port over"; else
  not_ok "the RPC listener takes the port over" "$(tail -5 "$t/kms.log")"; fi
meta=$(prpc GetMeta)
check "GetMeta bootstrap_info.ca_pubkey" "$spki" "$(printf '%s' "$meta" | jget bootstrap_info ca_pubkey)"
check "GetMeta k256_pubkey = Bootstrap's" "$(printf '%s' "$resp" | jget k256_pubkey)" "$(printf '%s' "$meta" | jget k256_pubkey)"
kill -TERM "$pid"; wait "$pid"; check "SIGTERM exits 0" 0 $?

# Keys present: a restart serves at once (no onboarding).
"$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms2.log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"
if wait_for 10 curl -sf --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  "https://localhost:$port/health"; then ok "restart serves at once"; else not_ok "restart serves at once" "$(cat "$t/kms2.log")"; fi
check "no onboarding on restart" "" "$(grep 'onboarding mode' "$t/kms2.log")"
kill -TERM "$pid"; wait "$pid"
finish
