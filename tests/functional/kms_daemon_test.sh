#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack kms -c kms.lua` as a daemon: the first start creates the key directory (0700,
# files 0600); the control socket (moonstack repl) reports the port; curl trusting only the
# root CA talks pRPC over TLS (GetMeta, GetTempCaCert, GetAppEnvEncryptPubKey, /health); the
# dev auth backend warns loudly; malformed input (random bytes, a cut ClientHello, plain HTTP,
# non-HTTP over TLS, a random protobuf body, an absurd Content-Length) gets clear refusals and the
# KMS stays up; SIGTERM stops it with status 0; a restart serves the same
# keys; a partial key directory and a bad config refuse to start with a clear error.
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
cat >"$t/kms.lua" <<LUA
return {
  key_dir = '$t/keys',
  listen = { host = '127.0.0.1', port = 0 },
  control = '$t/kms.ctl',
  auth = { kind = 'dev' },
}
LUA

start_kms() {
  "$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms.log" &
  pid=$!
  defer "kill -KILL $pid 2>/dev/null"
  if wait_for 10 test -S "$t/kms.ctl"; then ok "kms started"; else
    not_ok "kms started" "$(cat "$t/kms.log")"; finish; exit 1; fi
  port=$("$MOONSTACK" repl "$t/kms.ctl" -e 'kms:port()' 2>&1)
  check_match "control socket reports the port" '^[0-9]+$' "$port"
}

stop_kms() {
  kill -TERM "$pid"
  wait "$pid"
  check "SIGTERM exits 0" 0 $?
}

prpc() { curl -sS --max-time 10 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  -H 'Content-Type: application/json' -d "${2:-}" "https://localhost:$port/prpc/$1"; }
jget() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(String(JSON.parse(s)[process.argv[1]])))' "$1"; }

start_kms
check "key dir mode" 700 "$(stat -c %a "$t/keys")"
for f in root-ca.key root-ca.crt root-k256.key tmp-ca.key tmp-ca.crt; do
  check "$f mode" 600 "$(stat -c %a "$t/keys/$f")"
done
check "control socket mode" 600 "$(stat -c %a "$t/kms.ctl")"
check_match "dev auth warns at start" 'DEV AUTH BACKEND' "$(cat "$t/kms.log")"

meta=$(prpc GetMeta '')
check "GetMeta ca_cert is root-ca.crt" "$(cat "$t/keys/root-ca.crt")" "$(printf '%s' "$meta" | jget ca_cert | sed '/^$/d')"
check "GetMeta is_dev" true "$(printf '%s' "$meta" | jget is_dev)"
check "GetMeta gateway_app_id" any "$(printf '%s' "$meta" | jget gateway_app_id)"
k256=$(printf '%s' "$meta" | jget k256_pubkey)
check_match "GetMeta k256_pubkey" '^0[23][0-9a-f]{64}$' "$k256"
tmp=$(prpc KMS.GetTempCaCert '')
check "GetTempCaCert temp_ca_cert" "$(cat "$t/keys/tmp-ca.crt")" "$(printf '%s' "$tmp" | jget temp_ca_cert | sed '/^$/d')"
# the server certificate: CN localhost, issued by the root CA (curl already verified the chain)
subj=$(echo | openssl s_client -connect "127.0.0.1:$port" -servername localhost 2>/dev/null | openssl x509 -noout -subject -issuer)
check_match "rpc cert subject" 'subject=CN ?= ?localhost' "$subj"
check_match "rpc cert issuer" 'issuer=O ?= ?Dstack, CN ?= ?Dstack KMS CA' "$subj"

