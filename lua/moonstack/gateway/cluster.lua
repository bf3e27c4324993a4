-- SPDX-License-Identifier: Apache-2.0
-- The gateway's cluster state on etcd (issue M12 item 3; kms-vmm-gateway.md §6.7), with
-- `cluster = { etcd = { endpoints, prefix, timeout_ms, lease_ttl, watch_interval_ms },
-- node_id }` in gateway.lua. Without it nothing here runs and one node keeps its local state.
--
-- Keys under <prefix>/gateway/:
--   nodes/<id>      this node's info: { id, uuid (hex), url, wg_public_key, wg_ip, wg_endpoint,
--                   client_ip_range, status (up|down), updated } — kept (not leased): RegisterCvm
--                   answers list every node as a WireGuard server
--   alive/<id>      { uuid, since } under the node's lease: the node is running
--   instances/<iid> { instance_id, app_id, ip, public_key, reg_time, compose_hash, port_policy,
--                   admin_port_policy, node_id } — written before RegisterCvm answers
--   conns/<id>      { active, instances = { [iid] = n } } under the node's lease, every 5 s
--   locks/<name>, and the certificate store's keys (moonstack.gateway.cluster_store)
-- At start: the other nodes' client ranges must not overlap ours and a live node must not
-- hold our id (refused); etcd's instances replace the local ones (a `kill -9` loses nothing
-- acknowledged). Then the instances/ and nodes/ prefixes are watched (moonstack.etcd.watch)
-- and applied to the state, so routes and WireGuard peers include every node's instances.
-- etcd down: the gateway keeps routing what it knows and reports `etcd = 'down', since`;
-- RegisterCvm is refused (nothing is acknowledged unwritten); writes that failed (node info,
-- recycled instances) are retried, and the state resynced, when etcd is back.
local cjson = require('cjson.safe')
local codec = require('moonstack.core.codec')
local cidr = require('moonstack.gateway.cidr')
local etcd = require('moonstack.etcd')
local lease = require('moonstack.etcd.lease')
local watch = require('moonstack.etcd.watch')
local task = require('moonstack.core.task')
local uv = require('luv')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

--- How often the connection counts are written (ms).
M.CONNS_MS = 5000

local Cluster = {}
Cluster.__index = Cluster

local function hexid(s, max)
  return type(s) == 'string' and #s >= 1 and #s <= (max or 128) and s:match('^%x+$') ~= nil
end

--- A checked instance record from its JSON text and key suffix `id`, or nil, msg.
function M.decode_instance(text, id)
  local r = type(text) == 'string' and #text <= 256 * 1024 and cjson.decode(text)
  if type(r) ~= 'table' then
    return nil, 'not a JSON object'
  end
  if not hexid(r.instance_id) or r.instance_id ~= id or not hexid(r.app_id) then
    return nil, 'bad instance_id or app_id'
  end
  if type(r.ip) ~= 'string' or not cidr.parse_ip(r.ip) then
    return nil, 'bad ip'
  end
  local key = type(r.public_key) == 'string' and codec.unbase64(r.public_key)
  if not key or #key ~= 32 then
    return nil, 'bad public_key'
  end
  if type(r.reg_time) ~= 'number' or (r.node_id ~= nil and type(r.node_id) ~= 'number') then
    return nil, 'bad reg_time or node_id'
  end
  if r.compose_hash ~= nil and not (r.compose_hash == '' or hexid(r.compose_hash)) then
    return nil, 'bad compose_hash'
  end
  local api = require('moonstack.gateway.api')
  local out = { instance_id = r.instance_id, app_id = r.app_id, ip = r.ip,
    public_key = r.public_key, reg_time = r.reg_time, compose_hash = r.compose_hash,
    node_id = r.node_id }
  for _, k in ipairs({ 'port_policy', 'admin_port_policy' }) do
    if r[k] ~= nil then
      local p, err = api.port_policy(type(r[k]) == 'table' and r[k] or { ports = 1 })
      if not p then
        return nil, k .. ': ' .. tostring(err)
      end
      out[k] = p
    end
  end
  return out
end

