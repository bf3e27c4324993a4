#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The docker-compose runner on a Docker engine of the CVM's own, end to end (labels functional
# and e2e): two CVMs, each a `moonstack agent -c` on the sim TEE started in a network namespace
# of its own (moonstack ns-exec --net, as the VMM's process backend does), boot a
# docker-compose app whose service runs busybox httpd on port 8080 from an image loaded out of
# a local tarball (scripts/busybox-image.sh: no registry). Each agent starts its own
# dockerd (runner.dockerd: data root, exec root, socket under the CVM's dir; private mounts)
# before the app. Checks: compose v1 is used where `docker compose` is absent; each app answers
# inside its CVM and through a host port mapping (moonstack.vmm.portmap), never on the host's
# own :8080; each engine sees only its own container and image; stopping an agent (SIGTERM)
# stops its app and its engine while the other CVM keeps serving; nothing is left behind: no
# process, no mount, no cgroup, and the CVM's directory removes cleanly.
source "$(dirname "$0")/lib.sh"

for prog in dockerd docker docker-compose busybox curl jq; do
  if ! command -v "$prog" >/dev/null; then
    not_ok "$prog is installed (scripts/install-deps.sh test)"; finish; exit 1
  fi
done
if ! "$MOONSTACK" ns-exec --net --mount -- true 2>"$TEST_ROOT/ns.err"; then
  not_ok "network and mount namespaces are available" "$(cat "$TEST_ROOT/ns.err")"; finish; exit 1
fi

img=$TEST_ROOT/img
if "$MOONSTACK_SRC/scripts/busybox-image.sh" "$img" local/busybox:1 >/dev/null; then
  ok "busybox image tarball built offline"
else
  not_ok "busybox image tarball built offline"; finish; exit 1
fi
# engine_cgroups DIR...: the cgroups of the engines of those CVM dirs (moonstack-<hash of the
# engine dir>), wherever they are (other tests run engines and CVMs at the same time)
engine_cgroups() {
  local d
  for d in "$@"; do
    find /sys/fs/cgroup -maxdepth 2 -name "moonstack-$(printf '%s' "$d/docker" | sha256sum | cut -c1-12)"
  done
}

# make_cvm DIR NAME: shared folder (app-compose.json) and agent.lua in DIR.
make_cvm() {
  local d=$1 name=$2
  mkdir -p "$d/shared"
  local yaml
  yaml=$(printf 'services:\n  web:\n    image: local/busybox:1\n    command: ["sh", "-c", %s]\n    ports:\n      - "8080:8080"\n' \
    "\"echo hello-$name > /www/index.html && exec httpd -f -p 8080 -h /www\"")
  jq -n --arg yaml "$yaml" --arg name "docker-e2e-$name" \
    '{manifest_version: 2, name: $name, runner: "docker-compose", docker_compose_file: $yaml,
      public_logs: true}' >"$d/shared/app-compose.json"
  echo '{}' >"$d/shared/.sys-config.json"
  cat >"$d/agent.lua" <<EOF
return {
  shared_dir = '$d/shared', state_dir = '$d/state',
  key_provider = { kind = 'none' },
  tee = { name = 'sim', dir = '$d/sim', cvm = 'c' },
  listen = { dstack = { unix = '$d/dstack.sock' }, tappd = { unix = '$d/tappd.sock' },
    public = false },
  control = '$d/agent.ctl',
  runner = { stop_grace_ms = 1000,
    dockerd = { dir = '$d/docker', images = { '$img/image.tar' }, shutdown_timeout_s = 1 } },
}
EOF
}

# pids_mentioning DIR: the pids whose command line mentions DIR (walking /proc).
pids_mentioning() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qF -- "$1"; then
      f=${f#/proc/}; echo "${f%/cmdline}"
    fi
  done
}
kill_mentioning() { local p; for p in $(pids_mentioning "$1"); do kill -KILL "$p" 2>/dev/null; done; }
# leftovers DIR: processes mentioning DIR, mounts under DIR
leftovers() {
  echo "processes=$(pids_mentioning "$1" | grep -c .) mounts=$(grep -c " $1" /proc/self/mountinfo)"
}

