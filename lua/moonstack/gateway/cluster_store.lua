-- SPDX-License-Identifier: Apache-2.0
-- The certificate state store on etcd for the gateway's ACME certbot (issue M12 item 2/3):
-- plain string keys (`acme/account`, `cert/<domain>/data`, ...) under <prefix>/gateway/, and
-- lease-backed locks under <prefix>/gateway/locks/<name> (moonstack.etcd.lease.lock: create-
-- if-absent in one transaction). A lock's lease is short (lock_ttl: the cluster's lease_ttl)
-- and kept alive by the holder every lock_ttl/3 s while it holds it, for at most ttl_s: a
-- holder killed with `kill -9` (or cut from etcd) frees the lock within lock_ttl. Interface:
--   store:get(key) -> string | nil          (nil, msg, code on failure: absent is plain nil)
--   store:put(key, string) -> true | nil, err
--   store:lock(name, ttl_s) -> token | nil, holder (the holder's token, or an error message)
--   store:unlock(name, token) -> true | false (not held by token) | nil, err
-- Values are stored as given: the certbot's JSON carries private keys (the ACME account key,
-- each certificate's key), as upstream's WaveKV does: etcd must be protected (TLS with client
-- certificates, its own network; docs/production.md §4).
-- Calls block the calling task (etcd over HTTP).
local lease = require('moonstack.etcd.lease')
local log = require('moonstack.core.log')
local task = require('moonstack.core.task')

local M = {}

local Store = {}
Store.__index = Store

--- Largest value stored (etcd's default request limit is 1.5 MiB).
M.MAX_VALUE = 1024 * 1024

local function check_key(key)
  if type(key) ~= 'string' or key == '' or #key > 512 or key:find('%.%.') or key:find('^/')
      or key:find('[%z\1-\31]') then
    return nil, 'EINVAL: store key: expected a relative path of printable characters'
  end
  return true
end

--- A store over etcd client `client` with keys under `base` (ends with '/'). opts.lock_ttl:
--- the lease of a lock in seconds (10), refreshed while held.
function M.new(client, base, opts)
  local ttl = math.max(1, math.floor(tonumber(opts and opts.lock_ttl) or 10))
  return setmetatable({ client = client, base = base, lock_ttl = ttl, held = {} }, Store)
end

--- The value at `key`, or nil (absent); nil, msg, code when etcd cannot be read.
function Store:get(key)
  local ok, err = check_key(key)
  if not ok then
    return nil, err, 'EINVAL'
  end
  local v, gerr, code = self.client:get(self.base .. key)
  if v == nil then
    return nil, gerr, code
  end
  return v or nil
end

--- Store `value` at `key`. true or nil, err.
function Store:put(key, value)
  local ok, err = check_key(key)
  if not ok then
    return nil, err
  end
  if type(value) ~= 'string' or #value > M.MAX_VALUE then
    return nil, 'EINVAL: store value: expected a string of at most 1 MiB'
  end
  local rev
  rev, err = self.client:put(self.base .. key, value)
  if not rev then
    return nil, err
  end
  return true
end

--- Take lock `name` for `ttl_s` seconds: the token, or nil, holder (the token of whoever
--- holds it; an error message when etcd cannot be asked).
function Store:lock(name, ttl_s)
  local ok, err = check_key(name)
  if not ok then
    return nil, err
  end
  local token, id = lease.lock(self.client, self.base .. 'locks/' .. name, self.lock_ttl)
  if not token then
    return nil, id
  end
  local h = { token = token, lease = id }
  self.held[name] = h
  local client, every = self.client, math.max(200, math.floor(self.lock_ttl * 1000 / 3))
  local deadline = os.time() + math.max(1, ttl_s or 60)
  h.task = task.spawn_named('gateway:certbot-lock', function()
    while true do
      task.sleep(every)
      if h.released then
        return
      end
      if os.time() >= deadline then
        log.new('gateway').warn('certbot: lock held past its ttl, no longer kept alive',
          { lock = name })
        return
      end
      local left, kerr, code = client:keepalive(h.lease)
      if not left and code == 'ENOENT' then
        h.lost = true
        log.new('gateway').warn('certbot: lock lease lost', { lock = name, error = kerr })
        return
      end
    end
  end)
  return token
end

--- Whether lock `name` is still held with `token` (its lease not lost).
function Store:holds(name, token)
  local h = self.held[name]
  return h ~= nil and h.token == token and not h.lost
end

--- Release lock `name` if `token` holds it: true, false (not held by it), or nil, err.
function Store:unlock(name, token)
  local ok, err = check_key(name)
  if not ok then
    return nil, err
  end
  local h = self.held[name]
  if h and h.token == token then
    h.released = true
    self.held[name] = nil
  end
  return lease.unlock(self.client, self.base .. 'locks/' .. name, tostring(token))
end

return M
