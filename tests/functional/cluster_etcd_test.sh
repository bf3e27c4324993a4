#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# KMS replicas and VMM hosts on a real 3-member etcd (issue M12 item 3), in the test's own
# namespaces. KMS: A (the onboarding source, attested by a simulated CVM) registers itself; B
# starts with an empty key directory and `onboard = { source_from_cluster = true }`, finds A
# in etcd and replicates A's root keys over mutual RA-TLS; both are listed (url, role) under
# the lease; no key material (root CA key, k256 scalar, temp CA key: raw, hex, base64, PEM) is
# anywhere in etcd; B killed with kill -9 leaves the membership within its lease. VMM: two
# hosts each run a VM (process backend); one dashboard lists both VMs with their hosts (the
# snapshot's fleet and POST /dashboard/api/fleet); a VM removed on one host leaves the list.
source "$(dirname "$0")/lib.sh"

need_tools etcd etcdctl jq
unshare -n true 2>/dev/null || { not_ok "a private network namespace (run as root)"; finish; exit 1; }
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/etcd_lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

d=$(tmpdir)
etcd_cluster_start "$d/etcd" || { finish; exit 1; }
CLUSTER="etcd = { endpoints = { 'http://127.0.0.1:23791', 'http://127.0.0.1:23792',
  'http://127.0.0.1:23793' }, prefix = '/ms', timeout_ms = 3000, lease_ttl = 3 }"

# ---- KMS: the source and a replica that finds it in etcd ----
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }
# the two KMSes' simulated CVMs, each with its compose hash in RTMR3
"$MOONSTACK" run /dev/stdin "$d/sim" <<'LUA' >"$d/simcvm.log" 2>&1 || not_ok "simulated CVMs" "$(cat "$d/simcvm.log")"
local sim = require('moonstack.sim')
for i, name in ipairs({ 'kms-a', 'kms-b' }) do
  local tee = assert(sim.new({ dir = arg[1], cvm = name, create = true }))
  assert(tee:emit_event('compose-hash', string.char(0xa0 + i):rep(32), { version = 1 }))
  tee:close()
end
LUA
kmsconf() { # NAME EXTRA
  cat >"$d/$1.lua" <<EOF
return {
  key_dir = '$d/$1-keys', domain = 'localhost', control = '$d/$1.ctl',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'dev' },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
  tee = { kind = 'sim', dir = '$d/sim', cvm = '$1' },
  image = { verify = false },
  cluster = { $CLUSTER },
  $2
}
EOF
}
kmsconf kms-a ""
kmsconf kms-b "onboard = { source_from_cluster = true, timeout_ms = 15000 },"
kms_start "$d/kms-a.lua" "$d/kms-a.log"
APID=$KPID; APORT=$KMS_PORT
ok "KMS A started"
kms_start "$d/kms-b.lua" "$d/kms-b.log"
BPID=$KPID; BPORT=$KMS_PORT
check_match "KMS B found the source in etcd" "onboarding source found in etcd.*https://127\.0\.0\.1:$APORT" "$(cat "$d/kms-b.log")"
kpub() { ready_field "$d/$1.log" 'KMS ready' k256_pubkey; }
check "and replicated A's root (the same k256 public key)" "$(kpub kms-a)" "$(kpub kms-b)"
check "and A's root CA certificate" "$(cat "$d/kms-a-keys/root-ca.crt")" "$(cat "$d/kms-b-keys/root-ca.crt")"
members() { etcdctl_get /ms/kms/members/ | grep '^{' | jq -r '"\(.role) \(.url)"' | sort | tr '\n' ';'; }
wait_eval 10 "[ \"\$(members | tr ';' '\n' | grep -c .)\" = 2 ]"
check "both KMSes are members in etcd (role, url)" \
  "replica https://127.0.0.1:$BPORT;source https://127.0.0.1:$APORT;" "$(members)"
check "their records are leased" "2" \
  "$(etcdctl --endpoints="$ETCD_EPS" get --prefix /ms/kms/members/ -w json | jq '[.kvs[] | select(.lease != null)] | length')"

# no key material anywhere in etcd: every key and value, against each secret file in each form
etcdctl --endpoints="$ETCD_EPS" get "" --from-key -w json >"$d/etcd-all.json"
jq -r '.kvs[] | (.key | @base64d), (.value | @base64d)' "$d/etcd-all.json" >"$d/etcd-all.txt" 2>/dev/null
check_match "etcd holds records (the dump is not empty)" '/ms/kms/members/' "$(cat "$d/etcd-all.txt")"
leak=""
for f in root-ca.key root-k256.key tmp-ca.key; do
  for form in raw hex b64 pem; do
    case $form in
      raw) needle=$(head -c 32 "$d/kms-a-keys/$f" | od -An -tx1 -v | tr -d ' \n') ;;
      hex) needle=$(od -An -tx1 -v "$d/kms-a-keys/$f" | tr -d ' \n' | head -c 64) ;;
      b64) needle=$(base64 -w0 "$d/kms-a-keys/$f" | head -c 40) ;;
      pem) needle=$(grep -av '^-----' "$d/kms-a-keys/$f" | head -1 | head -c 40) ;;
    esac
    [ -z "$needle" ] && continue
    if [ "$form" = raw ]; then
      od -An -tx1 -v "$d/etcd-all.txt" | tr -d ' \n' | grep -qF "$needle" && leak="$leak $f:$form"
    else
      grep -aqF -- "$needle" "$d/etcd-all.txt" && leak="$leak $f:$form"
    fi
  done
