#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack audit` end to end: the shipped good examples (an Atlas-style policy, an aTLS proxy
# env file, the production gateway and VMM configs) pass with exit 0; crafted bad files (a
# policy, a KMS config, a VMM config, a proxy env file) are loaded by the daemons' loaders and
# every checklist item is flagged, naming the file and the key, exit 1, in text and --json;
# a running moonstack process with a token on its command line is found in /proc (the flag
# named, the value never printed); usage errors and files that do not load exit 2.
source "$(dirname "$0")/lib.sh"
need_tools jq
EX=$MOONSTACK_SRC/examples
dir=$(tmpdir)

# 1. the good examples
"$MOONSTACK" audit --policy "$EX/audit/atlas-policy.json" --config "$EX/audit/atls-proxy.env" \
  --config "$EX/configs/gateway.lua" --config "$EX/configs/vmm.lua" --no-proc >"$dir/out" 2>&1
check "good examples: exit 0" 0 "$?"
check_match "good examples: the summary names each file" \
  '^0 error\(s\), 0 warning\(s\) in .*atlas-policy.json \(policy\), .*atls-proxy.env \(proxy\), .*gateway.lua \(gateway\), .*vmm.lua \(vmm\)$' \
  "$(tail -1 "$dir/out")"
# the development KMS config trips exactly its development settings
"$MOONSTACK" audit --config "$EX/configs/kms-dev.lua" --no-proc --json >"$dir/dev.json" 2>&1
check "kms-dev.lua (development): exit 1" 1 "$?"
check "kms-dev.lua: only dev auth and the simulator" "kms.dev_auth policy.simulator" \
  "$(jq -r '[.findings[].id] | join(" ")' "$dir/dev.json")"

# 2. crafted bad inputs
cat >"$dir/policy.json" <<'JSON'
{"type": "dstack_tdx", "allowed_tcb_status": ["UpToDate", "OutOfDate", "Revoked"],
 "disable_runtime_verification": true, "pccs_url": "http://pccs.example.com/tdx/certification/v4"}
JSON
mkdir -m 0755 "$dir/keys"
echo secret >"$dir/keys/root-k256.key"
chmod 0644 "$dir/keys/root-k256.key"
echo token >"$dir/admin.token"
chmod 0640 "$dir/admin.token"
cat >"$dir/kms.lua" <<EOF
return {
  key_dir = '$dir/keys',
  auth = { kind = 'webhook', url = 'http://auth.example.com:8000' },
  admin = { listen = { host = '0.0.0.0', port = 8001 }, insecure_no_auth = true },
  tee = { kind = 'sim', dir = '$dir/sim', cvm = 'kms' },
  attestation = { pccs = 'http://pccs.example.com/tdx/certification/v4' },
}
EOF
cat >"$dir/vmm.lua" <<EOF
return {
  listen = { host = '0.0.0.0', port = 8080 },
  kms_urls = { 'http://kms.example.com:8000' }, gateway_urls = { 'https://gw.example.com:8000' },
  dashboard = { listen = { host = '0.0.0.0', port = 8081 }, kms = { url = 'http://127.0.0.1:8001',
    token_file = '$dir/admin.token' } },
}
EOF
cat >"$dir/atls-proxy.env" <<'ENV'
ATLS_PROXY_ALLOWLIST=tee.example.com:443,*
ATLS_PROXY_LISTEN=0.0.0.0:9000
ATLS_PROXY_USER=root
ENV
"$MOONSTACK" audit --policy "$dir/policy.json" --config "$dir/kms.lua" --config "$dir/vmm.lua" \
  --config "$dir/atls-proxy.env" --no-proc --json >"$dir/bad.json" 2>"$dir/err"
check "bad inputs: exit 1" 1 "$?"
has() { # NAME ID FILE KEY: a finding with that id, file and key, and a fix
  local n
  n=$(jq --arg id "$2" --arg f "$3" --arg k "$4" \
    '[.findings[] | select(.id == $id and .file == $f and .key == $k and (.fix | length > 0))] | length' \
    "$dir/bad.json")
  if [ "$n" = 1 ]; then ok "$1: $2 at $(basename "$3"): $4"; else
    not_ok "$1: $2 at $(basename "$3"): $4" "$(jq -c '[.findings[] | [.id, .file, .key]]' "$dir/bad.json") $(cat "$dir/err")"; fi
}
has "Revoked allowed" tcb.revoked "$dir/policy.json" 'allowed_tcb_status[3]'
has "OutOfDate without a grace period" tcb.outdated_without_grace "$dir/policy.json" 'allowed_tcb_status[2]'
has "runtime verification off" runtime.disabled "$dir/policy.json" disable_runtime_verification
has "no bootchain" runtime.no_bootchain "$dir/policy.json" expected_bootchain
has "no os_image_hash" runtime.no_os_image_hash "$dir/policy.json" os_image_hash
has "no app_compose" runtime.no_app_compose "$dir/policy.json" app_compose
has "plain PCCS URL" tls.plain_url "$dir/policy.json" pccs_url
has "open allowlist" proxy.open_allowlist "$dir/atls-proxy.env" ATLS_PROXY_ALLOWLIST
has "proxy as root" proxy.root "$dir/atls-proxy.env" ATLS_PROXY_USER
has "plain ws proxy" tls.plain_ws "$dir/atls-proxy.env" ATLS_PROXY_LISTEN
has "plain KMS url (VMM)" tls.plain_url "$dir/vmm.lua" 'kms_urls[1]'
has "plain webhook url (KMS)" tls.plain_url "$dir/kms.lua" auth.url
has "plain PCCS (KMS)" tls.plain_url "$dir/kms.lua" attestation.pccs
has "KMS admin without auth" admin.no_auth "$dir/kms.lua" admin.insecure_no_auth
has "KMS admin on all interfaces" admin.exposed "$dir/kms.lua" admin.listen.host
has "VMM API on TCP without auth" admin.no_auth "$dir/vmm.lua" auth.enabled
has "VMM dashboard without credentials" admin.no_auth "$dir/vmm.lua" dashboard.auth
has "token file readable by the group" perm.readable "$dir/vmm.lua" dashboard.kms.token_file
check "key_dir and its key file readable by others" 2 \
  "$(jq --arg f "$dir/kms.lua" '[.findings[] | select(.id == "perm.readable" and .file == $f and .key == "key_dir")] | length' "$dir/bad.json")"
