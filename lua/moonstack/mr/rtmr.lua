-- SPDX-License-Identifier: Apache-2.0
-- The event logs TDVF (pre-202505 OVMF) measures into RTMR0-2 (kms-vmm-gateway.md §7.4-§7.6)
-- and the QEMU-version defaults that decide the page-add order (§7.1). Digests are raw bytes.
local b = require('moonstack.mr.bytes')

local M = {}

local GLOBAL = '8be4df61-93ca-11d2-aa0d-00e098032b8c'
local IMAGE_DB = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f'

--- RTMR0 event 1: the CFV (configuration firmware volume) image of dstack's OVMF.
M.CFV = b.unhex('344bc51c980ba621aaa00da3ed7436f7d6e549197dfe699515dfa2c6583d95e6'
  .. '412af21c097d473155875ffd561d6790')
--- RTMR0 event 12: Boot0000 (OVMF's UiApp) of pre-202505 OVMF.
M.BOOT0000 = b.unhex('23ada07f5261f12f34a0bd8e46760962d6b4d576a416f1fea1c64bc656b1d28e'
  .. 'acf7047ae6e967c58fd2a98bfa74c298')

--- The digest of an (empty) EFI variable event: SHA-384(GUID ‖ u64 name length ‖ u64 0 ‖
--- UTF-16LE name).
function M.efi_variable(guid, name)
  return b.h384(b.guid(guid) .. b.le(#name, 8) .. b.le(0, 8) .. b.utf16le(name))
end

--- The 13 RTMR0 digests from the TD HOB digest and acpi = { loader, rsdp, tables } digests.
function M.rtmr0_log(td_hob, acpi)
  return { td_hob, M.CFV,
    M.efi_variable(GLOBAL, 'SecureBoot'), M.efi_variable(GLOBAL, 'PK'),
    M.efi_variable(GLOBAL, 'KEK'), M.efi_variable(IMAGE_DB, 'db'),
    M.efi_variable(IMAGE_DB, 'dbx'),
    b.h384('\0\0\0\0'), acpi.loader, acpi.rsdp, acpi.tables, b.h384('\0\0'), M.BOOT0000 }
end

--- The 5 RTMR1 digests from the kernel's Authenticode digest.
function M.rtmr1_log(kernel_authenticode)
  return { kernel_authenticode, b.h384('Calling EFI Application from Boot Option'),
    b.h384('\0\0\0\0'), b.h384('Exit Boot Services Invocation'),
    b.h384('Exit Boot Services Returned with Success') }
end

--- The RTMR2 digest of a kernel command line (already ending in ' initrd=initrd').
function M.cmdline_digest(cmdline)
  return b.h384(b.utf16le(cmdline) .. '\0\0')
end

--- The 2 RTMR2 digests: command line, initrd.
function M.rtmr2_log(cmdline_digest, initrd_digest)
  return { cmdline_digest, initrd_digest }
end

local function version(v)
  local a, c, d = tostring(v):match('^(%d+)%.(%d+)%.?(%d*)$')
  if not a then
    return nil
  end
  return tonumber(a), tonumber(c), tonumber(d ~= '' and d or 0)
end

--- The QEMU-dependent options of a VM config: { two_pass = bool, pic = bool, qemu = 'x.y.z' },
--- or nil, 'EMR: why'. cfg.qemu_version absent = 9.1.0; < 8.0.0 is unsupported. cfg.pic and
--- cfg.qemu_single_pass_add_pages override (the latter, literally as upstream: true = TWO-pass).
function M.qemu_options(cfg)
  local v = cfg.qemu_version or '9.1.0'
  local major = version(v)
  if not major then
    return nil, ('EMR: qemu_version %q is not MAJOR.MINOR[.PATCH]'):format(tostring(v)), 'EMR'
  end
  if major < 8 then
    return nil, ('EMR: qemu_version %s is unsupported (8.0.0 or later)'):format(v), 'EMR'
  end
  local o = { qemu = v, two_pass = major < 9, pic = major < 9 }
  if cfg.pic ~= nil then
    o.pic = cfg.pic and true or false
  end
  if cfg.qemu_single_pass_add_pages ~= nil then
    o.two_pass = cfg.qemu_single_pass_add_pages and true or false
  end
  return o
end

return M
