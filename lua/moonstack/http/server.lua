-- SPDX-License-Identifier: Apache-2.0
-- HTTP and websocket servers for components: routes dispatched to Lua handlers (each request
-- runs in its own task, so handlers may wait on I/O), JSON helpers, the error contract mapped
-- to statuses, and websocket endpoints with broadcast. Transport: moonstack.native.http.
local native = require('moonstack.native.http')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log').new('http')
local static = require('moonstack.http.static')
local task = require('moonstack.core.task')
local tables = require('moonstack.core.tables')
local util = require('moonstack.http.util')

local M = {}

local Server = {}
Server.__index = Server

local Request = {}
Request.__index = Request

--- The decoded JSON body, or nil, message (an empty body decodes to {} when `empty_ok`).
function Request:json(empty_ok)
  if self.body == '' and empty_ok then
    return {}
  end
  return util.decode_json(self.body)
end

--- Any request header by name (case-insensitive), including ones lws does not know.
function Request:header(name)
  local v = self.headers[name:lower()]
  if v ~= nil then
    return v
  end
  return self._exchange:header(name)
end

local Response = {}
Response.__index = Response

--- Send a response. `body` is a string; headers a table. Returns true or nil, msg, code.
function Response:send(status, body, headers)
  if self.sent then
    return nil, 'EALREADY: response already sent', 'EALREADY'
  end
  local h = {}
  for k, v in pairs(self.headers) do
    h[k] = v
  end
  for k, v in pairs(headers or {}) do
    h[k:lower()] = v
  end
  -- marked sent only once respond() accepted it: if it raises (a bad header), the error
  -- reply still goes out
  local ok, err, code = self._exchange:respond(status, h, body or '')
  self.sent = true
  return ok, err, code
end

local Stream = {}
Stream.__index = Stream

--- Queue `data` on a streamed answer. Returns true, or nil, msg, code (ECLOSED: the client
--- went away; ENOBUFS: it does not read).
function Stream:write(data)
  return self._exchange:write(data)
end

--- Bytes queued and not yet written to the client.
function Stream:queued()
  return self._exchange:queued()
end

--- Whether the client is still there.
function Stream:connected()
  return self._exchange:connected()
end

--- End the answer: the connection closes once the queued bytes are written. Idempotent.
function Stream:close()
  self._exchange:finish()
end

--- Answer with a stream (no Content-Length; the connection closes at the end), for bodies
--- that grow while the client reads (a followed log). Returns the stream { write(data),
--- queued(), connected(), close() } or nil, msg, code.
function Response:stream(status, headers)
  if self.sent then
    return nil, 'EALREADY: response already sent', 'EALREADY'
  end
  local h = {}
  for k, v in pairs(self.headers) do
    h[k] = v
  end
  for k, v in pairs(headers or {}) do
    h[k:lower()] = v
  end
  local ok, err, code = self._exchange:begin(status, h)
  self.sent = true
  if not ok then
    return nil, err, code
  end
  return setmetatable({ _exchange = self._exchange }, Stream)
end

--- Send `value` as compact JSON.
function Response:json(status, value)
  return self:send(status, util.encode_json(value), { ['content-type'] = 'application/json' })
end

--- Send `{"error": msg}` with `status`.
function Response:error(status, msg)
  return self:json(status, { error = tostring(msg) })
end

--- Set a header sent with the response.
function Response:set_header(name, value)
  self.headers[name:lower()] = value
end

--- Create a server. Options:
---   listen = { host = '127.0.0.1', port = 8080 } or { unix = PATH, mode = 384 (0600) }
---   tls = { cert = PEM, key = PEM, ca = PEM?, client_cert = 'none'|'request'|'require',
---           verify = function(peer) -> ok, reason }
---   name = 'api', max_body = bytes, headers = { header sent with every response }
---   on_error = function(req, err) -> status, body_table (map handler errors yourself)
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({
    opts = opts,
    name = opts.name or 'http',
    routes = {},
    prefix_routes = {},
    ws = {},
    ws_clients = {},
    default_headers = opts.headers or {},
  }, Server)
  return self
end

