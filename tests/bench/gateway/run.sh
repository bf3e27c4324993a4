#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Gateway proxy data path against nginx and haproxy, measured in the same run on the same
# machine, pinned as ../shared/bench/baselines/run.sh pins them: wrk on CPU 0, the backend and the
# proxy under test on CPU 1 (one worker each). Rows (issue M10, item 5):
#   1. keep-alive TLS termination, 1 KiB responses      target >= 1.3x the better of nginx/haproxy
#   2. SNI passthrough, keep-alive, 1 KiB               (ratio printed)
#   3. new TLS connection per request                   target >= 0.95x a direct TLS backend
#   4. memory with 10k idle TLS connections             target: less than nginx
#   5. bulk MiB/s through passthrough (16 MiB bodies)   (ratio printed)
# The gateway runs as `moonstack gateway` with only `proxy` and `debug` (insecure_localhost_backend):
# SNI `localhost-<port>[s].gw.bench` relays to 127.0.0.1:<port>. wrk takes its SNI from the URL's
# host, so it runs in a private mount namespace whose /etc/hosts names gw.bench hosts 127.0.0.1.
# Not pass/fail: it fails only if it cannot run. DUR (seconds per row, default 5), CONNS (64),
# ROUNDS (interleaved passes over the rows, default 3: each row prints its median).
set -euo pipefail
moonstack=$(realpath "${1:?usage: run.sh MOONSTACK}")
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
baselines=${MOONSTACK_BASELINES:-$src/../shared/bench/baselines}
tools=${MOONSTACK_TOOLS:-$(dirname "$moonstack")/../tests}
DUR=${DUR:-5}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-10000}

for c in wrk nginx haproxy taskset unshare openssl; do
  command -v $c >/dev/null || { echo "gateway bench: $c is missing (scripts/install-deps.sh bench)"; exit 1; }
