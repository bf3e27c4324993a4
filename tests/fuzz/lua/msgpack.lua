-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: moonstack.core.msgpack.decode on arbitrary bytes (RA-TLS app info, attestation
-- v1), then the app-info reader over the same bytes. A decoded value re-encodes and decodes
-- back to an encoding of the same length.
local check = require('fuzz_check')
local msgpack = require('moonstack.core.msgpack')
local attestation = require('moonstack.tdx.attestation')

return function(data)
  local v, err, code = msgpack.decode(data)
  if v == nil and err ~= nil then
    check.result('msgpack.decode', v, err, code)
  elseif v ~= nil then
    local ok, enc = pcall(msgpack.encode, v)
    if ok and enc then
      local v2 = msgpack.decode(enc)
      check.check(v2 ~= nil and #msgpack.encode(v2) == #enc, 'msgpack round trip')
    end
  end
  check.result('attestation.app_info_decode', attestation.app_info_decode(data))
end
