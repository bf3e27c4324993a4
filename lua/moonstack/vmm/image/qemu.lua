-- SPDX-License-Identifier: Apache-2.0
-- `moonstack image build --kind qemu`: a bootable guest for the VMM's QEMU backend, made from
-- Debian packages and this moonstack binary, reproducibly (same package versions + same
-- binary = byte-identical files and the same os_image_hash), with a cache that makes a
-- rebuild take seconds. The image directory (kms-vmm-gateway.md §4.4):
--
--   vmlinux            the uncompressed kernel of the Debian generic kernel package (PVH boot)
--   initramfs.cpio.gz  busybox, bash, moonstack, wireguard-go (this host's, when it has one:
--                      the agent's dstack-wg0 to a gateway) and exactly the libraries they load, the CA
--                      certificates, the modules the guest needs (in load order), /init
--                      (moonstack.vmm.image.init_sh) and /etc/moonstack/agent.lua
--   rootfs.img         docker flavour: a Debian root file system (squashfs, attached read only)
--                      with docker.io, docker-compose v1, iptables ... and moonstack
--   metadata.json      upstream's fields (cmdline, kernel, initrd, rootfs, bios, version,
--                      is_dev, shared_ro) and ours: kind = 'qemu', flavour, host_share_mode,
--                      kernel_version, the packages used, the module list
--   sha256sum.txt      "<sha256>  <file>" for each file above, sorted by name
--   digest.txt         the os_image_hash: SHA-256 of sha256sum.txt (§7.7)
--   measurements.json  the TDX boot measurements computable from the files (moonstack.mr.report:
--                      RTMR2 of the cmdline and initrd; no MRTD/RTMR1: no TDVF firmware, an
--                      ELF kernel booted by PVH), not listed in sha256sum.txt
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local process = require('moonstack.core.process')
local json = require('moonstack.core.json')
local debian = require('moonstack.vmm.image.debian')
local guest_etc = require('moonstack.vmm.image.guest_etc')
local exec = require('moonstack.vmm.image.exec')
local initramfs = require('moonstack.vmm.image.initramfs')
local init_sh = require('moonstack.vmm.image.init_sh')
local kernel = require('moonstack.vmm.image.kernel')
local rootfs = require('moonstack.vmm.image.rootfs')

local M = {}

--- The kernel command line of every image (never per app).
M.CMDLINE = 'console=ttyS0 quiet panic=-1'

--- The modules each flavour asks for; their dependencies are added and ordered from the
--- kernel's modules.dep (moonstack.vmm.image.kernel.order).
M.MODULES = {
  plain = { 'virtio_pci', 'virtio_net', '9p', '9pnet_virtio', 'virtio_console',
    'vmw_vsock_virtio_transport', 'button', 'evdev', 'wireguard', 'tun' },
  docker = { 'virtio_blk', 'squashfs', 'overlay', 'bridge', 'br_netfilter', 'veth', 'nf_tables',
    'nft_compat', 'nft_chain_nat', 'nf_nat', 'xt_nat', 'xt_MASQUERADE',
    'xt_addrtype', 'xt_conntrack', 'xt_tcpudp' },
}

--- The Debian packages the docker flavour's root file system is bootstrapped with (plus the
--- packages owning the libraries moonstack loads, found on this host with dpkg -S).
M.DOCKER_PACKAGES = { 'docker.io', 'docker-compose', 'iptables', 'kmod', 'iproute2', 'procps',
  'ca-certificates', 'busybox-static' }

--- The timestamp of every file in the root file system image: $SOURCE_DATE_EPOCH, else this.
M.DEFAULT_EPOCH = 1704067200 -- 2024-01-01T00:00:00Z

--- Cache entries (debs, unpacked packages, kernels, root file systems) unused for this many
--- days are removed at the end of a build.
M.CACHE_DAYS = 30

local FLAVOURS = { plain = true, docker = true }

