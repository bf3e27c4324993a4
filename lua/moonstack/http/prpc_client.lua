-- SPDX-License-Identifier: Apache-2.0
-- The calling side of pRPC with JSON bodies, as dstack's services answer (moonstack.core.prpc
-- serves the other side): POST <base>/prpc/<Method>?json over HTTP(S). The client modules of
-- the KMS and the gateway call through it.
--
--   prpc_client.call(base, 'GetMeta', '{}', { tls = {...}, timeout_ms = 30000 })
--     -> the decoded answer (a table) | nil, msg, code
local cjson = require('cjson.safe')
local errors = require('moonstack.core.errors')
local http = require('moonstack.http.client')

local M = {}

--- Largest answer read by default, in bytes.
M.MAX_ANSWER = 1048576

--- <base>/prpc/<method>?json (a base already ending in /prpc keeps it; upstream appends /prpc
--- to each URL it is configured with).
function M.url(base, method)
  base = base:gsub('/+$', '')
  if not base:find('/prpc$') then
    base = base .. '/prpc'
  end
  return base .. '/' .. method .. '?json'
end

-- The `{"error": ...}` of a failed call (at most 500 bytes), else the status and the body's start.
local function rpc_error(resp)
  local obj = cjson.decode(resp.body or '')
  if type(obj) == 'table' and type(obj.error) == 'string' then
    return obj.error:sub(1, 500)
  end
  return ('HTTP %d: %s'):format(resp.status, (resp.body or ''):sub(1, 200))
end

--- Call `method` at `base` with the JSON text `body` (inside a task). opts = { tls (as
--- moonstack.http.client takes it), timeout_ms = 30000, max_response = M.MAX_ANSWER }.
--- Returns the decoded JSON object, or nil, msg, code: EDENIED (a 400: the service's reason),
--- EPROTO (another status, or an answer that is not a JSON object), or the transport's code
--- (ETLS, ECONNREFUSED, ETIMEDOUT...).
function M.call(base, method, body, opts)
  opts = opts or {}
  local url = M.url(base, method)
  local resp, err, code = http.request({ url = url, method = 'POST', body = body,
    headers = { ['Content-Type'] = 'application/json' }, tls = opts.tls,
    timeout_ms = opts.timeout_ms or 30000, max_response = opts.max_response or M.MAX_ANSWER })
  if not resp then
    return nil, err, code
  end
  if resp.status ~= 200 then
    return nil, rpc_error(resp), resp.status == 400 and 'EDENIED' or 'EPROTO'
  end
  local obj = cjson.decode(resp.body or '')
  if type(obj) ~= 'table' then
    return errors.fail('EPROTO', url .. ' answered with invalid JSON')
  end
  return obj
end

return M
