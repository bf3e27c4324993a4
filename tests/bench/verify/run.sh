#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# DCAP quote verification, in process: vectors/dcap-qvl/tdx_quote with its collateral at the
# upstream timestamp, collateral parsed once, median over batches. The peer is the pure-JS verifier
# @phala/dcap-qvl from npm, measured in the same run on the same input.
set -euo pipefail
moonstack=${1:?usage: run.sh MOONSTACK}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
vectors=${MOONSTACK_VECTORS:-$src/../shared/vectors}
cache=${BENCH_CACHE:-$src/build/bench-npm}
if [ ! -d "$cache/node_modules/@phala/dcap-qvl" ]; then
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-audit --no-fund --loglevel=error @phala/dcap-qvl@0.3.9 >/dev/null
fi
export MOONSTACK_VECTORS=$vectors

ours=$("$moonstack" run "$here/verify_bench.lua" 2>/dev/null)
peer=$(NODE_PATH="$cache/node_modules" node "$here/verify_bench.js" "$vectors")
ours_us=$(echo "$ours" | awk '/^median_us/ {print $2}')
peer_us=$(echo "$peer" | awk '/^median_us/ {print $2}')
echo "$ours" | sed 's/^/moonstack  /'
echo "$peer" | sed 's/^/dcap-qvl   /'
awk -v a="$ours_us" -v b="$peer_us" 'BEGIN {
  printf "moonstack: %.3f ms per quote; @phala/dcap-qvl (JS): %.3f ms per quote; ratio %.1fx faster\n",
    a / 1000, b / 1000, b / a }'
