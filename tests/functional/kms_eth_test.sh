#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M12: the KMS's `eth` auth backend against a real hardhat 2 chain. The contracts of contracts/
# (their checked-in bytecode recompiled with solc to the same bytes) are deployed with
# `moonstack kms eth deploy`; a real KMS daemon (auth.kind = 'eth', simulated TDX, its own
# attestation checked before each trusted RPC) answers GetAppKey to simulated CVMs (RA-TLS with
# a simulated quote, moonstack.kms.client). Checks: GetMeta reports the contract, chain id and
# app implementation; the KMS refuses to serve while its own OS image / MR / device are not on
# chain ("KMS is not allowed to boot on this device"), and serves once they are, without a
# restart; an unregistered app is denied ("App not registered"), one registered without a
# contract too; a registered app is denied with the contract's reason ("Compose hash not
# allowed"), then allowed after addComposeHash, with the on-chain gateway app id; a non-owner's
# transaction is refused; a KMS replica on another (simulated) machine is refused by the source
# KMS ("KMS is not allowed to boot on this device": its start fails, no key written), then
# onboards once its device is added; the chain killed means deny (never allow) with a clear
# reason, in bounded time; a bad eth config names the field.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/eth_lib.sh"

install_eth_tools || { finish; exit 1; }
in_test_namespaces "$@" || { finish; exit 1; }

d=$(tmpdir)
mkdir -p "$d/sim"

# the checked-in artifacts are what solc makes of contracts/*.sol
out=$(cd "$MOONSTACK_SRC/contracts" && NODE_PATH="$ETH_CACHE/node_modules" node build.js --check 2>&1)
check "contracts/build.js --check: checked-in bytecode = solc $SOLC_VERSION output" "0" "$?${out:+ $out}"

hardhat_start "$d/hh" "$(free_port)" || { finish; exit 1; }

t0=$(date +%s%N)
dep=$(eth deploy --json 2>&1)
check_match "moonstack kms eth deploy" '"kms_contract":"0x[0-9a-fA-F]{40}"' "$dep"
echo "# deploy took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
KMSC=$(jq -r .kms_contract <<<"$dep")
IMPL=$(jq -r .app_implementation <<<"$dep")
check "the contract has code" yes "$(curl -s -H 'content-type: application/json' -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_getCode\",\"params\":[\"$KMSC\",\"latest\"]}" "$ETH_RPC" | jq -r '.result | length > 100 | if . then "yes" else "no" end')"
eth set-gateway-app-id --kms "$KMSC" gw-on-chain >/dev/null
check "set-gateway-app-id, read back by show" gw-on-chain "$(eth show --kms "$KMSC" --json | jq -r .gateway_app_id)"

# the simulator's PKI (collateral + root), shared by every CVM of the sim dir
cat >"$d/pki.lua" <<'EOF'
local sim = require('moonstack.sim')
local t = assert(sim.new({ dir = arg[1], cvm = 'pki', create = true }))
local function write(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end
write(arg[2], assert(t:collateral(os.time())))
write(arg[3], (assert(t:root_ca())))
t:close()
assert(sim.new({ dir = arg[1], cvm = 'kms', create = true })):close() -- the KMS's own CVM
EOF
"$MOONSTACK" run "$d/pki.lua" "$d/sim" "$d/collateral.json" "$d/sim-root.pem" >"$d/pki.log" 2>&1 \
  || { not_ok "sim PKI written" "$(cat "$d/pki.log")"; finish; exit 1; }

# a bad eth config: exit 2 naming the field
printf "return { key_dir = '%s', auth = { kind = 'eth', rpc_url = '%s', kms_contract = '0x12' } }\n" \
  "$d/keys-bad" "$ETH_RPC" >"$d/bad.lua"
err=$("$MOONSTACK" kms -c "$d/bad.lua" 2>&1); rc=$?
check "auth.kms_contract = '0x12': exit 2" 2 "$rc"
check_match "... naming the field" 'auth.kms_contract must be the DstackKms contract address' "$err"
printf "return { key_dir = '%s', auth = { kind = 'eth', rpc_url = 'ftp://x', kms_contract = '%s' } }\n" \
  "$d/keys-bad" "$KMSC" >"$d/bad.lua"
check_match "auth.rpc_url = 'ftp://x': named" 'auth.rpc_url must be an http' "$("$MOONSTACK" kms -c "$d/bad.lua" 2>&1)"

cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost', control = '$d/kms.ctl',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'eth', rpc_url = '$ETH_RPC', kms_contract = '$KMSC', timeout_ms = 3000,
    chain_id = 31337 },
  tee = { kind = 'sim', dir = '$d/sim', cvm = 'kms' },
  attestation = { collateral_file = '$d/collateral.json', root_ca_file = '$d/sim-root.pem',
    allow_simulator = true },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
KMS_URL=https://localhost:$KMS_PORT
kms_a_pid=$KPID
ok "KMS started with auth.kind = 'eth' (self-authorization on)"

