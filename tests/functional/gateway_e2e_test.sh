#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M10 end to end: a client -> the gateway -> WireGuard (wireguard-go) -> a CVM on the VMM's
# process backend that registered itself over mutual RA-TLS -> its app. All in network
# namespaces this test creates (root, /dev/net/tun, wireguard-go): the test's own (KMS,
# gateway, VMM on loopback; the gateway's WireGuard hub wg-e2e*), one per CVM (made by the VMM,
# the hub's UDP endpoint and the KMS/gateway URLs forwarded in), and the client's (a veth pair:
# it reaches only the proxy's address 10.99.0.1).
#   1. a real KMS (`moonstack sim init`, dev auth naming the gateway's app id), a real gateway
#      (rpc with a certificate the KMS root issued carrying that app id, the hub, the proxy with
#      a wildcard certificate of *.app.test, admin with a token), a real VMM (process backend,
#      a netns per CVM, udp_forwards to the hub, kms_urls and gateway_urls);
#   2. two CVMs of one gateway_enabled, kms_enabled bash app (HTTP on 8080 and 9090, its own TLS
#      on 8443; port_policy 8080 + 8443, restrict_mode) and one of another app with no
#      port_policy: each agent gets its client certificate from the KMS's SignCert, registers,
#      brings up dstack-wg0; the admin Status lists the three instances with a handshake;
#   3. https://<app_id>-8080.app.test (TLS terminated by the gateway): the body, a 1 MiB body's
#      digest; https://<instance_id>-8080... reaches exactly that instance; the other app by
#      its app id (no port_policy: no restriction);
#   4. https://<app_id>-8443s.app.test (passthrough): the certificate the client sees is the
#      app's own (not the gateway's) and the body;
#   5. refused: an unknown app id, a port outside the restrict_mode policy (the app serves it);
#      a removed VM's instance route fails while the app's route reaches the other instance;
#      once all are gone and recycled (recycle.timeout lowered by SIGHUP) the app is unknown;
#   6. everything (VMs, daemons, wireguard-go, interfaces, namespaces) goes at exit.
source "$(dirname "$0")/lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null \
      || ! command -v wg >/dev/null; then
    not_ok "a private network namespace, /dev/net/tun, wireguard-go and wg (run as root)"
    finish
    exit 1
  fi
fi
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/proxy_lib.sh"

d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
CPID='' KPID='' GPID='' VMM_PID=''
# stop PID: SIGTERM, up to 5 s to exit, then SIGKILL
stop() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  local i
  for i in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
# at exit, however it exits (before the VMM's own kill of vmm_start): the VMs removed through
# the VMM (their processes, port mappers and cgroups), the VMM, anything a crash left under the
# run dir, the gateway (its wireguard-go and interface), the KMS, the client's namespace. The
# PID namespace ends whatever is left should the test itself be killed.
cleanup() {
  local v p
  if [ -n "$VMM_PID" ] && [ -S "$d/vmm.sock" ]; then
    for v in $(rpc Status '{}' 2>/dev/null | jq -r '.vms[]?.id' 2>/dev/null); do
      rpc RemoveVm "{\"id\":\"$v\"}" >/dev/null 2>&1
    done
  fi
  stop "$VMM_PID"
  for p in $(procs_under "$d/run"); do kill -KILL "$p" 2>/dev/null; done
  stop "$GPID"
  stop "$KPID"
  [ -n "$CPID" ] && { kill -KILL "$CPID"; wait "$CPID"; } 2>/dev/null
  true
}
defer cleanup
GW_APP=$(openssl rand -hex 20) # the gateway's app id: the KMS tells the CVMs to expect it
BASE=app.test
HUB_IF=wg-e2e$MOONSTACK_IN_NS
HUB_IF=${HUB_IF:0:15}

