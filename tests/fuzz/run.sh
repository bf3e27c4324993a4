#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one libFuzzer target over its committed seeds. New inputs go to <workdir>/corpus (the seed
# directory is only read), crash/leak/timeout reproducers to <workdir>/. A per-target -max_len
# comes first so a flag given after it wins.
# Usage: tests/fuzz/run.sh <fuzzer binary> <seed dir> <workdir> [libFuzzer flags...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 <fuzzer> <seed dir> <workdir> [flags...]" >&2; exit 2; }
fuzzer=$1 seeds=$2 work=$3
shift 3
case "$(basename "$fuzzer")" in
  fuzz_proxy_sni) max_len=17000 ;;   # past PROXY_SNI_MAX_BYTES: fragmented and too-large hellos
  fuzz_proxy_pp) max_len=4200 ;;     # past PROXY_PP_MAX_BYTES
  *) max_len=600 ;;
esac
mkdir -p "$work/corpus"
exec "$fuzzer" -max_len="$max_len" -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
