# SPDX-License-Identifier: Apache-2.0
# Helpers shared by the VMM functional tests (sourced after lib.sh): a process image, a VMM
# started on a config and stopped at exit, pRPC calls over curl (TCP or the unix socket), the
# waits on a VM's state, and the /proc walk that finds a test's processes (for orphan checks).

# vmm_image DIR NAME: a process image of this build's binary in DIR/NAME.
vmm_image() {
  "$MOONSTACK" image build --kind process --output "$1/$2" >/dev/null 2>&1 \
    || { not_ok "image build --kind process" "$("$MOONSTACK" image build --kind process --output "$1/$2" 2>&1)"; return 1; }
}

# vmm_start CONFIG LOG: start `moonstack vmm -c CONFIG` (output in LOG), wait until ready; sets
# VMM_PID, and VMM_PORT when it listens on TCP.
vmm_start() {
  "$MOONSTACK" vmm -c "$1" >>"$2" 2>&1 &
  VMM_PID=$!
  defer "kill -KILL $VMM_PID 2>/dev/null"
  local mark=$(( $(grep -c 'VMM ready' "$2" 2>/dev/null || true) + 1 ))
  local i
  for i in $(seq 200); do
    [ "$(grep -c 'VMM ready' "$2" 2>/dev/null || true)" -ge "$mark" ] && break
    kill -0 "$VMM_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  VMM_PORT=$(grep 'VMM ready' "$2" | tail -1 | sed -n 's/.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p')
  [ "$(grep -c 'VMM ready' "$2")" -ge "$mark" ]
}

# rpc METHOD JSON: POST /prpc/METHOD?json to $VMM (http://... or unix:PATH); body on stdout,
# the HTTP status kept for rpc_status (a file: rpc often runs in a command substitution).
rpc() {
  local out
  if [ "${VMM#unix:}" != "$VMM" ]; then
    out=$(curl -sS --max-time 30 --unix-socket "${VMM#unix:}" -H 'content-type: application/json' \
      -w '\n%{http_code}' -d "$2" "http://localhost/prpc/$1?json")
  else
    out=$(curl -sS --max-time 30 -H 'content-type: application/json' -w '\n%{http_code}' \
      -d "$2" "$VMM/prpc/$1?json")
  fi
  printf '%s' "${out##*$'\n'}" >"$TEST_ROOT/rpc.status"
  printf '%s' "${out%$'\n'*}"
}

# rpc_status: the HTTP status of the last rpc.
rpc_status() { cat "$TEST_ROOT/rpc.status"; }

# vm_field ID JQ: a field of GetInfo's info (jq expression on .info).
vm_field() {
  rpc GetInfo "{\"id\":\"$1\"}" | jq -r ".info$2"
}

# wait_vm ID SECONDS JQ-CONDITION: until GetInfo's info matches (e.g. '.boot_progress=="done"').
wait_vm() {
  local deadline=$((SECONDS + $2))
  until [ "$(rpc GetInfo "{\"id\":\"$1\"}" | jq -r ".info | $3")" = true ]; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# procs_under DIR: pids (not zombies) whose command line or cwd names DIR, one per line.
procs_under() {
  local p cmd cwd st
  for p in /proc/[0-9]*; do
    st=$(awk '{print $3}' "$p/stat" 2>/dev/null) || continue
    [ "$st" = Z ] && continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
    cwd=$(readlink "$p/cwd" 2>/dev/null)
    case "$cmd $cwd" in *"$1"*) echo "${p#/proc/}" ;; esac
  done
}

# agents_of WORKDIR: how many moonstack agent processes run the CVM of WORKDIR (comm moonstack).
agents_of() {
  local n=0 p
  for p in $(procs_under "$1/agent.lua"); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = moonstack ] && n=$((n + 1))
  done
  echo $n
}

# bash_compose NAME SCRIPT: an app-compose.json text for a bash app.
bash_compose() {
  jq -cn --arg n "$1" --arg s "$2" '{manifest_version:2,name:$n,runner:"bash",bash_script:$s}'
}

# create_body NAME IMAGE COMPOSE [EXTRA-JQ]: a CreateVm JSON body.
create_body() {
  jq -cn --arg n "$1" --arg i "$2" --arg c "$3" "{name:\$n,image:\$i,compose_file:\$c,vcpu:1,memory:256} ${4:-}"
}
