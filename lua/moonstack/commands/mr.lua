-- SPDX-License-Identifier: Apache-2.0
-- `moonstack mr`: the MRTD, RTMR0-2 and os_image_hash a TDX VM booting an image must show, for
-- a VM configuration, as upstream's `dstack-mr measure` computes them (moonstack.mr, spec
-- kms-vmm-gateway.md §7). --json prints the object the KMS's OS-image gate reads
-- (<measurements_dir>/<os_image_hash>.json); --register DIR adds it there.
local args = require('moonstack.core.args')
local b = require('moonstack.mr.bytes')
local fs = require('moonstack.core.fs')
local json = require('cjson.safe')
local mr = require('moonstack.mr')

local PROG = 'moonstack mr'

local spec = {
  usage = 'moonstack mr --image DIR [-c N] [-m SIZE] [--qemu-version V] [OPTIONS] [--json]',
  summary = 'expected MRTD, RTMR0-2 and os_image_hash of an image for a VM configuration',
  description = table.concat({
    'DIR is an image directory (metadata.json naming bios, kernel, initrd, cmdline;',
    'sha256sum.txt/digest.txt): the full path measures the TDVF firmware (MRTD), the patched',
    'kernel\'s Authenticode hash (RTMR1) and the command line and initrd (RTMR2). RTMR0 also',
    'needs the three ACPI digests, which upstream takes from its patched QEMU: give them with',
    '--event-log (a quote\'s event log: the acpi-loader/-rsdp/-tables IMR0 events),',
    '--acpi-digests, or --acpi-tables (the tables blob of dstack\'s patched QEMU,',
    '`dstack-acpi-tables`, for this VM shape). With --vm-config (a VmConfig JSON carrying',
    'tdx_measurement) the lite path needs no image files (the VM shape is that file\'s; a',
    'GetQuote answer with a vm_config string works too). The ACPI-only flags',
    '(--pci-hole64-size, --hotplug-off, --num-gpus, ...) describe the VM shape and are',
    'recorded with the result; they change RTMR0 only through the ACPI digests.',
    'Sizes: bytes, 0x-hex, or with a K/M/G/T (binary) suffix.',
    'Exit status: 0 measured, 1 measurement failed, 2 usage error.',
  }, '\n'),
  options = {
    { '--image', arg = 'DIR', help = 'the image directory' },
    { '--vm-config', arg = 'FILE', help = 'lite path: a VmConfig JSON with tdx_measurement' },
    { '-c', '--cpu', '--cpus', arg = 'N', default = '1', help = 'vCPUs' },
    { '-m', '--memory', arg = 'SIZE', default = '2G', help = 'RAM' },
    { '--qemu-version', arg = 'V', help = 'QEMU version (default 9.1.0; 8.x: two-pass, pic on)' },
    { '--two-pass-add-pages', arg = 'BOOL', help = 'override the page-add order (true|false)' },
    { '--pic', arg = 'BOOL', help = 'override the PIC (true|false)' },
    { '--pci-hole64-size', arg = 'SIZE', help = 'PCI 64-bit hole size' },
    { '--hugepages', help = 'hugepage-backed RAM' },
    { '--num-gpus', arg = 'N', default = '0', help = 'GPUs passed through' },
    { '--num-nvswitches', arg = 'N', default = '0', help = 'NVSwitches passed through' },
    { '--num-nics', arg = 'N', default = '1', help = 'virtio-net NICs' },
    { '--num-verity-volumes', arg = 'N', default = '0', help = 'virtio-blk verity volumes' },
    { '--hotplug-off', help = 'PCI hotplug off' },
    { '--smm', help = 'SMM on' },
    { '--swtpm', help = 'a swtpm TPM (unsupported by dstack-mr: an error)' },
    { '--event-log', arg = 'FILE', help = 'RTMR0 ACPI digests from this event log JSON' },
    { '--acpi-tables', arg = 'FILE',
      help = 'RTMR0 ACPI digests from this tables blob (dstack-acpi-tables output)' },
    { '--acpi-digests', arg = 'L,R,T',
      help = 'RTMR0 ACPI digests: loader, rsdp, tables (hex, comma-separated)' },
    { '--register', arg = 'DIR', help = 'add the result to DIR/<os_image_hash>.json (KMS gate)' },
    { '--json', help = 'print the measurements as the KMS gate\'s JSON object' },
  },
}

