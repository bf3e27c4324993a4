#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M11 (labels functional, e2e and vm): `moonstack dev up --backend qemu`: the dev stack's VMM
# runs examples/apps/hello as a QEMU guest (TCG here) booted from the docker-flavour image that
# dev up builds (the Debian cache is $MOONSTACK_IMAGE_CACHE, warm from the image tests: no
# network is needed); the guest reaches the KMS, the gateway's RegisterCvm and its WireGuard
# hub on the host's loopback as 10.0.2.2 (user networking with restrict=off,
# qemu.host_access). In network and PID namespaces this test creates:
#   1. dev up says `backend: qemu`; the printed curl line reaches the app through the gateway
#      with the greeting that came in the encrypted env;
#   2. Ctrl-C: dev up exits 0, and walking /proc finds nothing of the stack (no daemon, no
#      qemu-system, no wireguard-go) and no WireGuard interface;
#   3. a second dev up reuses the guest image, the app image and the VM; `moonstack dev down`
#      stops it, again leaving nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/image_lib.sh"
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/dev_lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null \
      || ! command -v qemu-system-x86_64 >/dev/null; then
    not_ok "namespaces, /dev/net/tun, wireguard-go and qemu-system-x86_64 (run as root; install-deps test)"
    finish
    exit 1
  fi
  # the Debian packages and root file system the guest image is built from, into the cache here
  # where the mirror is reachable (the test's namespace has no network): a cold cache takes a
  # minute or two, a warm one seconds
  if "$MOONSTACK" image build --kind qemu --flavour docker --cache "$IMAGE_CACHE" \
      --output "$TEST_ROOT/warm" >"$TEST_ROOT/warm.log" 2>&1; then
    ok "the image cache is warm ($IMAGE_CACHE)"
  else
    not_ok "image build --kind qemu --flavour docker (warming the cache)" "$(tail -5 "$TEST_ROOT/warm.log")"
    finish
    exit 1
  fi
fi
in_test_namespaces "$@" || { finish; exit 1; }
export MOONSTACK_IMAGE_CACHE=$IMAGE_CACHE

d=$(tmpdir)
st=$d/state
UP=''
defer '[ -n "$UP" ] && kill -KILL $UP 2>/dev/null; "$MOONSTACK" dev down --dir "$st" >/dev/null 2>&1'
defer "for p in \$(pgrep -f 'qemu-system-x86_64.*$st'); do kill -KILL \$p; done"
cd "$d" || exit 1

# ---- 1. the stack with the app in a QEMU guest ----
t0=$SECONDS
"$MOONSTACK" dev up --backend qemu --dir "$st" --timeout 600 >"$d/up.log" 2>&1 &
UP=$!
wait_for 780 sh -c "test -s $st/urls.json || ! kill -0 $UP" # (dev up may end early)
if [ ! -s "$st/urls.json" ]; then
  not_ok "dev up --backend qemu reached 'app reachable'" "$(dev_diag "$d/up.log")"; finish; exit 1
fi
ok "dev up --backend qemu: $(grep -o 'app reachable in .*' "$d/up.log") ($((SECONDS - t0)) s in all)"
check_match "the backend line says qemu and why" '\] backend: qemu \(QEMU guests under (tcg|kvm|tdx) ' \
  "$(cat "$d/up.log")"
check_match "the guest image was built or reused" 'built the guest image \(vmm/images/moonstack-qemu|reusing the guest image \(moonstack-qemu\)' \
  "$(cat "$d/up.log")"
check "a QEMU guest runs the app" 1 "$(pgrep -f "qemu-system-x86_64.*$st" | wc -l)"
check_match "its network reaches the host (restrict=off)" 'user,id=net0,restrict=no' \
  "$(tr '\0' ' ' </proc/"$(pgrep -f "qemu-system-x86_64.*$st" | head -1)"/cmdline 2>/dev/null)"
check_match "the guest was given the KMS and the gateway at 10.0.2.2" \
  '^https://10\.0\.2\.2:[0-9]+ https://10\.0\.2\.2:[0-9]+$' \
  "$(jq -r '"\(.kms_urls[0]) \(.gateway_urls[0])"' "$st"/vmm/run/*/shared/.sys-config.json 2>&1)"
curl_line=$(sed -n 's/^  curl        //p' "$d/up.log")
check_match "the curl line reaches the app through the gateway, with the env decrypted in the guest" \
  'Hello from a confidential VM' "$(eval "$curl_line -sS --max-time 10" 2>&1)"

# ---- 2. Ctrl-C ----
kill -INT "$UP"
wait "$UP"
rc=$?
UP=''
check "Ctrl-C: dev up exits 0" 0 "$rc"
check_match "Ctrl-C: it says nothing of the stack is left" 'nothing of the stack is left running' \
  "$(tail -1 "$d/up.log")"
check "walking /proc: nothing of the stack runs (no qemu-system), no WireGuard interface" "" \
  "$(dev_nothing_left)"

# ---- 3. the second run reuses the image and the VM; dev down stops it ----
t0=$SECONDS
"$MOONSTACK" dev up --backend qemu --dir "$st" --timeout 600 >"$d/up2.log" 2>&1 &
UP=$!
wait_for 600 sh -c "test -s $st/urls.json || ! kill -0 $UP" # (dev up may end early)
if [ ! -s "$st/urls.json" ]; then
  not_ok "the second dev up --backend qemu reached the app" "$(dev_diag "$d/up2.log")"; finish; exit 1
fi
ok "the second dev up: $(grep -o 'app reachable in .*' "$d/up2.log") ($((SECONDS - t0)) s in all)"
check_match "the second run reuses the guest image, the app image and the VM" \
  'reusing the guest image \(moonstack-qemu\).*reusing the app image.*starting the existing VM hello' \
  "$(tr '\n' ' ' <"$d/up2.log")"
check_match "the app answers again" 'Hello from a confidential VM' "$(eval "$curl_line -sS --max-time 10" 2>&1)"
"$MOONSTACK" dev down --dir "$st" >"$d/down.log" 2>&1
check "dev down exits 0" 0 "$?"
wait "$UP"
UP=''
check "dev down: nothing of the stack runs (no qemu-system), no WireGuard interface" "" "$(dev_nothing_left)"
finish
