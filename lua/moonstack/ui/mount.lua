-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's routes on a daemon's admin listener (moonstack.http.server; mount before
-- the listener's catch-all route and before listen()):
--   GET  /dashboard/                 the UI (ui/dashboard/, embedded; public: it holds no data)
--   GET  /dashboard/login?once=T     the one-time login token (login_token_file) -> a session
--                                    cookie and 303 to /dashboard/; 403 otherwise
--   POST /dashboard/logout           ends the session
--   GET  /dashboard/info             { part, parts, csrf_header } (401 when not logged in)
--   GET  /dashboard/feed?since=SEQ   moonstack.ui.feed's answer
--   WS   /dashboard/ws               moonstack.ui.hub (the upgrade needs a session or a token)
--   POST /dashboard/api/<op>         this part's action `op` (JSON body)
--   POST /dashboard/api/<part>/<op>  on the hub: the action of `part` (its own, or forwarded to
--                                    that daemon's /dashboard/api/<op>)
-- Everything but the UI and the login goes through moonstack.ui.gate (admin credentials or a
-- session; X-Moonstack-CSRF: 1 on a POST with the cookie or Basic). Nothing here logs a
-- token, a cookie or the query string of /dashboard/login.
local log = require('moonstack.core.log').new('dashboard')
local gate_mod = require('moonstack.ui.gate')
local hub_mod = require('moonstack.ui.hub')
local login = require('moonstack.ui.login')
local session = require('moonstack.ui.session')
local wire = require('moonstack.ui.wire')

local M = {}

--- The static UI's folder under ui/.
M.UI_DIR = 'dashboard'

local JSON = { ['content-type'] = 'application/json', ['cache-control'] = 'no-store' }

-- A JSON answer (status, text, headers) of `v`.
local function answer(status, v, extra)
  local h = {}
  for k, x in pairs(JSON) do
    h[k] = x
  end
  for k, x in pairs(extra or {}) do
    h[k] = x
  end
  return status, wire.encode(v), h
end
M.answer = answer

local UI_HEADERS = {
  ['content-security-policy'] = "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
    .. "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  ['x-frame-options'] = 'DENY',
  ['referrer-policy'] = 'no-referrer',
}

--- Mount the dashboard on `server`. opts = {
---   part = 'vmm'|'kms'|'gateway', feed (moonstack.ui.feed),
---   creds (moonstack.http.auth credentials, or nil: sessions only), limiter?, realm?,
---   login_token_file?, actions = { [op] = fn(body_table, req) -> status, value }?,
---   remotes = { { part, feed = fn(since), action = fn(op, body_text) } }? (the hub),
---   part_action = fn(part, op, req, res) -> status, body, headers? (hub: actions of a part
---   that is neither a remote nor one of `actions`, e.g. 'vmm' ops mapped to its pRPC methods;
---   answered as a route handler answers),
---   messages = { [type] = fn(client, msg) }? (websocket messages), poll_ms? }.
--- Returns the dashboard { gate, sessions, hub, guard = fn(handler) -> handler (the gate in
--- front of any other route of the listener), close() }.
function M.mount(server, opts)
  assert(type(opts) == 'table' and opts.part and opts.feed, 'dashboard.mount: part and feed')
  local sessions = session.new()
  local gate = gate_mod.new({ creds = opts.creds or { tokens = {} }, limiter = opts.limiter,
    realm = opts.realm or ('moonstack ' .. opts.part), sessions = sessions })
  local hub = hub_mod.new({ part = opts.part, feed = opts.feed, remotes = opts.remotes,
    messages = opts.messages, poll_ms = opts.poll_ms })
  local actions = opts.actions or {}
  local parts = { opts.part }
  for _, r in ipairs(opts.remotes or {}) do
    parts[#parts + 1] = r.part
  end

  -- handler(req, res) behind the gate
  local function guard(handler)
    return function(req, res)
      local ok, status, headers, why = gate:judge(req)
      if not ok then
        log.warn('dashboard request refused', { path = req.path, peer = req.peer, status = status,
          reason = why })
        return answer(status, { error = status == 429 and why or (status == 403 and why)
          or 'unauthorized' }, headers)
      end
      return handler(req, res)
    end
  end

  server:get('/dashboard/login', function(req)
    local ok, err, code = login.consume(opts.login_token_file, req.args.once)
    if not ok then
      log.warn('dashboard login refused', { peer = req.peer, code = code })
      return 403, 'login refused: ' .. tostring(err):gsub('^%u+: ', '') .. '\n',
        { ['content-type'] = 'text/plain; charset=utf-8', ['cache-control'] = 'no-store',
          ['referrer-policy'] = 'no-referrer' }
    end
    log.info('dashboard login: session opened', { peer = req.peer })
    return 303, '', { location = '/dashboard/', ['set-cookie'] = sessions:set_cookie(sessions:create()),
      ['cache-control'] = 'no-store', ['referrer-policy'] = 'no-referrer' }
  end)
  server:post('/dashboard/logout', guard(function(req)
    sessions:drop(session.cookie(req:header('cookie')))
    return answer(200, { ok = true }, { ['set-cookie'] = sessions:set_cookie(nil) })
  end))
  server:get('/dashboard/info', guard(function()
    return answer(200, { part = opts.part, parts = wire.array(parts), csrf_header = gate_mod.CSRF_HEADER })
  end))
  server:get('/dashboard/feed', guard(function(req)
    return answer(200, opts.feed:read(req.args.since))
  end))

  local function run_action(fn, req)
    local body, err
    if req.body == '' then
      body = {}
    else
      body, err = wire.decode(req.body)
    end
    if type(body) ~= 'table' or wire.is_array(body) then
      return answer(400, { error = 'the body must be a JSON object' .. (err and ': ' .. err or '') })
    end
    local status, value = fn(body, req)
    return answer(status, value)
  end
  server:post('/dashboard/api/:op', guard(function(req)
    local fn = actions[req.params.op]
    if not fn then
      return answer(404, { error = 'no such action' })
    end
    return run_action(fn, req)
  end))
  if opts.remotes or opts.part_action then
    server:post('/dashboard/api/:part/:op', guard(function(req, res)
      local p, op = req.params.part, req.params.op
      if p == opts.part and actions[op] then
        return run_action(actions[op], req)
      end
      local r = hub:remote(p)
      if r then
        local status, obj, code = r.action(op, req.body)
        if not status then
          return answer(502, { error = ('%s unreachable: %s'):format(p, tostring(obj)), code = code })
        end
        return answer(status, obj)
      end
      if opts.part_action then
        return opts.part_action(p, op, req, res)
      end
      return answer(404, { error = 'no such part' })
    end))
  end

  server:websocket('/dashboard/ws', hub:handlers(function(req)
    local ok, why = gate:judge_upgrade(req)
    if not ok then
      log.warn('dashboard websocket refused', { peer = req.peer, reason = why })
    end
    return ok
  end))
  server:static('/dashboard', M.UI_DIR, { headers = UI_HEADERS })
  hub:start()

  return { gate = gate, sessions = sessions, hub = hub, guard = guard,
    close = function() hub:close() end }
end

return M
