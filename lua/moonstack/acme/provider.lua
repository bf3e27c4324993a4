-- SPDX-License-Identifier: Apache-2.0
-- The DNS provider interface of the DNS-01 flow and CAA, and the factory of the providers:
--   p:present(fqdn, value)           add a TXT record (true | nil, msg, code)
--   p:cleanup(fqdn)                  delete every TXT record at fqdn
--   p:list_caa(domain)               { { id, flags, tag, value } }
--   p:create_caa(domain, flags, tag, value) -> id
--   p:delete_caa(domain, id)
-- Providers: 'cloudflare' (moonstack.acme.cloudflare) and 'challtestsrv' (pebble's test DNS,
-- moonstack.acme.challtestsrv).
local fs = require('moonstack.core.fs')

local M = {}

--- A provider from `cfg` = { provider = 'cloudflare', api_token | api_token_file | env (the
--- name of an environment variable holding the token), api_url?, ttl?, ca? } or { provider =
--- 'challtestsrv', url, dns_server? ('ip:port': CAA read back over DNS) }. Returns it or nil,
--- msg, code (EINVAL, EPERM for a readable token file).
function M.new(cfg)
  if cfg.provider == 'challtestsrv' then
    if type(cfg.url) ~= 'string' or not cfg.url:match('^https?://') then
      return nil, 'EINVAL: dns.url: the challtestsrv management URL is required', 'EINVAL'
    end
    return require('moonstack.acme.challtestsrv').new({ url = cfg.url, dns_server = cfg.dns_server })
  elseif cfg.provider == 'cloudflare' then
    local token = cfg.api_token
    if not token and cfg.api_token_file then
      local ok, err, code = fs.check_private(cfg.api_token_file, 'dns.api_token_file')
      if not ok then
        return nil, err, code
      end
      token, err, code = fs.read_file(cfg.api_token_file, 4096)
      if not token then
        return nil, 'dns.api_token_file: ' .. tostring(err), code
      end
      token = token:gsub('%s+$', '')
    elseif not token and cfg.env then
      token = os.getenv(cfg.env)
    end
    if type(token) ~= 'string' or token == '' then
      return nil, 'EINVAL: dns: the cloudflare API token is missing (api_token_file or env)', 'EINVAL'
    end
    return require('moonstack.acme.cloudflare').new({ api_token = token, api_url = cfg.api_url,
      ttl = cfg.ttl, ca = cfg.ca })
  end
  return nil, ('EINVAL: dns.provider: %s is not cloudflare or challtestsrv'):format(
    tostring(cfg.provider)), 'EINVAL'
end

return M
