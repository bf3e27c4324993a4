#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The verifier for other Lua apps (rockspecs/): `luarocks make` builds the verification natives
# (crypto, x509, tdx, dcap) as Lua C modules and installs the Lua modules into a local tree, from
# a copy of the source; then plain `luajit`, with only that tree and lua-cjson on its paths (no
# luv, no moonstack runtime), verifies vector quotes with their collateral - the verdict, status
# and measurements equal to what `moonstack verify --json` prints - and checks RA-TLS
# certificates issued on a simulated platform (a good one accepted, another key's refused).
source "$(dirname "$0")/lib.sh"
need_tools luarocks luajit
V=${MOONSTACK_VECTORS:-$MOONSTACK_SRC/../shared/vectors}
Q=$V/dcap-qvl
FIX="$MOONSTACK_SRC/tests/functional/fixtures"
dir=$(tmpdir)

# 1. build and install from a copy of the source (the build leaves objects in its tree)
mkdir -p "$dir/src"
(cd "$MOONSTACK_SRC" && tar cf - lua native runtime/include runtime/src rockspecs) | tar xf - -C "$dir/src"
if (cd "$dir/src" && luarocks --lua-version 5.1 make rockspecs/moonstack-scm-1.rockspec \
  --tree "$dir/tree" --deps-mode none LUA_INCDIR=/usr/include/luajit-2.1) >"$dir/make.log" 2>&1; then
  ok "luarocks make into a local tree"
else
  not_ok "luarocks make into a local tree" "$(tail -20 "$dir/make.log")"
  finish
  exit 1
fi
for m in crypto x509 tdx dcap; do
  so=$dir/tree/lib/lua/5.1/moonstack/native/$m.so
  if [ -f "$so" ]; then ok "moonstack.native.$m built"; else not_ok "moonstack.native.$m built"; fi
  check "moonstack.native.$m: no libuv, no runtime symbols needed" "" \
    "$(nm -D --undefined-only "$so" | grep -E ' (uv_|rt_|luv)' | tr '\n' ' ')"
done

# plain LuaJIT: the tree, and lua-cjson alone from the system (luv.so sits beside it there)
mkdir -p "$dir/cjson"
ln -s "$(luajit -e "print((package.searchpath('cjson', package.cpath)))")" "$dir/cjson/cjson.so"
export LUA_PATH="$dir/tree/share/lua/5.1/?.lua;$dir/tree/share/lua/5.1/?/init.lua"
export LUA_CPATH="$dir/tree/lib/lua/5.1/?.so;$dir/cjson/?.so"
check "luv is not reachable from the client" false \
  "$(luajit -e "print((pcall(require, 'luv')))")"

# 2. vector quotes: the rock's verdict = moonstack verify's
field() { "$MOONSTACK" run "$FIX/verifier_fixture.lua" field "$1" "$2"; }
same() { # NAME QUOTE COLLATERAL AT WANT_RC
  local name=$1
  luajit "$FIX/rock_client.lua" quote "$2" "$3" "$4" "$dir/rock.json" 2>"$dir/err"
  local rc=$?
  check "$name: luajit exit code" "$5" "$rc"
  [ "$rc" = "$5" ] || echo "  stderr: $(head -c 600 "$dir/err")"
  "$MOONSTACK" verify --json --quote "$2" --collateral "$3" --at "$4" >"$dir/cli.json" 2>/dev/null
  check "$name: moonstack verify exit code" "$5" "$?"
  for f in verified status advisory_ids tee_type quote_version mrtd rtmr0 rtmr1 rtmr2 rtmr3 \
    report_data simulated policy.ok code error fmspc tcb_date; do
    check "$name: $f as moonstack verify" "$(field "$dir/cli.json" "$f")" "$(field "$dir/rock.json" "$f")"
  done
}
same tdx_quote "$Q/tdx_quote" "$Q/tdx_quote_collateral.json" 1752919234 0
check "tdx_quote: UpToDate" UpToDate "$(field "$dir/rock.json" status)"
check "tdx_quote: mrtd (vectors README §1)" \
  91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7 \
  "$(field "$dir/rock.json" mrtd)"
check "tdx_quote: rtmr2 (vectors README §1)" \
  d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3ba80b70870d7330733642e01d48c3132 \
  "$(field "$dir/rock.json" rtmr2)"
same near_quote "$Q/near_quote_hex.txt" "$Q/near_quote_collateral.json" 1757462400 0
same sgx_quote "$Q/sgx_quote" "$Q/sgx_quote_collateral.json" 1752919277 1
check "sgx_quote: its status" ConfigurationAndSWHardeningNeeded "$(field "$dir/rock.json" status)"
same tdx_quote_outdated "$Q/tdx_quote_outdated" "$Q/tdx_quote_outdated_collateral.json" 1774003274 2
check "tdx_quote one second after its TCB info expired: refused" 2 \
  "$(luajit "$FIX/rock_client.lua" quote "$Q/tdx_quote" "$Q/tdx_quote_collateral.json" 1999999999 \
    "$dir/late.json" 2>/dev/null; echo $?)"

# 3. RA-TLS certificates (issued on a simulated platform by the moonstack runtime)
mkdir -p "$dir/ratls"
if "$MOONSTACK" run "$FIX/rock_ratls.lua" "$dir/ratls" 2>"$dir/err"; then ok "RA-TLS certificates issued"
else not_ok "RA-TLS certificates issued" "$(cat "$dir/err")"; fi
R=$dir/ratls
check "RA-TLS certificate accepted: status, simulated, replayed RTMR3" "ok UpToDate true $(cat "$R/rtmr3")" \
  "$(luajit "$FIX/rock_client.lua" ratls "$R/cert.pem" "$R/root.pem" "$R/coll.json" "$(cat "$R/at")" 2>&1)"
check_match "another key's certificate with the same evidence: refused (binding)" '^rejected EBINDING' \
  "$(luajit "$FIX/rock_client.lua" ratls "$R/forged.pem" "$R/root.pem" "$R/coll.json" "$(cat "$R/at")" 2>&1)"
check_match "RA-TLS certificate without the simulator's root: refused" '^rejected' \
  "$(luajit "$FIX/rock_client.lua" ratls "$R/cert.pem" - "$R/coll.json" "$(cat "$R/at")" 2>&1)"
finish
