-- SPDX-License-Identifier: Apache-2.0
-- TDVF (OVMF for TDX) metadata and MRTD (kms-vmm-gateway.md §7.2, §7.3): the GUIDed table
-- at the end of the firmware points at the "TDVF" descriptor, whose sections say which pages
-- the TDX module adds (MEM.PAGE.ADD) and measures (MR.EXTEND, 256 bytes at a time); MRTD is
-- SHA-384 over those records in the order QEMU issues them (single- or two-pass).
local b = require('moonstack.mr.bytes')

local M = {}

local PAGE = 4096
local MAX_SECTION = 1024 * 1024 * 1024 -- bounds the MRTD record stream
local FOOTER_GUID = '96b582de-1fb2-45f7-baea-a366c55a082d'
local METADATA_GUID = 'e47a6535-984a-4798-865e-4685a7bf8ec2'

M.BFV, M.CFV, M.TD_HOB, M.TEMP_MEM = 0, 1, 2, 3
M.MR_EXTEND, M.PAGE_AUG = 1, 2

local function fail(msg)
  return nil, 'ETDVF: ' .. msg, 'ETDVF'
end

--- Parse the TDVF metadata of firmware bytes `fw`: { sections = { { data_offset, raw_size,
--- mem_addr, mem_size, type, attributes }... } }, or nil, 'ETDVF: why', 'ETDVF'.
function M.parse(fw)
  local n = #fw
  if n < 32 + 18 then
    return fail(('firmware too small (%d bytes)'):format(n))
  end
  local off = n - 32 -- 0-based offset just past the footer GUID
  if fw:sub(off - 15, off) ~= b.guid(FOOTER_GUID) then
    return fail('no TDVF table footer GUID ' .. FOOTER_GUID .. ' at end-48: not a TDVF image')
  end
  local tlen = b.rd(fw, off - 17, 2)
  if tlen == 0 or tlen > off - 18 then
    return fail(('GUIDed table length %d out of range'):format(tlen))
  end
  local tables = fw:sub(off - 18 - tlen + 1, off - 18)
  local pos, dist = #tables, nil
  local want = b.guid(METADATA_GUID)
  while pos >= 18 do
    local len = b.rd(tables, pos - 17, 2)
    if len > pos or len < 18 then
      return fail(('GUIDed table entry length %d out of range'):format(len))
    end
    if tables:sub(pos - 15, pos) == want then
      if len < 18 + 4 then
        return fail(('TDX metadata entry length %d below 22'):format(len))
      end
      dist = b.rd(tables, pos - 18 - 3, 4)
      break
    end
    pos = pos - len
  end
  if not dist then
    return fail('no TDX metadata entry (GUID ' .. METADATA_GUID .. ') in the GUIDed table')
  end
  if dist > n or dist < 16 then
    return fail(('TDVF descriptor offset %d out of range'):format(dist))
  end
  local d = n - dist + 1 -- 1-based descriptor position
  if fw:sub(d, d + 3) ~= 'TDVF' then
    return fail('TDVF descriptor signature missing')
  end
  local version, count = b.rd(fw, d + 8, 4), b.rd(fw, d + 12, 4)
  if version ~= 1 then
    return fail(('TDVF descriptor version %s unsupported (1)'):format(tostring(version)))
  end
  if d + 16 + 32 * count - 1 > n then
    return fail(('TDVF descriptor: %d sections run past the end'):format(count))
  end
  local sections = {}
  for i = 0, count - 1 do
    local p = d + 16 + 32 * i
    local s = { data_offset = b.rd(fw, p, 4), raw_size = b.rd(fw, p + 4, 4),
      mem_addr = b.rd(fw, p + 8, 8), mem_size = b.rd(fw, p + 16, 8), type = b.rd(fw, p + 24, 4),
      attributes = b.rd(fw, p + 28, 4) }
    if s.mem_addr % PAGE ~= 0 or s.mem_size % PAGE ~= 0 then
      return fail(('section %d: memory address/size not 4 KiB aligned'):format(i))
    end
    if s.mem_size > MAX_SECTION then
      return fail(('section %d: memory size %d above 1 GiB'):format(i, s.mem_size))
    end
    if s.mem_size < s.raw_size then
      return fail(('section %d: memory size below raw size'):format(i))
    end
    if s.attributes % 2 == 1 and s.data_offset + s.mem_size > n then
      return fail(('section %d: measured data runs past the end of the firmware'):format(i))
    end
    sections[#sections + 1] = s
  end
  return { sections = sections }
end

--- MRTD (raw 48 bytes) of firmware `fw` with metadata `meta`; two_pass: all PAGE.ADDs of a
--- section before its EXTENDs (QEMU 8.x), else interleaved per page.
function M.mrtd(fw, meta, two_pass)
  local parts = {}
  local pad_add = ('\0'):rep(128 - 16 - 8)
  local add_head = 'MEM.PAGE.ADD' .. ('\0'):rep(4)
  local ext_head = 'MR.EXTEND' .. ('\0'):rep(7)
  local function add(s, p)
    if math.floor(s.attributes / 2) % 2 == 0 then
      parts[#parts + 1] = add_head .. b.le(s.mem_addr + p * PAGE, 8) .. pad_add
    end
  end
  local function extend(s, p)
    if s.attributes % 2 == 1 then
      for i = 0, 15 do
        local at = s.data_offset + p * PAGE + i * 256
        parts[#parts + 1] = ext_head .. b.le(s.mem_addr + p * PAGE + i * 256, 8) .. pad_add
        parts[#parts + 1] = fw:sub(at + 1, at + 256)
      end
    end
  end
  for _, s in ipairs(meta.sections) do
    local pages = s.mem_size / PAGE
    if two_pass then
      for p = 0, pages - 1 do add(s, p) end
      for p = 0, pages - 1 do extend(s, p) end
    else
      for p = 0, pages - 1 do
        add(s, p)
        extend(s, p)
      end
    end
  end
  return b.h384(table.concat(parts))
end

--- The sorted TD_HOB/TEMP_MEM ranges { {start, size}... } and the TD_HOB address of `meta`,
--- or nil, msg.
function M.hob_ranges(meta)
  local ranges, hob = {}, nil
  for _, s in ipairs(meta.sections) do
    if s.type == M.TD_HOB or s.type == M.TEMP_MEM then
      ranges[#ranges + 1] = { s.mem_addr, s.mem_size }
    end
    if s.type == M.TD_HOB then
      if hob then
        return fail('more than one TD_HOB section')
      end
      hob = s.mem_addr
    end
  end
  return ranges, hob
end

return M
