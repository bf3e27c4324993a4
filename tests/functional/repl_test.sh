#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack repl` against a real daemon's control socket: piped lines, -e, --json, error
# exit codes, long replies and lines, a missing socket, then an interactive session under
# tmux (libedit line editing, history recall, continuation prompt, Ctrl-D), and a clean stop.
source "$(dirname "$0")/lib.sh"

dir=$(tmpdir)
sock=$dir/c.sock
log=$dir/daemon.log
"$MOONSTACK" run "$MOONSTACK_SRC/tests/functional/fixtures/repl_daemon.lua" "$sock" 2>"$log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"

if wait_for 10 test -S "$sock"; then ok "daemon started"; else
  not_ok "daemon started" "$(cat "$log")"; finish; exit 1; fi
check "mode of the control socket" "600" "$(stat -c %a "$sock")"

# repl ARGS...: run the client with a time bound; stdout+stderr in $out, exit code in $rc
repl() {
  out=$(timeout 20 "$MOONSTACK" repl "$@" 2>&1)
  rc=$?
}

out=$(echo '1+1' | timeout 20 "$MOONSTACK" repl "$sock" 2>&1); rc=$?
check "piped 1+1" "2" "$out"
check "piped: exit code" 0 "$rc"
repl "$sock" -e '1+1'
check "-e 1+1" "2" "$out"
check "-e: exit code" 0 "$rc"
repl "$sock" --json -e '1+1'
check "--json -e 1+1" '{"ok":true,"results":[2]}' "$out"
repl "$sock" -e 'error("deliberate")'
check "-e error: exit code" 1 "$rc"
check_match "-e error: message and traceback" '^repl:1: deliberate' "$out"
check_match "-e error: traceback" 'stack traceback:' "$out"
repl "$sock" --json -e 'error("bad")'
check "--json error: exit code" 1 "$rc"
check_match "--json error reply" '^\{"ok":false,"error":"repl:1: bad' "$out"

# \json and \text typed in a session switch the client too (the session goes on)
out=$(printf '\\json\n1+1\n\\text\n2+2\n' | timeout 20 "$MOONSTACK" repl "$sock" 2>&1); rc=$?
check "\\json then \\text in a session" "$(printf '{"ok":true,"mode":"json"}\n{"ok":true,"results":[2]}\n4')" "$out"
check "\\json in a session: exit code" 0 "$rc"
# io.write reaches the REPL, not the daemon's stdout
repl "$sock" -e 'io.write("w1", 2) io.stdout:write("w3")'
check "io.write is captured" "w12w3" "$out"
# binary strings are hex in JSON mode (valid JSON, never raw bytes)
repl "$sock" --json -e '"\0\255\16", "text é"'
check "--json: binary as hex, text as text" '{"ok":true,"results":[{"hex":"00ff10"},"text é"]}' "$out"

out=$(printf 'x = 20\nx + 22\n' | timeout 20 "$MOONSTACK" repl "$sock" 2>&1)
check "state between lines" "42" "$out"
out=$(printf 'for i = 1, 3 do\nprint(i * 10)\nend\n' | timeout 20 "$MOONSTACK" repl "$sock" 2>&1)
check "multi-line chunk" "$(printf '10\n20\n30')" "$out"
out=$(printf 'hit()\nhit()\nstate.hits\n' | timeout 20 "$MOONSTACK" repl "$sock" 2>&1)
check "daemon helpers" "$(printf '1\n2\n2')" "$out"
repl "$sock" -e 'daemon_name, { n = 1 }'
check "strings quoted, tables pretty-printed" "$(printf '"repl-test"\n{ n = 1 }')" "$out"
out=$(printf '1 +\nerror("e")\n"after"\n' | timeout 20 "$MOONSTACK" repl "$sock" 2>/dev/null); rc=$?
check "errors go to stderr and the session goes on" '"after"' "$out"
check "piped input with errors: exit code" 0 "$rc"

n=$(timeout 20 "$MOONSTACK" repl "$sock" -e 'string.rep("a", 300000)' | wc -c)
check "long reply arrives whole" 300003 "$n"
out=$({ printf 'x = "'; head -c 1300000 /dev/zero | tr '\0' a; printf '"\n"still here"\n'; } |
  timeout 20 "$MOONSTACK" repl "$sock" 2>&1)
