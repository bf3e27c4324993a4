#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Hot reload of orchestration code (moonstack.daemon.code) on real daemons started with
# --lua-dir on a copy of lua/:
#  - KMS: a bounded request loop runs while a service module is edited and reload.code() swaps
#    it in: no request fails, the new behaviour answers after the swap; a broken module is
#    refused (the old code keeps serving); SIGUSR2 reloads too; code_reload = false refuses.
#  - agent (simulator): the swap is measured into RTMR3 first (runtime event moonstack-code,
#    payload = the code's SHA-256 that reload.code() reports), and GetQuote's event log still
#    replays to the quote's RTMRs.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fixtures/agent_sim.sh"

t=$(tmpdir)
cp -r "$MOONSTACK_SRC/lua" "$t/lua"
repl() { "$MOONSTACK" repl "$1" -e "$2" 2>&1; }

# ---- KMS ----
cat >"$t/kms.lua" <<LUA
return { key_dir = '$t/keys', listen = { host = '127.0.0.1', port = 0 }, control = '$t/kms.ctl',
  auth = { kind = 'dev' } }
LUA
"$MOONSTACK" --lua-dir "$t/lua" kms -c "$t/kms.lua" 2>"$t/kms.log" &
kpid=$!
defer "kill -KILL $kpid 2>/dev/null"
if wait_for 15 test -S "$t/kms.ctl"; then ok "kms started from --lua-dir"; else
  not_ok "kms started from --lua-dir" "$(cat "$t/kms.log")"; finish; exit 1; fi
port=$(repl "$t/kms.ctl" 'kms:port()')
health() { curl -s --max-time 5 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
  "https://localhost:$port/health"; }
check "health before the swap" "OK" "$(health)"

# a bounded request loop (400 requests at most, 20 s at most) in the background
loop() {
  local n=0 bad=0 end=$((SECONDS + 20)) out
  while [ $n -lt 400 ] && [ $SECONDS -lt $end ] && [ ! -e "$t/stop" ]; do
    out=$(curl -s --max-time 5 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" \
      -H 'Content-Type: application/json' -d '' -w ' %{http_code}' "https://localhost:$port/prpc/GetMeta")
    case "$out" in *' 200') ;; *) bad=$((bad + 1)) ;; esac
    n=$((n + 1))
  done
  echo "$n $bad" >"$t/loop.out"
}
loop &
lpid=$!
sleep 0.5
sed -i "s/return 200, 'OK', { \['content-type'\] = 'text\/plain' }/return 200, 'OK (reloaded)', { ['content-type'] = 'text\/plain' }/" \
  "$t/lua/moonstack/kms/api.lua"
grep -q "OK (reloaded)" "$t/lua/moonstack/kms/api.lua" || not_ok "test edit applied to kms/api.lua"
out=$(repl "$t/kms.ctl" 'reload.code().files > 0')
check "reload.code() swaps the KMS's code" "true" "$out"
sleep 0.5
touch "$t/stop"
wait "$lpid"
read -r n bad <"$t/loop.out"
check "no request failed across the swap ($n requests)" "0" "$bad"
[ "$n" -gt 5 ] && ok "the request loop ran ($n)" || not_ok "the request loop ran" "$n requests"
check "the new code answers after the swap" "OK (reloaded)" "$(health)"
check_match "the daemon reports the code hash" '^"[0-9a-f]{64}"$' "$(repl "$t/kms.ctl" 'daemon:status().code.hash')"

printf 'local M = {\nreturn M\n' >"$t/lua/moonstack/kms/broken.lua"
out=$(repl "$t/kms.ctl" 'select(2, reload.code())')
check_match "a broken module is refused, naming the file" 'ELOAD.*broken\.lua' "$out"
check "the old code keeps serving" "OK (reloaded)" "$(health)"
rm "$t/lua/moonstack/kms/broken.lua"
cp "$t/lua/moonstack/kms/api.lua" "$t/api.lua.good"
sed -i 's/^function M.handler(kms)$/function M.handler(kms) error("cannot adopt")/' "$t/lua/moonstack/kms/api.lua"
out=$(repl "$t/kms.ctl" 'select(2, reload.code())')
check_match "new code that cannot adopt the service is rolled back" 'ELOAD: rebind:.*cannot adopt' "$out"
check "the old code serves after the rollback" "OK (reloaded)" "$(health)"
cp "$t/api.lua.good" "$t/lua/moonstack/kms/api.lua"

