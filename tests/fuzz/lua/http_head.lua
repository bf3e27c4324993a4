-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: what our code does with an HTTP request head (libwebsockets parses the bytes
-- into a method, a path and headers; this driver splits them the same simple way): the query
-- string (moonstack.http.util.parse_query), the admin/API authentication (moonstack.http.auth
-- .judge with a token: Bearer, X-Admin-Token, ?token=), the pRPC content negotiation
-- (prpc.wants_json) and URL parsing (util.parse_url on the target). Each must answer, never raise;
-- the auth verdict is true only with the right token.
local check = require('fuzz_check')
local util = require('moonstack.http.util')
local auth = require('moonstack.http.auth')
local prpc = require('moonstack.core.prpc')

local TOKEN = 'fuzz-secret-token'

return function(data)
  local line, rest = data:match('^([^\r\n]*)\r?\n?(.*)$')
  local method, target = line:match('^(%S+)%s+(%S+)')
  method = method or 'GET'
  target = target or '/'
  local path, query = target:match('^([^?]*)%??(.*)$')
  local headers = {}
  for name, value in rest:gmatch('([^:\r\n]+):[ \t]*([^\r\n]*)') do
    headers[name:lower()] = value
  end
  local req = { method = method, path = path, args = util.parse_query(query), headers = headers,
    peer = '127.0.0.1', body = '' }
  function req.header(self, name) return self.headers[name] end
  local ok, status = auth.judge(req, { tokens = { TOKEN } }, nil, { query_token = true })
  local given = headers['x-admin-token'] or (headers.authorization or ''):match('^[Bb]earer%s+(%S+)%s*$')
    or (method == 'GET' and req.args.token) or nil
  check.check(ok == (given == TOKEN), 'auth verdict')
  check.check(ok or status == 401, 'denied with 401')
  prpc.wants_json(req)
  util.parse_url(target)
  util.parse_url('http://' .. (headers.host or 'x') .. target)
end
