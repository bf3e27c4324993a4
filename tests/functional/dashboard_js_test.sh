#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The dashboard's browser-side crypto and compose building (ui/dashboard/envcrypt.mjs,
# compose.mjs, x25519.mjs) run under Node's WebCrypto and checked with the guest agent's own
# code (moonstack run): the env blob the browser makes — with WebCrypto's X25519 and with the
# JavaScript fallback — decrypts with moonstack.agent.boot.env (the exact layout the agent
# reads) to the same variables, a blob for another key does not; a docker-compose YAML becomes
# upstream's app-compose (vmm-cli compose fields); the LAUNCH_TOKEN check's random token
# passes the agent's launch_token_hash check and the pre_launch_script the compose carries
# (run by bash as the launcher does), and a wrong token fails both. The page's state (store.mjs)
# follows the websocket's messages as the contract describes them: snapshot, events (a VM's
# status and events, KMS decisions, policy reloads), part_down, log lines of the followed VM.
source "$(dirname "$0")/lib.sh"

if ! command -v node >/dev/null; then
  not_ok "node (scripts/install-deps.sh test)"; finish; exit 1
fi
d=$(tmpdir)
UI=$MOONSTACK_SRC/ui/dashboard
js() { node "$MOONSTACK_SRC/tests/browser/js_check.mjs" "$UI" "$@"; }

# the app's env key pair (the KMS derives it; any X25519 pair does here)
cat >"$d/keys.lua" <<'EOF2'
local crypto = require('moonstack.crypto')
local secret = crypto.x25519.generate()
io.open(arg[1] .. '/secret.hex', 'w'):write(crypto.hex(secret))
print(crypto.hex(crypto.x25519.pubkey(secret)))
EOF2
PUB=$("$MOONSTACK" run "$d/keys.lua" "$d" 2>&1)
check_match "an X25519 key pair for the app's env" '^[0-9a-f]{64}$' "$PUB"

# decrypt.lua DIR BLOBHEX ALLOWED(comma list): the agent's decrypt and parse, as JSON
cat >"$d/decrypt.lua" <<'EOF2'
local crypto = require('moonstack.crypto')
local envmod = require('moonstack.agent.boot.env')
local secret = crypto.unhex(io.open(arg[1] .. '/secret.hex'):read('*a'))
local allowed = {}
for k in (arg[3] or ''):gmatch('[^,]+') do allowed[k] = true end
local env, err = envmod.decrypt(secret, crypto.unhex(arg[2]), allowed)
if not env then print('ERROR ' .. tostring(err)) os.exit(1) end
print(envmod.json(env))
EOF2
cat >"$d/env" <<'EOF2'
# a comment, then variables as an env file has them
GREETING=hello from the browser
export QUOTED="with spaces, = and 'quotes'"
UNICODE='héllo ✓'
EMPTY=
EOF2
blobs=$(js encrypt "$PUB" "$d/env" 2>&1)
check_match "two blobs (WebCrypto X25519, JavaScript X25519)" '^[0-9a-f]+
[0-9a-f]+$' "$blobs"
web=$(sed -n 1p <<<"$blobs"); pure=$(sed -n 2p <<<"$blobs")
want='{"EMPTY":"","GREETING":"hello from the browser","QUOTED":"with spaces, = and '"'quotes'"'","UNICODE":"héllo ✓"}'
check "the WebCrypto blob decrypts with the agent's code to the env" "$want" \
  "$("$MOONSTACK" run "$d/decrypt.lua" "$d" "$web" GREETING,QUOTED,UNICODE,EMPTY 2>&1)"
check "the JavaScript-X25519 blob decrypts the same" "$want" \
  "$("$MOONSTACK" run "$d/decrypt.lua" "$d" "$pure" GREETING,QUOTED,UNICODE,EMPTY 2>&1)"
plain=$(node -e 'const s=require("fs").readFileSync(0,"utf8");process.stdout.write(String(s.trim().length/2))' <<<"$web")
check "layout: 32 (ephemeral key) + 12 (IV) + the JSON + 16 (tag) bytes" \
  "$((32 + 12 + $(printf '%s' '{"env":[{"key":"GREETING","value":"hello from the browser"},{"key":"QUOTED","value":"with spaces, = and '"'quotes'"'"},{"key":"UNICODE","value":"héllo ✓"},{"key":"EMPTY","value":""}]}' | wc -c) + 16))" "$plain"
check "the two blobs differ (fresh ephemeral key and IV)" different "$([ "$web" != "$pure" ] && echo different)"
check "allowed_envs filters as the agent does" '{"GREETING":"hello from the browser"}' \
  "$("$MOONSTACK" run "$d/decrypt.lua" "$d" "$web" GREETING 2>/dev/null)"
