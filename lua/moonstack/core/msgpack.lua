-- SPDX-License-Identifier: Apache-2.0
-- The MessagePack subset dstack's wire formats use (VersionedAttestation V1, the RA-TLS AppInfo
-- extension): nil, booleans, non-negative and negative integers, str, bin, arrays and maps.
--
-- encode(v) writes tagged values, so the caller chooses the wire type: a Lua string is str, a
-- number an integer (the smallest encoding), a boolean or nil itself; { bin = s } is bin,
-- { ints = s } is s as an array of small integers (how rmp-serde writes a plain Vec<u8>),
-- { array = {...} } an array and { map = { {k, v}, ... } } a map in that order.
--
-- decode(s) is strict: one value that must span all of s, every length checked against what is
-- left, nesting at most 32 deep, no floats or extension types. str and bin both decode to Lua
-- strings, arrays to sequences, maps to tables (duplicate or non-string keys are errors). Errors:
-- nil, 'EMSGPACK: <what> at offset N', 'EMSGPACK'.
local errors = require('moonstack.core.errors')

local M = {}

local byte, char, concat, sub = string.byte, string.char, table.concat, string.sub

local MAX_DEPTH = 32

-- Big-endian unsigned integer of `n` bytes.
local function be(v, n)
  local out = {}
  for i = n, 1, -1 do
    out[i] = char(v % 256)
    v = math.floor(v / 256)
  end
  return concat(out)
end

local function len_prefix(n, fix, fixmax, c8, c16, c32)
  if fix and n <= fixmax then
    return char(fix + n)
  elseif c8 and n < 0x100 then
    return char(c8, n)
  elseif n < 0x10000 then
    return char(c16) .. be(n, 2)
  end
  return char(c32) .. be(n, 4)
end

