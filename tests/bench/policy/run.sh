#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Policy decision cost: moonstack.policy.host:decide() on a KMS-style on_auth policy with a
# BootInfo-shaped input (tests/bench/policy/decide.lua in its own moonstack process), one
# caller at a time (the latency of one decision) and 8 concurrent callers over a pool of
# workers (throughput). Each decision runs in a policy worker process (DESIGN.md §5.2): the
# input and the answer cross a pipe, and the daemon's loop only waits on it. No peer: the
# figure to compare with is the in-process sandbox this replaced (see the commit log).
set -euo pipefail
moonstack=${1:?usage: run.sh MOONSTACK}
here=$(cd "$(dirname "$0")" && pwd)
count=${BENCH_POLICY_COUNT:-20000}

run() { # NAME CONCURRENCY WORKERS
  local out
  out=$("$moonstack" --log-level warn run "$here/decide.lua" "$count" "$2" "$3")
  field() { echo "$out" | awk -v k="$1" '$1 == k {print $2}'; }
  printf '%-40s %2d conc %2d workers  p50 %8s us  p99 %8s us  max %9s us  %9s decisions/s  (%s, %s denied)\n' \
    "$1" "$2" "$3" "$(field p50_us)" "$(field p99_us)" "$(field max_us)" "$(field dps)" \
    "$(field decisions)" "$(field errors)"
  [ "$(field errors)" = 0.0 ] || return 1
}

run "policy decision (sequential)" 1 1
run "policy decision (concurrent)" 8 2
run "policy decision (concurrent)" 8 4
