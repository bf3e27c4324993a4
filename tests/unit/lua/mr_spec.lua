-- SPDX-License-Identifier: Apache-2.0
-- moonstack.mr (dstack-mr, kms-vmm-gateway.md §7) against values nobody here computed:
--   * the TD HOB witness of spec §9.9 (upstream unit test) and its decoding;
--   * the lite path (§7.7, §9.8) on dstack's verifier fixture tdx-lite-getquote.json: MRTD,
--     RTMR0 (TD HOB from the witness + 2 GiB + the event log's ACPI digests), RTMR1, RTMR2 all
--     equal the fixture QUOTE's registers, and the TD HOB digest equals its first event;
--   * the TD HOB of the simulator fixture (16 GiB, qemu 8.2.2: the >= 0xB0000000 split) equals
--     that attestation's first RTMR0 event;
--   * the fixed RTMR0/RTMR1 events (EFI variables, separator, BootOrder, the EFI strings)
--     equal the digests in the upstream CCEL snapshot;
--   * os_image_hash = SHA-256 of sha256sum.txt on atlas's dstack-nvidia-0.5.4.1 (§4);
--   * the kernel patch invariance of §9.11 (upstream unit test), the QEMU defaults (§7.1),
--     the TDVF parser on a crafted firmware and its refusals.
local mr_acpi = require('moonstack.mr.acpi')
local b = require('moonstack.mr.bytes')
local cbor = require('moonstack.mr.cbor')
local crypto = require('moonstack.crypto')
local fixtures = require('tests.helpers.fixtures')
local json = require('cjson')
local kernel = require('moonstack.mr.kernel')
local mr = require('moonstack.mr')
local rtmr = require('moonstack.mr.rtmr')
local tdhob = require('moonstack.mr.tdhob')
local tdvf = require('moonstack.mr.tdvf')

local WITNESS = '80100904000609020b021010'

local function lite_fixture()
  local d = json.decode(fixtures.read_vector('dstack/verifier/tdx-lite-getquote.json'))
  return d, json.decode(d.vm_config), json.decode(d.event_log)
end

-- register `name` of a TDX v4 quote given as hex (TD report at byte 48)
local function reg(q, name)
  local off = ({ mrtd = 184, rtmr0 = 376, rtmr1 = 424, rtmr2 = 472 })[name]
  return q:sub(off * 2 + 1, (off + 48) * 2)
end

describe('mr.tdhob', function()
  local SECTIONS = { { 0x810000, 0x10000 }, { 0x80b000, 0x2000 }, { 0x809000, 0x2000 },
    { 0x800000, 0x6000 } }

  it('encodes the §9.9 witness exactly and decodes it back', function()
    assert.equal(WITNESS, b.hex(assert(tdhob.witness(SECTIONS, 0x809000))))
    local ranges, hob = tdhob.unwitness(b.unhex(WITNESS))
    assert.equal(0x809000, hob)
    assert.same({ { 0x800000, 0x6000 }, { 0x809000, 0x2000 }, { 0x80b000, 0x2000 },
      { 0x810000, 0x10000 } }, ranges)
  end)

  it('refuses malformed witnesses and ranges', function()
    assert.is_nil(tdhob.unwitness(b.unhex(WITNESS .. '00')))
    assert.is_nil(tdhob.unwitness(b.unhex(WITNESS:sub(1, 20))))
    assert.is_nil(tdhob.unwitness(''))
    assert.is_nil(tdhob.witness({ { 0x800000, 0x6000 }, { 0x801000, 0x1000 } }, 0x800000))
    assert.is_nil(tdhob.witness({}, 0x809000))
  end)

  it('reproduces the simulator attestation TD HOB (16 GiB: split at 2 GiB / 4 GiB)', function()
    local d = json.decode(fixtures.read_vector('derived/simulator-attestation.decoded.json'))
    local cfg = json.decode(json.decode(d.config).vm_config)
    assert.equal(17179869184, cfg.memory_size)
    local ranges, hob = tdhob.unwitness(b.unhex(WITNESS))
    assert.equal(d.event_log[1].digest, b.hex(tdhob.digest(cfg.memory_size, ranges, hob)))
  end)
end)

describe('mr lite path (tdx-lite-getquote.json)', function()
  it('gives the quote\'s MRTD and RTMR0-2', function()
    local d, cfg, events = lite_fixture()
    local acpi = assert(mr.acpi_from_events(events))
    local r = assert(mr.lite(cfg, acpi))
    assert.equal('8.2.2', cfg.qemu_version)
    assert.is_true(r.qemu.two_pass)
    assert.equal('fd685522ce791dfef67414614eb07d03fc07a32c5a66f36288b329dab92b724b'
      .. '1564c73d436ffb9ea84488c51ac5a1c5', b.hex(r.mrtd))
    for _, f in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }) do
      assert.equal(reg(d.quote, f), b.hex(r[f]), f)
    end
    -- every RTMR0 digest we compute equals the fixture's event (ACPI ones are inputs)
    local imr0 = {}
    for _, e in ipairs(events) do
      if e.imr == 0 then imr0[#imr0 + 1] = e.digest end
    end
    assert.equal(13, #imr0)
    for i, dg in ipairs(r.logs[1]) do
      assert.equal(imr0[i], b.hex(dg), 'RTMR0 event ' .. (i - 1))
    end
    -- spec §9.8: the document's SHA-256 (8c9e955f…870e3c) is listed in the checksum file,
    -- whose SHA-256 is the os_image_hash; its TD HOB witness is the §9.9 one
    local codec = require('moonstack.core.codec')
    local doc = codec.unbase64(cfg.tdx_measurement.measurement)
    local dh = crypto.hex(crypto.sha256(doc))
    assert.equal('8c9e955f', dh:sub(1, 8))
    assert.equal('870e3c', dh:sub(-6))
    assert.equal(cfg.os_image_hash,
      crypto.hex(crypto.sha256(codec.unbase64(cfg.tdx_measurement.checksum_file))))
    assert.equal(WITNESS, b.hex(cbor.decode(doc).tdvf.td_hob))
    local j = mr.to_json(r)
    assert.equal(reg(d.quote, 'rtmr0'), j.rtmr0)
  end)

  it('refuses a wrong os_image_hash, a bad memory size, an old QEMU, a tampered document', function()
    local _, cfg, events = lite_fixture()
    local acpi = assert(mr.acpi_from_events(events))
    local function try(change)
      local c = json.decode(json.encode(cfg))
      change(c)
      return select(2, mr.lite(c, acpi))
    end
    assert.matches('os_image_hash', try(function(c) c.os_image_hash = ('00'):rep(32) end))
    assert.matches('2 GiB', try(function(c) c.memory_size = 2 ^ 30 end))
    assert.matches('unsupported', try(function(c) c.qemu_version = '7.2.0' end))
    assert.matches('measurement.tdx.cbor', try(function(c)
      local m = b.unhex(b.hex(require('moonstack.core.codec').unbase64(c.tdx_measurement.measurement)))
      c.tdx_measurement.measurement = require('moonstack.core.codec').base64(m:sub(1, -2) .. 'x')
    end))
    -- memory >= 0xB0000000 is accepted (the same patched kernel)
    assert.is_nil(try(function(c) c.memory_size = 0xB0000000 end))
  end)

  it('takes the ACPI digests from unnamed events too and refuses a log without them', function()
    local _, _, events = lite_fixture()
    local named = assert(mr.acpi_from_events(events))
    for _, e in ipairs(events) do e.event = '' end
    assert.same(named, assert(mr.acpi_from_events(events)))
    local _, err = mr.acpi_from_events({ events[1] })
    assert.matches('ACPI', err)
  end)
end)

describe('mr fixed events', function()
  it('equal the digests of the upstream CCEL snapshot', function()
    local snap = fixtures.read_vector('dstack/cc-eventlog/ccel.expected-tdx-eventlog.snap')
    local ev = json.decode(snap:match('(%[.*%])'))
    local log0 = rtmr.rtmr0_log('x', { loader = 'l', rsdp = 'r', tables = 't' })
    -- snapshot order: hob, cfv, 5 variables, separator, 3 acpi, (rtmr1 kernel), bootorder, boot0000
    local want0 = { [2] = ev[2], [3] = ev[3], [4] = ev[4], [5] = ev[5], [6] = ev[6], [7] = ev[7],
      [8] = ev[8], [12] = ev[13], [13] = ev[14] }
    for i, e in pairs(want0) do
      assert.equal(e.digest, b.hex(log0[i]), 'RTMR0 event ' .. (i - 1))
    end
    local log1 = rtmr.rtmr1_log('k')
    assert.equal(ev[15].digest, b.hex(log1[2]))
    assert.equal(ev[16].digest, b.hex(log1[3]))
    assert.equal(ev[17].digest, b.hex(log1[4]))
    assert.equal(ev[18].digest, b.hex(log1[5]))
  end)

  it('applies the QEMU version defaults and overrides (§7.1)', function()
    assert.same({ qemu = '9.1.0', two_pass = false, pic = false }, rtmr.qemu_options({}))
    assert.same({ qemu = '8.2.2', two_pass = true, pic = true },
      rtmr.qemu_options({ qemu_version = '8.2.2' }))
    local o = rtmr.qemu_options({ qemu_version = '9.2.1', pic = true,
      qemu_single_pass_add_pages = true })
    assert.is_true(o.pic)
    assert.is_true(o.two_pass) -- misnamed upstream field, replicated literally
    assert.is_nil(rtmr.qemu_options({ qemu_version = '7.2.0' }))
    assert.is_nil(rtmr.qemu_options({ qemu_version = 'nine' }))
  end)
end)

describe('mr os_image_hash', function()
  it('is the SHA-256 of sha256sum.txt (atlas dstack-nvidia-0.5.4.1)', function()
    local sums = fixtures.read_vector('atlas/dstack-nvidia-0.5.4.1.sha256sum.txt')
    assert.equal('86b181377635db21c415f9ece8cc8505f7d4936ad3be7043969005a8c4690c1a',
      crypto.hex(crypto.sha256(sums)))
    local dir = fixtures.tmpdir('mr_spec')
    local f = assert(io.open(dir .. '/sha256sum.txt', 'wb'))
    f:write(sums)
    f:close()
    f = assert(io.open(dir .. '/metadata.json', 'wb'))
    f:write('{"bios":"ovmf.fd"}')
    f:close()
    local img = assert(mr.image(dir))
    assert.equal('86b181377635db21c415f9ece8cc8505f7d4936ad3be7043969005a8c4690c1a', img.os_image_hash)
    local _, err = img.files()
    assert.matches('firmware', err)
  end)
end)

describe('mr.kernel', function()
  local function zk()
    local t = { ('\0'):rep(0x206), b.le(0x020C, 2), ('\0'):rep(0x236 - 0x208), b.le(0x40, 2),
      ('\0'):rep(4096 - 0x238) }
    return table.concat(t)
  end
  local function addr(mem)
    return b.rd(assert(kernel.patch(zk(), mem, 1024 * 1024)), 0x218 + 1, 4)
  end

  it('moves the initrd with the RAM size only below 2 GiB (§9.11)', function()
    assert.are_not.equal(addr(2 * 2 ^ 30 - 4096), addr(2 * 2 ^ 30))
    assert.equal(addr(2 * 2 ^ 30), addr(0xB0000000))
    assert.equal(addr(2 * 2 ^ 30), addr(0xB0000000 + 2 ^ 30))
    local k = assert(kernel.patch(zk(), 2 * 2 ^ 30, 1024 * 1024))
    assert.equal(1024 * 1024, b.rd(k, 0x21C + 1, 4))
    -- loadflags bit 0 clear: real mode at 0x90000, command line at 0x9a000
    assert.equal(0x9a000, b.rd(k, 0x228 + 1, 4))
    assert.equal(0x9a000 - 0x90000 - 0x200, b.rd(k, 0x224 + 1, 4))
    assert.equal(0xB0, k:byte(0x210 + 1))
    assert.equal(0x80, k:byte(0x211 + 1))
  end)

  it('places the initrd as dstack-mr does (initrd_addr_max, no initrd, too large)', function()
    -- protocol 2.12 without XLF_CAN_BE_LOADED_ABOVE_4G: 0x37ffffff, initrd_addr_max ignored
    local k = zk():sub(1, 0x22C) .. b.le(0x10000000, 4) .. zk():sub(0x231, 0x236) .. '\0\0'
      .. zk():sub(0x239)
    assert.equal(4096, #k)
    local p = assert(kernel.patch(k, 2 ^ 31, 0x100000))
    assert.equal(0x37FFFFFF - 0x100000 - (0x37FFFFFF - 0x100000) % 4096, b.rd(p, 0x218 + 1, 4))
    -- protocol 2.03: initrd_addr_max is used
    local k3 = k:sub(1, 0x206) .. b.le(0x0203, 2) .. k:sub(0x209)
    p = assert(kernel.patch(k3, 2 ^ 31, 0x100000))
    assert.equal(0x10000000 - 0x100000, b.rd(p, 0x218 + 1, 4))
    -- no initrd: the initrd fields stay as they were
    p = assert(kernel.patch(zk(), 2 ^ 31, 0))
    assert.equal(0, b.rd(p, 0x218 + 1, 4))
    assert.matches('too large', select(2, kernel.patch(zk(), 2 ^ 31, 0x7FFFFFFF)))
  end)

  it('refuses a kernel that is not PE', function()
    local _, err = kernel.authenticode(zk())
    assert.matches('not a PE image', err)
    assert.is_nil(kernel.patch('short', 2 ^ 31, 0))
  end)
end)

describe('mr.tdvf', function()
  -- a crafted firmware: 2 measured BFV pages, a TD_HOB and a TEMP_MEM section
  local function firmware(opts)
    opts = opts or {}
    local body = ('\xAB'):rep(4096) .. ('\xCD'):rep(4096)
    local function sec(off, raw, addr, size, typ, attr)
      return b.le(off, 4) .. b.le(raw, 4) .. b.le(addr, 8) .. b.le(size, 8) .. b.le(typ, 4)
        .. b.le(attr, 4)
    end
    local desc = 'TDVF' .. b.le(16 + 3 * 32, 4) .. b.le(opts.version or 1, 4) .. b.le(3, 4)
      .. sec(0, 8192, 0xFFFFE000, 8192, 0, 1) .. sec(0, 0, 0x809000, 0x2000, 2, 0)
      .. sec(0, 0, 0x800000, opts.temp_size or 0x6000, 3, 2)
    local fw_len = #body + #desc + 22 + 2 + 16 + 32
    local entry = b.le(fw_len - #body, 4) .. b.le(22, 2) .. b.guid(opts.guid
      or 'e47a6535-984a-4798-865e-4685a7bf8ec2')
    return body .. desc .. entry .. b.le(#entry, 2)
      .. b.guid('96b582de-1fb2-45f7-baea-a366c55a082d') .. ('\0'):rep(32)
  end

  it('parses the sections and derives the witness and both MRTDs', function()
    local fw = firmware()
    local meta = assert(tdvf.parse(fw))
    assert.equal(3, #meta.sections)
    assert.same({ data_offset = 0, raw_size = 8192, mem_addr = 0xFFFFE000, mem_size = 8192,
      type = 0, attributes = 1 }, meta.sections[1])
    local ranges, hob = tdvf.hob_ranges(meta)
    assert.equal(0x809000, hob)
    assert.equal('8010090200060902', b.hex(tdhob.witness(ranges, hob)))
    local single, two = tdvf.mrtd(fw, meta, false), tdvf.mrtd(fw, meta, true)
    assert.equal(48, #single)
    assert.are_not.equal(single, two)
  end)

  it('refuses what is not a TDVF, naming why', function()
    assert.matches('footer GUID', select(2, tdvf.parse(('\0'):rep(4096))))
    assert.matches('no TDX metadata entry',
      select(2, tdvf.parse(firmware({ guid = '00000000-0000-0000-0000-000000000000' }))))
    assert.matches('version 2', select(2, tdvf.parse(firmware({ version = 2 }))))
    assert.matches('too small', select(2, tdvf.parse('x')))
    assert.matches('section 2: memory size 2147483648 above 1 GiB',
      select(2, tdvf.parse(firmware({ temp_size = 2 ^ 31 }))))
  end)
end)

describe('mr.cbor', function()
  it('decodes the subset and refuses trailing or truncated input', function()
    assert.same({ a = 1, b = 'xy' }, cbor.decode('\xa2\x61\x61\x01\x61\x62\x42\x78\x79'))
    assert.is_nil(cbor.decode('\x01\x02'))
    assert.is_nil(cbor.decode('\x5a\xff\xff\xff\xff'))
    assert.is_nil(cbor.decode('\xf6'))
  end)
end)

describe('mr.acpi', function()
  local function tbl(sig, len)
    return sig .. b.le(len, 4) .. ('\0'):rep(len - 8)
  end
  local BLOB = tbl('DSDT', 64) .. tbl('FACP', 244) .. tbl('APIC', 120) .. tbl('MCFG', 60)
    .. tbl('WAET', 40) .. tbl('RSDT', 52)
  local RSDT = 64 + 244 + 120 + 60 + 40

  it('builds the RSDP and the loader commands of §7.4', function()
    local rsdp, loader = assert(mr_acpi.build(BLOB))
    assert.equal('RSD PTR \0BOCHS \0' .. b.le(RSDT, 4), rsdp)
    assert.equal(4096, #loader)
    assert.equal(('\0'):rep(4096 - 17 * 128), loader:sub(17 * 128 + 1))
    local function cmd(i) return loader:sub(i * 128 + 1, i * 128 + 128) end
    assert.equal(b.le(1, 4) .. 'etc/acpi/rsdp', cmd(0):sub(1, 17))
    assert.equal(b.le(16, 4) .. '\2', cmd(0):sub(61, 65))
    assert.equal(b.le(64, 4) .. '\1', cmd(1):sub(61, 65))
    -- DSDT checksum: result at offset 9, start 0, length 64
    assert.equal(b.le(3, 4), cmd(2):sub(1, 4))
    assert.equal(b.le(9, 4) .. b.le(0, 4) .. b.le(64, 4), cmd(2):sub(61, 72))
    -- FACP pointers +36, +40 (4 bytes), +140 (8 bytes)
    for i, w in ipairs({ { 36, 4 }, { 40, 4 }, { 140, 8 } }) do
      assert.equal(b.le(2, 4), cmd(2 + i):sub(1, 4))
      assert.equal(b.le(64 + w[1], 4) .. string.char(w[2]), cmd(2 + i):sub(117, 121))
    end
    -- RSDT pointers and checksum, then rsdp+16 -> tables, then the RSDP checksum
    assert.equal(b.le(RSDT + 48, 4) .. '\4', cmd(13):sub(117, 121))
    assert.equal(b.le(RSDT + 9, 4) .. b.le(RSDT, 4) .. b.le(52, 4), cmd(14):sub(61, 72))
    assert.equal('etc/acpi/rsdp', cmd(15):sub(5, 17))
    assert.equal('etc/acpi/tables', cmd(15):sub(61, 75))
    assert.equal(b.le(8, 4) .. b.le(0, 4) .. b.le(20, 4), cmd(16):sub(61, 72))
    local d = assert(mr_acpi.digests(BLOB))
    assert.equal(b.h384(BLOB), d.tables)
    assert.equal(b.h384(loader), d.loader)
  end)

  it('refuses a blob without a table or with a zero-length one', function()
    assert.matches('no WAET table', select(2, mr_acpi.digests(BLOB:gsub('WAET', 'XXXX'))))
    assert.matches('zero length', select(2, mr_acpi.digests(tbl('DSDT', 64) .. 'FACP' .. b.le(0, 4))))
  end)
end)
