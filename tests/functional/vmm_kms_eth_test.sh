#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M12 Done-when: a deployed app is denied, then allowed after an on-chain transaction, without a
# KMS restart. A real hardhat 2 chain holds moonstack's DstackKms; a KMS (auth.kind = 'eth')
# serves a VMM (process backend) on which `moonstack vm deploy --app-id <DstackApp address>`
# deploys a kms_enabled app. Its OS image is allowed on chain (the hash the KMS logged for the
# first refused boot), its compose hash is not: the VM's boot fails and the VM reports the
# contract's reason ("Compose hash not allowed") on each of the VMM's automatic retries;
# `moonstack kms eth add-compose-hash` (one transaction), and nothing else: the VMM's next retry
# boots the same VM, it gets its keys and the app runs, while the KMS process is the same one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/eth_lib.sh"

install_eth_tools || { finish; exit 1; }
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/vmm_lib.sh"

d=$(tmpdir)
mkdir -p "$d/sim" "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 \
  || { not_ok "simulated platform made (moonstack sim init)" "$(cat "$d/sim.log")"; finish; exit 1; }

hardhat_start "$d/hh" "$(free_port)" || { finish; exit 1; }
KMSC=$(eth deploy --json | jq -r .kms_contract)
check_match "DstackKms deployed" '^0x[0-9a-fA-F]{40}$' "$KMSC"
eth set-gateway-app-id --kms "$KMSC" any >/dev/null
APP=$(eth register-app --kms "$KMSC" --allow-any-device --json | jq -r .app_id)
check_match "the app's DstackApp deployed and registered (its address is the app id)" '^0x[0-9a-fA-F]{40}$' "$APP"
APP_HEX=$(tr 'A-F' 'a-f' <<<"${APP#0x}")

cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'eth', rpc_url = '$ETH_RPC', kms_contract = '$KMSC', timeout_ms = 5000 },
  image = { verify = false }, -- process images have no registered boot measurements (M13)
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
KMS_URL=https://localhost:$KMS_PORT
kms_pid=$KPID

cat >"$d/vmm.lua" <<EOF
return {
  listen = { unix = '$d/vmm.sock' }, run_dir = '$d/run', image_dir = '$d/images',
  kms_urls = { '$KMS_URL' }, kms_ca = '$d/kms-keys/root-ca.crt',
  process = { sim_dir = '$d/sim' },
  -- a refused boot is retried by the VMM every second or so: the app boots by itself once the
  -- chain allows it
  auto_restart = { interval = 1, initial_backoff = 1, max_backoff = 1, max_retries = 200 },
}
EOF
# (vmm_start waits 10 s; on a loaded 2-core machine the VMM was seen ready just after that)
vmm_start "$d/vmm.lua" "$d/vmm.log" || wait_for 30 grep -q 'VMM ready' "$d/vmm.log" \
  || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
export DSTACK_VMM_URL=unix:$d/vmm.sock VMM=unix:$d/vmm.sock

jq -cn '{manifest_version:2, name:"chain-app", runner:"bash", kms_enabled:true,
  bash_script:"echo \"chain-app up\"; exec sleep 1000"}' >"$d/app.json"
COMPOSE=$(sha256sum "$d/app.json" | cut -d' ' -f1)

deploy_out=$("$MOONSTACK" vm deploy --name chain-app --image proc --compose "$d/app.json" --memory 256M \
  --app-id "$APP_HEX" --timeout 30 2>&1)
id=$(rpc Status '{}' | jq -r '.vms[0].id')
w=$d/run/$id
if wait_vm "$id" 30 '(.boot_error // "") | contains("boot denied: OS image is not allowed")'; then
  ok "the first boot is refused by the chain (the OS image is not on chain yet)"
else
  not_ok "the first boot is refused by the chain (the OS image is not on chain yet)" "$(vm_field "$id" '')"
fi
check_match "... and vm deploy says so" 'OS image is not allowed' "$deploy_out"
OSI=$(grep '"scope":"app"' "$d/kms.log" | grep -o '"os_image_hash":"[0-9a-f]*"' | tail -1 | cut -d'"' -f4)
check_match "the KMS logged the VM's os_image_hash" '^[0-9a-f]{64}$' "$OSI"
eth add-os-image --kms "$KMSC" "$OSI" >/dev/null
check_match "the app id the KMS saw is the DstackApp address" "\"app_id\":\"$APP_HEX\"" \
  "$(grep '"scope":"app"' "$d/kms.log" | tail -1)"

# the VMM retries the boot by itself (auto_restart): the next refusals carry the next reason
if wait_vm "$id" 30 '(.boot_error // "") | contains("Compose hash not allowed")'; then
  ok "a retry by the VMM with the OS image on chain: denied with the next reason"
else
  not_ok "a retry by the VMM with the OS image on chain: denied with the next reason" "$(vm_field "$id" '')"
fi
check "the VM reports the contract's reason (GetInfo boot_error)" \
  "keys: KMS $KMS_URL refused the app keys: GetAppKey: boot denied: Compose hash not allowed" \
  "$(vm_field "$id" .boot_error)"
check_match "... the VMM restarted it by itself (its events)" 'vmm.auto_restart' \
  "$(vm_field "$id" '.events[].event' | sort -u | tr '\n' ' ')"
if grep -q 'chain-app up' "$w"/serial.log*; then not_ok "the denied app did not run"; else ok "the denied app did not run"; fi

# ---- one on-chain transaction; no action on the VM or the KMS: the VMM's next retry boots ----
t0=$(date +%s%N)
eth add-compose-hash --app "$APP" "$COMPOSE" >/dev/null
echo "# addComposeHash mined in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
if wait_for 60 grep -q 'chain-app up' "$w/serial.log"; then
  ok "after addComposeHash the VM got its keys and the app runs"
  echo "# addComposeHash to app running: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
else
  not_ok "after addComposeHash the VM got its keys and the app runs" "$(tail -20 "$w/serial.log")"
fi
wait_vm "$id" 30 '.boot_progress == "done"'
check "the VM's boot is done" done "$(vm_field "$id" .boot_progress)"
check_match "the KMS allowed it (its log)" "\"allow\":true" \
  "$(grep '"scope":"app"' "$d/kms.log" | tail -1)"
check "the same KMS process (no restart)" 0 "$(kill -0 "$kms_pid"; echo $?)"
check "the KMS was started once" 1 "$(grep -c 'KMS ready' "$d/kms.log")"

rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
check "no process left (/proc walk)" "" "$(procs_under "$d/run")"
finish
