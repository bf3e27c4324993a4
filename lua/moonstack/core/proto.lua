-- SPDX-License-Identifier: Apache-2.0
-- pRPC's message codec: the two wire forms of a message schema, JSON (bytes as lowercase hex,
-- 0x tolerated on input; responses are pure ASCII, non-ASCII escaped as \uXXXX, because the JS
-- SDK's unix-socket client counts Content-Length in UTF-16 units) and proto3 binary (for
-- clients that send protobuf). A `string` field must be UTF-8 in every form (prost and
-- serde_json refuse anything else upstream).
-- Values are Lua tables with raw bytes in `bytes` fields.
local bit = require('bit')
local codec = require('moonstack.core.codec')

local M = {}

local byte, char, concat = string.byte, string.char, table.concat

-- Field types: string, bytes, bool, uint64 (optional: absent = nil), message (a nested
-- message, schema = its field list; absent = nil), and repeated forms string* / bytes* /
-- message*. A field spec is { number, name, type [, omit_empty = true] [, optional = true]
-- [, schema = {...}] } (optional: proto3 `optional`, absent on input stays nil, not the default);
-- a message schema is a list of field specs. Each service keeps its own messages (e.g.
-- moonstack.agent.api.messages, moonstack.kms.api's).

--- pRPC's error message (the protobuf body of a 400).
M.ProtoError = { { 1, 'message', 'string' } }

local function fail(msg)
  return nil, msg
end

-- ---- JSON ----

local ESC = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f', ['\n'] = '\\n',
  ['\r'] = '\\r', ['\t'] = '\\t' }
for c = 0, 31 do
  local ch = char(c)
  ESC[ch] = ESC[ch] or ('\\u%04x'):format(c)
end
ESC['\127'] = '\\u007f'

local function utf16(cp)
  if cp < 0x10000 then
    return ('\\u%04x'):format(cp)
  end
  cp = cp - 0x10000
  return ('\\u%04x\\u%04x'):format(0xd800 + bit.rshift(cp, 10), 0xdc00 + bit.band(cp, 0x3ff))
end

-- One UTF-8 sequence (or a stray byte) as \u escapes.
local function escape_utf8(seq)
  local b1 = byte(seq, 1)
  local n = #seq
  local cp
  if n == 2 and b1 >= 0xc2 and b1 < 0xe0 then
    cp = bit.lshift(b1 - 0xc0, 6) + byte(seq, 2) - 0x80
  elseif n == 3 and b1 >= 0xe0 and b1 < 0xf0 then
    cp = bit.lshift(b1 - 0xe0, 12) + bit.lshift(byte(seq, 2) - 0x80, 6) + byte(seq, 3) - 0x80
  elseif n == 4 and b1 >= 0xf0 and b1 < 0xf5 then
    cp = bit.lshift(b1 - 0xf0, 18) + bit.lshift(byte(seq, 2) - 0x80, 12)
      + bit.lshift(byte(seq, 3) - 0x80, 6) + byte(seq, 4) - 0x80
  end
  if cp then
    return utf16(cp)
  end
  -- not valid UTF-8: each byte as the code point of the same value (never raw bytes on the wire)
  return (seq:gsub('.', function(c) return ('\\u%04x'):format(byte(c)) end))
end

--- A JSON string literal of `s` in pure ASCII.
function M.json_string(s)
  if not s:find('[%c"\\\127-\255]') then
    return '"' .. s .. '"'
  end
  s = s:gsub('[%c"\\\127]', ESC)
  s = s:gsub('[\128-\255]+', function(run)
    local out, i = {}, 1
    while i <= #run do
      local b = byte(run, i)
      local n = b >= 0xf0 and 4 or b >= 0xe0 and 3 or b >= 0xc0 and 2 or 1
      local j = i + 1
      while j < i + n and j <= #run and byte(run, j) < 0xc0 do
        j = j + 1
      end
      out[#out + 1] = escape_utf8(run:sub(i, j - 1))
      i = j
    end
    return concat(out)
  end)
  return '"' .. s .. '"'
end
local json_string = M.json_string

--- Whether `s` is valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF).
function M.valid_utf8(s)
  if not s:find('[\128-\255]') then
    return true
  end
  local i, n = 1, #s
  while i <= n do
    local b = byte(s, i)
    local len, lo, hi = 1, 0x80, 0xbf -- length, bounds of the second byte
    if b >= 0xc2 and b <= 0xdf then
      len = 2
    elseif b >= 0xe0 and b <= 0xef then
      len = 3
      lo = b == 0xe0 and 0xa0 or 0x80 -- no overlong form
      hi = b == 0xed and 0x9f or 0xbf -- no surrogate
    elseif b >= 0xf0 and b <= 0xf4 then
      len = 4
      lo = b == 0xf0 and 0x90 or 0x80 -- no overlong form
      hi = b == 0xf4 and 0x8f or 0xbf -- nothing past U+10FFFF
    elseif b >= 0x80 then
      return false
    end
    for k = 1, len - 1 do
      local c = byte(s, i + k)
      if not c or c < (k == 1 and lo or 0x80) or c > (k == 1 and hi or 0xbf) then
        return false
      end
    end
    i = i + len
  end
  return true
