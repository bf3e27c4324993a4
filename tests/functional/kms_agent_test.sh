#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The agent boots through the KMS: `moonstack kms -c` with the `policy` auth backend (a policy
# file allowing one compose hash, simulated quotes accepted) and `moonstack agent -c` (sim
# backend, kms_enabled app, KMS URL from the sys-config). Checks: the allowed app boots, its
# key-provider event names the KMS root, and a GetKey signature chain verifies up to the KMS
# root k256 key (GetMeta); an app outside the policy is denied and the agent's error carries
# the policy's reason; swapping the policy file while GetAppKey requests flow changes the
# decisions without a failed request; a broken policy file is refused and the old one decides.
source "$(dirname "$0")/lib.sh"

d=$(tmpdir)
mkdir -p "$d/sim"

# the simulator's PKI (collateral + root), shared by every CVM of the sim dir
cat >"$d/pki.lua" <<'EOF'
local sim = require('moonstack.sim')
local t = assert(sim.new({ dir = arg[1], cvm = 'pki', create = true }))
local function write(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end
write(arg[2], assert(t:collateral(os.time())))
write(arg[3], (assert(t:root_ca())))
t:close()
EOF
"$MOONSTACK" run "$d/pki.lua" "$d/sim" "$d/collateral.json" "$d/sim-root.pem" >"$d/pki.log" 2>&1 \
  || { not_ok "sim PKI written" "$(cat "$d/pki.log")"; finish; exit 1; }

# make_app DIR NAME: a kms_enabled app-compose in DIR/shared; prints its compose hash
make_app() {
  mkdir -p "$1/shared"
  printf '{"manifest_version":2,"name":"%s","runner":"bash","bash_script":"echo ready; exec sleep 1000","kms_enabled":true}' \
    "$2" >"$1/shared/app-compose.json"
  sha256sum "$1/shared/app-compose.json" | cut -d' ' -f1
}

# write_policy FILE VERSION ALLOWED_HASH: allow that compose hash, deny the rest with a reason
write_policy() {
  cat >"$1.tmp" <<EOF
local ALLOWED = { ['$3'] = true }
return {
  name = 'kms-agent-test', version = '$2',
  on_auth = function(b)
    if ALLOWED[b.composeHash] then
      return { allow = true, reason = 'allowed by kms-agent-test v$2', gateway_app_id = 'any' }
    end
    return { allow = false, reason = 'compose hash ' .. b.composeHash .. ' is not allowed by kms-agent-test v$2' }
  end,
}
EOF
  mv "$1.tmp" "$1"
}

good=$(make_app "$d/good" good-app)
bad=$(make_app "$d/bad" bad-app)
write_policy "$d/policy.lua" 1 "$good"

cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost', control = '$d/kms.ctl',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'policy', path = '$d/policy.lua', debounce_ms = 50 },
  attestation = { collateral_file = '$d/collateral.json', root_ca_file = '$d/sim-root.pem',
    allow_simulator = true },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
port=$KMS_PORT
KMS_URL=https://localhost:$port
ok "KMS started with the policy backend"

# agent_conf DIR: sys-config with the KMS URL, the agent config
agent_conf() {
  printf '{"vm_config":"","kms_urls":["%s"]}' "$KMS_URL" >"$1/shared/.sys-config.json"
  cat >"$1/agent.lua" <<EOF
return {
  shared_dir = '$1/shared', state_dir = '$1/state',
  tee = { name = 'sim', dir = '$d/sim', cvm = '$(basename "$1")' },
  listen = { dstack = { unix = '$1/dstack.sock' }, tappd = { unix = '$1/tappd.sock' }, public = false },
  runner = { stop_grace_ms = 1000 },
}
EOF
}

# ---- the allowed app boots and its GetKey chain verifies up to the KMS root ----
agent_conf "$d/good"
"$MOONSTACK" agent -c "$d/good/agent.lua" >"$d/good/agent.log" 2>&1 &
APID=$!
defer "kill -KILL $APID 2>/dev/null"
if wait_for 20 grep -q ready "$d/good/state/logs/app.log"; then ok "the allowed app booted through the KMS"; else
  not_ok "the allowed app booted through the KMS" "$(tail -20 "$d/good/agent.log")"; fi
rlog=$d/sim/cvms/good.runtime/runtime_events.log
root_spki=$(openssl x509 -in "$d/kms-keys/root-ca.crt" -pubkey -noout | openssl pkey -pubin -outform DER | od -An -tx1 | tr -d ' \n')
check "key-provider event names the KMS root" "{\"name\":\"kms\",\"id\":\"$root_spki\"}" \
  "$(jq -r 'select(.event=="key-provider") | .payload' "$rlog" | base64 -d)"
kms_pub=$(curl -s --cacert "$d/kms-keys/root-ca.crt" "$KMS_URL/prpc/GetMeta?json" | jq -r '.k256_pubkey')
wait_for 10 test -S "$d/good/dstack.sock"
curl -s --unix-socket "$d/good/dstack.sock" -H 'content-type: application/json' \
  -d '{"path":"wallet/eth","purpose":"signing"}' http://localhost/GetKey >"$d/getkey.json"
cat >"$d/chain.lua" <<'EOF'
local cjson = require('cjson')
local crypto = require('moonstack.crypto')
local dstack = require('moonstack.crypto.dstack')
local f = assert(io.open(arg[1])) local r = cjson.decode(f:read('*a')) f:close()
local chain = { crypto.unhex(r.signature_chain[1]), crypto.unhex(r.signature_chain[2]) }
local pub = crypto.k256.pubkey(crypto.unhex(r.key))
local v, err = dstack.verify_key_chain({ pubkey = pub, purpose = 'signing', signature_chain = chain,
  app_id = crypto.unhex(arg[2]), kms_pubkey = crypto.unhex(arg[3]) })
print(v and 'verified' or err)
EOF
check "GetKey chain verifies up to the KMS root k256 key" verified \
  "$("$MOONSTACK" run "$d/chain.lua" "$d/getkey.json" "${good:0:40}" "$kms_pub" 2>&1)"
# GetTlsKey: the certificate comes from the KMS's SignCert, its chain ends at the KMS root
curl -s --unix-socket "$d/good/dstack.sock" -H 'content-type: application/json' \
  -d '{"subject":"app.example","alt_names":["app.example"],"usage_ra_tls":true,"usage_server_auth":true}' \
  http://localhost/GetTlsKey >"$d/tls.json"
n=$(jq -r '.certificate_chain | length' "$d/tls.json")
check "GetTlsKey answers a key and a 3-certificate chain [leaf, app CA, KMS root]" "3 true" \
  "$n $(jq -r '.key | startswith("-----BEGIN PRIVATE KEY-----")' "$d/tls.json")"
jq -r '.certificate_chain[0]' "$d/tls.json" >"$d/leaf.pem"
jq -r '.certificate_chain[1]' "$d/tls.json" >"$d/appca.pem"
jq -r '.certificate_chain[2]' "$d/tls.json" >"$d/chainroot.pem"
check "the chain ends at the KMS root" "$(openssl x509 -in "$d/kms-keys/root-ca.crt" -noout -fingerprint)" \
  "$(openssl x509 -in "$d/chainroot.pem" -noout -fingerprint)"
check_match "the leaf verifies to the KMS root" ': OK$' \
  "$(openssl verify -CAfile "$d/kms-keys/root-ca.crt" -untrusted "$d/appca.pem" "$d/leaf.pem" 2>&1)"
check_match "the leaf is for the subject asked" 'CN ?= ?app.example' "$(openssl x509 -in "$d/leaf.pem" -noout -subject)"
pub_leaf=$(openssl x509 -in "$d/leaf.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)
pub_key=$(jq -r '.key' "$d/tls.json" | openssl pkey -pubout -outform DER | sha256sum)
check "the leaf certifies the key handed out" "$pub_key" "$pub_leaf"
wait_for 10 bash -c "curl -s --unix-socket '$d/good/dstack.sock' http://localhost/Info | jq -e '.app_cert | length > 0' >/dev/null"
check_match "Info.app_cert is the KMS-signed demo certificate" 'BEGIN CERTIFICATE' \
  "$(curl -s --unix-socket "$d/good/dstack.sock" http://localhost/Info | jq -r '.app_cert')"
kill -TERM "$APID"; wait "$APID" 2>/dev/null

# ---- an app outside the policy is denied with the policy's reason ----
agent_conf "$d/bad"
"$MOONSTACK" agent -c "$d/bad/agent.lua" >"$d/bad/agent.log" 2>&1 &
BPID=$!
defer "kill -KILL $BPID 2>/dev/null"
if wait_for 20 sh -c "! kill -0 $BPID 2>/dev/null"; then
  wait "$BPID"; rc=$?
  if [ "$rc" -ne 0 ]; then ok "the denied agent exits non-zero ($rc)"; else not_ok "the denied agent exits non-zero"; fi
else
  not_ok "the denied agent exits"
fi
check_match "the agent's error carries the policy reason" \
  "boot denied: compose hash $bad is not allowed by kms-agent-test v1" "$(cat "$d/bad/agent.log")"
if [ -e "$d/bad/state/logs/app.log" ]; then not_ok "the denied app did not start"; else ok "the denied app did not start"; fi

# ---- policy swap while GetAppKey requests flow ----
cat >"$d/loop.lua" <<'EOF'
local uv = require('luv')
local task = require('moonstack.core.task')
local sim = require('moonstack.sim')
local crypto = require('moonstack.crypto')
local kms_client = require('moonstack.kms.client')
local dir, url, compose, stop = arg[1], arg[2], arg[3], arg[4]
local tee = assert(sim.new({ dir = dir, cvm = 'loop', create = true }))
assert(tee:emit_event('app-id', crypto.unhex(compose:sub(1, 40)), { version = 1 }))
assert(tee:emit_event('compose-hash', crypto.unhex(compose), { version = 1 }))
assert(tee:emit_event('instance-id', ('\1'):rep(20), { version = 1 }))
task.spawn(function()
  for _ = 1, 2000 do
    local r, err, code = kms_client.get_app_keys({ url = url, tee = tee, timeout_ms = 10000 })
    if r then
      io.stdout:write('allow\n')
    elseif code == 'EDENIED' then
      io.stdout:write('deny ', err, '\n')
    else
      io.stdout:write('error ', tostring(err), '\n')
    end
    io.stdout:flush()
    if uv.fs_stat(stop) then break end
  end
  tee:close()
end)
EOF
"$MOONSTACK" run "$d/loop.lua" "$d/sim" "$KMS_URL" "$good" "$d/stop" >"$d/loop.out" 2>"$d/loop.err" &
LPID=$!
defer "kill -KILL $LPID 2>/dev/null"
wait_for 20 sh -c "grep -c '^allow' '$d/loop.out' | grep -qv '^[0-4]$'"
write_policy "$d/policy.lua" 2 "$(printf '0%.0s' $(seq 64))"   # v2 allows nothing we run
wait_for 20 sh -c "grep -c '^deny' '$d/loop.out' | grep -qv '^[0-4]$'"
n_before=$(wc -l <"$d/loop.out")
printf 'return { name = ' >"$d/policy.lua.tmp" && mv "$d/policy.lua.tmp" "$d/policy.lua"  # broken
wait_for 10 grep -q 'policy rejected; the previous policy stays active' "$d/kms.log"
wait_for 20 sh -c "[ \$(wc -l <'$d/loop.out') -ge $((n_before + 5)) ]"
touch "$d/stop"
wait_for 20 sh -c "! kill -0 $LPID 2>/dev/null"
out=$(cat "$d/loop.out")
check "no GetAppKey request failed during the swaps" 0 "$(grep -vc '^allow$\|^deny ' <<<"$out")"
check_match "v1 allowed first" '^allow' "$(head -1 <<<"$out")"
check "decisions changed once (allows, then denies)" "allow deny" \
  "$(cut -d' ' -f1 <<<"$out" | uniq | tr '\n' ' ' | sed 's/ $//')"
check_match "the denies carry v2's reason" "boot denied: compose hash $good is not allowed by kms-agent-test v2" \
  "$(tail -1 <<<"$out")"
check_match "the broken policy was refused (logged)" 'policy rejected; the previous policy stays active' \
  "$(grep 'policy rejected' "$d/kms.log" | head -1)"
check "the KMS still runs" 0 "$(kill -0 $KPID; echo $?)"
kill -TERM "$KPID"; wait "$KPID" 2>/dev/null
finish
