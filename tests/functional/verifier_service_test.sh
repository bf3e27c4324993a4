#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack verifier -c FILE` as a daemon: dstack-verifier's request shapes POSTed with curl
# ({quote, event_log, vm_config} and {attestation}), its response shape plus our fields, over
# a unix socket (0600) with collateral fetched from a local PCCS for a simulated CVM, and
# over TCP with a collateral file for a real Intel-signed quote at its vectors' time. Also:
# a forged event log, malformed requests, SIGHUP reloading the policy (a broken one keeps the
# previous), the REPL on the control socket, and a clean SIGTERM.
source "$(dirname "$0")/lib.sh"
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
if [ ! -f "$V/dcap-qvl/tdx_quote_collateral.json" ]; then
  not_ok "test vectors found" "no vectors at $V (set MOONSTACK_VECTORS)"
  finish
  exit 1
fi
FIX="$MOONSTACK_SRC/tests/functional/fixtures/verifier_fixture.lua"
dir=$(mktemp -d /tmp/mvs.XXXXXX) # short: unix socket paths
defer "rm -rf '$dir'"
S=$dir/sim
mkdir -p "$S"
field() { "$MOONSTACK" run "$FIX" field "$dir/out.json" "$1"; }

# post NAME SOCKET_OR_URL BODY_FILE: POST /verify; the body goes to $dir/out.json, status to $status
post() {
  local target=$2 body=$3
  if [ "${target#http}" = "$target" ]; then
    status=$(curl -s --max-time 20 -o "$dir/out.json" -w '%{http_code}' --unix-socket "$target" \
      -H 'Content-Type: application/json' --data-binary @"$body" http://localhost/verify)
  else
    status=$(curl -s --max-time 20 -o "$dir/out.json" -w '%{http_code}' \
      -H 'Content-Type: application/json' --data-binary @"$body" "$target/verify")
  fi
  check "$1: HTTP status" "${4:-200}" "$status"
}

if "$MOONSTACK" run "$FIX" sim "$S" 2>"$dir/err"; then ok "simulated CVM made"; else
  not_ok "simulated CVM made" "$(cat "$dir/err")"; finish; exit 1; fi
"$MOONSTACK" run "$FIX" pcs "$dir" "$S/coll.json" tdx B0C06F000000 platform 2>"$dir/pcs.log" &
pcs=$!
defer "kill -TERM $pcs 2>/dev/null"
wait_for 10 test -s "$dir/pcs.port" || { not_ok "PCCS fixture" "$(cat "$dir/pcs.log")"; finish; exit 1; }
pccs="http://127.0.0.1:$(cat "$dir/pcs.port")"

# 1. the simulated CVM: unix socket, PCCS collateral with a cache, the simulator root
cp "$S/policy-full.json" "$dir/policy.json"
cat >"$dir/sim.lua" <<EOF
return {
  listen = { unix = '$dir/v.sock' },
  collateral = { pccs = '$pccs', cache_dir = '$dir/cache' },
  policy = '$dir/policy.json',
  root_ca = '$S/root.pem',
  control = '$dir/ctl.sock',
}
EOF
"$MOONSTACK" verifier -c "$dir/sim.lua" 2>"$dir/sim.log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"
if wait_for 10 test -S "$dir/ctl.sock"; then ok "verifier started"; else
  not_ok "verifier started" "$(cat "$dir/sim.log")"; finish; exit 1; fi
check "API socket mode" 600 "$(stat -c %a "$dir/v.sock")"
check "control socket mode" 600 "$(stat -c %a "$dir/ctl.sock")"
check "GET /health" '{"service":"dstack-verifier","status":"ok"}' \
  "$(curl -s --max-time 10 --unix-socket "$dir/v.sock" http://localhost/health)"

post "quote + event_log + vm_config" "$dir/v.sock" "$S/req-quote.json"
check "is_valid" true "$(field is_valid)"
check "reason" null "$(field reason)"
check "quote_verified" true "$(field details.quote_verified)"
check "event_log_verified" true "$(field details.event_log_verified)"
check "os_image_hash_verified (pinned by the policy)" true "$(field details.os_image_hash_verified)"
check "acpi_tables_verified (bootchain pinned by the policy)" true "$(field details.acpi_tables_verified)"
check "tee_variant" dstack-tdx "$(field details.tee_variant)"
check "tcb_status" UpToDate "$(field details.tcb_status)"
check "advisory_ids" "[]" "$(field details.advisory_ids)"
compose=$(sha256sum "$S/app-compose.json" | cut -d' ' -f1)
check "app_info.compose_hash" "$compose" "$(field details.app_info.compose_hash)"
check "app_info.app_id" "${compose:0:40}" "$(field details.app_info.app_id)"
check "app_info.instance_id" 0707070707070707070707070707070707070707 "$(field details.app_info.instance_id)"
check "key_provider" '{"id":"3059","name":"kms"}' "$(field details.key_provider)"
check "boot_info.composeHash" "$compose" "$(field details.boot_info.composeHash)"
check "boot_info.osImageHash = vm_config's" "$(field details.app_info.os_image_hash)" \
  "$(field details.boot_info.osImageHash)"
check_match "boot_info.mrAggregated" '^[0-9a-f]{64}$' "$(field details.boot_info.mrAggregated)"
check "ours: simulated" true "$(field simulated)"
check "ours: policy.ok" true "$(field policy.ok)"
check "the collateral was fetched once" 4 "$(curl -s "$pccs/hits")"

post "the same as a V0 attestation" "$dir/v.sock" "$S/req-attestation.json"
check "attestation: is_valid" true "$(field is_valid)"
check "attestation: compose hash" "$compose" "$(field details.app_info.compose_hash)"
check "collateral from the cache (no new PCCS request)" 4 "$(curl -s "$pccs/hits")"
"$MOONSTACK" -e "
local j = require('cjson'); local f = io.open('$S/req-attestation.json'); local b = j.decode(f:read('*a')); f:close()
b.vm_config = '{\"os_image_hash\":\"bogus\"}'; b.quote = 'zz'
f = io.open('$dir/mixed.json', 'w'); f:write(j.encode(b)); f:close()"
post "attestation mixed with bogus quote/vm_config fields" "$dir/v.sock" "$dir/mixed.json"
check "mixed: the attestation wins" true "$(field is_valid)"
post "attestation whose report_data differs from the quote's" "$dir/v.sock" "$S/req-attestation-rd.json"
check "report_data mismatch: invalid" false "$(field is_valid)"
check_match "report_data mismatch: reason" 'attestation report_data differs' "$(field reason)"

post "forged event log" "$dir/v.sock" "$S/req-forged.json"
check "forged: is_valid" false "$(field is_valid)"
check "forged: the quote itself verified" true "$(field details.quote_verified)"
check "forged: event_log_verified" false "$(field details.event_log_verified)"
check_match "forged: reason" 'compose-hash.*is not the digest of its name and payload' "$(field reason)"
check "forged: no app_info" nil "$(field details.app_info)"

post "the dstack-verifier fixture (collateral for another platform)" "$dir/v.sock" \
  "$V/dstack/verifier/tdx-lite-attestation.json"
check "fixture: invalid" false "$(field is_valid)"
check "fixture: quote not verified" false "$(field details.quote_verified)"
check_match "fixture: reason" '^quote verification failed: E[A-Z]+' "$(field reason)"

printf '[1,2]' >"$dir/array.json"
post "a JSON array body" "$dir/v.sock" "$dir/array.json" 400
check_match "array: error" 'must be a JSON object' "$(cat "$dir/out.json")"
printf '{"quote":"zz","event_log":"[]"}' >"$dir/badhex.json"
post "quote not hex" "$dir/v.sock" "$dir/badhex.json"
check "not hex: invalid" false "$(field is_valid)"
check_match "not hex: reason" 'invalid request: quote is not hex' "$(field reason)"
printf '{"quote":"%s"}' "$(od -An -v -tx1 "$S/quote.bin" | tr -d ' \n')" >"$dir/nolog.json"
post "no event log" "$dir/v.sock" "$dir/nolog.json"
check_match "no event log: reason" 'event_log .* is required' "$(field reason)"

# SIGHUP: a policy expecting another compose hash, then a broken one (the previous stays)
"$MOONSTACK" -e "
local j = require('cjson'); local f = io.open('$dir/policy.json'); local p = j.decode(f:read('*a')); f:close()
p.app_compose = string.rep('ab', 32)
f = io.open('$dir/policy.json', 'w'); f:write(j.encode(p)); f:close()"
kill -HUP $pid
wait_for 10 grep -q 'policy and collateral reloaded' "$dir/sim.log"
post "after reloading a stricter policy" "$dir/v.sock" "$S/req-quote.json"
check "reloaded: invalid" false "$(field is_valid)"
check "reloaded: the violation" app_compose "$(field policy.violations.1.field)"
printf '{"app_compose": ' >"$dir/policy.json"
kill -HUP $pid
wait_for 10 grep -q 'reload failed' "$dir/sim.log"
check_match "broken policy: reload failed, logged" 'reload failed.*EPARSE' "$(grep 'reload failed' "$dir/sim.log")"
post "after a failed reload" "$dir/v.sock" "$S/req-quote.json"
check "failed reload: the previous policy still applies" app_compose "$(field policy.violations.1.field)"

out=$("$MOONSTACK" repl "$dir/ctl.sock" -e 'verifier.requests' 2>&1)
check "REPL: request count" 11 "$out"

kill -TERM $pid
wait $pid
check "SIGTERM: exit 0" 0 "$?"
check "socket removed or closed" "" "$(curl -s --max-time 5 --unix-socket "$dir/v.sock" http://localhost/health)"

# 2. a real Intel-signed quote: TCP, a collateral file, a fixed verification time
cat >"$dir/intel.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 },
  collateral = { file = '$V/dcap-qvl/tdx_quote_collateral.json' },
  policy = { disable_runtime_verification = true, replay_rtmrs = { 3 } },
  at = 1752919234,
}
EOF
"$MOONSTACK" verifier -c "$dir/intel.lua" 2>"$dir/intel.log" &
pid2=$!
defer "kill -KILL $pid2 2>/dev/null"
wait_for 10 grep -q 'verifier listening' "$dir/intel.log"
port=$(grep 'verifier listening' "$dir/intel.log" | grep -o '127\.0\.0\.1:[0-9]*' | cut -d: -f2)
if [ -n "$port" ]; then ok "TCP verifier started"; else not_ok "TCP verifier started" "$(cat "$dir/intel.log")"; fi
printf '{"quote":"%s","event_log":"[]"}' "$(od -An -v -tx1 "$V/dcap-qvl/tdx_quote" | tr -d ' \n')" >"$dir/tdx.json"
post "tdx_quote over TCP" "http://127.0.0.1:$port" "$dir/tdx.json"
check "tdx_quote: is_valid" true "$(field is_valid)"
check "tdx_quote: tcb_status" UpToDate "$(field details.tcb_status)"
check "tdx_quote: not simulated" false "$(field simulated)"
check "tdx_quote: report_data" 9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20 \
  "$(field details.report_data)"
