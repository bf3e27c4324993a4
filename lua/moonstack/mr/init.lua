-- SPDX-License-Identifier: Apache-2.0
-- dstack-mr (kms-vmm-gateway.md §7): the MRTD and RTMR0-2 a TDX VM booting an image must show,
-- for a VM configuration, from the image's files (the full path) or from the measurement
-- document an image carries in its vm_config (the lite path, §7.7). ACPI tables come from the
-- patched QEMU upstream runs; here their three RTMR0 digests are an input (from a quote's
-- event log, or from a tables blob through moonstack.mr.acpi).
local b = require('moonstack.mr.bytes')
local cbor = require('moonstack.mr.cbor')
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local json = require('cjson.safe')
local kernel = require('moonstack.mr.kernel')
local rtmr = require('moonstack.mr.rtmr')
local tdhob = require('moonstack.mr.tdhob')
local tdvf = require('moonstack.mr.tdvf')

local M = {}

local GIB2, LOW = 0x80000000, 0xB0000000
local MAX_FILE = 1024 * 1024 * 1024

local function fail(msg)
  return nil, 'EMR: ' .. msg, 'EMR'
end

--- The three ACPI digests { loader, rsdp, tables } (raw) of an event log (a list of TdxEvent
--- tables: imr, event_type, digest hex or raw, event): the IMR0 events of type 10 named
--- acpi-loader/-rsdp/-tables, or (unnamed) the first three IMR0 type-10 events in order.
function M.acpi_from_events(events)
  local named, plain = {}, {}
  for _, e in ipairs(events) do
    if e.imr == 0 and e.event_type == 10 then
      local d = e.digest
      if type(d) == 'string' and #d ~= 48 then
        d = codec.unhex(d)
      end
      if type(d) ~= 'string' or #d ~= 48 then
        return fail('an ACPI event of the event log has no 48-byte digest')
      end
      if e.event == 'acpi-loader' or e.event == 'acpi-rsdp' or e.event == 'acpi-tables' then
        named[e.event:sub(6)] = d
      else
        plain[#plain + 1] = d
      end
    end
  end
  if named.loader and named.rsdp and named.tables then
    return named
  end
  if #plain >= 3 then
    return { loader = plain[1], rsdp = plain[2], tables = plain[3] }
  end
  return fail('the event log has no three ACPI DATA events in IMR 0')
end

local function result(mrtd, log0, log1, log2)
  local r = { mrtd = mrtd, rtmr1 = b.measure_log(log1), rtmr2 = b.measure_log(log2),
    logs = { log0, log1, log2 } }
  if log0 then
    r.rtmr0 = b.measure_log(log0)
  end
  return r
end

local function memory_of(cfg)
  local mem = cfg.memory_size or GIB2
  if type(mem) ~= 'number' or mem <= 0 or mem % 1 ~= 0 then
    return nil
  end
  return mem
end

--- Measurements from the files: opts = { firmware = bytes, kernel = bytes, initrd = bytes,
--- cmdline = string (without ' initrd=initrd') , acpi = { loader, rsdp, tables } | nil } and
--- cfg (VmConfig: memory_size, qemu_version, pic, qemu_single_pass_add_pages). Returns
--- { mrtd, rtmr0 (only with acpi), rtmr1, rtmr2, logs, witness, mrtd_single, mrtd_two } raw,
--- or nil, msg, code.
function M.measure(opts, cfg)
  local qo, err, code = rtmr.qemu_options(cfg)
  if not qo then
    return nil, err, code
  end
  local mem = memory_of(cfg)
  if not mem then
    return fail('memory_size must be a positive integer number of bytes')
  end
  local meta
  meta, err, code = tdvf.parse(opts.firmware)
  if not meta then
    return nil, err, code
  end
  local ranges, hob = tdvf.hob_ranges(meta)
  if not ranges then
    return nil, hob, 'ETDVF'
  end
  local patched
  patched, err, code = kernel.patch(opts.kernel, mem, #opts.initrd)
  if not patched then
    return nil, err, code
  end
  local auth
  auth, err, code = kernel.authenticode(patched)
  if not auth then
    return nil, err, code
  end
  local single, two = tdvf.mrtd(opts.firmware, meta, false), tdvf.mrtd(opts.firmware, meta, true)
  local log0
  if opts.acpi then
    local hd
    hd, err, code = tdhob.digest(mem, ranges, hob)
    if not hd then
      return nil, err, code
    end
    log0 = rtmr.rtmr0_log(hd, opts.acpi)
  end
  local r = result(qo.two_pass and two or single, log0, rtmr.rtmr1_log(auth),
    rtmr.rtmr2_log(rtmr.cmdline_digest(opts.cmdline .. ' initrd=initrd'), b.h384(opts.initrd)))
  r.mrtd_single, r.mrtd_two, r.qemu = single, two, qo
  r.witness = tdhob.witness(ranges, hob)
  -- the lite document's kernel digest: patched for mem = 0xB0000000 (equal for 2 GiB)
  r.kernel_authenticode = kernel.authenticode(assert(kernel.patch(opts.kernel, LOW, #opts.initrd)))
  return r
end

--- Lite path (§7.7): measurements from a vm_config's tdx_measurement
--- { measurement = base64 CBOR, checksum_file = base64 sha256sum.txt } and the quote's event
--- log ACPI digests (acpi = { loader, rsdp, tables }). Checks H256(checksum_file) ==
--- cfg.os_image_hash and that it lists the CBOR's SHA-256 as measurement.tdx.cbor. Returns
--- { mrtd, rtmr0, rtmr1, rtmr2, logs } raw, or nil, msg, code.
function M.lite(cfg, acpi)
  local tm = cfg.tdx_measurement
  if type(tm) ~= 'table' then
    return fail('vm_config has no tdx_measurement')
  end
  local doc = type(tm.measurement) == 'string' and codec.unbase64(tm.measurement)
  local sums = type(tm.checksum_file) == 'string' and codec.unbase64(tm.checksum_file)
  if not doc or not sums then
    return fail('tdx_measurement.measurement/checksum_file must be base64')
  end
  if crypto.hex(crypto.sha256(sums)) ~= tostring(cfg.os_image_hash or ''):lower() then
    return fail('SHA-256 of tdx_measurement.checksum_file is not vm_config.os_image_hash')
  end
  local want = crypto.hex(crypto.sha256(doc)) .. '  measurement.tdx.cbor'
  local listed = false
  for line in sums:gmatch('[^\n]+') do
    listed = listed or line == want
  end
  if not listed then
    return fail('checksum_file does not list the measurement document as measurement.tdx.cbor')
  end
  local m, err = cbor.decode(doc)
  if not m then
    return nil, err, 'ECBOR'
  end
  local img, tv = m.image, m.tdvf
  if m.version ~= 3 or type(img) ~= 'table' or type(tv) ~= 'table' or type(tv.mrtd) ~= 'table' then
    return fail('measurement.tdx.cbor is not a version 3 document with image and tdvf')
  end
  if tv.ovmf ~= nil and tv.ovmf ~= 'pre202505' then
    return fail(('unsupported ovmf variant %s (pre202505)'):format(tostring(tv.ovmf)))
  end
  for _, v in ipairs({ img.cmdline_sha384, img.kernel_authenticode, img.initrd_sha384,
    tv.mrtd.single_pass, tv.mrtd.two_pass }) do
    if type(v) ~= 'string' or #v ~= 48 then
      return fail('measurement.tdx.cbor: a digest is not 48 bytes')
    end
  end
  local mem = memory_of(cfg)
  if not mem or (mem ~= GIB2 and mem < LOW) then
    return fail('lite measurements need memory_size = 2 GiB or >= 0xB0000000 (the kernel '
      .. 'patch depends on the RAM size otherwise)')
  end
  local qo, code
  qo, err, code = rtmr.qemu_options(cfg)
  if not qo then
    return nil, err, code
  end
  local ranges, hob = tdhob.unwitness(type(tv.td_hob) == 'string' and tv.td_hob or '')
  if not ranges then
    return nil, hob, 'ETDHOB'
  end
  local hd
  hd, err, code = tdhob.digest(mem, ranges, hob)
  if not hd then
    return nil, err, code
  end
  local r = result(qo.two_pass and tv.mrtd.two_pass or tv.mrtd.single_pass,
    acpi and rtmr.rtmr0_log(hd, acpi), rtmr.rtmr1_log(img.kernel_authenticode),
    rtmr.rtmr2_log(img.cmdline_sha384, img.initrd_sha384))
  r.qemu = qo
  return r
end

local function read(dir, name, what)
  if name == '' or name == nil then
    return fail(('metadata.json names no %s: the image cannot be measured as a TDX boot (see '
      .. 'its measurements.json)'):format(what))
  end
  if type(name) ~= 'string' or name:find('/', 1, true) or name:find('^%.') then
    return fail(('metadata.json: %s %q is not a file name in the image directory')
      :format(what, tostring(name)))
  end
  local data, err = fs.read_file(dir .. '/' .. name, MAX_FILE)
  if not data then
    return fail(('cannot read the %s %s/%s: %s'):format(what, dir, name, tostring(err)))
  end
  return data
end

--- An image directory's parts: { metadata, os_image_hash (hex, = digest.txt = SHA-256 of
--- sha256sum.txt), files = function(): { firmware, kernel, initrd, cmdline } | nil, msg }.
function M.image(dir)
  local text, err = fs.read_file(dir .. '/metadata.json', 1024 * 1024)
  if not text then
    return fail(('%s/metadata.json: %s'):format(dir, tostring(err)))
  end
  local meta = json.decode(text)
  if type(meta) ~= 'table' then
    return fail(dir .. '/metadata.json is not a JSON object')
  end
  local sums = fs.read_file(dir .. '/sha256sum.txt', 1024 * 1024)
  local digest = fs.read_file(dir .. '/digest.txt', 1024)
  local hash = sums and crypto.hex(crypto.sha256(sums))
  digest = digest and digest:match('^%s*(%x+)%s*$')
  if hash and digest and digest:lower() ~= hash then
    return fail(('%s/digest.txt (%s) is not the SHA-256 of sha256sum.txt (%s)')
      :format(dir, digest, hash))
  end
  local img = { dir = dir, metadata = meta, os_image_hash = hash or (digest and digest:lower()) }
  function img.files()
    local fw, k, i, e
    fw, e = read(dir, meta.bios, 'firmware (bios)')
    if not fw then return nil, e, 'EMR' end
    k, e = read(dir, meta.kernel, 'kernel')
    if not k then return nil, e, 'EMR' end
    i, e = read(dir, meta.initrd, 'initrd')
    if not i then return nil, e, 'EMR' end
    if type(meta.cmdline) ~= 'string' then
      return fail('metadata.json has no cmdline')
    end
    return { firmware = fw, kernel = k, initrd = i, cmdline = meta.cmdline }
  end
  return img
end

--- The measurements object the KMS OS-image gate reads (moonstack.kms.image), hex: mrtd,
--- rtmr0-2 (rtmr0 only when known), plus os_image_hash and the VM shape measured.
function M.to_json(r, extra)
  local o = { mrtd = b.hex(r.mrtd), rtmr1 = b.hex(r.rtmr1), rtmr2 = b.hex(r.rtmr2),
    rtmr0 = r.rtmr0 and b.hex(r.rtmr0) or nil }
  for k, v in pairs(extra or {}) do
    o[k] = v
  end
  return o
end

return M
