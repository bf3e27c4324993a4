# SPDX-License-Identifier: Apache-2.0
# Shared helpers for the gateway proxy's shell tests (sourced after lib.sh): a wildcard
# certificate for a base domain, a local gateway (only `proxy` + `debug`, so SNI
# `localhost-<port>[s|g].<base>` reaches 127.0.0.1:<port>), a keep-alive HTTP backend, and
# `in_hosts` to run a client (wrk, curl) whose SNI comes from a URL host name: it runs in a
# private mount namespace whose /etc/hosts maps the given names to 127.0.0.1.

# gw_cert DIR BASE: DIR/key.pem (P-256) and DIR/cert.pem for *.BASE.
gw_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1/key.pem" -out "$1/cert.pem" -days 2 -subj "/CN=$2" \
    -addext "subjectAltName=DNS:*.$2" 2>/dev/null
  chmod 600 "$1/key.pem"
}

# gw_start DIR BASE PORT [EXTRA_LUA]: start `moonstack gateway` on 127.0.0.1:PORT with a
# wildcard cert for BASE (made by gw_cert DIR BASE), the control socket DIR/gw.sock and
# EXTRA_LUA spliced into the config table; sets GW_PID. Waits until the port accepts.
gw_start() {
  local dir=$1 base=$2 port=$3 extra=${4:-}
  cat > "$dir/gateway.lua" <<CFG
return {
  proxy = {
    listen = { host = '127.0.0.1', port = $port },
    base_domain = '$base',
    certs = { { cert = '$dir/cert.pem', key = '$dir/key.pem' } },
    workers = 2,
  },
  debug = { insecure_localhost_backend = true },
  control = '$dir/gw.sock',
  $extra
}
CFG
  "$MOONSTACK" gateway -c "$dir/gateway.lua" > "$dir/gateway.log" 2>&1 &
  GW_PID=$!
  defer "kill -TERM $GW_PID 2>/dev/null; wait $GW_PID 2>/dev/null"
  wait_for 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
}

# gw_eval DIR EXPR: evaluate EXPR on the gateway's control socket.
gw_eval() { "$MOONSTACK" repl "$1/gw.sock" -e "$2"; }

# in_hosts DIR NAMES... -- CMD...: run CMD with /etc/hosts mapping NAMES to 127.0.0.1.
in_hosts() {
  local dir=$1; shift
  local names=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do names+=("$1"); shift; done
  shift
  printf '127.0.0.1 localhost %s\n' "${names[*]}" > "$dir/hosts"
  unshare -m sh -c "mount --bind '$dir/hosts' /etc/hosts && exec \"\$@\"" sh "$@"
}

# fd_count PID: the number of open file descriptors of PID.
fd_count() { ls "/proc/$1/fd" | wc -l; }
