-- SPDX-License-Identifier: Apache-2.0
-- The file tree of a guest's initramfs (merged /usr like Debian: /bin, /sbin, /lib, /lib64
-- are links into /usr) and how host files get into it: a dynamically linked program with
-- exactly the shared libraries `ldd` says it loads (symlink chains kept, each library at its
-- resolved path), the dynamic loader included; a static program alone; busybox with a link
-- per applet. The tree is a moonstack.vmm.image.cpio writer: sorted, mtime 0, owner root, so
-- the archive is reproducible; `pack` writes it and gzips it with `gzip -n` (no name, no time).
local bit = require('bit')
local uv = require('luv')
local errors = require('moonstack.core.errors')
local cpio = require('moonstack.vmm.image.cpio')
local exec = require('moonstack.vmm.image.exec')

local M = {}

-- The merged-/usr links every tree has.
local USR_LINKS = { bin = 'usr/bin', sbin = 'usr/sbin', lib = 'usr/lib', lib64 = 'usr/lib64' }

--- The path of `path` inside a merged-/usr tree, without the leading '/': /bin/x -> usr/bin/x,
--- /lib64/x -> usr/lib64/x; other paths unchanged.
function M.canon(path)
  path = path:gsub('^/+', '')
  local top, rest = path:match('^([^/]+)(.*)$')
  if top and USR_LINKS[top] then
    return USR_LINKS[top] .. rest
  end
  return path
end

local Tree = {}
Tree.__index = Tree

--- A new tree with the base layout: the merged-/usr links, /dev/console (so the kernel can
--- give init its console before devtmpfs is mounted), proc, sys, run, tmp, root, var/run ->
--- /run.
function M.new()
  local w = cpio.new()
  for link, target in pairs(USR_LINKS) do
    w:symlink(link, target)
    w:dir(target, 493)
  end
  for _, d in ipairs({ 'dev', 'proc', 'sys', 'run', 'etc', 'var/lib', 'usr/local/bin' }) do
    w:dir(d, 493)
  end
  w:dir('tmp', 1023)
  w:dir('root', 448)
  w:char('dev/console', 5, 1, 384)
  w:symlink('var/run', '../run')
  return setmetatable({ w = w, host = {} }, Tree)
end

--- The cpio writer (for entries of other kinds).
function Tree:writer()
  return self.w
end

--- A file with `data` at `path` (mode default 0644).
function Tree:file(path, data, mode)
  self.w:file(M.canon(path), data, mode)
end

--- A directory.
function Tree:dir(path, mode)
  self.w:dir(M.canon(path), mode)
end

--- A symbolic link at `path` to `target` (kept as given).
function Tree:symlink(path, target)
  self.w:symlink(M.canon(path), target)
end

--- Whether the tree has `path`.
function Tree:has(path)
  return self.w:has(M.canon(path))
end

-- Permission bits as the image stores them: 0755 for anything executable, else 0644.
local function mode_of(st)
  return bit.band(st.mode, 73) ~= 0 and 493 or 420
end

--- Copy the host file `src` to `dest` (default: the same path), its mode normalized.
function Tree:copy(src, dest)
  local st = uv.fs_stat(src)
  if not st or st.type ~= 'file' then
    return errors.fail('ENOENT', ('%s is not a file'):format(src))
  end
  self.w:file_from(M.canon(dest or src), src, mode_of(st))
  return true
end

-- Split a host path into its resolved directory and its last name.
local function split_real(path)
  local dir, name = path:match('^(.*)/([^/]+)$')
  local rdir = uv.fs_realpath(dir == '' and '/' or dir)
  if not rdir then
    return nil
  end
  return rdir, name
end

