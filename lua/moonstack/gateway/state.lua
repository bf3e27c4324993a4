-- SPDX-License-Identifier: Apache-2.0
-- The gateway's registered instances (kms-vmm-gateway.md §6.6): { instance_id, app_id, ip,
-- public_key, reg_time, compose_hash, port_policy, admin_port_policy, last_handshake } by
-- instance id (lowercase hex), kept in <data_dir>/gateway-state.json (mode 0600, written
-- atomically after every change; in memory only without a data_dir).
--
-- Registration: the app and instance ids must be non-empty; an instance id registered to
-- another app is refused (EDENIED); a WireGuard key another instance uses is refused (EINUSE);
-- an instance already known keeps its IP (its key may change); a new one gets the first host of
-- wg.client_ip_range that is not the gateway's IP, not its network's broadcast address, not in
-- wg.reserved_net and not allocated (EEXHAUSTED when none is left). A new compose hash drops
-- the port policy the instance reported before (the request's, if any, replaces it).
-- Recycle: instances registered more than `timeout` seconds ago whose newest handshake is also
-- older than that are removed. Every change bumps `version` and calls the on_change listeners.
local cjson = require('cjson.safe')
local cidr = require('moonstack.gateway.cidr')
local fs = require('moonstack.core.fs')
local tables = require('moonstack.core.tables')

local M = {}

--- The state file's name under data_dir.
M.FILE = 'gateway-state.json'

local State = {}
State.__index = State

--- A state. opts = { wg = validated wg config (ip, reserved_net, client_ip_range) or nil
--- (no allocation possible), data_dir = dir or nil, now = fn() -> unix seconds (os.time) }.
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ instances = {}, version = 0, listeners = {},
    now = opts.now or os.time, data_dir = opts.data_dir }, State)
  if opts.wg then
    self.net = assert(cidr.parse(opts.wg.ip))
    self.range = assert(cidr.parse(opts.wg.client_ip_range))
    self.reserved = {}
    for i, r in ipairs(opts.wg.reserved_net or {}) do
      self.reserved[i] = assert(cidr.parse(r))
    end
  end
  self.path = opts.data_dir and (opts.data_dir .. '/' .. M.FILE) or nil
  return self
end

local FIELDS = { 'instance_id', 'app_id', 'ip', 'public_key', 'reg_time', 'compose_hash',
  'port_policy', 'admin_port_policy', 'last_handshake', 'node_id' }

-- A plain copy of instance `inst` (the fields above).
local function copy(inst)
  local out = {}
  for _, k in ipairs(FIELDS) do
    local v = inst[k]
    if type(v) == 'table' then
      v = cjson.decode(cjson.encode(v))
    end
    out[k] = v
  end
  return out
end

--- Load the state file (none yet: an empty state). Returns true or nil, msg, code.
function State:load()
  if not self.path then
    return true
  end
  local text, err, code = fs.read_file(self.path, 64 * 1024 * 1024)
  if not text then
    if code == 'ENOENT' then
      return true
    end
    return nil, err, code
  end
  local doc = cjson.decode(text)
  if type(doc) ~= 'table' or type(doc.instances) ~= 'table' then
    return nil, ('EPARSE: %s: not a gateway state file'):format(self.path), 'EPARSE'
  end
  for _, inst in ipairs(doc.instances) do
    if type(inst) == 'table' and type(inst.instance_id) == 'string' and type(inst.ip) == 'string' then
      self.instances[inst.instance_id] = copy(inst)
    end
  end
  self.version = self.version + 1
  return true
end

