#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M9 (labels functional and e2e): a docker-compose app inside a real VM. The docker flavour of
# `moonstack image build --kind qemu` (cached; Debian's docker.io and compose v1 in the guest),
# the VMM's qemu backend (TCG here), an app whose image comes from a tarball the VMM puts in the
# guest's share (qemu.docker_images: no registry is reachable). Checks: the container answers
# on the mapped port, the logs carry the compose output, ShutdownVm powers the guest off
# (QMP powerdown), RemoveVm leaves no QEMU behind.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"
source "$(dirname "$0")/image_lib.sh"

command -v qemu-system-x86_64 >/dev/null || { not_ok "qemu-system-x86 is installed"; finish; exit 1; }
d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
t0=$SECONDS
if "$MOONSTACK" image build --kind qemu --flavour docker --output "$d/images/dguest" --cache "$IMAGE_CACHE" \
    >"$d/build.log" 2>&1; then
  ok "image build --kind qemu --flavour docker ($((SECONDS - t0)) s)"
else
  not_ok "image build --kind qemu --flavour docker" "$(tail -20 "$d/build.log")"; finish; exit 1
fi
"$MOONSTACK_SRC/scripts/busybox-image.sh" "$d/img" local/busybox:1 >/dev/null \
  || { not_ok "busybox image tarball built offline"; finish; exit 1; }
APP_PORT=$(free_port)
cat >"$d/vmm.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/run', image_dir = '$d/images',
  backend = 'qemu', shutdown_timeout = 30,
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 1024, to = 65535 } } },
  process = { sim_dir = '$d/sim' },
  qemu = { docker_images = { '$d/img/image.tar' } },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM (qemu backend) started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT
qemus() { pgrep -f "qemu-system-x86_64.*$d/run" 2>/dev/null; }
defer "for p in \$(pgrep -f 'qemu-system-x86_64.*$d/run'); do kill -KILL \$p; done"

yaml=$(printf 'services:\n  web:\n    image: local/busybox:1\n    command: ["sh", "-c", %s]\n    ports:\n      - "8080:8080"\n' \
  '"echo hello from a container in a VM > /www/index.html && echo web up && exec httpd -f -p 8080 -h /www"')
compose=$(jq -cn --arg yaml "$yaml" '{manifest_version: 2, name: "vm-compose", runner: "docker-compose", docker_compose_file: $yaml}')
t0=$(now_ms)
id=$(rpc CreateVm "$(create_body dvm dguest "$compose" \
  "| .vcpu=2 | .memory=2048 | .ports=[{protocol:\"tcp\",host_address:\"127.0.0.1\",host_port:$APP_PORT,vm_port:8080}]")" | jq -r .id)
check "CreateVm (docker flavour)" 200 "$(rpc_status)"
answers() { [ "$(curl -sS --max-time 2 "http://127.0.0.1:$APP_PORT/" 2>/dev/null)" = "hello from a container in a VM" ]; }
if wait_for 150 answers; then ok "the container answers on the mapped port ($(( ($(now_ms) - t0) / 1000 )) s from CreateVm)"; else
  not_ok "the container answers on the mapped port" "$(vm_field "$id" '.boot_error'; tail -30 "$d/run/$id/serial.log")"; fi
if wait_vm "$id" 60 '.boot_progress=="done"'; then ok "boot progress reached done"; else
  not_ok "boot progress reached done" "$(vm_field "$id" .boot_progress)"; fi
check_match "the logs carry the compose output" 'Creating app_web_1 .*done' "$(curl -sS "$VMM/logs?id=$id&lines=400&ansi=false")"
rpc ShutdownVm "{\"id\":\"$id\"}" >/dev/null
if wait_vm "$id" 60 '.status=="stopped"'; then ok "ShutdownVm: the guest stopped its app and powered off"; else
  not_ok "ShutdownVm: the guest powered off" "$(tail -20 "$d/run/$id/serial.log")"; fi
rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
check "RemoveVm" "" "$(ls -A "$d/run")"
check "no QEMU left behind" "" "$(qemus)"
kill -TERM "$VMM_PID"; wait "$VMM_PID"
finish
