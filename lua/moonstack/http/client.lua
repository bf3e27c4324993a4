-- SPDX-License-Identifier: Apache-2.0
-- The HTTP(S) client for components: request(opts) blocks the calling task until the
-- response (or an error) arrives; request_cb(opts, cb) is the callback form. Over TCP or a
-- unix socket, with a custom CA, a client certificate, a verification hook and a timeout.
local native = require('moonstack.native.http')
local uv = require('luv')
local task = require('moonstack.core.task')
local util = require('moonstack.http.util')

local M = {}

local DEFAULT_TIMEOUT_MS = 30000

--- Turn user options into the native request table, or nil, message.
local function native_opts(opts)
  local n = {
    method = (opts.method or (opts.body or opts.json) and 'POST' or 'GET'):upper(),
    headers = {},
    timeout_ms = opts.timeout_ms or DEFAULT_TIMEOUT_MS,
    max_response = opts.max_response,
    want_headers = opts.want_headers,
    body = opts.body,
  }
  for k, v in pairs(opts.headers or {}) do
    n.headers[k:lower()] = v
  end
  if opts.json ~= nil then
    n.body = util.encode_json(opts.json)
    n.headers['content-type'] = n.headers['content-type'] or 'application/json'
  end
  if opts.unix then
    n.unix = opts.unix
    n.path = opts.path or '/'
    n.host = opts.host or 'localhost'
    n.tls = opts.tls
  else
    local u, err = util.parse_url(opts.url)
    if not u then
      return nil, err
    end
    n.address, n.port, n.path = u.host, u.port, u.path
    n.host = opts.host or u.host
    if opts.host_port and not opts.host and not u.host:find(':', 1, true) and
        u.port ~= (u.scheme == 'https' and 443 or 80) then
      n.host = u.host .. ':' .. u.port -- servers that build URLs from Host (ACME's) need it
    end
    if u.scheme == 'https' then
      n.tls = opts.tls or true
    end
  end
  if opts.query then
    local q = util.build_query(opts.query)
    n.path = n.path .. (n.path:find('?', 1, true) and '&' or '?') .. q
  end
  return n
end

--- Start a request; `cb(err, response, code)` is called once. Returns the request handle
--- (with :cancel()), or nil, message, code for bad options.
---   opts: url | unix + path, method, headers, body | json, query, timeout_ms,
---         tls = { ca, cert, key, insecure, skip_hostname, verify }, host (Host header),
---         want_headers = { names of custom response headers to return (lws knows no list) },
---         host_port = true: a Host header with the URL's port when it is not the default
function M.request_cb(opts, cb)
  local n, err = native_opts(opts)
  if not n then
    return nil, 'EINVAL: ' .. err, 'EINVAL'
  end
  return native.request(n, cb)
end

-- ---- name resolution (request() only) ----
-- libwebsockets resolves a host name with a blocking getaddrinfo on the event loop: one slow
-- DNS answer would stall every connection of the process. request() resolves in libuv's
-- thread pool instead, keeps answers DNS_TTL_MS, and connects to the addresses in order
-- (the next one when a connection is refused), naming the host for Host, SNI and the
-- certificate check.

local DNS_TTL_MS = 10000
local dns_cache = {} -- host -> { addrs = { ip... }, expires = uv.now() ms }

local function is_ip(host)
  return host:match('^%d+%.%d+%.%d+%.%d+$') ~= nil or host:find(':', 1, true) ~= nil
end

--- The resolver: resolver(host, cb) calls cb(err, { ip, ... }) once. Replaceable (tests).
function M.resolver(host, cb)
  local req = uv.getaddrinfo(host, nil, { socktype = 'stream' }, function(err, res)
    local addrs, seen = {}, {}
    for _, a in ipairs(res or {}) do
      if a.addr and not seen[a.addr] then
        seen[a.addr] = true
        addrs[#addrs + 1] = a.addr
      end
    end
    cb(err, addrs)
  end)
  return req
end

-- The addresses of `host` (cached), or nil, message, code. In a task.
local function resolve(host, timeout_ms)
  local hit = dns_cache[host]
  if hit and hit.expires > uv.now() then
    return hit.addrs
  end
  local addrs, err = task.await(function(resume)
    local req = M.resolver(host, function(e, list)
      resume(not e and list or nil, e)
    end)
    return function()
      if type(req) == 'userdata' then
        pcall(uv.cancel, req)
      end
    end
  end, { timeout = timeout_ms, what = 'resolving ' .. host })
  if not addrs or #addrs == 0 then
    return nil, ('ENOTFOUND: cannot resolve %s: %s'):format(host, tostring(err or 'no address')),
      'ENOTFOUND'
  end
  dns_cache[host] = { addrs = addrs, expires = uv.now() + DNS_TTL_MS }
  return addrs
end

--- Forget cached name resolutions (all, or `host`'s).
function M.flush_dns(host)
  if host then
    dns_cache[host] = nil
  else
    dns_cache = {}
  end
end

local function exchange(n, what)
  return task.await(function(resume)
    local handle, e, c = native.request(n, function(cb_err, response, cb_code)
      if cb_err then
        resume(nil, cb_err, cb_code)
      else
        resume(response)
      end
    end)
    if not handle then
      resume(nil, e, c)
      return nil
    end
    return function()
      handle:cancel()
    end
  end, { what = what })
end

--- Perform a request from inside a task. Returns the response
--- { status, headers, body, json = function() } or nil, message, code.
function M.request(opts)
  local n, err = native_opts(opts)
  if not n then
    return nil, 'EINVAL: ' .. err, 'EINVAL'
  end
  local what = 'http request ' .. (opts.url or opts.path or '')
  local resp, msg, code
  if n.unix or is_ip(n.address) then
    resp, msg, code = exchange(n, what)
  else
    local started = uv.now()
    local addrs
    addrs, msg, code = resolve(n.address, n.timeout_ms)
    for i, ip in ipairs(addrs or {}) do
      n.address = ip
      n.timeout_ms = math.max(1, n.timeout_ms - (uv.now() - started))
      started = uv.now()
      resp, msg, code = exchange(n, what)
      if resp or code ~= 'ECONNREFUSED' or i == #addrs then
        break -- refused before a byte of the request went out: the next address is safe
      end
    end
  end
  if not resp then
    return nil, msg, code
  end
  resp.json = function()
    return util.decode_json(resp.body)
  end
  return resp
end

--- GET `url`; see request() for opts.
function M.get(url, opts)
  local o = { url = url, method = 'GET' }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  return M.request(o)
end

--- POST `value` as JSON to `url` and decode the JSON answer: returns decoded, response; or
--- nil, message, code (transport errors and non-JSON answers; HTTP error statuses are returned
--- with the decoded body so callers can read `{"error": ...}`).
function M.post_json(url, value, opts)
  local o = { url = url, method = 'POST', json = value }
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  local resp, err, code = M.request(o)
  if not resp then
    return nil, err, code
  end
  local decoded, derr = util.decode_json(resp.body)
  if decoded == nil then
    return nil, ('EPARSE: HTTP %d: %s'):format(resp.status, derr), 'EPARSE'
  end
  return decoded, resp
end

return M
