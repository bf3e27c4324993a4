-- SPDX-License-Identifier: Apache-2.0
-- A small SCALE codec (parity-scale-codec: little-endian integers, compact length prefixes,
-- Vec/String = compact(len) ‖ bytes, Option = 0x00 | 0x01 ‖ value, bool = 1 byte), shared by
-- the VersionedAttestation V0 decoders (moonstack.tdx.attestation, moonstack.x509.ratls)
-- and the KMS's SignCert CSR (moonstack.kms.csr).
local bit = require('bit')

local M = {}

local char, concat = string.char, table.concat

local Reader = {}
Reader.__index = Reader

local function raise(r, msg)
  error({ scale_error = ('%s at offset %d'):format(msg, r.pos - 1) }, 0)
end

--- Raise a decoding error `msg` (the current offset is appended).
function Reader:fail(msg)
  raise(self, msg)
end

function Reader:take(n, what)
  if n < 0 or self.pos + n - 1 > #self.data then
    raise(self, ('truncated: %s needs %d bytes, %d left'):format(what, n, #self.data - self.pos + 1))
  end
  local s = self.data:sub(self.pos, self.pos + n - 1)
  self.pos = self.pos + n
  return s
end

function Reader:u8(what)
  return self:take(1, what):byte()
end

function Reader:uint(n, what)
  local s, v, mul = self:take(n, what), 0, 1
  for i = 1, n do
    v = v + s:byte(i) * mul
    mul = mul * 256
  end
  if n == 8 and s:byte(8) >= 0x20 then
    raise(self, what .. ': u64 above 2^53 is not representable')
  end
  return v
end

function Reader:u32(what)
  return self:uint(4, what)
end

function Reader:compact(what)
  local first = self:u8(what)
  local mode = bit.band(first, 3)
  if mode == 0 then
    return bit.rshift(first, 2)
  elseif mode == 1 then
    return bit.rshift(first + self:u8(what) * 256, 2)
  elseif mode == 2 then
    self.pos = self.pos - 1
    return math.floor(self:uint(4, what) / 4)
  end
  local n = bit.rshift(first, 2) + 4
  if n > 6 then
    raise(self, what .. ': compact length too large')
  end
  return self:uint(n, what)
end

function Reader:bytes(what)
  return self:take(self:compact(what), what)
end

function Reader:bool(what)
  local b = self:u8(what)
  if b > 1 then
    raise(self, ('%s: invalid bool 0x%02x'):format(what, b))
  end
  return b == 1
end

function Reader:option(what, item)
  local tag = self:u8(what)
  if tag == 0 then
    return nil
  elseif tag ~= 1 then
    raise(self, ('%s: invalid Option tag 0x%02x'):format(what, tag))
  end
  return item(self, what)
end

function Reader:vec(what, item)
  local n = self:compact(what)
  if n > #self.data - self.pos + 1 then
    raise(self, ('%s: %d items cannot fit'):format(what, n))
  end
  local out = {}
  for i = 1, n do
    out[i] = item(self, ('%s[%d]'):format(what, i))
  end
  return out
end

function Reader:rest()
  local s = self.data:sub(self.pos)
  self.pos = #self.data + 1
  return s
end

--- A reader over `data` (binary) from byte `pos` (default 1): methods u8, u32, uint(n),
--- take(n), compact, bytes (Vec<u8>), bool, option(what, fn), vec(what, fn), rest, fail(msg);
--- `what` names the field in errors. Errors raise { scale_error = 'msg at offset N' }: catch
--- them with M.pcall (or check `.scale_error`).
function M.reader(data, pos)
  assert(type(data) == 'string', 'scale.reader: data must be a string')
  return setmetatable({ data = data, pos = pos or 1 }, Reader)
end

--- Run fn(...) catching reader errors: returns its result or nil, 'ESCALE: msg', 'ESCALE'.
function M.pcall(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok then
    return res
  end
  if type(res) == 'table' and res.scale_error then
    return nil, 'ESCALE: ' .. res.scale_error, 'ESCALE'
  end
  error(res, 0)
end

--- Little-endian unsigned integer of `size` bytes.
function M.uint(n, size)
  local out = {}
  for i = 1, size do
    out[i] = char(n % 256)
    n = math.floor(n / 256)
  end
  return concat(out)
end

--- SCALE compact encoding of a non-negative integer.
function M.compact(n)
  assert(type(n) == 'number' and n >= 0 and n == math.floor(n), 'scale.compact: bad integer')
  if n < 0x40 then
    return char(n * 4)
  elseif n < 0x4000 then
    return M.uint(n * 4 + 1, 2)
  elseif n < 0x40000000 then
    return M.uint(n * 4 + 2, 4)
  end
  local b = M.uint(n, 8):gsub('%z+$', '')
  return char((#b - 4) * 4 + 3) .. b
end

--- Vec<u8> / String: compact length then the bytes.
function M.bytes(s)
  return M.compact(#s) .. s
end

--- bool as one byte.
function M.bool(v)
  return v and '\1' or '\0'
end

--- Option<T>: 0x00, or 0x01 then enc(v).
function M.option(v, enc)
  if v == nil then
    return '\0'
  end
  return '\1' .. enc(v)
end

return M
