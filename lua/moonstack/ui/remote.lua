-- SPDX-License-Identifier: Apache-2.0
-- The calling side of another daemon's dashboard part, over its admin listener (the service
-- client modules — moonstack.kms.client, moonstack.gateway.client — wrap these for the hub):
--   feed(conn, since)        GET <url>/dashboard/feed?since=N   -> { part, seq, snapshot?, events }
--   action(conn, op, body)   POST <url>/dashboard/api/<op>      -> status, decoded answer
-- conn = { url = admin base URL, token = admin token?, tls = moonstack.http.client tls?,
-- timeout_ms? }. The token goes in `Authorization: Bearer`, never in the URL.
local http = require('moonstack.http.client')
local wire = require('moonstack.ui.wire')

local M = {}

--- Default deadline of a call, in milliseconds.
M.TIMEOUT_MS = 3000
--- Largest answer read.
M.MAX_ANSWER = 8 * 1024 * 1024

local function headers(conn, json)
  local h = {}
  if conn.token then
    h['Authorization'] = 'Bearer ' .. conn.token
  end
  if json then
    h['Content-Type'] = 'application/json'
  end
  return h
end

local function base(conn)
  return (conn.url:gsub('/+$', ''))
end

-- The `error` of an answer, or its status.
local function why(resp, obj)
  if type(obj) == 'table' and type(obj.error) == 'string' then
    return ('HTTP %d: %s'):format(resp.status, obj.error:sub(1, 300))
  end
  return ('HTTP %d'):format(resp.status)
end

--- GET the part's feed after `since` (inside a task). Returns the decoded answer, or nil,
--- msg, code (transport codes; EDENIED for 401/403; EPROTO otherwise).
function M.feed(conn, since)
  local resp, err, code = http.request({ url = ('%s/dashboard/feed?since=%d'):format(base(conn),
    math.floor(tonumber(since) or 0)), method = 'GET', headers = headers(conn), tls = conn.tls,
    timeout_ms = conn.timeout_ms or M.TIMEOUT_MS, max_response = M.MAX_ANSWER })
  if not resp then
    return nil, err, code
  end
  local obj = wire.decode(resp.body or '')
  if resp.status ~= 200 then
    return nil, why(resp, obj), (resp.status == 401 or resp.status == 403) and 'EDENIED' or 'EPROTO'
  end
  if type(obj) ~= 'table' or type(obj.seq) ~= 'number' or type(obj.part) ~= 'string' then
    return nil, 'EPROTO: the feed answer is not a dashboard feed', 'EPROTO'
  end
  return obj
end

--- POST `body` (JSON text) to the part's action `op` (inside a task). Returns status, the
--- decoded answer (or { error }), or nil, msg, code for transport failures.
function M.action(conn, op, body)
  if not tostring(op):match('^[%w_]+$') then
    return nil, 'EINVAL: bad action name', 'EINVAL'
  end
  local resp, err, code = http.request({ url = ('%s/dashboard/api/%s'):format(base(conn), op),
    method = 'POST', body = body ~= '' and body or '{}', headers = headers(conn, true),
    tls = conn.tls, timeout_ms = conn.timeout_ms or 30000, max_response = M.MAX_ANSWER })
  if not resp then
    return nil, err, code
  end
  local obj = wire.decode(resp.body or '')
  if type(obj) ~= 'table' then
    obj = { error = why(resp) }
  end
  return resp.status, obj
end

return M
