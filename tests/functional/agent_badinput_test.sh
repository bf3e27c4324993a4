#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Bad input to the guest API (moonstack agent --simulator): wrong hex, oversize report_data,
# unknown algorithms and methods, malformed JSON and protobuf, wrong field types, bodies over
# the 10 MiB limit, broken Content-Length, truncated and abandoned requests. Each one gets a
# 400 (413 for the size limit) with a clear message, and the agent keeps serving: a good
# request is answered after every bad one.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fixtures/agent_sim.sh"

dir=$(tmpdir)
start_agent "$dir" || { finish; exit 1; }
D=$dir/dstack.sock
T=$dir/tappd.sock

# req SOCK PATH BODY [CONTENT-TYPE]: POST; sets $code and $body
req() {
  local ct=${4-application/json}
  code=$(curl -s -o "$dir/body" -w '%{http_code}' --max-time 30 --unix-socket "$1" \
    ${ct:+-H "Content-Type: $ct"} --data-binary "@-" "http://localhost$2" <<<"$3")
  body=$(tr -d '\0' <"$dir/body")
}

# good: the agent still answers
good() {
  local c
  c=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$D" http://localhost/Version)
  check "  ... and the agent still serves" 200 "$c"
}

# bad NAME SOCK PATH BODY WANT_CODE WANT_ERROR_REGEX [CONTENT-TYPE]
bad() {
  req "$2" "$3" "$4" "${7-application/json}"
  check "$1: status" "$5" "$code"
  check_match "$1: error" "$6" "$body"
  good
}

bad "wrong hex" "$D" /GetQuote '{"report_data":"zz"}' 400 '"error": "failed to decode the GetQuote request: report_data: invalid hex string"'
bad "odd hex" "$D" /GetQuote '{"report_data":"abc"}' 400 'report_data: invalid hex string'
bad "hex of the wrong type" "$D" /GetQuote '{"report_data":12}' 400 'report_data: expected a hex string'
bad "oversize report_data (GetQuote)" "$D" /GetQuote "{\"report_data\":\"$(printf '%0130d' 0)\"}" 400 '"error": "Report data is too long"'
bad "oversize report_data (Attest)" "$D" /Attest "{\"report_data\":\"$(printf '%0130d' 0)\"}" 400 'Report data is too long'
bad "raw report_data not 64 bytes" "$T" /prpc/Tappd.RawQuote '{"report_data":"0102"}' 400 'invalid content length'
bad "unknown algorithm (GetKey)" "$D" /GetKey '{"path":"x","algorithm":"rsa"}' 400 '"error": "Unsupported algorithm"'
bad "unknown algorithm (Sign)" "$D" /Sign '{"algorithm":"rsa","data":"00"}' 400 'Unsupported algorithm'
bad "prehashed data of 3 bytes" "$D" /Sign '{"algorithm":"secp256k1_prehashed","data":"010203"}' 400 'requires a 32-byte digest, but received 3 bytes'
bad "unknown hash algorithm (TdxQuote)" "$T" /prpc/Tappd.TdxQuote '{"report_data":"00","hash_algorithm":"md5"}' 400 'invalid hash algorithm'
bad "malformed signature and key (Verify)" "$D" /Verify '{"algorithm":"ed25519","data":"00","signature":"01","public_key":"02"}' 400 'invalid signature or public key'
bad "malformed JSON" "$D" /GetKey '{"path":' 400 'failed to decode the GetKey request: invalid JSON request body'
bad "JSON that is not an object" "$D" /GetKey '[1,2]' 400 'the request body must be a JSON object'
bad "a field of the wrong type" "$D" /GetKey '{"path":5}' 400 'path: expected a string'
bad "a boolean of the wrong type" "$D" /GetTlsKey '{"usage_ra_tls":"yes"}' 400 'usage_ra_tls: expected a boolean'
bad "validity upside down" "$D" /GetTlsKey '{"not_before":20,"not_after":10}' 400 'not_before must be earlier than not_after'
bad "EmitEvent payload not hex" "$D" /EmitEvent '{"event":"x","payload":"qq"}' 400 'payload: invalid hex string'
bad "unknown method" "$D" /NoSuchMethod '{}' 400 'no such method: NoSuchMethod'
bad "unknown Tappd method" "$T" /prpc/Tappd.Nope '{}' 400 'no such method: Tappd.Nope'
bad "unknown nested path" "$D" /a/b '{}' 404 'not found'
bad "JSON sent as protobuf" "$D" /GetQuote '{"report_data":"00"}' 400 'malformed protobuf' ''

# bodies: 9 MiB of hex (under the limit) is decoded and refused; over 10 MiB is a 413
big=$dir/big.json
{ printf '{"report_data":"'; head -c $((9 * 1024 * 1024 / 2)) /dev/zero | od -An -v -tx1 | tr -d ' \n'; printf '"}'; } >"$big"
code=$(curl -s -o "$dir/body" -w '%{http_code}' --max-time 30 --unix-socket "$D" -H 'Content-Type: application/json' \
  --data-binary "@$big" http://localhost/GetQuote)
check "9 MiB body: status" 400 "$code"
check_match "9 MiB body: error" 'Report data is too long' "$(cat "$dir/body")"
good
head -c $((11 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$dir/huge"
code=$(curl -s -o "$dir/body" -w '%{http_code}' --max-time 30 --unix-socket "$D" -H 'Content-Type: application/json' \
  --data-binary "@$dir/huge" http://localhost/GetKey)
check "11 MiB body: status" 413 "$code"
check_match "11 MiB body: error" 'request body too large' "$(cat "$dir/body")"
good

# raw HTTP on the public listener (same server code): broken Content-Length, truncated and
# abandoned requests
raw() {
  exec 3<>"/dev/tcp/127.0.0.1/$AGENT_PORT"
  printf '%b' "$1" >&3
  timeout 5 cat <&3 >"$dir/raw" 2>/dev/null
  exec 3>&-
}
raw 'POST /prpc/Worker.Version HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'
check_match "invalid Content-Length: 400" '^HTTP/1.1 400' "$(head -1 "$dir/raw")"
good
exec 4<>"/dev/tcp/127.0.0.1/$AGENT_PORT"
printf 'POST /prpc/Worker.Version HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a":' >&4
exec 4>&-
ok "a truncated request was abandoned"
good
exec 4<>"/dev/tcp/127.0.0.1/$AGENT_PORT"
printf 'GARBAGE\r\n\r\n' >&4
timeout 5 cat <&4 >/dev/null 2>&1
exec 4>&-
ok "a garbage request line was sent"
good

# many bad requests on one keep-alive connection, then a good one on the same connection
args=()
for i in $(seq 20); do args+=(--next --unix-socket "$D" -H 'Content-Type: application/json' -d '{"path":' http://localhost/GetKey); done
out=$(curl -s --max-time 30 "${args[@]:1}" --next --unix-socket "$D" http://localhost/Version)
check "20 bad requests on one connection are each answered" 20 "$(grep -o 'invalid JSON request body' <<<"$out" | wc -l)"
check_match "... then a good one on the same connection" '"version":"' "$out"

check "no error was logged as an internal failure" 0 "$(grep -c 'internal error\|failed:' "$dir/agent.log")"
stop_agent
finish