local function compile(pattern)
  local names = {}
  local lua_pattern = '^' .. pattern:gsub('[%-%.%+%[%]%(%)%$%^%%%?%*]', '%%%0'):gsub(
    '/:([%w_]+)', function(name)
      names[#names + 1] = name
      return '/([^/]+)'
    end) .. '$'
  return lua_pattern, names
end

--- Add a route. `pattern` is an exact path, may hold `:name` segments, or end with `*` for a
--- prefix. `handler(req, res)` may respond through `res`, or return status, value [, headers]
--- (a table value is sent as JSON, a string as is). Errors raised become JSON error replies.
function Server:route(method, pattern, handler)
  assert(type(handler) == 'function', 'route: handler must be a function')
  method = method:upper()
  if pattern:sub(-1) == '*' then
    table.insert(self.prefix_routes, { method = method, prefix = pattern:sub(1, -2), handler = handler })
    return self
  end
  local lp, names = compile(pattern)
  table.insert(self.routes, { method = method, pattern = lp, names = names, handler = handler })
  return self
end

function Server:get(pattern, handler)
  return self:route('GET', pattern, handler)
end

function Server:post(pattern, handler)
  return self:route('POST', pattern, handler)
end

--- Serve the ui/ subtree `dir` (e.g. 'kms/onboarding'; '' for all of ui/) under the URL
--- `prefix` for GET and HEAD, with moonstack.http.static (opts: cache_control, headers, index).
--- A prefix without a trailing '/' also redirects itself to '<prefix>/' (relative links in
--- the index page need it). Routes added earlier win over it.
function Server:static(prefix, dir, opts)
  assert(type(prefix) == 'string' and prefix:sub(1, 1) == '/', 'static: prefix must start with /')
  local files = static.new(dir, opts)
  if prefix:sub(-1) ~= '/' then
    local slash = prefix .. '/'
    self:get(prefix, function() return 301, '', { location = slash } end)
    prefix = slash
  end
  return self:get(prefix .. '*', function(req) return files:serve(req, req.params.rest) end)
end

--- Add a websocket endpoint at `path` (before listen). Handlers: on_open(ws),
--- on_message(ws, data, binary), on_close(ws); authorize(req) (optional) judges the upgrade
--- request before it is answered — synchronously (no waiting: no bcrypt), req as a handler's
--- with req:header() — and only `true` accepts it (else the connection is closed without a
--- 101). `ws` has send(data[, binary]), close(), id(), path(), query() (the upgrade's query
--- string), peer() (the client's address).
function Server:websocket(path, handlers)
  assert(not self.native, 'websocket endpoints must be added before listen()')
  self.ws[path] = handlers or {}
  self.ws_clients[path] = {}
  return self
end

--- Send `data` (a string, or a table sent as JSON) to every client of the endpoint `path`.
--- Returns the number of clients it was queued for.
function Server:broadcast(path, data)
  if type(data) == 'table' then
    data = util.encode_json(data)
  end
  local n = 0
  for ws in pairs(self.ws_clients[path] or {}) do
    if ws:send(data) then
      n = n + 1
    end
  end
  return n
end

--- Number of open websocket clients on `path`.
function Server:client_count(path)
  return tables.count(self.ws_clients[path] or {})
end

local function match(self, method, path)
  local allowed = false
  for _, r in ipairs(self.routes) do
    local caps = { path:match(r.pattern) }
    if caps[1] ~= nil or path:match(r.pattern) then
      if r.method == method or r.method == '*' or (method == 'HEAD' and r.method == 'GET') then
        local params = {}
        for i, name in ipairs(r.names) do
          params[name] = caps[i]
        end
        return r.handler, params
      end
      allowed = true
    end
  end
  for _, r in ipairs(self.prefix_routes) do
    if path:sub(1, #r.prefix) == r.prefix then
      if r.method == method or r.method == '*' or (method == 'HEAD' and r.method == 'GET') then
        return r.handler, { rest = path:sub(#r.prefix + 1) }
      end
      allowed = true
    end
  end
  return nil, allowed
end

local function send_result(res, status, value, headers)
  if res.sent then
    return
  end
  if type(status) ~= 'number' then
    res:error(500, 'handler returned no response')
    log.error('handler returned no response', { path = res.path })
    return
  end
  if type(value) == 'table' then
    local h = { ['content-type'] = 'application/json' }
    for k, v in pairs(headers or {}) do
      h[k] = v
    end
    res:send(status, util.encode_json(value), h)
  else
    res:send(status, value ~= nil and tostring(value) or '', headers)
  end
end

function Server:_handle_error(req, res, err)
  if res.sent then
    return
  end
  local e = errors.wrap(err)
  local status = errors.status_for(e)
  if status >= 500 then
    -- The error (with its traceback) goes in the message so text logs keep its lines.
    local tb = type(err) == 'table' and err.traceback and ('\n' .. err.traceback) or ''
    log.error(('%s %s failed: %s%s'):format(req.method, req.path, tostring(err), tb),
      { server = self.name, status = status })
  end
  if self.opts.on_error then
    local ok, s, body = pcall(self.opts.on_error, req, e)
    if ok and s then
      return send_result(res, s, body)
    end
  end
  res:error(status, status >= 500 and 'internal error' or e.msg)
end

function Server:_dispatch(raw, exchange)
  local req = setmetatable(raw, Request)
  req._exchange = exchange
  req.args = util.parse_query(raw.query)
  local res = setmetatable({ _exchange = exchange, headers = {}, path = raw.path }, Response)
  for k, v in pairs(self.default_headers) do
    res.headers[k:lower()] = v
  end
  local handler, params = match(self, req.method, req.path)
  if not handler then
    if params then
      return res:error(405, 'method not allowed')
    end
    return res:error(404, 'not found')
  end
  req.params = params
  task.spawn(function()
    local ok, status, value, headers = xpcall(handler, function(e)
      if type(e) == 'table' then
        return e
      end
      return debug.traceback(tostring(e), 2)
    end, req, res)
    if not ok then
      return self:_handle_error(req, res, status)
    end
    send_result(res, status, value, headers)
  end)
end

-- The upgrade filter: the endpoint's authorize(req), when it has one.
function Server:_ws_filter(raw, exchange)
  local handlers = self.ws[raw.path]
  if not handlers then
    return false
  end
  if not handlers.authorize then
    return true
  end
  local req = setmetatable(raw, Request)
  req._exchange = exchange
  req.args = util.parse_query(raw.query)
  local ok, res = pcall(handlers.authorize, req)
  if not ok then
    log.error('websocket authorize failed', { server = self.name, path = raw.path,
      error = tostring(res) })
    return false
  end
  return res == true
end

function Server:_on_ws(event, ws, data, binary)
  local path = ws:path()
  local handlers = self.ws[path]
  if not handlers then
    return
  end
  local clients = self.ws_clients[path]
  if event == 'open' then
    clients[ws] = true
    if handlers.on_open then
      handlers.on_open(ws)
    end
  elseif event == 'message' then
    if handlers.on_message then
      handlers.on_message(ws, data, binary)
    end
  elseif event == 'close' then
    clients[ws] = nil
    if handlers.on_close then
      handlers.on_close(ws)
    end
  end
end

--- Start listening. Returns self, or nil, msg, code (e.g. EADDRINUSE).
function Server:listen()
  assert(not self.native, 'listen: already listening')
  local l = self.opts.listen or {}
  local ws_paths, filter = {}, nil
  for path, h in pairs(self.ws) do
    ws_paths[#ws_paths + 1] = path
    if h.authorize then
      filter = function(raw, exchange) return self:_ws_filter(raw, exchange) end
    end
  end
  local srv, err, code = native.listen({
    name = self.name,
    host = l.host,
    port = l.port,
    any_port = l.port == 0 or nil,
    unix = l.unix,
    mode = l.mode,
    tls = self.opts.tls,
    max_body = self.opts.max_body,
    max_ws_message = self.opts.max_ws_message,
    ws_paths = ws_paths,
    ws_protocols = self.opts.ws_protocols,
    ws_filter = filter,
  }, function(raw, exchange)
    self:_dispatch(raw, exchange)
  end, function(event, ws, data, binary)
    self:_on_ws(event, ws, data, binary)
  end)
  if not srv then
    return nil, err, code
  end
  self.native = srv
  log.info('listening', { server = self.name, address = srv:address() })
  return self
end

--- The bound TCP port (useful with port 0), or nil for unix sockets.
function Server:port()
  return self.native and self.native:port()
end

--- "host:port" or "unix:/path".
function Server:address()
  return self.native and self.native:address()
end

--- Stop listening and close every connection. Idempotent.
function Server:close()
  if self.native then
    for _, clients in pairs(self.ws_clients) do
      for ws in pairs(clients) do
        ws:close(1001, 'server closing')
      end
    end
    self.native:close()
    self.native = nil
  end
end

return M
