#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Policy decision cost: moonstack.policy.host:decide() on a KMS-style on_auth policy with a
# BootInfo-shaped input (tests/bench/policy/decide.lua in its own moonstack process), one
# caller at a time (the latency of one decision) and 8 concurrent callers over a pool of
# workers (throughput). Each decision runs in a policy worker process (DESIGN.md §5.2): the
# input and the answer cross a pipe in the policy wire format, and the daemon's loop only
# waits on it. No peer; the figure to compare with is the in-process sandbox this replaced
# (the policy ran on the daemon's loop, where a crash or a long C call took the daemon down or
# held it). Measured back to back on the same 2-core machine (busy with other work):
#   in-process VM (before)  sequential p50 2.8-3.0 us, p99 13-15 us, 137k-245k decisions/s
#   policy workers (now)    sequential p50 14-16 us, p99 57-82 us, 43k-51k decisions/s;
#                           8 callers on 2 or 4 workers: 40k-48k decisions/s
# i.e. ~12 us more per decision, under 1% of a GetAppKey (p50 2.4 ms either way).
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