local function put(v, out)
  local t = type(v)
  if t == 'string' then
    out[#out + 1] = len_prefix(#v, 0xa0, 31, 0xd9, 0xda, 0xdb) .. v
  elseif t == 'number' then
    assert(v == math.floor(v), 'msgpack.encode: only integers')
    if v < 0 then
      assert(v >= -0x80000000, 'msgpack.encode: integer out of range')
      if v >= -32 then
        out[#out + 1] = char(256 + v)
      else
        out[#out + 1] = char(0xd2) .. be(v + 0x100000000, 4)
      end
    elseif v < 0x80 then
      out[#out + 1] = char(v)
    elseif v < 0x100 then
      out[#out + 1] = char(0xcc, v)
    elseif v < 0x10000 then
      out[#out + 1] = char(0xcd) .. be(v, 2)
    elseif v < 0x100000000 then
      out[#out + 1] = char(0xce) .. be(v, 4)
    else
      out[#out + 1] = char(0xcf) .. be(v, 8)
    end
  elseif t == 'boolean' then
    out[#out + 1] = v and '\195' or '\194'
  elseif t == 'nil' then
    out[#out + 1] = '\192'
  elseif v.bin then
    out[#out + 1] = len_prefix(#v.bin, nil, nil, 0xc4, 0xc5, 0xc6) .. v.bin
  elseif v.ints then
    out[#out + 1] = len_prefix(#v.ints, 0x90, 15, nil, 0xdc, 0xdd)
    for i = 1, #v.ints do
      local b = byte(v.ints, i)
      out[#out + 1] = b < 0x80 and char(b) or char(0xcc, b)
    end
  elseif v.array then
    out[#out + 1] = len_prefix(#v.array, 0x90, 15, nil, 0xdc, 0xdd)
    for _, item in ipairs(v.array) do
      put(item, out)
    end
  else
    assert(v.map, 'msgpack.encode: a table must be { bin }, { ints }, { array } or { map }')
    out[#out + 1] = len_prefix(#v.map, 0x80, 15, nil, 0xde, 0xdf)
    for _, kv in ipairs(v.map) do
      put(kv[1], out)
      put(kv[2], out)
    end
  end
end

--- MessagePack bytes of the tagged value `v` (see the module comment).
function M.encode(v)
  local out = {}
  put(v, out)
  return concat(out)
end

-- ---- decoding ----

local Reader = {}
Reader.__index = Reader

function Reader:fail(what)
  error({ msgpack_error = ('%s at offset %d'):format(what, self.pos - 1) }, 0)
end

function Reader:uint(n, what)
  if self.pos + n - 1 > #self.s then
    self:fail('truncated ' .. what)
  end
  local v = 0
  for i = self.pos, self.pos + n - 1 do
    v = v * 256 + byte(self.s, i)
  end
  self.pos = self.pos + n
  return v
end

function Reader:take(n, what)
  if n > #self.s - self.pos + 1 then
    self:fail(('%s of %d bytes overruns the input'):format(what, n))
  end
  local v = sub(self.s, self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return v
end

local function signed(v, bits)
  local half = 2 ^ (bits - 1)
  return v >= half and v - 2 * half or v
end

function Reader:value(depth)
  if depth > MAX_DEPTH then
    self:fail('nesting deeper than ' .. MAX_DEPTH)
  end
  local b = self:uint(1, 'value')
  if b < 0x80 then
    return b
  elseif b >= 0xe0 then
    return b - 256
  elseif b >= 0xa0 and b <= 0xbf then
    return self:take(b - 0xa0, 'str')
  elseif b >= 0x90 and b <= 0x9f then
    return self:array(b - 0x90, depth)
  elseif b >= 0x80 and b <= 0x8f then
    return self:map(b - 0x80, depth)
  elseif b == 0xc0 then
    return nil
  elseif b == 0xc2 or b == 0xc3 then
    return b == 0xc3
  elseif b == 0xcc or b == 0xcd or b == 0xce or b == 0xcf then
    local n = 2 ^ (b - 0xcc)
    local v = self:uint(n, 'uint')
    if n == 8 and v >= 2 ^ 53 then
      self:fail('uint64 beyond 2^53')
    end
    return v
  elseif b >= 0xd0 and b <= 0xd3 then
    local n = 2 ^ (b - 0xd0)
    local v = self:uint(n, 'int')
    if n == 8 then
      if v >= 2 ^ 63 then
        self:fail('negative int64 (unsupported)')
      end
      if v >= 2 ^ 53 then
        self:fail('int64 beyond 2^53')
      end
      return v
    end
    return signed(v, 8 * n)
  elseif b == 0xd9 or b == 0xda or b == 0xdb then
    return self:take(self:uint(2 ^ (b - 0xd9), 'str length'), 'str')
  elseif b == 0xc4 or b == 0xc5 or b == 0xc6 then
    return self:take(self:uint(2 ^ (b - 0xc4), 'bin length'), 'bin')
  elseif b == 0xdc or b == 0xdd then
    return self:array(self:uint(b == 0xdc and 2 or 4, 'array length'), depth)
  elseif b == 0xde or b == 0xdf then
    return self:map(self:uint(b == 0xde and 2 or 4, 'map length'), depth)
  end
  self:fail(('unsupported type byte 0x%02x'):format(b))
end

function Reader:array(n, depth)
  if n > #self.s - self.pos + 1 then -- every element takes a byte at least
    self:fail(('array of %d elements overruns the input'):format(n))
  end
  local t = {}
  for i = 1, n do
    t[i] = self:value(depth + 1)
  end
  return t
end

function Reader:map(n, depth)
  if 2 * n > #self.s - self.pos + 1 then
    self:fail(('map of %d entries overruns the input'):format(n))
  end
  local t = {}
  for _ = 1, n do
    local at = self.pos
    local k = self:value(depth + 1)
    if type(k) ~= 'string' then
      self.pos = at
      self:fail('map key is not a string')
    end
    if t[k] ~= nil then
      self.pos = at
      self:fail(('duplicate map key %q'):format(k))
    end
    t[k] = self:value(depth + 1)
  end
  return t
end

--- Decode the single MessagePack value `s` (see the module comment). Returns it, or nil,
--- 'EMSGPACK: ...', 'EMSGPACK'. A nil value decodes to nil with no error.
function M.decode(s)
  assert(type(s) == 'string', 'msgpack.decode: a string required')
  local r = setmetatable({ s = s, pos = 1 }, Reader)
  local ok, v = pcall(function()
    local value = r:value(0)
    if r.pos <= #s then
      r:fail(('%d trailing bytes'):format(#s - r.pos + 1))
    end
    return value
  end)
  if not ok then
    if type(v) == 'table' and v.msgpack_error then
      return errors.fail('EMSGPACK', v.msgpack_error)
    end
    error(v, 0)
  end
  return v
end

--- Bytes of a decoded byte field: a string (bin) as is, or an array of integers 0..255 (how
--- rmp-serde writes a plain Vec<u8>). Returns nil for anything else.
function M.bytes(v)
  if type(v) == 'string' then
    return v
  end
  if type(v) ~= 'table' then
    return nil
  end
  local out, n = {}, 0
  for _ in pairs(v) do
    n = n + 1
  end
  for i = 1, n do
    local b = v[i]
    if type(b) ~= 'number' or b < 0 or b > 255 or b ~= math.floor(b) then
      return nil -- a hole, a map key, or not a byte
    end
    out[i] = char(b)
  end
  return concat(out)
end

return M