check_match "a line over 1 MiB is refused" 'ETOOBIG: line longer than 1048576 bytes' "$out"
check_match "and the next line is served" '"still here"' "$out"
repl "$sock" -e 'while true do end'
check "runaway evaluation: exit code" 1 "$rc"
check_match "runaway evaluation stopped" 'ETIMEDOUT' "$out"
repl "$sock" -e '1+2'
check "the daemon goes on" "3" "$out"

repl "$dir/missing.sock" -e '1'
check "missing socket: exit code" 2 "$rc"
check "missing socket: message" \
  "moonstack repl: cannot connect to $dir/missing.sock: No such file or directory" "$out"
repl --help
check_match "--help" '^usage: moonstack repl \[SOCKET' "$out"
repl "$sock" --bogus
check "unknown option: exit code" 2 "$rc"

# Interactive: a real terminal under tmux, on a private tmux server.
tmx=(tmux -L "moonstack-repl-test-$$" -f /dev/null)
defer "${tmx[*]} kill-server 2>/dev/null"
pane() { "${tmx[@]}" capture-pane -p -t repl; }
pane_has() { pane | grep -Eq -- "$1"; }
pane_count_is() { [ "$(pane | grep -Ec -- "$1")" = "$2" ]; }
keys() { "${tmx[@]}" send-keys -t repl "$@"; }
text() { "${tmx[@]}" send-keys -t repl -l "$1"; }

hist=$dir/history
"${tmx[@]}" new-session -d -s repl -x 120 -y 40 \
  "MOONSTACK_HISTORY='$hist' '$MOONSTACK' repl '$sock'; echo \"EXIT=\$?\"; sleep 60"
if wait_for 10 pane_has '^c\.sock> ?$'; then ok "interactive prompt names the socket"; else
  not_ok "interactive prompt names the socket" "$(pane)"; fi

text '6*7'; keys Enter
if wait_for 10 pane_has '^42$'; then ok "interactive 6*7"; else not_ok "interactive 6*7" "$(pane)"; fi

# type 10+, move left twice, delete the 1, type 3, go to the end, type 5: 30+5
text '10+'; keys Left Left BSpace; text '3'; keys End; text '5'; keys Enter
if wait_for 10 pane_has '^35$'; then ok "line editing (Left, BackSpace, End)"; else
  not_ok "line editing (Left, BackSpace, End)" "$(pane)"; fi

# Up twice recalls 6*7
keys Up Up Enter
if wait_for 10 pane_count_is '^42$' 2; then ok "history recall with Up"; else
  not_ok "history recall with Up" "$(pane)"; fi

text 'for i = 1, 2 do'; keys Enter
if wait_for 10 pane_has '^c\.sock>> ?$'; then ok "continuation prompt"; else
  not_ok "continuation prompt" "$(pane)"; fi
text 'print(i * 100)'; keys Enter; text 'end'; keys Enter
if wait_for 10 pane_has '^200$'; then ok "multi-line chunk, interactively"; else
  not_ok "multi-line chunk, interactively" "$(pane)"; fi

keys C-d
if wait_for 10 pane_has '^EXIT=0$'; then ok "Ctrl-D leaves with exit code 0"; else
  not_ok "Ctrl-D leaves with exit code 0" "$(pane)"; fi
check_match "history saved" '^6\*7$' "$(cat "$hist" 2>/dev/null)"
check "history file mode" "600" "$(stat -c %a "$hist" 2>/dev/null)"

# A second session starts with that history: Up recalls the last line of the first.
"${tmx[@]}" kill-session -t repl
"${tmx[@]}" new-session -d -s repl -x 120 -y 40 \
  "MOONSTACK_HISTORY='$hist' '$MOONSTACK' repl '$sock'; echo \"EXIT=\$?\"; sleep 60"
wait_for 10 pane_has '^c\.sock> ?$'
keys Up
if wait_for 10 pane_has '^c\.sock> end$'; then ok "history kept across sessions"; else
  not_ok "history kept across sessions" "$(pane)"; fi
keys C-u; text '\quit'; keys Enter
if wait_for 10 pane_has '^EXIT=0$'; then ok "\\quit leaves with exit code 0"; else
  not_ok "\\quit leaves with exit code 0" "$(pane)"; fi
"${tmx[@]}" kill-server 2>/dev/null

kill -TERM "$pid"
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$pid" 2>/dev/null; then not_ok "daemon stops on SIGTERM" "still running"; else
  wait "$pid"; check "daemon exit code after SIGTERM" 0 "$?"; fi
check "control socket removed" "no" "$([ -e "$sock" ] && echo yes || echo no)"
finish
