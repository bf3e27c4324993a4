#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Guest API throughput over the dstack.sock unix socket: GetKey (a deterministic derivation:
# answers are cached per path/purpose/algorithm, as the agent does), GetKey with a fresh path
# per request (derivation + signature every time), and GetQuote (a fresh quote signed by the
# simulated TDX every time), with N concurrent keep-alive clients (tests/bench/agent/load.lua,
# a luv client in its own moonstack process). The agent is `moonstack agent --simulator` with
# the upstream simulator's keys. No peer runs here (upstream's dstack-simulator is a Rust
# binary, and crates.io is unreachable here to build it), so the figures are raw, with the
# 10,000 GetKey/s target.
set -euo pipefail
moonstack=${1:?usage: run.sh MOONSTACK}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
vectors=${MOONSTACK_VECTORS:-$src/../shared/vectors}
seconds=${BENCH_SECONDS:-3}

dir=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-bench-agent.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

printf '%s' '{"docker_compose_file":"services: {}\n","key_provider":"kms","kms_enabled":true,"manifest_version":2,"name":"bench","runner":"docker-compose"}' >"$dir/compose.json"
"$moonstack" --log-level warn agent --simulator --keys "$vectors/dstack/simulator/appkeys.json" \
  --compose "$dir/compose.json" --socket-dir "$dir" --app-id 5bb4ff9a3837357f19dc176407a5709c62eb6c56 \
  >"$dir/agent.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$dir/dstack.sock" ] && break; sleep 0.05; done
[ -S "$dir/dstack.sock" ] || { cat "$dir/agent.log"; exit 1; }
sleep 0.3 # the demo certificate is issued in the background at start

# load NAME PATH N COUNT [BODY]: one run; prints a line and sets $rps
load() {
  local out
  out=$("$moonstack" run "$here/load.lua" "$dir/dstack.sock" "$2" "$3" "$4" "$seconds" "${5:-{\}}")
  rps=$(echo "$out" | awk '/^rps/ {print $2}')
  local errors
  errors=$(echo "$out" | awk '/^errors/ {print $2}')
  printf '%-34s %3d clients  %8s req/s  (%s requests, %s errors)\n' "$1" "$3" "$rps" \
    "$(echo "$out" | awk '/^requests/ {print $2}')" "$errors"
  [ "$errors" = 0 ]
}

getkey='{"path":"wallet/ethereum","purpose":"mainnet","algorithm":"secp256k1"}'
best=0
for n in 1 4 8 16; do
  load "GetKey (cached derivation)" /GetKey "$n" 200000 "$getkey"
  [ "${rps%.*}" -gt "$best" ] && best=${rps%.*}
done
load "GetKey (fresh path every request)" /GetKey 8 50000 '@distinct'
load "GetQuote (sim, fresh signed quote)" /GetQuote 8 20000 '{"report_data":"6d6f6f6e737461636b"}'
load "GetQuote (sim)" /GetQuote 1 20000 '{"report_data":"6d6f6f6e737461636b"}'
echo "peer: none measured (upstream dstack-simulator is a Rust binary that cannot be built here: no crates.io access); raw figures only"
if [ "$best" -ge 10000 ]; then
  echo "GetKey: best $best req/s (target 10000 req/s on this machine: met)"
else
  echo "GetKey: best $best req/s (target 10000 req/s on this machine: NOT met)"
fi
