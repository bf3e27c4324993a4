-- SPDX-License-Identifier: Apache-2.0
-- The TD HOB that TDVF measures first into RTMR0 (kms-vmm-gateway.md §7.4): a PHIT header and
-- one resource HOB per memory range ([0, memory) split by the firmware's accepted TD_HOB and
-- TEMP_MEM sections), and the compact TdHobWitnessV1 of those sections that the lite path
-- carries instead of the firmware (LEB128 page numbers).
local b = require('moonstack.mr.bytes')

local M = {}

local PAGE = 4096
local GIB2, LOW = 0x80000000, 0xB0000000

-- [0, memory) unaccepted, then each accepted range carved out (sorted by start).
local function split(memory, accepted)
  local ranges = { { false, 0, memory } }
  for _, a in ipairs(accepted) do
    local s, e = a[1], a[1] + a[2]
    if s < e then
      local out = {}
      for _, r in ipairs(ranges) do
        if r[1] or r[3] <= s or r[2] >= e then
          out[#out + 1] = r
        else
          if r[2] < s then out[#out + 1] = { false, r[2], s } end
          if r[3] > e then out[#out + 1] = { false, e, r[3] } end
        end
      end
      out[#out + 1] = { true, s, e }
      table.sort(out, function(x, y) return x[2] < y[2] end)
      ranges = out
    end
  end
  return ranges
end

local function resource(kind, start, len)
  return '\3\0' .. b.le(48, 2) .. ('\0'):rep(4 + 16) .. string.char(kind) .. '\0\0\0'
    .. b.le(7, 4) .. b.le(start, 8) .. b.le(len, 8)
end

--- The TD HOB bytes for `memory` bytes of RAM, the accepted ranges { {start, size}... } and
--- the TD_HOB section address `hob_base` (default 0x809000), or nil, msg.
function M.build(memory, accepted, hob_base)
  hob_base = hob_base or 0x809000
  local ranges = split(memory, accepted)
  local parts = { '\1\0' .. b.le(56, 2) .. ('\0'):rep(4) .. b.le(9, 4) .. ('\0'):rep(4 + 40) }
  local last = table.remove(ranges)
  for _, r in ipairs(ranges) do
    if r[3] < r[2] then
      return nil, 'ETDHOB: memory range ends before it starts', 'ETDHOB'
    end
    parts[#parts + 1] = resource(r[1] and 0 or 7, r[2], r[3] - r[2])
  end
  if memory >= LOW then
    if last[2] < GIB2 then
      parts[#parts + 1] = resource(7, last[2], GIB2 - last[2])
    end
    if last[3] > GIB2 then
      parts[#parts + 1] = resource(7, 0x100000000, last[3] - GIB2)
    end
  else
    parts[#parts + 1] = resource(7, last[2], last[3] - last[2])
  end
  local hob = table.concat(parts)
  return hob:sub(1, 48) .. b.le(hob_base + #hob + 8, 8) .. hob:sub(57)
end

--- SHA-384 of the TD HOB (RTMR0 event 0); same arguments as build.
function M.digest(memory, accepted, hob_base)
  local hob, err, code = M.build(memory, accepted, hob_base)
  if not hob then
    return nil, err, code
  end
  return b.h384(hob)
end

local function put(out, v)
  repeat
    local byte = v % 128
    v = (v - byte) / 128
    out[#out + 1] = string.char(v ~= 0 and byte + 128 or byte)
  until v == 0
end

--- TdHobWitnessV1 bytes of the ranges { {start, size}... } and the TD_HOB address, or nil, msg.
function M.witness(ranges, hob_base)
  if #ranges == 0 or not hob_base then
    return nil, 'ETDHOB: no TD_HOB/TEMP_MEM sections', 'ETDHOB'
  end
  local sorted = {}
  for i, r in ipairs(ranges) do
    if r[2] == 0 then
      return nil, 'ETDHOB: empty witness range', 'ETDHOB'
    end
    sorted[i] = { r[1] / PAGE, r[2] / PAGE }
  end
  table.sort(sorted, function(x, y) return x[1] < y[1] end)
  for i = 2, #sorted do
    if sorted[i][1] < sorted[i - 1][1] + sorted[i - 1][2] then
      return nil, 'ETDHOB: witness ranges overlap', 'ETDHOB'
    end
  end
  local base = sorted[1][1]
  if hob_base / PAGE < base then
    return nil, 'ETDHOB: TD_HOB below the witness base page', 'ETDHOB'
  end
  local out = {}
  put(out, base)
  put(out, hob_base / PAGE - base)
  put(out, #sorted)
  for _, r in ipairs(sorted) do
    put(out, r[1] - base)
    put(out, r[2])
  end
  return table.concat(out)
end

--- Decode TdHobWitnessV1 bytes: ranges { {start, size}... }, hob_base; or nil, msg. At most
--- 64 ranges; trailing bytes are an error.
function M.unwitness(w)
  local pos = 1
  local function get()
    local v, mul = 0, 1
    for _ = 1, 8 do
      local c = w:byte(pos)
      if not c then
        return nil
      end
      pos = pos + 1
      v = v + (c % 128) * mul
      if c < 128 then
        return v
      end
      mul = mul * 128
    end
    return nil
  end
  local base, dhob, count = get(), get(), get()
  if not count or count < 1 or count > 64 then
    return nil, 'ETDHOB: witness header malformed', 'ETDHOB'
  end
  local ranges = {}
  for i = 1, count do
    local s, n = get(), get()
    if not n then
      return nil, ('ETDHOB: witness range %d truncated'):format(i), 'ETDHOB'
    end
    ranges[i] = { (base + s) * PAGE, n * PAGE }
  end
  if pos <= #w then
    return nil, 'ETDHOB: trailing bytes after the witness', 'ETDHOB'
  end
  return ranges, (base + dhob) * PAGE
end

return M
