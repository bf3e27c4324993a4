#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The official dstack JS SDK (@phala/dstack-sdk from npm) talks to a moonstack HTTP server over
# a unix socket and over TCP: its raw HTTP/1.1 client needs Content-Length and a server that
# closes after it half-closes. The npm packages (the SDK and the peer dependencies its entry point
# loads) are installed once per build tree.
source "$(dirname "$0")/lib.sh"

install_dstack_sdk || { finish; exit 1; }
cache=$SDK_CACHE

dir=$(tmpdir)
"$MOONSTACK" run "$MOONSTACK_SRC/tests/functional/fixtures/sdk_stub_daemon.lua" "$dir" 2>"$dir/log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"
wait_for 10 test -S "$dir/dstack.sock" || { not_ok "stub started" "$(cat "$dir/log")"; finish; exit 1; }
port=$(cat "$dir/port")

want='{"reachable":true,"app_name":"stub","mrtd":"00","quote_len":65536,"report_data":"68656c6c6f","sequential":20,"parallel":10}'
for endpoint in "$dir/dstack.sock" "http://127.0.0.1:$port"; do
  out=$(NODE_PATH="$cache/node_modules" timeout 60 node "$MOONSTACK_SRC/tests/functional/fixtures/sdk_transport.js" "$endpoint" 2>&1)
  check "SDK over $endpoint" "$want" "$out"
done

kill -TERM "$pid"; wait "$pid"
check "stub exits cleanly" 0 "$?"
finish
