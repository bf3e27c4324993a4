-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's browser sessions: a session is 32 random bytes (64 hex characters) sent to
-- the browser once as a cookie (`HttpOnly; SameSite=Strict; Path=/`) and kept here only as its
-- SHA-256 (a lookup cannot leak the secret's bytes by timing, and a memory dump holds no usable
-- cookie), with a server-side expiry (12 h). The store is bounded: beyond `max` live sessions
-- the oldest goes. A daemon restart ends every session (they live in memory only).
local crypto = require('moonstack.crypto')

local M = {}

--- The cookie's name.
M.COOKIE = 'moonstack_session'
--- Lifetime of a session, in seconds.
M.TTL = 12 * 3600
--- Live sessions kept at most.
M.MAX = 256

local Store = {}
Store.__index = Store

--- A session store. opts: ttl (seconds, M.TTL), max (M.MAX), now (fn -> seconds, os.time).
function M.new(opts)
  opts = opts or {}
  return setmetatable({ ttl = opts.ttl or M.TTL, max = opts.max or M.MAX,
    now = opts.now or os.time, by_hash = {}, count = 0 }, Store)
end

local function digest(id)
  return crypto.hex(crypto.sha256(id))
end

-- Forget the expired sessions; with `room`, also the oldest until one more fits.
function Store:_sweep(room)
  local now = self.now()
  for h, s in pairs(self.by_hash) do
    if s.expires <= now then
      self.by_hash[h] = nil
      self.count = self.count - 1
    end
  end
  while room and self.count >= self.max do
    local oldest, at
    for h, s in pairs(self.by_hash) do
      if not at or s.created < at then
        oldest, at = h, s.created
      end
    end
    self.by_hash[oldest] = nil
    self.count = self.count - 1
  end
end

--- Open a session. Returns its id (the cookie value: a secret, never logged).
function Store:create()
  self:_sweep(true)
  local id = crypto.hex(crypto.random(32))
  local now = self.now()
  self.by_hash[digest(id)] = { created = now, expires = now + self.ttl }
  self.count = self.count + 1
  return id
end

--- Whether `id` is a live session.
function Store:valid(id)
  if type(id) ~= 'string' or not id:match('^%x+$') or #id ~= 64 then
    return false
  end
  local h = digest(id)
  local s = self.by_hash[h]
  if not s then
    return false
  end
  if s.expires <= self.now() then
    self.by_hash[h] = nil
    self.count = self.count - 1
    return false
  end
  return true
end

--- End session `id` (logout). Idempotent.
function Store:drop(id)
  if type(id) ~= 'string' then
    return
  end
  local h = digest(id)
  if self.by_hash[h] then
    self.by_hash[h] = nil
    self.count = self.count - 1
  end
end

--- Live sessions (for status).
function Store:size()
  self:_sweep(false)
  return self.count
end

--- The Set-Cookie value giving session `id` to the browser (nil: one that removes it).
function Store:set_cookie(id)
  if not id then
    return M.COOKIE .. '=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0'
  end
  return ('%s=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%d'):format(M.COOKIE, id, self.ttl)
end

--- The value of cookie `name` (default M.COOKIE) in a Cookie header, or nil.
function M.cookie(header, name)
  if type(header) ~= 'string' then
    return nil
  end
  name = name or M.COOKIE
  for pair in header:gmatch('[^;]+') do
    local k, v = pair:match('^%s*([^=%s]+)%s*=%s*(.-)%s*$')
    if k == name then
      return v
    end
  end
  return nil
end

return M
