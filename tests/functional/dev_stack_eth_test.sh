#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M12 Done-when on M11's stack: `moonstack dev up --backend process --kms-auth eth` with
# examples/apps/bash-app, its KMS deciding on a real hardhat 2 chain (moonstack's DstackKms,
# the app's DstackApp registered with `moonstack kms eth register-app`, its address the app id).
# The app's boot is denied by the chain (dev up says why and what would allow it, and keeps
# following the VMM's retries), the contract's gatewayAppId is set to the stack's gateway, and
# after `add-os-image` then `add-compose-hash` (the hashes the KMS logged) the VMM's next retry
# boots the app: it answers through the gateway, while the KMS was never restarted. Ctrl-C
# stops everything.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/eth_lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null \
      || ! command -v dockerd >/dev/null; then
    not_ok "namespaces, /dev/net/tun, wireguard-go and dockerd (run as root; install-deps test)"
    finish
    exit 1
  fi
  install_eth_tools || { finish; exit 1; }
fi
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/dev_lib.sh"
ETH_CACHE=${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/npm-eth

d=$(tmpdir)
st=$d/state
UP=''
defer '[ -n "$UP" ] && kill -KILL $UP 2>/dev/null; "$MOONSTACK" dev down --dir "$st" >/dev/null 2>&1'
cd "$d" || exit 1

hardhat_start "$d/hh" "$(free_port)" || { finish; exit 1; }
KMSC=$(eth deploy --json | jq -r .kms_contract)
APP=$(eth register-app --kms "$KMSC" --allow-any-device --json | jq -r .app_id)
check_match "DstackKms deployed, the app's DstackApp registered" '^0x[0-9a-fA-F]{40} 0x[0-9a-fA-F]{40}$' "$KMSC $APP"
APP_HEX=$(tr 'A-F' 'a-f' <<<"${APP#0x}")

"$MOONSTACK" dev up --backend process --dir "$st" --app "$MOONSTACK_SRC/examples/apps/bash-app" --no-dashboard \
  --kms-auth eth --eth-rpc-url "$ETH_RPC" --kms-contract "$KMSC" --app-id "$APP" --timeout 240 >"$d/up.log" 2>&1 &
UP=$!
app_line() { grep '"scope":"app"' "$st/logs/kms.log" 2>/dev/null | tail -1; }
field() { app_line | grep -o "\"$1\":\"[0-9a-f]*\"" | cut -d'"' -f4; }
if wait_for 180 sh -c "grep -q 'the chain denies the boot' '$d/up.log' || ! kill -0 $UP"; then :; fi
check_match "dev up: the KMS runs the eth backend" "starting the KMS .*eth auth: DstackKms $KMSC on $ETH_RPC" \
  "$(cat "$d/up.log")"
check_match "the chain denies the app's first boot; dev up says why and what allows it" \
  "the chain denies the boot: OS image is not allowed; the VMM retries it. To allow it: moonstack kms eth add-compose-hash --app 0x$APP_HEX [0-9a-f]{64}" \
  "$(cat "$d/up.log")"
check "the KMS saw the app id given (the DstackApp address)" "$APP_HEX" "$(field app_id)"
OSI=$(field os_image_hash)
COMPOSE=$(field compose_hash)
check_match "the KMS logged the OS image and compose hashes" '^[0-9a-f]{64} [0-9a-f]{64}$' "$OSI $COMPOSE"
check "dev up printed the same compose hash" 1 "$(grep -c "add-compose-hash --app 0x$APP_HEX $COMPOSE" "$d/up.log")"
eth set-gateway-app-id --kms "$KMSC" "$(cat "$st/gateway/app_id")" >/dev/null
eth add-os-image --kms "$KMSC" "$OSI" >/dev/null
if wait_for 120 grep -q 'the chain denies the boot: Compose hash not allowed' "$d/up.log"; then
  ok "the VMM's retry with the OS image on chain: denied with the app contract's reason"
else
  not_ok "the VMM's retry with the OS image on chain: denied with the app contract's reason" "$(tail -20 "$d/up.log")"
fi

t0=$(date +%s)
eth add-compose-hash --app "$APP" "$COMPOSE" >/dev/null
wait_for 200 sh -c "test -s $st/urls.json || ! kill -0 $UP"
if [ -s "$st/urls.json" ]; then
  ok "after add-compose-hash the VMM's next retry booted the app ($(( $(date +%s) - t0 )) s)"
  page=$(eval "$(sed -n 's/^  curl        //p' "$d/up.log") -sS --max-time 10" 2>&1)
  check_match "the app answers through the gateway (gatewayAppId from the contract: the stack's gateway)" \
    'sha256 <code>[0-9a-f]{64}</code>.*A bash script, attested' "$(tr '\n' ' ' <<<"$page")"
else
  not_ok "after add-compose-hash the VMM's next retry booted the app" "$(dev_diag "$d/up.log")"
fi
check_match "the KMS allowed it" '"allow":true' "$(app_line)"
check "the KMS was started once (no restart)" 1 "$(grep -c 'KMS ready' "$st/logs/kms.log")"

kill -INT "$UP"
wait "$UP"
check "Ctrl-C: dev up exits 0" 0 "$?"
UP=''
check "nothing of the stack is left" "" "$(dev_nothing_left)"
finish
