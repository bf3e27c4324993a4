#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The gateway's certbot against a real ACME CA (issue M12): pebble and pebble-challtestsrv
# started here (in the test's own network namespace), the gateway orders a wildcard
# `*.test.local` by DNS-01 through challtestsrv's management API, serves it (the client checks
# the chain against pebble's root from its management port), sets the CAA records (dig),
# exposes the transparency evidence (AcmeInfo over pRPC, /.dstack/acme-info: quotes from the
# guest agent the gateway would run beside in a CVM, here `moonstack agent --simulator`) that
# `moonstack ct-monitor --once` verifies (in process with the simulated platform's root, and
# through a verifier service), and fails on when tampered. Pebble issues 20-second certificates: the gateway renews them (renew_before 14 s)
# under a bounded load of new HTTPS connections, with zero failed requests and a changing
# serial; Admin RenewCert forces one more. A restart reuses the stored account and
# certificate (no new order).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/proxy_lib.sh"
. "$here/fixtures/agent_sim.sh"
. "$here/acme_lib.sh"

acme_tools_check || { finish; exit 1; }
in_test_namespaces "$@" || { finish; exit 1; }

D=$(tmpdir)
cd "$D" || exit 1
acme_pebble_start "$D" 20 || { finish; exit 1; }
grep -q 'validity period of 20 seconds' pebble.log && ok "pebble issues 20-second certificates" ||
  not_ok "pebble issues 20-second certificates" "$(head -8 pebble.log)"

"$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/http_backend.lua" "$D/app.port" > app.log 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 test -s app.port || { not_ok "app started" "$(cat app.log)"; finish; exit 1; }
app=$(cat app.port)
PORT=8443 RPC=8000 ADMIN=8011
HOST=localhost-$app.test.local
# the guest agent whose GetQuote gives the evidence (a simulated CVM: its platform in $A/state/sim)
A=$(tmpdir)
start_agent "$A" || { finish; exit 1; }
SIM=$A/state/sim
wgkey=$(head -c 32 /dev/urandom | base64)

# gateway_config RENEW_BEFORE: the gateway's config with the certbot (renewal checked every
# 0.5 s) and the evidence from the agent's dstack.sock
gateway_config() {
  cat > gateway.lua <<CFG
return {
  proxy = { listen = { host = '127.0.0.1', port = $PORT }, base_domain = 'test.local', workers = 2 },
  debug = { insecure_localhost_backend = true },
  control = '$D/gw.sock',
  data_dir = '$D/data',
  rpc = { listen = { host = '127.0.0.1', port = $RPC }, kms_ca = '$D/tls-ca.pem' },
  wg = { private_key = '$wgkey', device = false, endpoint = '192.0.2.1:51820' },
  admin = { listen = { host = '127.0.0.1', port = $ADMIN }, auth_token = 'admin-secret' },
  certbot = {
    acme_url = 'https://127.0.0.1:14000/dir', ca = '$D/tls-ca.pem',
    domains = { 'test.local' },
    renew_interval = 0.5, renew_before_expiration = $1, renew_timeout = 30, max_dns_wait = 10,
    dns_resolver = '127.0.0.1:8053', caa_issuer = 'pebble',
    dns = { provider = 'challtestsrv', url = 'http://127.0.0.1:8055' },
  },
  attestation = { agent = '$A/dstack.sock' },
}
CFG
}
start_gateway() { # LOG
  "$MOONSTACK" gateway -c gateway.lua > "$1" 2>&1 &
  GW_PID=$!
  defer "kill -KILL $GW_PID 2>/dev/null"
  wait_for 20 grep -q 'running' "$1" || { not_ok "gateway started" "$(tail -20 "$1")"; finish; exit 1; }
}
gw() { "$MOONSTACK" repl "$D/gw.sock" -e "$1" 2>&1; }
# the serial of the certificate served for $HOST, verified against pebble's root ('' if not)
served_serial() {
  echo | openssl s_client -connect 127.0.0.1:$PORT -servername "$HOST" -CAfile root.pem \
    -verify_return_error 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}
