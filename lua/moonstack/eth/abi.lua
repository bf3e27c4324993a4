-- SPDX-License-Identifier: Apache-2.0
-- Solidity ABI encoding and strict decoding (the contract ABI specification): function
-- selectors (Keccak-256 from moonstack.crypto), static types (address, bool, uintN, bytesN),
-- dynamic ones (string, bytes, T[]), and tuples `(T1,T2,...)`, nested. Decoding checks every
-- offset and length against the data and refuses non-canonical padding: an answer from a node
-- is untrusted input. Values in Lua: address / bytesN / bytes = '0x' hex strings (decoded in
-- lower case), bool = boolean, uintN = a non-negative integer number (up to 2^53) or a '0x'
-- hex string (decoded as a number when below 2^53, else as '0x' hex), string = a Lua string,
-- T[] and tuples = Lua lists.
local crypto = require('moonstack.crypto')

local M = {}

--- dstack's AppBootInfo tuple (spec §3.9), as it appears in function signatures.
M.APP_BOOT_INFO = '(address,bytes32,address,bytes32,bytes32,bytes32,bytes32,string,string[])'

--- Largest ABI blob decode() accepts, in bytes.
M.MAX_DATA = 1024 * 1024

local TWO53 = 2 ^ 53

-- Split a comma-separated list at depth 0 of parentheses.
local function split_top(s)
  local parts, depth, start = {}, 0, 1
  if s == '' then
    return parts
  end
  for i = 1, #s do
    local c = s:sub(i, i)
    if c == '(' then
      depth = depth + 1
    elseif c == ')' then
      depth = depth - 1
      if depth < 0 then
        return nil
      end
    elseif c == ',' and depth == 0 then
      parts[#parts + 1] = s:sub(start, i - 1)
      start = i + 1
    end
  end
  if depth ~= 0 then
    return nil
  end
  parts[#parts + 1] = s:sub(start)
  return parts
end

--- Parse a type string ('uint256', 'string[]', '(address,bytes32)[]' ...) into a type tree
--- { kind = 'address'|'bool'|'uint'|'fixedbytes'|'string'|'bytes'|'array'|'tuple', size?,
--- elem?, fields?, dynamic = bool }, or nil, 'EINVAL: ...', 'EINVAL'.
function M.parse_type(s)
  if type(s) ~= 'string' then
    return nil, 'EINVAL: abi type must be a string', 'EINVAL'
  end
  s = s:gsub('%s', '')
  if s:sub(-2) == '[]' then
    local elem, err, code = M.parse_type(s:sub(1, -3))
    if not elem then
      return nil, err, code
    end
    return { kind = 'array', elem = elem, dynamic = true }
  end
  if s:sub(1, 1) == '(' and s:sub(-1) == ')' then
    local parts = split_top(s:sub(2, -2))
    if not parts then
      return nil, ('EINVAL: unbalanced tuple type %s'):format(s), 'EINVAL'
    end
    local fields, dynamic = {}, false
    for i, p in ipairs(parts) do
      local t, err, code = M.parse_type(p)
      if not t then
        return nil, err, code
      end
      fields[i] = t
      dynamic = dynamic or t.dynamic
    end
    return { kind = 'tuple', fields = fields, dynamic = dynamic }
  end
  if s == 'address' or s == 'bool' then
    return { kind = s, dynamic = false }
  elseif s == 'string' or s == 'bytes' then
    return { kind = s, dynamic = true }
  end
  local bits = s:match('^uint(%d*)$')
  if bits then
    bits = bits == '' and 256 or tonumber(bits)
    if bits < 8 or bits > 256 or bits % 8 ~= 0 then
      return nil, ('EINVAL: bad abi type %s'):format(s), 'EINVAL'
    end
    return { kind = 'uint', size = bits / 8, dynamic = false }
  end
  local n = tonumber(s:match('^bytes(%d+)$'))
  if n and n >= 1 and n <= 32 then
    return { kind = 'fixedbytes', size = n, dynamic = false }
  end
  return nil, ('EINVAL: unsupported abi type %s'):format(s), 'EINVAL'
end

--- The 4-byte selector of a canonical function signature, e.g. 'gatewayAppId()'.
function M.selector(sig)
  return crypto.keccak256((sig:gsub('%s', ''))):sub(1, 4)
end

-- ---------------------------------------------------------------------------------------
-- encoding

local encode_value

local function pad_right(b)
  local r = #b % 32
  return r == 0 and b or b .. ('\0'):rep(32 - r)
end

-- A uint value (number or '0x' hex) as `size` big-endian bytes left-padded to 32.
local function uint_word(v, size, where)
  local bytes
  if type(v) == 'number' then
    if v < 0 or v ~= math.floor(v) or v >= TWO53 then
      error(('%s: uint must be an integer in [0, 2^53) or a 0x hex string'):format(where), 0)
    end
    local t = {}
    for i = 32, 1, -1 do
      t[i] = string.char(v % 256)
      v = math.floor(v / 256)
    end
    bytes = table.concat(t)
  elseif type(v) == 'string' and v:match('^0[xX]%x*$') then
    local h = v:sub(3):gsub('^0+', '')
    if #h % 2 == 1 then
      h = '0' .. h
    end
    if #h / 2 > size then
      error(('%s: value does not fit uint%d'):format(where, size * 8), 0)
    end
    bytes = ('\0'):rep(32 - #h / 2) .. crypto.unhex(h)
  else
    error(('%s: uint must be a number or a 0x hex string'):format(where), 0)
  end
  if size < 32 and bytes:sub(1, 32 - size) ~= ('\0'):rep(32 - size) then
    error(('%s: value does not fit uint%d'):format(where, size * 8), 0)
  end
  return bytes
end

local function hex_bytes(v, where, len)
  if type(v) ~= 'string' or not v:match('^0[xX]%x*$') or #v % 2 == 1 then
    error(('%s: expected a 0x hex string'):format(where), 0)
  end
  local b = crypto.unhex(v:sub(3))
  if len and #b ~= len then
    error(('%s: expected %d bytes, got %d'):format(where, len, #b), 0)
  end
  return b
end

-- Bytes a value of type `t` takes in its tuple's head: 32 (a word, or a dynamic value's
-- offset), or the inline size of a static tuple.
local function head_size(t)
  if t.dynamic or t.kind ~= 'tuple' then
    return 32
  end
  local n = 0
  for _, f in ipairs(t.fields) do
    n = n + head_size(f)
  end
  return n
end

-- Encode a sequence of values of types `ts` (the tuple encoding: heads then tails).
local function encode_seq(ts, vals, where)
  if type(vals) ~= 'table' then
    error(('%s: expected a list'):format(where), 0)
  end
  if #vals ~= #ts then
    error(('%s: expected %d values, got %d'):format(where, #ts, #vals), 0)
  end
  local heads, tails, head_len = {}, {}, 0
  for _, t in ipairs(ts) do
    head_len = head_len + head_size(t)
  end
  local tail_len = 0
  for i, t in ipairs(ts) do
    local enc = encode_value(t, vals[i], ('%s[%d]'):format(where, i))
    if t.dynamic then
      heads[i] = uint_word(head_len + tail_len, 32, where)
      tails[#tails + 1] = enc
      tail_len = tail_len + #enc
    else
      heads[i] = enc
    end
  end
  return table.concat(heads) .. table.concat(tails)
end

encode_value = function(t, v, where)
  local k = t.kind
  if k == 'address' then
    return ('\0'):rep(12) .. hex_bytes(v, where, 20)
  elseif k == 'bool' then
    if type(v) ~= 'boolean' then
      error(('%s: expected a boolean'):format(where), 0)
    end
    return ('\0'):rep(31) .. (v and '\1' or '\0')
  elseif k == 'uint' then
    return uint_word(v, t.size, where)
  elseif k == 'fixedbytes' then
    return pad_right(hex_bytes(v, where, t.size))
  elseif k == 'string' or k == 'bytes' then
    local b = v
    if k == 'bytes' then
      b = hex_bytes(v, where)
    elseif type(v) ~= 'string' then
      error(('%s: expected a string'):format(where), 0)
    end
    return uint_word(#b, 32, where) .. pad_right(b)
  elseif k == 'array' then
    if type(v) ~= 'table' then
      error(('%s: expected a list'):format(where), 0)
    end
    local ts = {}
    for i = 1, #v do
      ts[i] = t.elem
    end
    return uint_word(#v, 32, where) .. encode_seq(ts, v, where)
  elseif k == 'tuple' then
    return encode_seq(t.fields, v, where)
  end
  error('unreachable', 0)
end

local function parse_types(types)
  local ts = {}
  for i, s in ipairs(types) do
    local t, err = M.parse_type(s)
    if not t then
      error(err, 0)
    end
    ts[i] = t
  end
  return ts
end

--- Encode `values` (a list) as the ABI tuple of `types` (a list of type strings). Returns the
--- bytes, or nil, 'EINVAL: <path>: why', 'EINVAL' (a value of the wrong type or size).
function M.encode(types, values)
  local ok, res = pcall(function()
    return encode_seq(parse_types(types), values, 'value')
  end)
  if not ok then
    local msg = tostring(res)
    return nil, msg:match('^EINVAL: ') and msg or 'EINVAL: ' .. msg, 'EINVAL'
  end
  return res
end

--- Call data: the selector of `sig` ('name(type,...)', canonical) followed by the encoded
--- `args`. Returns the bytes or nil, 'EINVAL: ...', 'EINVAL'.
function M.encode_call(sig, args)
  local name, list = sig:match('^([%w_]+)(%b())$')
  if not name then
    return nil, ('EINVAL: bad function signature %s'):format(sig), 'EINVAL'
  end
  local types = split_top(list:sub(2, -2))
  if not types then
    return nil, ('EINVAL: bad function signature %s'):format(sig), 'EINVAL'
  end
  local body, err, code = M.encode(types, args or {})
  if not body then
    return nil, err, code
  end
  return M.selector(sig) .. body
end

-- ---------------------------------------------------------------------------------------
-- decoding (strict)

local decode_value

local function fail(where, why)
  error(('EABI: %s: %s'):format(where, why), 0)
end

-- Bytes the values decoded so far may still take: offsets may point at the same data again
-- and again (legal ABI, an amplification when hostile), so decode() grants a few times the
-- input's size and refuses the rest. Set by decode() (which never yields) for each call.
local budget = 0

local function spend(n, where)
  budget = budget - n
  if budget < 0 then
    fail(where, 'decoded values would exceed 4 times the data (offsets pointing at the same data?)')
  end
end

-- The 32-byte word at `pos` (1-based) of `data`, or fail.
local function word(data, pos, where)
  if pos < 1 or pos + 31 > #data then
    fail(where, ('word at offset %d is beyond the data (%d bytes)'):format(pos - 1, #data))
  end
  return data:sub(pos, pos + 31)
end

-- A word read as an offset or a length: it must fit 2^32 (the decoder refuses the rest).
local function small_uint(data, pos, where)
  local w = word(data, pos, where)
  if w:sub(1, 28) ~= ('\0'):rep(28) then
    fail(where, 'offset or length out of range')
  end
  local n = 0
  for i = 29, 32 do
    n = n * 256 + w:byte(i)
  end
  return n
end

local function decode_uint(w, size, where)
  if size < 32 and w:sub(1, 32 - size) ~= ('\0'):rep(32 - size) then
    fail(where, ('value does not fit uint%d'):format(size * 8))
  end
  local hi = w:sub(1, 25)
  if hi == ('\0'):rep(25) then
    local n = 0
    for i = 26, 32 do
      n = n * 256 + w:byte(i)
    end
    if n < TWO53 then
      return n
    end
  end
  local h = crypto.hex(w):gsub('^0+', '')
  return '0x' .. h
end

-- Decode a sequence of types from the tuple starting at `base` (1-based) in `data`.
local function decode_seq(ts, data, base, where)
  local out, pos = {}, base
  for i, t in ipairs(ts) do
    local w = ('%s[%d]'):format(where, i)
    if t.dynamic then
      local off = small_uint(data, pos, w)
      local at = base + off
      if at > #data + 1 then
        fail(w, ('offset %d is beyond the data'):format(off))
      end
      out[i] = decode_value(t, data, at, w)
      pos = pos + 32
    elseif t.kind == 'tuple' then
      out[i] = decode_seq(t.fields, data, pos, w)
      pos = pos + head_size(t)
    else
      out[i] = decode_value(t, data, pos, w)
      pos = pos + 32
    end
  end
  return out
end

decode_value = function(t, data, pos, where)
  local k = t.kind
  if k == 'address' then
    local w = word(data, pos, where)
    if w:sub(1, 12) ~= ('\0'):rep(12) then
      fail(where, 'address with non-zero high bytes')
    end
    return '0x' .. crypto.hex(w:sub(13))
  elseif k == 'bool' then
    local w = word(data, pos, where)
    if w == ('\0'):rep(32) then
      return false
    elseif w == ('\0'):rep(31) .. '\1' then
      return true
    end
    fail(where, 'bool that is neither 0 nor 1')
  elseif k == 'uint' then
    return decode_uint(word(data, pos, where), t.size, where)
  elseif k == 'fixedbytes' then
    local w = word(data, pos, where)
    if w:sub(t.size + 1) ~= ('\0'):rep(32 - t.size) then
      fail(where, ('bytes%d with non-zero padding'):format(t.size))
    end
    return '0x' .. crypto.hex(w:sub(1, t.size))
  elseif k == 'string' or k == 'bytes' then
    local len = small_uint(data, pos, where)
    local start = pos + 32
    local padded = math.ceil(len / 32) * 32
    if start + padded - 1 > #data then
      fail(where, ('%s of %d bytes runs past the data'):format(k, len))
    end
    spend(len, where)
    local b = data:sub(start, start + len - 1)
    if data:sub(start + len, start + padded - 1) ~= ('\0'):rep(padded - len) then
      fail(where, ('%s with non-zero padding'):format(k))
    end
    return k == 'bytes' and '0x' .. crypto.hex(b) or b
  elseif k == 'array' then
    local n = small_uint(data, pos, where)
    -- each element takes at least one 32-byte head word: a count the data cannot hold is garbage
    if n * 32 > #data - (pos + 31) then
      fail(where, ('array of %d elements cannot fit the data'):format(n))
    end
    spend(32 * n, where)
    local ts = {}
    for i = 1, n do
      ts[i] = t.elem
    end
    return decode_seq(ts, data, pos + 32, where)
  elseif k == 'tuple' then
    return decode_seq(t.fields, data, pos, where)
  end
  fail(where, 'unsupported type')
end

--- Decode `data` (bytes, as an eth_call answer) as the ABI tuple of `types` (a list of type
--- strings). Returns the list of values, or nil, 'EABI: <path>: why', 'EABI' for data that is
--- short, has an offset or a length outside it, or non-canonical padding or booleans.
function M.decode(types, data)
  if type(data) ~= 'string' then
    return nil, 'EABI: data must be a string', 'EABI'
  end
  if #data > M.MAX_DATA then
    return nil, ('EABI: data of %d bytes exceeds %d'):format(#data, M.MAX_DATA), 'EABI'
  end
  budget = 4 * #data + 1024
  local ok, res = pcall(function()
    return decode_seq(parse_types(types), data, 1, 'value')
  end)
  if not ok then
    local msg = tostring(res)
    return nil, msg:match('^E%u+: ') and msg or 'EABI: ' .. msg, 'EABI'
  end
  return res
end

--- The revert reason of `Error(string)` revert data (bytes), or nil.
function M.revert_reason(data)
  if type(data) ~= 'string' or data:sub(1, 4) ~= '\8\195\121\160' then
    return nil
  end
  local v = M.decode({ 'string' }, data:sub(5))
  return v and v[1] or nil
end

return M