--- Write the state file now (atomically, 0600). True or nil, msg, code.
function State:save()
  if not self.path then
    return true
  end
  local ok, err, code = fs.mkdir_p(self.data_dir, 448)
  if not ok then
    return nil, err, code
  end
  local list = self:list()
  local text = cjson.encode({ version = 1, instances = #list > 0 and list or cjson.empty_array })
  return fs.write_atomic(self.path, text, 384)
end

--- Call fn(state, what) after each change ('register', 'recycle', 'policy', 'handshakes',
--- 'remove', 'sync' (from the cluster)).
function State:on_change(fn)
  self.listeners[#self.listeners + 1] = fn
end

function State:_changed(what, persist)
  self.version = self.version + 1
  local ok, err
  if persist ~= false then
    ok, err = self:save()
  end
  for _, fn in ipairs(self.listeners) do
    fn(self, what)
  end
  if persist ~= false and not ok then
    return nil, err
  end
  return true
end

--- The instance with id `id` (a copy), or nil.
function State:get(id)
  local inst = self.instances[id]
  return inst and copy(inst) or nil
end

--- Every instance (copies), sorted by IP.
function State:list()
  local out = {}
  for _, inst in pairs(self.instances) do
    out[#out + 1] = copy(inst)
  end
  table.sort(out, function(a, b)
    return (cidr.parse_ip(a.ip) or 0) < (cidr.parse_ip(b.ip) or 0)
  end)
  return out
end

--- The number of instances.
function State:count()
  return tables.count(self.instances)
end

--- The first free client address (see the module comment), as text, or nil.
function State:allocate()
  if not self.range then
    return nil
  end
  local used = {}
  for _, inst in pairs(self.instances) do
    local n = cidr.parse_ip(inst.ip)
    if n then
      used[n] = true
    end
  end
  for ip in cidr.hosts(self.range) do
    local skip = used[ip] or ip == self.net.addr or ip == self.net.last
    for _, r in ipairs(self.reserved) do
      skip = skip or cidr.contains_ip(r, ip)
    end
    if not skip then
      return cidr.format_ip(ip)
    end
  end
  return nil
end

--- Register (or re-register) an instance: req = { instance_id, app_id, public_key (base64),
--- compose_hash?, port_policy?, node_id? (the node it registered on, in a cluster) }. Returns
--- the instance (a copy) and whether it is new, or nil, msg, code (EINVAL, EDENIED, EINUSE,
--- EEXHAUSTED, or the write's).
function State:register(req)
  local id, app = req.instance_id, req.app_id
  if type(id) ~= 'string' or id == '' or type(app) ~= 'string' or app == '' then
    return nil, 'EINVAL: the app id and the instance id must not be empty', 'EINVAL'
  end
  local existing = self.instances[id]
  if existing and existing.app_id ~= app then
    return nil, ('EDENIED: instance %s is registered to another app'):format(id), 'EDENIED'
  end
  for other_id, inst in pairs(self.instances) do
    if other_id ~= id and inst.public_key == req.public_key then
      return nil, 'EINUSE: this WireGuard key is used by another instance', 'EINUSE'
    end
  end
  local inst = existing
  local new = inst == nil
  if new then
    local ip = self:allocate()
    if not ip then
      return nil, 'EEXHAUSTED: no free address left in wg.client_ip_range', 'EEXHAUSTED'
    end
    inst = { instance_id = id, app_id = app, ip = ip, last_handshake = 0 }
    self.instances[id] = inst
  end
  if inst.compose_hash ~= req.compose_hash then
    inst.port_policy = nil -- reported for another compose: not this one's
  end
  inst.public_key, inst.compose_hash, inst.reg_time = req.public_key, req.compose_hash, self.now()
  inst.node_id = req.node_id
  if req.port_policy then
    inst.port_policy = req.port_policy
  end
  local ok, err, code = self:_changed('register')
  if not ok then
    return nil, err, code
  end
  return copy(inst), new
end

-- The fields a cluster record carries (all but the local handshake time).
local SYNCED = { 'instance_id', 'app_id', 'ip', 'public_key', 'reg_time', 'compose_hash',
  'port_policy', 'admin_port_policy', 'node_id' }

--- The cluster record of instance `id` (moonstack.gateway.cluster), or nil.
function State:record(id)
  local inst = self.instances[id]
  if not inst then
    return nil
  end
  local out = {}
  for _, k in ipairs(SYNCED) do
    out[k] = inst[k]
  end
  return out
end

--- Apply a record from the cluster (a checked table of SYNCED fields): added or replaced
--- when it differs (the local handshake time is kept). Returns whether anything changed.
function State:apply(rec)
  local inst = self.instances[rec.instance_id]
  if inst and tables.equal(self:record(rec.instance_id), rec) then
    return false
  end
  local fresh = { last_handshake = inst and inst.last_handshake or 0 }
  for _, k in ipairs(SYNCED) do
    fresh[k] = rec[k]
  end
  self.instances[rec.instance_id] = copy(fresh)
  self:_changed('sync')
  return true
end

--- Keep only the instances whose ids are in the set `ids` (a cluster snapshot). Returns the
--- number removed.
function State:retain(ids)
  local n = 0
  for id in pairs(self.instances) do
    if not ids[id] then
      self.instances[id] = nil
      n = n + 1
    end
  end
  if n > 0 then
    self:_changed('sync')
  end
  return n
end

--- Remove instance `id`. True, or nil when it is not registered.
function State:remove(id)
  if not self.instances[id] then
    return nil
  end
  self.instances[id] = nil
  self:_changed('remove')
  return true
end

--- Set (policy = { ports = { {port, pp} }, restrict_mode }) or clear (nil) the admin's port
--- policy override of instance `id`. True, or nil, msg, 'ENOENT'.
function State:set_admin_port_policy(id, policy)
  local inst = self.instances[id]
  if not inst then
    return nil, ('ENOENT: no instance %s'):format(tostring(id)), 'ENOENT'
  end
  inst.admin_port_policy = policy
  return self:_changed('policy')
end

--- The effective port policy of `inst`: the admin's override, else the reported one, else nil.
function M.effective_port_policy(inst)
  return inst.admin_port_policy or inst.port_policy
end

--- Feed WireGuard handshake times { [public_key] = unix seconds }. Returns whether any
--- instance's last_handshake changed (listeners are told, nothing is written: handshakes are
--- kept in the file only as a side effect of other changes).
function State:set_handshakes(by_key)
  local changed = false
  for _, inst in pairs(self.instances) do
    local t = by_key[inst.public_key]
    if t and t ~= inst.last_handshake then
      inst.last_handshake = t
      changed = true
    end
  end
  if changed then
    self:_changed('handshakes', false)
  end
  return changed
end

--- Remove the instances registered more than `timeout` seconds ago whose last handshake is
--- older than that too (only those registered on node `only_node` when given: in a cluster,
--- each node recycles its own). Returns the removed instances (copies).
function State:recycle(timeout, only_node)
  local now = self.now()
  local gone = {}
  for id, inst in pairs(self.instances) do
    if now - (inst.reg_time or 0) > timeout and now - (inst.last_handshake or 0) > timeout
        and (only_node == nil or inst.node_id == nil or inst.node_id == only_node) then
      gone[#gone + 1] = copy(inst)
      self.instances[id] = nil
    end
  end
  if #gone > 0 then
    self:_changed('recycle')
  end
  return gone
end

return M
