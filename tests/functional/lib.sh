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

# wait_eval SECONDS EXPR: poll until the shell expression EXPR succeeds. EXPR is evaluated afresh
# each time, in this shell (functions and variables work): `wait_for 5 test "$(cmd)" = x` would
# expand $(cmd) once, before the first try, and wait for nothing.
wait_eval() {
  local deadline=$((SECONDS + $1))
  until eval "$2" >/dev/null 2>&1; do
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

# in_test_namespaces "$@": the first time (outside), re-run this test in network and PID
# namespaces of its own, with its own /proc: its init is the test, so a killed test (a ctest
# timeout) takes every daemon, CVM and wireguard-go it started with it. The second time
# (inside), bring lo up and mount a private /run/wireguard (WireGuard UAPI sockets, `wg show`).
# Call it after checking what the test needs: in_test_namespaces "$@" || { finish; exit 1; }
in_test_namespaces() {
  if [ -z "${MOONSTACK_IN_NS:-}" ]; then
    rmdir "$TEST_ROOT" # the re-executed test makes its own
    trap - EXIT
    MOONSTACK_IN_NS=$$ exec unshare -n -p -f --mount-proc --kill-child bash "$0" "$@"
  fi
  ip link set lo up || { not_ok "lo up in the test's namespace"; return 1; }
  mkdir -p /run/wireguard && mount -t tmpfs -o mode=0700 tmpfs /run/wireguard \
    || { not_ok "a private /run/wireguard"; return 1; }
}

# need_tools TOOL...: each tool on PATH, else not ok naming it and the test ends.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { not_ok "$tool is installed"; finish; exit 1; }
  done
}

# need_netns_tun: a private network namespace and /dev/net/tun (root), else not ok and the end.
need_netns_tun() {
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ]; then
    not_ok "a private network namespace and /dev/net/tun (run as root)"; finish; exit 1
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# daemon_start NAME CONF LOG READY [SECS]: run `moonstack NAME -c CONF` in the background (killed
# when the test exits), its output in LOG, and wait SECS (default 20) for a line with READY in
# LOG; sets DAEMON_PID. A daemon that is not ready in time ends the test (not ok, LOG's tail).
daemon_start() {
  "$MOONSTACK" "$1" -c "$2" >"$3" 2>&1 &
  DAEMON_PID=$!
  defer "kill -KILL $DAEMON_PID 2>/dev/null"
  wait_for "${5:-20}" grep -q "$4" "$3" || { not_ok "$1 started" "$(tail -20 "$3")"; finish; exit 1; }
  # the service logs READY from its start; the daemon opens its control socket after that and
  # then logs `running`: wait for it too, so a REPL call right away finds the socket
  wait_for 10 grep -qE '\] running( |$)|"msg":"running"' "$3" \
    || { not_ok "$1 running (its control socket)" "$(tail -20 "$3")"; finish; exit 1; }
}

# ready_field LOG READY KEY: the string value of "KEY" in the last line of LOG with READY.
ready_field() { grep "$2" "$1" | tail -1 | sed -n "s/.*\"$3\":\"\([^\"]*\)\".*/\1/p"; }

# kms_start CONF LOG: daemon_start for `moonstack kms -c CONF`; sets KPID and KMS_PORT (the
# port of its listen address).
kms_start() {
  daemon_start kms "$1" "$2" 'KMS ready'
  KPID=$DAEMON_PID
  KMS_PORT=$(ready_field "$2" 'KMS ready' address)
  KMS_PORT=${KMS_PORT##*:}
}
