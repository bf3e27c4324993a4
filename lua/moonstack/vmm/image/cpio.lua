-- SPDX-License-Identifier: Apache-2.0
-- A reproducible cpio writer (the "newc" format the kernel unpacks as an initramfs): entries
-- sorted by name (a parent always before its children), mtime 0, uid and gid 0, inode numbers
-- in that order, no hard links, no device numbers but those of character devices. The same
-- entries always give the same bytes.
--
--   local w = cpio.new()
--   w:dir('etc', 493); w:file('etc/hosts', '127.0.0.1 localhost\n', 420)
--   w:file_from('usr/bin/busybox', '/cache/busybox', 493); w:symlink('bin', 'usr/bin')
--   w:char('dev/console', 5, 1, 384)
--   assert(w:write('/tmp/initramfs.cpio'))
local bit = require('bit')
local errors = require('moonstack.core.errors')
local fs = require('moonstack.core.fs')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

local S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 16384, 32768, 40960, 8192

local Writer = {}
Writer.__index = Writer

--- A new, empty archive.
function M.new()
  return setmetatable({ entries = {} }, Writer)
end

-- Normalize an entry name: no leading '/' or './', no trailing '/'.
local function norm(path)
  path = path:gsub('^/+', ''):gsub('^%./', ''):gsub('/+$', '')
  local bad = path == '' or path:find('//', 1, true)
  for part in path:gmatch('[^/]+') do
    bad = bad or part == '.' or part == '..'
  end
  if bad then
    error(('cpio: bad entry name %q'):format(path), 3)
  end
  return path
end

function Writer:_add(e)
  e.path = norm(e.path)
  local old = self.entries[e.path]
  if old and not (old.kind == 'dir' and e.kind == 'dir') then
    error(('cpio: %s added twice'):format(e.path), 3)
  end
  self.entries[e.path] = e
  -- parents, as directories 0755 (an explicit dir() later may change the mode)
  local parent = e.path:match('^(.*)/[^/]+$')
  while parent and not self.entries[parent] do
    self.entries[parent] = { path = parent, kind = 'dir', mode = 493 }
    parent = parent:match('^(.*)/[^/]+$')
  end
end

--- Whether the archive has an entry `path`.
function Writer:has(path)
  return self.entries[norm(path)] ~= nil
end

--- A directory (mode: permission bits, default 0755).
function Writer:dir(path, mode)
  local p = norm(path)
  local e = self.entries[p]
  if e and e.kind == 'dir' then
    e.mode = mode or e.mode
    return
  end
  self:_add({ path = p, kind = 'dir', mode = mode or 493 })
end

--- A regular file holding `data` (mode default 0644).
function Writer:file(path, data, mode)
  self:_add({ path = path, kind = 'file', data = data, mode = mode or 420 })
end

--- A regular file whose content is read from the host file `src` when the archive is written.
function Writer:file_from(path, src, mode)
  self:_add({ path = path, kind = 'file', src = src, mode = mode or 420 })
end

--- A symbolic link to `target`.
function Writer:symlink(path, target)
  self:_add({ path = path, kind = 'symlink', data = target, mode = 511 })
end

--- A character device node (major, minor; mode default 0600).
function Writer:char(path, major, minor, mode)
  self:_add({ path = path, kind = 'char', major = major, minor = minor, mode = mode or 384 })
end

--- The entry names, sorted.
function Writer:names()
  return sorted_keys(self.entries)
end

local TYPE = { dir = S_IFDIR, file = S_IFREG, symlink = S_IFLNK, char = S_IFCHR }

local function pad4(n)
  return ('\0'):rep((4 - n % 4) % 4)
end

-- One newc header + name (padded).
local function header(ino, mode, nlink, size, rmajor, rminor, name)
  local h = ('070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X'):format(ino, mode, 0,
    0, nlink, 0, size, 0, 0, rmajor, rminor, #name + 1, 0)
  return h .. name .. '\0' .. pad4(110 + #name + 1)
end

--- The whole archive as one string (the entries' data read now).
function Writer:bytes()
  local out, ino = {}, 0
  for _, p in ipairs(self:names()) do
    local e = self.entries[p]
    ino = ino + 1
    local data = ''
    if e.kind == 'file' then
      if e.src then
        local err
        data, err = fs.read_file(e.src)
        if not data then
          return nil, err
        end
      else
        data = e.data
      end
    elseif e.kind == 'symlink' then
      data = e.data
    end
    local mode = bit.bor(TYPE[e.kind], bit.band(e.mode, 4095))
    out[#out + 1] = header(ino, mode, e.kind == 'dir' and 2 or 1, #data, e.major or 0,
      e.minor or 0, p)
    out[#out + 1] = data
    out[#out + 1] = pad4(#data)
  end
  out[#out + 1] = header(0, 0, 1, 0, 0, 0, 'TRAILER!!!')
  local s = table.concat(out)
  return s .. pad4(#s)
end

--- Write the archive to `path` (replaced atomically). Returns true or nil, msg, code.
function Writer:write(path)
  local s, err = self:bytes()
  if not s then
    return errors.fail('EIO', tostring(err))
  end
  return fs.write_atomic(path, s, 420)
end

--- Total size of the regular files' data (for progress lines), reading sizes of file_from
--- entries from the host.
function Writer:data_size()
  local uv = require('luv')
  local n = 0
  for _, e in pairs(self.entries) do
    if e.kind == 'file' then
      if e.src then
        local st = uv.fs_stat(e.src)
        n = n + (st and st.size or 0)
      else
        n = n + #e.data
      end
    end
  end
  return n
end

return M
