# SPDX-License-Identifier: Apache-2.0
# Helpers of the `moonstack dev` tests (sourced after lib.sh and vmm_lib.sh, inside the test's
# own namespaces, with $st the dev stack's state directory).

# dev_nothing_left: no process names the state dir, none of the stack's helpers runs
# (wireguard-go, a CVM's dockerd, containerd, shims and httpd, a QEMU guest), no msdev*
# interface: the namespaces are the test's own, so anything found is the stack's. Prints what
# it found and fails then.
dev_nothing_left() {
  local left='' p
  left=$(procs_under "$st" | tr '\n' ' ')
  for p in wireguard-go dockerd containerd containerd-shim httpd; do
    pgrep -x "$p" >/dev/null && left="$left $p"
  done
  pgrep -f 'qemu-system-x86_64 ' >/dev/null && left="$left qemu-system-x86_64"
  ip -o link show | grep -q ' msdev' && left="$left interface:$(ip -o link show | grep -o 'msdev[0-9a-f]*')"
  [ -z "$left" ] || { echo "$left"; return 1; }
}

# dev_diag LOG: what to read when the stack did not come up: the end of dev up's LOG, the
# WireGuard devices, the image build's log, the gateway's warnings and registrations, the
# CVM's own output (the process backend's stderr.log, a QEMU guest's serial.log).
dev_diag() {
  tail -25 "$1"
  echo '--- wg show'; wg show all 2>&1 | head -20
  echo '--- image-build.log'; tail -5 "$st/logs/image-build.log" 2>/dev/null
  echo '--- gateway.log (last warnings/errors and registrations)'
  grep -E '"(warn|error)"|registered' "$st/logs/gateway.log" 2>/dev/null | tail -8 | cut -c1-400
  echo '--- the CVM (stderr.log, serial.log)'
  tail -8 "$st"/vmm/run/*/stderr.log 2>/dev/null | cut -c1-400
  tail -30 "$st"/vmm/run/*/serial.log 2>/dev/null | cut -c1-400
}
