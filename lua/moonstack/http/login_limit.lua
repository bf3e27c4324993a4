-- SPDX-License-Identifier: Apache-2.0
-- Failed-login limits of a listener that checks passwords (moonstack.http.auth: the KMS admin
-- listener, the VMM): a password check
-- (bcrypt, ~200 ms at cost 12, on the thread pool) is only started for a client (its peer
-- address) with fewer than `max` failures plus checks in flight within the last `window_s`
-- seconds, and while fewer than `max_inflight` checks run in all; otherwise the request is
-- refused at once (429 with Retry-After) without a check. A success clears the client's
-- failures. The table of clients is bounded (`max_clients`; when full of live entries, new
-- clients are refused: fail closed).
--
--   local lim = login_limit.new({ max = 5, window_s = 300 })
--   local ok, retry_after = lim:begin(peer)     -- false, seconds: refuse (429)
--   ... check ...; lim:finish(peer, passed)
local uv = require('luv')

local M = {}

--- Defaults: failures per client and window, checks in flight in all, clients tracked.
M.DEFAULTS = { max = 5, window_s = 300, max_inflight = 2, max_clients = 4096 }

local Limiter = {}
Limiter.__index = Limiter

--- A limiter. opts: max, window_s, max_inflight, max_clients (M.DEFAULTS), now (function ->
--- seconds; default the loop's clock).
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ clients = {}, count = 0, inflight = 0,
    now = opts.now or function() return uv.now() / 1000 end }, Limiter)
  for k, v in pairs(M.DEFAULTS) do
    self[k] = opts[k] or v
  end
  return self
end

-- Drop the failures of `c` older than the window; true when `c` holds nothing any more.
local function expire(self, c, now)
  local keep = {}
  for _, t in ipairs(c.failures) do
    if t > now - self.window_s then
      keep[#keep + 1] = t
    end
  end
  c.failures = keep
  return #keep == 0 and c.inflight == 0
end

-- Forget the clients that hold nothing any more.
function Limiter:_sweep(now)
  for key, c in pairs(self.clients) do
    if expire(self, c, now) then
      self.clients[key] = nil
      self.count = self.count - 1
    end
  end
end

--- May a password check start for client `key`? true (the check is counted in flight: call
--- finish() after it), or false, seconds until one may (for Retry-After), reason.
function Limiter:begin(key)
  local now = self.now()
  local c = self.clients[key]
  if not c then
    if self.count >= self.max_clients then
      self:_sweep(now)
    end
    if self.count >= self.max_clients then
      return false, self.window_s, 'too many clients with failed logins'
    end
    c = { failures = {}, inflight = 0 }
    self.clients[key] = c
    self.count = self.count + 1
  end
  expire(self, c, now)
  if #c.failures + c.inflight >= self.max then
    local oldest = c.failures[1]
    local wait = oldest and math.ceil(oldest + self.window_s - now) or 1
    return false, math.max(wait, 1), 'too many failed logins from this address'
  end
  if self.inflight >= self.max_inflight then
    return false, 1, 'too many password checks running'
  end
  c.inflight = c.inflight + 1
  self.inflight = self.inflight + 1
  return true
end

--- The check begun for `key` is over: `passed` clears the client's failures, else one is
--- counted.
function Limiter:finish(key, passed)
  local c = self.clients[key]
  self.inflight = math.max(self.inflight - 1, 0)
  if not c then
    return
  end
  c.inflight = math.max(c.inflight - 1, 0)
  if passed then
    c.failures = {}
  else
    c.failures[#c.failures + 1] = self.now()
  end
  if #c.failures == 0 and c.inflight == 0 then
    self.clients[key] = nil
    self.count = self.count - 1
  end
end

--- A snapshot for the REPL: { clients, inflight, max, window_s }.
function Limiter:status()
  return { clients = self.count, inflight = self.inflight, max = self.max, window_s = self.window_s }
end

return M
