#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M11 (e2e): `moonstack dev up --backend process` (the qemu backend: dev_stack_qemu_test.sh), in
# network and PID namespaces this test creates (root, /dev/net/tun, wireguard-go, a Docker
# engine per CVM):
#   1. a fresh state dir: the KMS, gateway and VMM start, examples/apps/hello is built and
#      deployed, "app reachable in N s" is printed with the time it took, urls.json has the
#      keys dashboard, app, gateway_port, repl; the printed curl line reaches the app through
#      the gateway with the greeting that came in the encrypted env; the KMS's policy decided
#      (its name and version in the log); the dashboard's one-time link logs in once; the
#      REPL reaches the VMM; `dev status` says it runs;
#   2. Ctrl-C (SIGINT): it stops everything; walking /proc finds nothing of the stack (no
#      daemon, CVM, dockerd, containerd, container, wireguard-go), and no WireGuard interface;
#   3. a second `dev up` reuses the images and the VM and is up in seconds (< 30 s);
#      `moonstack dev down` from elsewhere stops it, again leaving nothing;
#   4. examples/apps/bash-app (the bash runner) comes up as shipped and answers.
source "$(dirname "$0")/lib.sh"

if [ -z "${MOONSTACK_IN_NS:-}" ]; then
  if ! unshare -n true 2>/dev/null || [ ! -c /dev/net/tun ] || ! command -v wireguard-go >/dev/null \
      || ! command -v dockerd >/dev/null; then
    not_ok "namespaces, /dev/net/tun, wireguard-go and dockerd (run as root; install-deps test)"
    finish
    exit 1
  fi
fi
in_test_namespaces "$@" || { finish; exit 1; }
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/dev_lib.sh"

d=$(tmpdir)
st=$d/state
UP=''
defer '[ -n "$UP" ] && kill -KILL $UP 2>/dev/null; "$MOONSTACK" dev down --dir "$st" >/dev/null 2>&1'
cd "$d" || exit 1

# ---- 1. a fresh stack ----
"$MOONSTACK" dev up --backend process --dir "$st" >"$d/up1.log" 2>&1 &
UP=$!
wait_for 300 sh -c "test -s $st/urls.json || ! kill -0 $UP" # (dev up may end early)
if [ ! -s "$st/urls.json" ]; then
  not_ok "dev up reached 'app reachable'" "$(dev_diag "$d/up1.log")"; finish; exit 1
fi
secs=$(sed -n 's/.*app reachable in \([0-9.]*\) s.*/\1/p' "$d/up1.log")
check_match "dev up printed the time it took to reach the app ($secs s)" '^[0-9]+\.[0-9]$' "$secs"
check "urls.json has dashboard, app, gateway_port, repl" "app dashboard gateway_port repl" \
  "$(jq -r 'keys | join(" ")' "$st/urls.json")"
check_match "the state directory is printed at start" "state directory $st\$" "$(head -1 "$d/up1.log")"
check_match "--backend process: the backend line says so" '\] backend: process \(each CVM a process tree' \
  "$(cat "$d/up1.log")"
curl_line=$(sed -n 's/^  curl        //p' "$d/up1.log")
check_match "a curl line that resolves the app's name to 127.0.0.1" '^curl --cacert .* --resolve [0-9a-f]{40}-8080\.app\.localhost:[0-9]+:127\.0\.0\.1 https://' "$curl_line"
check_match "the curl line reaches the app through the gateway, with the env decrypted in the CVM" \
  'Hello from a confidential VM' "$(eval "$curl_line -sS --max-time 10" 2>&1)"
check "curl with the dev CA checks the gateway's certificate (no -k)" 0 "$(grep -c -- ' -k' <<<"$curl_line"; true)"
check_match "the KMS's Lua policy decided the app's keys (name, version, reason)" \
  '"policy":"dev-stack".*"version":"1"|"version":"1".*"policy":"dev-stack"' \
  "$(grep 'auth decision' "$st/logs/kms.log" | grep '"allow":true' | head -1)"
dash=$(jq -r .dashboard "$st/urls.json")
check "the dashboard link logs in (303 to /dashboard/ with a session cookie)" "303 /dashboard/ 1" \
  "$(curl -s -o /dev/null -D - --max-time 10 "$dash" | tr -d '\r' | awk '/^HTTP/{s=$2} /^[Ll]ocation:/{l=$2} /^[Ss]et-[Cc]ookie: moonstack_session=/{c=1} END{print s, l, c+0}')"