# ---- the client's namespace: a veth pair, the gateway side 10.99.0.1 ----
unshare -n sleep 1000 &
CPID=$!
wait_for 5 sh -c "[ \"\$(readlink /proc/$CPID/ns/net)\" != \"\$(readlink /proc/self/ns/net)\" ]"
CNS=/proc/$CPID/ns/net
VETH=ve-e2e$MOONSTACK_IN_NS
VETH=${VETH:0:15}
if ip link add "$VETH" type veth peer name eth0 netns "$CPID" && ip addr add 10.99.0.1/24 dev "$VETH" &&
    ip link set "$VETH" up && nsenter --net="$CNS" sh -c \
    'ip link set lo up && ip addr add 10.99.0.2/24 dev eth0 && ip link set eth0 up'; then
  ok "the client's namespace (10.99.0.2) is joined to the gateway's address 10.99.0.1"
else
  not_ok "the client's namespace"; finish; exit 1
fi
# client ARGS...: a command in the client's namespace
client() { nsenter --net="$CNS" "$@"; }

# ---- 1. KMS ----
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 \
  || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'dev', gateway_app_id = '$GW_APP' },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
  image = { verify = false }, -- process images have no registered boot measurements (M13)
}
EOF
"$MOONSTACK" kms -c "$d/kms.lua" >"$d/kms.log" 2>&1 &
KPID=$!
wait_for 20 grep -q 'KMS ready' "$d/kms.log" || { not_ok "KMS started" "$(cat "$d/kms.log")"; finish; exit 1; }
kport=$(sed -n 's/.*KMS ready.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$d/kms.log" | head -1)
ok "KMS started (:$kport)"

# ---- 1. gateway: rpc certificate from the KMS root with the gateway app id ----
check "the gateway's rpc certificate, issued by the KMS root, names the gateway app id" "$GW_APP" \
  "$("$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/gateway_rpc_cert.lua" "$d" "$d/kms-keys" "$GW_APP" 2>&1)"
gw_cert "$d" "$BASE" # the proxy's wildcard certificate (*.app.test): $d/cert.pem, $d/key.pem
printf 'e2e-admin-%s\n' "$RANDOM$RANDOM$RANDOM" >"$d/admin.token"
chmod 600 "$d/admin.token"
TOKEN=$(cat "$d/admin.token")
gwkey=$(wg genkey)
gw_config() { # gw_config RECYCLE_TIMEOUT
  cat >"$d/gateway.lua" <<EOF
return {
  proxy = { listen = { host = '10.99.0.1', port = 0 }, base_domain = '$BASE',
    certs = { { cert = '$d/cert.pem', key = '$d/key.pem' } }, workers = 2,
    timeouts = { connect = 2, handshake = 5 } },
  rpc = { listen = { host = '127.0.0.1', port = 0 }, kms_ca = '$d/kms-keys/root-ca.crt',
    cert = '$d/rpc.pem', key = '$d/rpc.key' },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
  wg = { private_key = '$gwkey', interface = '$HUB_IF', listen_port = 51820,
    endpoint = '127.0.0.1:51820', refresh_interval = 0.3 },
  data_dir = '$d/gw-data', control = '$d/gw.ctl',
  recycle = { enabled = true, interval = 0.5, timeout = $1 },
}
EOF
}
gw_config 3600
"$MOONSTACK" gateway -c "$d/gateway.lua" >"$d/gw.log" 2>&1 &
GPID=$!
wait_for 30 grep -q 'gateway ready' "$d/gw.log" || { not_ok "gateway started" "$(tail -20 "$d/gw.log")"; finish; exit 1; }
RPC=$(sed -n 's/.*gateway ready.*"rpc":"[0-9.]*:\([0-9]*\)".*/\1/p' "$d/gw.log" | tail -1)
ADMIN=$(sed -n 's/.*gateway ready.*"admin":"\([0-9.:]*\)".*/\1/p' "$d/gw.log" | tail -1)
PPORT=$(sed -n 's/.*gateway ready.*"proxy":"[0-9.]*:\([0-9]*\)".*/\1/p' "$d/gw.log" | tail -1)
check_match "gateway started (rpc, admin, proxy on 10.99.0.1, hub $HUB_IF)" '^[0-9]+ [0-9.]+:[0-9]+ [0-9]+ 10\.0\.0\.1/24$' \
  "$RPC $ADMIN $PPORT $(ip -o -4 addr show "$HUB_IF" 2>/dev/null | awk '{print $4}')"
admin() { curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" "http://$ADMIN/prpc/$1?json"; }

# ---- 1. VMM: a netns per CVM, the hub's UDP endpoint forwarded in ----
vmm_image "$d/images" proc || { finish; exit 1; }
cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  kms_urls = { 'https://localhost:$kport' }, kms_ca = '$d/kms-keys/root-ca.crt',
  gateway_urls = { 'https://localhost:$RPC' },
  process = { sim_dir = '$d/sim', network = 'netns', udp_forwards = { '127.0.0.1:51820' } },
  stop_vms_on_exit = true,
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=unix:$d/vmm.sock
ok "VMM started"

# ---- 2. the app: HTTP on 8080 (a 1 MiB file too) and 9090, its own TLS on 8443 ----
cat >"$d/app.sh" <<'EOF'
set -e
mkdir -p www
MARK=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "hello from instance $MARK" > www/index.html
head -c 1048576 /dev/urandom > www/big.bin
echo "big sha256 $(sha256sum www/big.bin | cut -d' ' -f1)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout tls.key \
  -out tls.crt -days 1 -subj /CN=the-app-itself -addext 'subjectAltName=DNS:*.app.test' 2>/dev/null
echo "tls $(openssl x509 -in tls.crt -noout -fingerprint -sha256)"
python3 -u -c '
import http.server, ssl, sys
mark = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("tls hello from instance %s\n" % mark).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain("tls.crt", "tls.key")
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()' "$MARK" &
python3 -u -m http.server 9090 --bind 0.0.0.0 --directory www >/dev/null 2>&1 &
echo "mark $MARK"
exec python3 -u -m http.server 8080 --bind 0.0.0.0 --directory www
EOF
compose=$(jq -cn --rawfile s "$d/app.sh" '{manifest_version:2, name:"e2e-web", runner:"bash",
  kms_enabled:true, gateway_enabled:true, bash_script:$s,
  port_policy:{ports:[{port:8080,pp:false},{port:8443,pp:false}], restrict_mode:true}}')
vm1=$(rpc CreateVm "$(create_body e2e-1 proc "$compose")" | jq -r .id)
check "CreateVm (the first instance)" 200 "$(rpc_status)"
vm2=$(rpc CreateVm "$(create_body e2e-2 proc "$compose")" | jq -r .id)
check "CreateVm (the second instance of the same app)" 200 "$(rpc_status)"
# another app, with no port_policy in its app-compose (upstream's default: no restriction)
plain=$(jq -cn '{manifest_version:2, name:"e2e-plain", runner:"bash", kms_enabled:true,
  gateway_enabled:true, bash_script:"MARK=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d \" \\n\")
mkdir -p www && echo \"hello from the plain app $MARK\" > www/index.html && echo \"mark $MARK\"
exec python3 -u -m http.server 8080 --bind 0.0.0.0 --directory www"}')
vm3=$(rpc CreateVm "$(create_body e2e-3 proc "$plain")" | jq -r .id)
check "CreateVm (another app, without a port_policy)" 200 "$(rpc_status)"

# info VM: "app_id instance_id" from the CVM's agent (its dstack.sock)
info() {
  curl -s --max-time 5 --unix-socket "$d/run/$1/dstack.sock" http://localhost/Info | jq -r '"\(.app_id) \(.instance_id)"'
}
for v in "$vm1" "$vm2" "$vm3"; do
  wait_for 60 grep -q 'mark ' "$d/run/$v/serial.log" ||
    { not_ok "the app of $v started" "$(tail -20 "$d/run/$v/stderr.log" "$d/run/$v/serial.log" 2>&1)"; finish; exit 1; }
done
read -r APP IID1 <<<"$(info "$vm1")"
read -r APP2 IID2 <<<"$(info "$vm2")"
read -r APP3 IID3 <<<"$(info "$vm3")"
mark_of() { grep -o 'mark [0-9a-f]*' "$d/run/$1/serial.log" | tail -1 | cut -d' ' -f2; }
M1=$(mark_of "$vm1"); M2=$(mark_of "$vm2"); M3=$(mark_of "$vm3")
check_match "the CVMs booted through the KMS: the first two share an app id, all have an instance id and a mark" \
  '^([0-9a-f]{40}) \1 [0-9a-f]{40}( [0-9a-f]{40}){3}( [0-9a-f]{16}){3}$' "$APP $APP2 $APP3 $IID1 $IID2 $IID3 $M1 $M2 $M3"
check "... all different but the first two's app id" "3 3 2" \
  "$(printf '%s\n' "$IID1" "$IID2" "$IID3" | sort -u | wc -l) $(printf '%s\n' "$M1" "$M2" "$M3" | sort -u | wc -l) $(printf '%s\n' "$APP" "$APP2" "$APP3" | sort -u | wc -l)"

# the gateway lists the three instances (admin Status) with a handshake within the last minute
registered() {
  admin Status | jq -e --arg a "$APP" --arg a3 "$APP3" --arg i1 "$IID1" --arg i2 "$IID2" \
    --arg i3 "$IID3" --argjson now "$(date +%s)" \
    '[.hosts[] | select((.app_id == $a and (.instance_id == $i1 or .instance_id == $i2)
      or .app_id == $a3 and .instance_id == $i3) and ($now - (.latest_handshake | tonumber)) < 60)]
      | length == 3'
}
# what each side of the tunnels saw (for a failure's message): the hub, each CVM's UDP sockets,
# its dstack-wg0 (UAPI, no key), its agent's gateway log lines, the gateway's last lines
tunnels() {
  local v
  admin Status; echo; wg show "$HUB_IF"
  for v in "$vm1" "$vm2" "$vm3"; do
    echo "== $v"
    nsenter --net="/proc/$(jq -r .pid "$d/run/$v/process.json")/ns/net" ss -uapn 2>&1
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"get=1\n\n")
print(s.recv(65536).decode())' "$d/run/$v/state/gateway/dstack-wg0.sock" 2>&1 | grep -v private_key
    grep -h 'gateway\|wg' "$d/run/$v/stderr.log" "$d/run/$v/serial.log" | tail -8
  done
  tail -5 "$d/gw.log"
}
if wait_for 60 registered; then
  ok "admin Status: the three instances registered with a recent WireGuard handshake"
