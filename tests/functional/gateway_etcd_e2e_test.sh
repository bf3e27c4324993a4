#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Two gateways on a real 3-member etcd, end to end (issue M12 item 3): a CVM on the VMM's
# process backend registers with gateway A only (its agent, over mutual RA-TLS, a real KMS);
# A's answer lists both gateways as WireGuard servers, so the CVM's dstack-wg0 peers with A and
# B; B learns the instance from etcd, peers it and handshakes with it; with A's route to the
# WireGuard network removed (so nothing can travel through A's hub), an HTTPS request to
# https://<app_id>-8080.app.test through B's proxy reaches the app. In network and PID
# namespaces of its own (root, /dev/net/tun, wireguard-go).
source "$(dirname "$0")/lib.sh"

need_tools etcd etcdctl wireguard-go wg jq
need_netns_tun
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/etcd_lib.sh"
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/proxy_lib.sh"

d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
cleanup() {
  local v
  if [ -n "${VMM_PID:-}" ] && [ -S "$d/vmm.sock" ]; then
    for v in $(VMM=unix:$d/vmm.sock rpc Status '{}' 2>/dev/null | jq -r '.vms[]?.id' 2>/dev/null); do
      VMM=unix:$d/vmm.sock rpc RemoveVm "{\"id\":\"$v\"}" >/dev/null 2>&1
    done
  fi
}
defer cleanup
etcd_cluster_start "$d/etcd" || { finish; exit 1; }
GW_APP=$(openssl rand -hex 20)
BASE=app.test

# ---- KMS, naming the gateways' app id ----
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost', listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'dev', gateway_app_id = '$GW_APP' },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
  image = { verify = false },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
ok "KMS started"

# ---- gateways A and B: one rpc certificate of the gateways' app, one wildcard certificate ----
check "the gateways' rpc certificate names their app id" "$GW_APP" \
  "$("$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/gateway_rpc_cert.lua" "$d" "$d/kms-keys" "$GW_APP" 2>&1)"
gw_cert "$d" "$BASE"
printf 'admin-%s\n' "$RANDOM$RANDOM" >"$d/admin.token"; chmod 600 "$d/admin.token"
TOKEN=$(cat "$d/admin.token")
gwconf() { # NAME NODE_ID WG_IP RANGE PORT
  cat >"$d/$1.lua" <<EOF
return {
  proxy = { listen = { host = '127.0.0.1', port = 0 }, base_domain = '$BASE',
    certs = { { cert = '$d/cert.pem', key = '$d/key.pem' } }, workers = 1,
    timeouts = { connect = 3, handshake = 5 } },
  rpc = { listen = { host = '127.0.0.1', port = 0 }, kms_ca = '$d/kms-keys/root-ca.crt',
    cert = '$d/rpc.pem', key = '$d/rpc.key' },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
  wg = { private_key = '$(wg genkey)', interface = 'wg-e$1', listen_port = $5,
    endpoint = '127.0.0.1:$5', ip = '$3/24', reserved_net = { '10.0.0.0/29' },
    client_ip_range = '$4', refresh_interval = 0.3 },
  data_dir = '$d/$1-data', control = '$d/$1.ctl',
  cluster = { etcd = { endpoints = { 'http://127.0.0.1:23791', 'http://127.0.0.1:23792',
    'http://127.0.0.1:23793' }, prefix = '/ms', lease_ttl = 3, watch_interval_ms = 200 },
    node_id = $2 },
}
EOF
}
gwconf a 1 10.0.0.1 10.0.0.64/26 51821
gwconf b 2 10.0.0.2 10.0.0.128/26 51822
declare -A RPC ADMIN PROXY
for g in a b; do
  daemon_start gateway "$d/$g.lua" "$d/$g.log" 'gateway ready' 30
  RPC[$g]=$(ready_field "$d/$g.log" 'gateway ready' rpc)
  ADMIN[$g]=$(ready_field "$d/$g.log" 'gateway ready' admin)
  PROXY[$g]=$(ready_field "$d/$g.log" 'gateway ready' proxy)
