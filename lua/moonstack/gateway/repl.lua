-- SPDX-License-Identifier: Apache-2.0
-- What the gateway's control socket offers in the REPL besides the daemon's own globals
-- (`gateway`, status(), reload.config(), reload.code(), help()): the `gw` table —
-- gw.routes() (the snapshot published last: instances, routes, version), gw.instances() (the
-- registered instances), gw.conns([n]) (the data path's active connections),
-- gw.reload_policy() (in the background: the log and gw.policy() tell how it went),
-- gw.policy(), gw.metrics(). Nothing here returns a private key.
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('gateway')

local M = {}

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
    conns = function(n) return gw.proxy and gw.proxy:conns(n or 100) or {} end,
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
  }
  local doc = {
    ['gw.routes'] = 'gw.routes(): the route snapshot published last (instances, routes, version)',
    ['gw.instances'] = 'gw.instances(): the registered instances',
    ['gw.conns'] = 'gw.conns([n]): the active proxied connections (at most n, default 100)',
    ['gw.reload_policy'] = 'gw.reload_policy(): reload the routing policy file (in the background)',
    ['gw.policy'] = 'gw.policy(): the routing policy (name, version, reloads, decisions)',
    ['gw.metrics'] = 'gw.metrics(): the /metrics text',
    ['gw.wg'] = 'gw.wg(): the WireGuard hub (public key, interface, syncs)',
  }
  return { gw = t }, doc
end

return M
