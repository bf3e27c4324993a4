-- SPDX-License-Identifier: Apache-2.0
-- `moonstack image build --kind process --output DIR`: a guest image for the VMM's process
-- backend (moonstack.vmm.images): DIR/metadata.json (kind = process, version), DIR/bin/moonstack
-- (a copy of this binary, or --binary: what the CVM runs as its agent, with all its Lua code
-- embedded), DIR/digest.txt (its SHA-256: the image's os_image_hash) and sha256sum.txt. Put DIR
-- in the VMM's image_dir; its name is the image name. (--kind qemu comes with M9.)
local args = require('moonstack.core.args')

local PROG = 'moonstack image'

local build_spec = {
  usage = 'moonstack image build --kind process --output DIR [--version V] [--binary PATH]',
  summary = 'build a guest image for the VMM',
  options = {
    { '--kind', arg = 'KIND', required = true, help = 'process (qemu: M9)' },
    { '--output', arg = 'DIR', required = true, help = 'the image directory (created)' },
    { '--version', arg = 'V', help = 'the image version (default: this binary\'s version)' },
    { '--binary', arg = 'PATH', help = 'the moonstack binary to put in (default: this one)' },
    { '--release', help = 'mark it is_dev = false' },
  },
}

local HELP = table.concat({
  'usage: moonstack image build --kind process --output DIR',
  '',
  'Guest images for the VMM (image_dir/<name>/metadata.json).',
  '',
  'commands:',
  '  build    ' .. build_spec.summary,
  '',
}, '\n')

local function build(argv)
  local prog = PROG .. ' build'
  local opts, code = args.parse_command(prog, build_spec, argv)
  if not opts then
    return code
  end
  if opts.kind ~= 'process' then
    return args.fail(prog, ("--kind %s is not supported yet (process; qemu comes with M9)"):format(opts.kind))
  end
  local native = require('moonstack.native.runtime')
  local binary = opts.binary or require('luv').exepath()
  local img, err = require('moonstack.vmm.images').build_process(opts.output, { binary = binary,
    version = opts.version or native.version(), is_dev = not opts.release })
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

return { name = 'image', summary = 'build guest images for the VMM (image build --kind process)',
  run = run }