APP=$(printf '11%.0s' $(seq 20))
pk=$(prpc GetAppEnvEncryptPubKey "{\"app_id\":\"$APP\"}")
pub=$(printf '%s' "$pk" | jget public_key)
check_match "env pubkey" '^[0-9a-f]{64}$' "$pub"
# the public key is the one derive prints for this key directory; both signatures recover GetMeta's key
check "env pubkey = derive's" "$("$MOONSTACK" kms derive --key-dir "$t/keys" --app-id "$APP" --json | jget env_crypt_pubkey)" "$pub"
rec=$("$MOONSTACK" run /dev/stdin "$APP" "$pk" <<'LUA'
local c, d, cjson = require('moonstack.crypto'), require('moonstack.crypto.dstack'), require('cjson')
local a = { ... }
local p = cjson.decode(a[2])
local base = { app_id = c.unhex(a[1]), public_key = c.unhex(p.public_key) }
local legacy = assert(d.env_pubkey_recover({ app_id = base.app_id, public_key = base.public_key,
  signature = c.unhex(p.signature) }))
local v1 = assert(d.env_pubkey_recover({ app_id = base.app_id, public_key = base.public_key,
  signature = c.unhex(p.signature_v1), timestamp = p.timestamp }))
print(c.hex(legacy) .. ' ' .. c.hex(v1))
LUA
)
check "env pubkey signatures recover the KMS k256 key" "$k256 $k256" "$rec"
err=$(prpc GetAppEnvEncryptPubKey '{"app_id":"11"}')
check_match "short app_id is a clear error" 'app_id must be 20 bytes' "$err"
check "health" OK "$(curl -sS --max-time 10 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/health")"
if curl -sS --max-time 10 "https://127.0.0.1:$port/health" >/dev/null 2>&1; then
  not_ok "a client without the root CA is refused"; else ok "a client without the root CA is refused"; fi

# Malformed input of every layer: the KMS answers what it can and stays up.
raw() { timeout 5 bash -c "cat > /dev/tcp/127.0.0.1/$port" 2>/dev/null; }
head -c 8192 /dev/urandom | raw
printf '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' | raw # a ClientHello cut short
printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' | raw           # plain HTTP on the TLS port
printf 'NOT HTTP AT ALL\r\n\r\n' | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$port" >/dev/null 2>&1
head -c 2048 /dev/urandom >"$t/junk.bin"
code=$(curl -sS --max-time 10 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  -o "$t/junk.out" -w '%{http_code}' -H 'Content-Type: application/octet-stream' --data-binary @"$t/junk.bin" \
  "https://localhost:$port/prpc/GetAppEnvEncryptPubKey")
check "random protobuf body: 400" 400 "$code"
check_match "random protobuf body: a decoding error" 'decode|protobuf|wire|field|app_id' "$(cat "$t/junk.out")"
code=$(curl -sS --max-time 10 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  -o "$t/big.out" -w '%{http_code}' -H 'Content-Type: application/json' -H 'Content-Length: 99999999999' \
  -d '{}' "https://localhost:$port/prpc/GetMeta?json")
check_match "an absurd Content-Length is refused" '^4[0-9][0-9]$|^000$' "$code"
err=$(prpc GetAppKey '{"api_version":1,"vm_config":""}')
check_match "GetAppKey without attestation settings: a clear error" 'EUNAVAILABLE|attestation' "$err"
if kill -0 "$pid" 2>/dev/null; then ok "still running after malformed input"; else
  not_ok "still running after malformed input" "$(tail -20 "$t/kms.log")"; fi
check "health after malformed input" OK "$(curl -sS --max-time 10 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/health")"
check "GetMeta after malformed input" "$k256" "$(prpc GetMeta '' | jget k256_pubkey)"
stop_kms

# A restart loads the same keys.
start_kms
check "same k256 key after a restart" "$k256" "$(prpc GetMeta '' | jget k256_pubkey)"
stop_kms

