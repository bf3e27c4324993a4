-- SPDX-License-Identifier: Apache-2.0
-- Who may use a dashboard listener: the daemon's own admin credentials (moonstack.http.auth:
-- Bearer, X-Admin-Token, bcrypt Basic with the failed-login limiter) or a browser session
-- (moonstack.ui.session, opened by the one-time login token). A request that a browser could
-- have been tricked into sending with ambient credentials — the session cookie, or Basic,
-- which browsers also attach by themselves — must carry `X-Moonstack-CSRF: 1` unless it is a
-- GET or HEAD (a cross-site form cannot set a header). The websocket upgrade is judged
-- synchronously (judge_upgrade: a session, or a token; no bcrypt on the event loop), and a
-- session's upgrade must come from the listener's own origin when the browser names one.
local auth = require('moonstack.http.auth')
local session = require('moonstack.ui.session')

local M = {}

--- The header every state-changing browser request carries.
M.CSRF_HEADER = 'X-Moonstack-CSRF'

local Gate = {}
Gate.__index = Gate

--- A gate. opts = { creds (moonstack.http.auth.credentials; { tokens = {} } for sessions
--- only), limiter (moonstack.http.login_limit)?, realm, sessions (moonstack.ui.session store) }.
function M.new(opts)
  assert(type(opts) == 'table' and opts.creds and opts.sessions, 'gate.new: creds and sessions')
  return setmetatable({ creds = opts.creds, limiter = opts.limiter, realm = opts.realm or 'moonstack',
    sessions = opts.sessions }, Gate)
end

local SAFE = { GET = true, HEAD = true }

local function csrf_ok(req)
  return SAFE[req.method] or req:header(M.CSRF_HEADER:lower()) == '1'
end

local function refuse(status, why, headers)
  headers = headers or {}
  headers['content-type'] = 'application/json'
  return false, status, headers, why
end

--- The session id of `req` when it carries a live one, else nil.
function Gate:session_of(req)
  local id = session.cookie(req:header('cookie'))
  if id and self.sessions:valid(id) then
    return id
  end
  return nil
end

--- Judge `req` (in a task: Basic passwords are checked off the loop). Returns true, how
--- ('session' | 'credentials'), or false, status (401, 403, 429), headers, reason.
function Gate:judge(req)
  if self:session_of(req) then
    if not csrf_ok(req) then
      return refuse(403, 'missing ' .. M.CSRF_HEADER .. ' header')
    end
    return true, 'session'
  end
  local authz = req:header('authorization')
  local basic = type(authz) == 'string' and authz:match('^[Bb]asic%s') ~= nil
  local ok, status, headers, why = auth.judge(req, self.creds, self.limiter, { realm = self.realm })
  if not ok then
    return refuse(status, why, headers)
  end
  if basic and not csrf_ok(req) then
    return refuse(403, 'missing ' .. M.CSRF_HEADER .. ' header')
  end
  return true, 'credentials'
end

-- Whether the Origin of `req` (when given) names the host it was sent to.
local function same_origin(req)
  local origin = req:header('origin')
  if origin == nil or origin == '' then
    return true
  end
  local host = req:header('host')
  local ohost = origin:match('^https?://([^/]+)$')
  return host ~= nil and ohost ~= nil and ohost:lower() == host:lower()
end

--- Judge a websocket upgrade synchronously: a live session (from the listener's own origin),
--- or a token (Bearer / X-Admin-Token). Returns true or false, reason.
function Gate:judge_upgrade(req)
  if self:session_of(req) then
    if not same_origin(req) then
      return false, 'session from another origin'
    end
    return true
  end
  if self.creds.insecure then
    return true
  end
  local authz = req:header('authorization')
  local bearer = type(authz) == 'string' and authz:match('^[Bb]earer%s+(%S+)%s*$')
  if not (bearer or req:header('x-admin-token')) then
    return false, 'no session and no token'
  end
  if auth.judge(req, self.creds, nil, { realm = self.realm }) then
    return true
  end
  return false, 'bad token'
end

return M
