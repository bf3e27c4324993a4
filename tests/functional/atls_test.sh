#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Attested TLS bound to the session (Atlas's protocol), end to end on a simulated TDX platform:
#   * `moonstack atls fetch` accepts `moonstack atls serve`'s session-bound quote and fetches
#     the upstream's page on the same connection; refuses a quote relayed from another session
#     (a man in the middle forwarding the victim's nonce over its own session: ESESSION), a
#     policy mismatch (EPOLICY), a stale certificate event (a second front on the same CVM
#     recorded its certificate last: ECERT); raw TCP relays through the front;
#   * the same through the gateway's passthrough (`s`) route (the session is still end to end);
#   * the same front with --agent: GetQuote/EmitEvent through a guest agent's dstack.sock;
#   * `moonstack atls proxy`: refuses to start without an allowlist or with a wildcard; relays
#     an allowed target (ws and wss), refuses others before the upgrade; /metrics; drops root;
#   * interop: Atlas's published client (@concrete-security/atlas-node-linux-x64-gnu@0.3.0 from
#     npm, a test copy patched to load on glibc 2.36 and to trust the test CA in place of one of
#     its compiled-in roots, tests/functional/fixtures/atlas_node_compat.py) runs its protocol
#     against our server: TLS, exporter, POST /tdx_quote, answer and event log parsed, the
#     certificate event accepted, then it stops exactly at the DCAP chain (the simulated PCK
#     chain does not lead to Intel's root), with Intel's real collateral at a time it was valid;
#     and it refuses the stale certificate event as ours does.
source "$(dirname "$0")/lib.sh"
need_tools openssl python3 node npm cc
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
FIX=$MOONSTACK_SRC/tests/functional/fixtures
ATLAS_VERSION=0.3.0
ANCHOR=/etc/ssl/certs/Amazon_Root_CA_3.pem # a P-256 root among Atlas's webpki roots

