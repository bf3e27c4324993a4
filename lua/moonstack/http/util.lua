-- SPDX-License-Identifier: Apache-2.0
-- HTTP helpers shared by the server and the client: query strings, URLs, JSON bodies.
local cjson = require('cjson.safe')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

local function unescape(s)
  s = s:gsub('+', ' ')
  return (s:gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

local function escape(s)
  return (tostring(s):gsub('[^%w%-%._~]', function(c) return ('%%%02X'):format(c:byte()) end))
end

--- Parse "a=1&b=&c" into { a = '1', b = '', c = '' } (the last value wins for repeats).
function M.parse_query(q)
  local out = {}
  if not q or q == '' then
    return out
  end
  for part in q:gmatch('[^&]+') do
    local k, v = part:match('^([^=]*)=(.*)$')
    if k then
      out[unescape(k)] = unescape(v)
    else
      out[unescape(part)] = ''
    end
  end
  return out
end

--- Build a query string from a table (keys sorted, for stable output).
function M.build_query(t)
  local keys = sorted_keys(t)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = escape(k) .. '=' .. escape(t[k])
  end
  return table.concat(parts, '&')
end

--- Split a URL into { scheme, host, port, path } (path includes the query), or nil, msg.
function M.parse_url(url)
  if type(url) ~= 'string' then
    return nil, 'url must be a string'
  end
  local scheme, rest = url:match('^(https?)://(.+)$')
  if not scheme then
    return nil, ("unsupported URL '%s' (want http:// or https://)"):format(url)
  end
  local authority, path = rest:match('^([^/]*)(.*)$')
  if path == '' then
    path = '/'
  end
  local host, port = authority:match('^%[([^%]]+)%]:?(%d*)$')
  if not host then
    host, port = authority:match('^([^:]+):?(%d*)$')
  end
  if not host or host == '' then
    return nil, ("URL '%s' has no host"):format(url)
  end
  port = tonumber(port) or (scheme == 'https' and 443 or 80)
  if port < 1 or port > 65535 then
    return nil, ("URL '%s' has an invalid port"):format(url)
  end
  return { scheme = scheme, host = host, port = port, path = path }
end

--- Encode `v` as JSON, or raise (values that cannot be encoded are programming errors).
function M.encode_json(v)
  local text, err = cjson.encode(v)
  if not text then
    error('JSON encoding failed: ' .. tostring(err), 2)
  end
  return text
end

--- Decode JSON text, or nil, message.
function M.decode_json(text)
  if text == nil or text == '' then
    return nil, 'empty body'
  end
  local v, err = cjson.decode(text)
  if v == nil then
    return nil, 'invalid JSON: ' .. tostring(err)
  end
  return v
end

--- A peer's answer fit for an error message or a log line: at most `max` (default 200)
--- characters of `s` (then '...'), control characters as spaces.
function M.excerpt(s, max)
  s = tostring(s or '')
  max = max or 200
  if #s > max then
    s = s:sub(1, max) .. '...'
  end
  return (s:gsub('%c', ' '))
end

return M
