-- SPDX-License-Identifier: Apache-2.0
-- The requests moonstack.wg makes of a device's UAPI socket (moonstack.native.wg): one exchange,
-- on the thread pool with a callback or awaited inside a task; the peers of moonstack.wg's API
-- as the native's set takes them; and the set request that makes a device's peers a given list
-- in place, as `wg syncconf` does.
local task = require('moonstack.core.task')
local config = require('moonstack.wg.config')

local M = {}

local UAPI_MS = 5000

-- A UAPI exchange: with cb on the thread pool, else awaited inside the current task.
function M.uapi(fn, path, conf, cb, shape)
  local opts = { timeout_ms = UAPI_MS }
  if cb then
    local function done(r, err, code)
      if r then
        return cb(shape and shape(r) or r)
      end
      return cb(nil, err, code)
    end
    if conf then
      return fn(path, conf, opts, done)
    end
    return fn(path, opts, done)
  end
  if not task.current() then
    error('wg: without a callback, call inside a task', 3)
  end
  local r, err, code = task.await(function(resume)
    local ok, qerr, qcode
    if conf then
      ok, qerr, qcode = fn(path, conf, opts, resume)
    else
      ok, qerr, qcode = fn(path, opts, resume)
    end
    if not ok then
      resume(nil, qerr, qcode)
    end
  end, { timeout = UAPI_MS + 1000 })
  if r and shape then
    return shape(r)
  end
  return r, err, code
end

-- A peer of the API as moonstack.native.wg's set takes it (raises on misuse).
function M.native_peer(p, where)
  if type(p) ~= 'table' or type(p.public_key) ~= 'string' then
    error(('wg: %s: expected a table with public_key'):format(where), 4)
  end
  local ips = p.allowed_ips
  if type(ips) == 'string' then
    ips = { ips }
  end
  for _, a in ipairs(ips or {}) do
    local ok, why = config.check_cidr(a)
    if not ok then
      error(('wg: %s.allowed_ips: %s'):format(where, why), 4)
    end
  end
  return { public_key = p.public_key, allowed_ips = ips or {}, replace_allowed_ips = true,
    endpoint = p.endpoint, persistent_keepalive_interval = p.persistent_keepalive or 0 }
end

function M.copy_peers(peers)
  local out = {}
  for i, p in ipairs(peers) do
    out[i] = M.native_peer(p, ('peers[%d]'):format(i))
  end
  return out
end

-- The set request making the device's peers (`dev`: a get answer) exactly `peers`, as `wg
-- syncconf` does: unlisted peers removed, listed ones updated in place. Not replace_peers, which
-- re-creates every peer: sessions and learned endpoints lost, a client that just shook hands
-- keeps sending on a session the device no longer has, and the device cannot reach it.
function M.sync_request(dev, peers)
  local wanted, list = {}, {}
  for _, p in ipairs(peers) do
    wanted[p.public_key] = true
  end
  for _, p in ipairs(dev.peers or {}) do
    if not wanted[p.public_key] then
      list[#list + 1] = { public_key = p.public_key, remove = true }
    end
  end
  for _, p in ipairs(peers) do
    list[#list + 1] = p
  end
  return { peers = list }
end

return M
