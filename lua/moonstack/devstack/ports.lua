-- SPDX-License-Identifier: Apache-2.0
-- The dev stack's ports on 127.0.0.1, kept in ports.json so a second `moonstack dev up` gives
-- the same URLs: each is the one used last time, else a preferred one, else any free one, as
-- long as it can be bound now (TCP, or UDP for WireGuard).
local uv = require('luv')
local cjson = require('cjson.safe')
local fs = require('moonstack.core.fs')
local sorted_keys = require('moonstack.core.tables').sorted_keys

local M = {}

--- The ports the stack needs: name -> { preferred port, protocol }.
M.WANTED = {
  gateway_proxy = { 8443, 'tcp' },
  dashboard = { 8080, 'tcp' },
  kms = { 8000, 'tcp' },
  kms_admin = { 8001, 'tcp' },
  gateway_rpc = { 8010, 'tcp' },
  gateway_admin = { 8011, 'tcp' },
  wireguard = { 51820, 'udp' },
}

-- Can `port` (0: any) be bound on 127.0.0.1 now? The port bound, or nil.
local function bindable(port, proto)
  local h = proto == 'udp' and uv.new_udp() or uv.new_tcp()
  local ok = h:bind('127.0.0.1', port)
  local got
  if ok then
    local addr = h:getsockname()
    got = addr and addr.port
  end
  h:close()
  return got
end

--- The ports for the state in `path` (ports.json): { name = port }, written back. `taken`
--- (optional) names ports in use by the stack itself (a running daemon), kept as they are.
--- Returns the table or nil, msg.
function M.allocate(path, taken)
  local old = {}
  local text = fs.read_file(path)
  if text then
    old = cjson.decode(text) or {}
  end
  local out, used = {}, {}
  local names = sorted_keys(M.WANTED)
  for _, name in ipairs(names) do
    local want = M.WANTED[name]
    local port
    -- last time's port, then the preferred one (a list without holes: ipairs stops at a nil)
    local tries = {}
    tries[#tries + 1] = tonumber(old[name])
    tries[#tries + 1] = want[1]
    for _, p in ipairs(tries) do
      if not port and not used[p] and ((taken and taken[name] == p) or bindable(p, want[2])) then
        port = p
      end
    end
    for _ = 1, 20 do
      if port then
        break
      end
      local p = bindable(0, want[2])
      if p and not used[p] then
        port = p
      end
    end
    if not port then
      return nil, ('EADDRINUSE: no free %s port on 127.0.0.1 for %s'):format(want[2], name)
    end
    out[name], used[port] = port, true
  end
  local ok, err = fs.write_atomic(path, cjson.encode(out) .. '\n', tonumber('644', 8))
  if not ok then
    return nil, err
  end
  return out
end

return M