done
[ -d "$baselines" ] || { echo "gateway bench: no baselines at $baselines (MOONSTACK_BASELINES)"; exit 1; }
[ -x "$tools/hold_conns" ] || { echo "gateway bench: no $tools/hold_conns (build the tests)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "gateway bench: needs root (a private /etc/hosts for wrk)"; exit 1; }

# The baselines write to /tmp/bench (their configs name it); ours lives beside them.
W=/tmp/bench
mkdir -p $W/www
dir=$(mktemp -d "${TMPDIR:-/tmp}/moonstack-bench-gw.XXXXXX")
gw_pid=
cleanup() {
  [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
  for p in backend backend-idle proxy-nginx proxy-stream proxy-nginx-idle haproxy haproxy-sni; do
    [ -f $W/$p.pid ] && kill "$(cat $W/$p.pid)" 2>/dev/null
  done
  rm -rf "$dir"
}
trap cleanup EXIT
# as many descriptors as the hard limit allows (a process without CAP_SYS_RESOURCE cannot raise
# it: 20,000 here); the gateway holds two per relayed connection
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard"
if [ $((2 * IDLE + 256)) -gt "$hard" ]; then
  IDLE=$(((hard - 256) / 2))
  echo "note: the hard limit on open files is $hard: the idle-connection rows hold $IDLE"
fi

# One P-256 key for everyone: the backend's and the peers' certificate (localhost) and the
# gateway's wildcard (*.gw.bench).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $W/key.pem \
  -out $W/cert.pem -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
cat $W/cert.pem $W/key.pem > $W/combined.pem
openssl req -x509 -key $W/key.pem -out "$dir/gw.pem" -days 30 -subj /CN=gw.bench \
  -addext 'subjectAltName=DNS:*.gw.bench' 2>/dev/null
head -c 1024 /dev/zero | tr '\0' 'a' > $W/www/1k
head -c $((16 << 20)) /dev/urandom > $W/www/16m

start_nginx() { taskset -c 1 nginx -e $W/startup-error.log -p $W -c "$1" || exit 1; }
start_nginx "$baselines/backend-nginx.conf"
start_nginx "$baselines/proxy-nginx-tls.conf"
start_nginx "$baselines/proxy-nginx-stream-sni.conf"
# the TLS proxy again with room for IDLE connections, for the memory row
sed -e "s/worker_connections [0-9]*/worker_connections $((IDLE * 2 + 1024))/" \
  -e 's/127.0.0.1:8443/127.0.0.1:8453/' -e 's/proxy-nginx.pid/proxy-nginx-idle.pid/' \
  -e 's/proxy-nginx-error.log/proxy-nginx-idle-error.log/' \
  -e "s/^worker_processes 1;/worker_processes 1;\nworker_rlimit_nofile $((IDLE * 3));/" \
  "$baselines/proxy-nginx-tls.conf" > "$dir/proxy-nginx-idle.conf"
start_nginx "$dir/proxy-nginx-idle.conf"
# a plain backend with room for IDLE connections too (the gateway connects to its backend at
# once; nginx's proxy only when a request comes)
sed -e "s/worker_connections [0-9]*/worker_connections $((IDLE * 2 + 1024))/" \
  -e 's/127.0.0.1:8081/127.0.0.1:8091/' -e 's/127.0.0.1:8082/127.0.0.1:8092/' \
  -e 's/backend.pid/backend-idle.pid/' -e 's/backend-error.log/backend-idle-error.log/' \
  -e "s/^worker_processes 1;/worker_processes 1;\nworker_rlimit_nofile $((IDLE * 3));/" \
  "$baselines/backend-nginx.conf" > "$dir/backend-idle.conf"
start_nginx "$dir/backend-idle.conf"
taskset -c 1 haproxy -D -f "$baselines/proxy-haproxy-tls.cfg" || exit 1
taskset -c 1 haproxy -D -f "$baselines/proxy-haproxy-sni.cfg" || exit 1

cat > "$dir/gateway.lua" <<EOF
return {
  proxy = {
    listen = { host = '127.0.0.1', port = 8447 },
    base_domain = 'gw.bench',
    certs = { { cert = '$dir/gw.pem', key = '$W/key.pem' } },
    workers = 1,
    timeouts = { idle = 600 },
  },
  debug = { insecure_localhost_backend = true },
  control = '$dir/gateway.sock',
  log = { level = 'warn' },
}
EOF
taskset -c 1 "$moonstack" gateway -c "$dir/gateway.lua" > "$dir/gateway.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/8447) 2>/dev/null && break
  kill -0 $gw_pid 2>/dev/null || { echo "gateway did not start:"; cat "$dir/gateway.log"; exit 1; }
  sleep 0.1
done
sleep 0.3

printf '127.0.0.1 localhost localhost-8081.gw.bench localhost-8082s.gw.bench\n' > "$dir/hosts"
in_ns() { unshare -m sh -c "mount --bind '$dir/hosts' /etc/hosts && exec \"\$@\"" sh "$@"; }

for u in https://localhost-8081.gw.bench:8447/1k https://localhost-8082s.gw.bench:8447/1k \
  https://localhost-8082s.gw.bench:8447/16m; do
  out=$(in_ns curl -sk -o "$dir/body" -w '%{http_code} %{size_download}' "$u" || true)
  want=$(stat -c %s "$W/www/$(basename "$u")")
  if [ "$out" != "200 $want" ] || ! cmp -s "$dir/body" "$W/www/$(basename "$u")"; then
    echo "gateway bench: $u answered '$out' (want 200 $want)"; cat "$dir/gateway.log"; exit 1
  fi
done

declare -A RPS XFER RPS_ALL XFER_ALL
measure() { # key url [wrk args]: one wrk run, appended to the key's samples
  local key=$1 url=$2; shift 2
  local out; out=$(in_ns taskset -c 0 wrk -t2 -c$CONNS -d${DUR}s "$@" "$url" 2>&1)
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  local xfer; xfer=$(echo "$out" | awk '/Transfer\/sec/{print $2}')
  case "$xfer" in
    *GB) xfer=$(awk -v v="${xfer%GB}" 'BEGIN{printf "%.0f", v*1024}') ;;
    *MB) xfer=${xfer%MB} ;;
    *KB) xfer=$(awk -v v="${xfer%KB}" 'BEGIN{printf "%.2f", v/1024}') ;;
    *) xfer=0 ;;
  esac
  RPS_ALL[$key]="${RPS_ALL[$key]:-} ${rps:-0}"
  XFER_ALL[$key]="${XFER_ALL[$key]:-} $xfer"
  local err; err=$(echo "$out" | grep -E 'Socket errors|Non-2xx' | tr -s ' ' | tr '\n' ';' || true)
  [ -n "$err" ] && ERRS[$key]="$err"
  return 0
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "n/a" }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN{ print (a > b ? a : b) }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A ERRS
rows=(
  "direct TLS backend, keep-alive|https://localhost:8082/1k"
  "nginx TLS-terminate, keep-alive|https://localhost:8443/1k"
  "haproxy TLS-terminate, keep-alive|https://localhost:8444/1k"
  "moonstack TLS-terminate, keep-alive|https://localhost-8081.gw.bench:8447/1k"
  "nginx SNI passthrough, keep-alive|https://localhost:8445/1k"
  "haproxy SNI passthrough, keep-alive|https://localhost:8446/1k"
  "moonstack SNI passthrough, keep-alive|https://localhost-8082s.gw.bench:8447/1k"
  "direct TLS backend, new conn/req|https://localhost:8082/1k|close"
  "nginx TLS-terminate, new conn/req|https://localhost:8443/1k|close"
  "moonstack TLS-terminate, new conn/req|https://localhost-8081.gw.bench:8447/1k|close"
  "direct TLS backend, bulk 16 MiB|https://localhost:8082/16m|bulk"
  "nginx passthrough, bulk 16 MiB|https://localhost:8445/16m|bulk"
  "haproxy passthrough, bulk 16 MiB|https://localhost:8446/16m|bulk"
  "moonstack passthrough, bulk 16 MiB|https://localhost-8082s.gw.bench:8447/16m|bulk"
)
# ROUNDS passes over every row, interleaved, so a slow spell of the machine hits all peers
# alike; each row reports its median.
for round in $(seq 1 "$ROUNDS"); do
  for r in "${rows[@]}"; do
    IFS='|' read -r key url kind <<<"$r"
    case "$kind" in
      close) measure "$key" "$url" -H 'Connection: close' ;;
      bulk) CONNS=4 measure "$key" "$url" ;;
      *) measure "$key" "$url" ;;
    esac
  done