sed -i "s/'OK (reloaded)'/'OK (signal)'/" "$t/lua/moonstack/kms/api.lua"
kill -USR2 "$kpid"
wait_for 5 bash -c "[ \"\$(curl -s --cacert '$t/keys/root-ca.crt' --resolve localhost:$port:127.0.0.1 https://localhost:$port/health)\" = 'OK (signal)' ]" \
  && ok "SIGUSR2 reloads the code" || not_ok "SIGUSR2 reloads the code" "$(health)"
kill -TERM "$kpid"; wait "$kpid"
check "kms exits 0 after code swaps" 0 $?

# code_reload = false: refused, nothing swapped
cat >"$t/kms2.lua" <<LUA
return { key_dir = '$t/keys', listen = { host = '127.0.0.1', port = 0 }, control = '$t/kms2.ctl',
  auth = { kind = 'dev' }, code_reload = false }
LUA
"$MOONSTACK" --lua-dir "$t/lua" kms -c "$t/kms2.lua" 2>"$t/kms2.log" &
k2=$!
defer "kill -KILL $k2 2>/dev/null"
wait_for 15 test -S "$t/kms2.ctl"
check_match "code_reload = false refuses the swap" 'EPERM.*code reload is off' \
  "$(repl "$t/kms2.ctl" 'select(2, reload.code())')"
kill -TERM "$k2"; wait "$k2"

# ---- agent (simulator): the swap is measured into RTMR3 ----
a="$t/agent"
mkdir -p "$a"
write_compose "$a/compose.json"
MOONSTACK_AGENT_BIN=("$MOONSTACK" --lua-dir "$t/lua")
"${MOONSTACK_AGENT_BIN[@]}" agent --simulator --keys "$APPKEYS" --compose "$a/compose.json" \
  --socket-dir "$a" --state-dir "$a/state" --app-id "$SIM_APP_ID" >"$a/agent.log" 2>&1 &
apid=$!
defer "kill -KILL $apid 2>/dev/null"
if wait_for 20 grep -q 'guest API listening' "$a/agent.log"; then ok "agent started from --lua-dir"; else
  not_ok "agent started from --lua-dir" "$(cat "$a/agent.log")"; finish; exit 1; fi
version() { curl -s --unix-socket "$a/dstack.sock" http://dstack/Version; }
check_match "Version before the swap" '"version":"0\.5\.8"' "$(version)"
sed -i "s/^M.VERSION = '0.5.8'/M.VERSION = '0.5.8-reloaded'/" "$t/lua/moonstack/agent/api/info.lua"
hash=$(repl "$a/agent.ctl" 'reload.code().hash' | tr -d '"')
check_match "reload.code() swaps the agent's code" '^[0-9a-f]{64}$' "$hash"
check_match "the new code answers after the swap" '"version":"0\.5\.8-reloaded"' "$(version)"
curl -s --unix-socket "$a/dstack.sock" -H 'Content-Type: application/json' \
  -d '{"report_data":"00"}' http://dstack/GetQuote >"$a/quote.json"
payload=$(node -e '
  const q = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const ev = JSON.parse(q.event_log).filter(e => e.event === "moonstack-code");
  process.stdout.write(ev.length === 1 ? ev[0].event_payload : "count=" + ev.length);' "$a/quote.json")
check "RTMR3 holds one moonstack-code event with the code's hash" "$hash" "$payload"
"$MOONSTACK" eventlog replay "$a/quote.json" >"$a/replay.out" 2>&1
check "the event log with the swap replays to the quote's RTMRs" 0 $?
kill -TERM "$apid"; wait "$apid"
check "agent exits 0 after a code swap" 0 $?

finish
