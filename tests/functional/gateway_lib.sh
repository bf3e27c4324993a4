# SPDX-License-Identifier: Apache-2.0
# Shared by the gateway functional tests: a real KMS (dev auth, the simulated platform of
# `moonstack sim init`) in $d, and client certificates from its SignCert for simulated CVMs
# (cvm1, cvm2: instance ids 01.., 02..; iid1, iid2) plus one from a foreign CA ($d/foreign.*).
d=$(tmpdir)
"$MOONSTACK" sim init "$d/sim" >"$d/sim.log" 2>&1 || { not_ok "moonstack sim init" "$(cat "$d/sim.log")"; finish; exit 1; }

cat >"$d/kms.lua" <<EOF
return {
  key_dir = '$d/kms-keys', domain = 'localhost', control = '$d/kms.ctl',
  listen = { host = '127.0.0.1', port = 0 },
  auth = { kind = 'dev', gateway_app_id = 'any' },
  attestation = { simulator_dir = '$d/sim', allow_simulator = true },
  image = { verify = false },
}
EOF
kms_start "$d/kms.lua" "$d/kms.log"
kport=$KMS_PORT
ok "KMS started"

# certs.lua DIR URL ROOT NAME INSTANCE_BYTE: a simulated CVM's SignCert client certificate
# (DIR/NAME.key, DIR/NAME.crt = leaf + app CA); with 'foreign', the same identity from a CA of
# our own instead
cat >"$d/certs.lua" <<'EOF'
local task = require('moonstack.core.task')
local sim = require('moonstack.sim')
local crypto = require('moonstack.crypto')
local x509 = require('moonstack.x509')
local kms_client = require('moonstack.kms.client')
local attestation = require('moonstack.tdx.attestation')
local dir, url, rootf, name, ib, mode = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]), arg[6]
local function read(p) local f = assert(io.open(p, 'rb')) local s = f:read('*a') f:close() return s end
local function write(p, s) local f = assert(io.open(p, 'wb')) f:write(s) f:close() end
local compose = ('\171'):rep(32)
task.spawn(function()
  local key = x509.generate_key()
  if mode == 'foreign' then
    local cakey = x509.generate_key()
    local ca = assert(x509.issue({ subject = 'Foreign CA', key = cakey, ca = true }))
    local leaf = assert(x509.issue({ subject = 'dstack-guest-agent', key = key, eku = { 'client_auth' },
      issuer = { cert = ca, key = cakey },
      ratls = { app_info = attestation.app_info_ext({ app_id = compose:sub(1, 20),
        compose_hash = compose, instance_id = string.char(ib):rep(20) }) } }))
    write(dir .. '/' .. name .. '.crt', leaf:pem() .. ca:pem())
  else
    local tee = assert(sim.new({ dir = dir .. '/sim', cvm = name, create = true }))
    assert(tee:emit_event('app-id', compose:sub(1, 20), { version = 1 }))
    assert(tee:emit_event('compose-hash', compose, { version = 1 }))
    assert(tee:emit_event('instance-id', string.char(ib):rep(20), { version = 1 }))
    local chain, err = kms_client.sign_cert({ url = url, tee = tee, key = key, ca = read(rootf),
      config = { subject = 'dstack-guest-agent', subject_alt_names = {}, usage_server_auth = false,
        usage_client_auth = true, ext_quote = false, ext_app_info = true } })
    tee:close()
    if not chain then
      io.stderr:write('SignCert: ', tostring(err), '\n')
      require('moonstack.native.runtime').set_exit_code(1)
      return
    end
    write(dir .. '/' .. name .. '.crt', chain[1] .. chain[2])
  end
  write(dir .. '/' .. name .. '.key', key:pkcs8_pem())
  print(crypto.hex(string.char(ib):rep(20)))
end)
EOF
KURL=https://localhost:$kport
iid1=$("$MOONSTACK" run "$d/certs.lua" "$d" "$KURL" "$d/kms-keys/root-ca.crt" cvm1 1 2>"$d/certs1.err")
check "SignCert issued the first CVM's client certificate" 0 $?
iid2=$("$MOONSTACK" run "$d/certs.lua" "$d" "$KURL" "$d/kms-keys/root-ca.crt" cvm2 2 2>"$d/certs2.err")
check "SignCert issued the second CVM's client certificate" 0 $?
"$MOONSTACK" run "$d/certs.lua" "$d" "$KURL" "$d/kms-keys/root-ca.crt" foreign 3 foreign >/dev/null 2>"$d/certs3.err"
check "a certificate from another CA with the same extensions" 0 $?
check_match "the KMS's certificate carries the app-info extension" '1\.3\.6\.1\.4\.1\.62397\.1\.9' \
  "$(openssl x509 -in "$d/cvm1.crt" -noout -text 2>&1)"