meta=$(curl -s --cacert "$d/kms-keys/root-ca.crt" "$KMS_URL/prpc/GetMeta?json")
check "GetMeta kms_contract_address" "$KMSC" "$(jq -r .kms_contract_address <<<"$meta")"
check "GetMeta chain_id" 31337 "$(jq -r .chain_id <<<"$meta")"
check "GetMeta app_auth_implementation" "$IMPL" "$(jq -r .app_auth_implementation <<<"$meta")"
check "GetMeta gateway_app_id (from the contract)" gw-on-chain "$(jq -r .gateway_app_id <<<"$meta")"
check "GetMeta is_dev" false "$(jq -r .is_dev <<<"$meta")"

# app_keys CVM APP_ID COMPOSE_HASH: one GetAppKey from a new simulated CVM with those events;
# prints 'allow <gateway_app_id>' or 'deny <reason>' or 'error <msg>'.
cat >"$d/app.lua" <<'EOF'
local task = require('moonstack.core.task')
local sim = require('moonstack.sim')
local crypto = require('moonstack.crypto')
local kms_client = require('moonstack.kms.client')
local dir, url, cvm, app_id, compose = arg[1], arg[2], arg[3], arg[4], arg[5]
task.spawn(function()
  local tee = assert(sim.new({ dir = dir, cvm = cvm, create = true }))
  assert(tee:emit_event('app-id', crypto.unhex((app_id:gsub('^0x', ''))), { version = 1 }))
  assert(tee:emit_event('compose-hash', crypto.unhex(compose), { version = 1 }))
  assert(tee:emit_event('instance-id', ('\1'):rep(20), { version = 1 }))
  local r, err, code = kms_client.get_app_keys({ url = url, tee = tee, timeout_ms = 20000 })
  if r then
    print('allow ' .. tostring(r.keys.gateway_app_id))
  elseif code == 'EDENIED' then
    print('deny ' .. err)
  else
    print('error ' .. tostring(code) .. ' ' .. tostring(err))
  end
  tee:close()
end)
EOF

app_keys() { "$MOONSTACK" run "$d/app.lua" "$d/sim" "$KMS_URL" "cvm$(date +%s%N)" "$1" "$2" 2>>"$d/app.err"; }
kms_field() { grep '"scope":"kms"' "$d/kms.log" | grep -o "\"$1\":\"[0-9a-f]*\"" | tail -1 | cut -d'"' -f4; }

COMPOSE=$(printf 'moonstack eth test app' | sha256sum | cut -d' ' -f1)
NOAPP=0x$(printf '42%.0s' $(seq 20))

# ---- the KMS itself: refused until its OS image, MR and device are on chain ----
out=$(app_keys "$NOAPP" "$COMPOSE")
check_match "KMS not on chain: trusted RPCs refused (self-authorization)" \
  'deny .*self-authorization denied: OS image is not allowed' "$out"
OSI=$(kms_field os_image_hash); MR=$(kms_field mr_aggregated); DEV=$(kms_field device_id)
check_match "the KMS log names its mrAggregated and device id" '^[0-9a-f]{64} [0-9a-f]{64}$' "$MR $DEV"
eth add-os-image --kms "$KMSC" "${OSI:-00}" >/dev/null 2>&1 || eth add-os-image --kms "$KMSC" "$(printf '0%.0s' $(seq 64))" >/dev/null
eth add-kms-mr --kms "$KMSC" "$MR" >/dev/null
out=$(app_keys "$NOAPP" "$COMPOSE")
check_match "KMS on an unlisted device: refused with the contract's reason" \
  'deny .*self-authorization denied: KMS is not allowed to boot on this device' "$out"
eth add-kms-device --kms "$KMSC" "$DEV" >/dev/null
out=$(app_keys "$NOAPP" "$COMPOSE")
check_match "device listed: the KMS serves; an unregistered app is denied" 'deny .*boot denied: App not registered' "$out"

eth register-app --kms "$KMSC" --app "$NOAPP" >/dev/null
check_match "an app id registered without a contract behind it: denied" \
  'deny .*boot denied: App not deployed or invalid address' "$(app_keys "$NOAPP" "$COMPOSE")"

# ---- an app: registered, denied until its compose hash is on chain ----
reg=$(eth register-app --kms "$KMSC" --allow-any-device --json 2>&1)
APP=$(jq -r .app_id <<<"$reg" 2>/dev/null)
check_match "register-app deploys and registers a DstackApp" '^0x[0-9a-fA-F]{40}$' "$APP"
out=$(app_keys "$APP" "$COMPOSE")
check_match "registered app, compose hash not on chain: the contract's reason" \
  '^deny .*boot denied: Compose hash not allowed$' "$out"
eth add-compose-hash --app "$APP" "$COMPOSE" >/dev/null
t0=$(date +%s%N)
out=$(app_keys "$APP" "$COMPOSE")
check "after addComposeHash: allowed, the gateway app id from the contract" "allow gw-on-chain" "$out"
echo "# an allowed GetAppKey (RA-TLS + 3 eth_calls + key derivation): $(( ($(date +%s%N) - t0) / 1000000 )) ms"
out=$(app_keys "$APP" "$(printf 'other' | sha256sum | cut -d' ' -f1)")
check_match "another compose hash of the same app: denied" 'Compose hash not allowed' "$out"
eth remove-compose-hash --app "$APP" "$COMPOSE" >/dev/null
check_match "removeComposeHash: denied again" 'Compose hash not allowed' "$(app_keys "$APP" "$COMPOSE")"
eth add-compose-hash --app "$APP" "$COMPOSE" >/dev/null
check "the same KMS process all along (no restart)" "$KPID" "$(pgrep -f "kms -c $d/kms.lua" | head -1)"

