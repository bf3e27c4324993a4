#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two gateways sharing their state on a real 3-member etcd (issue M12 item 3), in the test's
# own namespaces, each with a real WireGuard device (wireguard-go): a CVM registered on A over
# mutual RA-TLS (a real KMS's SignCert certificates, gateway_lib.sh) appears in B's Status,
# routes and `wg show` peers, and the reverse; RegisterCvm lists both nodes as WireGuard
# servers; a third gateway whose client_ip_range overlaps A's refuses to start; `kill -9` of
# the etcd leader while registrations run loses no acknowledged one and both gateways keep
# serving; `kill -9` of a gateway, its local state file removed, and a restart: every
# acknowledged instance is back (from etcd); etcd fully down: both keep their routes and
# peers, /health, Status and the dashboard say `etcd: down`, RegisterCvm is refused; etcd
# back: they say `up` and registrations flow again.
source "$(dirname "$0")/lib.sh"

need_tools etcd etcdctl wireguard-go wg jq
need_netns_tun
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/etcd_lib.sh"
source "$(dirname "$0")/gateway_lib.sh"

etcd_cluster_start "$d/etcd" || { finish; exit 1; }

# more simulated CVMs (cvm1, cvm2 come from gateway_lib.sh; byte 3 is the foreign one)
declare -A IID
IID[cvm1]=$iid1; IID[cvm2]=$iid2
for i in 4 5 6 7 8 9; do
  IID[cvm$i]=$("$MOONSTACK" run "$d/certs.lua" "$d" "$KURL" "$d/kms-keys/root-ca.crt" "cvm$i" "$i" 2>"$d/certs$i.err") ||
    not_ok "SignCert for cvm$i" "$(cat "$d/certs$i.err")"
done

printf 'admin-secret-%s\n' "$RANDOM$RANDOM" >"$d/admin.token"; chmod 600 "$d/admin.token"
TOKEN=$(cat "$d/admin.token")
# gwconf NAME NODE_ID WG_IP RANGE LISTEN_PORT
gwconf() {
  local key; key=$(wg genkey)
  cat >"$d/$1.lua" <<EOF
return {
  proxy = { listen = { host = '127.0.0.1', port = 0 }, base_domain = 'app.test' },
  rpc = { listen = { host = '127.0.0.1', port = 0 }, kms_ca = '$d/kms-keys/root-ca.crt' },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
  wg = { private_key = '$key', endpoint = '127.0.0.1:$5', interface = 'wg-$1', listen_port = $5,
    ip = '$3/24', reserved_net = { '10.0.0.0/29' }, client_ip_range = '$4', refresh_interval = 0.5 },
  data_dir = '$d/$1-data', control = '$d/$1.ctl', log = { level = 'debug' },
  cluster = { etcd = { endpoints = { 'http://127.0.0.1:23791', 'http://127.0.0.1:23792',
    'http://127.0.0.1:23793' }, prefix = '/ms', timeout_ms = 4000, lease_ttl = 3,
    watch_interval_ms = 200 }, node_id = $2 },
}
EOF
}
gwconf a 1 10.0.0.1 10.0.0.64/26 51821
gwconf b 2 10.0.0.2 10.0.0.128/26 51822
gwconf c 3 10.0.0.3 10.0.0.96/27 51823 # inside A's range

declare -A GPID RPC ADMIN
start_gw() {
  daemon_start gateway "$d/$1.lua" "$d/$1.log" 'gateway ready' 30
  GPID[$1]=$DAEMON_PID
  RPC[$1]=$(ready_field "$d/$1.log" 'gateway ready' rpc)
  ADMIN[$1]=$(ready_field "$d/$1.log" 'gateway ready' admin)
}
start_gw a
start_gw b
ok "gateways A and B started on etcd"

