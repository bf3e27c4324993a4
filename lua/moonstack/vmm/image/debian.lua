-- SPDX-License-Identifier: Apache-2.0
-- Debian packages for image builds, through apt's ordinary clients only (the Debian package
-- registry is the one network source a build uses): the candidate version of a package
-- (`apt-cache policy`), what a metapackage points at (`apt-cache depends`), a .deb fetched
-- once into the cache (`apt-get download NAME=VERSION`) and unpacked once (`dpkg -x`), the
-- packages that own host files (`dpkg -S`), and the mirror and suite apt is configured with
-- (/etc/apt/sources.list and sources.list.d, one-line and deb822 forms). Cache entries are
-- built under a temporary name and renamed into place, so an interrupted build leaves no
-- half entry behind.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local exec = require('moonstack.vmm.image.exec')

local M = {}

local APT_ENV = { DEBIAN_FRONTEND = 'noninteractive' }

--- The candidate version of `pkg` (what `apt-get install` would take), or nil, 'ENOPKG: ...'.
function M.candidate(pkg)
  local out, err, code = exec.run({ 'apt-cache', 'policy', pkg }, { env = APT_ENV })
  if not out then
    return nil, err, code
  end
  local v = out:match('\n%s*Candidate:%s*(%S+)')
  if not v or v == '(none)' then
    return errors.fail('ENOPKG', ('no candidate version of %s in apt\'s lists (apt-get update?)')
      :format(pkg))
  end
  return v
end

