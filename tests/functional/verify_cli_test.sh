#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack verify` end to end: every sample of vectors/README.md §1 with its collateral at
# the stated time gives the expected exit code, status and advisory IDs (or the expected
# error); binary and hex quotes; the simulator rule (a simulated quote needs --root-ca AND
# allow_simulator; --simulator DIR takes both from the platform); policies that are violated (exit 1) including a forged event log;
# malformed input (exit 2); collateral fetched from a local PCCS and then from the cache.
source "$(dirname "$0")/lib.sh"
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
if [ ! -f "$V/dcap-qvl/tdx_quote_collateral.json" ]; then
  not_ok "test vectors found" "no vectors at $V (set MOONSTACK_VECTORS)"
  finish
  exit 1
fi
FIX="$MOONSTACK_SRC/tests/functional/fixtures/verifier_fixture.lua"
dir=$(tmpdir)
Q=$V/dcap-qvl

# verify WANT_RC NAME ARGS...: moonstack verify --json ARGS; stdout in $dir/out.json
verify() {
  local want=$1 name=$2
  shift 2
  "$MOONSTACK" verify --json "$@" >"$dir/out.json" 2>"$dir/err"
  rc=$?
  if [ "$rc" = "$want" ]; then ok "$name: exit $want"; else
    not_ok "$name: exit $want" "exit $rc; stderr: $(head -c 600 "$dir/err")"; fi
}
field() { "$MOONSTACK" run "$FIX" field "$dir/out.json" "$1"; }

# 1. the samples (default policy: platform only, UpToDate)
verify 0 "tdx_quote (v4) at the upstream time" --quote "$Q/tdx_quote" \
  --collateral "$Q/tdx_quote_collateral.json" --at 1752919234
check "tdx_quote: status" UpToDate "$(field status)"
check "tdx_quote: no advisories" "[]" "$(field advisory_ids)"
check "tdx_quote: verified" true "$(field verified)"
check "tdx_quote: tee_type" TDX "$(field tee_type)"
check "tdx_quote: quote_version" 4 "$(field quote_version)"
check "tdx_quote: mrtd" 91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7 \
  "$(field mrtd)"
check "tdx_quote: rtmr2" d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132 \
  "$(field rtmr2)"
check "tdx_quote: report_data" 9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20 \
  "$(field report_data)"
check "tdx_quote: not simulated" false "$(field simulated)"
check "tdx_quote: policy ok" true "$(field policy.ok)"

printf '0x%s\n' "$(od -An -v -tx1 "$Q/tdx_quote" | tr -d ' \n')" >"$dir/tdx_quote.hex"
verify 0 "tdx_quote as hex text with 0x and a newline" --quote "$dir/tdx_quote.hex" \
  --collateral "$Q/tdx_quote_collateral.json" --at 1752919234
check "hex: same status" UpToDate "$(field status)"

verify 1 "sgx_quote (v3): verified, status not allowed by the default policy" --quote "$Q/sgx_quote" \
  --collateral "$Q/sgx_quote_collateral.json" --at 1752919277
check "sgx_quote: status" ConfigurationAndSWHardeningNeeded "$(field status)"
check "sgx_quote: advisories" '["INTEL-SA-00289","INTEL-SA-00615"]' "$(field advisory_ids)"
check "sgx_quote: tee_type" SGX "$(field tee_type)"
check "sgx_quote: quote_version" 3 "$(field quote_version)"
check "sgx_quote: violation" allowed_tcb_status "$(field policy.violations.1.field)"
check "sgx_quote: no mrtd" null "$(field mrtd)"
printf '{"disable_runtime_verification":true,"allowed_tcb_status":["UpToDate","ConfigurationAndSWHardeningNeeded"],"report_data":{"prefix":"%s"}}' \
  "48656c6c6f2c20776f726c6421" >"$dir/sgx-policy.json"
verify 0 "sgx_quote with a policy allowing its status and binding its report_data" --quote "$Q/sgx_quote" \
  --collateral "$Q/sgx_quote_collateral.json" --at 1752919277 --policy "$dir/sgx-policy.json"

verify 2 "tdx_quote_outdated (v5): no matching TCB level" --quote "$Q/tdx_quote_outdated" \
  --collateral "$Q/tdx_quote_outdated_collateral.json" --at 1774003274
check "tdx_quote_outdated: code" ETCB "$(field code)"
check_match "tdx_quote_outdated: reason" 'No matching TCB level' "$(field error)"
check "tdx_quote_outdated: not verified" false "$(field verified)"
check_match "tdx_quote_outdated: reason on stderr" 'not verified: ETCB' "$(cat "$dir/err")"

