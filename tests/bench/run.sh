#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make bench`: runs every benchmark under tests/bench/*/run.sh with the given moonstack binary.
# Benchmarks print their figures and the ratio against a peer measured in the same run; they are
# not pass/fail tests (they fail only if they cannot run).
set -euo pipefail
moonstack=$(realpath "${1:?usage: tests/bench/run.sh MOONSTACK}")
here=$(cd "$(dirname "$0")" && pwd)
status=0
for b in "$here"/*/run.sh; do
  echo "== $(basename "$(dirname "$b")")"
  bash "$b" "$moonstack" || { echo "benchmark $(dirname "$b") failed"; status=1; }
  echo
done
exit $status
