-- SPDX-License-Identifier: Apache-2.0
-- The docker flavour's root filesystem: `debootstrap --variant=minbase` of apt's own Debian
-- mirror and release with the packages asked for, cleaned so two bootstraps of the same
-- package versions give the same tree (no apt lists, caches, logs, backup files or
-- machine-id; password ages pinned; Python byte code compiled again, hash-based and
-- unchecked, with a fixed hash seed), kept in the cache under a key made of the recipe and
-- the release's InRelease file (which changes when the mirror's package versions do); then,
-- per build, that tree plus the build's own files made into a reproducible squashfs image
-- (zstd, sorted, every timestamp the same; read only by nature). squashfs rather than
-- `mkfs.ext4 -d`: e2fsprogs 1.47 copies each source file's ctime and atime into the image,
-- which no clamping of the tree can fix, so two builds of one tree differed.
local uv = require('luv')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local debian = require('moonstack.vmm.image.debian')
local exec = require('moonstack.vmm.image.exec')

local M = {}

--- Bumped when the recipe (cleaning, options) changes, so old cache entries are not reused.
M.RECIPE = 3

-- The apt lists file of `mirror`'s `suite` InRelease (or Release), as apt names it.
local function release_file(mirror, suite)
  local base = '/var/lib/apt/lists/' .. mirror:gsub('^%a+://', ''):gsub('/+$', ''):gsub('/', '_')
    .. '_dists_' .. suite .. '_'
  for _, n in ipairs({ 'InRelease', 'Release' }) do
    if debian.exists(base .. n) then
      return base .. n
    end
  end
  return nil
end

--- The cache key of a recipe { mirror, suite, include = { ... } }: hex SHA-256 of the recipe
--- and of the suite's InRelease file in apt's lists (nil, msg when apt has none: run
--- apt-get update).
function M.key(recipe)
  local rel = release_file(recipe.mirror, recipe.suite)
  local text = rel and fs.read_file(rel)
  if not text then
    return errors.fail('ENOENT', ('apt has no Release file for %s %s (apt-get update)')
      :format(recipe.mirror, recipe.suite))
  end
  local include = {}
  for i, p in ipairs(recipe.include) do
    include[i] = p
  end
  table.sort(include)
  local doc = json.encode({ recipe = M.RECIPE, mirror = recipe.mirror, suite = recipe.suite,
    variant = 'minbase', include = json.array(include),
    release = crypto.hex(crypto.sha256(text)) })
  return crypto.hex(crypto.sha256(doc))
end

local function run(argv, opts)
  local ok, err, code = exec.run(argv, opts)
  if not ok then
    return nil, err, code
  end
  return true
end