verify 0 "near_quote (hex, no newline) at the NEAR contract's time" --quote "$Q/near_quote_hex.txt" \
  --collateral "$Q/near_quote_collateral.json" --at 1757462400
check "near_quote: status" UpToDate "$(field status)"
verify 0 "near_quote at the upstream rule's time" --quote "$Q/near_quote_hex.txt" \
  --collateral "$Q/near_quote_collateral.json" --at 1759388630
verify 2 "near_quote one second after the PCK CRL's nextUpdate (the JS verifier accepts it)" \
  --quote "$Q/near_quote_hex.txt" --collateral "$Q/near_quote_collateral.json" --at 1759388632
check_match "near_quote, expired CRL: code" '^(ECRL|EEXPIRED)$' "$(field code)"
verify 2 "near_quote after the QE identity's nextUpdate" --quote "$Q/near_quote_hex.txt" \
  --collateral "$Q/near_quote_collateral.json" --at 1759389004
check_match "near_quote, expired QE identity: code" '^(ECRL|EEXPIRED)$' "$(field code)"

for f in tdx-quote.hex quote-from-tappd.hex; do
  verify 2 "$f: no matching TCB level" --quote "$Q/$f" --collateral "$Q/tdx_quote_collateral.json" \
    --at 1752919234
  check "$f: code" ETCB "$(field code)"
done
verify 2 "tdx_quote after the TCB info's nextUpdate" --quote "$Q/tdx_quote" \
  --collateral "$Q/tdx_quote_collateral.json" --at 1752920164
check_match "tdx_quote expired: code" '^(ECRL|EEXPIRED)$' "$(field code)"
verify 2 "tdx_quote_outdated with 2025 collateral: PCK leaf not yet valid" --quote "$Q/tdx_quote_outdated" \
  --collateral "$Q/tdx_quote_collateral.json" --at 1752919234
check_match "not yet valid: code" '^(EEXPIRED|ECHAIN|ETCB)$' "$(field code)"

# text output and exit code without --json
"$MOONSTACK" verify --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" --at 1752919234 \
  >"$dir/out.txt" 2>&1
check "text output: exit 0" 0 "$?"
check_match "text output: status line" '^status +UpToDate$' "$(grep '^status' "$dir/out.txt")"
check_match "text output: policy line" '^policy +ok$' "$(grep '^policy' "$dir/out.txt")"

# 2. the simulator
mkdir -p "$dir/sim"
if "$MOONSTACK" run "$FIX" sim "$dir/sim" 2>"$dir/err"; then ok "simulated CVM made"; else
  not_ok "simulated CVM made" "$(cat "$dir/err")"; fi
S=$dir/sim
verify 2 "simulated quote without --root-ca" --quote "$S/quote.bin" --collateral "$S/coll.json" \
  --policy "$S/policy-sim.json"
check_match "no root: a chain/CRL error naming the simulator" 'moonstack TDX Simulation' "$(field error)"
verify 2 "simulated quote with --root-ca but without allow_simulator" --quote "$S/quote.bin" \
  --collateral "$S/coll.json" --root-ca "$S/root.pem" --policy "$S/policy-nosim.json"
check "root only: code" ESIMULATED "$(field code)"
check "root only: reported as simulated" true "$(field simulated)"
check "root only: status still reported" UpToDate "$(field status)"
check "root only: the violation" allow_simulator "$(field policy.violations.1.field)"
verify 2 "simulated quote with the default policy and --root-ca" --quote "$S/quote.bin" \
  --collateral "$S/coll.json" --root-ca "$S/root.pem"
verify 0 "simulated quote with --root-ca and allow_simulator" --quote "$S/quote.hex" \
  --collateral "$S/coll.json" --root-ca "$S/root.pem" --policy "$S/policy-sim.json"
check "sim: simulated" true "$(field simulated)"

# --simulator DIR: the platform's own root and collateral, allow_simulator implied (M7 item 12)
verify 0 "simulated quote with --simulator (the platform directory)" --quote "$S/quote.bin" \
  --simulator "$S/sim"
check "--simulator: verified" true "$(field verified)"
check "--simulator: reported as simulated" true "$(field simulated)"
check "--simulator: status" UpToDate "$(field status)"
verify 0 "--simulator implies allow_simulator over a policy without it" --quote "$S/quote.hex" \
  --simulator "$S/sim" --policy "$S/policy-nosim.json"
