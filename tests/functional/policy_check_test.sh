#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `moonstack policy check FILE [--json]` end to end: the shipped example policies pass, and
# broken policies (failing tests, syntax errors, bad shape, bytecode, sandbox escapes,
# endless loops, policies that crash or stall their worker process) are rejected with exit 1;
# usage errors and unreadable files exit 2.
set -euo pipefail

: "${MOONSTACK:?MOONSTACK must point at the moonstack binary}"
SRC=${MOONSTACK_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
base=${MOONSTACK_TEST_TMP:-/tmp}
mkdir -p "$base"
tmp=$(mktemp -d "$base/policy-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() {
  n=$((n + 1))
  echo "not ok $n - $*"
  echo "# stdout:"; sed 's/^/#   /' "$tmp/out"
  echo "# stderr:"; sed 's/^/#   /' "$tmp/err"
  exit 1
}

# run WANT_EXIT ARGS...: run moonstack with ARGS, check the exit code.
run() {
  local want=$1 got
  shift
  set +e
  "$MOONSTACK" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  set -e
  [ "$got" = "$want" ] || fail "moonstack $* exited $got, want $want"
}

expect_out() { grep -q -- "$1" "$tmp/out" || fail "stdout lacks '$1'"; }
expect_err() { grep -q -- "$1" "$tmp/err" || fail "stderr lacks '$1'"; }

# 1. Every example policy passes its own tests.
shopt -s nullglob
examples=("$SRC"/examples/policies/*.lua)
[ ${#examples[@]} -gt 0 ] || fail "no example policies in $SRC/examples/policies"
for f in "${examples[@]}"; do
  run 0 policy check "$f"
  expect_out 'result    ok'
  expect_out ' 0 failed'
  expect_out "sha256    $(sha256sum "$f" | cut -d' ' -f1)"
  ok "example $(basename "$f") passes"
done

# 2. A good policy written here; --json is machine-readable.
cat >"$tmp/good.lua" <<'LUA'
return {
  name = 'good', version = '7',
  on_route = function(req) return { allow = req.port == 443, backend = 'b' } end,
  tests = {
    { hook = 'on_route', input = { port = 443 }, expect = { allow = true, backend = 'b' } },
    { name = 'other ports', hook = 'on_route', input = { port = 80 }, expect = { allow = false } },
  },
}
LUA
run 0 policy check "$tmp/good.lua"
expect_out 'policy    good 7'
expect_out 'hooks     on_route'
expect_out 'tests     2 passed, 0 failed'
expect_out 'ok      other ports (on_route)'
ok 'a good policy passes'
run 0 policy check --json "$tmp/good.lua"
"$MOONSTACK" -e '
  local r = require("cjson").decode(io.read("*a"))
  assert(r.ok == true and r.name == "good" and r.version == "7", "report fields")
  assert(r.tests.passed == 2 and r.tests.failed == 0, "test counts")
  assert(r.hooks[1] == "on_route" and #r.sha256 == 64, "hooks and hash")
' <"$tmp/out" >"$tmp/out2" 2>"$tmp/err" || fail '--json output is not the expected report'
ok '--json prints the report'

# 3. Rejected policies exit 1 and say why.
reject() { # NAME EXPECTED-OUTPUT < policy source
  cat >"$tmp/$1.lua"
  run 1 policy check "$tmp/$1.lua"
  expect_out 'result    rejected'
  expect_out "$2"
  ok "rejects: $1"
}
reject failing-test 'FAIL    wrong (on_auth): expected allow = true, got false' <<'LUA'
return { name = 'f', version = 1, on_auth = function() return { allow = false } end,
  tests = { { name = 'wrong', hook = 'on_auth', input = {}, expect = { allow = true } } } }
LUA
reject syntax-error 'syntax-error.lua:2:' <<'LUA'
return { name = 'f', version = 1,
  on_auth = function() return { allow = true } end end }
LUA
reject missing-version 'policy is missing the required field version' <<'LUA'
return { name = 'f', on_auth = function() return { allow = true } end }
LUA
reject typo-hook "unknown hook 'on_authorize'" <<'LUA'
return { name = 'f', version = 1, on_authorize = function() return { allow = true } end }
LUA
reject escape-io "attempt to index global 'io'" <<'LUA'
local secret = io.open('/etc/hostname'):read('*a')
return { name = 'f', version = 1, on_auth = function() return { allow = true, reason = secret } end }
LUA
reject global-write "attempt to set global 'cache'" <<'LUA'
cache = {}
return { name = 'f', version = 1, on_auth = function() return { allow = true } end }
LUA
reject bad-answer 'on_auth decision field allow must be a boolean, not string' <<'LUA'
return { name = 'f', version = 1, on_auth = function() return { allow = 'yes' } end,
  tests = { { hook = 'on_auth', expect = { allow = true } } } }
LUA
start=$(date +%s%N)
reject endless-loop 'ETIMEDOUT' <<'LUA'
return { name = 'f', version = 1, on_auth = function() while true do end end,
  tests = { { hook = 'on_auth', expect = { allow = true } } } }
LUA
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed_ms" -lt 3000 ] || fail "the endless loop took ${elapsed_ms} ms to stop"
reject memory-bomb 'ENOMEM' <<'LUA'
local t = {}
for i = 1, 1e9 do t[i] = string.rep('x', 1e6) .. i end
return {}
LUA

# what crashed `moonstack policy check` itself (SIGSEGV, a LuaJIT C stack overflow) or held it
# for minutes now crashes or stalls only its policy worker: a rejection, reported, within seconds
reject crash-in-test 'FAIL    #1 (on_auth): ECRASH: the policy worker crashed (signal' <<'LUA'
return { name = 'crash', version = 1,
  on_auth = function() local f; f = function() return (("x"):gsub("x", f)) end; f() return { allow = true } end,
  tests = { { hook = 'on_auth', input = {}, expect = { allow = true } } } }
LUA
reject crash-at-load 'rejected: ECRASH: the policy worker crashed (signal' <<'LUA'
local f; f = function() return (("x"):gsub("x", f)) end; f()
return { name = 'crash', version = 1, on_auth = function() return { allow = true } end }
LUA
start=$(date +%s%N)
reject backtracking 'did not answer within 150 ms and was killed' <<'LUA'
return { name = 'bt', version = 1,
  on_auth = function() return { allow = ('a'):rep(28):find(('a?'):rep(28) .. ('a'):rep(28)) ~= nil } end,
  tests = { { hook = 'on_auth', input = {}, expect = { allow = true } } } }
LUA
reject slow-self-tests 'the self-tests exceeded their total deadline of 2000 ms' <<'LUA'
local tests = {}
for i = 1, 3000 do tests[i] = { hook = 'on_auth', expect = {} } end
return { name = 'slow', version = 1, tests = tests, on_auth = function() while true do end end }
LUA
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed_ms" -lt 8000 ] || fail "the stalling policies took ${elapsed_ms} ms to be rejected"

"$MOONSTACK" -e 'io.write(string.dump(function() return { name = "b", version = 1 } end))' \
  >"$tmp/bytecode.lua"
run 1 policy check "$tmp/bytecode.lua"
expect_out 'bytecode is not allowed'
ok 'rejects: bytecode'

# 4. Usage errors and unreadable files exit 2.
run 2 policy check "$tmp/does-not-exist.lua"
expect_err 'ENOENT'
ok 'a missing file exits 2'
run 2 policy check
expect_err 'missing argument FILE'
ok 'no FILE exits 2'
run 2 policy check --frobnicate "$tmp/good.lua"
expect_err "unknown option '--frobnicate'"
ok 'an unknown option exits 2'
run 2 policy frobnicate
expect_err "unknown command 'frobnicate'"
ok 'an unknown subcommand exits 2'
run 2 policy
ok 'no subcommand exits 2'
run 0 policy check --help
expect_out 'usage: moonstack policy check FILE'
ok 'policy check --help'
run 0 policy --help
expect_out 'check FILE'
ok 'policy --help'
run 0 --help
expect_out 'policy'
ok 'moonstack --help lists policy'

echo "1..$n"