# npm, before the namespaces (no network inside)
if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  ATLAS_CACHE=${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/npm-atlas-$ATLAS_VERSION
  if [ ! -f "$ATLAS_CACHE/node_modules/@concrete-security/atlas-node-linux-x64-gnu/package.json" ]; then
    mkdir -p "$ATLAS_CACHE"
    if ! npm install --prefix "$ATLAS_CACHE" --no-audit --no-fund --loglevel=error \
        "@concrete-security/atlas-node-linux-x64-gnu@$ATLAS_VERSION" >"$ATLAS_CACHE/npm.log" 2>&1; then
      not_ok "npm install @concrete-security/atlas-node-linux-x64-gnu@$ATLAS_VERSION" \
        "$(tail -5 "$ATLAS_CACHE/npm.log")"
      finish
      exit 1
    fi
  fi
  export ATLAS_CACHE
fi
in_test_namespaces "$@" || { finish; exit 1; }
ok "@concrete-security/atlas-node-linux-x64-gnu $(node -p 'require(process.argv[1]).version' \
  "$ATLAS_CACHE/node_modules/@concrete-security/atlas-node-linux-x64-gnu/package.json")"

dir=$(tmpdir)
run_fix() { "$MOONSTACK" run "$FIX/atls_fixture.lua" "$@"; }
"$MOONSTACK" sim init "$dir/sim" >/dev/null || { not_ok "sim init"; finish; exit 1; }

# The test CA: its subject is byte for byte the anchor root's (PrintableString C, O, CN).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
printf '[req]\ndistinguished_name=dn\nstring_mask=nombstr\nprompt=no\n[dn]\nC=US\nO=Amazon\nCN=Amazon Root CA 3\n' \
  >"$dir/ca.cnf"
openssl req -x509 -new -key "$dir/ca.key" -config "$dir/ca.cnf" -days 30 -out "$dir/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE 2>/dev/null
for n in a b m; do run_fix leaf "$dir/ca.pem" "$dir/ca.key" "$dir/$n"; done
check "test CA subject = the anchor root's" \
  "$(openssl x509 -in "$ANCHOR" -noout -subject -nameopt RFC2253,show_type)" \
  "$(openssl x509 -in "$dir/ca.pem" -noout -subject -nameopt RFC2253,show_type)"

# upstreams: an HTTP server and a TCP echo server
echo "hello from the upstream" >"$dir/index.html"
UP=$(free_port)
(cd "$dir" && exec python3 -m http.server "$UP" --bind 127.0.0.1 >/dev/null 2>&1) &
defer "kill $! 2>/dev/null"
ECHO=$(free_port)
python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
def h(c):
    while True:
        d = c.recv(4096)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()
' "$ECHO" &
defer "kill $! 2>/dev/null"

serve() { # serve NAME PORT CERT UPSTREAM_PORT
  "$MOONSTACK" atls serve --listen "127.0.0.1:$2" --upstream "127.0.0.1:$4" \
    --simulator "$dir/sim" --cert "$dir/$3.pem" --key "$dir/$3.key" >"$dir/$1.log" 2>&1 &
  defer "kill $! 2>/dev/null"
  wait_for 15 grep -q 'atls: serving' "$dir/$1.log" || not_ok "$1 started" "$(tail -5 "$dir/$1.log")"
}
PA=$(free_port)
serve serve_a "$PA" a "$UP"
check "serve: the certificate hash it records" \
  "$(openssl x509 -in "$dir/a.pem" -outform DER | sha256sum | cut -d' ' -f1)" \
  "$(sed -n 's/.*certificate sha256 \([0-9a-f]*\).*/\1/p' "$dir/serve_a.log")"

printf '{"type":"dstack_tdx","disable_runtime_verification":true,"allowed_tcb_status":["UpToDate"]}' \
  >"$dir/dev.json"
fetch() { # fetch PORT POLICY [ARGS...]: stdout in $dir/out, stderr in $dir/err, rc in $rc
  local port=$1 policy=$2
  shift 2
  "$MOONSTACK" atls fetch "https://localhost:$port/index.html" --policy "$policy" \
    --simulator "$dir/sim" --ca "$dir/ca.pem" "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
}

# 1. accepted: the quote is bound to this session and the event log names the certificate
start=$SECONDS
fetch "$PA" "$dir/dev.json" --report
check "fetch: exit 0" 0 "$rc"
check "fetch: the upstream's page" "hello from the upstream" "$(cat "$dir/out")"
check_match "fetch: attested, bound, certificate event" \
  'attested: status UpToDate, simulated true, report_data bound to this session, certificate event matches' \
  "$(cat "$dir/err")"
echo "# fetch with attestation: $((SECONDS - start)) s"

# 1b. through the gateway's passthrough (`s`) route: the TLS session is still the client's
#     with the front, so the quote binds to it
run_fix leaf "$dir/ca.pem" "$dir/ca.key" "$dir/g" '*.gw.test'
PS=$(free_port)
serve serve_s "$PS" g "$UP"
PGW=$(free_port)
cat >"$dir/gateway.lua" <<EOF
return { proxy = { listen = { host = '127.0.0.1', port = $PGW }, base_domain = 'gw.test',
  workers = 1 }, debug = { insecure_localhost_backend = true }, log = { level = 'warn' } }
EOF
"$MOONSTACK" gateway -c "$dir/gateway.lua" >"$dir/gateway.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 15 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PGW" || not_ok "gateway started" "$(tail -5 "$dir/gateway.log")"
"$MOONSTACK" atls fetch "https://localhost-${PS}s.gw.test/index.html" --connect "127.0.0.1:$PGW" \
  --policy "$dir/dev.json" --simulator "$dir/sim" --ca "$dir/ca.pem" --report >"$dir/out" 2>"$dir/err"
rc=$?
check "fetch through the gateway's s route: exit 0" 0 "$rc"
[ "$rc" = 0 ] || echo "# $(cat "$dir/err") / $(tail -3 "$dir/gateway.log")"
check "fetch through the gateway's s route: the upstream's page" "hello from the upstream" "$(cat "$dir/out")"
check_match "fetch through the gateway's s route: bound to this session, certificate event" \
  'report_data bound to this session, certificate event matches' "$(cat "$dir/err")"

# a certificate the client does not trust: refused at the handshake, before any quote
"$MOONSTACK" atls fetch "https://localhost:$PA/index.html" --policy "$dir/dev.json" \
  --simulator "$dir/sim" --ca "$dir/sim/root-ca.pem" >"$dir/out" 2>"$dir/err"
check "untrusted certificate: exit 1" 1 $?
check_match "untrusted certificate: ETLS" \
  'REFUSED: ETLS: handshake with localhost: tls handshake: certificate verify failed: unable to get local issuer certificate' \
  "$(cat "$dir/err")"

# 2. a relayed quote: the man in the middle has a certificate the victim trusts (same CA) and
#    forwards the victim's nonce over its own TLS session to the real server
PM=$(free_port)
run_fix relay "$PM" "$PA" "$dir/m.pem" "$dir/m.key" >"$dir/relay.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 grep -q 'relay ready' "$dir/relay.log"
fetch "$PM" "$dir/dev.json"
check "relayed quote: exit 1" 1 "$rc"
check_match "relayed quote: refused as not bound to this session" \
  'REFUSED: ESESSION: the quote is not bound to this TLS session: report_data [0-9a-f]{128}, SHA-512\(nonce \|\| exporter\) is [0-9a-f]{128}' \
  "$(cat "$dir/err")"
check "relayed quote: no page" "" "$(cat "$dir/out")"

# 3. policy mismatch (Atlas JSON: a bootchain, an OS image and an app compose this CVM has not)
Z=$(printf '1%.0s' $(seq 96))
printf '{"type":"dstack_tdx","expected_bootchain":{"mrtd":"%s","rtmr0":"%s","rtmr1":"%s","rtmr2":"%s"},"os_image_hash":"%s","app_compose":{"runner":"docker-compose"},"allowed_tcb_status":["UpToDate"]}' \
  "$Z" "$Z" "$Z" "$Z" "$(printf 'a%.0s' $(seq 64))" >"$dir/strict.json"
fetch "$PA" "$dir/strict.json"
check "policy mismatch: exit 1" 1 "$rc"
check_match "policy mismatch: EPOLICY naming the fields" \
  'REFUSED: EPOLICY: policy violated: .*expected_bootchain.mrtd.*os_image_hash|REFUSED: EPOLICY: policy violated: .*app_compose.*os_image_hash' \
  "$(cat "$dir/err")"
printf '{"type":"dstack_tdx","disable_runtime_verification":true,"allowed_tcb_status":["UpToDate"],"grace_period":3600}' \
  >"$dir/grace.json"
fetch "$PA" "$dir/grace.json"
check "grace_period without OutOfDate: usage error" 2 "$rc"
check_match "grace_period: the policy parser names it" 'grace_period' "$(cat "$dir/err")"

# 4. raw TCP through the front: the first bytes are not /tdx_quote, so they are relayed
PE=$(free_port)
serve serve_echo "$PE" a "$ECHO"
got=$(printf 'PING raw bytes\n' | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$PE" \
  -servername localhost -CAfile "$dir/ca.pem" 2>/dev/null | head -1)
check "raw TCP relayed to the upstream" "PING raw bytes" "$got"

# bounded: at most 16 quotes per connection, then 429 and the connection closes
body='{"nonce_hex":"'$(printf '00%.0s' $(seq 32))'"}'
reqs=""
for i in $(seq 17); do
  reqs+="POST /tdx_quote HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${#body}\r\n\r\n$body"
done
answers=$( (printf "$reqs"; sleep 2) | timeout 20 openssl s_client -quiet -connect "127.0.0.1:$PA" \
  -servername localhost -CAfile "$dir/ca.pem" 2>/dev/null | grep -ao 'HTTP/1.1 [0-9][0-9][0-9]' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
check "16 quotes per connection, then 429" " 16 HTTP/1.1 200; 1 HTTP/1.1 429;" "$answers"

# 5. interop: Atlas's published client against our server
B=$ATLAS_CACHE/node_modules/@concrete-security/atlas-node-linux-x64-gnu/atlas-node.linux-x64-gnu.node
loaderr=$(node -e 'require(process.argv[1])' "$B" 2>&1 | grep -o "version \`GLIBC_2.38' not found" | head -1)
check "published binary as is: needs glibc 2.38 (Debian 12 has $(ldd --version | head -1 | awk '{print $NF}'))" \
  "version \`GLIBC_2.38' not found" "$loaderr"
old=$(openssl x509 -in "$ANCHOR" -noout -pubkey | openssl pkey -pubin -outform DER | tail -c 65 | od -An -v -tx1 | tr -d ' \n')
new=$(openssl pkey -in "$dir/ca.key" -pubout -outform DER | tail -c 65 | od -An -v -tx1 | tr -d ' \n')
python3 "$FIX/atlas_node_compat.py" "$B" "$dir/atlas.node" "$old" "$new" >"$dir/compat.log" 2>&1
check "test copy: two C23 imports rebound, the anchor key replaced" \
  "__isoc23_sscanf -> sscanf@GLIBC_2.2.5; __isoc23_strtol -> strtol@GLIBC_2.2.5; trust anchor key replaced (2 copies); GLIBC_2.38 need marked weak" \
  "$(cat "$dir/compat.log")"
cc -shared -fPIC -O2 -o "$dir/fake_now.so" "$FIX/fake_now.c" -ldl
PP=$(free_port)
run_fix pcs "$V/dcap-qvl/tdx_quote_collateral.json" "$PP" >"$dir/pcs.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 grep -q 'pcs ready' "$dir/pcs.log" || not_ok "local PCCS" "$(tail -3 "$dir/pcs.log")"
printf '{"type":"dstack_tdx","disable_runtime_verification":true,"allowed_tcb_status":["UpToDate"],"pccs_url":"http://127.0.0.1:%s"}' \
  "$PP" >"$dir/atlas.json"
atlas() { # atlas PORT: Atlas's client, its clock at the vectors' verification time
  FAKE_NOW=1752919234 LD_PRELOAD="$dir/fake_now.so" timeout 60 node "$FIX/atlas_probe.cjs" \
    "$dir/atlas.node" "127.0.0.1:$1" "$dir/atlas.json" 2>&1
}
start=$SECONDS
check "Atlas client: stops only at the DCAP chain of the simulated quote" \
  "ERROR atls handshake failed: quote verification failed: DCAP verification failed: Failed to verify certificate chain" \
  "$(atlas "$PA")"
echo "# Atlas client run: $((SECONDS - start)) s"
# the same client at today's time: the collateral's CRL has expired (the check comes after
# ours passed: TLS, binding answer, certificate event)
check_match "Atlas client today: stops at the expired Intel CRL" \
  'ERROR atls handshake failed: quote verification failed: DCAP verification failed: CrlExpired' \
  "$(timeout 60 node "$FIX/atlas_probe.cjs" "$dir/atlas.node" "127.0.0.1:$PA" "$dir/atlas.json" 2>&1)"

# 6. a stale certificate event: a second front on the same CVM records its certificate last
PB=$(free_port)
serve serve_b "$PB" b "$UP"
fetch "$PA" "$dir/dev.json"
check "stale certificate event: exit 1" 1 "$rc"
check_match "stale certificate event: ECERT naming both hashes" \
  "REFUSED: ECERT: the event log does not bind the served certificate: its last \"New TLS Certificate\" event carries \"$(openssl x509 -in "$dir/b.pem" -outform DER | sha256sum | cut -d' ' -f1)\", the served certificate hashes to $(openssl x509 -in "$dir/a.pem" -outform DER | sha256sum | cut -d' ' -f1)" \
  "$(cat "$dir/err")"
check "Atlas client refuses it too" "ERROR atls handshake failed: certificate not in event log" \
  "$(atlas "$PA")"
fetch "$PB" "$dir/dev.json"
check "the second front: accepted" "0 hello from the upstream" "$rc $(cat "$dir/out")"

# 7. the front in a CVM: quotes and the certificate event through the guest agent's dstack.sock
#    (`moonstack agent --simulator`: GetQuote and EmitEvent on its simulated TD)
source "$FIX/agent_sim.sh"
ag=$(tmpdir)
if start_agent "$ag"; then
  PG=$(free_port)
  "$MOONSTACK" atls serve --listen "127.0.0.1:$PG" --upstream "127.0.0.1:$UP" \
    --agent "$ag/dstack.sock" --cert "$dir/a.pem" --key "$dir/a.key" >"$dir/serve_agent.log" 2>&1 &
  defer "kill $! 2>/dev/null"
  wait_for 15 grep -q 'atls: serving' "$dir/serve_agent.log" \
    || not_ok "serve --agent started" "$(tail -5 "$dir/serve_agent.log")"
  check_match "the agent recorded the certificate event" \
    '"event":"New TLS Certificate"' "$(grep 'runtime event emitted' "$ag/agent.log")"
  "$MOONSTACK" atls fetch "https://localhost:$PG/index.html" --policy "$dir/dev.json" \
    --simulator "$ag/state/sim" --ca "$dir/ca.pem" >"$dir/out" 2>"$dir/err"
  check "fetch through the agent's quotes: accepted" "0 hello from the upstream" "$? $(cat "$dir/out")"
fi

# 8. the WebSocket proxy
"$MOONSTACK" atls proxy --listen 127.0.0.1:1 >"$dir/p0.log" 2>&1
check "proxy without an allowlist: exit 2" 2 $?
check_match "proxy without an allowlist: says it is required" 'allowlist is required' "$(cat "$dir/p0.log")"
ATLS_PROXY_ALLOWLIST='*:443' "$MOONSTACK" atls proxy --listen 127.0.0.1:1 >"$dir/p1.log" 2>&1
check "proxy with a wildcard: exit 2" 2 $?
WS=$(free_port)
ATLS_PROXY_ALLOWLIST="127.0.0.1:$ECHO,localhost:$PA" "$MOONSTACK" atls proxy \
  --listen "127.0.0.1:$WS" >"$dir/proxy.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 grep -q 'atls proxy: ws' "$dir/proxy.log" || not_ok "proxy started" "$(tail -3 "$dir/proxy.log")"
check_match "proxy: dropped root to nobody after binding" "running as uid $(id -u nobody)" \
  "$(cat "$dir/proxy.log")"
check "proxy: an allowed target is relayed" "echo: bytes through the bridge" \
  "$(run_fix ws "$WS" "127.0.0.1:$ECHO" "bytes through the bridge")"
check "proxy: a target outside the allowlist is refused" "refused: HTTP/1.1 400 Bad Request" \
  "$(run_fix ws "$WS" "127.0.0.1:$UP" "x")"
check "proxy: no partial match (another port)" "refused: HTTP/1.1 400 Bad Request" \
  "$(run_fix ws "$WS" "127.0.0.1:$((ECHO + 1))" "x")"
metrics=$(python3 -c 'import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
  "http://127.0.0.1:$WS/metrics")
check_match "proxy metrics: 1 accepted" 'atls_proxy_accepted_total 1' "$metrics"
check_match "proxy metrics: 2 refused targets" 'atls_proxy_refused_target_total 2' "$metrics"
# per client: --rate 1 (burst 2) lets two upgrades through, refuses the third
WR=$(free_port)
"$MOONSTACK" atls proxy --listen "127.0.0.1:$WR" --allowlist "127.0.0.1:$ECHO" --rate 1 \
  >"$dir/proxyr.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 grep -q 'atls proxy: ws' "$dir/proxyr.log" || not_ok "rate-limited proxy started"
rates=""
for i in 1 2 3; do rates+="$(run_fix ws "$WR" "127.0.0.1:$ECHO" "r$i" | cut -c1-12);"; done
check "proxy: the client's third connection in a second is refused" \
  "echo: r1;echo: r2;refused: HTT;" "$rates"
WSS=$(free_port)
"$MOONSTACK" atls proxy --listen "127.0.0.1:$WSS" --allowlist "127.0.0.1:$ECHO" \
  --cert "$dir/a.pem" --key "$dir/a.key" >"$dir/proxys.log" 2>&1 &
defer "kill $! 2>/dev/null"
wait_for 10 grep -q 'atls proxy: wss' "$dir/proxys.log" || not_ok "wss proxy started" "$(tail -3 "$dir/proxys.log")"
check "wss proxy: an allowed target is relayed" "echo: over wss" \
  "$(run_fix ws "$WSS" "127.0.0.1:$ECHO" "over wss" "$dir/ca.pem")"

finish
