#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Hostile auth policies against the real KMS daemon (`moonstack kms -c`, policy backend, sim
# attestation): every policy of tests/helpers/hostile_policies.lua that used to crash the KMS
# (a C stack overflow in LuaJIT) or hold its loop for seconds to minutes (C calls the VM cannot
# interrupt, huge results, slow self-tests) now runs in a policy worker process. The probe
# (fixtures/policy_probe.lua) checks that each hostile decision is a deny, that /health answers
# within 10 ms while it is in flight, and that a hostile reload is refused with the previous
# policy still deciding. Then: the KMS serves on, its workers are replaced as they die, and no
# worker outlives the daemon, stopped with SIGTERM or killed with SIGKILL.
source "$(dirname "$0")/lib.sh"

d=$(tmpdir)
mkdir -p "$d/sim"
cat >"$d/pki.lua" <<'EOF'
local sim = require('moonstack.sim')
local t = assert(sim.new({ dir = arg[1], cvm = 'pki', create = true }))
local function write(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end
write(arg[2], assert(t:collateral(os.time())))
write(arg[3], (assert(t:root_ca())))
t:close()
EOF
"$MOONSTACK" run "$d/pki.lua" "$d/sim" "$d/collateral.json" "$d/sim-root.pem" >"$d/pki.log" 2>&1 \
  || { not_ok "sim PKI written" "$(cat "$d/pki.log")"; finish; exit 1; }

# the good policy: the probe's own (hostile_policies.lua's frame with no hostile code)
cat >"$d/good.lua" <<'EOF'
return { name = 'hostile', version = 'good',
  on_auth = function() return { allow = true, reason = 'good', gateway_app_id = 'any' } end }
EOF
cp "$d/good.lua" "$d/policy.lua"
cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/keys', domain = 'localhost', control = '$d/kms.ctl',
  listen = { host = '127.0.0.1', port = 0 },
  -- a longer deadline than the default 50 ms: each hostile decision stays in flight longer
  auth = { kind = 'policy', path = '$d/policy.lua', watch = false, workers = 2,
    limits = { time_limit_ms = 300 } },
  attestation = { collateral_file = '$d/collateral.json', root_ca_file = '$d/sim-root.pem',
    allow_simulator = true },
}
EOF

# workers PID: the policy workers of the daemon PID
workers() { pgrep -P "$1" -f 'policy-worker' | tr '\n' ' '; }
all_gone() { local p; for p in $1; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }

start_kms() {
  kms_start "$d/kms.lua" "$d/kms.log"
  port=$KMS_PORT
  ok "KMS started with the policy backend (2 workers)"
}

start_kms
wait_eval 10 '[ "$(workers "$KPID" | wc -w)" = 2 ]' && ok "2 policy workers run" \
  || not_ok "2 policy workers run" "$(workers "$KPID")"

MOONSTACK_SRC=$MOONSTACK_SRC "$MOONSTACK" --log-level warn run "$MOONSTACK_SRC/tests/functional/fixtures/policy_probe.lua" \
  "$d/sim" "https://localhost:$port" "$d/keys/root-ca.crt" "$KPID" "$d/policy.lua" "$d/kms.log" \
  >"$d/probe.out" 2>"$d/probe.err"
probe=$?
cat "$d/probe.out"
passed=$((passed + $(grep -c '^ok - ' "$d/probe.out")))
failed=$((failed + $(grep -c '^not ok - ' "$d/probe.out")))
[ "$probe" = 0 ] && ok "probe finished" || not_ok "probe finished (exit $probe)" "$(tail -20 "$d/probe.err")"

kill -0 "$KPID" 2>/dev/null && ok "the KMS is still running" || not_ok "the KMS is still running" "$(tail -20 "$d/kms.log")"
check "the KMS never crashed" 0 "$(grep -E 'Segmentation|SIGSEGV|core dumped' "$d/kms.log" | grep -vc 'policy worker')"
check "/health after all that" OK "$(curl -sS --max-time 5 --cacert "$d/keys/root-ca.crt" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/health")"
status=$("$MOONSTACK" repl "$d/kms.ctl" -e 'local w = auth().workers return w.live .. " " .. w.crashes .. " " .. w.kills' 2>&1)
check_match "workers replaced as they died (live crashes kills)" '^"?2 [0-9]+ [0-9]+"?$' "$status"

# no orphans: SIGTERM stops the daemon and its workers
pids=$(workers "$KPID")
[ -n "$pids" ] && ok "workers before SIGTERM: $pids" || not_ok "workers before SIGTERM" "none"
kill -TERM "$KPID"
wait "$KPID"
check "SIGTERM exits 0" 0 $?
wait_for 5 all_gone "$pids" && ok "no worker outlives a stopped KMS" || not_ok "no worker outlives a stopped KMS" "$pids"

# ... and SIGKILL too (the kernel kills them: PR_SET_PDEATHSIG)
cp "$d/good.lua" "$d/policy.lua"
start_kms
wait_eval 10 '[ "$(workers "$KPID" | wc -w)" = 2 ]'
pids=$(workers "$KPID")
kill -KILL "$KPID"
wait "$KPID" 2>/dev/null
wait_for 5 all_gone "$pids" && ok "no worker outlives a killed KMS" || not_ok "no worker outlives a killed KMS" "$pids"

finish
