-- SPDX-License-Identifier: Apache-2.0
-- The guest kernel from Debian's generic kernel package: the version `linux-image-amd64`
-- points at today (resolved, never written down), fetched and unpacked once into the cache;
-- the uncompressed ELF `vmlinux` taken out of vmlinuz (the payload the bzImage header points
-- at, decompressed by xz/gzip/zstd) so QEMU boots it through its PVH note without running the
-- decompressor under TCG; `depmod -b` run on the unpacked tree; and the load order of the
-- modules a guest needs, computed from modules.dep (dependencies first), modules.softdep (pre:
-- entries, through modules.alias) and modules.builtin (built-in ones skipped).
local uv = require('luv')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local debian = require('moonstack.vmm.image.debian')
local exec = require('moonstack.vmm.image.exec')

local M = {}

--- The metapackage that names the current generic kernel.
M.METAPACKAGE = 'linux-image-amd64'

-- Little-endian unsigned integers out of a string (1-based offset).
local function u8(s, at)
  return s:byte(at)
end
local function u32(s, at)
  local a, b, c, d = s:byte(at, at + 3)
  return a + b * 256 + c * 65536 + d * 16777216
end

local MAGICS = {
  { '\253\55\122\88\90\0', 'xz' },
  { '\31\139', 'gzip' },
  { '\40\181\47\253', 'zstd' },
}