# A partial key directory: exit 1, the missing file named, nothing regenerated.
mv "$t/keys/root-ca.crt" "$t/root-ca.crt.bak"
timeout 10 "$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms.log"
check "partial key dir exits 1" 1 $?
check_match "names the missing file" 'incomplete: missing root-ca.crt' "$(cat "$t/kms.log")"
check "root-ca.crt not regenerated" "" "$(ls "$t/keys" | grep root-ca.crt)"
mv "$t/root-ca.crt.bak" "$t/keys/root-ca.crt"

# The shipped example configs validate (tests/functional/example_configs_test.sh starts them),
# from another directory: their paths do not depend on it.
for ex in kms.lua:kms kms-dev.lua:kms agent-dev.lua:agent; do
  out=$(cd / && "$MOONSTACK" run /dev/stdin "$MOONSTACK_SRC/examples/configs/${ex%%:*}" "${ex##*:}" 2>&1 <<'LUA'
local path, svc = ...
local cfg, err = require('moonstack.' .. svc .. '.config').load(path)
if not cfg then error(err, 0) end
local dir = path:match('^(.*)/[^/]*$')
for _, k in ipairs({ 'key_dir', 'shared_dir', 'state_dir', 'control' }) do
  if cfg[k] and cfg[k]:sub(1, 1) ~= '/' then error(k .. ' is relative: ' .. cfg[k], 0) end
end
if cfg.shared_dir and not io.open(cfg.shared_dir .. '/app-compose.json') then
  error('no app-compose.json in ' .. cfg.shared_dir .. ' (next to ' .. dir .. ')', 0)
end
print('ok')
LUA
)
  check "examples/configs/${ex%%:*} validates" ok "$out"
done

# A bad config: exit 2 with the key named.
printf 'return { listen = { port = "x" } }\n' >"$t/bad.lua"
err=$("$MOONSTACK" kms -c "$t/bad.lua" 2>&1); rc=$?
check "bad config exits 2" 2 "$rc"
check_match "names the key" 'port' "$err"

# M7 item 14: a first start that cannot work writes no key.
printf "return { key_dir = '%s', auth = { kind = 'devv' } }\n" "$t/keys-devv" >"$t/devv.lua"
err=$("$MOONSTACK" kms -c "$t/devv.lua" 2>&1); rc=$?
check "auth.kind = 'devv' exits 2" 2 "$rc"
check_match "the error lists the valid kinds" "unknown auth kind 'devv' \\(valid: dev, eth, policy, webhook\\)" "$err"
check "auth.kind = 'devv': no key directory" no "$([ -e "$t/keys-devv" ] && echo yes || echo no)"
node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port)})' \
  >"$t/busy.port" &
busy_pid=$!
defer "kill $busy_pid 2>/dev/null"
wait_for 10 test -s "$t/busy.port"
busy=$(cat "$t/busy.port")
printf "return { key_dir = '%s', listen = { host = '127.0.0.1', port = %s }, auth = { kind = 'dev' } }\n" \
  "$t/keys-busy" "$busy" >"$t/busy.lua"
err=$(timeout 10 "$MOONSTACK" kms -c "$t/busy.lua" 2>&1); rc=$?
check "port in use exits 1" 1 "$rc"
check_match "port in use: named" "EADDRINUSE: 127.0.0.1:$busy" "$err"
check "port in use: no key written" "" "$(ls "$t/keys-busy" 2>/dev/null)"
touch "$t/not-a-socket"
printf "return { key_dir = '%s', listen = { host = '127.0.0.1', port = 0 }, auth = { kind = 'dev' }, control = '%s' }\n" \
  "$t/keys-ctl" "$t/not-a-socket" >"$t/ctl.lua"
err=$(timeout 10 "$MOONSTACK" kms -c "$t/ctl.lua" 2>&1); rc=$?
check "control path taken by a file: exit 1" 1 "$rc"
check_match "control path taken by a file: named" "EEXIST: $t/not-a-socket exists and is not a socket" "$err"
check "control path taken by a file: no key written" "" "$(ls "$t/keys-ctl" 2>/dev/null)"
finish
