-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's JSON on the wire (feed answers, websocket messages): moonstack.core.json's
-- encoder (arrays stay arrays when empty: json.array()) over text made valid UTF-8 first — log
-- lines and guest event bodies may hold any bytes, and a browser closes a websocket whose text
-- frame is not UTF-8. Invalid bytes become U+FFFD.
local json = require('moonstack.core.json')

local M = {}

local REPLACEMENT = '\239\191\189'

-- Length of the valid UTF-8 sequence starting at byte i of s, or nil.
local function seq_len(s, i)
  local c = s:byte(i)
  local n, min
  if c < 0x80 then
    return 1
  elseif c >= 0xC2 and c <= 0xDF then
    n, min = 2, 0x80
  elseif c >= 0xE0 and c <= 0xEF then
    n, min = 3, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then
    n, min = 4, 0x10000
  else
    return nil
  end
  local cp = c % (2 ^ (7 - n))
  for k = 1, n - 1 do
    local b = s:byte(i + k)
    if not b or b < 0x80 or b > 0xBF then
      return nil
    end
    cp = cp * 64 + (b - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
    return nil
  end
  return n
end

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
      local len = seq_len(s, i)
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
