-- SPDX-License-Identifier: Apache-2.0
-- `moonstack image build`: guest images for the VMM (moonstack.vmm.images).
--   --kind process: DIR/metadata.json (kind = process, version), DIR/bin/moonstack (a copy of
--     this binary, or --binary: what the CVM runs as its agent, with all its Lua code
--     embedded), DIR/digest.txt (its SHA-256: the image's os_image_hash) and sha256sum.txt.
--   --kind qemu: a bootable guest from Debian packages (moonstack.vmm.image.qemu): vmlinux,
--     initramfs.cpio.gz, rootfs.img (--flavour docker), metadata.json, sha256sum.txt and
--     digest.txt (SHA-256 of sha256sum.txt), reproducible, with a cache (--cache).
-- Put DIR in the VMM's image_dir; its name is the image name.
local args = require('moonstack.core.args')
local task = require('moonstack.core.task')

local PROG = 'moonstack image'

local build_spec = {
  usage = 'moonstack image build --kind process|qemu --output DIR [--flavour plain|docker] ' ..
    '[--cache DIR] [--version V] [--binary PATH]',
  summary = 'build a guest image for the VMM',
  description = table.concat({
    'process: this binary as the CVM\'s agent, for the process backend.',
    'qemu: a bootable guest (kernel, initramfs, and for --flavour docker a root file system',
    'with Docker) from Debian packages: apt fetches the kernel, busybox-static and',
    'ca-certificates (and debootstrap the docker root file system) into the cache, so a',
    'rebuild takes seconds. The same package versions and binary give the same files and',
    'os_image_hash (digest.txt). Progress lines go to stderr.',
  }, '\n'),
  options = {
    { '--kind', arg = 'KIND', required = true, help = 'process or qemu' },
    { '--output', arg = 'DIR', required = true, help = 'the image directory (created)' },
    { '--flavour', arg = 'F', default = 'plain',
      help = 'qemu: plain (initramfs only) or docker (+ Debian root file system with Docker)' },
    { '--cache', arg = 'DIR', help = 'qemu: the download and build cache (default ' ..
      '$MOONSTACK_IMAGE_CACHE, $XDG_CACHE_HOME/moonstack/images or ~/.cache/moonstack/images)' },
    { '--version', arg = 'V', help = 'the image version (default: this binary\'s version)' },
    { '--binary', arg = 'PATH', help = 'the moonstack binary to put in (default: this one)' },
    { '--agent-config', arg = 'FILE',
      help = 'qemu: use FILE as the image\'s /etc/moonstack/agent.lua (for tests)' },
    { '--release', help = 'mark it is_dev = false' },
  },
}

local HELP = table.concat({
  'usage: moonstack image build --kind process|qemu --output DIR',
  '',
  'Guest images for the VMM (image_dir/<name>/metadata.json).',
  '',
  'commands:',
  '  build    ' .. build_spec.summary,
  '',
}, '\n')

local function build_qemu(prog, opts, binary, version)
  task.spawn_named('image-build', function()
    local qemu = require('moonstack.vmm.image.qemu')
    local ok, img, err = pcall(qemu.build, opts.output, { flavour = opts.flavour,
      cache = opts.cache, version = version, is_dev = not opts.release, binary = binary,
      agent_config = opts.agent_config })
    local rc = 0
    if not ok or not img then
      io.stderr:write(prog, ': ', tostring(ok and err or img):gsub('^E[A-Z0-9_]+: ', ''), '\n')
      rc = 1
    else
      io.stdout:write(('image %s (qemu, %s): os_image_hash %s\n'):format(img.dir, opts.flavour,
        img.digest))
    end
    require('moonstack.native.runtime').set_exit_code(rc)
  end)
  return nil
end

local function build(argv)
  local prog = PROG .. ' build'
  local opts, code = args.parse_command(prog, build_spec, argv)
  if not opts then
    return code
  end
  if opts.kind ~= 'process' and opts.kind ~= 'qemu' then
    return args.fail(prog, ('--kind %s is not supported (process or qemu)'):format(opts.kind))
  end
  if opts.kind == 'qemu' and opts.flavour ~= 'plain' and opts.flavour ~= 'docker' then
    return args.fail(prog, ('--flavour %s: plain or docker'):format(opts.flavour))
  end
  local native = require('moonstack.native.runtime')
  local binary = opts.binary or require('luv').exepath()
  local version = opts.version or native.version()
  if opts.kind == 'qemu' then
    return build_qemu(prog, opts, binary, version)
  end
  local img, err = require('moonstack.vmm.images').build_process(opts.output, { binary = binary,
    version = version, is_dev = not opts.release })
  if not img then
    io.stderr:write(prog, ': ', tostring(err), '\n')
    return 1
  end
  io.stdout:write(('image %s (process): os_image_hash %s\n'):format(img.dir, img.digest))
  return 0
end

local function run(argv)
  return args.dispatch(PROG, HELP, { build = build }, argv)
end

return { name = 'image', summary = 'build guest images for the VMM (process, qemu plain|docker)',
  run = run }
