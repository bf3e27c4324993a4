#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs one libFuzzer target over its committed seeds. New inputs go to <workdir>/corpus (the seed
# directory is only read), crash/leak/timeout reproducers to <workdir>/. A per-target -max_len
# and -timeout come first so a flag given after them wins.
# Usage: tests/fuzz/run.sh <fuzzer binary> <seed dir> <workdir> [libFuzzer flags...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 <fuzzer> <seed dir> <workdir> [flags...]" >&2; exit 2; }
fuzzer=$1 seeds=$2 work=$3
shift 3
case "$(basename "$fuzzer")" in
  fuzz_proxy_sni) max_len=17000 ;;   # past PROXY_SNI_MAX_BYTES: fragmented and too-large hellos
  fuzz_proxy_pp) max_len=4200 ;;     # past PROXY_PP_MAX_BYTES
  fuzz_tdx_quote|fuzz_x509_ext) max_len=12000 ;;        # past the real quotes (10 KB with chain)
  fuzz_tdx_ccel) max_len=20000 ;;
  fuzz_dcap_json|fuzz_lua_eventlog_json) max_len=24000 ;; # the collateral / GetQuote JSON seeds
  fuzz_lua_json|fuzz_lua_app_compose) max_len=12000 ;;
  fuzz_lua_*) max_len=4096 ;;
  *) max_len=600 ;;
esac
# A parser that does not answer within a few seconds on one input is a hang (libFuzzer's
# default is 20 minutes); a flag given after this one wins.
mkdir -p "$work/corpus"
exec "$fuzzer" -max_len="$max_len" -timeout=10 -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
