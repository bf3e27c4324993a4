# SPDX-License-Identifier: Apache-2.0
# A 3-member etcd (Debian etcd-server) on loopback for the cluster tests, inside the test's own
# namespaces (in_test_namespaces: the fixed ports are the test's alone). Data dirs on a tmpfs
# the test mounts (the WAL preallocates 64 MB per member), gone with the mount namespace.
# Members are killed with SIGKILL (a member without quorum takes seconds to stop on SIGTERM).
#   etcd_cluster_start DIR      start n1..n3, wait until all are healthy; sets ETCD_EPS
#   etcd_member_start I / etcd_member_kill I
#   etcd_leader                 the index (1..3) of the current leader
#   etcdctl_get PREFIX          `etcdctl get --prefix` through the live members
ETCD_CPORT=23790 # + I
ETCD_PPORT=23800 # + I
ETCD_PIDS=()
ETCD_CLUSTER="n1=http://127.0.0.1:23801,n2=http://127.0.0.1:23802,n3=http://127.0.0.1:23803"
ETCD_EPS="http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
export ETCDCTL_API=3

etcd_member_start() {
  local i=$1 c=$((ETCD_CPORT + $1)) p=$((ETCD_PPORT + $1))
  etcd --name "n$i" --data-dir "$ETCD_DIR/n$i" --logger=zap \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$ETCD_CLUSTER" --initial-cluster-state new --initial-cluster-token mst \
    >>"$ETCD_DIR/n$i.log" 2>&1 &
  ETCD_PIDS[$i]=$!
  defer "kill -KILL ${ETCD_PIDS[$i]} 2>/dev/null"
}

etcd_member_kill() {
  kill -KILL "${ETCD_PIDS[$1]}" 2>/dev/null
  wait "${ETCD_PIDS[$1]}" 2>/dev/null
}

etcd_healthy() { etcdctl --endpoints="${1:-$ETCD_EPS}" endpoint health >/dev/null 2>&1; }

etcd_cluster_start() {
  ETCD_DIR=$1
  mkdir -p "$ETCD_DIR"
  mount -t tmpfs -o size=600m tmpfs "$ETCD_DIR" || { not_ok "a tmpfs for etcd's data"; return 1; }
  defer "umount -l '$ETCD_DIR' 2>/dev/null"
  local t0=$SECONDS
  for i in 1 2 3; do etcd_member_start "$i"; done
  wait_for 20 etcd_healthy || { not_ok "3-member etcd healthy" "$(tail -5 "$ETCD_DIR/n1.log")"; return 1; }
  ok "3-member etcd healthy ($((SECONDS - t0)) s)"
}

etcd_leader() {
  etcdctl --endpoints="$ETCD_EPS" endpoint status -w json 2>/dev/null |
    jq -r '.[] | select(.Status.leader == .Status.header.member_id) | .Endpoint' | head -1 |
    sed 's/.*:2379\([0-9]\)$/\1/'
}

etcdctl_get() { etcdctl --endpoints="$ETCD_EPS" get --prefix "$1" 2>/dev/null; }
