-- SPDX-License-Identifier: Apache-2.0
-- The KMS admin service (kms-vmm-gateway.md §3.6, §3.10 [core.admin]): a separate listener
-- (default 127.0.0.1:8001, plain HTTP: keep it on loopback) whose every request must carry the
-- admin token as `Authorization: Bearer <token>` or `X-Admin-Token: <token>` (401 otherwise).
-- The token comes from kms.lua (`admin.token`, or `admin.token_file`) or the environment
-- (DSTACK_KMS_ADMIN_TOKEN, then ADMIN_API_TOKEN) — never from the command line. An htpasswd
-- file (`admin.htpasswd_file`, bcrypt only) adds users over `Authorization: Basic`;
-- `admin.insecure_no_auth = true` drops authentication (loudly). With none of these the admin
-- listener refuses to start (fails closed). Comparison is constant-time (over the
-- SHA-256 of both sides, so the length does not leak either). Basic passwords are checked off
-- the event loop (bcrypt on the thread pool) and failed logins are limited per client
-- (moonstack.kms.login_limit: 429 with Retry-After, no check). Methods (pRPC service `Admin`):
-- ClearImageCache{image_hash, config_hash} removes `<image.cache_dir>/images/<image_hash>` and
-- `<image.cache_dir>/measurements/<config_hash>` (hex names; `all` = the whole directory).
local bit = require('bit')
local uv = require('luv')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')

local M = {}

M.ENV = { 'DSTACK_KMS_ADMIN_TOKEN', 'ADMIN_API_TOKEN' }

local function trim(s)
  return (s:gsub('^%s+', ''):gsub('%s+$', ''))
end

--- The admin token of a validated `admin` config table: `token`, else the content of
--- `token_file` (refused when its group or others may read it, as ssh does with keys: EPERM),
--- else the first non-empty of M.ENV (`getenv` defaults to os.getenv). Returns it or nil,
--- 'EINVAL: ...', 'EINVAL' (none configured: the listener must not start).
function M.token(cfg, getenv)
  getenv = getenv or os.getenv
  if cfg.token and trim(cfg.token) ~= '' then
    return trim(cfg.token)
  end
  if cfg.token_file then
    local ok, perr, pcode = fs.check_private(cfg.token_file, 'admin.token_file')
    if not ok then
      return nil, pcode == 'EPERM' and perr or 'admin.token_file: ' .. tostring(perr), pcode
    end
    local data, err, code = fs.read_file(cfg.token_file, 4096)
    if not data then
      return nil, 'admin.token_file: ' .. tostring(err), code
    end
    if trim(data) ~= '' then
      return trim(data)
    end
  end
  for _, name in ipairs(M.ENV) do
    local v = getenv(name)
    if v and trim(v) ~= '' then
      return trim(v)
    end
  end
  return nil, 'EINVAL: the admin listener is enabled but no token is configured (admin.token, '
    .. 'admin.token_file, DSTACK_KMS_ADMIN_TOKEN or ADMIN_API_TOKEN)', 'EINVAL'
end

--- The users of an htpasswd file (`user:bcrypt-hash` lines, `#` comments; `htpasswd -B`):
--- { [user] = hash }, or nil, 'EINVAL: <path> line N: why', 'EINVAL' (a hash that is not bcrypt
--- is refused, as upstream).
function M.load_htpasswd(path)
  local text, err, code = fs.read_file(path, 1024 * 1024)
  if not text then
    return nil, 'admin.htpasswd_file: ' .. tostring(err), code
  end
  local users, n = {}, 0
  local line_no = 0
  for line in (text .. '\n'):gmatch('([^\n]*)\n') do
    line_no = line_no + 1
    line = trim(line)
    if line ~= '' and line:sub(1, 1) ~= '#' then
      local user, hash = line:match('^([^:]+):(.+)$')
      if not user then
        return nil, ('EINVAL: %s line %d: not user:hash'):format(path, line_no), 'EINVAL'
      end
      if not crypto.bcrypt_hash_valid(hash) then
        return nil, ('EINVAL: %s line %d: the hash of %s is not bcrypt (htpasswd -B)'):format(path,
          line_no, user), 'EINVAL'
      end
      users[user] = hash
      n = n + 1
    end
  end
  if n == 0 then
    return nil, ('EINVAL: %s holds no user'):format(path), 'EINVAL'
  end
  return users
end

