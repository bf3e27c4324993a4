#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M8 (labels functional and e2e): docker-compose apps deployed through the VMM API on real
# Docker engines. Two CVMs, each with its own engine (dockerd started by its agent inside the
# CVM's network namespace, images loaded from a local tarball: no registry), each serving
# busybox httpd on its port 8080, reached through host port mappings. Checks: both answer on
# their mapped ports with their own page; each engine sees only its own container; the logs
# carry the app's output; StopVm then StartVm brings the app back; RemoveVm leaves no process,
# cgroup, exec root or directory behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

for prog in dockerd docker docker-compose busybox curl jq; do
  if ! command -v "$prog" >/dev/null; then
    not_ok "$prog is installed (scripts/install-deps.sh test)"; finish; exit 1
  fi
done
if ! "$MOONSTACK" ns-exec --net --mount -- true 2>"$TEST_ROOT/ns.err"; then
  not_ok "network and mount namespaces are available" "$(cat "$TEST_ROOT/ns.err")"; finish; exit 1
fi
d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
"$MOONSTACK_SRC/scripts/busybox-image.sh" "$d/img" local/busybox:1 >/dev/null \
  || { not_ok "busybox image tarball built offline"; finish; exit 1; }
read -r PORT_A PORT_B < <(python3 -c '
import socket
a = socket.socket(); a.bind(("127.0.0.1", 0)); b = socket.socket(); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])')
cat >"$d/vmm.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/run', image_dir = '$d/images',
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 1024, to = 65535 } } },
  process = { docker_images = { '$d/img/image.tar' } },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT

# docker_compose NAME: an app-compose.json of busybox httpd serving "hello-NAME" on 8080
docker_compose() {
  local yaml
  yaml=$(printf 'services:\n  web:\n    image: local/busybox:1\n    command: ["sh", "-c", %s]\n    ports:\n      - "8080:8080"\n' \
    "\"echo hello-$1 > /www/index.html && echo web up && exec httpd -f -v -p 8080 -h /www\"")
  jq -cn --arg yaml "$yaml" --arg name "$1" \
    '{manifest_version: 2, name: $name, runner: "docker-compose", docker_compose_file: $yaml}'
}
deploy() { # NAME PORT -> id
  rpc CreateVm "$(create_body "$1" proc "$(docker_compose "$1")" \
    "| .ports=[{protocol:\"tcp\",host_address:\"127.0.0.1\",host_port:$2,vm_port:8080}]")" | jq -r .id
}
answers() { [ "$(curl -sS --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null)" = "hello-$2" ]; }
engine() { DOCKER_HOST="unix://$d/run/$1/docker/docker.sock" docker "${@:2}"; }

t0=$SECONDS
A=$(deploy web-a "$PORT_A")
check "CreateVm (docker-compose app A)" 200 "$(rpc_status)"
B=$(deploy web-b "$PORT_B")
check "CreateVm (docker-compose app B)" 200 "$(rpc_status)"
if wait_for 120 answers "$PORT_A" web-a; then ok "app A answers on its mapped port ($((SECONDS - t0)) s)"; else
  not_ok "app A answers on its mapped port" "$(rpc GetInfo "{\"id\":\"$A\"}" | jq -c .info.boot_error; tail -5 "$d/run/$A/stderr.log")"; fi
if wait_for 120 answers "$PORT_B" web-b; then ok "app B answers on its mapped port"; else
  not_ok "app B answers on its mapped port" "$(tail -5 "$d/run/$B/stderr.log")"; fi
check "each engine runs only its own container (A)" "app_web_1" "$(engine "$A" ps --format '{{.Names}}' | sed 's/^[a-z0-9-]*_web/app_web/' | tr -d '\n')"
check "no engine sees the other's container" 1 "$(engine "$B" ps -q | wc -l)"
check_match "the logs carry the app's output" 'web up' "$(curl -sS "$VMM/logs?id=$A&lines=200&ansi=false")"
check "the host's own :8080 is not the app" false \
  "$(curl -s --max-time 2 http://127.0.0.1:8080/ 2>/dev/null | grep -q hello-web && echo true || echo false)"

rpc StopVm "{\"id\":\"$A\"}" >/dev/null
check "StopVm (A)" 200 "$(rpc_status)"
check "A's mapping is closed" 000 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT_A/")"
check "B still answers" true "$(answers "$PORT_B" web-b && echo true || echo false)"
rpc StartVm "{\"id\":\"$A\"}" >/dev/null
if wait_for 120 answers "$PORT_A" web-a; then ok "StartVm: A answers again (its engine's data kept)"; else
  not_ok "StartVm: A answers again" "$(tail -5 "$d/run/$A/stderr.log")"; fi

for id in "$A" "$B"; do rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null; done
check "RemoveVm on both" "" "$(ls -A "$d/run")"
check "no process left (/proc walk)" "" "$(procs_under "$d/run")"
# (only this test's: other tests run engines and CVMs at the same time)
own_cgroups() {
  local id
  for id in "$A" "$B"; do
    find /sys/fs/cgroup -maxdepth 2 \( -name "moonstack-cvm-$id" -o \
      -name "moonstack-$(printf '%s' "$d/run/$id/docker" | sha256sum | cut -c1-12)" \)
  done
}
check "no CVM or container cgroup left" "" "$(own_cgroups)"
check "no exec root left" "" "$(for id in "$A" "$B"; do
  ls -d "/run/moonstack-docker-$(printf '%s' "$d/run/$id/docker" | sha256sum | cut -c1-12)" 2>/dev/null; done)"
kill -TERM "$VMM_PID"; wait "$VMM_PID"
check "SIGTERM: exit 0" 0 $?
finish
