-- SPDX-License-Identifier: Apache-2.0
-- Byte encodings the TDX layer needs on the wire: lowercase hex (dstack's JSON bytes, with an
-- optional 0x on input) and standard padded base64 (runtime event log lines).
local bit = require('bit')
local crypto = require('moonstack.crypto')
local crypto_hex, crypto_unhex = crypto.hex, crypto.unhex

local M = {}

local byte, char, concat = string.byte, string.char, table.concat

--- Lowercase hex of a binary string.
---@param s string
---@return string
function M.hex(s)
  return crypto_hex(s) -- one (fast) copy: moonstack.crypto's
end

--- Decode hex (either case, optional 0x prefix). Returns the bytes, or nil and a message.
---@param s string
function M.unhex(s)
  if type(s) ~= 'string' then
    return nil, 'not a string'
  end
  local skip = (s:byte(1) == 48 and (s:byte(2) == 120 or s:byte(2) == 88)) and 2 or 0
  if (#s - skip) % 2 ~= 0 then
    return nil, 'odd number of hex digits'
  end
  local bytes = crypto_unhex(s) -- one (fast) copy: moonstack.crypto's
  if not bytes then
    return nil, 'not hex'
  end
  return bytes
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