PUB2=$("$MOONSTACK" run "$d/keys.lua" "$TEST_ROOT" 2>&1)
other=$(js encrypt "$PUB2" "$d/env" | head -1)
check_match "a blob for another app's key does not decrypt" '^ERROR EDECRYPT' \
  "$("$MOONSTACK" run "$d/decrypt.lua" "$d" "$other" GREETING 2>&1)"
check_match "a flipped ciphertext byte does not decrypt (GCM tag)" '^ERROR EDECRYPT' \
  "$("$MOONSTACK" run "$d/decrypt.lua" "$d" "${web:0:100}$(printf '%x' $(( (0x${web:100:1} + 1) % 16 )))${web:101}" GREETING 2>&1)"
printf 'GOOD=1\nnot a pair\n' >"$d/bad.env"
check "an env line that is not KEY=VALUE is refused, naming the line" "env line 2: not KEY=VALUE" \
  "$(js parse "$d/bad.env" 2>&1)"

# ---- a docker-compose YAML -> app-compose (vmm-cli.py compose), with the LAUNCH_TOKEN check ----
cat >"$d/docker-compose.yaml" <<'EOF2'
services:
  web:
    image: nginx
    ports: ["8080:80"]
EOF2
printf 'SECRET=s3cret\n' >"$d/app.env"
r=$(js compose auto "$d/docker-compose.yaml" web-app "$d/app.env" 1 2>&1)
compose=$(jq -r .compose <<<"$r")
check "docker-compose -> app-compose: upstream's fields, env names in allowed_envs" \
  '2 web-app docker-compose true true true true false false ["SECRET","APP_LAUNCH_TOKEN"]' \
  "$(jq -c -r '"\(.manifest_version) \(.name) \(.runner) \(.kms_enabled) \(.gateway_enabled) \(.public_logs) \(.public_sysinfo) \(.no_instance_id) \(.secure_time) \(.allowed_envs)"' <<<"$compose")"
check "... the YAML kept verbatim as docker_compose_file" "$(cat "$d/docker-compose.yaml")" \
  "$(jq -r .docker_compose_file <<<"$compose")"
check "compose hash and app id are the SHA-256 of the exact text (and its first 40 digits)" \
  "$(printf '%s' "$compose" | sha256sum | cut -c1-64) $(printf '%s' "$compose" | sha256sum | cut -c1-40)" \
  "$(jq -r '"\(.composeHash) \(.appId)"' <<<"$r")"
token=$(jq -r '.envs[] | select(.key == "APP_LAUNCH_TOKEN") | .value' <<<"$r")
check_match "a random 32-character APP_LAUNCH_TOKEN was added to the env" '^[A-Za-z0-9]{32}$' "$token"
check "launch_token_hash = sha256(token)" "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" \
  "$(jq -r .launch_token_hash <<<"$compose")"
# the agent's own launch-token check, and the pre_launch_script as the launcher sources it
cat >"$d/token.lua" <<'EOF2'
local envmod = require('moonstack.agent.boot.env')
local ok, err = envmod.check_app_launch_token(arg[1], { APP_LAUNCH_TOKEN = arg[2] })
print(ok and 'ok' or err)
EOF2
hash=$(jq -r .launch_token_hash <<<"$compose")
check "the agent's launch_token_hash check passes with the token" ok "$("$MOONSTACK" run "$d/token.lua" "$hash" "$token" 2>&1)"
check_match "... and refuses another" 'EDENIED' "$("$MOONSTACK" run "$d/token.lua" "$hash" "x$token" 2>&1)"
jq -r .pre_launch_script <<<"$compose" >"$d/pre.sh"
launch() { APP_LAUNCH_TOKEN=$1 bash -c 'set -euo pipefail; . "$1"; echo LAUNCHED' pre "$d/pre.sh" 2>&1; }
check "pre_launch_script (sourced under set -euo pipefail): the right token launches" \
  "APP_LAUNCH_TOKEN checked OK
LAUNCHED" "$(launch "$token")"
check_match "... a wrong token stops the launch" 'incorrect APP_LAUNCH_TOKEN' "$(launch wrong)"
check "... and so does none" "no" "$(env -u APP_LAUNCH_TOKEN bash -c 'set -euo pipefail; . "$1"; echo LAUNCHED' pre "$d/pre.sh" 2>/dev/null | grep -q LAUNCHED && echo yes || echo no)"