check "--simulator + policy: simulated" true "$(field simulated)"
"$MOONSTACK" verify --quote "$S/quote.bin" --simulator "$S/sim" >"$dir/out.txt" 2>"$dir/err"
check "--simulator, text output: exit 0" 0 "$?"
check_match "--simulator, text output: simulated line" '^simulated +true$' "$(grep '^simulated' "$dir/out.txt")"
verify 2 "--simulator naming no platform" --quote "$S/quote.bin" --simulator "$dir/no-platform"
check_match "--simulator naming no platform: why" "no simulated platform in $dir/no-platform" "$(cat "$dir/err")"
check "--simulator naming no platform: nothing created" no "$([ -e "$dir/no-platform" ] && echo yes || echo no)"
verify 2 "--simulator with --root-ca" --quote "$S/quote.bin" --simulator "$S/sim" --root-ca "$S/root.pem"
check_match "--simulator with --root-ca: why" 'give none of --collateral, --pccs, --root-ca' "$(cat "$dir/err")"
"$MOONSTACK" sim init "$dir/other-platform" >/dev/null 2>&1
verify 2 "--simulator with another platform" --quote "$S/quote.bin" --simulator "$dir/other-platform"
check "another platform: not verified" false "$(field verified)"

verify 2 "a debug TD" --quote "$S/quote-debug.bin" --collateral "$S/coll.json" --root-ca "$S/root.pem" \
  --policy "$S/policy-sim.json"
check "debug TD: code" EATTR "$(field code)"
verify 0 "a debug TD with allow_debug" --quote "$S/quote-debug.bin" --collateral "$S/coll.json" \
  --root-ca "$S/root.pem" --policy "$S/policy-sim-debug.json"

# 3. policies: complete (Atlas JSON with the exact app-compose text), violated
verify 0 "complete policy with the event log" --quote "$S/quote.bin" --collateral "$S/coll.json" \
  --root-ca "$S/root.pem" --policy "$S/policy-full.json" --event-log "$S/events.json" \
  --vm-config "$S/vm_config.json"
check "complete: event log verified" true "$(field event_log.verified)"
check "complete: compose hash" "$(sha256sum "$S/app-compose.json" | cut -d' ' -f1)" \
  "$(field app_info.compose_hash)"
verify 1 "complete policy, no event log" --quote "$S/quote.bin" --collateral "$S/coll.json" \
  --root-ca "$S/root.pem" --policy "$S/policy-full.json"
check "no event log: violation" event_log "$(field policy.violations.1.field)"
verify 1 "forged event log: compose-hash payload swapped, digest kept" --quote "$S/quote.bin" \
  --collateral "$S/coll.json" --root-ca "$S/root.pem" --policy "$S/policy-full.json" \
  --event-log "$S/events-forged.json"
check_match "forged: the event's digest binding is reported first" '^event_log\.events\[[0-9]+\]$' \
  "$(field policy.violations.1.field)"
check_match "forged: why" 'is not the digest of its name and payload' "$(field policy.violations.1.reason)"
check "forged: RTMR3 replay fails too" event_log.rtmr3 "$(field policy.violations.2.field)"
check "forged: compose hash not read" nil "$(field app_info)"
verify 1 "expected_bootchain mismatch" --quote "$S/quote.bin" --collateral "$S/coll.json" \
  --root-ca "$S/root.pem" --policy "$S/policy-bootchain.json" --event-log "$S/events.json"
check "bootchain: the register" expected_bootchain.rtmr1 "$(field policy.violations.1.field)"
printf '{"disable_runtime_verification":true,"report_data":"00"}' >"$dir/rd.json"
verify 1 "report_data mismatch" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
  --at 1752919234 --policy "$dir/rd.json"
check "report_data: violation" report_data "$(field policy.violations.1.field)"
printf 'return { disable_runtime_verification = true, allowed_tcb_status = { "OutOfDate" } }' >"$dir/p.lua"
verify 1 "a Lua policy" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
  --at 1752919234 --policy "$dir/p.lua"

