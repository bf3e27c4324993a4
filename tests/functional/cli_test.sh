#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The moonstack command line: -e with cjson, `run` (luv timers, a TCP server and a child process on
# one loop; exit code from the script), --help, version, errors and exit codes, --lua-dir.
source "$(dirname "$0")/lib.sh"
dir=$(tmpdir)

check "-e with cjson" '{"a":1}' "$("$MOONSTACK" -e 'print(require("cjson").encode({a=1}))')"
check "-e sees its arguments" "x y" "$("$MOONSTACK" -e 'print(arg[1], arg[2])' x y | tr '\t' ' ')"

out=$("$MOONSTACK" run "$MOONSTACK_SRC/tests/functional/fixtures/loop_script.lua" 7 2>&1)
rc=$?
check "run: timers, TCP, child process on one loop" "child-exit:3 echo:hi from-child timer" "$out"
check "run: exit code is the script's return value" 7 "$rc"
"$MOONSTACK" run "$MOONSTACK_SRC/tests/functional/fixtures/loop_script.lua" 0 >/dev/null 2>&1
check "run: exit code 0" 0 "$?"

printf 'error("script failed here")\n' > "$dir/fail.lua"
out=$("$MOONSTACK" run "$dir/fail.lua" 2>&1); rc=$?
check "run: a raising script exits 1" 1 "$rc"
check_match "run: the error has a traceback" 'fail.lua:1: script failed here' "$out"
check_match "run: the traceback is printed" 'stack traceback' "$out"

"$MOONSTACK" run "$dir/missing.lua" >/dev/null 2>&1
check "run: a missing script exits 2" 2 "$?"
out=$("$MOONSTACK" nosuchcommand 2>&1); rc=$?
check "unknown command exits 2" 2 "$rc"
check_match "unknown command is named" "unknown command 'nosuchcommand'" "$out"
out=$("$MOONSTACK" version --bogus 2>&1); rc=$?
check "unknown option exits 2" 2 "$rc"
check_match "unknown option is named" "unknown option '--bogus'" "$out"

help=$("$MOONSTACK" --help)
for cmd in run version repl policy selfcheck; do
  check_match "--help lists $cmd" "^  $cmd " "$(echo "$help" | grep "^  $cmd ")"
  "$MOONSTACK" "$cmd" --help >/dev/null 2>&1
  check "$cmd --help exits 0" 0 "$?"
done
check_match "version" '^moonstack [0-9]+\.[0-9]+\.[0-9]+ \(LuaJIT' "$("$MOONSTACK" version)"
check_match "version --json" '"luajit":"LuaJIT' "$("$MOONSTACK" version --json)"

# --lua-dir: a module in the directory wins over the embedded copy; a new command registers.
mkdir -p "$dir/lua/moonstack/commands"
cat > "$dir/lua/moonstack/commands/hello.lua" <<'LUA'
return { name = 'hello', summary = 'dev-only command', run = function() print('hello from lua-dir') return 0 end }
LUA
check "--lua-dir adds a command" "hello from lua-dir" "$("$MOONSTACK" --lua-dir "$dir/lua" hello)"
check "MOONSTACK_LUA_DIR does too" "hello from lua-dir" "$(MOONSTACK_LUA_DIR="$dir/lua" "$MOONSTACK" hello)"
"$MOONSTACK" hello >/dev/null 2>&1
check "without it the command does not exist" 2 "$?"
out=$("$MOONSTACK" -e 'print(debug.getinfo(require("moonstack.core.errors").new).source)')
check "embedded chunk names point at the source path" "@lua/moonstack/core/errors.lua" "$out"

# every usage line names every option its --help lists (verify --cache-dir/--vm-config and
# eventlog replay --no-acpi-labels were missing)
for cmd in "verify" "verifier" "agent" "kms derive" "eventlog replay" "policy check" "quote show" \
    "repl" "run" "selfcheck" "version"; do
  # shellcheck disable=SC2086
  h=$("$MOONSTACK" $cmd --help 2>&1)
  usage=$(echo "$h" | grep -m1 '^usage:')
  missing=""
  for o in $(echo "$h" | sed -n '/^options:/,$p' | grep -oE '^  (-[a-z], )?--[a-z-]+' | grep -oE -- '--[a-z-]+'); do
    [ "$o" = "--help" ] && continue
    echo "$usage" | grep -qE -- "$o( |\]|$|=)" || missing="$missing $o"
  done
  check "'$cmd' usage names every option" "" "$missing"
done
check_match "agent --help lists the config keys (not a source path)" 'shared_dir = ' "$("$MOONSTACK" agent --help)"
if "$MOONSTACK" agent --help | grep -q 'lua/moonstack/'; then not_ok "agent --help names no source path"; else
  ok "agent --help names no source path"; fi
out=$("$MOONSTACK" kms --log-level debug -c /nonexistent 2>&1); rc=$?
check "a runtime option after the command exits 2" 2 "$rc"
check_match "and says it goes before the command" "'--log-level' is a runtime option: it goes before the command" "$out"
for cmd in kms agent verifier; do
  "$MOONSTACK" "$cmd" -c "$dir/no-such-config.lua" >/dev/null 2>&1
  check "$cmd: a missing config file exits 2" 2 "$?"
done

out=$("$MOONSTACK" --log-level nonsense version 2>&1); rc=$?
check "bad --log-level exits 2" 2 "$rc"
check_match "bad --log-level is explained" "'nonsense' is not one of debug, info, warn, error" "$out"
finish