check "the loopback dashboard URL is not flagged" 0 \
  "$(jq '[.findings[] | select(.key == "dashboard.kms.url")] | length' "$dir/bad.json")"
check "the https gateway URL is not flagged" 0 \
  "$(jq '[.findings[] | select(.key == "gateway_urls[1]")] | length' "$dir/bad.json")"
check "--json: counts" "$(jq '.findings | length' "$dir/bad.json")" \
  "$(jq '.errors + .warnings' "$dir/bad.json")"

# text output: one line per finding naming file and key, then its fix
"$MOONSTACK" audit --policy "$dir/policy.json" --no-proc >"$dir/out" 2>&1
check "text: exit 1" 1 "$?"
check_match "text: severity, file, key, message, id" \
  "^error +$dir/policy.json: allowed_tcb_status\[3\]: Revoked platforms are accepted.*\[tcb.revoked\]$" \
  "$(grep 'tcb.revoked' "$dir/out")"
check_match "text: a fix under each finding" '^ +fix: remove "Revoked" from allowed_tcb_status$' \
  "$(grep -A1 'tcb.revoked' "$dir/out" | tail -1)"

# 3. secrets in argv: a running moonstack process with a token flag
echo "require('luv').sleep(30000)" >"$dir/sleep.lua"
"$MOONSTACK" run "$dir/sleep.lua" --admin-token S3CR3T-VALUE-42 &
pid=$!
defer "kill $pid 2>/dev/null"
wait_for 5 grep -q S3CR3T "/proc/$pid/cmdline"
"$MOONSTACK" audit --policy "$EX/audit/atlas-policy.json" --json >"$dir/proc.json" 2>&1
check "argv: exit 1" 1 "$?"
check "argv: the process's cmdline and flag are named" 1 \
  "$(jq --arg f "/proc/$pid/cmdline" '[.findings[] | select(.id == "argv.secret" and .file == $f and .key == "--admin-token")] | length' "$dir/proc.json")"
check "argv: the secret value is never printed" 0 "$(grep -c S3CR3T "$dir/proc.json")"
"$MOONSTACK" audit --policy "$EX/audit/atlas-policy.json" --no-proc >/dev/null 2>&1
check "--no-proc: the process scan is skipped" 0 "$?"
kill "$pid" 2>/dev/null

# 4. usage errors and files that do not load
"$MOONSTACK" audit >/dev/null 2>"$dir/err"
check "no policy and no config: exit 2" 2 "$?"
"$MOONSTACK" audit --bogus >/dev/null 2>&1
check "unknown option: exit 2" 2 "$?"
"$MOONSTACK" audit --policy "$dir/missing.json" >/dev/null 2>&1
check "missing policy: exit 2" 2 "$?"
echo 'return { listen = 7 }' >"$dir/vmm-bad.lua"
"$MOONSTACK" audit --config "$dir/vmm-bad.lua" --no-proc >/dev/null 2>"$dir/err"
check "a config its daemon would refuse: exit 2" 2 "$?"
check_match "  ... with the daemon's reason" 'vmm-bad.lua \(vmm\): EINVAL' "$(cat "$dir/err")"
echo 'return {}' >"$dir/mystery.lua"
"$MOONSTACK" audit --config "$dir/mystery.lua" --no-proc >/dev/null 2>"$dir/err"
check "a config of no known daemon: exit 2" 2 "$?"
"$MOONSTACK" audit --config "gateway:$dir/mystery.lua" --no-proc >/dev/null 2>"$dir/err"
check "KIND:FILE names the daemon (gateway needs proxy): exit 2" 2 "$?"
check_match "  ... the gateway's loader said so" 'config.proxy' "$(cat "$dir/err")"
finish
