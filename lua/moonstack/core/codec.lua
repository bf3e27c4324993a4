-- SPDX-License-Identifier: Apache-2.0
-- Byte encodings on the wire, one copy each: lowercase hex (dstack's JSON bytes; either case
-- and an optional 0x on input) and standard padded base64 (runtime event log lines).
-- Hex is a hot byte loop (quotes are ~5 KB, bodies up to 10 MiB): FFI arrays, compiled by the
-- JIT, about 100 times faster than a gsub callback per byte.
local bit = require('bit')
local ffi = require('ffi')

local M = {}

local byte, char, concat = string.byte, string.char, table.concat
local band, bor, rshift = bit.band, bit.bor, bit.rshift
local HEX_DIGITS = ffi.new('const uint8_t[16]', { 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99,
  100, 101, 102 })
local HEX_VALUE = ffi.new('uint8_t[256]') -- 16 = not a hex digit
ffi.fill(HEX_VALUE, 256, 16)
for i = 0, 9 do
  HEX_VALUE[48 + i] = i
end
for i = 0, 5 do
  HEX_VALUE[65 + i], HEX_VALUE[97 + i] = 10 + i, 10 + i
end

--- Lowercase hex of a byte string. Raises on a non-string (misuse).
---@param bytes string
---@return string
function M.hex(bytes)
  if type(bytes) ~= 'string' then
    error('codec.hex: expected a string', 2)
  end
  local n = #bytes
  if n == 0 then
    return ''
  end
  local out = ffi.new('uint8_t[?]', 2 * n)
  local p = ffi.cast('const uint8_t *', bytes)
  for i = 0, n - 1 do
    local b = p[i]
    out[2 * i], out[2 * i + 1] = HEX_DIGITS[rshift(b, 4)], HEX_DIGITS[band(b, 15)]
  end
  return ffi.string(out, 2 * n)
end

local function bad_hex(why)
  return nil, 'EINVAL: unhex: ' .. why, 'EINVAL'
end

--- Bytes of a hex string (either case, optional 0x prefix); `len` (optional) is the required
--- number of bytes. Anything else (a non-string included: values come from JSON) returns
--- nil, 'EINVAL: unhex: ...', 'EINVAL'.
---@param hex string
---@param len integer|nil
function M.unhex(hex, len)
  if type(hex) ~= 'string' then
    return bad_hex('not a string')
  end
  local skip = (hex:byte(1) == 48 and (hex:byte(2) == 120 or hex:byte(2) == 88)) and 2 or 0
  local digits = #hex - skip
  if digits % 2 ~= 0 then
    return bad_hex('not a hex string (odd number of digits)')
  end
  local n = digits / 2
  if n == 0 then
    return (len == nil or len == 0) and '' or bad_hex(('expected %d bytes, got 0'):format(len))
  end
  local out = ffi.new('uint8_t[?]', n)
  local p = ffi.cast('const uint8_t *', hex) + skip
  local bad = 0
  for i = 0, n - 1 do
    local hi, lo = HEX_VALUE[p[2 * i]], HEX_VALUE[p[2 * i + 1]]
    bad = bor(bad, hi, lo)
    out[i] = hi * 16 + lo
  end
  if bad > 15 then
    return bad_hex('not a hex string')
  end
  if len and n ~= len then
    return bad_hex(('expected %d bytes, got %d'):format(len, n))
  end
  return ffi.string(out, n)
end

local LEAD_MASK = { [2] = 0x1f, [3] = 0x0f, [4] = 0x07 }

--- The length of the valid UTF-8 sequence starting at byte `i` of `s` (1 for ASCII), or nil
--- (a bad lead or continuation byte, a truncated sequence, an overlong form, a surrogate, a code
--- point past U+10FFFF).
function M.utf8_len(s, i)
  local c = byte(s, i)
  if c < 0x80 then
    return 1
  end
  local len, min
  if c >= 0xc2 and c <= 0xdf then
    len, min = 2, 0x80
  elseif c >= 0xe0 and c <= 0xef then
    len, min = 3, 0x800
  elseif c >= 0xf0 and c <= 0xf4 then
    len, min = 4, 0x10000
  else
    return nil
  end
  if i + len - 1 > #s then
    return nil
  end
  local cp = band(c, LEAD_MASK[len])
  for j = i + 1, i + len - 1 do
    local b = byte(s, j)
    if band(b, 0xc0) ~= 0x80 then
      return nil
    end
    cp = cp * 64 + band(b, 0x3f)
  end
  if cp < min or cp > 0x10ffff or (cp >= 0xd800 and cp <= 0xdfff) then
    return nil
  end
  return len
end

--- Whether `s` is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
function M.is_utf8(s)
  if not s:find('[\128-\255]') then
    return true
  end
  local i, n = 1, #s
  while i <= n do
    local len = M.utf8_len(s, i)
    if not len then
      return false
    end
    i = i + len
  end
  return true
end

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local B64_VALUE = {}
for i = 1, 64 do
  B64_VALUE[byte(B64, i)] = i - 1
end

--- Standard base64 with padding.
---@param s string
---@return string
function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = bit.bor(bit.lshift(a, 16), bit.lshift(b or 0, 8), c or 0)
    local q1 = bit.band(bit.rshift(n, 18), 63) + 1
    local q2 = bit.band(bit.rshift(n, 12), 63) + 1
    local q3 = bit.band(bit.rshift(n, 6), 63) + 1
    local q4 = bit.band(n, 63) + 1
    out[#out + 1] = B64:sub(q1, q1) .. B64:sub(q2, q2)
      .. (b and B64:sub(q3, q3) or '=') .. (c and B64:sub(q4, q4) or '=')
  end
  return concat(out)
end

--- Decode standard base64 (padding optional, no whitespace). Returns bytes or nil, message.
---@param s string
function M.unbase64(s)
  if type(s) ~= 'string' then
    return nil, 'not a string'
  end
  s = s:gsub('=+$', '')
  if #s % 4 == 1 then
    return nil, 'bad base64 length'
  end
  local out = {}
  for i = 1, #s, 4 do
    local n, k = 0, 0
    for j = i, math.min(i + 3, #s) do
      local v = B64_VALUE[byte(s, j)]
      if not v then
        return nil, ('bad base64 character at %d'):format(j)
      end
      n = bit.bor(bit.lshift(n, 6), v)
      k = k + 1
    end
    n = bit.lshift(n, 6 * (4 - k))
    local bytes = k - 1
    out[#out + 1] = char(bit.band(bit.rshift(n, 16), 255), bit.band(bit.rshift(n, 8), 255),
      bit.band(n, 255)):sub(1, bytes)
  end
  return concat(out)
end

return M