# ---- an app-compose JSON: kept byte for byte unless the env needs it changed ----
printf '{"manifest_version":2,"name":"b","runner":"bash","kms_enabled":true,"bash_script":"echo hi","allowed_envs":["A"]}' >"$d/app.json"
printf 'A=1\n' >"$d/a.env"
: >"$d/none.env"
r=$(js compose auto "$d/app.json" '' "$d/a.env" 0 2>&1)
check "an app-compose whose allowed_envs lists the env is kept byte for byte" "$(cat "$d/app.json")" "$(jq -r .compose <<<"$r")"
r=$(js compose auto "$d/app.json" '' "$d/app.env" 0 2>&1)
check "... otherwise allowed_envs gains the env names" '["A","SECRET"]' "$(jq -c '.compose | fromjson | .allowed_envs' <<<"$r")"
printf '{"manifest_version":2,"name":"b","runner":"bash","bash_script":"echo hi"}' >"$d/nokms.json"
check_match "env vars for an app without the KMS are refused" 'need the KMS' "$(js compose auto "$d/nokms.json" '' "$d/a.env" 0 2>&1)"
r=$(js compose auto "$d/nokms.json" '' "$d/none.env" 0 2>&1)
check "... no env, no KMS needed: the compose as given" "$(cat "$d/nokms.json")" "$(jq -r .compose <<<"$r")"

# ---- the store: the websocket's messages folded into the page's state ----
V='{"id":"vm-1","name":"a","status":"stopped","boot_progress":"","ports":[],"events":[]}'
cat >"$d/msgs" <<EOF2
{"type":"snapshot","parts":{"vmm":{"vms":[$V],"images":["proc"]},"kms":{"decisions":[],"policies":[{"name":"p","version":1,"sha256":"aa"}]},"gateway":{"instances":[]}},"seq":{"vmm":5,"kms":7,"gateway":1}}
{"type":"event","part":"vmm","seq":6,"topic":"vm.status","time":1,"data":{"id":"vm-1","status":"running"}}
{"type":"event","part":"vmm","seq":6,"topic":"vm.status","time":1,"data":{"id":"vm-1","status":"stopped"}}
{"type":"event","part":"vmm","seq":7,"topic":"vm.event","time":2,"data":{"id":"vm-1","event":"boot.progress","body":"done"}}
{"type":"event","part":"kms","seq":8,"topic":"kms.decision","time":3,"data":{"kind":"app","app_id":"ab","allowed":true,"reason":"ok by policy","policy_version":2}}
{"type":"event","part":"kms","seq":9,"topic":"policy.reload","time":4,"data":{"host":"kms","ok":false,"name":"p","error":"line 3: bad"}}
{"type":"part_down","part":"gateway","error":"connection refused"}
{"type":"log","id":"vm-1","lines":["one","two"]}
{"type":"log","id":"vm-2","lines":["not followed"]}
{"type":"event","part":"vmm","seq":8,"topic":"vm.log","time":5,"data":{"id":"vm-1","lines":["three"]}}
{"type":"snapshot","parts":{"gateway":{"instances":[{"id":"i","app_id":"ab","ip":"10.0.0.2","handshake_age":3,"conns":1}]}},"seq":{"gateway":4}}
{"type":"event","part":"vmm","seq":9,"topic":"vm.status","time":6,"data":{"id":"vm-1","status":"removed"}}
EOF2
st=$(js store "$d/msgs" 2>&1)
row() { sed -n "${1}p" <<<"$st" | jq -c "$2"; }
check "snapshot: the three parts, their seq" '[["gateway","kms","vmm"],["vm-1:stopped::0"],{"vmm":5,"kms":7,"gateway":1}]' "$(row 1 '[(.changed|sort), .vms, .seq]')"
check "vm.status event: the VM's status" '["vm-1:running::0"]' "$(row 2 .vms)"
check "... an event with a seq already applied is dropped" '[[],["vm-1:running::0"]]' "$(row 3 '[.changed, .vms]')"
check "vm.event boot.progress: in the VM's events and its boot progress" '["vm-1:running:done:1"]' "$(row 4 .vms)"
check "kms.decision: newest first with reason and policy version" '["allow:ok by policy:2"]' "$(row 5 .decisions)"
check "policy.reload refused: the error kept, the version unchanged" '["p:1:line 3: bad"]' "$(row 6 .policies)"
check "part_down: the part marked down" '{"gateway":"connection refused"}' "$(row 7 .down)"
check "log lines of the followed VM" '["one","two"]' "$(row 8 .logs)"
check "... not of another VM" '[[],["one","two"]]' "$(row 9 '[.changed, .logs]')"
check "... vm.log events too" '["one","two","three"]' "$(row 10 .logs)"
check "a new snapshot of the part clears its down mark" '[["gateway"],{}]' "$(row 11 '[.changed, .down]')"
check "vm.status removed: the VM is gone" '[]' "$(row 12 .vms)"
finish
