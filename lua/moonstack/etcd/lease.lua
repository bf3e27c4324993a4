-- SPDX-License-Identifier: Apache-2.0
-- Leases kept alive, and locks on them.
--
-- keeper(client, ttl): a lease granted and refreshed every ttl/3 seconds by a task; when the
-- lease is lost (expired while etcd was unreachable, or revoked) a fresh one is granted and
-- `on_new(id)` is called so the owner can put its leased keys again. lock(): create-if-absent
-- in one transaction (compare create_revision = 0, put the holder's token with a lease of
-- `ttl` seconds); the lock goes with the lease (unlock, revoke, or the ttl running out).
local codec = require('moonstack.core.codec')
local task = require('moonstack.core.task')

local M = {}

local Keeper = {}
Keeper.__index = Keeper

--- Keep a lease of `ttl` seconds alive. opts = { on_new = fn(id), on_lost = fn(msg),
--- name }. Returns the keeper at once (the first grant happens in its task: :id() is nil until
--- then; :wait(ms) waits for it).
function M.keeper(client, ttl, opts)
  opts = opts or {}
  local self = setmetatable({ client = client, ttl = ttl, grants = 0, refreshes = 0 }, Keeper)
  self.task = task.spawn_named(opts.name or 'etcd-lease', function()
    while not self.stopped do
      if not self.lease then
        local id = client:grant(ttl)
        if id then
          self.lease, self.grants = id, self.grants + 1
          if opts.on_new then
            local ok, err = pcall(opts.on_new, id)
            if not ok then
              require('moonstack.core.log').new('etcd').error('lease on_new failed',
                { error = tostring(err) })
            end
          end
        end
      else
        local left, err, code = client:keepalive(self.lease)
        if left then
          self.refreshes = self.refreshes + 1
        elseif code == 'ENOENT' then
          self.lease = nil
          if opts.on_lost then
            pcall(opts.on_lost, err)
          end
          goto continue
        end
      end
      pcall(task.sleep, math.max(100, math.floor(ttl * 1000 / 3)))
      ::continue::
    end
  end)
  return self
end

--- The current lease id, or nil.
function Keeper:id()
  return self.lease
end

--- Wait up to `ms` for a lease (in a task). The id or nil.
function Keeper:wait(ms)
  local t = 0
  while not self.lease and t < ms do
    task.sleep(20)
    t = t + 20
  end
  return self.lease
end

--- Stop refreshing; opts.revoke: revoke the lease too (its keys go at once). In a task for
--- the revoke.
function Keeper:stop(opts)
  self.stopped = true
  if self.task then
    self.task:cancel('lease keeper stopped')
  end
  if opts and opts.revoke and self.lease then
    self.client:revoke(self.lease)
    self.lease = nil
  end
end

--- Take lock `key` for `ttl` seconds: returns the token (random, hex) and the lease, or
--- nil, holder (the current holder's token; false when unknown) and code 'EBUSY', or nil,
--- msg, code on failure. The lock frees itself after ttl.
function M.lock(client, key, ttl)
  local lease, err, code = client:grant(ttl)
  if not lease then
    return nil, err, code
  end
  local token = codec.hex(require('moonstack.crypto').random(16))
  local r
  r, err, code = client:txn({ { key = key, target = 'create', value = 0 } },
    { { put = key, value = token, lease = lease } }, { { get = key } })
  if not r then
    -- the txn may have happened before the answer was lost: check before giving up
    local v = client:get(key)
    if v == token then
      return token, lease
    end
    client:revoke(lease)
    return nil, err, code
  end
  if r.succeeded then
    return token, lease
  end
  client:revoke(lease)
  local held = r.responses[1] and r.responses[1].kvs[1]
  return nil, held and held.value or false, 'EBUSY'
end

--- Release lock `key` if `token` holds it (delete in a txn comparing the value, then revoke
--- its lease). True when released, false when another holds it (or nobody), nil, msg, code.
function M.unlock(client, key, token)
  local r, err, code = client:txn({ { key = key, target = 'value', value = token } },
    { { get = key }, { delete = key } })
  if not r then
    return nil, err, code
  end
  if not r.succeeded then
    return false
  end
  local kv = r.responses[1] and r.responses[1].kvs[1]
  if kv and kv.lease then
    client:revoke(kv.lease)
  end
  return true
end

return M