done
echo "| row (wrk -t2 -c$CONNS -d${DUR}s on CPU 0; proxy + backend on CPU 1; median of $ROUNDS) | result |"
for r in "${rows[@]}"; do
  IFS='|' read -r key url kind <<<"$r"
  RPS[$key]=$(echo "${RPS_ALL[$key]}" | median)
  XFER[$key]=$(echo "${XFER_ALL[$key]}" | median)
  printf '| %-46s | %10s req/s | %8s MiB/s | %s\n' "$key" "${RPS[$key]}" "${XFER[$key]}" "${ERRS[$key]:-}"
done

# Memory: RSS of the proxy's processes with IDLE TLS connections established and idle.
rss_kib() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^VmRSS/{print $2}' /proc/$p/status))); done; echo $t; }
nginx_pids() { local m; m=$(cat $W/proxy-nginx-idle.pid); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
hold() { # port sni pids... -> "rss_before rss_held"
  local port=$1 sni=$2; shift 2
  local before; before=$(rss_kib "$@")
  local fifo=$dir/hold.fifo; rm -f "$fifo"; mkfifo "$fifo"
  taskset -c 0 "$tools/hold_conns" 127.0.0.1 "$port" "$IDLE" --tls "$sni" < "$fifo" > "$dir/hold.out" &
  local hp=$!
  exec 4>"$fifo"
  for _ in $(seq 1 600); do grep -q '^ready' "$dir/hold.out" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  local held; held=$(rss_kib "$@")
  local ready; ready=$(awk '/^ready/{print $2}' "$dir/hold.out")
  exec 4>&-
  wait $hp || true
  echo "$before $held $ready"
}
read -r nb nh nr <<<"$(hold 8453 localhost $(nginx_pids))"
read -r mb mh mr <<<"$(hold 8447 localhost-8091.gw.bench $gw_pid)"
printf '| %-46s | %6d conns | RSS %7d KiB (%+d KiB, %.1f KiB/conn)\n' "nginx TLS-terminate, $IDLE idle" \
  "$nr" "$nh" $((nh - nb)) "$(awk -v d=$((nh - nb)) -v n="$nr" 'BEGIN{print n ? d/n : 0}')"
printf '| %-46s | %6d conns | RSS %7d KiB (%+d KiB, %.1f KiB/conn)\n' "moonstack TLS-terminate, $IDLE idle" \
  "$mr" "$mh" $((mh - mb)) "$(awk -v d=$((mh - mb)) -v n="$mr" 'BEGIN{print n ? d/n : 0}')"

ka_peer=$(max "${RPS[nginx TLS-terminate, keep-alive]}" "${RPS[haproxy TLS-terminate, keep-alive]}")
pt_peer=$(max "${RPS[nginx SNI passthrough, keep-alive]}" "${RPS[haproxy SNI passthrough, keep-alive]}")
bulk_peer=$(max "${XFER[nginx passthrough, bulk 16 MiB]}" "${XFER[haproxy passthrough, bulk 16 MiB]}")
echo
echo "ratios (moonstack / peer):"
echo "  keep-alive TLS termination vs better of nginx/haproxy: $(ratio "${RPS[moonstack TLS-terminate, keep-alive]}" "$ka_peer")  (target >= 1.30)"
echo "  keep-alive SNI passthrough vs better of nginx/haproxy: $(ratio "${RPS[moonstack SNI passthrough, keep-alive]}" "$pt_peer")  (target >= 1.30)"
echo "  new TLS connections vs the direct TLS backend:         $(ratio "${RPS[moonstack TLS-terminate, new conn/req]}" "${RPS[direct TLS backend, new conn/req]}")  (target >= 0.95)"
echo "  bulk passthrough MiB/s vs better of nginx/haproxy:     $(ratio "${XFER[moonstack passthrough, bulk 16 MiB]}" "$bulk_peer")"
echo "  RSS with $IDLE idle TLS connections vs nginx:         $(ratio "$mh" "$nh")  (target < 1.00)"
