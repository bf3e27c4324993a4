-- SPDX-License-Identifier: Apache-2.0
-- Test helper: `moonstack run sim_other_device.lua SRC DST` makes DST a second simulated TDX
-- machine under SRC's PKI: the same root, PCK platform CA and TCB signing keys (a verifier
-- trusting SRC's root and collateral accepts its quotes), but a fresh PPID — so another
-- deviceId (H256(PPID)) — in a PCK certificate re-issued by SRC's platform CA. For the tests of
-- device allow-lists (the eth auth backend's KMS replicas). DST must not exist.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local x509 = require('moonstack.x509')

local src, dst = arg[1], arg[2]
local function read(p)
  local f = assert(io.open(src .. '/' .. p, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end
local function write(p, s)
  local f = assert(io.open(dst .. '/' .. p, 'wb'))
  f:write(s)
  f:close()
  assert(uv.fs_chmod(dst .. '/' .. p, p:find('key') and 384 or 420))
end

assert(not uv.fs_stat(dst), dst .. ' exists')
assert(uv.fs_mkdir(dst, 448))
assert(uv.fs_mkdir(dst .. '/cvms', 448))
for _, f in ipairs({ 'root-ca.pem', 'root-ca.key.pem', 'pck-platform-ca.pem', 'pck-platform-ca.key.pem',
  'pck.key.pem', 'tcb-signing.pem', 'tcb-signing.key.pem', 'attestation.key.pem' }) do
  write(f, read(f))
end
local conf = read('platform.conf')
local old = crypto.unhex(assert(conf:match('\nppid=(%x+)')))
local new = crypto.random(#old)
write('platform.conf', (conf:gsub('\nppid=%x+', '\nppid=' .. crypto.hex(new))))

local pck = assert(x509.cert(read('pck.pem')))
local info = pck:info()
local SGX = '1.2.840.113741.1.13.1'
local exts = {}
for _, e in ipairs(info.extensions) do
  if e.oid == SGX then
    local at = assert(e.value:find(old, 1, true), 'PPID not found in the SGX extension')
    exts[#exts + 1] = { oid = SGX, value = e.value:sub(1, at - 1) .. new .. e.value:sub(at + #old),
      critical = e.critical, der = true }
  end
end
assert(#exts == 1, 'no SGX extension in pck.pem')
local ca = assert(x509.cert(read('pck-platform-ca.pem')))
local cert = assert(x509.issue({ subject = { cn = info.cn, o = info.org },
  key = assert(x509.load_key(read('pck.key.pem'))), issuer = { cert = ca,
    key = assert(x509.load_key(read('pck-platform-ca.key.pem'))) },
  not_before = info.not_before, not_after = info.not_after, key_usage = { 'digital_signature',
    'non_repudiation' }, extensions = exts }))
write('pck.pem', cert:pem())
print(crypto.hex(crypto.sha256(new)))
