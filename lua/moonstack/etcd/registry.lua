-- SPDX-License-Identifier: Apache-2.0
-- Leased membership records: a service puts JSON records (itself, its VMs...) under keys that
-- live as long as its lease (moonstack.etcd.lease.keeper): a member that dies is gone from
-- etcd within the lease's ttl, one that lost its lease (etcd away longer than the ttl) puts
-- every record again on the fresh one. Records set while etcd is away are put once it answers.
local cjson = require('cjson.safe')
local lease = require('moonstack.etcd.lease')
local task = require('moonstack.core.task')

local M = {}

local Registry = {}
Registry.__index = Registry

--- A registry on `client` with a lease of `ttl` seconds (granted in the background).
--- opts = { name, log }.
function M.new(client, ttl, opts)
  opts = opts or {}
  local self = setmetatable({ client = client, records = {}, dirty = {}, log = opts.log },
    Registry)
  self.keeper = lease.keeper(client, ttl, { name = opts.name or 'etcd-registry',
    on_new = function()
      for key in pairs(self.records) do
        self.dirty[key] = true
      end
      self:flush()
    end })
  self.retry = task.spawn_named((opts.name or 'etcd-registry') .. ':retry', function()
    while true do
      task.sleep(math.max(200, ttl * 1000 / 3))
      if next(self.dirty) then
        self:flush()
      end
    end
  end)
  return self
end

--- Put every record set or changed since the last successful put (in a task). True when
--- nothing is left to put.
function Registry:flush()
  local id = self.keeper:id()
  if not id then
    return false
  end
  for key in pairs(self.dirty) do
    local v = self.records[key]
    local ok, err
    if v == nil then
      ok, err = self.client:delete(key)
    else
      ok, err = self.client:put(key, v, { lease = id })
    end
    if ok then
      self.dirty[key] = nil
    elseif self.log then
      self.log.warn('etcd: cannot write a membership record', { key = key, error = err })
    end
  end
  return next(self.dirty) == nil
end

--- Set (table: JSON-encoded) or remove (nil) the record at `key`; written now when possible
--- (in a task), else later.
function Registry:set(key, value)
  local text = value ~= nil and cjson.encode(value) or nil
  if self.records[key] == text and not self.dirty[key] then
    return true
  end
  self.records[key] = text
  self.dirty[key] = true
  return self:flush()
end

--- Stop; opts.revoke: revoke the lease (the records go at once). In a task for the revoke.
function Registry:close(opts)
  if self.retry then
    self.retry:cancel('registry closed')
    self.retry = nil
  end
  self.keeper:stop(opts)
end

--- Every record under `prefix` as { [key] = decoded table } (undecodable ones left out), or
--- nil, msg, code.
function M.list(client, prefix)
  local r, err, code = client:range(prefix, { prefix = true })
  if not r then
    return nil, err, code
  end
  local out = {}
  for _, kv in ipairs(r.kvs) do
    local v = #kv.value <= 1024 * 1024 and cjson.decode(kv.value)
    if type(v) == 'table' then
      out[kv.key] = v
    end
  end
  return out
end

return M
