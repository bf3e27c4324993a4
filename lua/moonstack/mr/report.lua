-- SPDX-License-Identifier: Apache-2.0
-- measurements.json, written by `moonstack image build` beside digest.txt: what of an image's
-- TDX boot measurements (kms-vmm-gateway.md §7) can be computed from its files alone, and why
-- the rest cannot. Not listed in sha256sum.txt (derived from the files it lists, so
-- os_image_hash stays that of the files):
--
--   { "os_image_hash": hex, "tdx": {
--       "measurable": bool, "reasons": [ why MRTD / RTMR0 / RTMR1 are missing ],
--       "cmdline_sha384", "initrd_sha384", "rtmr2"                  (RTMR2: always, when the
--                                         image has a kernel command line and an initrd),
--       "kernel_authenticode", "rtmr1"    (PE kernel; patched for 2 GiB / >= 0xB0000000 RAM),
--       "mrtd": { "single_pass", "two_pass" }, "td_hob_witness"   (TDVF firmware) } }
--
-- RTMR0 always needs the ACPI tables of the VM shape: `moonstack mr --image DIR --event-log
-- ... --register MEASUREMENTS_DIR` completes it for the KMS.
local b = require('moonstack.mr.bytes')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local kernel = require('moonstack.mr.kernel')
local mr = require('moonstack.mr')
local rtmr = require('moonstack.mr.rtmr')
local tdhob = require('moonstack.mr.tdhob')
local tdvf = require('moonstack.mr.tdvf')

local M = {}

local MAX = 1024 * 1024 * 1024

local function file(dir, name)
  if type(name) ~= 'string' or name == '' or name:find('/', 1, true) then
    return nil
  end
  return fs.read_file(dir .. '/' .. name, MAX)
end

--- The measurements.json object of image directory `dir` (metadata.json, digest.txt), or
--- nil, msg, code.
function M.report(dir)
  local img, err, code = mr.image(dir)
  if not img then
    return nil, err, code
  end
  local meta = img.metadata
  local t = { reasons = json.array({}) }
  local function why(s)
    t.reasons[#t.reasons + 1] = s
  end
  local initrd, k, fw = file(dir, meta.initrd), file(dir, meta.kernel), file(dir, meta.bios)
  if type(meta.cmdline) == 'string' and initrd then
    t.cmdline_sha384 = b.hex(rtmr.cmdline_digest(meta.cmdline .. ' initrd=initrd'))
    t.initrd_sha384 = b.hex(b.h384(initrd))
    t.rtmr2 = b.hex(b.measure_log(rtmr.rtmr2_log(b.unhex(t.cmdline_sha384),
      b.unhex(t.initrd_sha384))))
  else
    why('RTMR2: the image has no kernel command line and initrd')
  end
  local auth
  if k then
    local patched
    patched, err = kernel.patch(k, 0xB0000000, initrd and #initrd or nil)
    if patched then
      auth, err = kernel.authenticode(patched)
    end
  end
  if auth then
    t.kernel_authenticode = b.hex(auth)
    t.rtmr1 = b.hex(b.measure_log(rtmr.rtmr1_log(auth)))
  else
    why(('RTMR1: the kernel (%s) is not a PE bzImage that TDVF would load and hash (%s)')
      :format(tostring(meta.kernel), k and tostring(err):gsub('^E%u+: ', '') or 'absent'))
  end
  local parsed
  if fw then
    parsed, err = tdvf.parse(fw)
  end
  if parsed then
    t.mrtd = { single_pass = b.hex(tdvf.mrtd(fw, parsed, false)),
      two_pass = b.hex(tdvf.mrtd(fw, parsed, true)) }
    local ranges, hob = tdvf.hob_ranges(parsed)
    local w = ranges and tdhob.witness(ranges, hob)
    t.td_hob_witness = w and b.hex(w) or nil
  else
    why(fw and ('MRTD: the bios is not a TDVF firmware (%s)'):format(tostring(err))
      or 'MRTD: the image has no TDVF firmware (metadata bios is empty): it boots its kernel '
        .. 'directly (QEMU -kernel, PVH), so MRTD is not a TDVF image\'s')
  end
  why('RTMR0: needs the ACPI tables of the VM shape (moonstack mr --event-log/--acpi-digests)')
  t.measurable = t.mrtd ~= nil and t.rtmr1 ~= nil and t.rtmr2 ~= nil
  return { os_image_hash = img.os_image_hash, tdx = t }
end

--- Write <dir>/measurements.json (0644); returns the object, or nil, msg, code.
function M.write(dir)
  local r, err, code = M.report(dir)
  if not r then
    return nil, err, code
  end
  local ok
  ok, err, code = fs.write_atomic(dir .. '/measurements.json', json.encode(r) .. '\n', 420)
  if not ok then
    return nil, err, code
  end
  return r
end

return M
