#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M8: the VMM wired to the KMS of M5. `moonstack vm deploy --env-file` asks the VMM for the
# app's env key (GetAppEnvEncryptPubKey, proxied to the KMS, its signature checked against the
# KMS k256 key), encrypts the env to it, and the kms_enabled app boots through the KMS (its
# URL reaching the guest in the sys-config; the CVM in a network namespace of its own because
# of its port mapping, the KMS on the host's loopback forwarded into it). The guest decrypts
# the env: allowed_envs are kept, others dropped; the work dir holds only ciphertext. The
# CVM's GetTlsKey chain ends at the KMS root.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

d=$(tmpdir)
mkdir -p "$d/sim" "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 \
  || { not_ok "simulated platform made (moonstack sim init)" "$(cat "$d/sim.log")"; finish; exit 1; }

cat >"$d/policy.lua" <<'EOF'
return { name = 'vmm-kms-test', version = '1',
  on_auth = function(b) return { allow = true, reason = 'test: every app', gateway_app_id = 'any' } end }
EOF
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'policy', path = '$d/policy.lua' },
  image = { verify = false }, -- process images have no registered boot measurements (M13)
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
kport=$KMS_PORT
KMS_URL=https://localhost:$kport
kms_pub=$(curl -s --cacert "$d/kms-keys/root-ca.crt" "https://localhost:$kport/prpc/GetMeta?json" | jq -r .k256_pubkey)
check_match "KMS started (its k256 key)" '^[0-9a-f]{66}$' "$kms_pub"

read -r APP_PORT < <(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  kms_urls = { '$KMS_URL' }, kms_ca = '$d/kms-keys/root-ca.crt',
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 1024, to = 65535 } } },
  process = { sim_dir = '$d/sim' },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
export DSTACK_VMM_URL=unix:$d/vmm.sock VMM=unix:$d/vmm.sock

jq -cn '{manifest_version:2, name:"secret-app", runner:"bash", kms_enabled:true,
  allowed_envs:["FOO","SECRET"],
  bash_script:"echo \"env: FOO=$FOO SECRET=$SECRET EXTRA=${EXTRA:-dropped}\"; exec sleep 1000"}' >"$d/app.json"
printf 'FOO=bar\nSECRET=s3cret value\nEXTRA=not-allowed\n' >"$d/app.env"
out=$("$MOONSTACK" vm deploy --name secret-app --image proc --compose "$d/app.json" --memory 256M \
  --env-file "$d/app.env" --kms-pubkey "$kms_pub" --port "tcp:127.0.0.1:$APP_PORT:8080" --timeout 60 2>&1)
check "moonstack vm deploy --env-file: booted" 0 $?
id=$(rpc Status '{}' | jq -r '.vms[0].id')
check_match "... following the boot to done" 'done' "$out"
w=$d/run/$id
check "the env reaches the work dir encrypted only" "no plaintext" \
  "$(grep -q 's3cret' "$w/shared/.encrypted-env" && echo plaintext || echo no plaintext)"
check_match "the sys-config carries the KMS URL" "\"kms_urls\":\\[\"https://localhost:$kport\"\\]" "$(cat "$w/shared/.sys-config.json")"
check "the CVM runs in a network namespace of its own" different \
  "$([ "$(readlink "/proc/$(jq -r .pid "$w/process.json")/ns/net")" != "$(readlink /proc/self/ns/net)" ] && echo different || echo same)"
if wait_for 20 grep -q 'env: ' "$w/serial.log"; then
  check "allowed envs decrypted in the guest, the others dropped" "app: env: FOO=bar SECRET=s3cret value EXTRA=dropped" \
    "$(grep -o 'app: env: .*' "$w/serial.log" | tail -1)"
else
  not_ok "the app printed its env" "$(tail -20 "$w/stderr.log")"
fi
check_match "the KMS served the CVM's app keys" 'GetAppKey decision .*"allow":true' "$(cat "$d/kms.log")"

curl -s --unix-socket "$w/dstack.sock" -H 'content-type: application/json' \
  -d '{"subject":"app.example","usage_server_auth":true}' http://localhost/GetTlsKey >"$d/tls.json"
jq -r '.certificate_chain[-1]' "$d/tls.json" >"$d/chainroot.pem"
check "GetTlsKey: the chain ends at the KMS root" "$(openssl x509 -in "$d/kms-keys/root-ca.crt" -noout -fingerprint)" \
  "$(openssl x509 -in "$d/chainroot.pem" -noout -fingerprint 2>&1)"

# a wrong KMS key: deploy refuses to encrypt to a key it cannot trust
out=$("$MOONSTACK" vm deploy --name other --image proc --compose "$d/app.json" --env-file "$d/app.env" \
  --kms-pubkey "02$(printf '%064d' 1)" --no-wait 2>&1)
check "--kms-pubkey that did not sign the env key: refused" 1 $?
check_match "... saying why" 'signature|signed|KMS' "$out"
check "... and nothing created" 1 "$(rpc Status '{}' | jq '.vms | length')"

rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
check "RemoveVm" 200 "$(rpc_status)"
check "no process left (/proc walk)" "" "$(procs_under "$d/run")"
finish