# in_cvm PID CMD...: run CMD in the network namespace of process PID.
in_cvm() { local pid=$1; shift; "$MOONSTACK" ns-exec --net-pid "$pid" -- "$@"; }
answers() { [ "$(in_cvm "$1" curl -s -m 2 http://127.0.0.1:8080/)" = "hello-$2" ]; }
engine() { local d=$1; shift; DOCKER_HOST=unix://$d/docker/docker.sock docker "$@"; }

A=$(tmpdir); B=$(tmpdir)
make_cvm "$A" A; make_cvm "$B" B
start=$SECONDS
"$MOONSTACK" ns-exec --net -- "$MOONSTACK" agent -c "$A/agent.lua" >"$A/agent.log" 2>&1 &
PA=$!
defer "kill -KILL $PA 2>/dev/null"
"$MOONSTACK" ns-exec --net -- "$MOONSTACK" agent -c "$B/agent.lua" >"$B/agent.log" 2>&1 &
PB=$!
defer "kill -KILL $PB 2>/dev/null"
# a failure of this test must not leave engines or containers running
defer "kill_mentioning '$A'; kill_mentioning '$B'"

# up PID NAME: the app answers, or the agent is gone (then fail at once)
up() { answers "$1" "$2" || { kill -0 "$1" 2>/dev/null || return 0; return 1; }; }
if wait_for 90 up "$PA" A && wait_for 30 up "$PB" B && answers "$PA" A && answers "$PB" B; then
  ok "both apps answer inside their CVMs ($((SECONDS - start)) s from exec)"
else
  not_ok "both apps answer inside their CVMs" "$(tail -5 "$A/agent.log"; tail -5 "$B/agent.log")"
  finish; exit 1
fi
if curl -s -m 2 http://127.0.0.1:8080/ 2>/dev/null | grep -q 'hello-[AB]'; then
  not_ok "the apps are not on the host's 127.0.0.1:8080"
else
  ok "the apps are not on the host's 127.0.0.1:8080"
fi

# through the VMM's port mapping, from the host
"$MOONSTACK" run "$MOONSTACK_SRC/tests/helpers/portmap_hold.lua" "$PA" 8080 "$A/port" >"$A/pm.log" 2>&1 &
PM=$!
defer "kill -KILL $PM 2>/dev/null"
if wait_for 10 test -s "$A/port"; then
  check "app A through host 127.0.0.1:$(cat "$A/port")" hello-A \
    "$(curl -s -m 5 "http://127.0.0.1:$(cat "$A/port")/")"
else
  not_ok "port mapping into CVM A" "$(cat "$A/pm.log")"
fi
kill -TERM $PM 2>/dev/null; wait $PM 2>/dev/null

# each engine sees only its own container and image
ca=$(engine "$A" ps -a --format '{{.Names}}'); cb=$(engine "$B" ps -a --format '{{.Names}}')
if docker compose version >/dev/null 2>&1; then want=app-web-1 how=plugin; else want=app_web_1 how=v1; fi
check "compose $how ran the app (container name)" "$want" "$ca"
check "engine A lists only A's container" 1 "$(printf '%s\n' "$ca" | grep -c .)"
check "engine B lists only B's container" 1 "$(printf '%s\n' "$cb" | grep -c .)"
ida=$(engine "$A" ps -aq --no-trunc)
if engine "$B" inspect "$ida" >/dev/null 2>&1; then
  not_ok "A's container is invisible to engine B"
else
  ok "A's container is invisible to engine B"
fi
check "engine A's image came from the tarball" local/busybox:1 \
  "$(engine "$A" images --format '{{.Repository}}:{{.Tag}}')"
check "engine A's data root is in CVM A's dir" "$A/docker/data" \
  "$(engine "$A" info --format '{{.DockerRootDir}}')"
if grep -q " $A/docker" /proc/self/mountinfo; then
  not_ok "engine A's mounts are private (none on the host)"
else
  ok "engine A's mounts are private (none on the host)"
fi


# stop CVM A: its app and engine go, B keeps serving
t0=$SECONDS
kill -TERM $PA
if wait_for 90 bash -c "! kill -0 $PA 2>/dev/null"; then
  ok "agent A stopped on SIGTERM ($((SECONDS - t0)) s)"
else
  not_ok "agent A stopped on SIGTERM" "$(tail -5 "$A/agent.log")"
fi
check "nothing of CVM A is left running or mounted" "processes=0 mounts=0" "$(leftovers "$A")"
if answers "$PB" B; then ok "CVM B still serves"; else not_ok "CVM B still serves"; fi
grep -q 'docker engine stopped' "$A/agent.log" && ok "A's engine stopped after its app" ||
  not_ok "A's engine stopped after its app" "$(tail -5 "$A/agent.log")"

kill -TERM $PB
wait_for 90 bash -c "! kill -0 $PB 2>/dev/null" || not_ok "agent B stopped on SIGTERM"
check "nothing of CVM B is left running or mounted" "processes=0 mounts=0" "$(leftovers "$B")"
check "no engine cgroup is left" "" "$(engine_cgroups "$A" "$B")"
if rm -rf "$A" "$B" && [ ! -e "$A" ] && [ ! -e "$B" ]; then
  ok "the CVMs' directories remove cleanly"
else
  not_ok "the CVMs' directories remove cleanly"
fi
finish