done
check "no key of the KMS (raw, hex, base64, PEM) is in etcd" "" "$leak"
check "no PEM private key at all" "" "$(grep -c 'PRIVATE KEY' "$d/etcd-all.txt" | grep -v '^0$')"
kill -KILL "$BPID"; wait "$BPID" 2>/dev/null
wait_eval 15 "[ \"\$(members)\" = 'source https://127.0.0.1:$APORT;' ]"
check "KMS B killed (kill -9): its membership goes with its lease" "source https://127.0.0.1:$APORT;" "$(members)"

# ---- VMM hosts: one dashboard lists the fleet ----
mkdir -p "$d/images"
vmm_image "$d/images" proc || { finish; exit 1; }
printf 'vmm-token-%s\n' "$RANDOM$RANDOM" >"$d/vmm.token"; chmod 600 "$d/vmm.token"
TOKEN=$(cat "$d/vmm.token")
vmmconf() { # HOST
  mkdir -p "$d/$1/run"
  cat >"$d/$1.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/$1/run', image_dir = '$d/images',
  control = '$d/$1.ctl', process = { sim_dir = '$d/sim', network = 'host' },
  auth = { enabled = true, token_file = '$d/vmm.token' }, stop_vms_on_exit = true,
  dashboard = { listen = { host = '127.0.0.1', port = 0 } },
  cluster = { $CLUSTER, host_id = '$1' },
}
EOF
}
vmmconf host-1
vmmconf host-2
declare -A VPORT VPID DASH
for h in host-1 host-2; do
  vmm_start "$d/$h.lua" "$d/$h.log" || { not_ok "VMM $h started" "$(tail -20 "$d/$h.log")"; finish; exit 1; }
  VPORT[$h]=$VMM_PORT; VPID[$h]=$VMM_PID
  DASH[$h]=$(grep 'dashboard listening' "$d/$h.log" | tail -1 | sed -n 's/.*"address":"\([^"]*\)".*/\1/p')
done
ok "two VMM hosts started with etcd"
declare -A VMID
for h in host-1 host-2; do
  VMM=http://127.0.0.1:${VPORT[$h]}
  compose=$(bash_compose "app-$h" 'while true; do sleep 1; done')
  VMID[$h]=$(curl -sS --max-time 30 -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "$(create_body "app-$h" proc "$compose")" "$VMM/prpc/CreateVm?json" | jq -r .id)
done
check_match "a VM created on each host" '^[0-9a-f-]{36} [0-9a-f-]{36}$' "${VMID[host-1]} ${VMID[host-2]}"
fleet() { curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{}' "http://${DASH[host-1]}/dashboard/api/fleet"; }
fleet_vms() { fleet | jq -r '[.vms[] | "\(.host_id) \(.name) \(.status)"] | join(";")'; }
wait_eval 30 "fleet_vms | grep -q 'host-1 app-host-1 running;host-2 app-host-2 running'"
check "host-1's dashboard lists both hosts' VMs (host, name, status)" \
  "host-1 app-host-1 running;host-2 app-host-2 running" "$(fleet_vms)"
check "with their ids" "${VMID[host-1]} ${VMID[host-2]}" "$(fleet | jq -r '[.vms[].id] | join(" ")')"
check "and both hosts with their dashboard URLs" "host-1 http://${DASH[host-1]};host-2 http://${DASH[host-2]}" \
  "$(fleet | jq -r '[.hosts[] | "\(.host_id) \(.url)"] | join(";")')"
check_match "the dashboard snapshot carries the fleet" '"host_id": *"host-2"' \
  "$(curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://${DASH[host-1]}/dashboard/feed?since=0")"
VMM=http://127.0.0.1:${VPORT[host-2]}
curl -sS --max-time 30 -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"id\":\"${VMID[host-2]}\"}" "$VMM/prpc/RemoveVm?json" >/dev/null
wait_eval 20 "[ \"\$(fleet_vms)\" = 'host-1 app-host-1 running' ]"
check "a VM removed on host-2 leaves the fleet" "host-1 app-host-1 running" "$(fleet_vms)"
kill -KILL "${VPID[host-2]}"; wait "${VPID[host-2]}" 2>/dev/null
wait_eval 15 "[ \"\$(fleet | jq -r '[.hosts[].host_id] | join(\",\")')\" = host-1 ]"
check "host-2 killed: it leaves the fleet with its lease" "host-1" "$(fleet | jq -r '[.hosts[].host_id] | join(",")')"

kill -TERM "${VPID[host-1]}" "$APID"; wait "${VPID[host-1]}" "$APID" 2>/dev/null
finish