fetch() { curl -sf --cacert root.pem --resolve "$1:$PORT:127.0.0.1" "https://$1:$PORT$2"; }

gateway_config 14
t0=$(date +%s.%N)
start_gateway gw1.log
wait_eval 30 '[ -n "$(served_serial)" ]' ||
  { not_ok "a pebble-issued certificate served" "$(tail -20 gw1.log)"; finish; exit 1; }
t1=$(date +%s.%N)
echo "# first certificate served $(python3 -c "print(round($t1 - $t0, 2))") s after the start"
ok "the gateway serves a pebble-issued certificate (chain verified against pebble's root)"
subject=$(echo | openssl s_client -connect 127.0.0.1:$PORT -servername "$HOST" 2>/dev/null |
  openssl x509 -noout -subject -ext subjectAltName 2>/dev/null | tr '\n' ' ')
check_match "the certificate is the wildcard *.test.local" "CN *= *\*\.test\.local.*DNS:\*\.test\.local" "$subject"
issuer=$(echo | openssl s_client -connect 127.0.0.1:$PORT -servername "$HOST" 2>/dev/null |
  openssl x509 -noout -issuer 2>/dev/null)
check_match "issued by pebble" "Pebble Intermediate CA" "$issuer"
check "a request through the proxy, strictly verified" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' --cacert root.pem --resolve "$HOST:$PORT:127.0.0.1" "https://$HOST:$PORT/1k")"
account=$(gw 'gw.certs().account_uri' | tr -d '"')
check_match "an ACME account" '^https://127.0.0.1:14000/my-account/' "$account"

# CAA as upstream: issue and issuewild bound to the account and DNS-01, the guards gone
caa=$(dig +short @127.0.0.1 -p 8053 test.local CAA)
echo "$caa" | sed 's/^/# CAA /'
check "CAA issue names the CA, dns-01 and the account" 1 \
  "$(grep -cF "0 issue \"pebble;validationmethods=dns-01;accounturi=$account\"" <<< "$caa")"
check "CAA issuewild names the CA, dns-01 and the account" 1 \
  "$(grep -cF "0 issuewild \"pebble;validationmethods=dns-01;accounturi=$account\"" <<< "$caa")"
check "no guard record left (\";\")" 0 "$(grep -c '";"' <<< "$caa")"
r=$(curl -s -X POST -H 'Authorization: Bearer admin-secret' "http://127.0.0.1:$ADMIN/prpc/SetCaa?json" -d '{}')
check "Admin SetCaa" "{}" "$r"
check "after SetCaa the same two CAA records, once each" "$(sort <<< "$caa")" \
  "$(dig +short @127.0.0.1 -p 8053 test.local CAA | sort)"
check "no TXT record left at _acme-challenge.test.local" "" \
  "$(dig +short @127.0.0.1 -p 8053 _acme-challenge.test.local TXT)"

# the evidence: /.dstack/acme-info and AcmeInfo over pRPC
fetch gateway.test.local /.dstack/acme-info > info.json
spki=$(echo | openssl s_client -connect 127.0.0.1:$PORT -servername "$HOST" 2>/dev/null |
  openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | od -An -v -tx1 | tr -d ' \n')
python3 - "$spki" "$account" > evidence.out 2>&1 <<PY
import hashlib, json, sys
spki, account = sys.argv[1], sys.argv[2]
info = json.load(open("info.json"))
assert info["account_uri"] == account, "account_uri"
keys = [k["public_key"] for k in info["quoted_hist_keys"]]
assert spki in keys, "the served key is not among the quoted keys"
for k in info["quoted_hist_keys"]:
    q = json.loads(k["quote"])
    want = hashlib.sha512(b"zt-cert:" + bytes.fromhex(k["public_key"])).hexdigest()
    assert q["report_data"] == want, "report_data of a key"
    assert len(q["quote"]) > 1000 and want in q["quote"], "the quote carries the report_data"
