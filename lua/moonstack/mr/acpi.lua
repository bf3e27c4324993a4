-- SPDX-License-Identifier: Apache-2.0
-- The three ACPI digests of RTMR0 (events 8-10, kms-vmm-gateway.md §7.4) from the ACPI tables
-- blob QEMU builds for a VM shape (what dstack's patched `dstack-acpi-tables` prints): the
-- tables as they are, the RSDP pointing at the RSDT (unpatched, checksum 0) and the table
-- loader's commands (ALLOCATE, ADD_POINTER, ADD_CHECKSUM, 128 bytes each, zero-padded to
-- 4096) in QEMU's order. The blob itself cannot be produced here (no patched QEMU): this only
-- digests one given with `moonstack mr --acpi-tables FILE`.
local b = require('moonstack.mr.bytes')

local M = {}

local LOADER_LEN = 4096
local TABLES, RSDP = 'etc/acpi/tables', 'etc/acpi/rsdp'

local function name56(s)
  return s .. ('\0'):rep(56 - #s)
end

local function allocate(file, align, zone)
  return b.le(1, 4) .. name56(file) .. b.le(align, 4) .. string.char(zone) .. ('\0'):rep(63)
end

local function pointer(file, pointee, off, size)
  return b.le(2, 4) .. name56(file) .. name56(pointee) .. b.le(off, 4) .. string.char(size)
    .. ('\0'):rep(7)
end

local function checksum(file, result, start, len)
  return b.le(3, 4) .. name56(file) .. b.le(result, 4) .. b.le(start, 4) .. b.le(len, 4)
    .. ('\0'):rep(56)
end

--- { offset, checksum offset, length } of the table `sig` in `blob` (walking the {sig, u32
--- length} headers from the start), or nil, msg.
function M.find(blob, sig)
  local off = 0
  while off < #blob do
    if off + 8 > #blob then
      break
    end
    local len = b.rd(blob, off + 5, 4)
    if blob:sub(off + 1, off + 4) == sig then
      if off + len > #blob then
        return nil, ('EACPI: table %s runs past the end of the blob'):format(sig), 'EACPI'
      end
      return { off, off + 9, len }
    end
    if len == 0 then
      return nil, ('EACPI: a table of zero length at offset %d'):format(off), 'EACPI'
    end
    off = off + len
  end
  return nil, ('EACPI: no %s table in the ACPI tables blob'):format(sig), 'EACPI'
end

--- The RSDP (20 bytes) and the loader blob (4096 bytes) for tables `blob`, or nil, msg.
function M.build(blob)
  local t = {}
  for _, sig in ipairs({ 'DSDT', 'FACP', 'APIC', 'MCFG', 'WAET', 'RSDT' }) do
    local r, err, code = M.find(blob, sig)
    if not r then
      return nil, err, code
    end
    t[sig] = r
  end
  local rsdp = 'RSD PTR ' .. '\0' .. 'BOCHS ' .. '\0' .. b.le(t.RSDT[1], 4)
  local cmds = { allocate(RSDP, 16, 2), allocate(TABLES, 64, 1),
    checksum(TABLES, t.DSDT[2], t.DSDT[1], t.DSDT[3]),
    pointer(TABLES, TABLES, t.FACP[1] + 36, 4), pointer(TABLES, TABLES, t.FACP[1] + 40, 4),
    pointer(TABLES, TABLES, t.FACP[1] + 140, 8),
    checksum(TABLES, t.FACP[2], t.FACP[1], t.FACP[3]),
    checksum(TABLES, t.APIC[2], t.APIC[1], t.APIC[3]),
    checksum(TABLES, t.MCFG[2], t.MCFG[1], t.MCFG[3]),
    checksum(TABLES, t.WAET[2], t.WAET[1], t.WAET[3]) }
  for i = 0, 3 do
    cmds[#cmds + 1] = pointer(TABLES, TABLES, t.RSDT[1] + 36 + 4 * i, 4)
  end
  cmds[#cmds + 1] = checksum(TABLES, t.RSDT[2], t.RSDT[1], t.RSDT[3])
  cmds[#cmds + 1] = pointer(RSDP, TABLES, 16, 4)
  cmds[#cmds + 1] = checksum(RSDP, 8, 0, 20)
  local loader = table.concat(cmds)
  return rsdp, loader .. ('\0'):rep(LOADER_LEN - #loader)
end

--- The RTMR0 ACPI digests { loader, rsdp, tables } (raw) of tables `blob`, or nil, msg.
function M.digests(blob)
  local rsdp, loader, code = M.build(blob)
  if not rsdp then
    return nil, loader, code
  end
  return { loader = b.h384(loader), rsdp = b.h384(rsdp), tables = b.h384(blob) }
end

return M
