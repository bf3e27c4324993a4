#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack kms derive` on a key directory built here with openssl from the spec's vector
# root scalar (kms-vmm-gateway.md §9 items 1-2: P-256 root f57527ce…, k256 root 0x01×32,
# app_id 0x11×20, instance_id 0x22×20): every derived value equals the spec's; the app CA
# certificate chains to the root CA; the k256 signature recovers the root k256 public key;
# broken key directories and bad arguments fail clearly.
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
keys=$t/keys
mkdir -m 700 "$keys"
# The spec's 138-byte PKCS#8 DER of the vector root scalar, turned into PEM by openssl.
ROOT_DER=308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1a1440342000491f50522407ce29dce3ed7d31a15d80c1c42f13a23552d2b33a0ce09ee11e47bce95936f3e7f80d195f879e28e1b144ef37ac9ab8e36a690cbf930b775897b27
printf '%s' "$ROOT_DER" | xxd -r -p | openssl pkey -inform DER -out "$keys/root-ca.key"
openssl req -x509 -new -key "$keys/root-ca.key" -subj '/O=Dstack/CN=Dstack KMS CA' -days 30 \
  -addext 'basicConstraints=critical,CA:TRUE,pathlen:1' \
  -addext 'keyUsage=critical,digitalSignature,keyCertSign,cRLSign' -out "$keys/root-ca.crt" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/tmp-ca.key" 2>/dev/null
openssl req -x509 -new -key "$keys/tmp-ca.key" -subj '/O=Dstack/CN=Dstack Client Temp CA' -days 30 \
  -addext 'basicConstraints=critical,CA:TRUE,pathlen:0' -out "$keys/tmp-ca.crt" 2>/dev/null
printf '%064d' 0 | sed 's/0/01/g' | cut -c1-64 | xxd -r -p >"$keys/root-k256.key"
# private keys others may read are refused, as ssh does (M7 item 7): openssl wrote them 0644
chmod 644 "$keys/root-ca.key"
err=$("$MOONSTACK" kms derive --key-dir "$keys" --app-id "$(printf '11%.0s' $(seq 20))" 2>&1)
check "a 0644 root-ca.key: exit 1" 1 $?
check_match "a 0644 root-ca.key: the file and the fix named" \
  "$keys/root-ca.key is accessible by its group or others \\(mode 0644\\).*run chmod 600 $keys/root-ca.key" "$err"
