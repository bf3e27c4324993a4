-- SPDX-License-Identifier: Apache-2.0
-- Small file helpers shared by the components: read a whole file with the expected-failure
-- contract, write a file atomically (0600 by default), create a directory path, refuse
-- secrets others could read (as ssh does with private keys), find a write_atomic's leftovers,
-- remove a directory tree.
local bit = require('bit')
-- libuv is loaded on first use: read_file also serves plain LuaJIT (the verifier rock, rockspecs/)
local uv = setmetatable({}, { __index = function(t, k)
  local luv = require('luv')
  setmetatable(t, { __index = luv })
  return luv[k]
end })

local M = {}

local ERRNO_CODES = { [2] = 'ENOENT', [13] = 'EACCES', [21] = 'EISDIR' }

--- Read the whole file at `path`. With `max_bytes`, a larger file is refused (ETOOBIG).
--- Returns the content, or nil, 'CODE: message', code (ENOENT, EACCES, EISDIR, EIO, ETOOBIG).
function M.read_file(path, max_bytes)
  if type(path) ~= 'string' then
    error('fs.read_file: path must be a string', 2)
  end
  local f, err, errno = io.open(path, 'rb')
  if not f then
    local code = ERRNO_CODES[errno] or 'EIO'
    return nil, ('%s: %s'):format(code, err), code
  end
  local data, rerr = f:read(max_bytes and max_bytes + 1 or '*a')
  f:close()
  if data == nil and rerr then
    local code = rerr:find('Is a directory') and 'EISDIR' or 'EIO'
    return nil, ('%s: %s: %s'):format(code, path, rerr), code
  end
  data = data or ''
  if max_bytes and #data > max_bytes then
    return nil, ('ETOOBIG: %s is larger than %d bytes'):format(path, max_bytes), 'ETOOBIG'
  end
  return data
end

--- Write `data` to `path` atomically: a temporary file (mode `mode`, default 0600) in the same
--- directory, fsync, rename over the target. Returns true or nil, message, code.
function M.write_atomic(path, data, mode)
  local tmp = ('%s.tmp.%d.%x'):format(path, uv.os_getpid(), uv.hrtime() % 0x7fffffff)
  local fd, err, code = uv.fs_open(tmp, 'wx', mode or 384) -- 0600
  if not fd then
    return nil, err, code
  end
  local n, werr, wcode = uv.fs_write(fd, data, 0)
  local synced = n == #data and uv.fs_fsync(fd)
  uv.fs_close(fd)
  if n ~= #data or not synced then
    uv.fs_unlink(tmp)
    return nil, werr or 'EIO: short write', wcode or 'EIO'
  end
  local ok, rerr, rcode = uv.fs_rename(tmp, path)
  if not ok then
    uv.fs_unlink(tmp)
    return nil, rerr, rcode
  end
  return true
end

--- Create `dir` and its missing parents with `mode` (default 0700). Returns true or nil, msg,
--- code.
function M.mkdir_p(dir, mode)
  local path = dir:sub(1, 1) == '/' and '' or '.'
  for part in dir:gmatch('[^/]+') do
    path = path .. '/' .. part
    local ok, err, code = uv.fs_mkdir(path, mode or 448) -- 0700
    if not ok and code ~= 'EEXIST' then
      return nil, err, code
    end
  end
  return true
end

-- The octal text of a mode's permission bits ('0644').
local function octal(mode)
  return ('%04o'):format(bit.band(mode, 4095))
end

--- Whether `path` may hold a secret (a private key, a token), as ssh judges private keys: a
--- regular file (symlinks followed) owned by this user or root, which neither its group nor
--- others can read or write. `what` names the file in messages (e.g. 'admin.token_file').
--- Returns true, or nil, 'EPERM: <what> <path> ...: <the fix>', 'EPERM' (ENOENT and the like
--- from stat as they come).
function M.check_private(path, what)
  local st, err, code = uv.fs_stat(path)
  if not st then
    return nil, err, code
  end
  local label = what and (what .. ' ' .. path) or path
  if st.type ~= 'file' then
    return nil, ('EPERM: %s is not a regular file'):format(label), 'EPERM'
  end
  local uid = uv.getuid()
  if st.uid ~= uid and st.uid ~= 0 then
    return nil, ('EPERM: %s is owned by uid %d, not by this user (uid %d) or root: '
      .. 'run chown %d %s'):format(label, st.uid, uid, uid, path), 'EPERM'
  end
  if bit.band(st.mode, 63) ~= 0 then -- 0077
    return nil, ('EPERM: %s is accessible by its group or others (mode %s): secrets must be '
      .. 'readable by their owner only: run chmod 600 %s'):format(label, octal(st.mode), path), 'EPERM'
  end
  return true
end

--- Whether directory `dir` may hold secrets: not writable by its group or others (who could
--- replace the files in it). Returns true, or nil, 'EPERM: ...: <the fix>', 'EPERM'.
function M.check_private_dir(dir, what)
  local st, err, code = uv.fs_stat(dir)
  if not st then
    return nil, err, code
  end
  local label = what and (what .. ' ' .. dir) or dir
  if bit.band(st.mode, 18) ~= 0 then -- 0022
    return nil, ('EPERM: %s is writable by its group or others (mode %s): anyone could '
      .. 'replace the files in it: run chmod 700 %s'):format(label, octal(st.mode), dir), 'EPERM'
  end
  return true
end

--- Remove a file or a directory tree (symlinks are removed, never followed). True (also when
--- `path` does not exist) or nil, msg, code.
function M.remove_tree(path)
  local st = uv.fs_lstat(path)
  if not st then
    return true
  end
  if st.type ~= 'directory' then
    return uv.fs_unlink(path)
  end
  local h = uv.fs_scandir(path)
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    local ok, err, code = M.remove_tree(path .. '/' .. name)
    if not ok then
      return nil, err, code
    end
  end
  return uv.fs_rmdir(path)
end

--- The temporaries write_atomic leaves in `dir` when the process dies between creating and
--- renaming them (`<name>.tmp.<pid>.<hex>`): a list of their names (maybe empty).
function M.atomic_leftovers(dir)
  return M.names(dir, '^.+%.tmp%.%d+%.%x+$')
end

--- The names of the entries of directory `dir` matching Lua pattern `pattern` (all when nil),
--- sorted; {} when `dir` cannot be read.
function M.names(dir, pattern)
  local out = {}
  local h = uv.fs_scandir(dir)
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then
      break
    end
    if not pattern or name:match(pattern) then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

return M
