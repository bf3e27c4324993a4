-- SPDX-License-Identifier: Apache-2.0
-- pRPC over HTTP/1.1 as dstack serves it (guest-and-attestation.md §1.2): one path segment per
-- method, POST (body) or GET (query); a request is JSON when it is a GET, its query has a `json`
-- key, or its Content-Type is JSON — otherwise protobuf, and the answer is in the same form.
-- Success is 200 with the response message; any failure is 400 with {"error": message} (JSON,
-- pretty-printed as upstream) or ProtoError (protobuf); a bug in a method is a 500 and is
-- logged. HEAD is a GET without the body; other methods (PUT, DELETE, ...) get 405. Methods are
-- tables { input = schema, output = schema, call = fn(args, req) -> msg | nil, err
-- [, cache = fn(args) -> key] } (schemas in moonstack.core.proto's form): with
-- `cache`, encoded answers are kept per key (for deterministic methods such as GetKey).
local cjson = require('cjson.safe')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log').new('agent.api')
local proto = require('moonstack.core.proto')

local M = {}

local JSON_CT = 'application/json'
local PROTO_CT = 'application/octet-stream'

--- Cached answers kept per method before the cache is emptied.
M.CACHE_MAX = 4096

-- The wire text of a failure: the innermost message, without our `CODE: ` prefix.
local function message_of(err)
  local s = tostring(err == nil and 'failed' or err)
  return (s:gsub('^E[A-Z0-9_]+: ', ''))
end
M.message_of = message_of

local function error_reply(json, msg)
  if json then
    return 400, '{\n  "error": ' .. proto.json_string(msg) .. '\n}', { ['content-type'] = JSON_CT }
  end
  return 400, proto.to_proto(proto.ProtoError, { message = msg }), { ['content-type'] = PROTO_CT }
end
M.error_reply = error_reply

-- Whether a Content-Type is JSON (application/json or application/*+json).
local function is_json_type(ct)
  if not ct then
    return false
  end
  ct = ct:lower():match('^%s*([^;%s]+)')
  return ct == 'application/json' or (ct ~= nil and ct:match('^application/.+%+json$') ~= nil)
end

-- Whether the message comes in the query (GET and HEAD) rather than the body.
local function in_query(req)
  return req.method == 'GET' or req.method == 'HEAD'
end

--- Whether a request asks for JSON (GET, ?json, or a JSON Content-Type).
function M.wants_json(req)
  return in_query(req) or req.args.json ~= nil or is_json_type(req.headers['content-type'])
end

-- Decode the request message of `m` from `req` (JSON body, query, or protobuf).
local function decode_args(m, req, json)
  local schema = m.input
  if in_query(req) then
    return proto.from_query(schema, req.args)
  end
  if not json then
    return proto.from_proto(schema, req.body)
  end
  if req.body:find('^%s*$') then
    return proto.from_json(schema, {})
  end
  local obj, err = cjson.decode(req.body)
  if obj == nil then
    return nil, 'invalid JSON request body: ' .. tostring(err)
  end
  return proto.from_json(schema, obj)
end

--- Run method `m` (named `name`) for `req`: status, body, headers.
function M.call(name, m, req)
  local json = M.wants_json(req)
  local args, err = decode_args(m, req, json)
  if not args then
    return error_reply(json, ('failed to decode the %s request: %s'):format(name, err))
  end
  local key, cache
  if m.cache then
    key = m.cache(args)
    cache = m._cache
    if not cache then
      cache = { n = 0, json = {}, proto = {} }
      m._cache = cache
    end
    local hit = (json and cache.json or cache.proto)[key]
    if hit then
      return 200, hit, { ['content-type'] = json and JSON_CT or PROTO_CT }
    end
  end
  local ok, msg, merr = xpcall(m.call, debug.traceback, args, req)
  if not ok then
    local e = errors.wrap(msg)
    if errors.status_for(e) >= 500 then
      log.error(('%s failed: %s'):format(name, tostring(msg)))
      return 500, '{"error":"internal error"}', { ['content-type'] = JSON_CT }
    end
    return error_reply(json, e.msg)
  end
  if msg == nil then
    return error_reply(json, message_of(merr))
  end
  local schema = m.output
  local body = json and proto.to_json(schema, msg) or proto.to_proto(schema, msg)
  if cache then
    if cache.n >= M.CACHE_MAX then
      cache.n, cache.json, cache.proto = 0, {}, {}
    end
    cache.n = cache.n + 1;
    (json and cache.json or cache.proto)[key] = body
  end
  return 200, body, { ['content-type'] = json and JSON_CT or PROTO_CT }
end

--- Empty every method's answer cache (after the keys change).
function M.clear_cache(methods)
  for _, m in pairs(methods) do
    m._cache = nil
  end
end

--- An HTTP handler serving pRPC services. `mounts` is a list of { prefix = '/prpc/', service =
--- 'Tappd', methods = {...} }: a path `<prefix><Method>` or `<prefix><service>.<Method>` calls
--- the method. A one-segment path that names no method is a 400 ("no such method"), a longer
--- one a 404. `fallback(req)` (optional) answers paths no mount claims (return nil to 404).
--- Methods other than GET, HEAD and POST get 405, on every path.
function M.handler(mounts, fallback)
  return function(req)
    if not in_query(req) and req.method ~= 'POST' then
      return 405, '{"error":"method not allowed"}', { ['content-type'] = JSON_CT,
        allow = 'GET, HEAD, POST' }
    end
    local path = req.path
    for _, mount in ipairs(mounts) do
      local p = mount.prefix
      if path:sub(1, #p) == p then
        local rest = path:sub(#p + 1)
        if not rest:find('/', 1, true) and rest ~= '' then
          local svc, meth = rest:match('^([%w_]+)%.([%w_]+)$')
          if svc and svc ~= mount.service then
            svc = nil -- another service's name: not ours
          end
          local name = svc and meth or rest
          local m = mount.methods[name]
          if m then
            return M.call(name, m, req)
          end
          if not mount.shared_prefix then
            return error_reply(M.wants_json(req), ('no such method: %s'):format(rest))
          end
        end
      end
    end
    if fallback then
      local status, body, headers = fallback(req)
      if status then
        return status, body, headers
      end
    end
    return 404, '{"error":"not found"}', { ['content-type'] = JSON_CT }
  end
end

return M