aq = json.loads(info["account_quote"])
assert aq["report_data"] == hashlib.sha512(b"acme-account:" + account.encode()).hexdigest(), "account"
assert "BEGIN CERTIFICATE" in info["active_cert"]
print("ok", len(keys))
PY
check_match "acme-info: the served key quoted over SHA-512(zt-cert:||SPKI), the account over SHA-512(acme-account:||uri)" '^ok [0-9]+$' "$(cat evidence.out)"
prpc=$(curl -sk "https://127.0.0.1:$RPC/prpc/AcmeInfo?json")
check "AcmeInfo over pRPC names the account" "$account" \
  "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["account_uri"])' "$prpc" 2>&1)"
check_match "AcmeInfo carries the quoted keys" '"quoted_hist_keys":\[\{' "$prpc"

ct() { "$MOONSTACK" ct-monitor --gateway test.local:$PORT --address 127.0.0.1 --ca root.pem \
  --simulator "$SIM" --once; }
out=$(ct 2>&1); rc=$?
check "ct-monitor --once verifies the evidence (exit 0)" "0" "$rc"
check_match "ct-monitor: the served certificate is verified" "served certificate verified, 0 problem" "$out"
# the same through a verifier service (dstack-verifier's POST /verify) trusting the platform
"$MOONSTACK" -e "local v = {} assert(require('moonstack.sim').trust(v, '$SIM'))
  local f = io.open('$D/coll.json', 'w') f:write(v.collateral) f:close()
  f = io.open('$D/sim-root.pem', 'w') f:write(v.root_ca) f:close()"
cat > verifier.lua <<CFG
return { listen = { host = '127.0.0.1', port = 8090 }, collateral = { file = '$D/coll.json' },
  root_ca = '$D/sim-root.pem', policy = { allow_simulator = true, disable_runtime_verification = true } }