# reg GW CVM: RegisterCvm on gateway GW with CVM's client certificate and its WireGuard key
declare -A KEY
for c in cvm1 cvm2 cvm4 cvm5 cvm6 cvm7 cvm8 cvm9; do KEY[$c]=$(wg genkey | wg pubkey); done
reg() {
  curl -sk --max-time 10 --cert "$d/$2.crt" --key "$d/$2.key" -H 'content-type: application/json' \
    -d "{\"client_public_key\":\"${KEY[$2]}\"}" "https://${RPC[$1]}/prpc/RegisterCvm?json"
}
status() { curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://${ADMIN[$1]}/prpc/Status?json"; }
hosts() { status "$1" | jq -r '[.hosts[].instance_id] | sort | join(",")'; }
peers() { wg show "wg-$1" peers 2>/dev/null | sort | tr '\n' ','; }
has_host() { status "$1" | jq -e --arg i "$2" 'any(.hosts[]; .instance_id == $i)' >/dev/null; }
has_peer() { wg show "wg-$1" peers 2>/dev/null | grep -qxF "$2"; }
wait_eval 10 "status a | jq -e '.nodes | length == 1' && status b | jq -e '.nodes | length == 1'"
check "each sees the other node in etcd (Status.nodes)" "2 1" \
  "$(status a | jq -r '.nodes[0].id') $(status b | jq -r '.nodes[0].id')"

r1=$(reg a cvm1)
ip1=$(jq -r .wg.client_ip <<<"$r1")
check_match "RegisterCvm on A answers an address from A's range" '^10\.0\.0\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])$' "$ip1"
check "its WireGuard servers are both gateways (A first)" \
  "$(wg show wg-a public-key) 10.0.0.1/24 127.0.0.1:51821;$(wg show wg-b public-key) 10.0.0.2/24 127.0.0.1:51822" \
  "$(jq -r '[.wg.servers[] | "\(.pk) \(.ip) \(.endpoint)"] | join(";")' <<<"$r1")"
check "and gateways lists nodes 1 and 2" "1,2" "$(jq -r '[.gateways[].id] | join(",")' <<<"$r1")"
wait_eval 10 "has_host b ${IID[cvm1]}"
check "B's Status lists the CVM registered on A" "${IID[cvm1]} $ip1" \
  "$(status b | jq -r --arg i "${IID[cvm1]}" '.hosts[] | select(.instance_id == $i) | "\(.instance_id) \(.ip)"')"
wait_eval 10 "has_peer b '${KEY[cvm1]}'"
check "B's WireGuard device has its peer (wg show)" "$ip1/32" "$(wg show wg-b allowed-ips | grep -F "${KEY[cvm1]}" | cut -f2)"
check "B's routes include it" "$ip1" \
  "$("$MOONSTACK" repl "$d/b.ctl" -e "gw.routes().instances['${IID[cvm1]}'].ip" 2>&1 | tr -d '"')"
r2=$(reg b cvm2)
ip2=$(jq -r .wg.client_ip <<<"$r2")
check_match "RegisterCvm on B answers an address from B's range" '^10\.0\.0\.(12[89]|1[3-8][0-9]|19[01])$' "$ip2"
wait_eval 10 "has_host a ${IID[cvm2]} && has_peer a '${KEY[cvm2]}'"
check "A lists (Status) and peers (wg show) the CVM registered on B" "$ip2/32" \
  "$(wg show wg-a allowed-ips | grep -F "${KEY[cvm2]}" | cut -f2)"
check "the records in etcd carry the registering node" "1 2" \
  "$(etcdctl_get /ms/gateway/instances/ | grep '^{' | jq -r .node_id | sort | tr '\n' ' ' | sed 's/ $//')"
check_match "B's /health says the cluster state is reachable" '"etcd":"up"' "$(curl -sk --max-time 5 "https://${RPC[b]}/health")"
wait_eval 10 "[ \"\$(etcdctl_get /ms/gateway/conns/ | grep -c '^{')\" = 2 ]"
check "each node's connection counts and liveness are in etcd under its lease" "2 2 4" \
  "$(etcdctl_get /ms/gateway/conns/ | grep -c '^{') $(etcdctl_get /ms/gateway/alive/ | grep -c '^{') \
$(etcdctl --endpoints="$ETCD_EPS" get --prefix /ms/gateway/ -w json | jq '[.kvs[] | select(.lease != null)] | length')"
# SetNodeStatus down on B: etcd says so and A stops offering B to CVMs; up again: back
setnode() { curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"id\":2,\"status\":\"$1\"}" "http://${ADMIN[b]}/prpc/SetNodeStatus?json" >/dev/null; }
setnode down
check "SetNodeStatus down on B: its record in etcd says down" down \
  "$(etcdctl_get /ms/gateway/nodes/2 | grep '^{' | jq -r .status)"
wait_eval 10 "status a | jq -e '.nodes | length == 0'"
check "A's RegisterCvm answer no longer lists B as a WireGuard server" 1 "$(reg a cvm1 | jq '.wg.servers | length')"
setnode up
wait_eval 10 "status a | jq -e '.nodes | length == 1'"
check "B up again: listed again" 2 "$(reg a cvm1 | jq '.wg.servers | length')"

# ---- a third node whose range overlaps A's refuses to start ----
"$MOONSTACK" gateway -c "$d/c.lua" >"$d/c.log" 2>&1 &
cpid=$!
wait_for 20 bash -c "! kill -0 $cpid 2>/dev/null"
wait "$cpid"; crc=$?
check_match "a gateway with an overlapping client_ip_range exits non-zero" '^[1-9]' "$crc"
check_match "naming both ranges" "client_ip_range 10\.0\.0\.96/27 overlaps gateway node 1's 10\.0\.0\.64/26" "$(cat "$d/c.log")"

# ---- kill -9 of the etcd leader while registrations run ----
leader=$(etcd_leader)
check_match "a leader is known" '^[123]$' "$leader"
acked=()
t0=$(date +%s.%N)
etcd_member_kill "$leader"
for n in 4 5 6 7; do
  gw=$([ $((n % 2)) -eq 0 ] && echo a || echo b)
  out=$(reg "$gw" "cvm$n")
  ip=$(jq -r '.wg.client_ip // empty' <<<"$out" 2>/dev/null)
  if [ -n "$ip" ]; then acked+=("cvm$n"); else echo "# cvm$n on $gw: $out"; fi
done
t1=$(date +%s.%N)
check "every registration during the leader's loss was acknowledged" "4" "${#acked[@]}"
echo "# 4 registrations after kill -9 of leader n$leader took $(echo "$t1 - $t0" | bc) s"
want=$(for c in cvm1 cvm2 "${acked[@]}"; do echo "${IID[$c]}"; done | sort | tr '\n' ',' | sed 's/,$//')
check "etcd holds every acknowledged registration" "$want" \
  "$(etcdctl_get /ms/gateway/instances/ | grep '^{' | jq -r .instance_id | sort | tr '\n' ',' | sed 's/,$//')"
wait_eval 10 "[ \"\$(hosts a)\" = '$want' ] && [ \"\$(hosts b)\" = '$want' ]"
check "both gateways list all of them" "$want $want" "$(hosts a) $(hosts b)"
etcd_member_start "$leader"
wait_for 20 etcd_healthy && ok "the killed member rejoined"

# ---- kill -9 of gateway A, its local state removed: the restart reloads from etcd ----
r8=$(reg a cvm8)
ip8=$(jq -r .wg.client_ip <<<"$r8")
kill -KILL "${GPID[a]}"; wait "${GPID[a]}" 2>/dev/null
rm -f "$d/a-data/gateway-state.json"
# its wireguard-go outlives it: the device removed, it exits (as an operator would clean up)
ip link del wg-a 2>/dev/null
wait_for 10 test ! -S /var/run/wireguard/wg-a.sock || rm -f /var/run/wireguard/wg-a.sock
want=$(for c in cvm1 cvm2 "${acked[@]}" cvm8; do echo "${IID[$c]}"; done | sort | tr '\n' ',' | sed 's/,$//')
start_gw a
check "after kill -9 and a restart without its state file, A lists every acknowledged instance" "$want" "$(hosts a)"
check "cvm8 (acknowledged just before the kill) keeps its address" "$ip8" \
  "$(status a | jq -r --arg i "${IID[cvm8]}" '.hosts[] | select(.instance_id == $i) | .ip')"
wait_eval 10 "[ \"\$(peers a | tr ',' '\n' | grep -c .)\" = 7 ]"
check "and its WireGuard device has all 7 peers again" 7 "$(peers a | tr ',' '\n' | grep -c .)"

# ---- etcd fully down ----
for i in 1 2 3; do etcd_member_kill "$i"; done
routes_b_before=$("$MOONSTACK" repl "$d/b.ctl" -e 'local n = 0 for _ in pairs(gw.routes().instances) do n = n + 1 end return n' 2>&1)
wait_eval 15 "curl -sk --max-time 5 'https://${RPC[b]}/health' | grep -q '\"etcd\":\"down\"'"
check_match "etcd down: B's /health still answers 200 and says so" '^200 .*"etcd":"down"' \
  "$(curl -sk --max-time 5 -w '%{http_code} ' -o "$d/h.json" "https://${RPC[b]}/health"; cat "$d/h.json")"
wait_eval 15 "status a | jq -e '.cluster.etcd == \"down\"'"
check_match "A's Status says etcd is down, since when" '^down [0-9]{10}$' "$(status a | jq -r '"\(.cluster.etcd) \(.cluster.since)"')"
check_match "the dashboard snapshot says so too" '"etcd": *"down"' \
  "$(curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://${ADMIN[a]}/dashboard/feed?since=0")"