else
  not_ok "admin Status: the three instances registered with a recent WireGuard handshake" "$(tunnels)"
  finish; exit 1
fi
check "the hub has the three peers, AllowedIPs their /32" "10.0.0.2/32 10.0.0.3/32 10.0.0.4/32" \
  "$(wg show "$HUB_IF" allowed-ips | cut -f2 | sort | tr '\n' ' ' | sed 's/ $//')"
check "each CVM has its own dstack-wg0 with its address" "10.0.0.2/32 10.0.0.3/32 10.0.0.4/32" \
  "$(for v in "$vm1" "$vm2" "$vm3"; do nsenter --net="/proc/$(jq -r .pid "$d/run/$v/process.json")/ns/net" \
    ip -o -4 addr show dstack-wg0 | awk '{print $4}'; done | sort | tr '\n' ' ' | sed 's/ $//')"
check "each agent registered once over mutual RA-TLS (its ids from its KMS client certificate)" "1 1 1" \
  "$(for i in "$IID1" "$IID2" "$IID3"; do grep -c "CVM registered.*\"instance_id\":\"$i\"" "$d/gw.log"; done | tr '\n' ' ' | sed 's/ $//')"

# ---- 3. TLS terminated by the gateway ----
# get NAME PATH [CURL ARGS...]: GET https://NAME.app.test:PORT/PATH from the client's namespace,
# the gateway's certificate checked against its wildcard certificate
get() {
  local name=$1 path=$2; shift 2
  client curl -sS --max-time 10 --cacert "$d/cert.pem" --resolve "$name.$BASE:$PPORT:10.99.0.1" \
    "$@" "https://$name.$BASE:$PPORT/$path"
}
body=$(get "$APP-8080" index.html 2>&1)
check_match "https://<app_id>-8080: the app's body, through the gateway's TLS and WireGuard" \
  "^hello from instance ($M1|$M2)\$" "$body"
