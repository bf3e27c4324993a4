-- SPDX-License-Identifier: Apache-2.0
-- Example gateway routing policy: only known apps are routed, only on their published ports,
-- and one app is sent to a named backend pool.
--
-- on_route receives the request as the gateway sees it (here: app_id, port, sni) and returns
-- { allow = bool, reason = string?, backend = string? }. Any error, timeout or malformed
-- answer is a deny.
--
-- Check it (this runs the tests below): moonstack policy check route-by-app.lua

-- app id -> { ports it may be reached on, optional backend pool }
local APPS = {
  ['ea549f02e1a25fabd1cb788380e033ec5461b2ff'] = { ports = { [443] = true, [8080] = true } },
  ['0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c'] = { ports = { [443] = true }, backend = 'canary' },
}

return {
  name = 'route-by-app',
  version = 3,

  on_route = function(req)
    local app = APPS[req.app_id]
    if not app then
      return { allow = false, reason = 'unknown app' }
    end
    if not app.ports[req.port] then
      return { allow = false, reason = ('port %s is not published'):format(tostring(req.port)) }
    end
    return { allow = true, backend = app.backend }
  end,

  tests = {
    {
      name = 'a known app on a published port is routed',
      hook = 'on_route',
      input = { app_id = 'ea549f02e1a25fabd1cb788380e033ec5461b2ff', port = 8080 },
      expect = { allow = true },
    },
    {
      name = 'the canary app goes to its pool',
      hook = 'on_route',
      input = { app_id = '0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c', port = 443 },
      expect = { allow = true, backend = 'canary' },
    },
    {
      name = 'an unpublished port is refused',
      hook = 'on_route',
      input = { app_id = '0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c', port = 22 },
      expect = { allow = false, reason = 'port 22 is not published' },
    },
    {
      name = 'an unknown app is refused',
      hook = 'on_route',
      input = { app_id = 'ff', port = 443 },
      expect = { allow = false },
    },
  },
}
