#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack kms -c` with the admin listener: the token comes from the environment
# (DSTACK_KMS_ADMIN_TOKEN), never the command line; curl without it or with a wrong one gets
# 401, with it ClearImageCache removes the named cache entry; the public listener does not serve
# Admin; an admin listener without any token refuses to start (exit 1, clear message).
source "$(dirname "$0")/lib.sh"

t=$(tmpdir)
cat >"$t/kms.lua" <<LUA
return {
  key_dir = '$t/keys',
  listen = { host = '127.0.0.1', port = 0 },
  control = '$t/kms.ctl',
  auth = { kind = 'dev' },
  admin = { listen = { port = 0 } },
  image = { cache_dir = '$t/cache' },
}
LUA
mkdir -p "$t/cache/images/ab12" "$t/cache/images/cd34"
TOKEN=admin-$RANDOM$RANDOM$RANDOM

DSTACK_KMS_ADMIN_TOKEN=$TOKEN "$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms.log" &
pid=$!
defer "kill -KILL $pid 2>/dev/null"
if wait_for 10 test -S "$t/kms.ctl"; then ok "kms started"; else
  not_ok "kms started" "$(cat "$t/kms.log")"; finish; exit 1; fi
aport=$("$MOONSTACK" repl "$t/kms.ctl" -e 'kms:admin_port()' 2>&1)
port=$("$MOONSTACK" repl "$t/kms.ctl" -e 'kms:port()' 2>&1)
check_match "control socket reports the admin port" '^[0-9]+$' "$aport"
if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$TOKEN"; then not_ok "token not on the command line"
else ok "token not on the command line"; fi

printf 'Authorization: Bearer %s\n' "$TOKEN" >"$t/auth.hdr"
printf 'X-Admin-Token: wrong-%s\n' "$TOKEN" >"$t/bad.hdr"
admin() { curl -sS --max-time 10 -o "$t/out" -w '%{http_code}' -H 'Content-Type: application/json' \
  "${@:2}" -d "$1" "http://127.0.0.1:$aport/prpc/Admin.ClearImageCache"; }

check "no token: 401" 401 "$(admin '{"image_hash":"ab12"}')"
check "wrong token: 401" 401 "$(admin '{"image_hash":"ab12"}' -H @"$t/bad.hdr")"
check "cache untouched" "ab12 cd34" "$(ls "$t/cache/images" | tr '\n' ' ' | sed 's/ $//')"
check "right token: 200" 200 "$(admin '{"image_hash":"ab12"}' -H @"$t/auth.hdr")"
check "named entry removed" "cd34" "$(ls "$t/cache/images")"
check "non-hex name: 400" 400 "$(admin '{"image_hash":"../keys"}' -H @"$t/auth.hdr")"
check_match "non-hex name: clear error" 'image_hash must be hex' "$(cat "$t/out")"
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$t/keys/root-ca.crt" \
  --resolve "localhost:$port:127.0.0.1" -H @"$t/auth.hdr" -H 'Content-Type: application/json' -d '{}' \
  "https://localhost:$port/prpc/Admin.ClearImageCache")
check "public listener does not serve Admin" 400 "$code"
kill -TERM "$pid"
wait "$pid"
check "SIGTERM exits 0" 0 $?

# No token anywhere: the admin listener must not start unauthenticated.
env -u DSTACK_KMS_ADMIN_TOKEN -u ADMIN_API_TOKEN timeout 10 "$MOONSTACK" kms -c "$t/kms.lua" 2>"$t/kms.log"
check "no token exits 1" 1 $?
check_match "says why" 'no token is configured' "$(cat "$t/kms.log")"
finish
