#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Helpers for the tests of the KMS's eth auth backend: a real hardhat 2 chain (npm, pinned,
# installed into a cache under $MOONSTACK_TEST_TMP before the test enters its namespaces).

HARDHAT_VERSION=2.29.1
SOLC_VERSION=0.8.37
HARDHAT_KEY=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80 # hardhat's account 0

# install_eth_tools: hardhat@2 and solc into $ETH_CACHE (once; the eth tests may run in
# parallel: one installs while the others wait on a lock); reports ok / not ok.
install_eth_tools() {
  ETH_CACHE=${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/npm-eth
  mkdir -p "$ETH_CACHE"
  exec 9>"$ETH_CACHE.lock"
  flock -w 300 9 || { not_ok "the npm-eth cache lock"; return 1; }
  if [ ! -f "$ETH_CACHE/node_modules/hardhat/package.json" ] ||
     [ ! -f "$ETH_CACHE/node_modules/solc/package.json" ] ||
     [ "$(node -p 'require(process.argv[1]).version' "$ETH_CACHE/node_modules/hardhat/package.json")" != "$HARDHAT_VERSION" ]; then
    mkdir -p "$ETH_CACHE"
    if ! npm install --prefix "$ETH_CACHE" --no-audit --no-fund --loglevel=error \
        "hardhat@$HARDHAT_VERSION" "solc@$SOLC_VERSION" >"$ETH_CACHE/npm.log" 2>&1; then
      not_ok "npm install hardhat@$HARDHAT_VERSION solc@$SOLC_VERSION" "$(tail -5 "$ETH_CACHE/npm.log")"
      exec 9>&-
      return 1
    fi
  fi
  exec 9>&-
  ok "hardhat $(node -p 'require(process.argv[1]).version' "$ETH_CACHE/node_modules/hardhat/package.json"), solc $SOLC_VERSION"
}

# hardhat_start DIR PORT: a hardhat 2 node (chain id 31337, cancun) on 127.0.0.1:PORT, its log
# in DIR/hardhat.log; waits (15 s) until eth_chainId answers. Sets HH_PID and ETH_RPC.
hardhat_start() {
  mkdir -p "$1"
  echo 'module.exports={networks:{hardhat:{chainId:31337,hardfork:"cancun"}}};' >"$1/hardhat.config.js"
  ln -sfn "$ETH_CACHE/node_modules" "$1/node_modules" # hardhat runs only from a local install
  (cd "$1" && HOME="$1" HARDHAT_DISABLE_TELEMETRY_PROMPT=true exec node \
    "$1/node_modules/hardhat/internal/cli/cli.js" node --hostname 127.0.0.1 --port "$2") \
    >"$1/hardhat.log" 2>&1 &
  HH_PID=$!
  defer "kill -KILL $HH_PID 2>/dev/null"
  ETH_RPC=http://127.0.0.1:$2
  if wait_for 15 sh -c "curl -s -m 2 -H 'content-type: application/json' \
      -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":[]}' $ETH_RPC | grep -q 0x7a69"; then
    ok "hardhat node answers eth_chainId (31337)"
  else
    not_ok "hardhat node answers eth_chainId" "$(tail -20 "$1/hardhat.log")"
    return 1
  fi
}

# eth VERB ARGS...: `moonstack kms eth VERB --rpc-url $ETH_RPC ARGS...` signed with $HARDHAT_KEY
# (through the environment, never argv).
eth() {
  local v=$1
  shift
  MOONSTACK_ETH_PRIVATE_KEY=$HARDHAT_KEY "$MOONSTACK" kms eth "$v" --rpc-url "$ETH_RPC" "$@"
}
