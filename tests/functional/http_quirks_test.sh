#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regressions of what libwebsockets 4.1 gets wrong on its own, which our HTTP layer works around
# (README "libwebsockets quirks"), on every kind of listener: plain TCP, TLS and a unix socket
# (tests/functional/fixtures/quirks_daemon.lua, driven with raw bytes by fixtures/http_raw.js):
# a request with a body pipelined behind another (lws spun at 100% CPU forever: now the first is
# answered and the connection closed), requests split into one-byte writes, request bodies of
# 400 KiB-1.5 MiB over TLS (lws stalled on plaintext left inside OpenSSL), oversized header
# sections (431) and targets (414), NUL and control bytes in paths (400), CONNECT (405), 304
# without Content-Length. After each group the server answers within 10 ms and sits idle.
source "$(dirname "$0")/lib.sh"
RAW=(node "$MOONSTACK_SRC/tests/functional/fixtures/http_raw.js")
d=$(mktemp -d /tmp/mq.XXXXXX) # short: a unix socket path
defer "rm -rf '$d'"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null

# start_server WHAT: a fresh server for each group, so that one group's failure (a spinning
# server answers nothing more) does not hide the next's
pid=
start_server() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  rm -f "$d"/*.port
  "$MOONSTACK" run "$MOONSTACK_SRC/tests/functional/fixtures/quirks_daemon.lua" "$d" 2>"$d/log" &
  pid=$!
  defer "kill -KILL $pid 2>/dev/null"
  if wait_for 10 test -s "$d/tls.port" -a -S "$d/q.sock"; then ok "$1: server started"; else
    not_ok "$1: server started" "$(cat "$d/log")"; finish; exit 1; fi
  targets=("tcp:127.0.0.1:$(cat "$d/tcp.port")" "tls:127.0.0.1:$(cat "$d/tls.port")" "unix:$d/q.sock")
}

# cpu_ms: user + system CPU time of the server so far, in ms
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$pid/stat"; }

# responsive WHAT: every listener answers GET /health within 10 ms, and the server is idle
responsive() {
  local t r before after
  for t in "${targets[@]}"; do
    r=$("${RAW[@]}" health "$t" /health)
    if node -e 'const r=JSON.parse(process.argv[1]); process.exit(r.status===200 && r.ms<10 ? 0 : 1)' "$r"
    then ok "$1: $t answers /health within 10 ms"; else not_ok "$1: $t answers /health within 10 ms" "$r"; fi
  done
  before=$(cpu_ms)
  sleep 0.5
  after=$(cpu_ms)
  if [ $((after - before)) -lt 100 ]; then ok "$1: the server is idle"; else
    not_ok "$1: the server is idle" "$((after - before)) ms of CPU in 500 ms"; fi
}

# expect TARGET CASE REGEX [POST_PATH]: run a case of http_raw.js, match its JSON result
expect() {
  local r
  r=$("${RAW[@]}" case "$1" /health "${4:-/echo}" "$2")
  check_match "$1: $2${4:+ ($4)}" "$3" "$r"
}

# 1. pipelining: lws parsed a request with a body from its own buffer and spun forever
start_server pipelining
for t in "${targets[@]}"; do
  for p in /echo /slow; do
    expect "$t" pipelined-post-post '"statuses":\[200(,200)?\],"closed":true' $p
    expect "$t" pipelined-get-post '"statuses":\[200(,200)?\],"closed":true' $p
    expect "$t" pipelined-post-get-post '"statuses":\[200,200(,200)?\],"closed":true' $p
  done
  expect "$t" pipelined-get-get '"statuses":\[200,200\]'
  expect "$t" split-post '"statuses":\[200\]'
  expect "$t" split-get '"statuses":\[200\]'
done
responsive "after pipelined and split requests"

# 2. request bodies over TLS: each size answered (lws left plaintext inside OpenSSL unread)
start_server "TLS bodies"
tls=${targets[1]}
for kb in 400 420 500 512 600 960 1000 1500; do
  expect "$tls" "body-${kb}k" '"statuses":\[200\]'
done
expect "$tls" body-2100k '"statuses":\[413\]'
cport=$(cat "$d/tls.port")
for size in 430000 524288 1572864; do
  head -c $((size - 2)) /dev/zero | tr '\0' 'x' | sed 's/^/"/;s/$/"/' >"$d/body"
  code=$(curl -s --max-time 10 --cacert "$d/cert.pem" --resolve "localhost:$cport:127.0.0.1" -H 'Expect:' \
    -o "$d/out" -w '%{http_code}' --data-binary @"$d/body" "https://localhost:$cport/echo")
  check "curl: a $size-byte body over TLS is answered" "200 {\"n\":$size}" "$code $(cat "$d/out")"
done
responsive "after large TLS bodies"

# 3. oversized and odd requests get a status, not a silent close
start_server "odd requests"
for t in "${targets[@]}"; do
  expect "$t" big-header '"statuses":\[431\]'
  expect "$t" many-headers '"statuses":\[431\]'
  expect "$t" long-target '"statuses":\[414\]'
  expect "$t" long-query '"statuses":\[414\]'
  expect "$t" nul-in-path '"statuses":\[400\]'
  expect "$t" nul-in-segment '"statuses":\[400\]'
  expect "$t" ctl-in-path '"statuses":\[400\]'
  expect "$t" lf-in-path '"statuses":\[400\]'
  expect "$t" connect '"statuses":\[405\],"closed":true'
done
hdr=$(curl -s --max-time 5 -D - -o /dev/null -H 'If-None-Match: "v1"' "http://127.0.0.1:$(cat "$d/tcp.port")/etag" | tr -d '\r')
check_match "304: the status" '^HTTP/1.1 304' "$hdr"
if printf '%s' "$hdr" | grep -qi '^content-length'; then not_ok "304: no Content-Length" "$hdr"; else
  ok "304: no Content-Length"; fi
responsive "after oversized and odd requests"

kill -TERM "$pid"
finish