--- Where the compressed kernel is inside a bzImage: { offset (0-based), length (without the
--- 4-byte size the kernel build appends), format = 'xz' | 'gzip' | 'zstd' } or nil, msg.
--- Reads the x86 boot protocol header: setup_sects at 0x1f1, "HdrS" at 0x202, payload_offset
--- and payload_length at 0x248 (relative to the protected-mode code after the setup sectors).
function M.payload(bzimage)
  if #bzimage < 0x250 or bzimage:sub(0x203, 0x206) ~= 'HdrS' then
    return errors.fail('EFORMAT', 'not a bzImage (no HdrS boot header)')
  end
  local version = u8(bzimage, 0x207) + u8(bzimage, 0x208) * 256
  if version < 0x0208 then
    return errors.fail('EFORMAT', ('boot protocol %x has no payload fields'):format(version))
  end
  local setup = u8(bzimage, 0x1f2)
  if setup == 0 then
    setup = 4
  end
  local offset = (setup + 1) * 512 + u32(bzimage, 0x249)
  local length = u32(bzimage, 0x24d)
  if length < 8 or offset + length > #bzimage then
    return errors.fail('EFORMAT', 'the payload lies outside the file')
  end
  for _, m in ipairs(MAGICS) do
    if bzimage:sub(offset + 1, offset + #m[1]) == m[1] then
      return { offset = offset, length = length - 4, format = m[2] }
    end
  end
  return errors.fail('EFORMAT', ('unknown payload compression (bytes %q)')
    :format(bzimage:sub(offset + 1, offset + 6)))
end

local DECOMPRESS = {
  xz = { { 'xz', '-dc', '--single-stream' }, { [0] = true } },
  gzip = { { 'gzip', '-dc' }, { [0] = true, [2] = true } }, -- 2: trailing garbage ignored
  zstd = { { 'zstd', '-dcq' }, { [0] = true } },
}

--- Write the uncompressed ELF vmlinux of the bzImage file `vmlinuz` to `out`.
function M.extract_vmlinux(vmlinuz, out)
  local data, err, code = fs.read_file(vmlinuz)
  if not data then
    return nil, err, code
  end
  local p
  p, err, code = M.payload(data)
  if not p then
    return nil, ('%s: %s'):format(vmlinuz, err), code
  end
  local packed = out .. '.' .. p.format
  local ok
  ok, err, code = fs.write_atomic(packed, data:sub(p.offset + 1, p.offset + p.length), 420)
  if not ok then
    return nil, err, code
  end
  local d = DECOMPRESS[p.format]
  local argv = { unpack(d[1]) }
  argv[#argv + 1] = packed
  ok, err, code = exec.run(argv, { stdout = out, ok_codes = d[2] })
  uv.fs_unlink(packed)
  if not ok then
    return nil, err, code
  end
  local f = io.open(out, 'rb')
  local magic = f and f:read(4)
  if f then
    f:close()
  end
  if magic ~= '\127ELF' then
    return errors.fail('EFORMAT', vmlinuz .. ': the payload is not an ELF vmlinux')
  end
  return true
end

--- The kernel package linux-image-amd64 points at, and its candidate version:
--- { package, version } or nil, msg, code.
function M.resolve()
  local deps, err, code = debian.depends(M.METAPACKAGE)
  if not deps then
    return nil, err, code
  end
  local pkg
  for _, d in ipairs(deps) do
    if d:match('^linux%-image%-%d') then
      pkg = d
      break
    end
  end
  if not pkg then
    return errors.fail('ENOPKG', M.METAPACKAGE .. ' depends on no linux-image-<version> package')
  end
  local version
  version, err, code = debian.candidate(pkg)
  if not version then
    return nil, err, code
  end
  return { package = pkg, version = version }
end

-- The one directory under `dir` (a /lib/modules), or nil.
local function only_subdir(dir)
  local h = uv.fs_scandir(dir)
  local found
  while h do
    local name, kind = uv.fs_scandir_next(h)
    if not name then
      break
    end
    if kind == 'directory' then
      if found then
        return nil
      end
      found = name
    end
  end
  return found
end

--- The kernel `k` ({ package, version }) in the cache: fetched, unpacked, vmlinux extracted,
--- modules indexed by depmod. Returns { package, version, kver, dir, vmlinux, modules (the
--- /lib/modules/KVER directory), cached = bool } or nil, msg, code.
function M.prepare(cache, k)
  local dir = ('%s/kernel/%s_%s'):format(cache, k.package, k.version:gsub(':', '%%3a'))
  local cached = debian.exists(dir .. '/vmlinux')
  if not cached then
    local deb, err, code = debian.download(cache .. '/debs', k.package, k.version)
    if not deb then
      return nil, err, code
    end
    local ok
    ok, err, code = fs.mkdir_p(cache .. '/kernel', 493)
    if not ok then
      return nil, err, code
    end
    local tmp = debian.partial(dir)
    debian.rm_rf(tmp)
    ok, err, code = fs.mkdir_p(tmp, 493)
    if ok then
      ok, err, code = exec.run({ 'dpkg-deb', '-x', deb, tmp .. '/root' })
    end
    if not ok then
      debian.rm_rf(tmp)
      return nil, err, code
    end
    local root = tmp .. '/root'
    if not debian.exists(root .. '/lib/modules') and debian.exists(root .. '/usr/lib/modules') then
      uv.fs_symlink('usr/lib', root .. '/lib')
    end
    local kver = only_subdir(root .. '/lib/modules')
    if not kver then
      debian.rm_rf(tmp)
      return errors.fail('EFORMAT', k.package .. ': not one kernel under /lib/modules')
    end
    ok, err, code = M.extract_vmlinux(root .. '/boot/vmlinuz-' .. kver, tmp .. '/vmlinux')
    if ok then
      ok, err, code = exec.run({ 'depmod', '-b', root, kver })
    end
    if not ok then
      debian.rm_rf(tmp)
      return nil, err, code
    end
    ok, err, code = fs.write_atomic(tmp .. '/kver', kver .. '\n', 420)
    if ok then
      ok, err, code = debian.commit(tmp, dir)
    end
    if not ok then
      debian.rm_rf(tmp)
      return nil, err, code
    end
  end
  debian.touch(dir)
  local kver = (fs.read_file(dir .. '/kver') or ''):match('%S+')
  if not kver then
    return errors.fail('EFORMAT', dir .. ': the cached kernel has no kver file')
  end
  return { package = k.package, version = k.version, kver = kver, dir = dir,
    vmlinux = dir .. '/vmlinux', modules = dir .. '/root/lib/modules/' .. kver, cached = cached }
end

--- A module name as modprobe compares them ('-' and '_' alike).
function M.modname(s)
  return (s:gsub('^.*/', ''):gsub('%.ko[%.%w]*$', ''):gsub('-', '_'))
end

--- Parse the depmod index texts { dep = modules.dep, builtin = modules.builtin, softdep =
--- modules.softdep, alias = modules.alias } into { path = { name = relative path }, deps =
--- { name = { dep names, as listed } }, builtin = { name = true }, pre = { name = { names or
--- aliases } }, alias = { alias = { names } } }.
function M.parse_index(t)
  local idx = { path = {}, deps = {}, builtin = {}, pre = {}, alias = {} }
  for line in (t.dep or ''):gmatch('[^\n]+') do
    local path, rest = line:match('^([^:]+):%s*(.*)$')
    if path then
      local name = M.modname(path)
      idx.path[name] = path
      local deps = {}
      for d in rest:gmatch('%S+') do
        deps[#deps + 1] = M.modname(d)
      end
      idx.deps[name] = deps
    end
  end
  for line in (t.builtin or ''):gmatch('[^\n]+') do
    idx.builtin[M.modname(line)] = true
  end
  for line in (t.softdep or ''):gmatch('[^\n]+') do
    local name, rest = line:match('^softdep%s+(%S+)%s+(.*)$')
    if name then
      local pre = rest:match('pre:%s*(.-)%s*post:') or rest:match('pre:%s*(.*)$')
      if pre then
        local list = idx.pre[M.modname(name)] or {}
        for d in pre:gmatch('%S+') do
          list[#list + 1] = d
        end
        idx.pre[M.modname(name)] = list
      end
    end
  end
  for line in (t.alias or ''):gmatch('[^\n]+') do
    local a, name = line:match('^alias%s+(%S+)%s+(%S+)$')
    if a and not a:find('[%*%?%[]') then
      local list = idx.alias[a] or {}
      list[#list + 1] = M.modname(name)
      idx.alias[a] = list
    end
  end
  return idx
end

-- The modules a softdep entry stands for: the module itself, else its alias's modules (the
-- generic implementation when there is one, so the guest CPU does not matter).
local function soft_targets(idx, entry)
  local n = M.modname(entry)
  if idx.path[n] or idx.builtin[n] then
    return { n }
  end
  local cands = {}
  for _, c in ipairs(idx.alias[entry] or {}) do
    cands[#cands + 1] = c
  end
  table.sort(cands)
  for _, c in ipairs(cands) do
    if c:match('_generic$') then
      return { c }
    end
  end
  return cands
end

--- The load order of the modules `wanted` (names) and everything they need: a list of
--- { name, path } with each module after its dependencies (modules.dep, loaded right to left
--- as modprobe does) and softdep pre: modules; built-in modules left out. Returns the list,
--- and the wanted names that are built in; or nil, 'ENOENT: unknown module ...'.
function M.order(idx, wanted)
  local out, state, builtin = {}, {}, {}
  local function visit(name, from)
    if state[name] == 'done' or state[name] == 'visiting' then
      return true
    end
    if idx.builtin[name] and not idx.path[name] then
      state[name] = 'done'
      return true
    end
    if not idx.path[name] then
      return errors.fail('ENOENT', ('unknown module %s%s'):format(name,
        from and (' (needed by ' .. from .. ')') or ''))
    end
    state[name] = 'visiting'
    for _, entry in ipairs(idx.pre[name] or {}) do
      for _, t in ipairs(soft_targets(idx, entry)) do
        local ok, err, code = visit(t, name)
        if not ok then
          return nil, err, code
        end
      end
    end
    local deps = idx.deps[name] or {}
    for i = #deps, 1, -1 do
      local ok, err, code = visit(deps[i], name)
      if not ok then
        return nil, err, code
      end
    end
    state[name] = 'done'
    out[#out + 1] = { name = name, path = idx.path[name] }
    return true
  end
  for _, w in ipairs(wanted) do
    local n = M.modname(w)
    if idx.builtin[n] and not idx.path[n] then
      builtin[#builtin + 1] = n
    end
    local ok, err, code = visit(n)
    if not ok then
      return nil, err, code
    end
  end
  return out, builtin
end

--- The index of a prepared kernel's modules directory.
function M.index(modules_dir)
  local t = {}
  for _, f in ipairs({ 'dep', 'builtin', 'softdep', 'alias' }) do
    t[f] = fs.read_file(modules_dir .. '/modules.' .. f) or ''
  end
  if t.dep == '' then
    return errors.fail('ENOENT', modules_dir .. '/modules.dep is missing (depmod -b)')
  end
  return M.parse_index(t)
end

return M
