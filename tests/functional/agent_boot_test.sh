#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The agent's boot sequence end to end: `moonstack agent -c agent.lua` on the sim backend with
# the upstream simulator's keys file, from a shared folder holding an app-compose (bash runner
# whose script prints its environment and some lines) and an .encrypted-env made (by Node's
# crypto, independently of moonstack) with the env public key of those keys. Checks: the app
# starts and sees only the allowed env vars (plus PATH/HOME), the replayed event log gives
# RTMR3 (the sim CVM's and a fresh quote's), the boot events come in upstream's order, the
# app's logs come out of the public listener when public_logs is true and not when false,
# SIGTERM stops the app, and a bad env key or a wrong launch token fails the boot clearly.
source "$(dirname "$0")/lib.sh"

V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
APPKEYS=$V/dstack/simulator/appkeys.json
SIM_APP_ID=5bb4ff9a3837357f19dc176407a5709c62eb6c56
if [ ! -f "$APPKEYS" ]; then
  not_ok "test vectors found" "no vectors at $V (set MOONSTACK_VECTORS)"
  finish; exit 1
fi

# encrypt_env APPKEYS OUT KEY=VALUE...: the dstack encrypted-env blob (X25519 with the app's
# env public key, the shared secret as the AES-256-GCM key, no AAD): eph pub || iv || ct || tag.
encrypt_env() {
  node - "$@" <<'EOF'
const crypto = require('crypto'), fs = require('fs');
const [keysFile, out, ...pairs] = process.argv.slice(2);
const secret = Buffer.from(JSON.parse(fs.readFileSync(keysFile, 'utf8')).env_crypt_key, 'hex');
const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), secret]);
const appPub = crypto.createPublicKey(crypto.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }));
const eph = crypto.generateKeyPairSync('x25519');
const shared = crypto.diffieHellman({ privateKey: eph.privateKey, publicKey: appPub });
const iv = crypto.randomBytes(12);
const env = pairs.map((p) => ({ key: p.slice(0, p.indexOf('=')), value: p.slice(p.indexOf('=') + 1) }));
const c = crypto.createCipheriv('aes-256-gcm', shared, iv);
const ct = Buffer.concat([c.update(JSON.stringify({ env })), c.final(), c.getAuthTag()]);
const ephRaw = eph.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
fs.writeFileSync(out, Buffer.concat([ephRaw, iv, ct]));
EOF
}

# make_case DIR PUBLIC_LOGS [EXTRA_COMPOSE_JSON]: shared folder + agent.lua in DIR.
make_case() {
  local d=$1 public_logs=$2 extra=${3:-}
  mkdir -p "$d/shared"
  local script='echo $$ > app.pid; env | sort > env.out; echo hello from the app; '
  script+='echo to stderr >&2; sleep 0.1; echo ready; exec sleep 1000'
  printf '{"manifest_version":2,"name":"boot-test","runner":"bash","bash_script":"%s",%s' \
    "$script" "$extra" >"$d/shared/app-compose.json"
  printf '"allowed_envs":["GOOD","ALSO","APP_LAUNCH_TOKEN"],"key_provider":"kms","public_logs":%s}' \
    "$public_logs" >>"$d/shared/app-compose.json"
  printf '{"vm_config":"{\\"os_image_hash\\":\\"%s\\"}"}' "$(printf 'ab%.0s' $(seq 32))" \
    >"$d/shared/.sys-config.json"
  printf '{"app_id":"%s"}' "$SIM_APP_ID" >"$d/shared/.instance_info"
  encrypt_env "$APPKEYS" "$d/shared/.encrypted-env" "GOOD=good value" "EVIL=must not appear" \
    'ALSO=a "quoted" $value' "APP_LAUNCH_TOKEN=token-0123456789"
  cat >"$d/agent.lua" <<EOF
return {
  shared_dir = '$d/shared', state_dir = '$d/state',
  key_provider = { kind = 'keys_file', file = '$APPKEYS' },
  tee = { name = 'sim', dir = '$d/sim', cvm = 'c' },
  listen = { dstack = { unix = '$d/dstack.sock' }, tappd = { unix = '$d/tappd.sock' },
    public = { host = '127.0.0.1', port = 0 } },
  control = '$d/agent.ctl',
  runner = { stop_grace_ms = 2000 },
}
EOF
}

