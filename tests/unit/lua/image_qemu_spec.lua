-- SPDX-License-Identifier: Apache-2.0
-- The pieces of `moonstack image build --kind qemu` that need no apt or QEMU: the cpio writer
-- (newc fields, sorted entries, parents added, the same bytes whatever the insertion order),
-- the bzImage payload locator, the module load order from depmod's index (dependencies right
-- to left, softdep pre: through an alias preferring the generic module, built-ins skipped,
-- unknown modules named), merged-/usr paths, the image's agent.lua, and a qemu image in the
-- VMM's image listing.
local uv = require('luv')
local cpio = require('moonstack.vmm.image.cpio')
local kernel = require('moonstack.vmm.image.kernel')
local initramfs = require('moonstack.vmm.image.initramfs')
local qemu = require('moonstack.vmm.image.qemu')
local images = require('moonstack.vmm.images')
local fixtures = require('fixtures')

-- Parse a newc archive into a list of { name, mode, uid, gid, nlink, mtime, size, rmajor,
-- rminor, data }.
local function parse(s)
  local out, at = {}, 1
  while true do
    assert.are.equal('070701', s:sub(at, at + 5))
    local f = {}
    for i = 0, 12 do
      f[i + 1] = tonumber(s:sub(at + 6 + i * 8, at + 13 + i * 8), 16)
    end
    local namesize = f[12]
    local name = s:sub(at + 110, at + 110 + namesize - 2)
    local hdr = 110 + namesize
    hdr = hdr + (4 - hdr % 4) % 4
    local size = f[7]
    local data = s:sub(at + hdr, at + hdr + size - 1)
    if name == 'TRAILER!!!' then
      return out
    end
    out[#out + 1] = { name = name, ino = f[1], mode = f[2], uid = f[3], gid = f[4], nlink = f[5],
      mtime = f[6], size = size, rmajor = f[10], rminor = f[11], data = data }
    at = at + hdr + size + (4 - size % 4) % 4
  end
end

