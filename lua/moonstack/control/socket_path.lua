-- SPDX-License-Identifier: Apache-2.0
-- Where a control socket goes (moonstack.control.server): what is at its path already (nothing,
-- a stale socket, a live one, something else), whether listen() can bind it there, the
-- preparation before a bind (a stale socket removed, its directory made 0700), and removing
-- the socket file only while it is still the one bound.
local uv = require('luv')
local errors = require('moonstack.core.errors')
local log = require('moonstack.core.log').new('control')

local M = {}

local SUN_PATH_MAX = 108

local function fail(code, fmt, ...)
  return errors.fail(code, fmt:format(...))
end

-- Is someone accepting connections on the socket at `path`? 'live', 'stale', or nil, error
-- (the runtime's one liveness probe, shared with the HTTP listeners).
local probe = require('moonstack.native.runtime').unix_socket_state

--- What is at a control socket path: 'absent', 'stale' (a socket nobody serves), or nil, msg,
--- code (too long, not a socket, served by a live process, or cannot tell).
function M.occupant(path)
  if #path >= SUN_PATH_MAX then
    return fail('ENAMETOOLONG', 'socket path is longer than %d bytes: %s', SUN_PATH_MAX - 1,
      path)
  end
  local st = uv.fs_lstat(path)
  if not st then
    return 'absent'
  end
  if st.type ~= 'socket' then
    return fail('EEXIST', '%s exists and is not a socket', path)
  end
  local state, perr = probe(path)
  if state == 'live' then
    return fail('EADDRINUSE', 'a process is already listening on %s', path)
  elseif not state then
    return fail('EADDRINUSE', 'cannot tell whether %s is in use: %s', path, perr)
  end
  return 'stale'
end

--- Whether listen(path) can work, without touching anything: the path fits, nothing but a
--- stale socket is there, and its directory exists or its nearest existing parent is a
--- directory this process may write. A daemon asks before starting its services, so a
--- control socket that cannot open fails the start before they create anything. Returns
--- true or nil, msg, code (as listen()).
function M.check(path)
  if type(path) ~= 'string' or path == '' then
    error('control.check: path must be a non-empty string', 2)
  end
  local at, aerr, acode = M.occupant(path)
  if not at then
    return nil, aerr, acode
  elseif at == 'stale' then
    return true
  end
  local dir = path:match('^(.+)/[^/]+$') or '.'
  local dst = uv.fs_stat(dir)
  if dst then
    if dst.type ~= 'directory' then
      return fail('ENOTDIR', 'cannot bind the control socket %s: %s is not a directory', path, dir)
    end
    if not uv.fs_access(dir, 'W') then
      return fail('EACCES', 'cannot bind the control socket %s: this user may not write %s: '
        .. 'give it the directory or set control to a path it may write', path, dir)
    end
    return true
  end
  -- listen() creates the directory: its nearest existing parent must allow it
  local parent, pst = dir, nil
  while not pst do
    local up = parent:match('^(.*)/[^/]*$')
    up = up == nil and '.' or (up == '' and '/' or up)
    if up == parent then
      break
    end
    parent, pst = up, uv.fs_stat(up)
  end
  local why = not pst and 'is missing' or pst.type ~= 'directory' and 'is not a directory'
    or not uv.fs_access(parent, 'W') and 'is not writable by this user'
  if why then
    return fail(pst and pst.type ~= 'directory' and 'ENOTDIR' or 'EACCES', 'cannot create %s, '
      .. 'the directory of the control socket %s (%s %s): create it for this user (e.g. install '
      .. '-d -m 0700 %s) or set control to a path it may write', dir, path, parent, why, dir)
  end
  return true
end

--- Get `path` ready for a bind: a stale socket there is removed, a missing directory is
--- created (0700). Returns true or nil, msg, code (as occupant(), or why the directory
--- cannot be made, with the fix).
function M.prepare(path)
  local at, aerr, acode = M.occupant(path)
  if not at then
    return nil, aerr, acode
  elseif at == 'stale' then
    log.info('removing stale control socket', { path = path })
    local ok, uerr, ucode = uv.fs_unlink(path)
    if not ok and ucode ~= 'ENOENT' then
      return nil, uerr, ucode
    end
  end
  -- its directory: created (0700) when missing, or what stops it named with the fix
  local dir = path:match('^(.+)/[^/]+$')
  if dir and not uv.fs_stat(dir) then
    local made, merr, mcode = require('moonstack.core.fs').mkdir_p(dir, 448)
    if not made then
      return fail(mcode or 'EIO', 'cannot create %s, the directory of the control socket %s (%s): '
        .. 'create it for this user (e.g. install -d -m 0700 %s) or set control to a path it '
        .. 'may write', dir, path, tostring(merr):gsub('^%u+: ', ''), dir)
    end
    log.info('created the control socket directory', { dir = dir })
  end
  return true
end

--- Remove the socket file at `path` if it is still the one bound (inode `ino`).
function M.unlink_ours(path, ino)
  local st = uv.fs_lstat(path)
  if st and st.ino == ino and st.type == 'socket' then
    uv.fs_unlink(path)
  end
end

return M