CFG
"$MOONSTACK" verifier -c verifier.lua > verifier.log 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 grep -q 'verifier listening' verifier.log || not_ok "verifier service started" "$(tail -5 verifier.log)"
ctv() { "$MOONSTACK" ct-monitor --gateway test.local:$PORT --address 127.0.0.1 --ca root.pem \
  --verifier-url http://127.0.0.1:8090 --once; }
out=$(ctv 2>&1); rc=$?
check "ct-monitor --verifier-url verifies the evidence (exit 0)" "0" "$rc"

# renewal under load: new connections (each a TLS handshake with the certificate of the
# moment, strictly verified), and keep-alive ones with wrk when it is installed
renewals0=$(gw 'gw.certs().renewals')
serial0=$(served_serial)
LOAD=25
sh -c 'end=$(($(date +%s) + $1)); while [ $(date +%s) -lt $end ]; do
  curl -s -o /dev/null -w "%{http_code} %{errormsg}\n" --cacert root.pem \
    --resolve "$2:$3:127.0.0.1" "https://$2:$3/1k"; done' sh $LOAD "$HOST" $PORT > load.codes 2>&1 &
load_pid=$!
wrk_pid=
if command -v wrk >/dev/null; then
  in_hosts "$D" "$HOST" -- wrk -t1 -c8 -d${LOAD}s "https://$HOST:$PORT/1k" > wrk.out 2>&1 &
  wrk_pid=$!
fi
: > serials
deadline=$((SECONDS + LOAD))
while [ $SECONDS -lt $deadline ]; do served_serial >> serials; sleep 0.5; done
wait $load_pid $wrk_pid
renewals=$(( $(gw 'gw.certs().renewals') - renewals0 ))
n=$(wc -l < load.codes)
echo "# $n new connections and $renewals renewals in ${LOAD} s; serials: $(sort -u serials | grep -c .)"
if [ "$renewals" -ge 2 ]; then ok "the gateway renewed $renewals times under load"
else not_ok "at least two renewals under load" "$renewals; $(grep -E 'error|warn' gw1.log | tail -5)"; fi
if [ "$n" -ge 50 ]; then ok "$n requests on new connections"; else not_ok "requests under load" "$n"; fi
check "zero failed requests during the renewals" "" "$(grep -v '^200 *$' load.codes | sort | uniq -c)"
if [ -n "$wrk_pid" ]; then
  check "wrk (keep-alive): no socket error, no non-2xx answer" "" "$(grep -E 'Socket errors|Non-2xx' wrk.out)"
  echo "# wrk: $(grep 'requests in' wrk.out)"
fi
distinct=$(grep . serials | sort -u | grep -vc "^$serial0$")
if [ "$distinct" -ge 2 ]; then ok "the served serial changed ($distinct new serials)"
else not_ok "the served serial changed at least twice" "$(sort -u serials | tr '\n' ' ')"; fi
check "no empty serial (a failed handshake) while renewing" 0 "$(grep -c '^$' serials)"

# Admin RenewCert forces a renewal
before=$(served_serial)
r=$(curl -s -X POST -H 'Authorization: Bearer admin-secret' "http://127.0.0.1:$ADMIN/prpc/RenewCert?json" -d '{}')
check_match "Admin RenewCert renews" '"renewed": *true' "$r"
wait_eval 5 '[ "$(served_serial)" != "$before" ]'
if [ "$(served_serial)" != "$before" ]; then ok "RenewCert: a new serial is served"; else not_ok "RenewCert: a new serial is served" "$before"; fi
out=$(ct 2>&1); rc=$?
check "ct-monitor verifies every key after the renewals" "0" "$rc"

# restart: the stored account and certificate are reused, no new order
kill -TERM $GW_PID; wait $GW_PID 2>/dev/null
# the certificate stored last (a renewal may have come just before the stop)
last=$(python3 -c 'import json; print(json.load(open("data/certbot/cert/test.local/data"))["chain"])' |
  openssl x509 -noout -serial | sed 's/serial=//')
gateway_config 1
start_gateway gw2.log
wait_eval 10 '[ "$(served_serial)" = "$last" ]'
check "after a restart the stored certificate is served" "$last" "$(served_serial)"
check "no new order after the restart" 0 "$(gw 'gw.certs().orders')"
check "the stored certificate was loaded" 1 "$(gw 'gw.certs().loaded')"
check "the same account after the restart" "\"$account\"" "$(gw 'gw.certs().account_uri')"
check "no account created after the restart" 0 "$(grep -c 'ACME account created' gw2.log)"
check "no order in the restarted gateway's log" 0 "$(grep -c 'acme order created' gw2.log)"
check "pebble: one account in all (none at the restart)" 1 "$(pebble_accounts)"
r=$(curl -s -X POST -H 'Authorization: Bearer admin-secret' "http://127.0.0.1:$ADMIN/prpc/SetCaa?json" -d '{}')
check "SetCaa after the restart (the records read back over DNS)" "{}" "$r"
check "still the two CAA records, once each" "$(sort <<< "$caa")" \
  "$(dig +short @127.0.0.1 -p 8053 test.local CAA | sort)"
if [ "$(stat -c %a data/certbot/acme/account)" = 600 ] && [ "$(stat -c %a data/certbot/cert/test.local/data)" = 600 ]; then
  ok "the account and certificate files are 0600"
else not_ok "the account and certificate files are 0600" "$(ls -l data/certbot/acme data/certbot/cert/test.local)"; fi

# tampered evidence: a key swapped for another's in the stored history -> ct-monitor exit 1
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null |
  openssl pkey -pubout -outform DER | od -An -v -tx1 | tr -d ' \n' > other.hex
python3 - data/certbot/cert/test.local/attestation/history "$(cat other.hex)" <<'PY'
import json, sys
p, other = sys.argv[1], sys.argv[2]
h = json.load(open(p))
h[0]["public_key"] = other
json.dump(h, open(p, "w"))
PY
out=$(ct 2>&1); rc=$?
check "ct-monitor fails on a tampered key (exit 1)" "1" "$rc"
check_match "ct-monitor names the unverified key" "NOT VERIFIED" "$out"
out=$(ctv 2>&1); rc=$?
check "ct-monitor --verifier-url fails on the tampered key too (exit 1)" "1" "$rc"
check_match "the verifier service's report_data does not match the key" "report_data does not match" "$out"
kill -0 $GW_PID 2>/dev/null && ok "gateway still running" || not_ok "gateway still running" "$(tail -20 gw2.log)"
finish
