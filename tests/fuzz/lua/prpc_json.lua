-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: a pRPC call as the API servers decode it (moonstack.core.prpc.call): the first
-- byte picks the guest agent's message schema (bits 1..) and the form (bit 0: a POST with a
-- JSON body, or a GET whose query string, parsed by moonstack.http.util, carries the fields);
-- the method echoes its arguments. The answer must be 200 with the echo or 400 with a message,
-- both as JSON; never a 500 (a decoder that raised).
local check = require('fuzz_check')
local prpc = require('moonstack.core.prpc')
local util = require('moonstack.http.util')
local messages = require('moonstack.agent.api.messages')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local names = sorted_keys(messages)
local methods = {}
for i, k in ipairs(names) do
  methods[i] = { input = messages[k], output = messages[k], call = function(args) return args end }
end

return function(data)
  if #data < 1 then
    return
  end
  local b = data:byte(1)
  local m = methods[math.floor(b / 2) % #methods + 1]
  local rest = data:sub(2)
  local req
  if b % 2 == 0 then
    req = { method = 'POST', args = {}, headers = { ['content-type'] = 'application/json' },
      body = rest }
  else
    req = { method = 'GET', args = util.parse_query(rest), headers = {}, body = '' }
  end
  local status, body, headers = prpc.call('Fuzz', m, req)
  check.check(status == 200 or status == 400, 'status 200 or 400, got ' .. tostring(status))
  check.check(type(body) == 'string' and headers['content-type'] == 'application/json',
    'a JSON answer')
end