--- Put the host file `path` in the tree at its own (canonical) path, following a chain of
--- symbolic links as links (a library's soname link and the file it names both go in).
function Tree:host_path(path)
  local dir, name = split_real(path)
  if not dir then
    return errors.fail('ENOENT', path .. ': no such file')
  end
  local full = (dir == '/' and '' or dir) .. '/' .. name
  if self.host[full] then
    return true
  end
  self.host[full] = true
  local st = uv.fs_lstat(full)
  if not st then
    return errors.fail('ENOENT', full .. ': no such file')
  end
  if st.type == 'link' then
    local target = uv.fs_readlink(full)
    local dest = M.canon(full)
    if not self.w:has(dest) then
      self.w:symlink(dest, target)
    end
    local resolved = target:sub(1, 1) == '/' and target or (dir .. '/' .. target)
    return self:host_path(resolved)
  end
  if st.type ~= 'file' then
    return errors.fail('EINVAL', full .. ': not a regular file')
  end
  if not self.w:has(M.canon(full)) then
    self.w:file_from(M.canon(full), full, mode_of(st))
  end
  return true
end

--- The shared libraries `ldd` lists for the host program `path` (the loader included, the
--- vDSO not): a list of host paths, or {} for a static program; nil, msg when one is not
--- found.
function M.ldd(path)
  local out, code, stderr = exec.run({ 'ldd', path }, { ok_codes = { [0] = true, [1] = true } })
  if not out then
    return nil, code
  end
  if code ~= 0 then
    if (out .. stderr):find('not a dynamic executable', 1, true) then
      return {}
    end
    return errors.fail('ECMD', ('ldd %s failed: %s'):format(path, stderr))
  end
  local libs = {}
  for line in out:gmatch('[^\n]+') do
    local name, target = line:match('^%s*(%S+)%s+=>%s+(%S+)')
    if name then
      if target == 'not' then
        return errors.fail('ENOENT', ('%s needs %s, which is not found'):format(path, name))
      end
      libs[#libs + 1] = target
    else
      local loader = line:match('^%s*(/%S+)%s+%(')
      if loader then
        libs[#libs + 1] = loader
      end
    end
  end
  return libs
end

--- Put the host program `src` at `dest` with the libraries it loads. Returns the list of
--- library host paths (as ldd names them) or nil, msg, code.
function Tree:program(src, dest)
  local ok, err, code = self:copy(src, dest)
  if not ok then
    return nil, err, code
  end
  return self:_libraries_of(src)
end

--- Put a library loaded at run time (dlopen) and the libraries it loads.
function Tree:library(path)
  local ok, err, code = self:host_path(path)
  if not ok then
    return nil, err, code
  end
  return self:_libraries_of(path)
end

-- Put the shared libraries `path` loads (ldd) at their host paths. Returns their list.
function Tree:_libraries_of(path)
  local libs, err, code = M.ldd(path)
  if not libs then
    return nil, err, code
  end
  for _, lib in ipairs(libs) do
    local ok
    ok, err, code = self:host_path(lib)
    if not ok then
      return nil, err, code
    end
  end
  return libs
end

--- The static busybox `src` at /usr/bin/busybox and a link per applet (`busybox --list-full`)
--- where the tree has nothing yet.
function Tree:busybox(src)
  local ok, err, code = self:copy(src, '/usr/bin/busybox')
  if not ok then
    return nil, err, code
  end
  local list
  list, err, code = exec.run({ src, '--list-full' })
  if not list then
    return nil, err, code
  end
  local n = 0
  for applet in list:gmatch('[^\n]+') do
    local path = M.canon(applet)
    if not self.w:has(path) and path ~= 'usr/bin/busybox' then
      self.w:symlink(path, '/usr/bin/busybox')
      n = n + 1
    end
  end
  return n
end

--- Write the tree as a gzipped newc cpio to `out` (via `out`.cpio, removed). Returns the
--- uncompressed size or nil, msg, code.
function Tree:pack(out)
  local raw = out:gsub('%.gz$', '') .. '.tmp-cpio'
  local ok, err, code = self.w:write(raw)
  if not ok then
    return nil, err, code
  end
  local size = uv.fs_stat(raw).size
  ok, err, code = exec.run({ 'gzip', '-n', '-9', '-c', raw }, { stdout = out })
  uv.fs_unlink(raw)
  if not ok then
    return nil, err, code
  end
  return size
end

return M
