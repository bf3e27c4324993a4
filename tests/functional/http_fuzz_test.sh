#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A bounded fuzz run of the HTTP layer against every listener of the real daemons, on loopback:
# the agent simulator (dstack.sock, tappd.sock and its public TCP listener), a KMS (the pRPC port
# over TLS and the admin port, whose token nothing here has) and the verifier (on a unix socket
# and on TCP). First the known offenders on each listener (pipelined requests with a body, which
# spun libwebsockets forever; one-byte writes; oversized header sections and targets; NUL in
# paths; CONNECT), then random request streams (pipelined mixes, odd splits, junk, oversized
# parts, cut short; fixtures/http_raw.js, seed $MOONSTACK_FUZZ_SEED, at most $MOONSTACK_FUZZ_COUNT
# connections in $MOONSTACK_FUZZ_SECONDS). It ends with every listener answering a cheap GET
# within 10 ms and every daemon idle and alive.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fixtures/agent_sim.sh"
RAW=(node "$MOONSTACK_SRC/tests/functional/fixtures/http_raw.js")
SEED=${MOONSTACK_FUZZ_SEED:-20240607}
COUNT=${MOONSTACK_FUZZ_COUNT:-600}
SECONDS_MAX=${MOONSTACK_FUZZ_SECONDS:-40}
dir=$(mktemp -d /tmp/mf.XXXXXX) # short: unix socket paths
defer "rm -rf '$dir'"

# the agent simulator
mkdir -p "$dir/agent"
start_agent "$dir/agent" || { finish; exit 1; }
ok "agent started"

# a KMS with an admin listener
TOKEN=fuzz-$RANDOM$RANDOM$RANDOM
cat >"$dir/kms.lua" <<LUA
return {
  key_dir = '$dir/keys',
  listen = { host = '127.0.0.1', port = 0 },
  control = '$dir/kms.ctl',
  auth = { kind = 'dev' },
  admin = { listen = { host = '127.0.0.1', port = 0 }, token = '$TOKEN' },
}
LUA
"$MOONSTACK" kms -c "$dir/kms.lua" 2>"$dir/kms.log" &
kms_pid=$!
defer "kill -KILL $kms_pid 2>/dev/null"
if wait_for 15 test -S "$dir/kms.ctl"; then ok "kms started"; else
  not_ok "kms started" "$(cat "$dir/kms.log")"; finish; exit 1; fi
kport=$("$MOONSTACK" repl "$dir/kms.ctl" -e 'kms:port()' 2>&1)
aport=$("$MOONSTACK" repl "$dir/kms.ctl" -e 'kms:admin_port()' 2>&1)
check_match "kms ports" '^[0-9]+ [0-9]+$' "$kport $aport"

# the verifier, on a unix socket and on TCP
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
for kind in unix tcp; do
  if [ $kind = unix ]; then listen="{ unix = '$dir/v.sock' }"; else listen="{ host = '127.0.0.1', port = 0 }"; fi
  cat >"$dir/verifier-$kind.lua" <<LUA
return {
  listen = $listen,
  collateral = { file = '$V/dcap-qvl/tdx_quote_collateral.json' },
  policy = { disable_runtime_verification = true },
}
LUA
  "$MOONSTACK" verifier -c "$dir/verifier-$kind.lua" 2>"$dir/verifier-$kind.log" &
  eval "verifier_${kind}_pid=$!"
  defer "kill -KILL $! 2>/dev/null"
  if wait_for 10 grep -q 'verifier listening' "$dir/verifier-$kind.log"; then ok "verifier ($kind) started"
  else not_ok "verifier ($kind) started" "$(cat "$dir/verifier-$kind.log")"; finish; exit 1; fi
done
vport=$(grep 'verifier listening' "$dir/verifier-tcp.log" | grep -o '127\.0\.0\.1:[0-9]*' | cut -d: -f2)

# listeners: TARGET HEALTH POST PID (the admin port answers 401 to everything without the token)
listeners=(
  "unix:$dir/agent/dstack.sock" /Info /prpc/GetKey "$AGENT_PID"
  "unix:$dir/agent/tappd.sock" /prpc/Tappd.Info /prpc/Tappd.Info "$AGENT_PID"
  "tcp:127.0.0.1:$AGENT_PORT" /prpc/Worker.Version /prpc/Worker.Version "$AGENT_PID"
  "tls:127.0.0.1:$kport" /health /prpc/GetMeta "$kms_pid"
  "tcp:127.0.0.1:$aport" /prpc/Admin.SetImageAllowed /prpc/Admin.SetImageAllowed "$kms_pid"
  "unix:$dir/v.sock" /health /verify "$verifier_unix_pid"
  "tcp:127.0.0.1:$vport" /health /verify "$verifier_tcp_pid"
)
pids="$AGENT_PID $kms_pid $verifier_unix_pid $verifier_tcp_pid"

cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"; }