# start DIR: run the agent; sets PID; returns 1 if it exited.
start() {
  MOONSTACK_AGENT_TEST_SECRET=leaked "$MOONSTACK" agent -c "$1/agent.lua" >"$1/agent.log" 2>&1 &
  PID=$!
  defer "kill -KILL $PID 2>/dev/null"
}

public_port() {
  sed -n 's/.*guest API listening.*"external":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$1/agent.log" | head -1
}

# ---- public_logs = true ----
d=$(tmpdir)
make_case "$d" true
start "$d"
if wait_for 20 grep -q ready "$d/state/logs/app.log"; then ok "the app started"; else
  not_ok "the app started" "$(cat "$d/agent.log")"; finish; exit 1; fi
wait_for 5 test -s "$d/state/app/env.out"

# the environment: allowed keys only, plus PATH/HOME and what bash itself exports
keys=$(cut -d= -f1 "$d/state/app/env.out" | tr '\n' ' ')
check "env keys" "ALSO APP_LAUNCH_TOKEN GOOD HOME PATH PWD SHLVL _ " "$keys"
check "env GOOD" "GOOD=good value" "$(grep '^GOOD=' "$d/state/app/env.out")"
check "env ALSO (quotes and dollar kept)" 'ALSO=a "quoted" $value' "$(grep '^ALSO=' "$d/state/app/env.out")"
if grep -q 'EVIL\|MOONSTACK_AGENT_TEST_SECRET' "$d/state/app/env.out"; then
  not_ok "no disallowed or agent env var"; else ok "no disallowed or agent env var"; fi
check ".decrypted-env is 0600" 600 "$(stat -c %a "$d/state/.decrypted-env")"
check ".appkeys.json is 0600" 600 "$(stat -c %a "$d/state/.appkeys.json")"

# RTMR3: the runtime event log replays to the CVM's RTMR3, events in upstream's order
rlog="$d/sim/cvms/c.runtime/runtime_events.log"
replay=$("$MOONSTACK" eventlog replay --json "$rlog")
rtmr3=$(printf '%s' "$replay" | jq -r '.rtmr3')
state_rtmr3=$(sed -n 's/^rtmr3=//p' "$d/sim/cvms/c.state")
check "replayed RTMR3 = the CVM's RTMR3" "$state_rtmr3" "$rtmr3"
check_match "RTMR3 is not zero" '[1-9a-f]' "$rtmr3"
check "boot events in order" \
  "system-preparing app-id compose-hash instance-id boot-mr-done os-image-hash key-provider storage-fs system-ready" \
  "$(jq -r '.event' "$rlog" | tr '\n' ' ' | sed 's/ $//')"
check "app-id event = .instance_info app_id" "$SIM_APP_ID" \
  "$(jq -r 'select(.event=="app-id") | .payload' "$rlog" | base64 -d | od -An -tx1 | tr -d ' \n')"
check "compose-hash event = sha256(app-compose.json)" \
  "$(sha256sum "$d/shared/app-compose.json" | cut -d' ' -f1)" \
  "$(jq -r 'select(.event=="compose-hash") | .payload' "$rlog" | base64 -d | od -An -tx1 | tr -d ' \n')"

# through the guest API: a fresh quote's RTMR3 equals the replay of its event log
if wait_for 10 test -S "$d/dstack.sock"; then
  curl -s --unix-socket "$d/dstack.sock" -H 'content-type: application/json' \
    -d '{"report_data":"00"}' http://localhost/GetQuote >"$d/quote.json"
  jq -r '.quote' "$d/quote.json" >"$d/quote.hex"
  jq -r '.event_log' "$d/quote.json" >"$d/eventlog.json"
  if "$MOONSTACK" eventlog replay "$d/eventlog.json" --quote "$d/quote.hex" >"$d/replay.out" 2>&1; then
    ok "GetQuote: replaying its event log gives the quote's RTMRs"
  else
    not_ok "GetQuote: replaying its event log gives the quote's RTMRs" "$(cat "$d/replay.out")"
  fi
  check "GetQuote: RTMR3" "$rtmr3" "$("$MOONSTACK" quote show "$d/quote.hex" --json | jq -r '.rtmr3')"
