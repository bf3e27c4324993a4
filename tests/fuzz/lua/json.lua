-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: moonstack.core.json (the strict JSON reader of policies, configs and RFC 8785
-- canonical forms): decode, decode_with_raw and canonical on arbitrary text. A decoded value
-- encodes, the encoding decodes, and the canonical form is a fixed point.
local check = require('fuzz_check')
local json = require('moonstack.core.json')

return function(data)
  local v = check.result('json.decode', json.decode(data))
  check.result('json.decode_with_raw', json.decode_with_raw(data))
  local c = check.result('json.canonical', json.canonical(data))
  check.check((v ~= nil) == (c ~= nil), 'decode and canonical agree on validity')
  if v ~= nil then
    local enc = json.encode(v)
    check.check(type(enc) == 'string', 'encode')
    check.check(json.decode(enc) ~= nil, 'the encoding decodes')
    check.check(json.canonical(c) == c, 'canonical form is a fixed point')
  end
end
