#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The gateway's control plane against a real KMS (M10 items 3 and 4): `moonstack kms -c` (dev
# auth, the simulated platform of `moonstack sim init`) issues client certificates through
# SignCert (CN dstack-guest-agent, clientAuth, app-info extension) to two simulated CVMs;
# `moonstack gateway -c` (rpc with mutual TLS against the KMS root, wg without a device, admin
# with a token, data_dir). Checks: RegisterCvm over mutual TLS answers 10.0.0.2, then
# 10.0.0.3 for a second instance, the same address again on re-registration, with the WG
# server, agent and gateways parts of §6.6; a certificate from another CA fails the TLS
# handshake; no certificate, a bad WireGuard key, a key another instance holds are refused
# with pRPC 400 {"error"}; the legacy Tproxy. prefix; Info; the admin API (token required)
# lists the instances, sets a port policy, refuses registrations once the node is down; the
# state file is 0600 and survives a restart (same IPs); /metrics counts; the control socket
# answers gw.instances().
source "$(dirname "$0")/lib.sh"

source "$(dirname "$0")/gateway_lib.sh"

gwkey=$(wg genkey)
printf 'admin-secret-%s\n' "$RANDOM$RANDOM" >"$d/admin.token"; chmod 600 "$d/admin.token"
TOKEN=$(cat "$d/admin.token")
cat >"$d/gateway.lua" <<EOF
return {
  proxy = { listen = { host = '127.0.0.1', port = 0 }, base_domain = 'app.test', external_port = 8443 },
  rpc = { listen = { host = '127.0.0.1', port = 0 }, kms_ca = '$d/kms-keys/root-ca.crt' },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
  wg = { private_key = '$gwkey', device = false, endpoint = '192.0.2.1:51820' },
  data_dir = '$d/gw-data',
  control = '$d/gw.ctl',
}
EOF
start_gateway() {
  daemon_start gateway "$d/gateway.lua" "$d/gw.log" 'gateway ready'
  GPID=$DAEMON_PID
  RPC=$(ready_field "$d/gw.log" 'gateway ready' rpc)
  ADMIN=$(ready_field "$d/gw.log" 'gateway ready' admin)
}
start_gateway
ok "gateway started (rpc $RPC, admin $ADMIN)"

# reg NAME KEY: RegisterCvm with NAME's client certificate and WireGuard key KEY
reg() {
  curl -sk --max-time 10 --cert "$d/$1.crt" --key "$d/$1.key" -H 'content-type: application/json' \
    -d "{\"client_public_key\":\"$2\",\"port_policy\":{\"ports\":[{\"port\":8080,\"pp\":false}],\"restrict_mode\":true}}" \
    "https://$RPC/prpc/RegisterCvm?json"
}
k1=$(wg genkey | wg pubkey); k2=$(wg genkey | wg pubkey)
r1=$(reg cvm1 "$k1")
check "RegisterCvm: the first instance gets 10.0.0.2" 10.0.0.2 "$(jq -r .wg.client_ip <<<"$r1")"
check "the WireGuard server is this gateway (pk, ip CIDR, endpoint)" \
  "$(wg pubkey <<<"$gwkey") 10.0.0.1/24 192.0.2.1:51820" \
  "$(jq -r '.wg.servers[0] | "\(.pk) \(.ip) \(.endpoint)"' <<<"$r1")"
check "agent config (external_port, internal_port, domain, ns prefix)" "8443 8090 app.test _dstack-app-address" \
  "$(jq -r '.agent | "\(.external_port) \(.internal_port) \(.domain) \(.app_address_ns_prefix)"' <<<"$r1")"
check "gateways lists this node" "1 10.0.0.1/24" "$(jq -r '"\(.gateways | length) \(.gateways[0].wg_ip)"' <<<"$r1")"
r2=$(reg cvm2 "$k2")
check "a second instance gets 10.0.0.3" 10.0.0.3 "$(jq -r .wg.client_ip <<<"$r2")"
k1b=$(wg genkey | wg pubkey)
check "re-registration (a new key) keeps the address" 10.0.0.2 "$(reg cvm1 "$k1b" | jq -r .wg.client_ip)"
check_match "a key another instance holds is refused" '"error": ".*used by another instance' "$(reg cvm2 "$k1b")"
check_match "a key that is not 32 bytes is refused" '"error": "client_public_key must be the base64 of 32 bytes"' \
  "$(reg cvm1 "$(printf 'short' | base64)")"
out=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' --cert "$d/foreign.crt" --key "$d/foreign.key" \
  -H 'content-type: application/json' -d "{\"client_public_key\":\"$k2\"}" "https://$RPC/prpc/RegisterCvm?json" 2>&1)
check "a certificate from another CA fails the TLS handshake" 000 "$out"
out=$(curl -sk --max-time 10 -w ' %{http_code}' -H 'content-type: application/json' \
  -d "{\"client_public_key\":\"$k2\"}" "https://$RPC/prpc/RegisterCvm?json")
check_match "no client certificate: 400 naming what is required" '"error": "a client certificate issued through the KMS is required".* 400$' "$(tr -d '\n' <<<"$out")"
check "legacy prefix Tproxy.RegisterCvm" 10.0.0.3 "$(curl -sk --max-time 10 --cert "$d/cvm2.crt" --key "$d/cvm2.key" \
  -H 'content-type: application/json' -d "{\"client_public_key\":\"$k2\"}" "https://$RPC/prpc/Tproxy.RegisterCvm?json" | jq -r .wg.client_ip)"
