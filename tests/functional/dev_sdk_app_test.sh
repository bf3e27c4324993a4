#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M11 (e2e): examples/apps/sdk on the dev stack (`moonstack dev up --app examples/apps/sdk`), in
# namespaces of its own. Inside the CVM, on a Docker engine of its own, the app calls the
# official @phala/dstack-sdk: getKey, getQuote (over a fresh nonce) and getTlsKey. Outside,
# through the gateway, this test reads its /report.json and checks:
#   - the quote verifies with `moonstack verify` on the dev stack's simulated platform, with
#     the event log replayed, and its report_data is SHA-256("moonstack sdk example:" ||
#     nonce): the quote was made for this report;
#   - the quote names the app id of the URL and the compose hash of the deployed compose;
#   - the TLS certificate chain ends at the KMS root (the root's own certificate) and
#     `openssl verify` accepts the leaf under it;
#   - the key came with a two-signature chain; the env reached the app encrypted.
source "$(dirname "$0")/lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null \
      || ! command -v dockerd >/dev/null || ! command -v node >/dev/null; then
    not_ok "namespaces, /dev/net/tun, wireguard-go, dockerd and node (run as root; install-deps test)"
    finish
    exit 1
  fi
  # the SDK from the npm registry, here where the network is (the test's namespace has none)
  install_dstack_sdk || { finish; exit 1; }
  export SDK_NODE_MODULES=$SDK_CACHE/node_modules
fi
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/vmm_lib.sh"

d=$(tmpdir)
st=$d/state
UP=''
defer '[ -n "$UP" ] && kill -KILL $UP 2>/dev/null; "$MOONSTACK" dev down --dir "$st" >/dev/null 2>&1'
cd "$d" || exit 1

"$MOONSTACK" dev up --backend process --dir "$st" --app "$MOONSTACK_SRC/examples/apps/sdk" --no-dashboard \
  >"$d/up.log" 2>&1 &
UP=$!
wait_for 400 sh -c "test -s $st/urls.json || ! kill -0 $UP" # (dev up may end early)
if [ ! -s "$st/urls.json" ]; then
  not_ok "dev up --app examples/apps/sdk reached the app" \
    "$(tail -25 "$d/up.log"; tail -15 "$st"/vmm/run/*/stderr.log 2>/dev/null | cut -c1-300)"
  finish
  exit 1
fi
ok "dev up --app examples/apps/sdk: $(grep -o 'app reachable in .*' "$d/up.log")"
url=$(jq -r .app "$st/urls.json")
hostport=${url#https://}
hostport=${hostport%/}
host=${hostport%:*}
app_id=${host%%-*}
fetch() { curl -sS --max-time 10 --cacert "$st/gateway/ca.pem" --resolve "$hostport:127.0.0.1" "$url$1"; }
check_match "the app's page through the gateway" 'getKey, getQuote, getTlsKey: ok' "$(fetch '')"
fetch report.json >"$d/report.json"
check "the report names the app id of the URL" "$app_id" "$(jq -r .app_id "$d/report.json")"
check "the env reached the app encrypted" "keys, quotes and TLS from the official SDK" \
  "$(jq -r .note "$d/report.json")"

# ---- the quote ----
jq -r .quote "$d/report.json" >"$d/quote.hex"
jq '.event_log | if type == "string" then fromjson else . end' "$d/report.json" >"$d/events.json"
"$MOONSTACK" verify --quote "$d/quote.hex" --simulator "$st/sim" --event-log "$d/events.json" \
  --json >"$d/verify.json" 2>"$d/verify.err"
check "moonstack verify accepts the quote with its event log (exit 0)" 0 "$?"
check "verify: the event log replays to the quote's RTMRs" "true" \
  "$(jq -r '.event_log.verified // .event_log_verified // (.event_log == "verified")' "$d/verify.json")"
want_rd=$( { printf 'moonstack sdk example:'; jq -r .nonce "$d/report.json" | xxd -r -p; } | sha256sum | cut -d' ' -f1)
check "report_data = SHA-256(\"moonstack sdk example:\" || nonce), zero padded" \
  "${want_rd}$(printf '0%.0s' $(seq 64))" "$(jq -r '.report_data // .quote.report_data' "$d/verify.json")"
check "the quote's app id and compose hash are the deployed app's" \
  "$app_id $(jq -r .compose_hash "$d/report.json")" \
  "$(jq -r '"\(.app.app_id // .app_info.app_id) \(.app.compose_hash // .app_info.compose_hash)"' "$d/verify.json")"

# ---- the TLS key's certificate chain ----
jq -r '.tls_certificate_chain[]' "$d/report.json" >"$d/chain.pem"
n=$(grep -c 'BEGIN CERTIFICATE' "$d/chain.pem")
awk -v dir="$d" '/BEGIN CERTIFICATE/{i++} {print > (dir "/cert" i ".pem")}' "$d/chain.pem"
check "the TLS chain's last certificate is the KMS root" \
  "$(openssl x509 -in "$st/kms/keys/root-ca.crt" -noout -fingerprint -sha256)" \
  "$(openssl x509 -in "$d/cert$n.pem" -noout -fingerprint -sha256)"
: >"$d/untrusted.pem"
for i in $(seq 2 $((n - 1))); do cat "$d/cert$i.pem" >>"$d/untrusted.pem"; done
check_match "openssl verify: the leaf chains to the KMS root" ': OK$' \
  "$(openssl verify -CAfile "$st/kms/keys/root-ca.crt" -untrusted "$d/untrusted.pem" "$d/cert1.pem" 2>&1)"
check "the app key came with its two-signature chain (app key, KMS root)" "2 66" \
  "$(jq -r '"\(.key.signature_chain | length) \(.key.public_key | length)"' "$d/report.json")"

"$MOONSTACK" dev down --dir "$st" >"$d/down.log" 2>&1
check "dev down exits 0" 0 "$?"
wait "$UP"
UP=''
check "nothing of the stack is left" "" "$(procs_under "$st" | tr '\n' ' ')"
finish
