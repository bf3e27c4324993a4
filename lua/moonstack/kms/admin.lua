-- SPDX-License-Identifier: Apache-2.0
-- The KMS admin service (kms-vmm-gateway.md §3.6, §3.10 [core.admin]): a separate listener
-- (default 127.0.0.1:8001, plain HTTP: keep it on loopback) whose every request must carry the
-- admin token as `Authorization: Bearer <token>` or `X-Admin-Token: <token>` (401 otherwise).
-- The token comes from kms.lua (`admin.token`, or `admin.token_file`) or the environment
-- (DSTACK_KMS_ADMIN_TOKEN, then ADMIN_API_TOKEN) — never from the command line. An htpasswd
-- file (`admin.htpasswd_file`, bcrypt only) adds users over `Authorization: Basic`;
-- `admin.insecure_no_auth = true` drops authentication (loudly). With none of these the admin
-- listener refuses to start (fails closed). The checks themselves are moonstack.http.auth's
-- (constant-time tokens, bcrypt off the loop, failed logins limited per client by
-- moonstack.http.login_limit: 429 with Retry-After, no check). Methods (pRPC service `Admin`):
-- ClearImageCache{image_hash, config_hash} removes `<image.cache_dir>/images/<image_hash>` and
-- `<image.cache_dir>/measurements/<config_hash>` (hex names; `all` = the whole directory).
local auth = require('moonstack.http.auth')
local fs = require('moonstack.core.fs')

local M = {}

M.ENV = { 'DSTACK_KMS_ADMIN_TOKEN', 'ADMIN_API_TOKEN' }

local MISSING = 'EINVAL: the admin listener is enabled but no token is configured (admin.token, '
  .. 'admin.token_file, DSTACK_KMS_ADMIN_TOKEN or ADMIN_API_TOKEN)'

-- The admin config as moonstack.http.auth reads it.
local function auth_opts(cfg)
  return { token = cfg.token, token_file = cfg.token_file, env = M.ENV, what = 'admin',
    htpasswd_file = cfg.htpasswd_file, insecure = cfg.insecure_no_auth, missing = MISSING }
end

--- The admin token of a validated `admin` config table: `token`, else the content of
--- `token_file` (refused when its group or others may read it: EPERM), else the first
--- non-empty of M.ENV (`getenv` defaults to os.getenv). Returns it or nil, 'EINVAL: ...',
--- 'EINVAL' (none configured: the listener must not start).
function M.token(cfg, getenv)
  local t, err, code = auth.token(auth_opts(cfg), getenv)
  if not t and code == 'EINVAL' then
    return nil, MISSING, code
  end
  return t, err, code
end

--- The users of an htpasswd file (moonstack.http.auth.load_htpasswd).
function M.load_htpasswd(path)
  return auth.load_htpasswd(path, 'admin.htpasswd_file')
end

--- The admin credentials of a validated `admin` config table (moonstack.http.auth
--- credentials: token, htpasswd users, insecure_no_auth), or nil, msg, code when none is
--- configured (the listener must not start: it fails closed) or a file is unusable.
function M.credentials(cfg, getenv)
  return auth.credentials(auth_opts(cfg), getenv)
end

--- Constant-time equality of two strings (of any lengths).
M.equal = auth.equal

--- Judge request `req` (moonstack.http.auth.judge, realm "dstack-kms admin"): true, or
--- false, status (401, 429), headers, reason.
function M.judge(req, creds, limiter)
  return auth.judge(req, creds, limiter, { realm = 'dstack-kms admin' })
end

--- Whether request `req` carries valid credentials (judge() without a limiter).
function M.authorized(req, creds)
  return (M.judge(req, creds)) == true
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
  local ok, err = fs.remove_tree(path)
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