done
status() { curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://${ADMIN[$1]}/prpc/Status?json"; }
wait_eval 10 "status a | jq -e '.nodes | length == 1'" && ok "gateway A knows B from etcd"

# ---- the VMM: its CVMs register with A only; both hubs' UDP endpoints forwarded in ----
vmm_image "$d/images" proc || { finish; exit 1; }
cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  kms_urls = { 'https://localhost:$KMS_PORT' }, kms_ca = '$d/kms-keys/root-ca.crt',
  gateway_urls = { 'https://localhost:${RPC[a]##*:}' },
  process = { sim_dir = '$d/sim', network = 'netns',
    udp_forwards = { '127.0.0.1:51821', '127.0.0.1:51822' } },
  stop_vms_on_exit = true,
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=unix:$d/vmm.sock
compose=$(jq -cn '{manifest_version:2, name:"etcd-e2e", runner:"bash", kms_enabled:true,
  gateway_enabled:true, bash_script:"MARK=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d \" \\n\")
mkdir -p www && echo \"hello from $MARK\" > www/index.html && echo \"mark $MARK\"
exec python3 -u -m http.server 8080 --bind 0.0.0.0 --directory www"}')
vm=$(rpc CreateVm "$(create_body etcd-e2e proc "$compose")" | jq -r .id)
check "CreateVm" 200 "$(rpc_status)"
wait_for 60 grep -q 'mark ' "$d/run/$vm/serial.log" ||
  { not_ok "the app started" "$(tail -20 "$d/run/$vm/stderr.log" "$d/run/$vm/serial.log" 2>&1)"; finish; exit 1; }
APP=$(curl -s --max-time 5 --unix-socket "$d/run/$vm/dstack.sock" http://localhost/Info | jq -r .app_id)
MARK=$(grep -o 'mark [0-9a-f]*' "$d/run/$vm/serial.log" | tail -1 | cut -d' ' -f2)

# B: the instance from etcd, as a peer, with a handshake from the CVM
hs_b() { status b | jq -e --arg a "$APP" '[.hosts[] | select(.app_id == $a and (.latest_handshake | tonumber) > 0)] | length == 1'; }
if wait_for 60 hs_b; then
  ok "B lists the instance registered on A, with a WireGuard handshake from the CVM"
else
  not_ok "B lists the instance registered on A, with a WireGuard handshake from the CVM" \
    "$(status b; wg show wg-eb; wg show wg-ea; tail -5 "$d/b.log")"; finish; exit 1
fi
check "the CVM registered with A alone" "1 0" \
  "$(grep -c 'CVM registered' "$d/a.log") $(grep -c 'CVM registered' "$d/b.log")"
# the CVM's dstack-wg0 over its UAPI socket (no private key printed)
uapi() {
  python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"get=1\n\n")
print(s.recv(65536).decode())' "$d/run/$vm/state/gateway/dstack-wg0.sock" 2>&1 | grep -v private_key
}
check "its dstack-wg0 peers with both gateways" "allowed_ip=10.0.0.1/32 allowed_ip=10.0.0.2/32" \
  "$(uapi | grep '^allowed_ip=' | sort | tr '\n' ' ' | sed 's/ $//')"

# nothing can go through A's hub: its route to the WireGuard network removed
ip route del 10.0.0.0/24 dev wg-ea 2>/dev/null
check_match "the WireGuard network is reached through B's device only" 'dev wg-eb' "$(ip route get 10.0.0.70)"
get() { # GATEWAY: GET https://<app>-8080.app.test/ through that gateway's proxy
  local port=${PROXY[$1]##*:}
  curl -sS --max-time 10 --cacert "$d/cert.pem" --resolve "$APP-8080.$BASE:$port:127.0.0.1" \
    "https://$APP-8080.$BASE:$port/index.html"
}
check "HTTPS through gateway B reaches the CVM registered on A" "hello from $MARK" "$(get b 2>&1)"
check_match "B's data path counted it" '"accepted": *[1-9]' \
  "$(curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://${ADMIN[b]}/dashboard/feed?since=0")"
finish