# 4. malformed input and usage errors: exit 2 with a reason
head -c 700 "$Q/tdx_quote" >"$dir/trunc.bin"
verify 2 "truncated quote" --quote "$dir/trunc.bin" --collateral "$Q/tdx_quote_collateral.json"
check "truncated: code" EQUOTE "$(field code)"
check_match "truncated: reason" 'truncated' "$(field error)"
printf 'not a quote at all' >"$dir/garbage"
verify 2 "garbage quote" --quote "$dir/garbage" --collateral "$Q/tdx_quote_collateral.json"
check "garbage: code" EQUOTE "$(field code)"
printf '0x0400zz' >"$dir/bad.hex"
verify 2 "bad hex" --quote "$dir/bad.hex" --collateral "$Q/tdx_quote_collateral.json"
printf '{"tcb_info": 1}' >"$dir/badcoll.json"
verify 2 "malformed collateral" --quote "$Q/tdx_quote" --collateral "$dir/badcoll.json"
check_match "malformed collateral: reason" ECOLLATERAL "$(cat "$dir/err")"
verify 2 "missing quote file" --quote "$dir/none" --collateral "$Q/tdx_quote_collateral.json"
verify 2 "no collateral source" --quote "$Q/tdx_quote"
check_match "no collateral: reason" 'no collateral' "$(cat "$dir/err")"
verify 2 "--collateral and --pccs together" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
  --pccs http://127.0.0.1:1
verify 2 "bad --at" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" --at yesterday
for at in 99999999999999999999 253402300800; do # past 2^64; one second past 9999-12-31
  verify 2 "--at $at: a usage error" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
    --at $at
  check_match "--at $at: says why" 'at must be unix seconds up to' "$(cat "$dir/err")"
  if grep -q 'internal error' "$dir/err"; then not_ok "--at $at: no internal error" "$(cat "$dir/err")"
  else ok "--at $at: no internal error"; fi
done
printf '{"grace_period": 60, "disable_runtime_verification": true}' >"$dir/contra.json"
verify 2 "contradictory policy" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
  --policy "$dir/contra.json"
check_match "contradictory policy: names the field" 'policy\.grace_period: applies to OutOfDate' "$(cat "$dir/err")"
printf '{"disable_runtime_verification": true, "pccs": "x"}' >"$dir/unknown.json"
verify 2 "policy with an unknown field" --quote "$Q/tdx_quote" --collateral "$Q/tdx_quote_collateral.json" \
  --policy "$dir/unknown.json"
check_match "unknown field: named" 'policy\.pccs: unknown key' "$(cat "$dir/err")"
flip=$dir/flip.bin
cp "$Q/tdx_quote" "$flip"
printf '\x01' | dd of="$flip" bs=1 seek=640 conv=notrunc 2>/dev/null
verify 2 "a flipped bit in the signature" --quote "$flip" --collateral "$Q/tdx_quote_collateral.json" \
  --at 1752919234
check "flipped: code" ESIG "$(field code)"

# 5. collateral from a local PCCS, then from the cache
"$MOONSTACK" run "$FIX" pcs "$dir" "$Q/tdx_quote_collateral.json" tdx B0C06F000000 platform \
  2>"$dir/pcs.log" &
pcs=$!
defer "kill -TERM $pcs 2>/dev/null"
if wait_for 10 test -s "$dir/pcs.port"; then ok "PCCS fixture started"; else
  not_ok "PCCS fixture started" "$(cat "$dir/pcs.log")"; fi
url="http://127.0.0.1:$(cat "$dir/pcs.port")/tdx/certification/v4"
verify 0 "collateral from the PCCS" --quote "$Q/tdx_quote" --pccs "$url" --cache-dir "$dir/cache" \
  --at 1752919234
check "PCCS: status" UpToDate "$(field status)"
check "PCCS: fetched" network "$(field collateral.source)"
check "PCCS: 4 requests" 4 "$(curl -s "http://127.0.0.1:$(cat "$dir/pcs.port")/hits")"
check "cache file mode" 600 "$(stat -c %a "$dir"/cache/*.json)"
printf '{"disable_runtime_verification":true,"pccs_url":"%s","cache_collateral":true}' "$url" >"$dir/pccs-policy.json"
XDG_CACHE_HOME=$dir/xdg verify 0 "the policy's pccs_url and cache_collateral" --quote "$Q/tdx_quote" \
  --policy "$dir/pccs-policy.json" --at 1752919234
check "the policy's cache: default directory under XDG_CACHE_HOME" 1 \
  "$(ls "$dir"/xdg/moonstack/collateral/*.json 2>/dev/null | wc -l)"
kill -TERM $pcs
wait $pcs 2>/dev/null
verify 0 "collateral from the cache, PCCS gone" --quote "$Q/tdx_quote" --pccs "$url" --cache-dir "$dir/cache" \
  --at 1752919234
check "cache: source" cache "$(field collateral.source)"
verify 2 "cache expired and PCCS gone" --quote "$Q/tdx_quote" --pccs "$url" --cache-dir "$dir/cache" \
  --at 1752919235
check "expired cache: connection refused" ECONNREFUSED "$(field code)"

finish