check "B keeps routing what it knows (7 instances in its routes)" "7 7" \
  "$routes_b_before $("$MOONSTACK" repl "$d/b.ctl" -e 'local n = 0 for _ in pairs(gw.routes().instances) do n = n + 1 end return n' 2>&1)"
check "and its WireGuard peers" 7 "$(peers b | tr ',' '\n' | grep -c .)"
check_match "RegisterCvm is refused while nothing can be acknowledged" '"error": ".*etcd' "$(reg b cvm9)"
for i in 1 2 3; do etcd_member_start "$i"; done
wait_for 20 etcd_healthy && ok "etcd back"
wait_eval 15 "curl -sk --max-time 5 'https://${RPC[b]}/health' | grep -q '\"etcd\":\"up\"'"
check_match "B's /health says up again" '"etcd":"up"' "$(curl -sk --max-time 5 "https://${RPC[b]}/health")"
r9=$(reg b cvm9)
check_match "registrations flow again" '^10\.0\.0\.' "$(jq -r .wg.client_ip <<<"$r9")"
wait_eval 10 "has_host a ${IID[cvm9]} && has_peer a '${KEY[cvm9]}'"
check "and reach A" 8 "$(hosts a | tr ',' '\n' | grep -c .)"

kill -TERM "${GPID[a]}" "${GPID[b]}"; wait "${GPID[a]}" "${GPID[b]}" 2>/dev/null
kill -TERM "$KPID"; wait "$KPID" 2>/dev/null
finish
