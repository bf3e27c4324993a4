# SPDX-License-Identifier: Apache-2.0
# A real ACME CA for the certbot tests (source after lib.sh, inside in_test_namespaces: the
# fixed ports are the test's alone): pebble and pebble-challtestsrv (Debian `pebble`).
#   acme_tools_check             not_ok unless pebble, challtestsrv, dig, openssl, curl are here
#   acme_pebble_start DIR [S]    pebble's HTTPS listener certified by a CA of ours (DIR/tls-ca.pem:
#                                the certbot's `ca`), challtestsrv (DNS 127.0.0.1:8053, management
#                                http://127.0.0.1:8055), pebble (directory
#                                https://127.0.0.1:14000/dir, certificates valid S seconds, no
#                                authorization reuse, no VA sleep), pebble's root in DIR/root.pem
#                                (regenerated on every start); logs DIR/pebble.log, DIR/cts.log
#   pebble_accounts / pebble_orders / pebble_issued   what pebble's log counts so far
acme_tools_check() {
  local c
  for c in pebble pebble-challtestsrv dig openssl python3 curl; do
    command -v $c >/dev/null || { not_ok "$c installed (scripts/install-deps.sh)"; return 1; }
  done
}

acme_pebble_start() {
  PEBBLE_DIR=$1
  local dir=$1 validity=${2:-3600}
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=pebble-tls-ca -keyout "$dir/tls-ca.key" -out "$dir/tls-ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$dir/ext.cnf"
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/tls-ca.pem" -CAkey "$dir/tls-ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/tls.pem" 2>/dev/null
  cat > "$dir/pebble.json" <<CFG
{"pebble":{"listenAddress":"127.0.0.1:14000","managementListenAddress":"127.0.0.1:15000",
 "certificate":"$dir/tls.pem","privateKey":"$dir/tls.key","httpPort":5002,"tlsPort":5001,
 "ocspResponderURL":"","externalAccountBindingRequired":false,"certificateValidityPeriod":$validity}}
CFG
  pebble-challtestsrv -dns01 127.0.0.1:8053 -management 127.0.0.1:8055 -http01 "" -https01 "" \
    -tlsalpn01 "" > "$dir/cts.log" 2>&1 &
  defer "kill $! 2>/dev/null"
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    pebble -config "$dir/pebble.json" -dnsserver 127.0.0.1:8053 > "$dir/pebble.log" 2>&1 &
  defer "kill $! 2>/dev/null"
  wait_for 20 curl -sf --cacert "$dir/tls-ca.pem" https://127.0.0.1:14000/dir >/dev/null ||
    { not_ok "pebble started" "$(tail -5 "$dir/pebble.log")"; return 1; }
  wait_for 10 curl -s -o /dev/null -X POST -d '{}' http://127.0.0.1:8055/clear-request-history ||
    { not_ok "challtestsrv started" "$(tail -5 "$dir/cts.log")"; return 1; }
  curl -sf --cacert "$dir/tls-ca.pem" https://127.0.0.1:15000/roots/0 > "$dir/root.pem"
  check_match "pebble's root from its management port" "BEGIN CERTIFICATE" "$(cat "$dir/root.pem")"
}

# pebble logs "There are now N accounts in memory" per new account, "Added order ... to the db"
# per order and "Issued certificate serial S for order O" per certificate
pebble_accounts() { grep -c 'There are now [0-9]* accounts in memory' "$PEBBLE_DIR/pebble.log"; }
pebble_orders() { grep -c 'Added order .* to the db' "$PEBBLE_DIR/pebble.log"; }
pebble_issued() { grep -c 'Issued certificate serial' "$PEBBLE_DIR/pebble.log"; }
