#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M7 item 11: a KMS told to trust a simulated platform (attestation.simulator_dir) refuses to
# start when the directory holds none, naming it (absolute, with the current directory for a
# relative path) and the fix, and creates nothing (no new platform, no keys); after `moonstack
# sim init DIR` it starts. `moonstack agent --simulator` without --app-id warns that its
# signature chains will not verify; with --app-id it does not.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fixtures/agent_sim.sh"

t=$(tmpdir)

# kms_conf FILE SIMDIR KEYDIR
kms_conf() {
  cat >"$1" <<EOF
return {
  key_dir = '$3', listen = { host = '127.0.0.1', port = 0 }, auth = { kind = 'dev' },
  attestation = { simulator_dir = '$2', allow_simulator = true },
}
EOF
}

kms_conf "$t/abs.lua" "$t/nowhere/sim" "$t/keys-abs"
timeout 20 "$MOONSTACK" kms -c "$t/abs.lua" >"$t/abs.log" 2>&1
check "absent platform: exit 1" 1 $?
check_match "absent platform: named" "no simulated platform in $t/nowhere/sim \\($t/nowhere/sim/platform.conf is missing\\)" \
  "$(cat "$t/abs.log")"
check_match "absent platform: the fix" "moonstack sim init $t/nowhere/sim" "$(cat "$t/abs.log")"
check "absent platform: no platform created" no "$([ -e "$t/nowhere" ] && echo yes || echo no)"
check "absent platform: no key written" no "$([ -e "$t/keys-abs" ] && echo yes || echo no)"
if grep -q 'KMS ready' "$t/abs.log"; then not_ok "absent platform: never ready"; else ok "absent platform: never ready"; fi

# a relative path (kms-dev.lua had them) is named with the directory it was taken from
mkdir -p "$t/cwd"
kms_conf "$t/rel.lua" "./agent/.moonstack-agent/sim" "$t/keys-rel"
(cd "$t/cwd" && timeout 20 "$MOONSTACK" kms -c "$t/rel.lua") >"$t/rel.log" 2>&1
check "relative absent platform: exit 1" 1 $?
check_match "relative path: the current directory named" \
  "no simulated platform in $t/cwd/\\./agent/\\.moonstack-agent/sim \\(relative to the current directory\\)" \
  "$(cat "$t/rel.log")"
check "relative path: nothing created" "" "$(ls -A "$t/cwd")"

# once the platform exists, the KMS starts and trusts its root
out=$("$MOONSTACK" sim init "$t/plat" --root-ca "$t/plat-root.pem" 2>&1)
check_match "sim init: created" 'state +created' "$out"
check_match "sim init: root CA" 'root_ca +moonstack TDX Simulation Root CA' "$out"
check_match "sim init again: checked" 'state +existing \(checked\)' "$("$MOONSTACK" sim init "$t/plat" 2>&1)"
kms_conf "$t/ok.lua" "$t/plat" "$t/keys-ok"
"$MOONSTACK" kms -c "$t/ok.lua" >"$t/ok.log" 2>&1 &
kpid=$!
defer "kill -KILL $kpid 2>/dev/null"
if wait_for 20 grep -q 'KMS ready' "$t/ok.log"; then ok "existing platform: KMS ready"; else
  not_ok "existing platform: KMS ready" "$(cat "$t/ok.log")"; fi
kill -TERM "$kpid"; wait "$kpid" 2>/dev/null

# the agent simulator: a warning without --app-id, none with it
mkdir -p "$t/noid" "$t/withid"
write_compose "$t/noid/compose.json"
"$MOONSTACK" agent --simulator --keys "$APPKEYS" --compose "$t/noid/compose.json" \
  --socket-dir "$t/noid" --state-dir "$t/noid/state" >"$t/noid/agent.log" 2>&1 &
apid=$!
defer "kill -KILL $apid 2>/dev/null"
wait_for 20 grep -q 'guest API listening' "$t/noid/agent.log"
hash=$(sha256sum "$t/noid/compose.json" | cut -c1-40)
check_match "simulator without --app-id: warns, naming the app id used" \
  "warn .*no --app-id: reporting app id $hash \\(compose_hash\\[:20\\]\\).*signature chains will not verify.*pass --app-id" \
  "$(cat "$t/noid/agent.log")"
kill -TERM "$apid"; wait "$apid" 2>/dev/null
start_agent "$t/withid" && ok "simulator with --app-id started"
if grep -q 'no --app-id' "$t/withid/agent.log"; then not_ok "simulator with --app-id: no warning"; else
  ok "simulator with --app-id: no warning"; fi
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
finish