-- The libwebsockets event-loop plugin lws dlopen()s for libuv (not in ldd's list).
local LWS_EVLIB = '/usr/lib/x86_64-linux-gnu/libwebsockets-evlib_uv.so'

--- The image's /etc/moonstack/agent.lua for `flavour` (moonstack.vmm.image.guest_etc).
M.agent_config = guest_etc.agent_config

--- The default cache directory: $MOONSTACK_IMAGE_CACHE, else $XDG_CACHE_HOME/moonstack/images,
--- else ~/.cache/moonstack/images.
function M.default_cache()
  local env = os.getenv('MOONSTACK_IMAGE_CACHE')
  if env and env ~= '' then
    return env
  end
  local xdg = os.getenv('XDG_CACHE_HOME')
  if xdg and xdg ~= '' then
    return xdg .. '/moonstack/images'
  end
  return (os.getenv('HOME') or '/root') .. '/.cache/moonstack/images'
end

-- A progress reporter: "moonstack image: [  1.2s] msg" on stderr (or opts.progress).
local function reporter(opts)
  if opts.progress == false then
    return function() end
  end
  local t0 = uv.hrtime()
  local sink = opts.progress or function(line)
    io.stderr:write(line, '\n')
    io.stderr:flush()
  end
  return function(fmt, ...)
    sink(('moonstack image: [%6.1fs] %s'):format((uv.hrtime() - t0) / 1e9, fmt:format(...)))
  end
end

local function size_mib(bytes)
  return ('%.1f MiB'):format(bytes / 1048576)
end

-- Copy a host file to `dest` (replacing it).
local function copy(src, dest, mode)
  uv.fs_unlink(dest)
  local ok, err, code = uv.fs_copyfile(src, dest)
  if ok then
    ok, err, code = uv.fs_chmod(dest, mode or 420)
  end
  if not ok then
    return nil, err, code
  end
  return true
end

-- The build itself (M.build removes its temporary files when it fails).
local function build(out, opts)
  local flavour = opts.flavour or 'plain'
  if not FLAVOURS[flavour] then
    return errors.fail('EINVAL', ('unknown flavour %s (plain or docker)'):format(tostring(flavour)))
  end
  local progress = reporter(opts)
  local cache = opts.cache or M.default_cache()
  local binary = opts.binary or uv.exepath()
  local sde = tonumber(os.getenv('SOURCE_DATE_EPOCH') or '') or M.DEFAULT_EPOCH
  local tools = { { 'apt-get', 'apt' }, { 'apt-cache', 'apt' }, { 'dpkg-deb', 'dpkg' },
    { 'depmod', 'kmod' }, { 'xz', 'xz-utils' }, { 'gzip', 'gzip' }, { 'ldd', 'libc-bin' },
    { 'sha256sum', 'coreutils' } }
  if flavour == 'docker' then
    tools[#tools + 1] = { 'debootstrap', 'debootstrap' }
    tools[#tools + 1] = { 'mksquashfs', 'squashfs-tools' }
  end
  local ok, err, code = exec.require_tools(tools)
  if ok then
    ok, err, code = fs.mkdir_p(cache, 493)
  end
  if ok then
    ok, err, code = fs.mkdir_p(out, 493)
  end
  if not ok then
    return nil, err, code
  end
  progress('building a %s qemu image in %s (cache %s)', flavour, out, cache)

  -- the kernel
  local k
  k, err, code = kernel.resolve()
  if not k then
    return nil, err, code
  end
  progress('kernel: %s %s (from %s)', k.package, k.version, kernel.METAPACKAGE)
  local kp
  kp, err, code = kernel.prepare(cache, k)
  if not kp then
    return nil, err, code
  end
  progress('kernel %s: %s', kp.kver, kp.cached and 'cached' or 'fetched, vmlinux extracted, depmod done')
  local wanted = {}
  for _, m in ipairs(M.MODULES.plain) do
    wanted[#wanted + 1] = m
  end
  if flavour == 'docker' then
    for _, m in ipairs(M.MODULES.docker) do
      wanted[#wanted + 1] = m
    end
  end
  local idx
  idx, err, code = kernel.index(kp.modules)
  if not idx then
    return nil, err, code
  end
  local mods, builtin = kernel.order(idx, wanted)
  if not mods then
    return nil, builtin, 'ENOENT'
  end
  local names = {}
  for i, m in ipairs(mods) do
    names[i] = m.name
  end
  progress('modules: %d in load order (%s)%s', #mods, table.concat(names, ' '),
    #builtin > 0 and ('; built in: ' .. table.concat(builtin, ' ')) or '')

  -- userland packages
  local packages = { [k.package] = k.version }
  local bb, ca
  bb, err, code = debian.fetch(cache, 'busybox-static')
  if bb then
    ca, err, code = debian.fetch(cache, 'ca-certificates')
  end
  if not (bb and ca) then
    return nil, err, code
  end
  packages[bb.name], packages[ca.name] = bb.version, ca.version
  progress('busybox-static %s, ca-certificates %s: %s', bb.version, ca.version,
    (bb.fetched or ca.fetched) and 'fetched' or 'cached')

  -- the initramfs
  local agent_lua = M.agent_config(flavour)
  if opts.agent_config then
    agent_lua, err, code = fs.read_file(opts.agent_config)
    if not agent_lua then
      return nil, err, code
    end
    progress('agent.lua: %s (replacing the image\'s own)', opts.agent_config)
  end
  local conf = guest_etc.image_conf(flavour, kp.kver)
  local bundle
  bundle, err, code = guest_etc.ca_bundle(ca.dir)
  if not bundle then
    return nil, err, code
  end
  local t = initramfs.new()
  local n
  n, err, code = t:busybox(bb.dir .. '/bin/busybox')
  if not n then
    return nil, err, code
  end
  local libs
  libs, err, code = t:program(binary, '/usr/bin/moonstack')
  if not libs then
    return nil, err, code
  end
  local lws = false
  for _, l in ipairs(libs) do
    lws = lws or l:match('/libwebsockets%.so') ~= nil
  end
  local closure = { unpack(libs) }
  if lws then
    local more
    more, err, code = t:library(LWS_EVLIB)
    if not more then
      return nil, ('%s (libwebsockets loads it: package libwebsockets-evlib-uv)'):format(err), code
    end
    closure[#closure + 1] = LWS_EVLIB
  end
  local bash = uv.fs_realpath('/bin/bash') or '/usr/bin/bash'
  ok, err, code = t:program(bash, '/usr/bin/bash')
  if not ok then
    return nil, err, code
  end
  -- wireguard-go (userspace WireGuard: moonstack.wg drives it, on /dev/net/tun) from this host
  local wg_go = process.which('wireguard-go')
  wg_go = wg_go and (uv.fs_realpath(wg_go) or wg_go)
  if wg_go then
    ok, err, code = t:program(wg_go, '/usr/bin/wireguard-go')
    if not ok then
      return nil, 'wireguard-go: ' .. tostring(err), code
    end
    progress('wireguard-go: %s', wg_go)
  else
    progress('wireguard-go: not on this host (apt-get install wireguard-go): the guest cannot ' ..
      'join a gateway\'s WireGuard')
  end
  t:file('/init', init_sh.text, 493)
  t:dir('/usr/lib/moonstack')
  t:file('/etc/moonstack/image.conf', conf, 420)
  t:file('/etc/moonstack/agent.lua', agent_lua, 420)
  t:file('/etc/moonstack/modules', table.concat((function()
    local paths = {}
    for i, m in ipairs(mods) do
      paths[i] = m.path
    end
    return paths
  end)(), '\n') .. '\n', 420)
  t:file('/etc/ssl/certs/ca-certificates.crt', bundle, 420)
  t:symlink('/usr/lib/ssl/certs', '/etc/ssl/certs')
  t:symlink('/usr/lib/ssl/cert.pem', '/etc/ssl/certs/ca-certificates.crt')
  for _, f in ipairs(guest_etc.FILES) do
    t:file(f[1], f[2], 420)
  end
  t:dir('/dstack/.host-shared')
  t:dir('/var/lib/moonstack', 448)
  for _, m in ipairs(mods) do
    ok, err, code = t:copy(kp.modules .. '/' .. m.path, ('/lib/modules/%s/%s'):format(kp.kver, m.path))
    if not ok then
      return nil, err, code
    end
  end

  -- the files of the image, written under temporary names, renamed at the end
  local files = { vmlinux = true, ['initramfs.cpio.gz'] = true, ['metadata.json'] = true }
  for _, name in ipairs({ 'vmlinux', 'initramfs.cpio.gz', 'rootfs.img', 'metadata.json',
    'sha256sum.txt', 'digest.txt', 'measurements.json' }) do
    uv.fs_unlink(out .. '/' .. name .. '.tmp')
  end
  local raw
  raw, err, code = t:pack(out .. '/initramfs.cpio.gz.tmp')
  if not raw then
    return nil, err, code
  end
  progress('initramfs: %d entries, %s (%s gzipped)', #t:writer():names(), size_mib(raw),
    size_mib(uv.fs_stat(out .. '/initramfs.cpio.gz.tmp').size))
  ok, err, code = copy(kp.vmlinux, out .. '/vmlinux.tmp', 420)
  if not ok then
    return nil, err, code
  end

  -- the docker flavour's root file system
  local rootfs_info
  if flavour == 'docker' then
    local src
    src, err, code = debian.mirror()
    if not src then
      return nil, err, code
    end
    local owners
    owners, err, code = debian.owners(closure)
    if not owners then
      return nil, err, code
    end
    local include = { unpack(M.DOCKER_PACKAGES) }
    for _, p in ipairs(owners) do
      include[#include + 1] = p
    end
    local rf
    rf, err, code = rootfs.prepare(cache, { mirror = src.mirror, suite = src.suite,
      include = include }, sde, function(msg) progress('%s', msg) end)
    if not rf then
      return nil, err, code
    end
    local count = select(2, rf.packages:gsub('\n', ''))
    progress('root file system %s: %s (%d packages)', rf.key:sub(1, 12),
      rf.cached and 'cached' or 'bootstrapped', count)
    -- moonstack's libraries must be there (from Debian's packages of the same release)
    for _, l in ipairs(closure) do
      local dir, name = l:match('^(.*)/([^/]+)$')
      local rdir = uv.fs_realpath(dir) or dir
      if not debian.exists(rf.dir .. '/' .. initramfs.canon(rdir .. '/' .. name)) then
        return errors.fail('ENOENT', ('the root file system lacks %s, which moonstack loads'):format(l))
      end
    end
    local extra = {
      { '/usr/bin/moonstack', src = binary, mode = 493 },
      { '/usr/lib/moonstack/init', init_sh.text, mode = 493 },
      { '/etc/moonstack/image.conf', conf },
      { '/etc/moonstack/agent.lua', agent_lua },
      { '/dstack/.host-shared', dir = true },
      { '/var/lib/moonstack', dir = true },
    }
    if wg_go then
      extra[#extra + 1] = { '/usr/bin/wireguard-go', src = wg_go, mode = 493 }
    end
    local bytes
    bytes, err, code = rootfs.image(rf.dir, extra, out .. '/rootfs.img.tmp', sde)
    if not bytes then
      return nil, err, code
    end
    progress('rootfs.img: squashfs (zstd), %s', size_mib(bytes))
    files['rootfs.img'] = true
    rootfs_info = { key = rf.key, packages = count }
  end

  -- metadata, checksums, digest
  local bin_hash
  bin_hash, err, code = exec.run({ 'sha256sum', binary })
  if not bin_hash then
    return nil, err, code
  end
  local module_names = json.array({})
  for i, m in ipairs(mods) do
    module_names[i] = m.name
  end
  local meta = {
    kind = 'qemu', flavour = flavour, version = opts.version or '', is_dev = opts.is_dev ~= false,
    description = opts.description or ('moonstack qemu image (%s)'):format(flavour),
    kernel = 'vmlinux', initrd = 'initramfs.cpio.gz', cmdline = M.CMDLINE,
    rootfs = files['rootfs.img'] and 'rootfs.img' or '', bios = '', shared_ro = false,
    rootfs_type = files['rootfs.img'] and 'squashfs' or nil,
    host_share_mode = '9p', kernel_version = kp.kver, packages = packages,
    modules = module_names, moonstack_sha256 = bin_hash:match('^%x+'),
    rootfs_packages = rootfs_info and rootfs_info.packages or nil,
  }
  local meta_text = json.encode(meta) .. '\n'
  ok, err, code = fs.write_atomic(out .. '/metadata.json.tmp', meta_text, 420)
  if not ok then
    return nil, err, code
  end
  local names_sorted = require('moonstack.core.tables').sorted_keys(files)
  for _, name in ipairs(names_sorted) do
    ok, err, code = uv.fs_rename(out .. '/' .. name .. '.tmp', out .. '/' .. name)
    if not ok then
      return nil, err, code
    end
  end
  if not files['rootfs.img'] then
    uv.fs_unlink(out .. '/rootfs.img') -- left by an earlier docker build in this directory
  end
  local argv = { 'sha256sum', '--' }
  for _, name in ipairs(names_sorted) do
    argv[#argv + 1] = name
  end
  local sums
  sums, err, code = exec.run(argv, { cwd = out })
  if not sums then
    return nil, err, code
  end
  local digest = crypto.hex(crypto.sha256(sums))
  ok, err, code = fs.write_atomic(out .. '/sha256sum.txt', sums, 420)
  if ok then
    ok, err, code = fs.write_atomic(out .. '/digest.txt', digest .. '\n', 420)
  end
  if not ok then
    return nil, err, code
  end
  local rep
  rep, err, code = require('moonstack.mr.report').write(out)
  if not rep then
    return nil, err, code
  end
  progress('measurements.json: %s', rep.tdx.measurable and 'MRTD, RTMR1, RTMR2'
    or 'RTMR2 only (no TDVF firmware, no PE kernel: not measurable as a TDX boot)')
  local hashes = {}
  for line in sums:gmatch('[^\n]+') do
    local h, name = line:match('^(%x+)%s+%*?(.+)$')
    if h then
      hashes[name] = h
    end
  end
  local pruned = {}
  for _, sub in ipairs({ 'debs', 'pkg', 'kernel', 'rootfs' }) do
    for _, name in ipairs(debian.prune(cache .. '/' .. sub, M.CACHE_DAYS)) do
      pruned[#pruned + 1] = sub .. '/' .. name
    end
  end
  if #pruned > 0 then
    progress('cache: removed %d stale entries (unused for %d days, or left by a dead build): %s',
      #pruned, M.CACHE_DAYS, table.concat(pruned, ' '))
  end
  progress('done: os_image_hash %s', digest)
  return { dir = out, digest = digest, files = hashes, metadata = meta }
end

local OUTPUTS = { 'vmlinux', 'initramfs.cpio.gz', 'rootfs.img', 'metadata.json' }

--- Build a qemu image in `out`. opts = { flavour = 'plain' | 'docker', cache = dir (default
--- M.default_cache()), version, is_dev = true, binary = the moonstack binary (default: this
--- one), agent_config = file (replaces the image's agent.lua: tests), description, progress
--- = fn(line) | false (default: lines on stderr) }. Returns { dir, digest, files = { name =
--- sha256 }, metadata } or nil, msg, code.
function M.build(out, opts)
  opts = opts or {}
  local r = { build(out, opts) }
  if not r[1] then -- no half-written files left in the image directory
    for _, name in ipairs(OUTPUTS) do
      uv.fs_unlink(out .. '/' .. name .. '.tmp')
    end
  end
  return unpack(r, 1, 3)
end

return M