check "Info (no client certificate needed)" "app.test 8443" \
  "$(curl -sk --max-time 10 "https://$RPC/prpc/Info?json" | jq -r '"\(.base_domain) \(.external_port)"')"
check "AcmeInfo answers empty fields" '""' "$(curl -sk --max-time 10 "https://$RPC/prpc/AcmeInfo?json" | jq .account_uri)"
check "GET /health" OK "$(curl -sk --max-time 10 "https://$RPC/health")"
check "Gateway.Info is not a route (upstream: only the Tproxy. prefix)" 400 \
  "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 10 "https://$RPC/prpc/Gateway.Info?json")"

# ---- admin ----
check "admin without a token: 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://$ADMIN/prpc/Status?json")"
st=$(curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" "http://$ADMIN/prpc/Status?json")
check "admin Status lists both instances (ids, IPs, app, base domain)" \
  "$iid1 10.0.0.2 app.test,$iid2 10.0.0.3 app.test" \
  "$(jq -r '[.hosts[] | "\(.instance_id) \(.ip) \(.base_domain)"] | join(",")' <<<"$st")"
check "X-Admin-Token and the bare /GetMeta path" '2 0' \
  "$(curl -s --max-time 10 -H "X-Admin-Token: $TOKEN" "http://$ADMIN/GetMeta?json" | jq -r '"\(.registered) \(.online)"')"
check "?token= on a GET, Admin. prefix, GetInfo" "true 10.0.0.3" \
  "$(curl -s --max-time 10 "http://$ADMIN/prpc/Admin.GetInfo?id=$iid2&token=$TOKEN" | jq -r '"\(.found) \(.info.ip)"')"
check "the reported port policy" "8080 true" "$(curl -s --max-time 10 -H "X-Admin-Token: $TOKEN" \
  "http://$ADMIN/prpc/GetInstancePortPolicy?instance_id=$iid1" | jq -r '"\(.effective.ports[0].port) \(.effective.restrict_mode)"')"
curl -s --max-time 10 -H "X-Admin-Token: $TOKEN" -H 'content-type: application/json' \
  -d "{\"instance_id\":\"$iid1\",\"port_policy\":{\"ports\":[{\"port\":443,\"pp\":true}]}}" \
  "http://$ADMIN/prpc/SetInstancePortPolicy?json" >/dev/null
check "SetInstancePortPolicy: the override wins" "443 true" "$(curl -s --max-time 10 -H "X-Admin-Token: $TOKEN" \
  "http://$ADMIN/prpc/GetInstancePortPolicy?instance_id=$iid1" | jq -r '"\(.effective.ports[0].port) \(.effective.ports[0].pp)"')"
check "the snapshot carries the override" true "$("$MOONSTACK" repl "$d/gw.ctl" -e "gw.routes().instances['$iid1'].ports[443].pp" 2>&1)"
curl -s --max-time 10 -H "X-Admin-Token: $TOKEN" -H 'content-type: application/json' -d '{"id":0,"status":"down"}' \
  "http://$ADMIN/prpc/SetNodeStatus?json" >/dev/null
check_match "node down: RegisterCvm refused" '"error": "this gateway node is down' "$(reg cvm1 "$k1b")"
curl -s --max-time 10 -H "X-Admin-Token: $TOKEN" -H 'content-type: application/json' -d '{"id":0,"status":"up"}' \
  "http://$ADMIN/prpc/SetNodeStatus?json" >/dev/null
check "node up again: registered" 10.0.0.2 "$(reg cvm1 "$k1b" | jq -r .wg.client_ip)"
m=$(curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" "http://$ADMIN/metrics")
check_match "/metrics: registered instances" '^moonstack_gateway_registered_instances 2$' "$(grep '^moonstack_gateway_registered_instances ' <<<"$m")"
check_match "/metrics: refusals by reason" 'registration_refusals_total\{reason="einuse"\} 1' "$m"

# ---- control socket, persistence ----
check "control socket: gw.instances()" "2 10.0.0.2" \
  "$("$MOONSTACK" repl "$d/gw.ctl" -e '#gw.instances() .. " " .. gw.instances()[1].ip' 2>&1 | tr -d '"')"
check "the state file is 0600" 600 "$(stat -c %a "$d/gw-data/gateway-state.json")"
kill -TERM "$GPID"; wait "$GPID"
check "SIGTERM: exit 0" 0 $?
start_gateway
check "after a restart the instances keep their addresses" "10.0.0.2 10.0.0.3" \
  "$("$MOONSTACK" repl "$d/gw.ctl" -e 'gw.instances()[1].ip .. " " .. gw.instances()[2].ip' 2>&1 | tr -d '"')"
k3=$(wg genkey | wg pubkey)
check "and re-registration still answers the same address" 10.0.0.3 "$(reg cvm2 "$k3" | jq -r .wg.client_ip)"
# once seen in CI under ASan (not reproduced since): the restarted gateway gone right after its
# "running" line; say whether it lives and what it logged
if ! kill -0 "$GPID" 2>/dev/null || [ "$failed" -gt 0 ]; then
  not_ok "the restarted gateway runs" "$(tail -15 "$d/gw.log")"
fi
kill -TERM "$GPID"; wait "$GPID"
kill -TERM "$KPID"; wait "$KPID" 2>/dev/null
finish
