-- SPDX-License-Identifier: Apache-2.0
-- The special ids of the SNI grammar (kms-vmm-gateway.md §6.2 step 5), served by the control
-- plane on a loopback plain-HTTP listener the data path relays them to (snapshot.special):
--   health.<base_domain>   GET / -> 200 OK
--   gateway.<base_domain>  GET /health, /.dstack/index, /.dstack/app-info, /.dstack/acme-info
--                          (the /.dstack prefix is optional)
-- The Host header names the id; a request without one is the gateway's.
local http = require('moonstack.http.server')
local util = require('moonstack.http.util')

local M = {}

local JSON = { ['content-type'] = 'application/json' }

-- The gateway id's pages, by path without the optional /.dstack prefix.
local function gateway_page(gw, path)
  local p = gw.cfg.proxy
  if path == '/health' then
    return 200, 'OK', { ['content-type'] = 'text/plain' }
  elseif path == '/index' or path == '/' then
    return 200, util.encode_json({ base_domain = p.base_domain, external_port = p.external_port,
      version = gw.VERSION, paths = { '/.dstack/health', '/.dstack/app-info', '/.dstack/acme-info' } }),
      JSON
  elseif path == '/app-info' then
    return 200, util.encode_json({ app_id = gw.cfg.node.app_id or '', version = gw.VERSION,
      base_domain = p.base_domain }), JSON
  elseif path == '/acme-info' then
    if gw.certbot then
      local ai = require('moonstack.gateway.acme_info')
      local domain = p.base_domain
      local served = false
      for _, d in ipairs(gw.certbot.cfg.domains) do
        served = served or d == domain
      end
      return 200, require('moonstack.core.json').encode(ai.info_json(ai.info(gw.certbot.store,
        served and domain or gw.certbot.cfg.domains[1]))), JSON
    end
    return 200, util.encode_json({ account_uri = '', hist_keys = {}, quoted_hist_keys = {},
      account_quote = '', active_cert = '', base_domain = p.base_domain }), JSON
  end
  return 404, '{"error":"not found"}', JSON
end

--- The HTTP handler of the special ids for gateway `gw` ({ cfg, VERSION }).
function M.handler(gw)
  return function(req)
    if req.method ~= 'GET' and req.method ~= 'HEAD' then
      return 405, '{"error":"method not allowed"}', JSON
    end
    local host = (req.headers.host or ''):lower()
    if host:match('^health%.') or host == 'health' then
      if req.path == '/' then
        return 200, 'OK', { ['content-type'] = 'text/plain' }
      end
      return 404, '{"error":"not found"}', JSON
    end
    local path = req.path:match('^/%.dstack(/.*)$') or req.path
    return gateway_page(gw, path)
  end
end

--- Start the listener on 127.0.0.1 (an ephemeral port). Returns the server ({ host, port } in
--- server.special) or nil, msg, code.
function M.start(gw)
  local srv = http.new({ name = 'gateway-special', max_body = 4096,
    listen = { host = '127.0.0.1', port = 0 } })
  srv:route('*', '/*', M.handler(gw))
  local ok, err, code = srv:listen()
  if not ok then
    return nil, 'special listener: ' .. tostring(err), code
  end
  srv.special = { host = '127.0.0.1', port = srv:port() }
  return srv
end

return M