-- In the tree: fields 3 (last password change, days) of shadow/gshadow-style files pinned.
local function pin_shadow(root, days)
  for _, f in ipairs({ '/etc/shadow' }) do
    local text = fs.read_file(root .. f)
    if text then
      local out = {}
      for line in text:gmatch('[^\n]+') do
        local a, b, _, rest = line:match('^([^:]*):([^:]*):([^:]*):?(.*)$')
        if a then
          line = ('%s:%s:%d:%s'):format(a, b, days, rest)
        end
        out[#out + 1] = line
      end
      local ok, err, code = fs.write_atomic(root .. f, table.concat(out, '\n') .. '\n', 416)
      if not ok then
        return nil, err, code
      end
    end
  end
  return true
end

-- Clean a fresh bootstrap so that it depends only on the package versions.
local function clean(root, sde)
  local rm = { 'rm', '-rf' }
  for _, p in ipairs({ '/var/lib/apt/lists', '/var/cache/apt', '/var/log',
    '/var/cache/ldconfig/aux-cache', '/usr/share/man', '/usr/share/info', '/usr/share/lintian',
    '/usr/share/linda', '/var/lib/dbus/machine-id', '/etc/machine-id', '/debootstrap' }) do
    rm[#rm + 1] = root .. p
  end
  local ok, err, code = run(rm)
  if not ok then
    return nil, err, code
  end
  -- globbed leftovers: backups of dpkg's and the password files', temp dirs, /run
  ok, err, code = run({ 'find', root .. '/var/lib/dpkg', root .. '/etc', root .. '/var/cache/debconf',
    '-maxdepth', '1',
    '(', '-name', '*-old', '-o', '-name', '*-', ')', '-type', 'f', '-delete' })
  if ok then
    ok, err, code = run({ 'find', root .. '/tmp', root .. '/var/tmp', root .. '/run',
      root .. '/usr/share/locale', '-mindepth', '1', '-maxdepth', '1',
      '!', '-name', 'locale.alias', '-exec', 'rm', '-rf', '{}', '+' })
  end
  if ok then -- documentation: only the copyright files stay
    ok, err, code = run({ 'find', root .. '/usr/share/doc', '-mindepth', '1', '!', '-type', 'd',
      '!', '-name', 'copyright', '-delete' })
  end
  if ok then
    ok, err, code = run({ 'find', root .. '/usr/share/doc', '-mindepth', '1', '-type', 'd',
      '-empty', '-delete' })
  end
  if not ok then
    return nil, err, code
  end
  for _, d in ipairs({ '/var/log', '/var/cache/apt/archives/partial', '/var/lib/apt/lists/partial' }) do
    ok, err, code = fs.mkdir_p(root .. d, 493)
    if not ok then
      return nil, err, code
    end
  end
  local files = {
    { '/etc/machine-id', '' },
    { '/etc/hostname', 'moonstack\n' },
    { '/etc/hosts', '127.0.0.1\tlocalhost\n127.0.1.1\tmoonstack\n::1\tlocalhost ip6-localhost\n' },
    { '/etc/resolv.conf', 'nameserver 10.0.2.3\n' },
  }
  for _, f in ipairs(files) do
    uv.fs_unlink(root .. f[1])
    ok, err, code = fs.write_atomic(root .. f[1], f[2], 420)
    if not ok then
      return nil, err, code
    end
  end
  ok, err, code = pin_shadow(root, math.floor(sde / 86400))
  if not ok then
    return nil, err, code
  end
  -- Python byte code: Debian compiles it at install time with a random hash seed and source
  -- times; compile it again the reproducible way (hash-based pycs, PYTHONHASHSEED=0),
  -- unchecked: the root file system is read only, and checking every source's hash at import
  -- made docker-compose start too slowly under TCG for the agent's probe.
  if debian.exists(root .. '/usr/bin/python3') then
    ok, err, code = run({ 'find', root .. '/usr', '-name', '__pycache__', '-type', 'd', '-prune',
      '-exec', 'rm', '-rf', '{}', '+' })
    if not ok then
      return nil, err, code
    end
    local dirs = { 'chroot', root, '/usr/bin/python3', '-m', 'compileall', '-q', '-f',
      '--invalidation-mode', 'unchecked-hash' }
    local h = uv.fs_scandir(root .. '/usr/lib')
    local pydirs = {}
    while h do
      local name = uv.fs_scandir_next(h)
      if not name then
        break
      end
      if name:match('^python3[%.%d]*$') then
        pydirs[#pydirs + 1] = '/usr/lib/' .. name
      end
    end
    table.sort(pydirs)
    for _, d in ipairs(pydirs) do
      dirs[#dirs + 1] = d
    end
    ok, err, code = exec.run(dirs, { env = { PYTHONHASHSEED = '0', PYTHONDONTWRITEBYTECODE = '1',
      SOURCE_DATE_EPOCH = tostring(sde) },
      ok_codes = { [0] = true, [1] = true } }) -- 1: a test file that does not compile
    if not ok then
      return nil, err, code
    end
  end
  return true
end

--- The bootstrapped, cleaned tree of `recipe` ({ mirror, suite, include }) in the cache,
--- made once. Returns { dir, key, cached = bool, packages = text ("name version" lines) } or
--- nil, msg, code. `progress(msg)` hears about the slow part.
function M.prepare(cache, recipe, sde, progress)
  local key, err, code = M.key(recipe)
  if not key then
    return nil, err, code
  end
  local dir = cache .. '/rootfs/' .. key:sub(1, 24)
  local cached = debian.exists(dir .. '/packages.txt')
  if not cached then
    if uv.getuid() ~= 0 then
      return errors.fail('EPERM', 'the docker flavour bootstraps a Debian root file system: run as root')
    end
    local ok
    ok, err, code = fs.mkdir_p(cache .. '/rootfs', 493)
    if not ok then
      return nil, err, code
    end
    local tmp = debian.partial(dir)
    debian.rm_rf(tmp)
    ok, err, code = fs.mkdir_p(tmp, 493)
    if not ok then
      return nil, err, code
    end
    if progress then
      progress(('debootstrap --variant=minbase %s %s (%d packages asked for; about a minute)')
        :format(recipe.suite, recipe.mirror, #recipe.include))
    end
    ok, err, code = run({ 'debootstrap', '--variant=minbase', '--components=main',
      '--include=' .. table.concat(recipe.include, ','), recipe.suite, tmp .. '/tree', recipe.mirror },
      { env = { DEBIAN_FRONTEND = 'noninteractive', SOURCE_DATE_EPOCH = tostring(sde) } })
    if ok then
      if progress then
        progress('cleaning the root file system')
      end
      ok, err, code = clean(tmp .. '/tree', sde)
    end
    local pkgs
    if ok then
      pkgs, err, code = exec.run({ 'dpkg-query', '--admindir=' .. tmp .. '/tree/var/lib/dpkg', '-W',
        '-f=${Package} ${Version}\n' })
    end
    if ok and pkgs then
      ok, err, code = fs.write_atomic(tmp .. '/packages.txt', pkgs, 420)
    end
    if ok and pkgs then
      ok, err, code = debian.commit(tmp, dir)
    end
    if not (ok and pkgs) then
      debian.rm_rf(tmp)
      return nil, err, code
    end
  end
  debian.touch(dir)
  return { dir = dir .. '/tree', key = key, cached = cached,
    packages = fs.read_file(dir .. '/packages.txt') or '' }
end

--- Make the squashfs image `out` of the prepared tree `tree` plus `files` (a list of { path,
--- data, mode } or { path, src = host file, mode }, and { path, dir = true }): zstd, every
--- timestamp `sde`, entries sorted (mksquashfs -reproducible), owners and modes as in the
--- tree. The tree itself is not changed: the image is made from a hard-linked copy beside it.
--- Returns the image's size in bytes or nil, msg, code.
function M.image(tree, files, out, sde)
  local entry = tree:gsub('/tree$', '')
  debian.prune(entry, math.huge) -- work copies left by interrupted builds
  local work = debian.partial(entry .. '/work')
  debian.rm_rf(work)
  local ok, err, code = run({ 'cp', '-al', tree, work })
  local function fail(...)
    debian.rm_rf(work)
    return ...
  end
  if not ok then
    return fail(nil, err, code)
  end
  for _, f in ipairs(files) do
    local path = work .. f[1]
    ok, err, code = fs.mkdir_p(f.dir and path or path:match('^(.*)/[^/]+$'), 493)
    if ok and not f.dir then
      uv.fs_unlink(path) -- never write through a hard link into the cached tree
      if f.src then
        ok, err, code = uv.fs_copyfile(f.src, path)
        if ok then
          ok, err, code = uv.fs_chmod(path, f.mode or 420)
        end
      else
        ok, err, code = fs.write_atomic(path, f[2], f.mode or 420)
      end
    end
    if not ok then
      return fail(nil, err, code)
    end
  end
  uv.fs_unlink(out)
  ok, err, code = run({ 'mksquashfs', work, out, '-noappend', '-comp', 'zstd',
    '-Xcompression-level', '3', '-reproducible', '-all-time', tostring(sde), '-mkfs-time',
    tostring(sde), '-no-progress', '-quiet' })
  if not ok then
    return fail(nil, err, code)
  end
  debian.rm_rf(work)
  return uv.fs_stat(out).size
end

return M
