-- SPDX-License-Identifier: Apache-2.0
-- The CBOR subset of dstack's measurement.tdx.cbor (RFC 8949): unsigned integers, byte and
-- text strings, arrays and maps with definite lengths. Strict: anything else, a length running
-- past the input, nesting deeper than 16 or trailing bytes is an error (the document comes
-- from a VM's config, i.e. from outside).
local M = {}

local function fail(msg, pos)
  error({ msg = ('ECBOR: %s at byte %d'):format(msg, pos - 1) }, 0)
end

local function decode(s, pos, depth)
  if depth > 16 then
    fail('nesting too deep', pos)
  end
  local ib = s:byte(pos)
  if not ib then
    fail('truncated', pos)
  end
  local major, info = math.floor(ib / 32), ib % 32
  pos = pos + 1
  local n
  if info < 24 then
    n = info
  elseif info <= 27 then
    local w = 2 ^ (info - 24)
    if pos + w - 1 > #s then
      fail('truncated length', pos)
    end
    n = 0
    for i = pos, pos + w - 1 do
      n = n * 256 + s:byte(i)
    end
    if n > 2 ^ 53 then
      fail('length or integer too large', pos)
    end
    pos = pos + w
  else
    fail(('unsupported additional info %d'):format(info), pos - 1)
  end
  if major == 0 then
    return n, pos
  elseif major == 2 or major == 3 then
    if pos + n - 1 > #s then
      fail('string runs past the end', pos)
    end
    return s:sub(pos, pos + n - 1), pos + n
  elseif major == 4 then
    local t = {}
    for i = 1, n do
      if pos > #s then fail('truncated array', pos) end
      t[i], pos = decode(s, pos, depth + 1)
    end
    return t, pos
  elseif major == 5 then
    local t = {}
    for _ = 1, n do
      if pos > #s then fail('truncated map', pos) end
      local k
      k, pos = decode(s, pos, depth + 1)
      if type(k) ~= 'string' and type(k) ~= 'number' then
        fail('map key is not a string or integer', pos)
      end
      t[k], pos = decode(s, pos, depth + 1)
    end
    return t, pos
  end
  fail(('unsupported major type %d'):format(major), pos - 1)
end

--- Decode one CBOR item that fills `s`: value, or nil, 'ECBOR: why at byte N', 'ECBOR'.
function M.decode(s)
  local ok, v, pos = pcall(decode, s, 1, 0)
  if not ok then
    return nil, type(v) == 'table' and v.msg or tostring(v), 'ECBOR'
  end
  if pos <= #s then
    return nil, ('ECBOR: %d trailing bytes'):format(#s - pos + 1), 'ECBOR'
  end
  return v
end

return M