chmod 600 "$keys"/*.key
check "k256 root is 32 bytes of 0x01" "0101010101010101010101010101010101010101010101010101010101010101" \
  "$(xxd -p -c 64 "$keys/root-k256.key")"

APP=$(printf '11%.0s' $(seq 20))
INST=$(printf '22%.0s' $(seq 20))
out=$("$MOONSTACK" kms derive --key-dir "$keys" --app-id "$APP" --instance-id "$INST" --json)
check "derive exits 0" 0 $?
field() { printf '%s' "$1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s)[process.argv[1]];process.stdout.write(v===undefined?"(missing)":v)})' "$2"; }

check "app_id" "$APP" "$(field "$out" app_id)"
check "instance_id" "$INST" "$(field "$out" instance_id)"
check "env_crypt_key" a7470db8cfdd0fe24134b461d60766afa7c078abe6dce9f2c8a5c44034ca400e "$(field "$out" env_crypt_key)"
check "env_crypt_pubkey" 93cf259f68b24775d54290a8ea57cf93efc994d3ff28a7b8ba7a39e9f512302f "$(field "$out" env_crypt_pubkey)"
check "disk_crypt_key" a59c814e2c6d9353af59ce4fba7215e5ec3b62a2495b4dca48ea6f9804061f51 "$(field "$out" disk_crypt_key)"
check "k256_key" 88fa429170ad091e0f87b335ba19b1729610ac25441728807ce3325161846baf "$(field "$out" k256_key)"
check_match "k256_pubkey" '^02a594d1[0-9a-f]{52}01ebc3$' "$(field "$out" k256_pubkey)"
# The app CA private key (PEM) holds the spec's app-CA scalar (read back by openssl).
field "$out" app_ca_key >"$t/app-ca.key"
scalar=$(openssl pkey -in "$t/app-ca.key" -text -noout | sed -n '/^priv:/,/^pub:/p' | grep -v 'priv:\|pub:' | tr -d ' :\n')
check "app CA scalar" 5b779e0a9fe80b2e5866d94958daa1a4e29a183228b3f37acd7eae153e18a75f "$scalar"
# The app CA certificate: issued by the root CA, for that key, with the app CA profile.
field "$out" app_ca_cert >"$t/app-ca.crt"
check "app CA chains to root-ca.crt" "$t/app-ca.crt: OK" \
  "$(openssl verify -CAfile "$keys/root-ca.crt" "$t/app-ca.crt" 2>&1)"
check "app CA cert is for the app CA key" "$(openssl pkey -in "$t/app-ca.key" -pubout)" \
  "$(openssl x509 -in "$t/app-ca.crt" -noout -pubkey)"
check_match "app CA subject" 'O ?= ?Dstack, CN ?= ?Dstack App CA' "$(openssl x509 -in "$t/app-ca.crt" -noout -subject)"
check "root_ca_cert is root-ca.crt" "$(openssl x509 -in "$keys/root-ca.crt")" "$(field "$out" root_ca_cert | openssl x509)"
# The dstack-kms-issued signature recovers the root k256 public key (secp256k1 of 0x01×32).
check "kms_k256_pubkey" 031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f "$(field "$out" kms_k256_pubkey)"
rec=$("$MOONSTACK" run /dev/stdin "$APP" "$(field "$out" k256_pubkey)" "$(field "$out" k256_signature)" <<'LUA'
local c = require('moonstack.crypto')
local d = require('moonstack.crypto.dstack')
local a = { ... }
print(c.hex(assert(d.kms_issued_recover(c.unhex(a[1]), c.unhex(a[2]), c.unhex(a[3])))))
LUA
)
check "k256_signature recovers the root k256 key" 031b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f "$rec"

# Without --instance-id the disk key is the spec's empty-instance value; text output works.
out=$("$MOONSTACK" kms derive --key-dir "$keys" --app-id "0x$APP")
check_match "text output, empty instance disk key" \
  '^disk_crypt_key +14de7a7fd8bddf8e641a55ca97f043cac4344d175419f743940840f3a348f049$' \
  "$(printf '%s\n' "$out" | grep '^disk_crypt_key')"

# A sealed key directory (sim sealer) opens through the KMS config (-c), not with --key-dir; the
# keys are those of the same root material unsealed.
"$MOONSTACK" run /dev/stdin "$t" <<'LUA'
local dir = ({ ... })[1]
local sim = require('moonstack.sim')
local keys = require('moonstack.kms.keys')
local plain = assert(keys.load(dir .. '/keys'))
local tee = assert(sim.new({ dir = dir .. '/sim', cvm = 'kms', create = true }))
local sealer = assert(require('moonstack.kms.seal').sim(tee))
tee:close()
assert(keys.write(dir .. '/sealed', { root_key = plain.root_key, root_cert = plain.root_cert,
  root_k256 = plain.root_k256, tmp_ca_key = plain.tmp_ca_key, tmp_ca_cert = plain.tmp_ca_cert },
  { sealer = sealer }))
LUA
cat >"$t/sealed.lua" <<LUA
return { key_dir = '$t/sealed', auth = { kind = 'dev' },
  seal = { tee = 'sim', dir = '$t/sim', cvm = 'kms' } }
LUA
# (every field but app_ca_cert, which is issued afresh: serial and dates differ)
check "derive -c on the sealed copy = derive --key-dir on the plain one" \
  "$("$MOONSTACK" kms derive --key-dir "$keys" --app-id "$APP" --json | grep -v '"app_ca_cert"')" \
  "$("$MOONSTACK" kms derive -c "$t/sealed.lua" --app-id "$APP" --json | grep -v '"app_ca_cert"')"
err=$("$MOONSTACK" kms derive --key-dir "$t/sealed" --app-id "$APP" 2>&1 >/dev/null); rc=$?
check "--key-dir on a sealed directory exits 1" 1 "$rc"
check_match "says it is sealed" 'is sealed' "$err"
err=$("$MOONSTACK" kms derive -c "$t/sealed.lua" --key-dir "$keys" --app-id "$APP" 2>&1); rc=$?
check "-c with --key-dir exits 2" 2 "$rc"
check_match "says one of them" 'one of them' "$err"

# Failures: a missing file, bad ids, a missing option, an unknown subcommand.
mv "$keys/root-k256.key" "$t/k256.bak"
err=$("$MOONSTACK" kms derive --key-dir "$keys" --app-id "$APP" 2>&1 >/dev/null); rc=$?
check "incomplete key dir exits 1" 1 "$rc"
check_match "names the missing file" 'incomplete: missing root-k256.key' "$err"
check "nothing regenerated" "" "$(ls "$keys" | grep k256)"
mv "$t/k256.bak" "$keys/root-k256.key"
err=$("$MOONSTACK" kms derive --key-dir "$keys" --app-id abcd 2>&1); rc=$?
check "short app id exits 2" 2 "$rc"
check_match "says why" 'app-id must be 20 bytes' "$err"
err=$("$MOONSTACK" kms derive --app-id "$APP" 2>&1); rc=$?
check "missing --key-dir and -c exits 2" 2 "$rc"
err=$("$MOONSTACK" kms frobnicate 2>&1); rc=$?
check "unknown subcommand exits 2" 2 "$rc"
check_match "names it" "unknown command 'frobnicate'" "$err"
"$MOONSTACK" kms derive --help | grep -q 'key-dir DIR' && ok "derive --help" || not_ok "derive --help"
finish
