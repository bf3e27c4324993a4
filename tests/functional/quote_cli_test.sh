#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack quote show` and `moonstack eventlog replay` on the real vectors: every quote in
# vectors/dcap-qvl (and the simulator's) prints exactly the values of
# vectors/derived/quotes-parsed.json; malformed and truncated quotes exit 2 with a clear
# message; ccel.bin replays to RTMR0 of quote-from-tappd.hex and to the upstream snapshots;
# the simulator attestation's event log (JSON, and as a runtime_events.log) and the verifier
# fixtures replay to their quotes' RTMRs.
source "$(dirname "$0")/lib.sh"
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
if [ ! -f "$V/derived/quotes-parsed.json" ]; then
  not_ok "test vectors found" "no vectors at $V (set MOONSTACK_VECTORS)"
  finish
  exit 1
fi
CMP="$MOONSTACK_SRC/tests/functional/fixtures/tdx_compare.lua"
dir=$(tmpdir)
PARSED="$V/derived/quotes-parsed.json"

# run WANT_RC ARGS...: moonstack ARGS with stdout in $dir/out, stderr in $dir/err; sets $rc
run() {
  local want=$1
  shift
  "$MOONSTACK" "$@" >"$dir/out" 2>"$dir/err"
  rc=$?
  if [ "$rc" != "$want" ]; then
    not_ok "moonstack $* exits $want" "exit $rc; stderr: $(head -c 400 "$dir/err")"
    return 1
  fi
}

cmp_ok() { # NAME ARGS...: the comparer must succeed
  local name=$1
  shift
  if out=$("$MOONSTACK" run "$CMP" "$@" 2>&1); then ok "$name ($out)"; else not_ok "$name" "$out"; fi
}

field() { "$MOONSTACK" run "$CMP" field "$1" "$2"; }

# 1. every quote of the dump, through --json, equals the dump
n=0
while IFS=$'\t' read -r idx file; do
  n=$((n + 1))
  if run 0 quote show --json "$V/$file"; then
    cp "$dir/out" "$dir/q$idx.json"
    cmp_ok "quote show --json $file" quote "$PARSED" "$idx" "$dir/q$idx.json"
  fi
done < <("$MOONSTACK" run "$CMP" list "$PARSED")
check "the dump lists 7 quotes" 7 "$n"

# the text form shows the same values, and the PCK chain subjects
run 0 quote show "$V/dcap-qvl/tdx_quote" && {
  check_match "text: mrtd" "^mrtd +$(field "$dir/q1.json" mrtd)\$" "$(grep '^mrtd ' "$dir/out")"
  check_match "text: rtmr2" "^rtmr2 +d833feef" "$(grep '^rtmr2 ' "$dir/out")"
  check_match "text: PCK leaf subject" 'CN=Intel SGX PCK Certificate$' "$(grep '^pck_chain\[0\]' "$dir/out")"
  check_match "text: certification data type" '^cert_data_type +6$' "$(grep '^cert_data_type' "$dir/out")"
}
# hex from standard input, with 0x and surrounding whitespace
printf '  0x%s \n\n' "$(od -An -v -tx1 "$V/dcap-qvl/tdx_quote" | tr -d ' \n')" >"$dir/padded.hex"
run 0 quote show --json - <"$dir/padded.hex" &&
  check "stdin hex: same report_data" "$(field "$dir/q1.json" report_data)" "$(field "$dir/out" report_data)"

# 2. malformed and truncated quotes: exit 2, a message naming the problem
head -c 700 "$V/dcap-qvl/tdx_quote" >"$dir/trunc.bin"
run 2 quote show "$dir/trunc.bin" &&
  check_match "truncated binary: names the field and offset" \
    'trunc.bin: EQUOTE: truncated: signature data at offset 636 declares 4300 bytes, only 64 left' \
    "$(cat "$dir/err")"
head -c 1500 "$V/dcap-qvl/quote-from-tappd.hex" >"$dir/trunc.hex"
run 2 quote show "$dir/trunc.hex" &&
  check_match "truncated hex" 'EQUOTE: truncated: signature data at offset 636' "$(cat "$dir/err")"
head -c 40 "$V/dcap-qvl/sgx_quote" >"$dir/header.bin"
run 2 quote show --json "$dir/header.bin" &&
  check_match "truncated header" 'EQUOTE: truncated: header.user_data at offset 28 needs 20 bytes, only 12 left' \
    "$(cat "$dir/err")"
check "nothing on stdout for a bad quote" "" "$(cat "$dir/out")"
printf '0x040002008' >"$dir/odd.hex"
run 2 quote show "$dir/odd.hex" && check_match "odd hex" 'odd number of digits' "$(cat "$dir/err")"
printf '0x04000200zz' >"$dir/bad.hex"
run 2 quote show "$dir/bad.hex" && check_match "non-hex after 0x" 'non-hex character' "$(cat "$dir/err")"
: >"$dir/empty"
run 2 quote show "$dir/empty" && check_match "empty file" 'EQUOTE: empty input' "$(cat "$dir/err")"
printf 'hello, this is not a quote\n' >"$dir/text"
run 2 quote show "$dir/text" && check_match "not a quote" 'EQUOTE: header.version at offset 0: unsupported version' "$(cat "$dir/err")"
cp "$V/dcap-qvl/tdx_quote" "$dir/bigsig.bin"
printf '\xff\xff\x00\x00' | dd of="$dir/bigsig.bin" bs=1 seek=632 conv=notrunc 2>/dev/null
run 2 quote show "$dir/bigsig.bin" && check_match "corrupted length" 'signature data at offset 636 declares 65535 bytes, only 4370 left' "$(cat "$dir/err")"
run 2 quote show "$dir/nonexistent" && check_match "missing file" 'nonexistent: ENOENT' "$(cat "$dir/err")"
run 2 quote show && check_match "usage error" 'missing argument FILE' "$(cat "$dir/err")"
run 2 quote bogus && check_match "unknown subcommand" "unknown command 'bogus'" "$(cat "$dir/err")"
run 0 quote show --help && check_match "quote show --help" 'usage: moonstack quote show FILE' "$(cat "$dir/out")"