--- A size: decimal or 0x-hex bytes, or a number with K/M/G/T (binary); nil when malformed.
local function size(s)
  s = tostring(s)
  local hex = s:match('^0[xX](%x+)$')
  if hex then
    return tonumber(hex, 16)
  end
  local n, unit = s:match('^(%d+)([KkMmGgTt]?)[iI]?[bB]?$')
  if not n then
    return nil
  end
  local mul = ({ [''] = 1, k = 2 ^ 10, m = 2 ^ 20, g = 2 ^ 30, t = 2 ^ 40 })[unit:lower()]
  return tonumber(n) * mul
end

local function count(opts, key, flag)
  local n = tonumber(opts[key])
  if not n or n < 0 or n % 1 ~= 0 or n > 4096 then
    return nil, ('%s %s: not a non-negative integer'):format(flag, tostring(opts[key]))
  end
  return n
end

local function bool(v, flag)
  if v == nil then
    return nil
  end
  if v == 'true' then
    return true
  elseif v == 'false' then
    return false
  end
  error({ msg = ('%s %s: must be true or false'):format(flag, v) })
end

-- The VmConfig of the flags, or nil, message naming the flag.
local function vm_config(opts)
  local cfg = { qemu_version = opts.qemu_version, hugepages = opts.hugepages, smm = opts.smm,
    hotplug_off = opts.hotplug_off }
  local err
  for _, f in ipairs({ { 'cpus', '--cpus', 'cpu_count' }, { 'num_gpus', '--num-gpus' },
    { 'num_nvswitches', '--num-nvswitches' }, { 'num_nics', '--num-nics' },
    { 'num_verity_volumes', '--num-verity-volumes' } }) do
    cfg[f[3] or f[1]], err = count(opts, f[1], f[2])
    if err then
      return nil, err
    end
  end
  if cfg.cpu_count < 1 then
    return nil, '--cpus 0: at least one vCPU'
  end
  cfg.memory_size = size(opts.memory)
  if not cfg.memory_size or cfg.memory_size < 2 ^ 20 then
    return nil, ('--memory %s: not a size of at least 1M'):format(opts.memory)
  end
  if opts.pci_hole64_size then
    cfg.pci_hole64_size = size(opts.pci_hole64_size)
    if not cfg.pci_hole64_size then
      return nil, ('--pci-hole64-size %s: not a size'):format(opts.pci_hole64_size)
    end
  end
  local ok, e = pcall(function()
    cfg.pic = bool(opts.pic, '--pic')
    cfg.qemu_single_pass_add_pages = bool(opts.two_pass_add_pages, '--two-pass-add-pages')
  end)
  if not ok then
    return nil, type(e) == 'table' and e.msg or tostring(e)
  end
  if opts.swtpm then
    return nil, '--swtpm: dstack-mr cannot measure a swtpm VM (unsupported)'
  end
  return cfg
end

