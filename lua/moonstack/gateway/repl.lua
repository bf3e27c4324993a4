-- SPDX-License-Identifier: Apache-2.0
-- What the gateway's control socket offers in the REPL besides the daemon's own globals
-- (`gateway`, status(), reload.config(), reload.code(), help()): the `gw` table —
-- gw.routes() (the snapshot published last: instances, routes, version), gw.instances() (the
-- registered instances), gw.conns([app]) (live connection counts per app, from the data
-- path's counters), gw.connections([app [, n]]) (the active connections themselves),
-- gw.reload_policy() (in the background: the log and gw.policy() tell how it went),
-- gw.policy(), gw.metrics(). Nothing here returns a private key.
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('gateway')

local M = {}

-- The data path's live connection counts per app (only `app` when given): a list of
-- { app_id, active, total?, bytes_in?, bytes_out? } (the totals from its counters), busiest
-- first. Connections without an app (the debug localhost backend) count under app_id ''.
local function conn_counts(gw, app)
  local by = {}
  for _, c in ipairs(gw.proxy and gw.proxy:conns(1000000) or {}) do
    local id = c.app_id or ''
    by[id] = (by[id] or 0) + 1
  end
  local c = gw.proxy and gw.proxy:counters()
  local totals = c and c.apps or {}
  for id in pairs(totals) do
    by[id] = by[id] or 0
  end
  local out = {}
  for id, n in pairs(by) do
    if app == nil or id == app then
      local t = totals[id] or {}
      out[#out + 1] = { app_id = id, active = n, total = t.total, bytes_in = t.bytes_in,
        bytes_out = t.bytes_out }
    end
  end
  table.sort(out, function(x, y)
    if x.active ~= y.active then
      return x.active > y.active
    end
    return x.app_id < y.app_id
  end)
  return out
end

-- The active connections (of `app` when given), at most n (100).
local function connections(gw, app, n)
  n = n or 100
  local list = gw.proxy and gw.proxy:conns(app and 1000000 or n) or {}
  if not app then
    return list
  end
  local out = {}
  for _, c in ipairs(list) do
    if c.app_id == app and #out < n then
      out[#out + 1] = c
    end
  end
  return out
end

--- The REPL globals and their help lines for a running gateway `gw` (moonstack.gateway) and
--- its daemon `d` (Admin Exit stops it).
function M.env(gw, d)
  if gw and d then
    gw.on_exit = function() d:stop(0) end
  end
  local t = {
    routes = function()
      local s = gw.proxy and gw.proxy.last
      if not s then
        return nil, 'no snapshot published yet'
      end
      return { version = s.version, instances = s.instances, routes = s.routes, apps = s.apps,
        special = s.special, insecure_localhost = s.insecure_localhost,
        base_domains = #s.base_domains }
    end,
    instances = function() return gw.state:list() end,
    conns = function(app)
      if type(app) == 'number' then -- gw.conns(n), as before: the connections themselves
        return connections(gw, nil, app)
      end
      return conn_counts(gw, app)
    end,
    connections = function(app, n) return connections(gw, app, n) end,
    reload_policy = function()
      if not gw.routing then
        return nil, 'no routing_policy is configured'
      end
      task.spawn_named('gateway:reload-policy', function()
        local s, err = gw.routing:reload()
        if s then
          log.info('routing policy reloaded from the REPL', { version = s.version, sha256 = s.sha256 })
          gw.proxy:publish()
        else
          log.error('routing policy reload from the REPL failed; the previous policy stays',
            { error = err })
        end
      end)
      return 'reloading in the background: see gw.policy() and the log'
    end,
    policy = function() return gw.routing and gw.routing:status() or nil end,
    metrics = function() return gw.metrics:render() end,
    wg = function() return gw.hub and gw.hub:status() or nil end,
    certs = function() return gw.certbot and gw.certbot:status() or nil end,
    renew_certs = function()
      if not gw.certbot then
        return nil, 'no certbot is configured'
      end
      task.spawn_named('gateway:renew-certs', function() gw.certbot:check(true) end)
      return 'renewing in the background: see gw.certs() and the log'
    end,
  }
  local doc = {
    ['gw.routes'] = 'gw.routes(): the route snapshot published last (instances, routes, version)',
    ['gw.instances'] = 'gw.instances(): the registered instances',
    ['gw.conns'] = 'gw.conns([app]): live connection counts per app (active, total, bytes), '
      .. 'of one app id when given; gw.conns(n): the first n connections',
    ['gw.connections'] = 'gw.connections([app [, n]]): the active proxied connections (of one '
      .. 'app), at most n (100)',
    ['gw.reload_policy'] = 'gw.reload_policy(): reload the routing policy file (in the background)',
    ['gw.policy'] = 'gw.policy(): the routing policy (name, version, reloads, decisions)',
    ['gw.metrics'] = 'gw.metrics(): the /metrics text',
    ['gw.wg'] = 'gw.wg(): the WireGuard hub (public key, interface, syncs)',
    ['gw.certs'] = 'gw.certs(): the certbot (per domain serial, not_after, seconds left; '
      .. 'account, orders, renewals)',
    ['gw.renew_certs'] = 'gw.renew_certs(): renew every certbot domain now (in the background)',
  }
  return { gw = t }, doc
end

return M
