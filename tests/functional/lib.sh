# SPDX-License-Identifier: Apache-2.0
# Shared helpers for functional shell tests: assertions, temp dirs, waiting, cleanup.
# Each test sources this, then calls `finish` at the end; it prints "N passed, N failed".
set -u
: "${MOONSTACK:?MOONSTACK must point at the moonstack binary}"
MOONSTACK_SRC=${MOONSTACK_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
passed=0
failed=0
cleanup_cmds=()

on_exit() {
  local c
  for c in "${cleanup_cmds[@]}"; do eval "$c" || true; done
  # last: the cleanups above may still need what is in it (a daemon's socket, a VMM's run dir)
  [ -n "${TEST_ROOT:-}" ] && rm -rf "$TEST_ROOT"
}
trap on_exit EXIT

# defer CMD: run CMD when the test exits, however it exits.
defer() { cleanup_cmds+=("$1"); }

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; [ $# -gt 1 ] && printf '  %s\n' "$2"; }

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected [$2], got [$3]"; fi
}

# check_match NAME REGEX ACTUAL
check_match() {
  if printf '%s' "$3" | grep -Eq -- "$2"; then ok "$1"; else not_ok "$1" "[$3] does not match /$2/"; fi
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
}

# tmpdir: a new directory under this test's root, which is removed when the test exits, after
# the deferred commands (tmpdir runs in a command substitution, a subshell, so it cannot
# register its own cleanup).
TEST_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-test.XXXXXX")
tmpdir() {
  mktemp -d "$TEST_ROOT/d.XXXXXX"
}

# install_dstack_sdk: the official @phala/dstack-sdk 0.5.8 (and the peer dependencies its entry
# point loads) into a cache under the build tree, once. Sets SDK_CACHE; reports ok/not ok.
install_dstack_sdk() {
  SDK_CACHE=${MOONSTACK_TEST_TMP:-/tmp/moonstack-test}/npm-sdk
  if [ ! -d "$SDK_CACHE/node_modules/@phala/dstack-sdk" ] ||
     [ ! -d "$SDK_CACHE/node_modules/@noble/curves" ]; then
    mkdir -p "$SDK_CACHE"
    if ! npm install --prefix "$SDK_CACHE" --no-audit --no-fund --loglevel=error \
        @phala/dstack-sdk@0.5.8 '@noble/curves@^1.8.1' '@noble/hashes@^1.6.1' \
        >"$SDK_CACHE/npm.log" 2>&1; then
      not_ok "npm install @phala/dstack-sdk@0.5.8" "$(tail -5 "$SDK_CACHE/npm.log")"
      return 1
    fi
  fi
  ok "@phala/dstack-sdk $(node -p 'require(process.argv[1]).version' \
    "$(realpath "$SDK_CACHE/node_modules/@phala/dstack-sdk/package.json")")"
}

# free_port: a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
