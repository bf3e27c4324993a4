#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The gateway's WireGuard hub with a real wireguard-go (moonstack.wg), in a network namespace
# this test creates (root, /dev/net/tun): the device comes up with the gateway's address; each
# RegisterCvm (a real KMS's SignCert certificates, tests/functional/gateway_lib.sh) adds the
# instance as a peer with AllowedIPs <ip>/32 live; a re-registration with a new key replaces
# the old key; the operators' config file (0600) has one [Peer] per instance with
# PersistentKeepalive = 25; recycle removes silent instances and their peers.
source "$(dirname "$0")/lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null; then
    not_ok "a private network namespace, /dev/net/tun and wireguard-go (run as root)"
    finish
    exit 1
  fi
  MOONSTACK_IN_NS=1 exec unshare -n bash "$0" "$@"
fi
ip link set lo up || { not_ok "lo up in the namespace"; finish; exit 1; }
source "$(dirname "$0")/gateway_lib.sh"

IF=wg-gwt$$
IF=${IF:0:15}
gwkey=$(wg genkey)
cat >"$d/gateway.lua" <<EOF
return {
  proxy = { listen = { host = '127.0.0.1', port = 0 }, base_domain = 'app.test' },
  rpc = { listen = { host = '127.0.0.1', port = 0 }, kms_ca = '$d/kms-keys/root-ca.crt' },
  wg = { private_key = '$gwkey', endpoint = '127.0.0.1:51820', interface = '$IF',
    listen_port = 51820, refresh_interval = 0.2 },
  data_dir = '$d/gw-data', control = '$d/gw.ctl',
  recycle = { enabled = true, interval = 0.5, timeout = 3 },
}
EOF
daemon_start gateway "$d/gateway.lua" "$d/gw.log" 'gateway ready' 30
GPID=$DAEMON_PID
RPC=$(ready_field "$d/gw.log" 'gateway ready' rpc)
ok "gateway started with its WireGuard device"
check_match "the device has the gateway's address" 'inet 10\.0\.0\.1/24' "$(ip addr show "$IF" 2>&1)"
check "the device's public key is the configured key's" "$(wg pubkey <<<"$gwkey")" "$(wg show "$IF" public-key 2>&1)"
check "it listens on 51820" 51820 "$(wg show "$IF" listen-port 2>&1)"

reg() {
  curl -sk --max-time 10 --cert "$d/$1.crt" --key "$d/$1.key" -H 'content-type: application/json' \
    -d "{\"client_public_key\":\"$2\"}" "https://$RPC/prpc/RegisterCvm?json" | jq -r .wg.client_ip
}
k1=$(wg genkey | wg pubkey); k2=$(wg genkey | wg pubkey)
check "cvm1 registered" 10.0.0.2 "$(reg cvm1 "$k1")"
check "cvm2 registered" 10.0.0.3 "$(reg cvm2 "$k2")"
peers() { wg show "$IF" allowed-ips | sort | tr '\t' ' ' | tr '\n' ';'; }
want=$(printf '%s 10.0.0.2/32\n%s 10.0.0.3/32\n' "$k1" "$k2" | sort | tr '\n' ';')
wait_for 5 sh -c "[ \"\$(wg show $IF allowed-ips | sort | tr '\t' ' ' | tr '\n' ';')\" = '$want' ]"
check "the device's peers are the two instances (live, AllowedIPs /32)" "$want" "$(peers)"
check "PersistentKeepalive 25 on each peer" "25 25" "$(wg show "$IF" persistent-keepalive | cut -f2 | tr '\n' ' ' | sed 's/ $//')"
k1b=$(wg genkey | wg pubkey)
check "cvm1 re-registers with a new key: same address" 10.0.0.2 "$(reg cvm1 "$k1b")"
want=$(printf '%s 10.0.0.2/32\n%s 10.0.0.3/32\n' "$k1b" "$k2" | sort | tr '\n' ';')
wait_for 5 sh -c "[ \"\$(wg show $IF allowed-ips | sort | tr '\t' ' ' | tr '\n' ';')\" = '$want' ]"
check "the old key is gone from the device, the new one is there" "$want" "$(peers)"
conf=$d/gw-data/wg.conf
check "the config file is 0600" 600 "$(stat -c %a "$conf" 2>&1)"
check "it has the [Interface] private key and port" "1 1" \
  "$(grep -c "^PrivateKey = $gwkey\$" "$conf") $(grep -c '^ListenPort = 51820$' "$conf")"
check "one [Peer] per instance, AllowedIPs /32, keepalive 25" "2 2 2" \
  "$(grep -c '^\[Peer\]' "$conf") $(grep -c '^AllowedIPs = 10\.0\.0\.[23]/32$' "$conf") $(grep -c '^PersistentKeepalive = 25$' "$conf")"
# the opening sync and at least one for the registrations (the hub coalesces bursts), and the
# handshake refresh running (every 0.2 s here)
hub_ok() { "$MOONSTACK" repl "$d/gw.ctl" -e 'gw.wg().device and gw.wg().syncs >= 2 and gw.wg().refreshes > 0' 2>&1; }
wait_eval 10 '[ "$(hub_ok)" = true ]'
check "gw.wg() reports the device and its syncs" true "$(hub_ok)"
# no handshake ever comes (the CVMs do not exist): recycle removes them after 3 s
wait_for 15 sh -c "[ -z \"\$(wg show $IF peers)\" ]"
check "recycle removed the silent instances and their peers" "0 0" \
  "$(wg show "$IF" peers | grep -c .) $("$MOONSTACK" repl "$d/gw.ctl" -e '#gw.instances()' 2>&1)"
check_match "recycle is logged" 'instance recycled' "$(cat "$d/gw.log")"
kill -TERM "$GPID"; wait "$GPID"
check "SIGTERM: exit 0" 0 $?
check "the device is gone with the gateway" no "$(ip link show "$IF" >/dev/null 2>&1 && echo yes || echo no)"
kill -TERM "$KPID"; wait "$KPID" 2>/dev/null
finish