post "the simulated quote without its root" "http://127.0.0.1:$port" "$S/req-quote.json"
check "simulated, Intel root only: quote not verified" false "$(field details.quote_verified)"
check "simulated, Intel root only: invalid" false "$(field is_valid)"
kill -TERM $pid2
wait $pid2
check "TCP verifier: exit 0" 0 "$?"

# 3. config errors: clear message, exit 2 (as every daemon); the example config is valid
printf 'return { listen = { port = 8080, unix = "/x" }, collateral = { file = "x" }, bogus = 1 }' \
  >"$dir/bad.lua"
"$MOONSTACK" verifier -c "$dir/bad.lua" >/dev/null 2>"$dir/err"
check "bad config: exit 2" 2 "$?"
check_match "bad config: names the keys" 'config\.bogus: unknown key' "$(cat "$dir/err")"
check_match "bad config: listen" 'config\.listen: give host and port, or unix' "$(cat "$dir/err")"
"$MOONSTACK" -e "
local cfg, err = require('moonstack.verifier.service').load_config('$MOONSTACK_SRC/examples/configs/verifier.lua')
if not cfg then io.stderr:write(err, '\n') os.exit(1) end" 2>"$dir/err"
check "examples/configs/verifier.lua loads" "0 " "$? $(cat "$dir/err")"

finish