--- The packages `pkg` depends on (`apt-cache depends`, Depends lines only, in order).
function M.depends(pkg)
  local out, err, code = exec.run({ 'apt-cache', 'depends', pkg }, { env = APT_ENV })
  if not out then
    return nil, err, code
  end
  local deps = {}
  for name in out:gmatch('\n%s*|?Depends:%s*([^%s<>]+)') do
    deps[#deps + 1] = name
  end
  return deps
end

--- The file name apt gives the .deb of pkg VERSION (':' of an epoch written as %3a).
function M.deb_name(pkg, version, arch)
  return ('%s_%s_%s.deb'):format(pkg, (version:gsub(':', '%%3a')), arch or 'amd64')
end

--- Whether `path` exists.
function M.exists(path)
  return uv.fs_lstat(path) ~= nil
end

--- Remove a tree with `rm -rf` (fast on large trees).
function M.rm_rf(path)
  if not M.exists(path) then
    return true
  end
  local ok, err, code = exec.run({ 'rm', '-rf', '--one-file-system', path })
  if not ok then
    return nil, err, code
  end
  return true
end

--- A temporary name beside `path` for building a cache entry.
function M.partial(path)
  return ('%s.partial.%d'):format(path, uv.os_getpid())
end

--- Mark the cache entry `path` as used now (its mtime; see prune).
function M.touch(path)
  local now = os.time()
  uv.fs_utime(path, now, now)
end

--- Move the finished `tmp` to `path` (marked used now: unpacked trees and downloads keep
--- their packages' old times); if another build got there first, keep theirs.
function M.commit(tmp, path)
  local ok, err, code = uv.fs_rename(tmp, path)
  if ok then
    M.touch(path)
    return true
  end
  if M.exists(path) then
    M.rm_rf(tmp)
    return true
  end
  return nil, err, code
end

--- The .deb of pkg VERSION in `dir` (fetched with apt-get download unless already there).
--- Returns the path, and true when it was fetched now.
function M.download(dir, pkg, version)
  local ok, err, code = fs.mkdir_p(dir, 493)
  if not ok then
    return nil, err, code
  end
  local path = dir .. '/' .. M.deb_name(pkg, version)
  if M.exists(path) then
    M.touch(path)
    return path, false
  end
  local tmp = M.partial(dir .. '/.download-' .. pkg)
  M.rm_rf(tmp)
  ok, err, code = fs.mkdir_p(tmp, 493)
  if not ok then
    return nil, err, code
  end
  local argv = { 'apt-get', 'download', '-q' }
  if uv.getuid() == 0 then -- as root apt drops to _apt, who cannot write the cache: stay root
    argv[#argv + 1] = '-oAPT::Sandbox::User=root'
  end
  argv[#argv + 1] = pkg .. '=' .. version
  ok, err, code = exec.run(argv, { cwd = tmp, env = APT_ENV })
  if not ok then
    M.rm_rf(tmp)
    return nil, err, code
  end
  local got
  local h = uv.fs_scandir(tmp)
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    if name:match('%.deb$') then
      got = tmp .. '/' .. name
    end
  end
  if not got then
    M.rm_rf(tmp)
    return errors.fail('ENOPKG', ('apt-get download %s=%s gave no .deb'):format(pkg, version))
  end
  ok, err, code = M.commit(got, path)
  M.rm_rf(tmp)
  if not ok then
    return nil, err, code
  end
  return path, true
end

--- Unpack `deb` into `dir` (dpkg -x) unless `dir` exists. Returns dir, and true when unpacked
--- now.
function M.extract(deb, dir)
  if M.exists(dir) then
    M.touch(dir)
    return dir, false
  end
  local tmp = M.partial(dir)
  M.rm_rf(tmp)
  local ok, err, code = fs.mkdir_p(tmp, 493)
  if ok then
    ok, err, code = exec.run({ 'dpkg-deb', '-x', deb, tmp })
  end
  if not ok then
    M.rm_rf(tmp)
    return nil, err, code
  end
  ok, err, code = M.commit(tmp, dir)
  if not ok then
    return nil, err, code
  end
  return dir, true
end

--- Remove the entries of the cache directory `dir` (files or trees) not used (touched) for
--- `days` days, and leftovers of interrupted builds (.partial.<pid> of a dead process).
--- Returns the names removed.
function M.prune(dir, days)
  local removed, limit = {}, os.time() - days * 86400
  local h = uv.fs_scandir(dir)
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    local path = dir .. '/' .. name
    local st = uv.fs_lstat(path)
    local pid = tonumber(name:match('%.partial%.(%d+)$'))
    local stale = st and st.mtime.sec < limit
    if pid then -- in progress elsewhere unless its process is gone
      stale = pid ~= uv.os_getpid() and uv.kill(pid, 0) ~= 0
    end
    if stale and M.rm_rf(path) then
      removed[#removed + 1] = name
    end
  end
  table.sort(removed)
  return removed
end

--- Fetch and unpack `pkg` at its candidate version into `cache`/debs and `cache`/pkg.
--- Returns { name, version, deb, dir, fetched = bool } or nil, msg, code.
function M.fetch(cache, pkg, version)
  local err, code
  if not version then
    version, err, code = M.candidate(pkg)
    if not version then
      return nil, err, code
    end
  end
  local deb, fetched
  deb, fetched, code = M.download(cache .. '/debs', pkg, version)
  if not deb then
    return nil, fetched, code
  end
  local dir, unpacked
  dir, unpacked, code = M.extract(deb, ('%s/pkg/%s_%s'):format(cache, pkg, version:gsub(':', '%%3a')))
  if not dir then
    return nil, unpacked, code
  end
  return { name = pkg, version = version, deb = deb, dir = dir, fetched = fetched or unpacked }
end

--- The installed packages owning the host files `paths` (dpkg -S, trying the path as given
--- and as resolved, since merged-/usr systems record either), sorted and without duplicates.
--- Returns the list or nil, msg, code naming a file no package owns.
function M.owners(paths)
  local set, list = {}, {}
  for _, p in ipairs(paths) do
    local tries = { p, uv.fs_realpath(p) }
    local real = tries[2]
    if real and real:match('^/usr/') then
      tries[#tries + 1] = real:sub(5)
    end
    local found
    for _, t in ipairs(tries) do
      local out = t and exec.run({ 'dpkg-query', '-S', t })
      if out then
        found = out:match('^([^:,%s]+)')
        break
      end
    end
    if not found then
      return errors.fail('ENOPKG', ('no installed package owns %s'):format(p))
    end
    if not set[found] then
      set[found] = true
      list[#list + 1] = found
    end
  end
  table.sort(list)
  return list
end

-- The deb822 stanzas and one-line entries of apt's sources: { { uris, suites, components } }
local function sources()
  local out = {}
  local files = { '/etc/apt/sources.list' }
  local h = uv.fs_scandir('/etc/apt/sources.list.d')
  local names = {}
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    if name:match('%.list$') or name:match('%.sources$') then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, n in ipairs(names) do
    files[#files + 1] = '/etc/apt/sources.list.d/' .. n
  end
  for _, f in ipairs(files) do
    local text = fs.read_file(f, 1024 * 1024)
    if text and f:match('%.sources$') then
      for stanza in (text .. '\n\n'):gmatch('(.-)\n%s*\n') do
        local types = stanza:match('\n?Types:%s*([^\n]+)')
        local uris = stanza:match('\n?URIs:%s*([^\n]+)')
        local suites = stanza:match('\n?Suites:%s*([^\n]+)')
        local comps = stanza:match('\n?Components:%s*([^\n]+)') or 'main'
        local enabled = stanza:match('\n?Enabled:%s*(%S+)')
        if types and types:find('%f[%w]deb%f[^%w-]') and uris and suites and enabled ~= 'no' then
          out[#out + 1] = { uri = uris:match('%S+'), suites = suites, components = comps }
        end
      end
    elseif text then
      for line in text:gmatch('[^\n]+') do
        local uri, suite, comps = line:match('^%s*deb%s+%[?[^%]]-%]?%s*(%a+://%S+)%s+(%S+)%s*(.*)$')
        if not uri then
          uri, suite, comps = line:match('^%s*deb%s+(%a+://%S+)%s+(%S+)%s*(.*)$')
        end
        if uri then
          out[#out + 1] = { uri = uri, suites = suite, components = comps }
        end
      end
    end
  end
  return out
end

--- The Debian mirror and release suite apt uses here (the first source whose suite is a
--- release, not -updates/-security/-backports): { mirror = URL, suite = NAME } or nil, msg.
function M.mirror()
  for _, s in ipairs(sources()) do
    for suite in s.suites:gmatch('%S+') do
      if not suite:find('-', 1, true) and not s.uri:match('security') then
        return { mirror = s.uri, suite = suite }
      end
    end
  end
  return errors.fail('ENOENT', 'no Debian release suite in /etc/apt/sources.list{,.d}')
end

return M
