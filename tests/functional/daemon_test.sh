#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A real daemon on loopback: HTTP over TCP and a unix socket (curl), a websocket echo (Node's
# WebSocket client), the REPL on its control socket, an error inside a luv callback that is
# logged with a traceback while the daemon keeps serving, and a clean SIGTERM shutdown.
# With MOONSTACK_VALGRIND=1 the daemon runs under valgrind and must show no leak or error.
source "$(dirname "$0")/lib.sh"

dir=$(tmpdir)
log=$dir/daemon.log
runner=()
if [ "${MOONSTACK_VALGRIND:-0}" = 1 ]; then
  runner=(valgrind -q --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$dir/valgrind.log")
fi
"${runner[@]}" "$MOONSTACK" run "$MOONSTACK_SRC/tests/functional/fixtures/echo_daemon.lua" "$dir" \
  2>"$log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"

startup=10
[ ${#runner[@]} -gt 0 ] && startup=60
if wait_for "$startup" test -S "$dir/control.sock"; then ok "daemon started"; else
  not_ok "daemon started" "$(cat "$log")"; finish; exit 1; fi
port=$(cat "$dir/port")

check "mode of the unix API socket" "600" "$(stat -c %a "$dir/api.sock")"
check "mode of the control socket" "600" "$(stat -c %a "$dir/control.sock")"

out=$(curl -sS --max-time 10 "http://127.0.0.1:$port/hello")
check_match "HTTP over TCP" '"hello":"world"' "$out"
out=$(curl -sS --max-time 10 --unix-socket "$dir/api.sock" http://localhost/hello)
check_match "HTTP over the unix socket" '"via":"unix"' "$out"
out=$(curl -sS --max-time 10 -H 'Content-Type: application/json' -d '{"n":[1,2,3]}' \
  "http://127.0.0.1:$port/echo")
check "JSON echo" '{"n":[1,2,3]}' "$out"
headers=$(curl -sS --max-time 10 -D - -o /dev/null "http://127.0.0.1:$port/hello" | tr -d '\r')
check_match "Content-Length on responses" '^content-length: [0-9]+$' \
  "$(echo "$headers" | grep -i '^content-length')"

if node --experimental-websocket -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null; then
  out=$(node --experimental-websocket --no-warnings "$MOONSTACK_SRC/tests/functional/fixtures/ws_echo.js" \
    "ws://127.0.0.1:$port/ws" 2>&1)
  check "websocket echo (Node client)" "echo ok: ping-1 ping-2" "$out"
else
  not_ok "websocket echo (Node client)" "node with --experimental-websocket is required (Node >= 20.10)"
fi

out=$("$MOONSTACK" repl "$dir/control.sock" -e '1+1' 2>&1)
check "repl evaluates 1+1" "2" "$out"
out=$(printf 'x = 20\nx + 22\n' | "$MOONSTACK" repl "$dir/control.sock" 2>&1 | tail -n 1)
check "repl keeps state between lines" "42" "$out"
out=$("$MOONSTACK" repl "$dir/control.sock" -e 'daemon:status().state' 2>&1)
check "repl sees the daemon" '"running"' "$out"

out=$(curl -sS --max-time 10 -X POST "http://127.0.0.1:$port/crash-in-callback")
check "crash route scheduled" '{"scheduled":true}' "$out"
wait_for 10 grep -q 'deliberate failure inside a luv timer callback' "$log"
check_match "callback error logged" 'error in luv callback: .*deliberate failure' "$(cat "$log")"
check_match "callback error has a traceback" 'stack traceback:' "$(cat "$log")"
out=$(curl -sS --max-time 10 "http://127.0.0.1:$port/hello")
check_match "still serving after the callback error" '"hello":"world"' "$out"

kill -TERM "$pid"
deadline=30
[ ${#runner[@]} -gt 0 ] && deadline=120
rc=0
for _ in $(seq $((deadline * 20))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$pid" 2>/dev/null; then not_ok "stops on SIGTERM" "still running"; else
  wait "$pid"; rc=$?; check "exit code after SIGTERM" 0 "$rc"; fi
check "control socket removed" "no" "$([ -e "$dir/control.sock" ] && echo yes || echo no)"
check "API socket removed" "no" "$([ -e "$dir/api.sock" ] && echo yes || echo no)"
if [ ${#runner[@]} -gt 0 ]; then
  check "valgrind: no leaks or memory errors" "" "$(cat "$dir/valgrind.log")"
fi
finish
