#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two gateways' certbots sharing their ACME state on etcd (issue M12 item 3: "certificates and
# the ACME account, a renewal lock with a lease"): a real 3-member etcd (etcd_lib.sh), one pebble
# + challtestsrv (acme_lib.sh), gateways A (node 1) and B (node 2) with disjoint client ranges
# (wg.device = false), both with the certbot for `*.test.local` and the evidence from one
# simulated guest agent. Started at the same time: pebble sees exactly one account and one order
# and both serve the same certificate (verified against pebble's root). Admin RenewCert on A:
# B serves A's new serial within its check interval, without an order of its own. B restarted
# with its data_dir wiped: no account, no order (all from etcd). The lock: A held in its DNS
# self-check (its resolver a silent port) with the renewal lock taken, B's RenewCert answers
# "not renewed"; `kill -9` of A: the lock's lease expires (lease_ttl 3 s) and B renews. B's
# AcmeInfo carries the evidence A produced, and ct-monitor verifies it through B.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/fixtures/agent_sim.sh"
. "$here/acme_lib.sh"

need_tools etcd etcdctl jq
acme_tools_check || { finish; exit 1; }
in_test_namespaces "$@" || { finish; exit 1; }
. "$here/etcd_lib.sh"

D=$(tmpdir)
cd "$D" || exit 1
etcd_cluster_start "$D/etcd" || { finish; exit 1; }
acme_pebble_start "$D" 3600 || { finish; exit 1; }

"$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/http_backend.lua" "$D/app.port" > app.log 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 test -s app.port || { not_ok "app started" "$(cat app.log)"; finish; exit 1; }
HOST=localhost-$(cat app.port).test.local
AG=$(tmpdir)
start_agent "$AG" || { finish; exit 1; }
SIM=$AG/state/sim

declare -A PORT RPC ADMIN GPID
PORT[a]=8443; RPC[a]=8000; ADMIN[a]=8011
PORT[b]=8444; RPC[b]=8001; ADMIN[b]=8012
# gwconf NAME NODE_ID WG_IP RANGE DNS_RESOLVER MAX_DNS_WAIT
gwconf() {
  cat > "$1.lua" <<CFG
return {
  proxy = { listen = { host = '127.0.0.1', port = ${PORT[$1]} }, base_domain = 'test.local' },
  debug = { insecure_localhost_backend = true },
  control = '$D/$1.sock', data_dir = '$D/$1-data',
  rpc = { listen = { host = '127.0.0.1', port = ${RPC[$1]} }, kms_ca = '$D/tls-ca.pem' },
  wg = { private_key = '$(head -c 32 /dev/urandom | base64)', device = false,
    endpoint = '127.0.0.1:5182$2', ip = '$3/24', reserved_net = { '10.0.0.0/29' },
    client_ip_range = '$4' },
  admin = { listen = { host = '127.0.0.1', port = ${ADMIN[$1]} }, auth_token = 'admin-secret' },
  cluster = { etcd = { endpoints = { 'http://127.0.0.1:23791', 'http://127.0.0.1:23792',
    'http://127.0.0.1:23793' }, prefix = '/ms', timeout_ms = 4000, lease_ttl = 3,
    watch_interval_ms = 200 }, node_id = $2 },
  certbot = {
    acme_url = 'https://127.0.0.1:14000/dir', ca = '$D/tls-ca.pem', domains = { 'test.local' },
    renew_interval = 1, renew_before_expiration = 600, renew_timeout = 90, max_dns_wait = $6,
    dns_resolver = '$5', caa_issuer = 'pebble',
    dns = { provider = 'challtestsrv', url = 'http://127.0.0.1:8055' },
  },
  attestation = { agent = '$AG/dstack.sock' },
}
CFG
}
gwconf a 1 10.0.0.1 10.0.0.64/26 127.0.0.1:8053 10
gwconf b 2 10.0.0.2 10.0.0.128/26 127.0.0.1:8053 10
launch() { # NAME: start, no wait
  "$MOONSTACK" gateway -c "$1.lua" >> "$1.log" 2>&1 &
  GPID[$1]=$!
  defer "kill -KILL ${GPID[$1]} 2>/dev/null"
}
running() { wait_for 30 grep -q 'running' "$1.log" || { not_ok "gateway $1 started" "$(tail -20 "$1.log")"; finish; exit 1; }; }
stop() { # NAME: SIGTERM, then wait until its node lease (alive/<id>, 3 s) is gone from etcd
  kill -TERM "${GPID[$1]}"; wait "${GPID[$1]}" 2>/dev/null
  wait_eval 10 "[ -z \"\$(etcdctl_get /ms/gateway/alive/$2)\" ]"
}
gw() { "$MOONSTACK" repl "$D/$1.sock" -e "$2" 2>&1 | tr -d '"'; }
# the serial served by gateway NAME, the chain verified against pebble's root ('' if not)
serial() {
  echo | openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername "$HOST" -CAfile root.pem \
    -verify_return_error 2>/dev/null | openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}
