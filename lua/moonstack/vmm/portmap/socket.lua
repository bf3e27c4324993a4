-- SPDX-License-Identifier: Apache-2.0
-- What the TCP and UDP sides of the port mapping share: opening the listening socket of a
-- route in its namespace (an error naming the address), counting into a listener's stats and
-- the mapping's totals, and closing a handle once.
local errors = require('moonstack.core.errors')
local netns = require('moonstack.netns')

local M = {}

--- Close a luv handle unless it is closed or closing.
function M.close(h)
  if h and not h:is_closing() then
    h:close()
  end
end

--- Add `n` to counter `field` of the listener's stats and of the mapping's totals.
function M.count(listener, field, n)
  listener.stats[field] = listener.stats[field] + n
  listener.shared[field] = listener.shared[field] + n
end

--- A `kind` ('tcp' | 'udp') handle bound at route.listen, in its namespace; a TCP one also
--- listens (backlog, on_connection). Returns the handle and its bound address { ip, port },
--- or nil, 'EADDRINUSE: <route.listen_name> is already in use' (or another code naming it).
function M.open(kind, route, backlog, on_connection)
  local at, name = route.listen, route.listen_name
  local h, err, code = netns[kind](at.ns, at.address)
  if not h then
    return nil, err, code
  end
  local ok, berr, bname = h:bind(at.address, at.port)
  if ok and kind == 'tcp' then
    ok, berr, bname = h:listen(backlog, on_connection)
  end
  if not ok then
    M.close(h)
    if bname == 'EADDRINUSE' then
      return errors.fail('EADDRINUSE', name .. ' is already in use')
    end
    return errors.fail(bname or 'EIO', ('cannot listen on %s: %s'):format(name, tostring(berr)))
  end
  return h, h:getsockname()
end

return M
