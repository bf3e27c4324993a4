#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SDK conformance: the official @phala/dstack-sdk (0.5.8, from npm) against `moonstack agent
# --simulator` with the upstream simulator's keys. Every DstackClient and TappdClient method,
# over the unix sockets and over HTTP, with the results checked locally (fixtures/agent_sdk.js:
# signature chains to the KMS root, RA-TLS certificates and their binding, report_data in the
# quotes, event-log replay, EmitEvent, Sign/Verify, getComposeHash).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fixtures/agent_sim.sh"

install_dstack_sdk || { finish; exit 1; }
cache=$SDK_CACHE

dir=$(tmpdir)
start_agent "$dir" || { finish; exit 1; }
ok "agent started (public listener on port $AGENT_PORT)"
check "dstack.sock mode" 666 "$(stat -c %a "$dir/dstack.sock")"
check "tappd.sock mode" 666 "$(stat -c %a "$dir/tappd.sock")"
check "control socket mode" 600 "$(stat -c %a "$dir/agent.ctl")"

for transport in unix http; do
  out=$(NODE_PATH="$cache/node_modules" timeout 120 node "$MOONSTACK_SRC/tests/functional/fixtures/agent_sdk.js" \
    "$transport" "$dir/dstack.sock" "$dir/tappd.sock" "$GETKEY_VECTORS" "$APPKEYS" 2>"$dir/node-$transport.err")
  rc=$?
  echo "$out" | grep -E '^(ok|not ok) ' | sed 's/^/  /'
  summary=$(echo "$out" | tail -1)
  if [ $rc -eq 0 ] && echo "$summary" | grep -Eq '^[0-9]+ passed, 0 failed$'; then
    ok "SDK conformance over $transport: $summary"
  else
    not_ok "SDK conformance over $transport" "$(echo "$out" | grep -A3 '^not ok'; tail -5 "$dir/node-$transport.err")"
  fi
done

# The agent is still healthy and its control socket answers.
out=$(timeout 20 "$MOONSTACK" repl "$dir/agent.ctl" -e 'agent.ctx.state' 2>&1)
check "repl: the agent context is running" "\"running\"" "$out"
out=$(timeout 20 "$MOONSTACK" repl "$dir/agent.ctl" -e 'agent.api:addresses().dstack' 2>&1)
check "repl: the API addresses" "\"unix:$dir/dstack.sock\"" "$out"
! grep -q 'k256_key\|BEGIN PRIVATE KEY' "$dir/agent.log"
check "no key material in the log" 0 "$?"

stop_agent
check "sockets removed on stop" "" "$(ls "$dir"/*.sock 2>/dev/null)"
finish