describe('moonstack.vmm.image.cpio', function()
  it('writes sorted newc entries with parents, mtime 0 and owner root', function()
    local w = cpio.new()
    w:file('usr/bin/tool', 'abc', 493)
    w:symlink('bin', 'usr/bin')
    w:char('dev/console', 5, 1, 384)
    w:dir('tmp', 1023)
    local list = parse(assert(w:bytes()))
    local names = {}
    for i, e in ipairs(list) do
      names[i] = e.name
      assert.are.equal(0, e.mtime)
      assert.are.equal(0, e.uid)
      assert.are.equal(0, e.gid)
      assert.are.equal(i, e.ino)
    end
    assert.are.same({ 'bin', 'dev', 'dev/console', 'tmp', 'usr', 'usr/bin', 'usr/bin/tool' }, names)
    assert.are.equal(tonumber('100755', 8), list[7].mode)
    assert.are.equal('abc', list[7].data)
    assert.are.equal(tonumber('120777', 8), list[1].mode)
    assert.are.equal('usr/bin', list[1].data)
    assert.are.equal(tonumber('20600', 8), list[3].mode)
    assert.are.same({ 5, 1 }, { list[3].rmajor, list[3].rminor })
    assert.are.equal(tonumber('41777', 8), list[4].mode)
    assert.are.equal(2, list[4].nlink)
    assert.are.equal(0, #assert(w:bytes()) % 4)
  end)

  it('gives the same bytes whatever order the entries come in', function()
    local a, b = cpio.new(), cpio.new()
    a:file('etc/a', '1'); a:file('etc/b', '22'); a:symlink('x', 'etc/a'); a:dir('etc', 448)
    b:dir('etc', 448); b:symlink('x', 'etc/a'); b:file('etc/b', '22'); b:file('etc/a', '1')
    assert.are.equal(a:bytes(), b:bytes())
  end)

  it('refuses a name twice and names with .. or empty parts', function()
    local w = cpio.new()
    w:file('a', 'x')
    assert.has_error(function() w:file('a', 'y') end)
    assert.has_error(function() w:file('a/../b', 'y') end)
    assert.has_error(function() w:file('', 'y') end)
  end)
end)

describe('moonstack.vmm.image.kernel', function()
  it('finds the compressed payload a bzImage header points at', function()
    local setup = 3
    local hdr = {}
    for i = 1, (setup + 1) * 512 + 64 do
      hdr[i] = '\0'
    end
    local function put(at, s)
      for i = 1, #s do
        hdr[at + i] = s:sub(i, i)
      end
    end
    put(0x1f1, string.char(setup))
    put(0x202, 'HdrS')
    put(0x206, string.char(0x0f, 0x02))
    put(0x248, string.char(16, 0, 0, 0, 14, 0, 0, 0)) -- offset 16, length 14 (10 + 4)
    put((setup + 1) * 512 + 16, '\253\55\122\88\90\0' .. 'xxxx' .. 'SIZE')
    local p = assert(kernel.payload(table.concat(hdr)))
    assert.are.same({ offset = (setup + 1) * 512 + 16, length = 10, format = 'xz' }, p)
    local _, err, code = kernel.payload(('\0'):rep(1024))
    assert.are.equal('EFORMAT', code)
    assert.matches('HdrS', err)
  end)

  local idx = kernel.parse_index({
    dep = table.concat({
      'kernel/a/virtio_ring.ko:',
      'kernel/a/virtio.ko: kernel/a/virtio_ring.ko',
      'kernel/a/virtio_pci.ko: kernel/a/virtio_pci-modern.ko kernel/a/virtio.ko kernel/a/virtio_ring.ko',
      'kernel/a/virtio_pci-modern.ko:',
      'kernel/fs/ext4.ko: kernel/lib/crc16.ko kernel/fs/jbd2.ko',
      'kernel/fs/jbd2.ko:',
      'kernel/lib/crc16.ko:',
      'kernel/crypto/crc32c_generic.ko:',
      'kernel/crypto/crc32c-intel.ko:',
    }, '\n'),
    builtin = 'kernel/net/unix/unix.ko\n',
    softdep = '# comment\nsoftdep ext4 pre: crypto-crc32c\n',
    alias = 'alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias pci:v* virtio_pci\n',
  })

  it('orders modules after their dependencies, as modprobe would load them', function()
    local list, builtin = assert(kernel.order(idx, { 'virtio_pci', 'virtio', 'unix' }))
    local names = {}
    for i, m in ipairs(list) do
      names[i] = m.name
    end
    assert.are.same({ 'virtio_ring', 'virtio', 'virtio_pci_modern', 'virtio_pci' }, names)
    assert.are.equal('kernel/a/virtio_pci-modern.ko', list[3].path)
    assert.are.same({ 'unix' }, builtin)
  end)

  it('puts softdep pre: modules first, the generic one of an alias', function()
    local list = assert(kernel.order(idx, { 'ext4' }))
    local names = {}
    for i, m in ipairs(list) do
      names[i] = m.name
    end
    assert.are.same({ 'crc32c_generic', 'jbd2', 'crc16', 'ext4' }, names)
  end)

  it('names a module it does not know, and who needs it', function()
    local bad = kernel.parse_index({ dep = 'kernel/x.ko: kernel/gone.ko\n' })
    local _, err, code = kernel.order(bad, { 'x' })
    assert.are.equal('ENOENT', code)
    assert.matches('unknown module gone %(needed by x%)', err)
  end)
end)

describe('moonstack.vmm.image.initramfs', function()
  it('maps paths into the merged-/usr tree', function()
    assert.are.equal('usr/bin/sh', initramfs.canon('/bin/sh'))
    assert.are.equal('usr/lib64/ld-linux-x86-64.so.2', initramfs.canon('/lib64/ld-linux-x86-64.so.2'))
    assert.are.equal('usr/lib/modules/k/x.ko', initramfs.canon('lib/modules/k/x.ko'))
    assert.are.equal('etc/passwd', initramfs.canon('/etc/passwd'))
    assert.are.equal('libx', initramfs.canon('/libx'))
  end)
end)

describe('moonstack.vmm.image.qemu', function()
  it('writes the agent.lua the guest agent reads, per flavour', function()
    for _, flavour in ipairs({ 'plain', 'docker' }) do
      local text = qemu.agent_config(flavour)
      local cfg = assert(loadstring(text))()
      assert.are.equal('/dstack/.host-shared', cfg.shared_dir)
      assert.are.equal('/var/lib/moonstack', cfg.state_dir)
      assert.are.same({ name = 'auto', remote = { serial = 'org.moonstack.tee' } }, cfg.tee)
      assert.are.same({ unix = '/var/run/dstack/dstack.sock' }, cfg.listen.dstack)
      assert.are.same({ unix = '/var/run/dstack/tappd.sock' }, cfg.listen.tappd)
      assert.are.same({ host = '0.0.0.0', port = 8090 }, cfg.listen.public)
      assert.are.same({ serial = 'org.moonstack.guest-api' }, cfg.listen.guest)
      assert.are.same({ serial = 'org.moonstack.host-api' }, cfg.host_api)
      assert.are.equal('/run/moonstack/boot-progress', cfg.boot_progress_file)
      assert.is_false(cfg.code_reload)
      assert.is_true(cfg.runner.echo)
      assert.are.equal(3000, cfg.runner.stop_grace_ms)
      if flavour == 'docker' then
        assert.are.equal('unix:///var/run/docker.sock', cfg.runner.docker_host)
        assert.are.equal('standalone', cfg.runner.compose)
      else
        assert.is_nil(cfg.runner.docker_host)
      end
    end
  end)
end)

describe('moonstack.vmm.images with qemu images', function()
  local dir
  before_each(function()
    dir = fixtures.tmpdir('images')
  end)
  after_each(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('lists a qemu image with its version, files and cmdline', function()
    assert(uv.fs_mkdir(dir .. '/guest', 493))
    local f = assert(io.open(dir .. '/guest/metadata.json', 'w'))
    f:write('{"kind":"qemu","flavour":"docker","version":"0.1.0","is_dev":true,"kernel":"vmlinux",' ..
      '"initrd":"initramfs.cpio.gz","rootfs":"rootfs.img","bios":"","cmdline":"console=ttyS0",' ..
      '"host_share_mode":"9p","shared_ro":false,"kernel_version":"6.1.0-57-amd64"}')
    f:close()
    f = assert(io.open(dir .. '/guest/digest.txt', 'w'))
    f:write(('ab'):rep(32) .. '\n')
    f:close()
    local list = images.list(dir)
    assert.are.equal(1, #list)
    local img = list[1]
    assert.are.equal('qemu', img.kind)
    assert.are.equal('0.1.0', img.version)
    assert.are.equal(('ab'):rep(32), img.digest)
    assert.are.equal(dir .. '/guest/vmlinux', img.kernel)
    assert.are.equal(dir .. '/guest/initramfs.cpio.gz', img.initrd)
    assert.are.equal(dir .. '/guest/rootfs.img', img.rootfs)
    assert.is_nil(img.bios)
    assert.are.equal('console=ttyS0', img.cmdline)
    assert.are.equal('docker', img.flavour)
    assert.are.equal('9p', img.host_share_mode)
    assert.are.equal('6.1.0-57-amd64', img.kernel_version)
  end)
end)
