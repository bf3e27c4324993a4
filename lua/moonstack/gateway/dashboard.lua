-- SPDX-License-Identifier: Apache-2.0
-- The gateway's part of the dashboard (moonstack.ui), on its admin listener: snapshot {
-- instances = { { id, app_id, ip, last_handshake, handshake_age (seconds; absent before the
-- first), conns (active) } }, routes = { { key, allow, to_port?, pp? } } (the snapshot the data
-- path runs), conns = { total (active), accepted, by_app = { [app_id] = active } }, wg = {
-- interface, listen_port }, proxy = { port, base_domain }, policies = { { name, version, sha256,
-- path, error? } } (the routing policy), cluster = { etcd = 'up'|'down', since, node_id, nodes,
-- endpoint, error? } (null without etcd) }; `gateway.cluster` { cluster } when etcd goes down
-- or comes back; events `gateway.instances` (after every change of
-- the registered instances, handshakes included: { instances }), `gateway.conns` (the counts,
-- checked every second, when they changed) and `policy.reload` (of the routing policy);
-- action `policy_reload`. Same credentials as the Admin API, plus `admin.login_token_file`.
local uv = require('luv')
local events = require('moonstack.core.events')
local feed_mod = require('moonstack.ui.feed')
local mount = require('moonstack.ui.mount')
local task = require('moonstack.core.task')
local wire = require('moonstack.ui.wire')

local M = {}

--- The policy host's name of the routing policy (its policy.reload events).
M.POLICY_HOST = 'gateway-route'
--- How often the connection counts are checked (ms).
M.CONNS_MS = 1000

local function counters(gw)
  return gw.proxy and gw.proxy:counters() or {}
end

--- The registered instances as the dashboard shows them.
function M.instances(gw)
  local c = counters(gw).instances or {}
  local now = os.time()
  local out = wire.array()
  for _, inst in ipairs(gw.state:list()) do
    local hs = inst.last_handshake or 0
    local ic = c[inst.instance_id]
    out[#out + 1] = { id = inst.instance_id, app_id = inst.app_id, ip = inst.ip,
      last_handshake = hs, handshake_age = hs > 0 and math.max(0, now - hs) or nil,
      conns = ic and ic.active or 0 }
  end
  return out
end

--- The connection counts: { total (active), accepted, by_app }.
function M.conns(gw)
  local c = counters(gw)
  local by_app = {}
  for app, a in pairs(c.apps or {}) do
    by_app[app] = a.active or 0
  end
  return { total = c.active or 0, accepted = c.total or 0, by_app = by_app }
end

local function routes(gw)
  local s = gw.proxy and gw.proxy.last
  local out = wire.array()
  for key, r in pairs(s and s.routes or {}) do
    out[#out + 1] = { key = key, allow = r.allow == true, to_port = r.to_port, pp = r.pp }
  end
  table.sort(out, function(a, b) return a.key < b.key end)
  return out
end

local function policies(gw, last_error)
  if not gw.routing then
    return wire.array()
  end
  local st = gw.routing:status()
  return wire.array({ { name = st.name, version = st.version, sha256 = st.sha256, path = st.path,
    host = M.POLICY_HOST, error = last_error.text } })
end

local function snapshot(gw, last_error)
  local wg = gw.cfg.wg
  return { instances = M.instances(gw), routes = routes(gw), conns = M.conns(gw),
    wg = wg and { interface = wg.interface, listen_port = wg.listen_port } or wire.null,
    proxy = { port = gw:proxy_port(), base_domain = gw.cfg.proxy.base_domain },
    policies = policies(gw, last_error),
    cluster = gw.cluster and gw.cluster:status() or wire.null }
end

-- The key of the counts, to publish only changes.
local function conns_key(c)
  local apps = {}
  for app, n in pairs(c.by_app) do
    apps[#apps + 1] = app .. '=' .. n
  end
  table.sort(apps)
  return c.total .. '/' .. c.accepted .. '/' .. table.concat(apps, ',')
end

--- Mount the gateway part on the admin listener `server` of `gw` (before its catch-all route
--- and before listen). Returns the dashboard (close() when stopping).
function M.mount(gw, server)
  local last_error, closed = {}, false
  local sub = events.subscribe('policy.reload', function(ev)
    if ev.data.host == M.POLICY_HOST then
      last_error.text = not ev.data.ok and tostring(ev.data.error) or nil
    end
  end)
  gw.state:on_change(function()
    if not closed then
      events.publish('gateway.instances', { instances = M.instances(gw) })
    end
  end)
  local last_conns = ''
  local timer = uv.new_timer()
  timer:start(M.CONNS_MS, M.CONNS_MS, function()
    local c = M.conns(gw)
    local key = conns_key(c)
    if key ~= last_conns then
      last_conns = key
      events.publish('gateway.conns', c)
    end
  end)
  local feed = feed_mod.new({ part = 'gateway',
    snapshot = function() return snapshot(gw, last_error) end,
    filter = function(ev)
      return ev.topic:sub(1, 8) == 'gateway.' or (ev.topic == 'policy.reload'
        and ev.data.host == M.POLICY_HOST)
    end,
    map = function(ev)
      if ev.topic == 'gateway.instances' then -- the bus's copy lost the array mark
        local list = {}
        for i, inst in ipairs(ev.data.instances or {}) do
          list[i] = inst
        end
        ev.data = { instances = wire.array(list) }
      end
      return ev
    end })
  local cfg = gw.cfg.admin
  local dash = mount.mount(server, { part = 'gateway', feed = feed, creds = gw.admin_creds,
    limiter = gw.login_limit, realm = 'dstack-gateway admin',
    login_token_file = cfg.login_token_file,
    actions = {
      policy_reload = function()
        if not gw.routing then
          return 400, { ok = false, error = 'no routing_policy is configured' }
        end
        local st, err = gw.routing:reload()
        if not st then
          return 400, { ok = false, error = tostring(err) }
        end
        task.spawn_named('gateway:publish', function() gw.proxy:publish() end)
        return 200, { ok = true, policies = policies(gw, last_error) }
      end,
    } })
  local close = dash.close
  dash.close = function()
    closed = true
    sub:close()
    if not timer:is_closing() then
      timer:close()
    end
    close()
  end
  return dash
end

return M