big=$(get "$APP-8080" big.bin | sha256sum | cut -d' ' -f1)
want1=$(grep -o 'big sha256 [0-9a-f]*' "$d/run/$vm1/serial.log" | cut -d' ' -f3)
want2=$(grep -o 'big sha256 [0-9a-f]*' "$d/run/$vm2/serial.log" | cut -d' ' -f3)
if [ "$big" = "$want1" ] || [ "$big" = "$want2" ]; then ok "1 MiB body: its SHA-256 is the app's file's"
else not_ok "1 MiB body: its SHA-256 is the app's file's" "got $big, the apps have $want1 / $want2"; fi
# the dashboard's gateway part on the admin listener (M11): the instances with their handshake
# ages, the hub's interface, the connections counted
feed=$(curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" "http://$ADMIN/dashboard/feed?since=0")
check "dashboard feed: the three instances with a handshake age under a minute" 3 \
  "$(printf '%s' "$feed" | jq '[.snapshot.instances[] | select(.handshake_age != null and .handshake_age < 60)] | length')"
check "... the hub's interface" "$HUB_IF" "$(printf '%s' "$feed" | jq -r .snapshot.wg.interface)"
check_match "... the connections accepted so far" '^[1-9][0-9]*$' "$(printf '%s' "$feed" | jq -r .snapshot.conns.accepted)"
check "https://<instance_id 1>-8080 reaches that instance" "hello from instance $M1" "$(get "$IID1-8080" index.html 2>&1)"
check "https://<instance_id 2>-8080 reaches that instance" "hello from instance $M2" "$(get "$IID2-8080" index.html 2>&1)"
check "... and its 1 MiB body" "$want2" "$(get "$IID2-8080" big.bin | sha256sum | cut -d' ' -f1)"
check "an app without a port_policy is reachable (<app_id>-8080 of the other app)" \
  "hello from the plain app $M3" "$(get "$APP3-8080" index.html 2>&1)"
issuer=$(client sh -c "echo | openssl s_client -connect 10.99.0.1:$PPORT -servername $APP-8080.$BASE 2>/dev/null" |
  openssl x509 -noout -fingerprint -sha256 2>&1)
check "terminated: the client sees the gateway's wildcard certificate" \
  "$(openssl x509 -in "$d/cert.pem" -noout -fingerprint -sha256)" "$issuer"

# ---- 4. passthrough: the app terminates TLS itself ----
seen=$(client sh -c "echo | openssl s_client -connect 10.99.0.1:$PPORT -servername $IID1-8443s.$BASE 2>/dev/null" |
  openssl x509 -noout -fingerprint -sha256 2>&1)
check "passthrough (<instance_id>-8443s): the client sees the app's own certificate" \
  "$(grep -o 'tls sha256 Fingerprint=.*' "$d/run/$vm1/serial.log" | tail -1 | sed 's/^tls //')" "$seen"
check "... which is not the gateway's" different \
  "$([ "$seen" != "$(openssl x509 -in "$d/cert.pem" -noout -fingerprint -sha256)" ] && echo different || echo same)"
check "passthrough: the body from the app's TLS server" "tls hello from instance $M1" \
  "$(get "$IID1-8443s" "" -k 2>&1)"
check_match "passthrough by app id (<app_id>-8443s)" "^tls hello from instance ($M1|$M2)\$" \
  "$(get "$APP-8443s" "" -k 2>&1)"
subject=$(client sh -c "echo | openssl s_client -connect 10.99.0.1:$PPORT -servername $APP-8443s.$BASE 2>/dev/null" |
  openssl x509 -noout -subject 2>&1)
check_match "... presenting the app's certificate (CN the-app-itself)" 'CN ?= ?the-app-itself' "$subject"

# ---- 5. refusals ----
# refusals REASON: the data path's refusals for REASON (/metrics on the admin listener)
refusals() {
  curl -s --max-time 10 -H "Authorization: Bearer $TOKEN" "http://$ADMIN/metrics" |
    awk -v r="moonstack_gateway_refused_total{reason=\"$1\"}" '$1 == r { n = $2 } END { print n + 0 }'
}
# refused_row NAME REASON NAME-LABEL: a request for NAME fails and counts one REASON refusal
refused_row() {
  local before code
  before=$(refusals "$2")
  code=$(get "$1" index.html -o /dev/null -w '%{http_code}' 2>/dev/null)
  check "$3: refused (no HTTP answer; one '$2' refusal counted)" "000 $((before + 1))" "$code $(refusals "$2")"
}
refused_row "$APP-9090" port-policy "a port outside the restrict_mode policy (the app serves 9090 in the CVM)"
refused_row "$IID1-9090" port-policy "... by instance id too"
refused_row "$(printf '%040x' 12345)-8080" unknown-id "an unknown app id"
# remove the second VM: its instance route fails, the app's route reaches the first
rpc RemoveVm "{\"id\":\"$vm2\"}" >/dev/null
check "RemoveVm (the second instance)" 200 "$(rpc_status)"
refused_row "$IID2-8080" connect "the removed instance's route (its WireGuard peer silent)"
ok_app=0
for _ in 1 2 3 4; do
  [ "$(get "$APP-8080" index.html 2>/dev/null)" = "hello from instance $M1" ] && ok_app=$((ok_app + 1))
done
check "the app's route reaches the remaining instance (4 of 4)" 4 "$ok_app"
rpc RemoveVm "{\"id\":\"$vm1\"}" >/dev/null
check "RemoveVm (the first instance)" 200 "$(rpc_status)"
rpc RemoveVm "{\"id\":\"$vm3\"}" >/dev/null
check "RemoveVm (the other app's)" 200 "$(rpc_status)"
# recycle.timeout lowered to 1 s by a reload (SIGHUP): the silent instances go, with their peers
gw_config 1
kill -HUP "$GPID"
if wait_for 15 sh -c "[ \"\$(wg show $HUB_IF peers | grep -c .)\" = 0 ] && [ \"\$('$MOONSTACK' repl '$d/gw.ctl' -e '#gw.instances()' 2>/dev/null)\" = 0 ]"; then
  ok "recycled: no instance left, no peer on the hub"
else
  not_ok "recycled: no instance left, no peer on the hub" "$(wg show "$HUB_IF"; "$MOONSTACK" repl "$d/gw.ctl" -e 'gw.instances()' 2>&1)"
fi
refused_row "$APP-8080" unknown-id "after the recycle, the app's route"
check "no CVM process left (/proc walk)" "" "$(procs_under "$d/run")"

# ---- 6. orderly stop ----
kill -TERM "$GPID"; wait "$GPID"
check "gateway: SIGTERM, exit 0" 0 $?
GPID=
check "the hub's interface is gone with it" no "$(ip link show "$HUB_IF" >/dev/null 2>&1 && echo yes || echo no)"
kill -TERM "$VMM_PID"; wait "$VMM_PID"
check "VMM: SIGTERM, exit 0" 0 $?
VMM_PID=
check "no wireguard-go left (this test's PID namespace)" "" "$(pgrep -x wireguard-go)"
finish