# 3. the CCEL: RTMR0 of quote-from-tappd.hex, the upstream snapshots, the ACPI labels
CC="$V/dstack/cc-eventlog"
if run 0 eventlog replay --json --no-acpi-labels "$CC/ccel.bin"; then
  cp "$dir/out" "$dir/ccel.json"
  check "ccel.bin replays to RTMR0 of quote-from-tappd.hex" "$(field "$dir/q4.json" rtmr0)" "$(field "$dir/ccel.json" rtmr0)"
  check "ccel.bin RTMR1" bdcf4ee0f7fdfe7c73fbb19ded73193aee23a6726b86d3b282ea097cf4c9ed7a0db21b5c1ccd513e410d90e310836b26 \
    "$(field "$dir/ccel.json" rtmr1)"
  cmp_ok "ccel.bin events equal the upstream snapshots" ccel "$dir/ccel.json" \
    "$CC/ccel.expected-tdx-eventlog.snap" "$CC/ccel.expected-tcg-events.snap"
fi
run 0 eventlog replay --json "$CC/ccel.bin" && {
  check "ACPI labels" "acpi-loader acpi-rsdp acpi-tables" \
    "$(for i in 9 10 11; do field "$dir/out" "events.$i.event"; done | tr '\n' ' ' | sed 's/ $//')"
  check "labels do not change the replay" "$(field "$dir/ccel.json" rtmr0)" "$(field "$dir/out" rtmr0)"
}
run 0 eventlog replay "$CC/ccel.bin" && check_match "text: rtmr0" '^rtmr0   274c2344' "$(grep '^rtmr0' "$dir/out")"
# compared with a quote whose RTMR1/3 the CCEL does not cover: exit 1, the difference shown
run 1 eventlog replay "$CC/ccel.bin" --quote "$V/dcap-qvl/quote-from-tappd.hex" && {
  check_match "--quote: rtmr0 matches" '^rtmr0 .*\(matches the quote\)' "$(grep '^rtmr0' "$dir/out")"
  check_match "--quote: rtmr1 differs" '^rtmr1 .*DIFFERS: quote has 918fbd97' "$(grep '^rtmr1' "$dir/out")"
}

# 4. JSON event logs: the simulator attestation, the verifier fixtures, a runtime log
SIM="$V/derived/simulator-attestation.decoded.json"
run 0 eventlog replay --json "$SIM" && cmp_ok "simulator attestation replays to its quote" sim "$SIM" "$dir/out"
run 0 eventlog replay --json --to-event boot-mr-done "$SIM" &&
  check "boot-time RTMR3 (up to boot-mr-done)" \
    161d4d87fecefcad09ed96ba8f901e58eca0f422b8155e2829ef94ce084a757e88c7f4be29df017ed72531e8efb643b7 \
    "$(field "$dir/out" rtmr3)"
for f in quote-report tdx-lite-getquote; do
  run 0 eventlog replay --json "$V/dstack/verifier/$f.json" &&
    check "$f.json replays to its quote's RTMRs" true "$(field "$dir/out" quote.matches)"
done
"$MOONSTACK" run "$CMP" mklog "$SIM" "$dir/runtime_events.log"
run 0 eventlog replay --json "$dir/runtime_events.log" && {
  check "runtime_events.log: source" runtime-log "$(field "$dir/out" source)"
  check "runtime_events.log replays to RTMR3" f28a1490ee924e9396c2ccf2d93ad536b83cbe159a1d45024d1fd7acdcc102145efcfcd0cfa209416446c70226affadf \
    "$(field "$dir/out" rtmr3)"
}

# 5. malformed event logs
head -c 500 "$CC/ccel.bin" >"$dir/ccel-trunc.bin"
run 2 eventlog replay "$dir/ccel-trunc.bin" && check_match "truncated CCEL" 'EEVENTLOG: truncated: .* at offset' "$(cat "$dir/err")"
printf '[{"imr":0,"event_type":1,' >"$dir/broken.json"
run 2 eventlog replay "$dir/broken.json" && check_match "invalid JSON" 'EEVENTLOG: invalid JSON' "$(cat "$dir/err")"
printf '[{"imr":7,"event_type":1,"digest":"%s","event":"","event_payload":""}]' "$(printf '00%.0s' $(seq 48))" >"$dir/imr7.json"
run 2 eventlog replay "$dir/imr7.json" && check_match "imr out of range" 'EEVENTLOG: event 0: imr 7' "$(cat "$dir/err")"
printf '{"something":"else"}' >"$dir/other.json"
run 2 eventlog replay "$dir/other.json" && check_match "no event log" 'no event log found' "$(cat "$dir/err")"
run 2 eventlog replay "$dir/nonexistent" && check_match "missing file" 'nonexistent' "$(cat "$dir/err")"

finish
