-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: moonstack.core.proto.from_proto (protobuf request bodies of the pRPC APIs) over
-- every schema of the guest agent's messages; the first byte picks the schema. A clean error is
-- nil and a message string. A decoded message encodes (to_proto, to_json) and decodes again.
local check = require('fuzz_check')
local proto = require('moonstack.core.proto')
local messages = require('moonstack.agent.api.messages')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local names = sorted_keys(messages)

return function(data)
  if #data < 1 then
    return
  end
  local schema = messages[names[data:byte(1) % #names + 1]]
  local msg, err = proto.from_proto(schema, data:sub(2))
  if msg == nil then
    check.check(type(err) == 'string' and #err > 0, 'from_proto error is a message')
    check.outcome(err)
    return
  end
  local enc = proto.to_proto(schema, msg)
  check.check(type(proto.to_json(schema, msg)) == 'string', 'to_json')
  local again, err2 = proto.from_proto(schema, enc)
  check.check(again ~= nil, 'from_proto(to_proto(msg)): ' .. tostring(err2))
  check.check(proto.to_proto(schema, again) == enc, 'protobuf re-encoding is stable')
end