# ---- a non-owner cannot change the policy ----
err=$(MOONSTACK_ETH_PRIVATE_KEY=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d \
  "$MOONSTACK" kms eth add-compose-hash --rpc-url "$ETH_RPC" --app "$APP" "$(printf '1%.0s' $(seq 64))" 2>&1); rc=$?
check "a non-owner's addComposeHash: exit 1" 1 "$rc"
check_match "... the node says it would revert" 'revert' "$err"
# the key file must be private
printf '%s\n' "$HARDHAT_KEY" >"$d/key"; chmod 644 "$d/key"
err=$("$MOONSTACK" kms eth add-os-image --rpc-url "$ETH_RPC" --kms "$KMSC" --key-file "$d/key" "$COMPOSE" 2>&1)
check_match "a key file others can read is refused" 'chmod 600' "$err"
chmod 600 "$d/key"
check_match "a 0600 key file signs" 'addOsImageHash' "$("$MOONSTACK" kms eth add-os-image --rpc-url "$ETH_RPC" --kms "$KMSC" --key-file "$d/key" "$COMPOSE" 2>&1)"

# ---- a KMS replica (onboarding by replication from this KMS) on an unlisted device ----
# a second simulated machine under the same simulated PKI: another PPID, so another device id
DEVB=$("$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/sim_other_device.lua" "$d/sim" "$d/sim2" 2>"$d/sim2.log")
check_match "a second simulated machine (its device id)" '^[0-9a-f]{64}$' "$DEVB"
"$MOONSTACK" run /dev/stdin "$d/sim2" <<'EOF' >/dev/null 2>&1
assert(require('moonstack.sim').new({ dir = arg[1], cvm = 'kms-b', create = true })):close()
EOF
cat >"$d/kms-b.lua" <<EOF
return {
  key_dir = '$d/kms-b-keys', domain = 'localhost',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'eth', rpc_url = '$ETH_RPC', kms_contract = '$KMSC', timeout_ms = 3000 },
  tee = { kind = 'sim', dir = '$d/sim2', cvm = 'kms-b' },
  attestation = { collateral_file = '$d/collateral.json', root_ca_file = '$d/sim-root.pem',
    allow_simulator = true },
  onboard = { source_url = '$KMS_URL' },
}
EOF
out=$(timeout 60 "$MOONSTACK" kms -c "$d/kms-b.lua" 2>&1); rc=$?
check "replica on an unlisted device: its start fails (exit 1)" 1 "$rc"
check_match "... the source KMS refused it with the contract's reason" \
  'KMS denied: KMS is not allowed to boot on this device' "$out"
check "... and it wrote no key" "" "$(ls "$d/kms-b-keys" 2>/dev/null)"
check "the source KMS saw the replica's device id (sha256 of its PPID)" "$DEVB" \
  "$(grep '"scope":"kms"' "$d/kms.log" | grep -o '"device_id":"[0-9a-f]*"' | tail -1 | cut -d'"' -f4)"
check "... not the source's own" different "$([ "$DEVB" != "$DEV" ] && echo different || echo same)"
eth add-kms-device --kms "$KMSC" "$DEVB" >/dev/null
kms_start "$d/kms-b.lua" "$d/kms-b.log"
check "replica's device listed: it onboards and serves the source's root k256 key" \
  "$(jq -r .k256_pubkey <<<"$meta")" \
  "$(curl -s --cacert "$d/kms-keys/root-ca.crt" "https://localhost:$KMS_PORT/prpc/GetMeta?json" | jq -r .k256_pubkey)"
kill -TERM "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null
KPID=$kms_a_pid

# ---- the chain stops: deny, never allow ----
kill -KILL "$HH_PID"; wait "$HH_PID" 2>/dev/null
t0=$(date +%s%N)
out=$(app_keys "$APP" "$COMPOSE")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check_match "chain down: the allowed app is now denied, saying why" 'deny .*eth auth: chain unreachable' "$out"
echo "# denial with the chain down took $ms ms"
check "... within the configured timeout (< 15 s)" yes "$([ "$ms" -lt 15000 ] && echo yes || echo no)"
err=$(curl -s --cacert "$d/kms-keys/root-ca.crt" "$KMS_URL/prpc/GetMeta?json")
check_match "chain down: GetMeta fails with a clear error" 'chain unreachable' "$err"
check "the KMS still runs" 0 "$(kill -0 "$KPID"; echo $?)"
check "no allow was logged after the chain stopped" 0 \
  "$(sed -n '/chain unreachable/,$p' "$d/kms.log" | grep -c '"allow":true')"
finish
