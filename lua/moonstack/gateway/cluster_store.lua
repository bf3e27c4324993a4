-- SPDX-License-Identifier: Apache-2.0
-- The certificate state store on etcd for the gateway's ACME certbot (issue M12 item 2/3):
-- plain string keys (`acme/account`, `cert/<domain>/data`, ...) under <prefix>/gateway/, and
-- lease-backed locks under <prefix>/gateway/locks/<name> (moonstack.etcd.lease.lock: create-
-- if-absent in one transaction; the lock frees itself when its ttl runs out). Interface:
--   store:get(key) -> string | nil          (nil, msg, code on failure: absent is plain nil)
--   store:put(key, string) -> true | nil, err
--   store:lock(name, ttl_s) -> token | nil, holder (the holder's token, or an error message)
--   store:unlock(name, token) -> true | false (not held by token) | nil, err
-- Calls block the calling task (etcd over HTTP).
local lease = require('moonstack.etcd.lease')

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

--- A store over etcd client `client` with keys under `base` (ends with '/').
function M.new(client, base)
  return setmetatable({ client = client, base = base }, Store)
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
  local token, holder = lease.lock(self.client, self.base .. 'locks/' .. name,
    math.max(1, math.floor(ttl_s or 60)))
  if token then
    return token
  end
  return nil, holder
end

--- Release lock `name` if `token` holds it: true, false (not held by it), or nil, err.
function Store:unlock(name, token)
  local ok, err = check_key(name)
  if not ok then
    return nil, err
  end
  return lease.unlock(self.client, self.base .. 'locks/' .. name, tostring(token))
end

return M
