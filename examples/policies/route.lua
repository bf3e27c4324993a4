-- SPDX-License-Identifier: Apache-2.0
-- Example gateway routing policy (moonstack gateway, routing_policy = 'route.lua'): decided
-- once per route (app or instance, port) when the gateway builds its route snapshot, and for
-- the first connection of a route it has not seen; never per connection after that.
--
-- on_route(meta) gets meta = { app_id, instance_id? (absent for an app-wide route), port,
-- mode? ('terminate' | 'passthrough' | 'h2', on a first connection), sni?, client? } and
-- returns { allow = bool, reason = string?, to_port = n? (another backend port on the CVM),
-- pp = bool? (send a PROXY v2 header, or not; absent: the port policy decides) }.
-- Any error, timeout or malformed answer is a deny.
--
-- Check it (this runs the tests below): moonstack policy check route.lua

-- apps that are never routed
local BLOCKED = { ['0000000000000000000000000000000000000bad'] = true }
-- ports never reachable from outside, whatever the app publishes
local PRIVATE_PORTS = { [22] = true, [2375] = true, [8090] = true }

return {
  name = 'route',
  version = 1,

  on_route = function(meta)
    if BLOCKED[meta.app_id] then
      return { allow = false, reason = 'app blocked by the operator' }
    end
    if PRIVATE_PORTS[meta.port] then
      return { allow = false, reason = ('port %d is private'):format(meta.port) }
    end
    if meta.port == 80 then -- plain HTTP apps listen on 8080 inside the CVM
      return { allow = true, to_port = 8080 }
    end
    if meta.port == 8443 then -- this port's backends want the client address
      return { allow = true, pp = true }
    end
    return { allow = true }
  end,

  tests = {
    { name = 'an ordinary port is routed as published', hook = 'on_route',
      input = { app_id = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff', port = 443 },
      expect = { allow = true } },
    { name = 'port 80 goes to 8080', hook = 'on_route',
      input = { app_id = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff', port = 80 },
      expect = { allow = true, to_port = 8080 } },
    { name = '8443 gets a PROXY header', hook = 'on_route',
      input = { app_id = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff', port = 8443 },
      expect = { allow = true, pp = true } },
    { name = 'the agent port is private', hook = 'on_route',
      input = { app_id = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff', port = 8090 },
      expect = { allow = false, reason = 'port 8090 is private' } },
    { name = 'a blocked app is refused', hook = 'on_route',
      input = { app_id = '0000000000000000000000000000000000000bad', port = 443 },
      expect = { allow = false } },
  },
}
