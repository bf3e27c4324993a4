#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M11 acceptance: the dashboard in a real browser (headless Chromium driven by
# tests/browser/dashboard.mjs through npm playwright-core, pinned, cached under
# $MOONSTACK_TEST_TMP) against a real KMS, gateway and VMM, set up as gateway_e2e_test.sh does
# (in network and PID namespaces of the test's own: root, /dev/net/tun, wireguard-go):
#   1. a KMS (dev auth, its admin listener), a gateway (WireGuard hub, TLS proxy for *.app.test
#      on 127.0.0.1, admin listener), a VMM on the process backend with its dashboard listener
#      (the hub: the KMS and gateway parts read through their admin URLs) and a login token;
#   2. the browser logs in with the one-time token, sees the security lint of the deploy form
#      (a bad compose's errors highlighted, the panel following the compose), deploys a
#      kms_enabled, gateway_enabled bash app through the form — its env encrypted in the page to the app's KMS env key, the
#      LAUNCH_TOKEN check on — sees it reach running and its log lines arrive, finds it in the
#      gateway (handshake) and KMS (allowed decision) panels, opens it through the gateway's TLS
#      route (Chromium maps *.app.test to the proxy; the app echoes the env var), takes a phone
#      sized screenshot, stops and removes it;
#   3. outside the browser: the login token is spent, the app saw the env var, no VM is left.
# Screenshots: $MOONSTACK_TEST_TMP/artifacts/dashboard/*.png (kept).
source "$(dirname "$0")/lib.sh"