spki() {
  echo | openssl s_client -connect "127.0.0.1:${PORT[$1]}" -servername "$HOST" 2>/dev/null |
    openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | od -An -v -tx1 | tr -d ' \n'
}
renew() { curl -s --max-time "${2:-30}" -X POST -H 'Authorization: Bearer admin-secret' \
  "http://127.0.0.1:${ADMIN[$1]}/prpc/RenewCert?json" -d '{}'; }
now() { date +%s.%N; }
dt() { python3 -c "print(round($2 - $1, 2))"; }

# ---- A and B started at the same time: one account, one order, one certificate ----
t0=$(now)
launch a; launch b
running a; running b
wait_eval 60 '[ -n "$(serial a)" ] && [ -n "$(serial b)" ]' ||
  not_ok "both gateways serve a pebble-issued certificate" "$(grep -h -E 'error|warn' a.log b.log | tail -10)"
echo "# both serve a certificate $(dt "$t0" "$(now)") s after the start"
s1=$(serial a)
check "A and B serve the same certificate (chains verified against pebble's root)" "$s1" "$(serial b)"
check "pebble: exactly one ACME account" 1 "$(pebble_accounts)"
check "pebble: exactly one order, one certificate" "1 1" "$(pebble_orders) $(pebble_issued)"
check "the gateways' certbots: one account and one order between them" "1 1" \
  "$(( $(gw a 'gw.certs().accounts') + $(gw b 'gw.certs().accounts') )) $(( $(gw a 'gw.certs().orders') + $(gw b 'gw.certs().orders') ))"
account=$(gw a 'gw.certs().account_uri')
check_match "an ACME account" '^https://127.0.0.1:14000/my-account/' "$account"
check "B uses the same account" "$account" "$(gw b 'gw.certs().account_uri')"
echo "# lock held elsewhere at the start: A $(grep -c 'renewal lock held elsewhere' a.log), B $(grep -c 'renewal lock held elsewhere' b.log) time(s)"
for n in a b; do
  check "a request through $n, strictly verified" 200 "$(curl -s -o /dev/null -w '%{http_code}' \
    --cacert root.pem --resolve "$HOST:${PORT[$n]}:127.0.0.1" "https://$HOST:${PORT[$n]}/1k")"
done
check "etcd holds the account and the certificate (with their keys)" "1 1" \
  "$(etcdctl_get /ms/gateway/acme/account | grep -c '"key":"-----BEGIN') $(etcdctl_get /ms/gateway/cert/test.local/data | grep -c '"key":"-----BEGIN')"
check "no certbot file in either data_dir" "" "$(ls a-data/certbot b-data/certbot 2>/dev/null)"

# ---- RenewCert on A: B serves A's new serial within its check interval (1 s) ----
ob=$(gw b 'gw.certs().orders')
t0=$(now)
check_match "Admin RenewCert on A renews" '"renewed": *true' "$(renew a)"
s2=$(serial a)
[ -n "$s2" ] && [ "$s2" != "$s1" ] && ok "A serves a new serial" || not_ok "A serves a new serial" "$s1 -> $s2"
spki_a=$(spki a)
wait_eval 5 '[ "$(serial b)" = "$s2" ]'
t1=$(now)
check "B serves A's new certificate" "$s2" "$(serial b)"
echo "# B served A's new serial $(dt "$t0" "$t1") s after RenewCert on A was sent"
check "B made no order for it (B's orders unchanged, B loaded it)" "$ob" "$(gw b 'gw.certs().orders')"
check "pebble: still one account, two orders" "1 2" "$(pebble_accounts) $(pebble_orders)"

# ---- B restarted with its data_dir wiped: everything comes from etcd ----
stop b 2
rm -rf b-data
: > b.log
launch b; running b
wait_eval 10 '[ "$(serial b)" = "$s2" ]'
check "B restarted without a data_dir serves the current certificate" "$s2" "$(serial b)"
check "and made no account and no order; it loaded the certificate" "0 0 1" \
  "$(gw b 'gw.certs().accounts') $(gw b 'gw.certs().orders') $(gw b 'gw.certs().loaded')"
check "with the same account" "$account" "$(gw b 'gw.certs().account_uri')"
check "pebble: still one account, two orders" "1 2" "$(pebble_accounts) $(pebble_orders)"