end

-- A string field's value, refused unless UTF-8 (as prost and serde_json refuse it upstream).
local function utf8_or_fail(name, v)
  if not M.valid_utf8(v) then
    return fail(('%s: invalid UTF-8'):format(name))
  end
  return v
end

local function hex_or_fail(name, v)
  if type(v) ~= 'string' then
    return fail(('%s: expected a hex string'):format(name))
  end
  local b = codec.unhex(v)
  if not b then
    return fail(('%s: invalid hex string'):format(name))
  end
  return b
end

local function json_value(name, ty, v, f)
  if ty == 'message' then
    if type(v) ~= 'table' or (#v > 0) then
      return fail(('%s: expected an object'):format(name))
    end
    local m, err = M.from_json(f.schema, v)
    if not m then
      return fail(('%s.%s'):format(name, err))
    end
    return m
  elseif ty == 'string' then
    if type(v) ~= 'string' then
      return fail(('%s: expected a string'):format(name))
    end
    return utf8_or_fail(name, v)
  elseif ty == 'bytes' then
    return hex_or_fail(name, v)
  elseif ty == 'bool' then
    if type(v) ~= 'boolean' then
      return fail(('%s: expected a boolean'):format(name))
    end
    return v
  elseif ty == 'uint64' then
    if type(v) ~= 'number' or v < 0 or v % 1 ~= 0 or v >= 2 ^ 64 then
      return fail(('%s: expected an unsigned integer'):format(name))
    end
    return v
  end
  error('proto: unknown field type ' .. tostring(ty))
end

local DEFAULTS = { string = '', bytes = '', bool = false }

-- The value of an absent field `f` of type `ty` (nil for proto3 optional fields).
local function absent(f, ty)
  if f.optional then
    return nil
  end
  return DEFAULTS[ty]
end

--- A request message from decoded JSON (`obj` a table; unknown fields ignored, missing ones take
--- their defaults). Returns the message or nil, message.
function M.from_json(schema, obj)
  if type(obj) ~= 'table' or #obj > 0 then
    return fail('the request body must be a JSON object')
  end
  local out = {}
  for _, f in ipairs(schema) do
    local name, ty = f[2], f[3]
    local v = obj[name]
    local rep = ty:sub(-1) == '*'
    if v == nil or v == M.null then
      if rep then
        out[name] = {}
      else
        out[name] = absent(f, ty)
      end
    elseif rep then
      if type(v) ~= 'table' or (#v == 0 and next(v) ~= nil) then
        return fail(('%s: expected an array'):format(name))
      end
      local list = {}
      for i, item in ipairs(v) do
        local x, err = json_value(('%s[%d]'):format(name, i - 1), ty:sub(1, -2), item, f)
        if x == nil then
          return fail(err)
        end
        list[i] = x
      end
      out[name] = list
    else
      local x, err = json_value(name, ty, v, f)
      if x == nil then
        return fail(err)
      end
      out[name] = x
    end
  end
  return out
end

--- A request message from URL query parameters (GET): strings as given, bytes as hex, booleans
--- `true`/`1`/empty or `false`/`0`, numbers in decimal; a repeated field takes one value.
function M.from_query(schema, args)
  local out = {}
  for _, f in ipairs(schema) do
    local name, ty = f[2], f[3]
    local v = args[name]
    local base = ty:gsub('%*$', '')
    local x
    if v == nil then
      x = absent(f, base)
    elseif base == 'string' then
      local err
      x, err = utf8_or_fail(name, v)
      if x == nil then return fail(err) end
    elseif base == 'bytes' then
      local err
      x, err = hex_or_fail(name, v)
      if x == nil then return fail(err) end
    elseif base == 'bool' then
      if v == '' or v == 'true' or v == '1' then
        x = true
      elseif v == 'false' or v == '0' then
        x = false
      else
        return fail(('%s: expected true or false'):format(name))
      end
    elseif base == 'uint64' then
      x = v:match('^%d+$') and tonumber(v)
      if not x then return fail(('%s: expected an unsigned integer'):format(name)) end
    end
    if ty:sub(-1) == '*' then
      out[name] = v == nil and {} or { x }
    else
      out[name] = x
    end
  end
  return out
end

local function json_scalar(ty, v, f)
  if ty == 'message' then
    return M.to_json(f.schema, v or {})
  elseif ty == 'string' then
    return json_string(v or '')
  elseif ty == 'bytes' then
    return '"' .. codec.hex(v or '') .. '"'
  elseif ty == 'bool' then
    return v and 'true' or 'false'
  end
  return ('%d'):format(v)
end

--- Compact JSON of a response message, fields in proto order (pure ASCII).
function M.to_json(schema, msg)
  local parts = {}
  for _, f in ipairs(schema) do
    local name, ty = f[2], f[3]
    local v = msg[name]
    if ty:sub(-1) == '*' then
      local items = {}
      for i, item in ipairs(v or {}) do
        items[i] = json_scalar(ty:sub(1, -2), item, f)
      end
      parts[#parts + 1] = '"' .. name .. '":[' .. concat(items, ',') .. ']'
    elseif not (v == nil and (ty == 'uint64' or ty == 'message' or f.optional))
        and not (f.omit_empty and (v == nil or v == '')) then
      parts[#parts + 1] = '"' .. name .. '":' .. json_scalar(ty, v, f)
    end
  end
  return '{' .. concat(parts, ',') .. '}'
end

-- ---- protobuf (proto3 wire format) ----

local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = char(n)
  return concat(out)
end

local function key(num, wire)
  return varint(num * 8 + wire)
end

local function encode_field(parts, f, ty, v)
  local num = f[1]
  if ty == 'message' then
    v = M.to_proto(f.schema, v)
  end
  if ty == 'string' or ty == 'bytes' or ty == 'message' then
    parts[#parts + 1] = key(num, 2) .. varint(#v) .. v
  elseif ty == 'bool' then
    parts[#parts + 1] = key(num, 0) .. (v and '\1' or '\0')
  else
    parts[#parts + 1] = key(num, 0) .. varint(v)
  end
end

--- Protobuf bytes of a message (proto3: default scalars are left out).
function M.to_proto(schema, msg)
  local parts = {}
  for _, f in ipairs(schema) do
    local ty, v = f[3], msg[f[2]]
    if ty:sub(-1) == '*' then
      for _, item in ipairs(v or {}) do
        encode_field(parts, f, ty:sub(1, -2), item)
      end
    elseif v ~= nil and (f.optional or (v ~= '' and v ~= false and not (ty ~= 'uint64' and v == 0))) then
      encode_field(parts, f, ty, v)
    end
  end
  return concat(parts)
end

-- Read a varint at `pos`: value, next position (nil when truncated or longer than 64 bits).
local function read_varint(s, pos)
  local v, mul = 0, 1
  for i = 0, 9 do
    local b = byte(s, pos + i)
    if not b then
      return nil
    end
    v = v + (b % 128) * mul
    if b < 128 then
      return v, pos + i + 1
    end
    mul = mul * 128
  end
  return nil
end

--- A request message from protobuf bytes (unknown fields skipped). Returns the message or
--- nil, message.
function M.from_proto(schema, s)
  local by_num = {}
  for _, f in ipairs(schema) do
    by_num[f[1]] = f
  end
  local out = {}
  for _, f in ipairs(schema) do
    local ty = f[3]
    if ty:sub(-1) == '*' then
      out[f[2]] = {}
    else
      out[f[2]] = absent(f, ty)
    end
  end
  local pos = 1
  while pos <= #s do
    local k
    k, pos = read_varint(s, pos)
    if not k then
      return fail('malformed protobuf: truncated field key')
    end
    local num, wire = math.floor(k / 8), k % 8
    local f = by_num[num]
    local value
    if wire == 0 then
      value, pos = read_varint(s, pos)
      if not value then
        return fail('malformed protobuf: truncated varint')
      end
    elseif wire == 2 then
      local n
      n, pos = read_varint(s, pos)
      if not n or pos + n - 1 > #s then
        return fail('malformed protobuf: truncated length-delimited field')
      end
      value = s:sub(pos, pos + n - 1)
      pos = pos + n
    elseif wire == 1 or wire == 5 then
      local n = wire == 1 and 8 or 4
      if pos + n - 1 > #s then
        return fail('malformed protobuf: truncated fixed-size field')
      end
      pos = pos + n
      f = nil -- no fixed-size fields in these messages
    else
      return fail(('malformed protobuf: wire type %d'):format(wire))
    end
    if f then
      local ty = f[3]:gsub('%*$', '')
      local want = (ty == 'string' or ty == 'bytes' or ty == 'message') and 2 or 0
      if wire ~= want then
        return fail(('%s: wrong protobuf wire type %d'):format(f[2], wire))
      end
      if ty == 'message' then
        local err
        value, err = M.from_proto(f.schema, value)
        if not value then
          return fail(('%s.%s'):format(f[2], err))
        end
      end
      if ty == 'bool' then
        value = value ~= 0
      elseif ty == 'string' and not M.valid_utf8(value) then
        return fail(('%s: invalid UTF-8'):format(f[2]))
      end
      if f[3]:sub(-1) == '*' then
        local list = out[f[2]]
        list[#list + 1] = value
      else
        out[f[2]] = value
      end
    end
  end
  return out
end

--- JSON null as cjson decodes it (from_json treats it as absent).
M.null = require('cjson').null

return M
