-- SPDX-License-Identifier: Apache-2.0
-- The gateway's Prometheus metrics (GET /metrics on the admin listener): registered
-- instances, registrations and their refusals by reason (control plane), connections active and
-- total per app, refusals by reason and bytes (the data path's counters), the snapshot version,
-- routing-policy reloads and failures.
local sorted_keys = require('moonstack.core.tables').sorted_keys
local M = {}

local Metrics = {}
Metrics.__index = Metrics

--- Fresh counters over gateway `gw` ({ state, proxy?, routing? }).
function M.new(gw)
  return setmetatable({ gw = gw, registrations = 0, register_refused = {} }, Metrics)
end

--- Count a registration.
function Metrics:registered()
  self.registrations = self.registrations + 1
end

--- Count a refused registration by `reason` (a short lowercase word).
function Metrics:refused(reason)
  self.register_refused[reason] = (self.register_refused[reason] or 0) + 1
end

-- A label value, escaped as the text format wants.
local function label(v)
  return (tostring(v):gsub('[\\"\n]', { ['\\'] = '\\\\', ['"'] = '\\"', ['\n'] = '\\n' }))
end

local function sorted(t)
  return sorted_keys(t or {})
end

--- The Prometheus text exposition.
function Metrics:render()
  local out = {}
  local function metric(name, kind, help)
    out[#out + 1] = ('# HELP %s %s'):format(name, help)
    out[#out + 1] = ('# TYPE %s %s'):format(name, kind)
  end
  local function line(name, labels, v)
    out[#out + 1] = ('%s%s %s'):format(name, labels or '', tostring(math.floor(v or 0)))
  end
  local gw = self.gw
  metric('moonstack_gateway_registered_instances', 'gauge', 'Instances registered here.')
  line('moonstack_gateway_registered_instances', nil, gw.state:count())
  metric('moonstack_gateway_registrations_total', 'counter', 'RegisterCvm calls that succeeded.')
  line('moonstack_gateway_registrations_total', nil, self.registrations)
  metric('moonstack_gateway_registration_refusals_total', 'counter', 'RegisterCvm refusals by reason.')
  for _, r in ipairs(sorted(self.register_refused)) do
    line('moonstack_gateway_registration_refusals_total', ('{reason="%s"}'):format(label(r)),
      self.register_refused[r])
  end
  local c = gw.proxy and gw.proxy:counters() or {}
  metric('moonstack_gateway_connections_active', 'gauge', 'Proxied connections open now.')
  line('moonstack_gateway_connections_active', nil, c.active)
  metric('moonstack_gateway_connections_total', 'counter', 'Proxied connections accepted.')
  line('moonstack_gateway_connections_total', nil, c.total)
  metric('moonstack_gateway_app_connections_active', 'gauge', 'Open connections per app.')
  for _, app in ipairs(sorted(c.apps)) do
    line('moonstack_gateway_app_connections_active', ('{app_id="%s"}'):format(label(app)), c.apps[app].active)
  end
  metric('moonstack_gateway_app_connections_total', 'counter', 'Connections per app.')
  for _, app in ipairs(sorted(c.apps)) do
    line('moonstack_gateway_app_connections_total', ('{app_id="%s"}'):format(label(app)), c.apps[app].total)
  end
  metric('moonstack_gateway_refused_total', 'counter', 'Connections refused by the data path, by reason.')
  for _, r in ipairs(sorted(c.refused)) do
    line('moonstack_gateway_refused_total', ('{reason="%s"}'):format(label(r)), c.refused[r])
  end
  metric('moonstack_gateway_bytes_total', 'counter', 'Bytes relayed (in: from clients, out: to them).')
  line('moonstack_gateway_bytes_total', '{direction="in"}', c.bytes_in)
  line('moonstack_gateway_bytes_total', '{direction="out"}', c.bytes_out)
  metric('moonstack_gateway_snapshot_version', 'gauge', 'Version of the route snapshot published last.')
  line('moonstack_gateway_snapshot_version', nil, gw.proxy and gw.proxy.version or 0)
  local r = gw.routing and gw.routing:status() or {}
  metric('moonstack_gateway_policy_reloads_total', 'counter', 'Routing policy reloads that took effect.')
  line('moonstack_gateway_policy_reloads_total', nil, r.reloads)
  metric('moonstack_gateway_policy_reload_failures_total', 'counter', 'Routing policy reloads refused.')
  line('moonstack_gateway_policy_reload_failures_total', nil, r.failures)
  return table.concat(out, '\n') .. '\n'
end

return M