# ---- the renewal lock: A holds it in a stalled DNS self-check, kill -9, the lease expires ----
stop a 1
gwconf a 1 10.0.0.1 10.0.0.64/26 127.0.0.1:8054 60 # its self-check asks a silent port
launch a; running a
wait_eval 10 '[ "$(serial a)" = "$s2" ]'
check "A restarted serves the current certificate" "$s2" "$(serial a)"
renew a 120 > renew-a.out &
rpid=$!
wait_eval 20 '[ -n "$(dig +short @127.0.0.1 -p 8053 _acme-challenge.test.local TXT)" ]' ||
  not_ok "A reached its DNS self-check" "$(tail -5 a.log)"
lock=$(etcdctl --endpoints="$ETCD_EPS" get /ms/gateway/locks/cert/test.local -w json)
check_match "A holds the renewal lock in etcd, under a lease" '^[1-9][0-9]*$' "$(jq -r '.kvs[0].lease // empty' <<< "$lock")"
check_match "RenewCert on B while A holds the lock: not renewed" '"renewed": *false' "$(renew b)"
check_match "B's log says the lock is held elsewhere" "renewal lock held elsewhere" "$(cat b.log)"
check "pebble: A's order is under way (3 orders, 2 certificates)" "3 2" "$(pebble_orders) $(pebble_issued)"
ob=$(gw b 'gw.certs().orders')
kill -KILL "${GPID[a]}"; wait "${GPID[a]}" 2>/dev/null
kill "$rpid" 2>/dev/null
t0=$(now)
wait_eval 15 '[ -z "$(etcdctl_get /ms/gateway/locks/cert/test.local)" ]'
t1=$(now)
check "the lock is gone with its lease" "" "$(etcdctl_get /ms/gateway/locks/cert/test.local)"
echo "# the lock expired $(dt "$t0" "$t1") s after kill -9 of its holder (lease_ttl 3 s)"
r=
for _ in $(seq 1 30); do
  r=$(renew b); grep -q '"renewed": *true' <<< "$r" && break
  sleep 0.5
done
t2=$(now)
check_match "B renews once the lease expired" '"renewed": *true' "$r"
echo "# B renewed $(dt "$t0" "$t2") s after kill -9 of A"
s3=$(serial b)
[ -n "$s3" ] && [ "$s3" != "$s2" ] && ok "B serves its new serial" || not_ok "B serves its new serial" "$s2 -> $s3"
check "B ordered it (one order)" "$((ob + 1))" "$(gw b 'gw.certs().orders')"
check "pebble: still one account; 3 certificates" "1 3" "$(pebble_accounts) $(pebble_issued)"

# ---- the evidence is shared: B's AcmeInfo carries the key A's renewal quoted ----
curl -sk --max-time 10 "https://127.0.0.1:${RPC[b]}/prpc/AcmeInfo?json" > info.json
python3 - "$spki_a" "$(spki b)" "$account" > evidence.out 2>&1 <<'PY'
import hashlib, json, sys
spki_a, spki_b, account = sys.argv[1:4]
info = json.load(open("info.json"))
assert info["account_uri"] == account, "account_uri"
keys = [k["public_key"] for k in info["quoted_hist_keys"]]
assert len(keys) == 3, "three issuances in the history: %d" % len(keys)
assert spki_a in keys, "the key of A's renewal is not among B's quoted keys"
assert spki_b in keys, "B's served key is not among the quoted keys"
for k in info["quoted_hist_keys"]:
    q = json.loads(k["quote"])
    want = hashlib.sha512(b"zt-cert:" + bytes.fromhex(k["public_key"])).hexdigest()
    assert q["report_data"] == want and want in q["quote"], "report_data of a key"
aq = json.loads(info["account_quote"])
assert aq["report_data"] == hashlib.sha512(b"acme-account:" + account.encode()).hexdigest()
print("ok", len(keys))
PY
check "B's AcmeInfo: the account and 3 quoted keys, A's among them" "ok 3" "$(cat evidence.out)"
out=$("$MOONSTACK" ct-monitor --gateway "test.local:${PORT[b]}" --address 127.0.0.1 --ca root.pem \
  --simulator "$SIM" --once 2>&1); rc=$?
check "ct-monitor through B verifies every key, A's included (exit 0)" 0 "$rc"
[ "$rc" = 0 ] || echo "$out" | tail -5 | sed 's/^/# /'
kill -0 "${GPID[b]}" 2>/dev/null && ok "B still running" || not_ok "B still running" "$(tail -20 b.log)"
kill -TERM "${GPID[b]}"; wait "${GPID[b]}" 2>/dev/null
finish