# responsive WHAT: every listener answers its cheap GET within 10 ms; every daemon alive and idle
responsive() {
  local i r p before after
  for ((i = 0; i < ${#listeners[@]}; i += 4)); do
    r=$("${RAW[@]}" health "${listeners[i]}" "${listeners[i + 1]}")
    if node -e 'const r=JSON.parse(process.argv[1]); process.exit(r.status && r.ms<10 ? 0 : 1)' "$r"; then
      ok "$1: ${listeners[i]} answers GET ${listeners[i + 1]} within 10 ms"
    else not_ok "$1: ${listeners[i]} answers GET ${listeners[i + 1]} within 10 ms" "$r"; fi
  done
  for p in $pids; do
    if ! kill -0 "$p" 2>/dev/null; then not_ok "$1: daemon $p alive"; continue; fi
    before=$(cpu_ms "$p")
    sleep 0.3
    after=$(cpu_ms "$p")
    if [ $((after - before)) -lt 100 ]; then ok "$1: daemon $p alive and idle"; else
      not_ok "$1: daemon $p alive and idle" "$((after - before)) ms of CPU in 300 ms"; fi
  done
}

responsive "before"

# 0. methods pRPC does not serve get 405 (they answered 200 as POSTs); a GetKey path that is not
# UTF-8 is refused as upstream refuses it (serde_json, prost)
A=(--unix-socket "$dir/agent/dstack.sock")
K=(--cacert "$dir/keys/root-ca.crt" --resolve "localhost:$kport:127.0.0.1")
for m in PUT DELETE PATCH; do
  check "agent dstack.sock: $m /prpc/GetKey: 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    "${A[@]}" -X $m -H 'Content-Type: application/json' -d '{}' http://localhost/prpc/GetKey)"
  check "agent public listener: $m /prpc/Worker.Version: 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' \
    --max-time 5 -X $m "http://127.0.0.1:$AGENT_PORT/prpc/Worker.Version")"
  check "kms: $m /prpc/GetMeta: 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${K[@]}" \
    -X $m -d '{}' "https://localhost:$kport/prpc/GetMeta")"
done
printf '{"path":"a\xffb","purpose":"p"}' >"$dir/bad-utf8.json"
code=$(curl -s -o "$dir/out" -w '%{http_code}' --max-time 5 "${A[@]}" -H 'Content-Type: application/json' \
  --data-binary @"$dir/bad-utf8.json" http://localhost/prpc/GetKey)
check "GetKey with a path that is not UTF-8: 400" 400 "$code"
check_match "... saying so" 'path: invalid UTF-8' "$(cat "$dir/out")"

# 1. the known offenders, on every listener
for ((i = 0; i < ${#listeners[@]}; i += 4)); do
  t=${listeners[i]} h=${listeners[i + 1]} p=${listeners[i + 2]}
  for c in pipelined-post-post pipelined-get-post pipelined-post-get-post; do
    r=$("${RAW[@]}" case "$t" "$h" "$p" $c)
    check_match "$t: $c: answered, then closed" '"statuses":\[[0-9]{3}(,[0-9]{3})*\],"closed":true' "$r"
  done
  check_match "$t: pipelined GETs answered in order" '"statuses":\[[0-9]{3},[0-9]{3}\]' \
    "$("${RAW[@]}" case "$t" "$h" "$p" pipelined-get-get)"
  check_match "$t: a POST in one-byte writes answered" '"statuses":\[[0-9]{3}\]' \
    "$("${RAW[@]}" case "$t" "$h" "$p" split-post)"
  check_match "$t: oversized header section: 431" '"statuses":\[431\]' "$("${RAW[@]}" case "$t" "$h" "$p" big-header)"
  check_match "$t: oversized target: 414" '"statuses":\[414\]' "$("${RAW[@]}" case "$t" "$h" "$p" long-target)"
  check_match "$t: NUL in the path: 400" '"statuses":\[400\]' "$("${RAW[@]}" case "$t" "$h" "$p" nul-in-path)"
  check_match "$t: CONNECT: 405, closed" '"statuses":\[405\],"closed":true' "$("${RAW[@]}" case "$t" "$h" "$p" connect)"
done
responsive "after the known offenders"

# 2. random request streams on all listeners at once
args=()
for ((i = 0; i < ${#listeners[@]}; i += 4)); do args+=("${listeners[i]}" "${listeners[i + 1]}" "${listeners[i + 2]}"); done
r=$("${RAW[@]}" fuzz "$SEED" "$COUNT" "$SECONDS_MAX" "${args[@]}")
check_match "fuzz (seed $SEED): ran" '"runs":[1-9]' "$r"
check_match "fuzz (seed $SEED): every half-closed connection closed by the server" '"left_open":0' "$r"
responsive "after the fuzz run"

stop_agent
for p in $kms_pid $verifier_unix_pid $verifier_tcp_pid; do
  kill -TERM "$p"
  wait "$p"
  check "daemon $p exits cleanly on SIGTERM" 0 "$?"
done
finish
