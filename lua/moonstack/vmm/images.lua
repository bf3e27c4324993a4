-- SPDX-License-Identifier: Apache-2.0
-- Guest images: `<image_dir>/<name>/metadata.json` as upstream (kms-vmm-gateway.md §4.4:
-- cmdline, kernel, initrd, rootfs, bios, version, is_dev, ...) plus `kind`, naming the backend
-- the image is for ('process' | 'qemu'; absent = 'qemu', upstream's images), and what that
-- backend needs. A process image holds the moonstack binary the CVM runs (`agent`, default
-- bin/moonstack) and `digest.txt`, its os_image_hash (SHA-256 of the binary, measured by the
-- KMS's OS-image gate like any image hash). A qemu image (`moonstack image build --kind qemu`,
-- moonstack.vmm.image.qemu) holds `kernel`, `initrd`, `rootfs` (docker flavour) and the
-- kernel `cmdline`, with `flavour`, `host_share_mode` and `kernel_version`; its digest.txt is
-- upstream's os_image_hash, the SHA-256 of sha256sum.txt. ListImages shows each with its
-- version; an image whose metadata cannot be read is left out of the list and named in the log.
local cjson = require('cjson.safe')
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local log = require('moonstack.core.log').new('vmm')

local M = {}

--- Whether `name` may name an image directory (no path separators, no dot files).
function M.valid_name(name)
  return type(name) == 'string' and name:match('^[%w][%w._+-]*$') ~= nil and #name <= 128
end

-- The image `name` of `dir`: { name, dir, info (metadata), metadata_text, version, is_dev,
-- kind, digest (hex, '' when none), agent (process images: the binary); qemu images: kernel,
-- initrd, rootfs, bios (absolute paths, nil when the metadata names none), cmdline, flavour,
-- host_share_mode ('9p' by default), shared_ro, kernel_version } or nil, msg, code.
local function load(dir, name)
  local idir = dir .. '/' .. name
  local text, err, code = fs.read_file(idir .. '/metadata.json', 1024 * 1024)
  if not text then
    return nil, err, code
  end
  local info = cjson.decode(text)
  if type(info) ~= 'table' then
    return errors.fail('EINVAL', idir .. '/metadata.json: not a JSON object')
  end
  local img = { name = name, dir = idir, info = info, metadata_text = text,
    version = type(info.version) == 'string' and info.version or '',
    is_dev = info.is_dev == true, kind = type(info.kind) == 'string' and info.kind or 'qemu' }
  local digest = fs.read_file(idir .. '/digest.txt', 4096)
  img.digest = digest and digest:match('^%s*(%x+)%s*$') or ''
  local function path(v)
    if type(v) ~= 'string' or v == '' then
      return nil
    end
    return v:sub(1, 1) == '/' and v or (idir .. '/' .. v)
  end
  if img.kind == 'process' then
    img.agent = path(type(info.agent) == 'string' and info.agent or 'bin/moonstack')
  elseif img.kind == 'qemu' then
    img.kernel, img.initrd = path(info.kernel), path(info.initrd)
    img.rootfs, img.bios = path(info.rootfs), path(info.bios)
    img.cmdline = type(info.cmdline) == 'string' and info.cmdline or ''
    img.flavour = type(info.flavour) == 'string' and info.flavour or nil
    img.host_share_mode = type(info.host_share_mode) == 'string' and info.host_share_mode or '9p'
    img.shared_ro = info.shared_ro == true
    img.kernel_version = type(info.kernel_version) == 'string' and info.kernel_version or nil
  end
  return img
end

--- The images of `dir`, sorted by name (unreadable ones logged and left out).
function M.list(dir)
  local out = {}
  local h = uv.fs_scandir(dir)
  while h do
    local name, kind = uv.fs_scandir_next(h)
    if not name then
      break
    end
    if (kind == 'directory' or kind == 'link') and M.valid_name(name) then
      local img, err = load(dir, name)
      if img then
        out[#out + 1] = img
      elseif uv.fs_stat(dir .. '/' .. name .. '/metadata.json') then
        log.warn('image skipped: unreadable metadata', { image = name, error = err })
      end
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- Image `name` of `dir`, or nil, 'EINVAL: unknown image ...', 'EINVAL'.
function M.get(dir, name)
  if not M.valid_name(name) then
    return errors.fail('EINVAL', ('image: %q is not an image name'):format(tostring(name)))
  end
  local img, err = load(dir, name)
  if not img then
    return errors.fail('EINVAL', ('image: unknown image %q (%s)'):format(name,
      tostring(err):gsub('^E%u+: ', '')))
  end
  return img
end

--- Build a process image in `out` (created if needed): bin/moonstack (a copy of `binary`),
--- metadata.json { kind = 'process', version, is_dev, agent, description }, digest.txt (SHA-256
--- of the binary: the image's os_image_hash) and sha256sum.txt. opts = { binary, version,
--- is_dev = true, description? }. Returns { dir, digest } or nil, msg, code.
function M.build_process(out, opts)
  local bin, err, code = fs.read_file(opts.binary)
  if not bin then
    return nil, err, code
  end
  local ok
  ok, err, code = fs.mkdir_p(out .. '/bin', 493)
  if not ok then
    return nil, err, code
  end
  local digest = crypto.hex(crypto.sha256(bin))
  local meta = { kind = 'process', version = opts.version, is_dev = opts.is_dev ~= false,
    agent = 'bin/moonstack', description = opts.description or 'moonstack process image',
    cmdline = '', kernel = '', initrd = '', rootfs = '', bios = '', shared_ro = false }
  local files = {
    { 'bin/moonstack', bin, 493 },
    { 'metadata.json', (cjson.encode(meta):gsub('\\/', '/')) .. '\n', 420 },
    { 'digest.txt', digest .. '\n', 420 },
    { 'sha256sum.txt', digest .. '  bin/moonstack\n', 420 },
  }
  for _, f in ipairs(files) do
    ok, err, code = fs.write_atomic(out .. '/' .. f[1], f[2], f[3])
    if not ok then
      return nil, err, code
    end
  end
  return { dir = out, digest = digest }
end

return M
