#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# M8: a bash-runner app with port mappings through the VMM API (curl): CreateVm with a TCP and
# a UDP mapping, the app (python3's http.server and a UDP echo, inside the CVM's own network
# namespace) answers on the mapped host ports and never on the host's own; its logs; StopVm
# closes the mappings, StartVm opens them again, RemoveVm frees the host ports and leaves no
# process. A VMM told not to create namespaces (process.network = 'host') refuses a mapping
# with a 400 naming `ports` and creates nothing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/vmm_lib.sh"

if ! "$MOONSTACK" ns-exec --net -- true 2>"$TEST_ROOT/ns.err"; then
  not_ok "network namespaces are available" "$(cat "$TEST_ROOT/ns.err")"; finish; exit 1
fi
d=$(tmpdir)
mkdir -p "$d/images" "$d/run"
vmm_image "$d/images" proc || { finish; exit 1; }
# host ports free on this machine (a bound port is never offered twice in one run)
read -r TCP_PORT UDP_PORT < <(python3 -c '
import socket
t = socket.socket(); t.bind(("127.0.0.1", 0)); u = socket.socket(type=socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0)); print(t.getsockname()[1], u.getsockname()[1])')
cat >"$d/vmm.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/run', image_dir = '$d/images',
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 1024, to = 65535 }, { protocol = 'udp', from = 1024, to = 65535 } } },
}
EOF
vmm_start "$d/vmm.lua" "$d/vmm.log" || { not_ok "VMM started" "$(cat "$d/vmm.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT

# the app: an HTTP server on 0.0.0.0:18080 and a UDP echo on 19999, inside the CVM
app='mkdir -p www && echo "hello from $CVM_MARK" > www/index.html
python3 -u -c "
import socket
s = socket.socket(type=socket.SOCK_DGRAM); s.bind((\"0.0.0.0\", 19999))
while True:
    data, peer = s.recvfrom(2048); s.sendto(b\"echo:\" + data, peer)" &
echo "serving"
exec python3 -u -m http.server 18080 --bind 0.0.0.0 --directory www'
compose=$(bash_compose web "CVM_MARK=vm-one; $app")
ports="| .ports=[{protocol:\"tcp\",host_address:\"127.0.0.1\",host_port:$TCP_PORT,vm_port:18080},
  {protocol:\"udp\",host_address:\"127.0.0.1\",host_port:$UDP_PORT,vm_port:19999}]"
id=$(rpc CreateVm "$(create_body web proc "$compose" "$ports")" | jq -r .id)
check "CreateVm with a TCP and a UDP mapping" 200 "$(rpc_status)"

answers() { [ "$(curl -sS --max-time 2 "http://127.0.0.1:$TCP_PORT/" 2>/dev/null)" = "hello from vm-one" ]; }
udp_echo() {
  python3 -c '
import socket, sys
s = socket.socket(type=socket.SOCK_DGRAM); s.settimeout(1)
for _ in range(5):
    s.sendto(b"ping", ("127.0.0.1", int(sys.argv[1])))
    try:
        print(s.recvfrom(2048)[0].decode()); break
    except OSError:
        pass' "$UDP_PORT"
}
if wait_for 30 answers; then ok "the app answers on the mapped host port (TCP)"; else
  not_ok "the app answers on the mapped host port (TCP)" "$(curl -sS --max-time 2 "http://127.0.0.1:$TCP_PORT/" 2>&1; tail -5 "$d/run/$id/stderr.log")"; fi
check "the app answers on the mapped host port (UDP)" "echo:ping" "$(udp_echo)"
check "the app's port is not on the host's own network" 000 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://127.0.0.1:18080/)"
check "GetInfo shows the mappings" "tcp:$TCP_PORT:18080 udp:$UDP_PORT:19999" \
  "$(vm_field "$id" '.configuration.ports | map("\(.protocol):\(.host_port):\(.vm_port)") | join(" ")')"
check_match "its logs show the request" '"GET / HTTP/1.1" 200' "$(curl -sS "$VMM/logs?id=$id&lines=20&ansi=false")"
netns_of() { readlink "/proc/$(jq -r .pid "$d/run/$id/process.json")/ns/net"; }
check "the CVM runs in a network namespace of its own" different \
  "$([ "$(netns_of)" != "$(readlink /proc/self/ns/net)" ] && echo different || echo same)"

rpc StopVm "{\"id\":\"$id\"}" >/dev/null
check "StopVm" 200 "$(rpc_status)"
check "a stopped VM's mapping refuses connections" 000 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$TCP_PORT/")"
rpc StartVm "{\"id\":\"$id\"}" >/dev/null
if wait_for 30 answers; then ok "StartVm: the app answers on the mapped port again"; else
  not_ok "StartVm: the app answers on the mapped port again" "$(tail -5 "$d/run/$id/stderr.log")"; fi
check "UDP again after the restart" "echo:ping" "$(udp_echo)"

rpc RemoveVm "{\"id\":\"$id\"}" >/dev/null
check "RemoveVm" 200 "$(rpc_status)"
check "no process left (/proc walk)" "" "$(procs_under "$d/run")"
# (SO_REUSEADDR as any server: the relayed connections leave TIME_WAIT entries on the port)
check "the host ports are free again" free "$(python3 -c '
import socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", int(sys.argv[1]))); t.listen(1)
u = socket.socket(type=socket.SOCK_DGRAM); u.bind(("127.0.0.1", int(sys.argv[2]))); print("free")' "$TCP_PORT" "$UDP_PORT" 2>&1)"
check "no directory left" "" "$(ls -A "$d/run")"
kill -TERM "$VMM_PID"; wait "$VMM_PID"

# a VMM that may not create namespaces refuses port mappings instead of sharing the host's ports
mkdir -p "$d/run2"
cat >"$d/vmm2.lua" <<EOF
return {
  listen = { host = '127.0.0.1', port = 0 }, run_dir = '$d/run2', image_dir = '$d/images',
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 1024, to = 65535 } } },
  process = { network = 'host' },
}
EOF
vmm_start "$d/vmm2.lua" "$d/vmm2.log" || { not_ok "VMM (network = 'host') started" "$(cat "$d/vmm2.log")"; finish; exit 1; }
VMM=http://127.0.0.1:$VMM_PORT
out=$(rpc CreateVm "$(create_body web proc "$compose" "| .ports=[{protocol:\"tcp\",host_port:$TCP_PORT,vm_port:18080}]")")
check "process.network = 'host': a port mapping is refused with 400" 400 "$(rpc_status)"
check_match "... naming ports and why" "^ports: port mapping needs a network namespace per CVM.*process.network = 'host'" "$(echo "$out" | jq -r .error)"
check "... and nothing is created" "" "$(ls -A "$d/run2")"
check "... nor left running" "" "$(procs_under "$d/run2")"
finish