--- The admin credentials of a validated `admin` config table: { token? (see token()), users?
--- (htpasswd_file), insecure? (insecure_no_auth) }, or nil, msg, code when none is configured
--- (the listener must not start: it fails closed) or a file is unusable.
function M.credentials(cfg, getenv)
  local creds = { insecure = cfg.insecure_no_auth == true }
  if cfg.htpasswd_file then
    local users, err, code = M.load_htpasswd(cfg.htpasswd_file)
    if not users then
      return nil, err, code
    end
    creds.users = users
  end
  local token, err, code = M.token(cfg, getenv)
  if token then
    creds.token = token
  elseif code ~= 'EINVAL' or not (creds.users or creds.insecure) then
    return nil, err, code
  end
  return creds
end

--- Constant-time equality of two strings (of any lengths).
function M.equal(a, b)
  local x, y = crypto.sha256(a), crypto.sha256(b)
  local diff = 0
  for i = 1, #x do
    diff = bit.bor(diff, bit.bxor(x:byte(i), y:byte(i)))
  end
  return diff == 0
end

-- The unauthorized answer: 401 with the Bearer challenge.
local function deny()
  return false, 401, { ['www-authenticate'] = 'Bearer realm="dstack-kms admin"' },
    'bad or missing credentials'
end

--- Judge request `req` (moonstack.http.server): `creds` from credentials() (or a bare token
--- string). The token as `Authorization: Bearer` or `X-Admin-Token`; an htpasswd user as
--- `Authorization: Basic` (bcrypt in constant time, on the thread pool when in a task; an
--- unknown user costs the same); anything with insecure_no_auth. With `limiter`
--- (moonstack.kms.login_limit), a Basic check starts only when the client (req.peer) is under
--- its failed-login limit. Returns true, or false, status (401, or 429 refused by the limiter
--- without a check), headers, reason.
function M.judge(req, creds, limiter)
  if type(creds) == 'string' then
    creds = { token = creds }
  end
  if creds.insecure then
    return true
  end
  local auth = req:header('authorization')
  local given = req:header('x-admin-token') or (auth and auth:match('^[Bb]earer%s+(%S+)%s*$'))
  if type(given) == 'string' then
    if creds.token ~= nil and M.equal(given, creds.token) then
      return true
    end
    return deny()
  end
  local basic = creds.users and auth and auth:match('^[Bb]asic%s+(%S+)%s*$')
  local pair = basic and require('moonstack.core.codec').unbase64(basic)
  local user, password = (pair or ''):match('^([^:]*):(.*)$')
  if not user then
    return deny()
  end
  local peer = req.peer or '?'
  if limiter then
    local ok, retry_after, why = limiter:begin(peer)
    if not ok then
      return false, 429, { ['retry-after'] = tostring(retry_after) },
        ('%s: retry in %d s'):format(why, retry_after)
    end
  end
  local hash = creds.users[user]
  -- an unknown user still costs a bcrypt check: no timing hint of which names exist
  local done, ok = pcall(crypto.bcrypt_check, password, hash or creds.users[next(creds.users)])
  local passed = done and hash ~= nil and ok == true
  if limiter then
    limiter:finish(peer, passed)
  end
  if not done then
    error(ok, 0) -- the task was cancelled: pass it on
  end
  if passed then
    return true
  end
  return deny()
end

--- Whether request `req` carries valid credentials (judge() without a limiter).
function M.authorized(req, creds)
  return (M.judge(req, creds)) == true
end

-- Remove a file or a directory tree (no symlink is followed).
local function remove_tree(path)
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
    local ok, err = remove_tree(path .. '/' .. name)
    if not ok then
      return nil, err
    end
  end
  return uv.fs_rmdir(path)
end

local function clear(dir, key, what)
  if key == '' then
    return true
  end
  local path = dir
  if key ~= 'all' then
    if not key:match('^%x+$') then
      return nil, ('EINVAL: %s must be hex or "all"'):format(what)
    end
    path = dir .. '/' .. key
  end
  local ok, err = remove_tree(path)
  if not ok then
    return nil, ('EIO: cannot remove %s: %s'):format(path, tostring(err))
  end
  return true
end

--- The message schemas of the Admin service.
M.messages = {
  Empty = {},
  ClearImageCacheRequest = { { 1, 'image_hash', 'string' }, { 2, 'config_hash', 'string' } },
}

--- The Admin methods over `kms` ({ cfg (validated kms.lua), log }).
function M.methods(kms)
  local msg = M.messages
  return {
    ClearImageCache = { input = msg.ClearImageCacheRequest, output = msg.Empty, call = function(args)
      local dir = kms.cfg.image.cache_dir
      local ok, err = clear(dir .. '/images', args.image_hash, 'image_hash')
      if ok then
        ok, err = clear(dir .. '/measurements', args.config_hash, 'config_hash')
      end
      kms.log.info('admin ClearImageCache', { image_hash = args.image_hash,
        config_hash = args.config_hash, error = err })
      if not ok then
        return nil, err
      end
      return {}
    end },
  }
end

return M
