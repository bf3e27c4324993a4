-- SPDX-License-Identifier: Apache-2.0
-- How others talk to the VMM (the VMM service's client module):
--   * its API, for `moonstack vm` and tools: new(url, opts) with url `http(s)://host:port` or
--     `unix:PATH`; client:call(Method, body) posts pRPC JSON (/prpc/<Method>?json, as upstream's
--     vmm-cli.py does) and decodes the answer; client:stream(path, on_data) reads a streamed
--     answer (GET /logs?follow=true) as it comes;
--   * its host API, for the agent in a CVM (kms-vmm-gateway.md §4.7): host_api(transport) with
--     notify(event, payload) (boot.progress, boot.error, shutdown.progress, instance.info) and
--     info(). The transport is a table naming how to reach the VMM: { unix = PATH } (the
--     process backend's socket in the VM's work dir); vsock and virtio-serial come with M9.
-- Calls run inside a task; failures are nil, 'CODE: message', CODE (EVMM: the VMM answered an
-- error, its message kept).
local uv = require('luv')
local cjson = require('cjson.safe')
local errors = require('moonstack.core.errors')
local codec = require('moonstack.core.codec')
local http = require('moonstack.http.client')
local task = require('moonstack.core.task')

local M = {}

--- The default API address of a VMM (upstream's `unix:./vmm.sock`).
M.DEFAULT_URL = 'unix:vmm.sock'

local Client = {}
Client.__index = Client

--- Parse a VMM address: `unix:PATH` -> { unix = PATH }; `http(s)://host[:port][/base]` ->
--- { url = base without the trailing slash }. Returns it or nil, 'EINVAL: ...'.
function M.parse_url(url)
  if type(url) ~= 'string' or url == '' then
    return errors.fail('EINVAL', 'the VMM URL is empty')
  end
  local path = url:match('^unix:(.+)$')
  if path then
    return { unix = path }
  end
  if url:match('^https?://[^/]+') then
    return { url = (url:gsub('/+$', '')) }
  end
  return errors.fail('EINVAL', ('%q is not a VMM URL (http(s)://host:port or unix:PATH)'):format(url))
end

--- A client of the VMM at `url`. opts = { token (Bearer), user + password (Basic),
--- timeout_ms = 30000 }. Returns it or nil, msg, code.
function M.new(url, opts)
  local where, err, code = M.parse_url(url)
  if not where then
    return nil, err, code
  end
  opts = opts or {}
  local headers = {}
  if opts.token and opts.token ~= '' then
    headers.authorization = 'Bearer ' .. opts.token
  elseif opts.user and opts.password then
    headers.authorization = 'Basic ' .. codec.base64(opts.user .. ':' .. opts.password)
  end
  return setmetatable({ where = where, headers = headers, timeout_ms = opts.timeout_ms or 30000 },
    Client)
end

-- One HTTP request to the VMM: the response or nil, msg, code.
function Client:request(method, path, body)
  local headers = { ['content-type'] = 'application/json' }
  for k, v in pairs(self.headers) do
    headers[k] = v
  end
  local o = { method = method, body = body, headers = headers, timeout_ms = self.timeout_ms }
  if self.where.unix then
    o.unix, o.path = self.where.unix, path
  else
    o.url = self.where.url .. path
  end
  local resp, err, code = http.request(o)
  if not resp then
    return nil, ('cannot reach the VMM at %s: %s'):format(self.where.unix or self.where.url,
      tostring(err)), code
  end
  return resp
end

--- Call pRPC method `method` with `body` (a table, JSON-encoded). Returns the decoded answer or
--- nil, 'EVMM: <the VMM's error>', 'EVMM' (or a transport code).
function Client:call(method, body)
  local text = body == nil and '{}' or (type(body) == 'string' and body or cjson.encode(body))
  local resp, err, code = self:request('POST', '/prpc/' .. method .. '?json', text)
  if not resp then
    return nil, err, code
  end
  local obj = cjson.decode(resp.body)
  if resp.status ~= 200 then
    local why = type(obj) == 'table' and type(obj.error) == 'string' and obj.error
      or ('HTTP %d: %s'):format(resp.status, resp.body:sub(1, 300))
    return errors.fail(resp.status == 401 and 'EAUTH' or 'EVMM', why)
  end
  if type(obj) ~= 'table' then
    return errors.fail('EPROTO', method .. ': the VMM answered something that is not JSON')
  end
  return obj
end

--- GET `path` and return the whole body (non-streamed answers: /logs without follow).
function Client:get(path)
  local resp, err, code = self:request('GET', path)
  if not resp then
    return nil, err, code
  end
  if resp.status ~= 200 then
    return errors.fail(resp.status == 401 and 'EAUTH' or 'EVMM',
      ('HTTP %d: %s'):format(resp.status, resp.body:sub(1, 300)))
  end
  return resp.body
end

-- Decode a chunked body incrementally: returns a function(data) -> decoded part.
local function dechunker()
  local buf, need = '', nil
  return function(data)
    buf = buf .. data
    local out = {}
    while true do
      if not need then
        local line_end = buf:find('\r\n', 1, true)
        if not line_end then
          break
        end
        need = tonumber(buf:sub(1, line_end - 1):match('^%x+'), 16) or 0
        buf = buf:sub(line_end + 2)
      end
      if #buf < need + 2 then
        break
      end
      out[#out + 1] = buf:sub(1, need)
      buf, need = buf:sub(need + 3), nil
    end
    return table.concat(out)
  end
end

--- GET `path` and hand the body to on_data(chunk) as it arrives (a followed log), until the
--- VMM closes the connection or on_data returns false. Over plain HTTP or a unix socket.
--- Returns true or nil, msg, code.
function Client:stream(path, on_data)
  if self.where.url and self.where.url:match('^https:') then
    return errors.fail('ENOTSUP', 'following a stream over https is not supported; use unix: or http:')
  end
  local host, port = (self.where.url or ''):match('^http://%[?([^%]/]-)%]?:?(%d*)$')
  local conn = self.where.unix and uv.new_pipe(false) or uv.new_tcp()
  local head = { ('GET %s HTTP/1.1'):format(path), 'Host: ' .. (host or 'localhost'),
    'Connection: close' }
  for k, v in pairs(self.headers) do
    head[#head + 1] = k .. ': ' .. v
  end
  local request = table.concat(head, '\r\n') .. '\r\n\r\n'
  return task.await(function(resume)
    local buf, headers_done, decode = '', false, nil
    local function done(...)
      if not conn:is_closing() then
        conn:close()
      end
      resume(...)
    end
    local function on_read(err, data)
      if err or not data then
        return done(err == nil and true or nil, err and ('EIO: ' .. err), err and 'EIO')
      end
      if headers_done then
        if on_data(decode and decode(data) or data) == false then
          return done(true)
        end
        return
      end
      buf = buf .. data
      local e = buf:find('\r\n\r\n', 1, true)
      if not e then
        return
      end
      local status = tonumber(buf:match('^HTTP/%d%.%d (%d+)'))
      local hdrs = buf:sub(1, e):lower()
      local body = buf:sub(e + 4)
      headers_done = true
      if hdrs:find('transfer%-encoding:%s*chunked') then
        decode = dechunker()
      end
      if status ~= 200 then
        return done(errors.fail('EVMM', ('HTTP %s: %s'):format(tostring(status), body:sub(1, 300))))
      end
      if #body > 0 and on_data(decode and decode(body) or body) == false then
        return done(true)
      end
    end
    local function on_connect(err)
      if err then
        return done(errors.fail('ECONNREFUSED', 'cannot reach the VMM: ' .. tostring(err)))
      end
      conn:write(request)
      conn:read_start(on_read)
    end
    if self.where.unix then
      conn:connect(self.where.unix, on_connect)
    else
      conn:connect(host == 'localhost' and '127.0.0.1' or host, tonumber(port) or 80, on_connect)
    end
    return function()
      if not conn:is_closing() then
        conn:close()
      end
    end
  end)
end

local HostApi = {}
HostApi.__index = HostApi

--- The VMM's host API over `transport` ({ unix = PATH }). opts.timeout_ms (5000).
function M.host_api(transport, opts)
  if type(transport) ~= 'table' or type(transport.unix) ~= 'string' then
    error('vmm.client.host_api: transport { unix = PATH } required', 2)
  end
  return setmetatable({ transport = transport, timeout_ms = opts and opts.timeout_ms or 5000 },
    HostApi)
end

-- POST a host API method; the decoded answer or nil, msg, code.
function HostApi:call(method, body)
  local resp, err = http.request({ unix = self.transport.unix, path = '/api/' .. method,
    method = 'POST', json = body or {}, timeout_ms = self.timeout_ms })
  if not resp then
    return nil, ('EHOSTAPI: the host API at %s: %s'):format(self.transport.unix, tostring(err)),
      'EHOSTAPI'
  end
  local obj = cjson.decode(resp.body)
  if resp.status ~= 200 then
    return nil, ('EHOSTAPI: %s: %s'):format(method, type(obj) == 'table' and tostring(obj.error)
      or resp.body:sub(1, 200)), 'EHOSTAPI'
  end
  return obj or {}
end

--- Notify{event, payload}: tell the VMM something about this CVM. True or nil, msg, code.
function HostApi:notify(event, payload)
  local ok, err, code = self:call('Notify', { event = event, payload = payload or '' })
  if not ok then
    return nil, err, code
  end
  return true
end

--- Info(): the VMM's name and version.
function HostApi:info()
  return self:call('Info')
end

return M
