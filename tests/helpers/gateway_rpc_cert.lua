-- SPDX-License-Identifier: Apache-2.0
-- Test helper: the gateway's RegisterCvm certificate, issued by a KMS root with the gateway's
-- app id, as `moonstack dev up` makes it (moonstack.devstack.certs.gateway_rpc).
--   moonstack run tests/helpers/gateway_rpc_cert.lua OUTDIR KMS_KEY_DIR APP_ID_HEX
-- writes OUTDIR/rpc.pem (the certificate, then the KMS root) and OUTDIR/rpc.key (0600), and
-- prints the app id the certificate carries (hex).
local certs = require('moonstack.devstack.certs')
local x509 = require('moonstack.x509')
local fs = require('moonstack.core.fs')
local hex = require('moonstack.crypto').hex
local out, key_dir, app = arg[1], arg[2], arg[3]
assert(out and key_dir and app, 'usage: gateway_rpc_cert.lua OUTDIR KMS_KEY_DIR APP_ID_HEX')
local paths = assert(certs.gateway_rpc(out, key_dir, app))
local cert = assert(x509.cert(assert(fs.read_file(paths.cert))))
print(hex(cert:ratls('app_id')))
return 0