--- A checked node record from its JSON text, or nil, msg.
function M.decode_node(text)
  local r = type(text) == 'string' and #text <= 64 * 1024 and cjson.decode(text)
  if type(r) ~= 'table' or type(r.id) ~= 'number' or r.id % 1 ~= 0 then
    return nil, 'bad node record'
  end
  for _, k in ipairs({ 'uuid', 'url', 'wg_public_key', 'wg_ip', 'wg_endpoint', 'client_ip_range',
    'status' }) do
    if r[k] ~= nil and (type(r[k]) ~= 'string' or #r[k] > 512) then
      return nil, 'bad node field ' .. k
    end
  end
  return r
end

--- The cluster of gateway `gw` (cfg.cluster set), not started; or nil, msg, code (the etcd
--- TLS files).
function M.new(gw)
  local c = gw.cfg.cluster
  local client, err, code = etcd.from_config(c.etcd)
  if not client then
    return nil, err, code
  end
  return setmetatable({ gw = gw, client = client, cfg = c, node_id = c.node_id,
    base = c.etcd.prefix:gsub('/$', '') .. '/gateway/', nodes = {}, etcd_state = 'unknown',
    since = os.time(), pending_deletes = {}, log = gw.log }, Cluster)
end

function Cluster:key(...)
  return self.base .. table.concat({ ... }, '/')
end

-- Mark etcd up or down (logged once per change).
function Cluster:_mark(up, err)
  local s = up and 'up' or 'down'
  if self.etcd_state ~= s then
    self.etcd_state, self.since = s, os.time()
    if up then
      self.log.info('etcd reachable', { endpoint = self.client:status().endpoint })
    else
      self.log.warn('etcd unreachable: routing what is known, registrations refused',
        { error = err })
    end
  end
  if not up then
    self.last_error = err
  end
  if self.etcd_state ~= self.published then -- the dashboard's gateway part
    self.published = self.etcd_state
    require('moonstack.core.events').publish('gateway.cluster', { cluster = self:status() })
  end
end

-- Check the other nodes' records: ranges disjoint, our id not held by a live node.
-- True, or nil, msg, code.
function Cluster:_check_nodes(list)
  local mine = cidr.parse(self.gw.cfg.wg.client_ip_range)
  for _, n in pairs(list) do
    if n.id ~= self.node_id and n.client_ip_range then
      local theirs = cidr.parse(n.client_ip_range)
      if theirs and (cidr.contains(mine, theirs) or cidr.contains(theirs, mine)) then
        return nil, ('EINVAL: config.wg.client_ip_range %s overlaps gateway node %d\'s %s '
          .. '(seen in etcd): give each gateway node a disjoint client_ip_range'):format(
          self.gw.cfg.wg.client_ip_range, n.id, n.client_ip_range), 'EINVAL'
      end
    end
  end
  return true
end

-- Read nodes/ into self.nodes. True or nil, msg, code.
function Cluster:_load_nodes()
  local r, err, code = self.client:range(self:key('nodes', ''), { prefix = true })
  if not r then
    return nil, err, code
  end
  local nodes = {}
  for _, kv in ipairs(r.kvs) do
    local n = M.decode_node(kv.value)
    if n then
      nodes[n.id] = n
    end
  end
  self.nodes = nodes
  return true
end

-- Replace the state's instances with etcd's. True or nil, msg, code.
function Cluster:resync()
  local r, err, code = self.client:range(self:key('instances', ''), { prefix = true })
  if not r then
    return nil, err, code
  end
  local ids, recs = {}, {}
  for _, kv in ipairs(r.kvs) do
    local id = kv.key:sub(#self:key('instances', '') + 1)
    local rec, why = M.decode_instance(kv.value, id)
    if rec then
      ids[id] = true
      recs[#recs + 1] = { rec, kv.key }
    else
      self.log.warn('ignoring a bad instance record in etcd', { key = kv.key, error = why })
    end
  end
  self.gw.state:retain(ids) -- first: a gone instance's address may be another's now
  for _, x in ipairs(recs) do
    self:_apply(x[1], x[2])
  end
  return true
end

--- At start, before the listeners (in a task): the node checks and the instances from etcd.
--- True; or nil, msg, code when the start must be refused (an overlap, our id in use).
--- etcd unreachable is not a refusal: the local state serves and the checks run when it is back.
function Cluster:open()
  local ok, err = self:_load_nodes()
  if not ok then
    self:_mark(false, err)
    return true
  end
  self:_mark(true)
  local code
  ok, err, code = self:_check_nodes(self.nodes)
  if not ok then
    return nil, err, code
  end
  local me = self.nodes[self.node_id]
  if me and me.uuid and me.uuid ~= codec.hex(self.gw.uuid) then
    local alive = self.client:get(self:key('alive', tostring(self.node_id)))
    local a = alive and cjson.decode(alive)
    if type(a) == 'table' and a.uuid ~= codec.hex(self.gw.uuid) then
      return nil, ('EBUSY: cluster.node_id %d is held by a running gateway (uuid %s)'):format(
        self.node_id, tostring(a.uuid)), 'EBUSY'
    end
  end
  self.log.debug('loading the instances from etcd', { prefix = self:key('instances', '') })
  ok, err = self:resync()
  self:_mark(ok ~= nil, err)
  self.synced = ok ~= nil
  self.log.debug('cluster state loaded', { instances = self.gw.state:count(), ok = self.synced })
  return true
end

--- This node's record.
function Cluster:node_record()
  local gw, wg = self.gw, self.gw.cfg.wg
  return { id = self.node_id, uuid = codec.hex(gw.uuid or ''), url = gw.cfg.node.url or '',
    wg_public_key = gw.hub and gw.hub:public_key() or '', wg_ip = wg.ip,
    wg_endpoint = wg.endpoint, client_ip_range = wg.client_ip_range,
    status = gw.node_status or 'up', updated = os.time() }
end

--- Write this node's record (after SetNodeStatus too). True or nil, msg, code (retried later).
function Cluster:put_node()
  local rec = self:node_record()
  local ok, err, code = self.client:put(self:key('nodes', tostring(self.node_id)),
    cjson.encode(rec))
  self.node_dirty = not ok
  if ok then
    self.nodes[self.node_id] = rec
  end
  return ok, err, code
end

--- Write instance `id`'s record (RegisterCvm answers only after this). True or nil, msg, code.
function Cluster:put_instance(id)
  local rec = self.gw.state:record(id)
  if not rec then
    return nil, 'ENOENT: no instance ' .. tostring(id), 'ENOENT'
  end
  local ok, err = self.client:put(self:key('instances', id), cjson.encode(rec))
  self:_mark(ok ~= nil, err)
  if not ok then
    return nil, 'EUNAVAILABLE: the cluster state (etcd) did not take the registration: '
      .. tostring(err), 'EUNAVAILABLE'
  end
  return true
end

--- Delete instance `id`'s record (recycled here); retried while etcd is away.
function Cluster:delete_instance(id)
  local ok, err = self.client:delete(self:key('instances', id))
  if not ok then
    self.pending_deletes[id] = true
    self:_mark(false, err)
  end
  return ok
end

-- Whether `rec` would clash with another instance known here (its address or its WireGuard
-- key): such a record is not applied (two peers with one AllowedIPs would steal traffic).
function Cluster:_clash(rec)
  for _, inst in ipairs(self.gw.state:list()) do
    if inst.instance_id ~= rec.instance_id and (inst.ip == rec.ip
        or inst.public_key == rec.public_key) then
      return inst.instance_id
    end
  end
  return nil
end

-- Apply one record read from etcd (checked, not clashing). Returns whether it was applied.
function Cluster:_apply(rec, key)
  local other = self:_clash(rec)
  if other then
    self.log.error('ignoring an instance record in etcd that clashes with another instance',
      { key = key, ip = rec.ip, other = other })
    return false
  end
  self.gw.state:apply(rec)
  return true
end

-- Apply watched instance events.
function Cluster:_on_instances(events)
  local plen = #self:key('instances', '')
  for _, ev in ipairs(events) do
    local id = ev.key:sub(plen + 1)
    if ev.type == 'delete' then
      if self.gw.state:get(id) then
        self.gw.state:remove(id)
      end
    else
      local rec, why = M.decode_instance(ev.value, id)
      if rec then
        self:_apply(rec, ev.key)
      else
        self.log.warn('ignoring a bad instance record in etcd', { key = ev.key, error = why })
      end
    end
  end
end

function Cluster:_on_nodes(events)
  local plen = #self:key('nodes', '')
  for _, ev in ipairs(events) do
    local id = tonumber(ev.key:sub(plen + 1))
    if ev.type == 'delete' then
      if id then
        self.nodes[id] = nil
      end
    else
      local n = M.decode_node(ev.value)
      if n and n.id == id then
        if n.id ~= self.node_id and not self:_check_nodes({ n }) then
          self.log.error('another gateway node announces an overlapping client_ip_range',
            { node = n.id, range = n.client_ip_range })
        end
        self.nodes[n.id] = n
      end
    end
  end
end

-- Once etcd answers again: the writes that failed, a full resync.
function Cluster:_recover()
  if self.node_dirty then
    self:put_node()
  end
  for id in pairs(self.pending_deletes) do
    if self.client:delete(self:key('instances', id)) then
      self.pending_deletes[id] = nil
    end
  end
  if self:_load_nodes() then
    local ok, err = self:_check_nodes(self.nodes)
    if not ok then
      self.log.error(err)
    end
  end
  self.synced = self:resync() ~= nil
end

--- Start the background work (in a task, after the listeners): the node record, the lease
--- with alive/<id> and conns/<id>, the watches, the connection counts.
function Cluster:run()
  local e = self.cfg.etcd
  local interval = e.watch_interval_ms
  self:put_node()
  local alive_key = self:key('alive', tostring(self.node_id))
  self.keeper = lease.keeper(self.client, e.lease_ttl, { name = 'gateway:etcd-lease',
    on_new = function(id) -- the first lease, or a fresh one after the old expired
      self.client:put(alive_key, cjson.encode({ uuid = codec.hex(self.gw.uuid or ''),
        since = os.time() }), { lease = id })
      self:put_conns()
    end })
  local function on_error(err)
    self:_mark(false, err)
  end
  local function on_ok()
    self:_mark(true)
    self.recovering = true
    task.spawn_named('gateway:etcd-recover', function()
      self:_recover()
      self.recovering = false
    end)
  end
  self.watches = {
    watch.start(self.client, self:key('instances', ''), function(ev) self:_on_instances(ev) end,
      { interval_ms = interval, on_error = on_error, on_ok = on_ok, name = 'gateway:etcd-watch' }),
    watch.start(self.client, self:key('nodes', ''), function(ev) self:_on_nodes(ev) end,
      { interval_ms = interval, name = 'gateway:etcd-nodes' }),
  }
  self.timer = uv.new_timer()
  self.timer:start(M.CONNS_MS, M.CONNS_MS, function()
    if not self.conns_busy then
      self.conns_busy = true
      task.spawn_named('gateway:etcd-conns', function()
        self:put_conns()
        self.conns_busy = false
      end)
    end
  end)
  if self.etcd_state ~= 'up' then
    self.log.info('waiting for etcd in the background')
  end
end

--- Write this node's connection counts under its lease.
function Cluster:put_conns()
  local id = self.keeper and self.keeper:id()
  if not id then
    return nil
  end
  local c = self.gw.proxy and self.gw.proxy:counters() or {}
  local per = {}
  for iid, v in pairs(c.instances or {}) do
    per[iid] = type(v) == 'table' and v.active or 0
  end
  local ok, err = self.client:put(self:key('conns', tostring(self.node_id)),
    cjson.encode({ active = c.active or 0, instances = per }), { lease = id })
  if not ok then
    self:_mark(false, err)
  end
  return ok
end

--- The other nodes that are up, as WireGuard servers { pk, ip, endpoint } and as gateway nodes
--- (GatewayNodeInfo), sorted by id.
function Cluster:peers()
  local ids = {}
  for id, n in pairs(self.nodes) do
    if id ~= self.node_id and n.status ~= 'down' and n.wg_public_key and n.wg_public_key ~= '' then
      ids[#ids + 1] = id
    end
  end
  table.sort(ids)
  local servers, gateways = {}, {}
  for _, id in ipairs(ids) do
    local n = self.nodes[id]
    servers[#servers + 1] = { pk = n.wg_public_key, ip = n.wg_ip, endpoint = n.wg_endpoint }
    gateways[#gateways + 1] = { id = id, uuid = codec.unhex(n.uuid or '') or '', url = n.url or '',
      last_seen = n.updated or 0, wg_public_key = n.wg_public_key, wg_ip = n.wg_ip,
      wg_endpoint = n.wg_endpoint }
  end
  return servers, gateways
end

--- { etcd = 'up'|'down'|'unknown', since (unix s), node_id, nodes (ids known), endpoint,
--- error? } for /health, Status and the dashboard.
function Cluster:status()
  local ids = sorted_keys(self.nodes)
  return { etcd = self.etcd_state, since = self.since, node_id = self.node_id, nodes = ids,
    endpoint = self.client:status().endpoint,
    error = self.etcd_state == 'down' and self.last_error or nil }
end

--- The certificate state store (moonstack.gateway.cluster_store) over this cluster's etcd.
function Cluster:cert_store()
  return require('moonstack.gateway.cluster_store').new(self.client, self.base,
    { lock_ttl = self.cfg.etcd.lease_ttl })
end

--- Stop the background work (the lease is left to expire: a restart keeps its keys until
--- then). Idempotent.
function Cluster:close()
  if self.timer then
    self.timer:close()
    self.timer = nil
  end
  for _, w in ipairs(self.watches or {}) do
    w:stop()
  end
  self.watches = nil
  if self.keeper then
    self.keeper:stop()
    self.keeper = nil
  end
end

return M