local function acpi_digests(opts)
  if opts.acpi_digests then
    local l, r, t = opts.acpi_digests:match('^(%x+),(%x+),(%x+)$')
    if not (l and #l == 96 and #r == 96 and #t == 96) then
      return nil, '--acpi-digests: three 48-byte hex digests separated by commas'
    end
    return { loader = b.unhex(l), rsdp = b.unhex(r), tables = b.unhex(t) }
  end
  if opts.acpi_tables then
    local blob, err = fs.read_file(opts.acpi_tables, 16 * 1024 * 1024)
    if not blob then
      return nil, ('--acpi-tables %s: %s'):format(opts.acpi_tables, tostring(err))
    end
    local d, e = require('moonstack.mr.acpi').digests(blob)
    if not d then
      return nil, ('--acpi-tables %s: %s'):format(opts.acpi_tables, e:gsub('^EACPI: ', ''))
    end
    return d
  end
  if opts.event_log then
    local text, err = fs.read_file(opts.event_log, 16 * 1024 * 1024)
    if not text then
      return nil, ('--event-log %s: %s'):format(opts.event_log, tostring(err))
    end
    local doc = json.decode(text)
    if type(doc) == 'table' and type(doc.event_log) == 'string' then
      doc = json.decode(doc.event_log)
    elseif type(doc) == 'table' and type(doc.event_log) == 'table' then
      doc = doc.event_log
    end
    if type(doc) ~= 'table' then
      return nil, ('--event-log %s: not an event log JSON array'):format(opts.event_log)
    end
    local a, e = mr.acpi_from_events(doc)
    if not a then
      return nil, ('--event-log %s: %s'):format(opts.event_log, e:gsub('^EMR: ', ''))
    end
    return a
  end
  return false
end

local function measure(opts, cfg, acpi)
  if opts.vm_config then
    local text, err = fs.read_file(opts.vm_config, 1024 * 1024)
    local vc = text and json.decode(text)
    if type(vc) ~= 'table' then
      return nil, ('--vm-config %s: %s'):format(opts.vm_config, err or 'not a JSON object')
    end
    if type(vc.vm_config) == 'string' then -- a GetQuote answer or sys-config
      vc = json.decode(vc.vm_config) or {}
    end
    local r, e = mr.lite(vc, acpi or nil)
    if not r then
      return nil, ('--vm-config %s: %s'):format(opts.vm_config, e)
    end
    return r, vc.os_image_hash, { cpu_count = vc.cpu_count, memory_size = vc.memory_size,
      qemu_version = vc.qemu_version, image = vc.image }
  end
  local img, err = mr.image(opts.image)
  if not img then
    return nil, ('--image %s: %s'):format(opts.image, err)
  end
  local files
  files, err = img.files()
  if not files then
    return nil, ('--image %s: %s'):format(opts.image, err)
  end
  files.acpi = acpi or nil
  local r
  r, err = mr.measure(files, cfg)
  if not r then
    return nil, ('--image %s: %s'):format(opts.image, err)
  end
  cfg.image = opts.image:match('([^/]+)/*$')
  return r, img.os_image_hash, cfg
end

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  if (opts.image == nil) == (opts.vm_config == nil) then
    return args.fail(PROG, 'give --image DIR or --vm-config FILE (one of them)')
  end
  local cfg, err = vm_config(opts)
  if not cfg then
    return args.fail(PROG, err)
  end
  local acpi
  acpi, err = acpi_digests(opts)
  if acpi == nil then
    return args.fail(PROG, err)
  end
  local r, hash, shape = measure(opts, cfg, acpi)
  if not r then
    io.stderr:write(PROG, ': ', (tostring(hash):gsub('E[A-Z]+: ', '')), '\n')
    return 1
  end
  if (opts.json or opts.register) and not r.rtmr0 then
    io.stderr:write(PROG, ': RTMR0 needs the ACPI digests (--event-log FILE or --acpi-digests):',
      ' the KMS gate compares all four registers\n')
    return 1
  end
  local o = mr.to_json(r, { os_image_hash = hash, vm_config = shape })
  if opts.register then
    local ok, what = require('moonstack.kms.image').register(opts.register, hash, o)
    if not ok then
      io.stderr:write(PROG, ': --register ', opts.register, ': ', what, '\n')
      return 1
    end
    io.stderr:write(('%s: %s %s/%s.json\n'):format(PROG, what, opts.register, hash))
  end
  if opts.json then
    io.stdout:write(json.encode(o), '\n')
  else
    io.stdout:write('Machine measurements:\n')
    io.stdout:write('MRTD: ', o.mrtd, '\n')
    io.stdout:write('RTMR0: ', o.rtmr0 or '(unknown: needs --event-log or --acpi-digests)', '\n')
    io.stdout:write('RTMR1: ', o.rtmr1, '\n')
    io.stdout:write('RTMR2: ', o.rtmr2, '\n')
    io.stdout:write('os_image_hash: ', tostring(hash or '(no sha256sum.txt/digest.txt)'), '\n')
  end
  return 0
end

return {
  name = 'mr',
  summary = 'expected TDX measurements (MRTD, RTMR0-2, os_image_hash) of an image, as dstack-mr',
  run = run,
}
