-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's one-time login token: the file a listener's `login_token_file` names (0600,
-- owned by this user or root) holds a random token; `GET /dashboard/login?once=TOKEN` with it
-- opens a browser session once. The comparison is constant-time (moonstack.http.auth.equal);
-- on success the file is zeroed and removed, so the link in a terminal or a browser history
-- is worthless afterwards. issue() writes a fresh token (what `moonstack dev up` hands out).
local uv = require('luv')
local auth = require('moonstack.http.auth')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')

local M = {}

local function trim(s)
  return (s:gsub('^%s+', ''):gsub('%s+$', ''))
end

--- Write a fresh token (32 random bytes, hex) to `path` (0600, atomically). Returns it, or
--- nil, msg, code.
function M.issue(path)
  local token = crypto.hex(crypto.random(32))
  local ok, err, code = fs.write_atomic(path, token .. '\n', 384)
  if not ok then
    return nil, err, code
  end
  return token
end

-- Zero the file's bytes in place, then remove it.
local function burn(path, size)
  local fd = uv.fs_open(path, 'r+', 384)
  if fd then
    uv.fs_write(fd, ('\0'):rep(size), 0)
    uv.fs_fsync(fd)
    uv.fs_ftruncate(fd, 0)
    uv.fs_close(fd)
  end
  uv.fs_unlink(path)
end

--- Check `given` against the token of file `path` and, when it matches, burn the file.
--- Returns true, or nil, 'CODE: why' (never the token), CODE: ENOENT (no file: used already
--- or never issued), EPERM (the file is readable by others: refused, not used), EDENIED (no
--- match), EINVAL (no token given or configured).
function M.consume(path, given)
  if type(path) ~= 'string' then
    return nil, 'EINVAL: no login_token_file is configured', 'EINVAL'
  end
  if type(given) ~= 'string' or given == '' then
    return nil, 'EINVAL: no token given', 'EINVAL'
  end
  local ok, err, code = fs.check_private(path, 'login_token_file')
  if not ok then
    if code == 'ENOENT' then
      return nil, 'ENOENT: no login token is pending (it was used, or never issued)', 'ENOENT'
    end
    return nil, err, code
  end
  local data, rerr, rcode = fs.read_file(path, 4096)
  if not data then
    return nil, 'login_token_file: ' .. tostring(rerr), rcode
  end
  local token = trim(data)
  if token == '' then
    return nil, 'ENOENT: no login token is pending (the file is empty)', 'ENOENT'
  end
  if not auth.equal(trim(given), token) then
    return nil, 'EDENIED: wrong login token', 'EDENIED'
  end
  burn(path, #data)
  return true
end

return M
