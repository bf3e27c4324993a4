-- SPDX-License-Identifier: Apache-2.0
-- Credentials for an HTTP listener, as dstack's admin-style APIs check them (the KMS admin
-- listener, the VMM's [auth]): tokens as `Authorization: Bearer <t>` or `X-Admin-Token: <t>`
-- (and, where the listener allows it, `?token=<t>` on a GET), users of an htpasswd file
-- (bcrypt only, `htpasswd -B`) as `Authorization: Basic`. Tokens come from the config
-- (`token`, `tokens`), a file (`token_file`: refused when its group or others may read it, as
-- ssh does with keys) or the environment (names given by the service) — never the command
-- line. Comparison is constant-time (over the SHA-256 of both sides, so the length does not
-- leak either); Basic passwords are checked off the event loop (bcrypt on the thread pool),
-- an unknown user costing the same, and failed logins may be limited per client
-- (moonstack.http.login_limit: 429 with Retry-After, no check).
local bit = require('bit')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')

local M = {}

local function trim(s)
  return (s:gsub('^%s+', ''):gsub('%s+$', ''))
end

--- The token of `opts` = { token?, token_file?, env = { names }?, what = 'admin' (the config
--- table named in messages) }: `token`, else the content of `token_file` (EPERM when its group
--- or others may read it), else the first non-empty variable of `env` (`getenv` defaults to
--- os.getenv). Returns it or nil, 'EINVAL: ...', 'EINVAL' when none is configured.
function M.token(opts, getenv)
  getenv = getenv or os.getenv
  local what = opts.what or 'auth'
  if opts.token and trim(opts.token) ~= '' then
    return trim(opts.token)
  end
  if opts.token_file then
    local label = what .. '.token_file'
    local ok, perr, pcode = fs.check_private(opts.token_file, label)
    if not ok then
      return nil, pcode == 'EPERM' and perr or label .. ': ' .. tostring(perr), pcode
    end
    local data, err, code = fs.read_file(opts.token_file, 4096)
    if not data then
      return nil, label .. ': ' .. tostring(err), code
    end
    if trim(data) ~= '' then
      return trim(data)
    end
  end
  local names = opts.env or {}
  for _, name in ipairs(names) do
    local v = getenv(name)
    if v and trim(v) ~= '' then
      return trim(v)
    end
  end
  local sources = { what .. '.token', what .. '.token_file' }
  for _, name in ipairs(names) do
    sources[#sources + 1] = name
  end
  return nil, ('EINVAL: no token is configured (%s)'):format(table.concat(sources, ', ')),
    'EINVAL'
end

--- The users of an htpasswd file (`user:bcrypt-hash` lines, `#` comments; `htpasswd -B`):
--- { [user] = hash }, or nil, 'EINVAL: <path> line N: why', 'EINVAL' (a hash that is not bcrypt
--- is refused, as upstream). `what` names the config key in messages.
function M.load_htpasswd(path, what)
  local text, err, code = fs.read_file(path, 1024 * 1024)
  if not text then
    return nil, (what or 'htpasswd_file') .. ': ' .. tostring(err), code
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

--- The credentials of `opts` = { token?, token_file?, env?, tokens = { ... }?, htpasswd_file?,
--- insecure = bool?, what = 'admin', missing = message when nothing is configured? }:
--- { tokens = { token... }, users? (htpasswd_file), insecure? }. Fails closed: nil, msg, code
--- when no credential at all is configured (the listener must not start) or a file is
--- unusable.
function M.credentials(opts, getenv)
  local creds = { insecure = opts.insecure == true, tokens = {} }
  local what = opts.what or 'auth'
  if opts.htpasswd_file then
    local users, err, code = M.load_htpasswd(opts.htpasswd_file, what .. '.htpasswd_file')
    if not users then
      return nil, err, code
    end
    creds.users = users
  end
  for _, t in ipairs(opts.tokens or {}) do
    if trim(t) ~= '' then
      creds.tokens[#creds.tokens + 1] = trim(t)
    end
  end
  local token, err, code = M.token(opts, getenv)
  if token then
    creds.tokens[#creds.tokens + 1] = token
    creds.token = token
  elseif code ~= 'EINVAL' then
    return nil, err, code
  elseif not (creds.users or creds.insecure or #creds.tokens > 0) then
    return nil, opts.missing or err, code
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

-- Whether `given` is one of the tokens (every one compared: no early exit).
local function token_ok(creds, given)
  local found = false
  for _, t in ipairs(creds.tokens or { creds.token }) do
    found = M.equal(given, t) or found
  end
  return found
end

--- Judge request `req` (moonstack.http.server): `creds` from credentials() (or a bare token
--- string). A token as `Authorization: Bearer`, `X-Admin-Token`, or with opts.query_token as
--- `?token=` on a GET; an htpasswd user as `Authorization: Basic` (bcrypt in constant time, on
--- the thread pool when in a task); anything with `insecure`. With `limiter`
--- (moonstack.http.login_limit), a Basic check starts only when the client (req.peer) is under
--- its failed-login limit. opts.realm names the Bearer challenge. Returns true, or false,
--- status (401, or 429 refused by the limiter without a check), headers, reason.
function M.judge(req, creds, limiter, opts)
  opts = opts or {}
  if type(creds) == 'string' then
    creds = { tokens = { creds } }
  end
  if creds.insecure then
    return true
  end
  local function deny()
    return false, 401, { ['www-authenticate'] = ('Bearer realm="%s"'):format(opts.realm or 'api') },
      'bad or missing credentials'
  end
  local auth = req:header('authorization')
  local given = req:header('x-admin-token') or (auth and auth:match('^[Bb]earer%s+(%S+)%s*$'))
  if given == nil and opts.query_token and req.method == 'GET' and req.args then
    given = req.args.token
  end
  if type(given) == 'string' then
    if token_ok(creds, given) then
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
function M.authorized(req, creds, opts)
  return (M.judge(req, creds, nil, opts)) == true
end

return M
