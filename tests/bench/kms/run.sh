#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# KMS GetAppKey latency and throughput: `moonstack kms -c` (policy auth backend allowing the
# app, simulated quotes accepted, logs at warn) and a simulated CVM (tests/bench/kms/load.lua in
# its own moonstack process). Every GetAppKey is a fresh mutual-TLS connection: the lws client
# of moonstack.http.client makes one request per connection (no keep-alive), so each request
# costs a full TLS handshake both ways, the KMS's RA-TLS checks (client chain to the temp CA,
# evidence bound to the key, quote verification, event-log replay) and an auth decision —
# throughput is measured with fresh connections only. "boot" = the agent's whole key fetch
# (GetTempCaCert + new key + fresh quote + certificate + GetAppKey). No peer runs here
# (upstream dstack-kms is Rust; crates.io is unreachable); the target is p50 < 5 ms
# (upstream claims 10–50 ms per GetAppKey).
set -euo pipefail
moonstack=${1:?usage: run.sh MOONSTACK}
here=$(cd "$(dirname "$0")" && pwd)
count=${BENCH_KMS_COUNT:-400}

dir=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-bench-kms.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

mkdir -p "$dir/sim"
cat >"$dir/pki.lua" <<'LUA'
local sim = require('moonstack.sim')
local t = assert(sim.new({ dir = arg[1], cvm = 'pki', create = true }))
local function write(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end
write(arg[2], assert(t:collateral(os.time())))
write(arg[3], (assert(t:root_ca())))
t:close()
LUA
"$moonstack" --log-level warn run "$dir/pki.lua" "$dir/sim" "$dir/collateral.json" "$dir/sim-root.pem"
cat >"$dir/policy.lua" <<'LUA'
return { name = 'bench', version = '1', on_auth = function(b)
  if b.composeHash == ('33'):rep(32) then return { allow = true, reason = 'bench', gateway_app_id = 'any' } end
  return { allow = false, reason = 'not the bench app' }
end }
LUA
cat >"$dir/kms.lua" <<LUA
return {
  key_dir = '$dir/keys', domain = 'localhost', listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'policy', path = '$dir/policy.lua', watch = false },
  attestation = { collateral_file = '$dir/collateral.json', root_ca_file = '$dir/sim-root.pem',
    allow_simulator = true },
}
LUA
"$moonstack" kms -c "$dir/kms.lua" >"$dir/kms.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q 'KMS ready' "$dir/kms.log" && break; sleep 0.05; done
port=$(sed -n 's/.*KMS ready.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$dir/kms.log" | head -1)
[ -n "$port" ] || { cat "$dir/kms.log"; exit 1; }
# quieter from here: decisions are logged at info
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
"$moonstack" --log-level warn kms -c "$dir/kms.lua" >"$dir/kms.log" 2>&1 &
pid=$!
for _ in $(seq 200); do
  port=$(ss -ltnp 2>/dev/null | awk -v p="pid=$pid," '$0 ~ p {sub(/.*:/, "", $4); print $4; exit}')
  [ -n "$port" ] && break; sleep 0.05
done
[ -n "$port" ] || { echo "cannot find the KMS port"; cat "$dir/kms.log"; exit 1; }
url=https://localhost:$port

# run NAME MODE CONCURRENCY COUNT: one run; prints a line, fails on errors
run() {
  local out
  out=$("$moonstack" --log-level warn run "$here/load.lua" "$dir/sim" "$url" "$dir/keys/root-ca.crt" "$2" "$3" "$4")
  field() { echo "$out" | awk -v k="$1" '$1 == k {print $2}'; }
  printf '%-44s %2d conc  p50 %6s ms  p90 %6s ms  p99 %6s ms  max %6s ms  %6s req/s  (%s requests, %s errors)\n' \
    "$1" "$3" "$(field p50_ms)" "$(field p90_ms)" "$(field p99_ms)" "$(field max_ms)" "$(field rps)" \
    "$(field requests)" "$(field errors)"
  P50=$(field p50_ms)
  [ "$(field errors)" = 0 ] || { echo "$out" | grep first_error; return 1; }
}

run "GetMeta (fresh TLS connection, baseline)" meta 1 "$count"
run "GetAppKey (fresh mTLS connection, sequential)" appkey 1 "$count"
p50=$P50
run "GetAppKey (fresh mTLS connections)" appkey 4 "$count"
run "GetAppKey (fresh mTLS connections)" appkey 16 "$count"
run "agent key fetch (temp CA + quote + GetAppKey)" boot 1 $((count / 4))
echo "connections: one request per connection (the lws client has no keep-alive); throughput is fresh connections only"
echo "peer: none measured (upstream dstack-kms is a Rust binary that cannot be built here); upstream claims 10-50 ms per GetAppKey"
if awk -v p="$p50" 'BEGIN { exit !(p < 5) }'; then
  echo "GetAppKey p50 $p50 ms (target < 5 ms: met)"
else
  echo "GetAppKey p50 $p50 ms (target < 5 ms: NOT met)"
fi
