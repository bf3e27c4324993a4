-- SPDX-License-Identifier: Apache-2.0
-- The certbot's state store, local files (one gateway; an etcd-backed store with the same
-- methods serves a cluster):
--   store:get(key) -> string | nil        (absent: plain nil; unreadable: nil, msg, code)
--   store:put(key, string) -> true | nil, err
--   store:lock(name, ttl_s) -> token | nil, holder    best effort; expires after ttl_s
--   store:holds(name, token) -> bool
--   store:unlock(name, token)
-- Keys: 'acme/account' (JSON: key PEM + account URI), 'acme/attestation', 'cert/<domain>/data'
-- (JSON: chain PEM + key PEM + not_after), 'cert/<domain>/attestation/latest', ... Each key is a
-- file under the store's directory (0600, written atomically; directories 0700); a lock is a
-- file 'locks/<name>' holding { token, expires }.
local fs = require('moonstack.core.fs')
local json = require('moonstack.core.json')
local crypto = require('moonstack.crypto')

local M = {}

M.MAX_VALUE = 4 * 1024 * 1024

local Store = {}
Store.__index = Store

--- A store in directory `dir` (made 0700 on first write).
function M.new(dir)
  assert(type(dir) == 'string' and dir ~= '', 'cert_store.new: a directory')
  return setmetatable({ dir = dir:gsub('/$', '') }, Store)
end

-- The file of `key`, or nil, msg for a key that is not a/b/c of [%w._*-] segments.
local function path_of(self, key)
  if type(key) ~= 'string' or #key > 512 or key == '' then
    return nil, 'EINVAL: cert_store: a key must be a non-empty string'
  end
  for seg in (key .. '/'):gmatch('([^/]*)/') do
    if seg == '' or seg == '.' or seg == '..' or not seg:match('^[%w%._%*%-]+$') then
      return nil, ('EINVAL: cert_store: bad key %q'):format(key)
    end
  end
  return self.dir .. '/' .. key
end

--- The value of `key`, or nil when there is none (nil, msg, code when it cannot be read).
function Store:get(key)
  local p, err = path_of(self, key)
  if not p then
    return nil, err, 'EINVAL'
  end
  local v, rerr, code = fs.read_file(p, M.MAX_VALUE)
  if v == nil and code ~= 'ENOENT' then
    return nil, rerr, code
  end
  return v
end

--- Store `value` under `key`. True or nil, msg, code.
function Store:put(key, value)
  local p, err = path_of(self, key)
  if not p then
    return nil, err, 'EINVAL'
  end
  if type(value) ~= 'string' or #value > M.MAX_VALUE then
    return nil, 'EINVAL: cert_store: a value must be a string of at most 4 MiB', 'EINVAL'
  end
  local ok, code
  ok, err, code = fs.mkdir_p(p:match('^(.*)/[^/]+$'), 448)
  if not ok then
    return nil, err, code
  end
  return fs.write_atomic(p, value, 384)
end

--- Take the lock `name` for `ttl_s` seconds: a token, or nil and the holder's token when
--- another holder's lock has not expired.
function Store:lock(name, ttl_s)
  local key = 'locks/' .. name
  local now = os.time()
  local held = self:get(key)
  local h = held and json.decode(held)
  if type(h) == 'table' and type(h.expires) == 'number' and h.expires > now then
    return nil, tostring(h.token)
  end
  local token = crypto.hex(crypto.random(16))
  local ok = self:put(key, json.encode({ token = token, expires = now + ttl_s }))
  if not ok then
    return nil, 'unwritable'
  end
  return token
end

--- Whether `token` still holds lock `name` (not expired).
function Store:holds(name, token)
  local held = self:get('locks/' .. name)
  local h = held and json.decode(held)
  return type(h) == 'table' and h.token == token and type(h.expires) == 'number'
    and h.expires > os.time()
end

--- Release the lock `name` if `token` holds it.
function Store:unlock(name, token)
  local key = 'locks/' .. name
  local held = self:get(key)
  local h = held and json.decode(held)
  if type(h) == 'table' and h.token == token then
    self:put(key, json.encode({ token = '', expires = 0 }))
  end
end

return M