check "the link works once" 403 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$dash")"
check "the admin token is in no log (dev up's output, the daemons')" 0 \
  "$(grep -c "$(cat "$st/admin.token")" "$d/up1.log" "$st"/logs/*.log | awk -F: '{s+=$2} END{print s}')"
check "the REPL reaches the VMM: one VM, named hello, running" "hello running" \
  "$("$MOONSTACK" repl "$st/vmm.ctl" --json -e 'vm.list()[1]' 2>&1 | jq -r '.results[0] | "\(.name) \(.status)"')"
"$MOONSTACK" dev status --dir "$st" --json >"$d/status.json"
check "dev status: running, three daemons" "true 3" \
  "$(jq -r '"\(.running) \([.daemons[] | select(. != false)] | length)"' "$d/status.json")"
check "a second dev up on the same dir is refused while one runs" 1 \
  "$("$MOONSTACK" dev up --backend process --dir "$st" >"$d/up-twice.log" 2>&1; echo $?)"

# ---- 2. Ctrl-C ----
kill -INT "$UP"
wait "$UP"
rc=$?
UP=''
check "Ctrl-C: dev up exits 0" 0 "$rc"
check_match "Ctrl-C: it says nothing of the stack is left" 'nothing of the stack is left running' \
  "$(tail -1 "$d/up1.log")"
check "walking /proc: nothing of the stack runs, no WireGuard interface" "" "$(dev_nothing_left)"
check "urls.json and the pid file are gone" "no no" \
  "$([ -e "$st/urls.json" ] && echo yes || echo no) $([ -e "$st/dev.pid" ] && echo yes || echo no)"

# ---- 3. the second run reuses everything ----
"$MOONSTACK" dev up --backend process --dir "$st" >"$d/up2.log" 2>&1 &
UP=$!
wait_for 120 sh -c "test -s $st/urls.json || ! kill -0 $UP" # (dev up may end early)
if [ ! -s "$st/urls.json" ]; then
  not_ok "the second dev up reached the app" "$(dev_diag "$d/up2.log")"; finish; exit 1
fi
secs2=$(sed -n 's/.*app reachable in \([0-9.]*\) s.*/\1/p' "$d/up2.log")
check_match "the second run reuses the guest image, the app image and the VM" \
  'reusing the guest image.*reusing the app image.*starting the existing VM hello' \
  "$(tr '\n' ' ' <"$d/up2.log")"
check "the second run is up in seconds ($secs2 s < 30)" 1 "$(awk -v s="$secs2" 'BEGIN{print (s > 0 && s < 30) ? 1 : 0}')"
check "the same app URL" "$(jq -r .app "$st/urls.json")" "$(sed -n 's/^  app         //p' "$d/up1.log")"
check_match "the app answers again" 'Hello from a confidential VM' "$(eval "$curl_line -sS --max-time 10" 2>&1)"
"$MOONSTACK" dev down --dir "$st" >"$d/down.log" 2>&1
check "dev down exits 0" 0 "$?"
wait "$UP"
UP=''
check "dev down: nothing of the stack runs, no WireGuard interface" "" "$(dev_nothing_left)"
check "dev status after down: not running (exit 3)" 3 "$("$MOONSTACK" dev status --dir "$st" >/dev/null; echo $?)"

# ---- 4. the bash-runner example, as shipped, on a stack of its own ----
st=$d/state-bash
"$MOONSTACK" dev up --backend process --dir "$st" --app "$MOONSTACK_SRC/examples/apps/bash-app" --no-dashboard \
  >"$d/up3.log" 2>&1 &
UP=$!
wait_for 120 sh -c "test -s $st/urls.json || ! kill -0 $UP" # (dev up may end early)
if [ -s "$st/urls.json" ]; then
  page=$(eval "$(sed -n 's/^  curl        //p' "$d/up3.log") -sS --max-time 10" 2>&1)
  check_match "examples/apps/bash-app answers through the gateway with its key's hash and env" \
    'sha256 <code>[0-9a-f]{64}</code>.*A bash script, attested' "$(tr '\n' ' ' <<<"$page")"
else
  not_ok "examples/apps/bash-app came up" "$(dev_diag "$d/up3.log")"
fi
kill -INT "$UP"
wait "$UP"
UP=''
check "bash-app stack: nothing left" "" "$(dev_nothing_left)"
finish
