-- SPDX-License-Identifier: Apache-2.0
-- The HTTP(S) client for components: request(opts) blocks the calling task until the
-- response (or an error) arrives; request_cb(opts, cb) is the callback form. Over TCP or a
-- unix socket, with a custom CA, a client certificate, a verification hook and a timeout.
local native = require('moonstack.native.http')
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
---         want_headers = { names of custom response headers to return (lws knows no list) }
function M.request_cb(opts, cb)
  local n, err = native_opts(opts)
  if not n then
    return nil, 'EINVAL: ' .. err, 'EINVAL'
  end
  return native.request(n, cb)
end

--- Perform a request from inside a task. Returns the response
--- { status, headers, body, json = function() } or nil, message, code.
function M.request(opts)
  local n, err = native_opts(opts)
  if not n then
    return nil, 'EINVAL: ' .. err, 'EINVAL'
  end
  local resp, msg, code = task.await(function(resume)
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
  end, { what = 'http request ' .. (opts.url or opts.path or '') })
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
