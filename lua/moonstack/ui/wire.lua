-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's JSON on the wire (feed answers, websocket messages): moonstack.core.json's
-- encoder (arrays stay arrays when empty: json.array()) over text made valid UTF-8 first — log
-- lines and guest event bodies may hold any bytes, and a browser closes a websocket whose text
-- frame is not UTF-8. Invalid bytes become U+FFFD.
local json = require('moonstack.core.json')
local codec = require('moonstack.core.codec')

local M = {}

local REPLACEMENT = '\239\191\189'

--- `s` with every byte that is not part of valid UTF-8 replaced by U+FFFD.
function M.utf8(s)
  if not s:find('[\128-\255]') then
    return s
  end
  local out, i, n = {}, 1, #s
  local start = 1
  while i <= n do
    if s:byte(i) < 0x80 then
      i = i + 1
    else
      local len = codec.utf8_len(s, i)
      if len then
        i = i + len
      else
        out[#out + 1] = s:sub(start, i - 1)
        out[#out + 1] = REPLACEMENT
        i = i + 1
        start = i
      end
    end
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

-- A copy of v whose strings are valid UTF-8 (arrays keep their mark).
local function clean(v, depth)
  local t = type(v)
  if t == 'string' then
    return M.utf8(v)
  elseif t ~= 'table' or v == json.null or depth > 64 then
    return v
  end
  local out = {}
  for k, x in pairs(v) do
    out[type(k) == 'string' and M.utf8(k) or k] = clean(x, depth + 1)
  end
  return setmetatable(out, getmetatable(v))
end

--- JSON text of `v` (valid UTF-8, empty arrays kept when marked with json.array()).
function M.encode(v)
  return json.encode(clean(v, 0))
end

--- Decode JSON text (arrays marked, null as json.null). Returns the value or nil, msg.
function M.decode(text)
  return json.decode(text)
end

--- json.array(t).
M.array = json.array

--- Whether `t` is a decoded (or marked) array.
M.is_array = json.is_array

--- The JSON null.
M.null = json.null

return M
