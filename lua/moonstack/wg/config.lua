-- SPDX-License-Identifier: Apache-2.0
-- WireGuard configuration text in the wg-quick style (spec kms-vmm-gateway.md §6.6, §9 row 13):
-- what the gateway writes for its hub and what a guest writes for dstack-wg0, as 0600 files
-- beside the live device (the device itself is driven through UAPI, moonstack.wg). Every value
-- is checked before it is written, so a peer's text can never add a line or a section.
--
--   config.render({ private_key = B64, listen_port = N, address = '10.0.0.2/32'?,
--     peers = { { public_key = B64, allowed_ips = { '10.0.0.1/32' } | '10.0.0.1/32',
--       endpoint = 'host:port'?, persistent_keepalive = 25? } } })  -> text
--   config.check_cidr(s) / config.check_endpoint(s) / config.check_key(k) /
--   config.check_ipv4(s) -> true | nil, why
local M = {}

--- Whether `k` is a WireGuard key in base64 (44 characters): true or nil, why.
function M.check_key(k)
  if type(k) == 'string' and #k == 44 and k:match('^[A-Za-z0-9+/]+=$') then
    return true
  end
  return nil, 'expected a base64 WireGuard key'
end

local key_ok = M.check_key

--- Whether `s` is a dotted IPv4 address (no prefix): true or nil, why.
function M.check_ipv4(s)
  local a, b, c, d
  if type(s) == 'string' then
    a, b, c, d = s:match('^(%d+)%.(%d+)%.(%d+)%.(%d+)$')
  end
  if not a then
    return nil, 'expected an IPv4 address'
  end
  for _, o in ipairs({ a, b, c, d }) do
    if #o > 3 or tonumber(o) > 255 then
      return nil, 'expected an IPv4 address'
    end
  end
  return true
end

local ipv4_ok = M.check_ipv4

local function ipv6_ok(s)
  return #s <= 45 and s:find(':', 1, true) ~= nil and s:match('^[%x:%.]+$') ~= nil
end

--- Whether `s` is an address with a prefix ('10.0.0.1/24', 'fd00::1/128'): true or nil, why.
function M.check_cidr(s)
  if type(s) ~= 'string' then
    return nil, 'expected a string'
  end
  local ip, len = s:match('^([^/]+)/(%d+)$')
  if not ip then
    return nil, ('%q is not address/prefix'):format(s:sub(1, 64))
  end
  len = tonumber(len)
  if ipv4_ok(ip) and len <= 32 or ipv6_ok(ip) and len <= 128 then
    return true
  end
  return nil, ('%q is not a valid address/prefix'):format(s:sub(1, 64))
end

--- Whether `s` is an endpoint 'host:port' or '[v6]:port' (host: an address or a DNS name):
--- true or nil, why.
function M.check_endpoint(s)
  if type(s) ~= 'string' or #s > 261 then
    return nil, 'expected a string of at most 261 bytes'
  end
  local host, port = s:match('^%[([%x:%.]+)%]:(%d+)$')
  if not host then
    host, port = s:match('^([%w%.%-]+):(%d+)$')
  end
  port = tonumber(port)
  if not host or not port or port < 1 or port > 65535 then
    return nil, ('%q is not host:port'):format(s:sub(1, 64))
  end
  return true
end

local function need(ok, why, what)
  if not ok then
    error(('wg.render_config: %s: %s'):format(what, why or 'invalid'), 3)
  end
end

local function list_of(v)
  if type(v) == 'string' then
    return { v }
  end
  return type(v) == 'table' and v or {}
end

--- The wg-quick text of `conf` (raises on a malformed value: misuse). Peers are written in
--- the order given (the guest sorts its servers by public key before calling).
function M.render(conf)
  if type(conf) ~= 'table' then
    error('wg.render_config: expected a table', 2)
  end
  need(key_ok(conf.private_key), 'expected a base64 key', 'private_key')
  local port = conf.listen_port
  need(type(port) == 'number' and port % 1 == 0 and port >= 0 and port <= 65535,
    'expected 0..65535', 'listen_port')
  local out = { '[Interface]', 'PrivateKey = ' .. conf.private_key, 'ListenPort = ' .. port }
  if conf.address ~= nil then
    for _, a in ipairs(list_of(conf.address)) do
      need(M.check_cidr(a), select(2, M.check_cidr(a)), 'address')
    end
    out[#out + 1] = 'Address = ' .. table.concat(list_of(conf.address), ', ')
  end
  for i, p in ipairs(conf.peers or {}) do
    local where = ('peers[%d]'):format(i)
    need(type(p) == 'table' and key_ok(p.public_key), 'expected a base64 public_key', where)
    out[#out + 1] = ''
    out[#out + 1] = '[Peer]'
    out[#out + 1] = 'PublicKey = ' .. p.public_key
    local ips = list_of(p.allowed_ips)
    for _, a in ipairs(ips) do
      need(M.check_cidr(a), select(2, M.check_cidr(a)), where .. '.allowed_ips')
    end
    if #ips > 0 then
      out[#out + 1] = 'AllowedIPs = ' .. table.concat(ips, ', ')
    end
    if p.endpoint ~= nil then
      need(M.check_endpoint(p.endpoint), select(2, M.check_endpoint(p.endpoint)), where .. '.endpoint')
      out[#out + 1] = 'Endpoint = ' .. p.endpoint
    end
    local ka = p.persistent_keepalive
    if ka ~= nil then
      need(type(ka) == 'number' and ka % 1 == 0 and ka >= 0 and ka <= 65535, 'expected 0..65535',
        where .. '.persistent_keepalive')
      if ka > 0 then
        out[#out + 1] = 'PersistentKeepalive = ' .. ka
      end
    end
  end
  return table.concat(out, '\n') .. '\n'
end

return M
