#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The layer check (scripts/check-layers.lua) passes on the tree, and fails on a copy of it into
# which each kind of violation is put in turn: an upward require, a dynamic one through pcall,
# a module name registered for lazy loading, a service reaching into another service's
# internals, a folder off the map, a service without the service shape, a service used
# without a client module. Also runs the shared check (../shared/tools) when it is present.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
check="luajit $src/scripts/check-layers.lua"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; [ $# -gt 1 ] && printf '  %s\n' "$2"; }

out=$($check "$src/lua" 2>&1)
if [ $? -eq 0 ]; then ok "the tree keeps the layer map ($(echo "$out" | tail -1))"; else
  not_ok "the tree keeps the layer map" "$out"; fi
shared="$src/../shared/tools/check-layers.lua"
if [ -f "$shared" ]; then
  out=$(luajit "$shared" "$src/lua" 2>&1)
  if [ $? -eq 0 ]; then ok "the shared check agrees"; else not_ok "the shared check agrees" "$out"; fi
fi

t=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-layers.XXXXXX")
trap 'rm -rf "$t"' EXIT
# violation NAME REGEX FILE CONTENT [REMOVE]: the check must fail on a copy holding FILE (and
# without the file REMOVE), naming REGEX.
violation() {
  rm -rf "$t/lua" && cp -r "$src/lua" "$t/lua"
  [ -n "${5:-}" ] && rm -f "$t/lua/$5"
  mkdir -p "$(dirname "$t/lua/$3")"
  printf '%s\n' "$4" >"$t/lua/$3"
  out=$($check "$t/lua" 2>&1)
  local rc=$?
  if [ $rc -eq 1 ] && printf '%s' "$out" | grep -Eq -- "$2"; then ok "$1"; else
    not_ok "$1" "exit $rc: $out"; fi
}
violation "core requiring a service fails" 'moonstack/core/bad.lua \(layer 0 core\) requires moonstack.kms' \
  moonstack/core/bad.lua "local k = require('moonstack.kms') return {}"
violation "pcall(require, ...) is seen" 'moonstack/tdx/bad.lua \(layer 1 platform\) requires moonstack.verifier' \
  moonstack/tdx/bad.lua "local ok, v = pcall(require, 'moonstack.verifier') return {}"
violation "a lazily registered module name is seen" 'core/bad.lua .*requires moonstack.sim' \
  moonstack/core/bad.lua "local reg = {} reg.sim = 'moonstack.sim' return reg"
violation "require without parentheses is seen" 'requires moonstack.agent' \
  moonstack/http/bad.lua "local a = require 'moonstack.agent' return {}"
violation "a service reaching into another fails" 'service kms reaches into service moonstack.agent.api' \
  moonstack/kms/bad.lua "local a = require('moonstack.agent.api') return {}"
violation "a folder off the map fails" 'folder nowhere is not on the layer map' \
  moonstack/nowhere/x.lua "return {}"
violation "a service without the shape fails" 'service gateway has no api.lua' \
  moonstack/gateway/init.lua "return {}" moonstack/gateway/api.lua
violation "a service used without a client fails" 'service kms uses service gateway, which has no client.lua' \
  moonstack/kms/bad.lua "local v = require('moonstack.gateway.client') return {}" moonstack/gateway/client.lua
rm -rf "$t/lua" && cp -r "$src/lua" "$t/lua"
printf -- "-- see require('moonstack.kms') in the docs\nreturn {}\n" >"$t/lua/moonstack/core/doc.lua"
out=$($check "$t/lua" 2>&1)
if [ $? -eq 0 ]; then ok "a module named in a comment is not an edge"; else not_ok "a module named in a comment is not an edge" "$out"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