else
  not_ok "dstack.sock served" "$(cat "$d/agent.log")"
fi

# the public listener serves the app's logs (public_logs = true)
port=$(public_port "$d")
if [ -n "$port" ]; then
  body=$(curl -s "http://127.0.0.1:$port/logs/app?text&bare")
  check_match "public /logs/app has the app's output" 'hello from the app' "$body"
  check_match "public /logs/app has stderr too" 'to stderr' "$body"
  body=$(curl -s "http://127.0.0.1:$port/logs/app?text&tail=1")
  check "public /logs/app?tail=1" '{"channel":"stdout","message":"ready\n"}' "$body"
else
  not_ok "public listener address logged" "$(cat "$d/agent.log")"
fi

# SIGTERM: the agent stops the app's process tree and exits 0
app_pid=$(cat "$d/state/app/app.pid")
kill -TERM "$PID"
if wait_for 10 sh -c "! kill -0 $PID 2>/dev/null"; then ok "agent exits on SIGTERM"; else
  not_ok "agent exits on SIGTERM" "$(tail -5 "$d/agent.log")"; fi
wait "$PID"; check "agent exit status" 0 "$?"
if kill -0 "$app_pid" 2>/dev/null; then not_ok "the app was stopped"; else ok "the app was stopped"; fi

# ---- public_logs = false ----
d2=$(tmpdir)
make_case "$d2" false
start "$d2"
if wait_for 20 grep -q ready "$d2/state/logs/app.log"; then ok "second app started"; else
  not_ok "second app started" "$(cat "$d2/agent.log")"; fi
port=$(public_port "$d2")
status=$(curl -s -o "$d2/logs.out" -w '%{http_code}' "http://127.0.0.1:$port/logs/app?text&bare")
check_match "public_logs false: /logs/app refused (403/404)" '^40[34]$' "$status"
if grep -q 'hello from the app' "$d2/logs.out"; then not_ok "public_logs false: no app output"; else
  ok "public_logs false: no app output"; fi
kill -TERM "$PID"; wait "$PID"

# ---- boot failures ----
d3=$(tmpdir)
make_case "$d3" false '"launch_token_hash":"0000000000000000000000000000000000000000000000000000000000000000",'
start "$d3"
wait "$PID"; rc=$?
check "wrong APP_LAUNCH_TOKEN: agent exits 1" 1 "$rc"
check_match "wrong APP_LAUNCH_TOKEN: clear error" 'launch token: incorrect APP_LAUNCH_TOKEN' "$(cat "$d3/agent.log")"
if [ -e "$d3/state/app/env.out" ]; then not_ok "wrong token: the app never ran"; else ok "wrong token: the app never ran"; fi

d4=$(tmpdir)
make_case "$d4" false '"launch_token_hash":"'"$(printf 'token-0123456789' | sha256sum | cut -d' ' -f1)"'",'
start "$d4"
if wait_for 20 grep -q ready "$d4/state/logs/app.log"; then ok "right APP_LAUNCH_TOKEN: the app runs"; else
  not_ok "right APP_LAUNCH_TOKEN: the app runs" "$(cat "$d4/agent.log")"; fi
kill -TERM "$PID"; wait "$PID"

d5=$(tmpdir)
make_case "$d5" false
sed -i 's/"allowed_envs":\["GOOD"/"allowed_envs":["1BAD","GOOD"/' "$d5/shared/app-compose.json"
encrypt_env "$APPKEYS" "$d5/shared/.encrypted-env" "1BAD=x"
start "$d5"
wait "$PID"; rc=$?
check "bad env key: agent exits 1" 1 "$rc"
check_match "bad env key: clear error" 'env: invalid env key: 1BAD' "$(cat "$d5/agent.log")"

finish