PLAYWRIGHT_VERSION=1.57.0
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null \
      || ! command -v wg >/dev/null || ! command -v node >/dev/null || [ ! -x "$CHROMIUM" ]; then
    not_ok "a private network namespace, /dev/net/tun, wireguard-go, wg, node and $CHROMIUM (run as root; scripts/install-deps.sh test)"
    finish
    exit 1
  fi
  # playwright-core into a cache under the build tree, once (outside the namespaces: npm may
  # need the network the first time)
  PW_CACHE=${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/npm-playwright-$PLAYWRIGHT_VERSION
  if [ ! -f "$PW_CACHE/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$PW_CACHE"
    if ! npm install --prefix "$PW_CACHE" --no-audit --no-fund --loglevel=error \
        "playwright-core@$PLAYWRIGHT_VERSION" >"$PW_CACHE/npm.log" 2>&1; then
      not_ok "npm install playwright-core@$PLAYWRIGHT_VERSION" "$(tail -5 "$PW_CACHE/npm.log")"
      finish
      exit 1
    fi
  fi
  export PW_CACHE
fi
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/proxy_lib.sh"
ok "playwright-core $(node -p 'require(process.argv[1]).version' "$PW_CACHE/node_modules/playwright-core/package.json"), $("$CHROMIUM" --version 2>/dev/null | head -1)"
ART=${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/artifacts/dashboard
rm -rf "$ART" && mkdir -p "$ART"

d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
KPID='' GPID='' VMM_PID=''
stop() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  local i
  for i in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
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
  # the daemons' logs beside the screenshots (a failure's evidence)
  cp "$d"/*.log "$ART/" 2>/dev/null
  true
}
defer cleanup
GW_APP=$(openssl rand -hex 20)
BASE=app.test
HUB_IF=wg-db$MOONSTACK_IN_NS
HUB_IF=${HUB_IF:0:15}
printf 'dash-admin-%s\n' "$(openssl rand -hex 16)" >"$d/admin.token"
chmod 600 "$d/admin.token"

# ---- 1. KMS (with its admin listener: the dashboard's kms part) ----
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 \
  || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }
KADMIN=$(free_port)
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost',
  listen = { host = '127.0.0.1', port = 0 },
  admin = { listen = { host = '127.0.0.1', port = $KADMIN }, token_file = '$d/admin.token' },
  auth = { kind = 'dev', gateway_app_id = '$GW_APP' },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
  image = { verify = false },
}
EOF
"$MOONSTACK" kms -c "$d/kms.lua" >"$d/kms.log" 2>&1 &
KPID=$!
wait_for 20 grep -q 'KMS ready' "$d/kms.log" || { not_ok "KMS started" "$(tail -20 "$d/kms.log")"; finish; exit 1; }
kport=$(sed -n 's/.*KMS ready.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$d/kms.log" | head -1)
ok "KMS started (:$kport, admin :$KADMIN)"

# ---- 1. gateway: rpc certificate from the KMS root naming the gateway app id ----
"$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/gateway_rpc_cert.lua" "$d" "$d/kms-keys" "$GW_APP" >"$d/gwcert.log" 2>&1 || { not_ok "gateway rpc certificate" "$(cat "$d/gwcert.log")"; finish; exit 1; }
gw_cert "$d" "$BASE"
gwkey=$(wg genkey)
cat >"$d/gateway.lua" <<EOF
return {
  proxy = { listen = { host = '127.0.0.1', port = 0 }, base_domain = '$BASE',
    certs = { { cert = '$d/cert.pem', key = '$d/key.pem' } }, workers = 1,
    timeouts = { connect = 2, handshake = 5 } },
  rpc = { listen = { host = '127.0.0.1', port = 0 }, kms_ca = '$d/kms-keys/root-ca.crt',
    cert = '$d/rpc.pem', key = '$d/rpc.key' },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token_file = '$d/admin.token' },
  wg = { private_key = '$gwkey', interface = '$HUB_IF', listen_port = 51820,
    endpoint = '127.0.0.1:51820', refresh_interval = 0.3 },
  data_dir = '$d/gw-data', control = '$d/gw.ctl',
}
EOF
"$MOONSTACK" gateway -c "$d/gateway.lua" >"$d/gateway.log" 2>&1 &
GPID=$!
wait_for 30 grep -q 'gateway ready' "$d/gateway.log" || { not_ok "gateway started" "$(tail -20 "$d/gateway.log")"; finish; exit 1; }
RPC=$(sed -n 's/.*gateway ready.*"rpc":"[0-9.]*:\([0-9]*\)".*/\1/p' "$d/gateway.log" | tail -1)
GADMIN=$(sed -n 's/.*gateway ready.*"admin":"\([0-9.:]*\)".*/\1/p' "$d/gateway.log" | tail -1)
PPORT=$(sed -n 's/.*gateway ready.*"proxy":"[0-9.]*:\([0-9]*\)".*/\1/p' "$d/gateway.log" | tail -1)
check_match "gateway started (rpc, admin, proxy on 127.0.0.1)" '^[0-9]+ [0-9.]+:[0-9]+ [0-9]+$' "$RPC $GADMIN $PPORT"

# ---- 1. VMM with its dashboard (the hub) ----
vmm_image "$d/images" proc || { finish; exit 1; }
DPORT=$(free_port)
openssl rand -hex 32 >"$d/dashboard.login"
chmod 600 "$d/dashboard.login"
cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  kms_urls = { 'https://localhost:$kport' }, kms_ca = '$d/kms-keys/root-ca.crt',
  gateway_urls = { 'https://localhost:$RPC' },
  gateway = { base_domain = '$BASE', port = $PPORT, agent_port = 8090 },
  process = { sim_dir = '$d/sim', network = 'netns', udp_forwards = { '127.0.0.1:51820' } },
  dashboard = { listen = { host = '127.0.0.1', port = $DPORT }, login_token_file = '$d/dashboard.login',
    auth = { token_file = '$d/admin.token' },
    kms = { url = 'http://127.0.0.1:$KADMIN', token_file = '$d/admin.token' },
    gateway = { url = 'http://$GADMIN', token_file = '$d/admin.token' } },
  stop_vms_on_exit = true,
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(tail -20 "$d/vmm.log")"; finish; exit 1; }
VMM=unix:$d/vmm.sock
wait_for 10 curl -s -o /dev/null "http://127.0.0.1:$DPORT/dashboard/" ||
  { not_ok "the VMM's dashboard listens" "$(tail -20 "$d/vmm.log")"; finish; exit 1; }
check "VMM started; GET /dashboard/ serves the page" 200 \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DPORT/dashboard/")"

# ---- 2. the browser ----
GREETING="hello-from-the-browser-$(openssl rand -hex 6)"
cat >"$d/app.sh" <<'EOF'
echo "app starting"
mkdir -p www
printf 'greeting=%s\n' "$GREETING" > www/index.html
echo "app listening on 8080"
exec python3 -u -m http.server 8080 --bind 0.0.0.0 --directory www
EOF
jq -n --rawfile s "$d/app.sh" '{manifest_version:2, name:"browser-app", runner:"bash",
  kms_enabled:true, gateway_enabled:true, public_logs:true, bash_script:$s}' >"$d/app-compose.json"
out=$(PW_MODULE=$PW_CACHE/node_modules DASH_URL=http://127.0.0.1:$DPORT LOGIN_FILE=$d/dashboard.login \
  ARTIFACTS=$ART APP_COMPOSE=$d/app-compose.json GREETING=$GREETING IMAGE=proc CHROMIUM=$CHROMIUM \
  GW_HOST_RULES="MAP *.$BASE 127.0.0.1" timeout 400 node "$MOONSTACK_SRC/tests/browser/dashboard.mjs" 2>&1)
echo "$out" | grep -v '^VM '
passed=$((passed + $(grep -c '^ok - ' <<<"$out")))
failed=$((failed + $(grep -c '^not ok - ' <<<"$out")))
grep -q '^ok - \|^not ok - ' <<<"$out" || not_ok "the browser run printed results" "$(tail -20 <<<"$out")"

# ---- 3. outside the browser ----
check "the login token was spent (its file is gone or empty)" spent \
  "$([ ! -s "$d/dashboard.login" ] && echo spent || echo left)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DPORT/dashboard/login?once=$(openssl rand -hex 32)")
check_match "a login with another token is refused" '^40[13]$' "$code"
check "no VM left (removed through the page)" 0 "$(rpc Status '{}' | jq '.vms | length')"
check "no CVM process left" "" "$(procs_under "$d/run")"
for f in 01-deploy-form 02-vm-running 03-app-through-gateway 04-gateway 05-kms 07-phone 09-removed; do
  [ -s "$ART/$f.png" ] || not_ok "screenshot $f.png"
done
echo "# screenshots: $ART"
finish
