-- SPDX-License-Identifier: Apache-2.0
-- The kernel as OVMF measures it into RTMR1 (kms-vmm-gateway.md §7.5): QEMU first patches the
-- bzImage setup header (command line and initrd addresses, which depend on the RAM size), then
-- TDVF hashes the patched PE image the Authenticode way (SHA-384), with dstack's quirks.
local b = require('moonstack.mr.bytes')
local crypto = require('moonstack.crypto')

local M = {}

local ACPI_DATA_SIZE = 0x28000

local function put(t, off, s)
  -- off is 0-based; t is an array of 1-char strings
  for i = 1, #s do
    t[off + i] = s:sub(i, i)
  end
end

--- The kernel bytes as QEMU patches them (as dstack-mr replicates it) for `memory` bytes of
--- RAM and an initrd of `initrd_size` bytes (nil or 0: no initrd), or nil, msg.
function M.patch(kernel, memory, initrd_size)
  if #kernel < 0x1000 then
    return nil, ('EKERNEL: kernel too small for a setup header (%d bytes)'):format(#kernel),
      'EKERNEL'
  end
  local head = {}
  for i = 1, 0x1000 < #kernel and 0x1000 or #kernel do
    head[i] = kernel:sub(i, i)
  end
  local cur = table.concat(head)
  local proto = b.rd(cur, 0x206 + 1, 2)
  local loadflags = cur:byte(0x211 + 1)
  local real, cmdline
  if proto < 0x200 or loadflags % 2 == 0 then
    real, cmdline = 0x90000, 0x9a000
  else
    real, cmdline = 0x10000, 0x20000
  end
  if proto >= 0x200 then
    put(head, 0x210, '\176')
  end
  if proto >= 0x201 then
    put(head, 0x211, string.char(loadflags >= 128 and loadflags or loadflags + 128))
    put(head, 0x224, b.le(cmdline - real - 0x200, 4))
  end
  if proto >= 0x202 then
    put(head, 0x228, b.le(cmdline, 4))
  else
    put(head, 0x20, b.le(0xA33F, 2))
    put(head, 0x22, b.le(cmdline - real, 2))
  end
  if initrd_size and initrd_size > 0 then
    if proto < 0x200 then
      return nil, 'EKERNEL: the kernel is too old for an initrd (boot protocol < 2.00)', 'EKERNEL'
    end
    local max
    local xload = b.rd(cur, 0x236 + 1, 2)
    if proto >= 0x20C then -- dstack-mr: no fallback to initrd_addr_max here (QEMU has one)
      max = math.floor(xload / 0x40) % 2 == 1 and 0xFFFFFFFF or 0x37FFFFFF
    elseif proto >= 0x203 and b.rd(cur, 0x22C + 1, 4) ~= 0 then
      max = b.rd(cur, 0x22C + 1, 4)
    else
      max = 0x37FFFFFF
    end
    local lowmem = memory < 0xB0000000 and 0xB0000000 or 0x80000000
    local below4g = math.min(memory, lowmem)
    if max >= below4g - ACPI_DATA_SIZE then
      max = below4g - ACPI_DATA_SIZE - 1
    end
    if initrd_size >= max then
      return nil, 'EKERNEL: the initrd is too large for the RAM below 4 GiB', 'EKERNEL'
    end
    local addr = max - initrd_size
    addr = addr - addr % 0x1000
    put(head, 0x218, b.le(addr, 4))
    put(head, 0x21C, b.le(initrd_size, 4))
  end
  return table.concat(head) .. kernel:sub(#head + 1)
end

--- The Authenticode digest (raw) of PE image `pe` with hash `alg` (default 'sha384'), with
--- dstack-mr's rules: trailing data only when a certificate table exists, then zero padding to
--- a multiple of 8 bytes. Returns nil, msg for a file that is not PE32/PE32+.
function M.authenticode(pe, alg)
  local n = #pe
  local lfanew = b.rd(pe, 0x3C + 1, 4)
  if not lfanew or pe:sub(1, 2) ~= 'MZ' or pe:sub(lfanew + 1, lfanew + 4) ~= 'PE\0\0' then
    return nil, 'EKERNEL: not a PE image (no MZ/PE signature): is the kernel a bzImage with '
      .. 'an EFI stub?', 'EKERNEL'
  end
  local nsec = b.rd(pe, lfanew + 6 + 1, 2)
  local optsize = b.rd(pe, lfanew + 20 + 1, 2)
  local opt = lfanew + 24
  local magic = b.rd(pe, opt + 1, 2)
  local dd
  if magic == 0x10b then
    dd = opt + 96
  elseif magic == 0x20b then
    dd = opt + 112
  else
    return nil, ('EKERNEL: unknown optional header magic 0x%x'):format(magic or 0), 'EKERNEL'
  end
  local cert = dd + 4 * 8
  local hdr = b.rd(pe, opt + 60 + 1, 4)
  if not hdr or hdr > n or cert + 8 > hdr or opt + optsize + 40 * nsec > n then
    return nil, 'EKERNEL: PE headers truncated', 'EKERNEL'
  end
  local parts = { pe:sub(1, opt + 64), pe:sub(opt + 68 + 1, cert), pe:sub(cert + 8 + 1, hdr) }
  local secs = {}
  for i = 0, nsec - 1 do
    local p = opt + optsize + 40 * i
    local size, ptr = b.rd(pe, p + 16 + 1, 4), b.rd(pe, p + 20 + 1, 4)
    if size > 0 then
      secs[#secs + 1] = { ptr, size }
    end
  end
  table.sort(secs, function(x, y) return x[1] < y[1] end)
  local sum = hdr
  for _, s in ipairs(secs) do
    parts[#parts + 1] = pe:sub(s[1] + 1, s[1] + s[2])
    sum = sum + s[2]
  end
  local cert_addr, cert_size = b.rd(pe, cert + 1, 4), b.rd(pe, cert + 5, 4)
  if cert_addr ~= 0 and cert_size ~= 0 and n > sum then
    local extra = n - sum - cert_size
    if extra > 0 then
      parts[#parts + 1] = pe:sub(sum + 1, sum + extra)
    end
  end
  if n % 8 ~= 0 then
    parts[#parts + 1] = ('\0'):rep(8 - n % 8)
  end
  return crypto.hash(alg or 'sha384', table.concat(parts))
end

return M
