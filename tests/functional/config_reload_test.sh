#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Config reload through moonstack.daemon.serve on a real KMS: SIGHUP (or reload.config() in
# the REPL) reads kms.lua again and hands the changed keys to the service. A changed `auth`
# gets a new backend in place (GetMeta's is_dev flips); a changed listener answers ERESTART
# and nothing changes; a broken file keeps the running config; the daemon keeps serving
# throughout.
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
write_cfg() { # write_cfg AUTH [EXTRA]
  cat >"$t/kms.lua" <<LUA
return { key_dir = '$t/keys', listen = { host = '127.0.0.1', port = 0 },
  control = '$t/kms.ctl', auth = $1, ${2:-} }
LUA
}
cat >"$t/policy.lua" <<'LUA'
return { name = 'allow-all', version = '1',
  on_auth = function() return { allow = true, reason = 'test' } end,
  on_kms_auth = function() return { allow = true, reason = 'test' } end }
LUA
write_cfg "{ kind = 'dev' }"
"$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms.log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"
if wait_for 15 test -S "$t/kms.ctl"; then ok "kms started"; else
  not_ok "kms started" "$(cat "$t/kms.log")"; finish; exit 1; fi
PORT=$("$MOONSTACK" repl "$t/kms.ctl" -e 'kms:port()' 2>&1)
is_dev() { curl -s --max-time 5 --cacert "$t/keys/root-ca.crt" --resolve "localhost:$PORT:127.0.0.1" \
  -H 'Content-Type: application/json' -d '' "https://localhost:$PORT/prpc/GetMeta" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(String(JSON.parse(s).is_dev)))'; }
check "dev auth: is_dev" "true" "$(is_dev)"
check "help() lists what the daemon offers" "true true true" \
  "$("$MOONSTACK" repl "$t/kms.ctl" -e 'local h = help() return h["reload.code"] ~= nil, h.auth ~= nil, h.kms ~= nil' 2>&1 | tr '\n' ' ' | sed 's/ $//')"

write_cfg "{ kind = 'policy', path = '$t/policy.lua', watch = false }"
kill -HUP "$pid"
wait_for 5 bash -c "grep -q '\"changed\":\\[\"auth\"\\]' '$t/kms.log'" && ok "SIGHUP logs the changed key" ||
  not_ok "SIGHUP logs the changed key" "$(tail -3 "$t/kms.log")"
check "a changed auth applies in place: is_dev" "false" "$(is_dev)"

write_cfg "{ kind = 'policy', path = '$t/policy.lua', watch = false }" "domain = 'other.example'"
out=$("$MOONSTACK" repl "$t/kms.ctl" -e 'select(2, reload.config())' 2>&1)
check_match "a changed domain needs a restart (ERESTART)" 'ERESTART: domain changed' "$out"
check "the running config stays" '"localhost"' "$("$MOONSTACK" repl "$t/kms.ctl" -e 'kms.domain' 2>&1)"

printf 'return { key_dir = 1 }' >"$t/kms.lua"
out=$("$MOONSTACK" repl "$t/kms.ctl" -e 'select(2, reload.config())' 2>&1)
check_match "a broken config is refused, naming the key" 'key_dir' "$out"
check "the KMS keeps serving with its running config" "false" "$(is_dev)"
kill -TERM "$pid"; wait "$pid"
check "kms exits 0" 0 $?
finish
