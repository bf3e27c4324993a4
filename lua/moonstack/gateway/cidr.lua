-- SPDX-License-Identifier: Apache-2.0
-- IPv4 addresses and networks as the gateway's WireGuard settings use them (kms-vmm-gateway.md
-- §6.6, §6.11 [core.wg]): parse 'a.b.c.d' and 'a.b.c.d/n' strictly, test containment of an
-- address or a network in another, and walk the hosts of a network in order (as Rust's
-- ipnet hosts(): without the network and broadcast addresses, except for /31 and /32).
-- Addresses are numbers in [0, 2^32).
local M = {}

--- The number of a dotted-quad IPv4 address, or nil, 'EINVAL: ...', 'EINVAL'. Leading zeros
--- and out-of-range octets are refused.
function M.parse_ip(s)
  if type(s) ~= 'string' then
    return nil, 'EINVAL: an IPv4 address must be a string', 'EINVAL'
  end
  local a, b, c, d = s:match('^(%d+)%.(%d+)%.(%d+)%.(%d+)$')
  if not a then
    return nil, ('EINVAL: %q is not an IPv4 address'):format(s), 'EINVAL'
  end
  local n = 0
  for _, part in ipairs({ a, b, c, d }) do
    if #part > 3 or (#part > 1 and part:sub(1, 1) == '0') or tonumber(part) > 255 then
      return nil, ('EINVAL: %q is not an IPv4 address'):format(s), 'EINVAL'
    end
    n = n * 256 + tonumber(part)
  end
  return n
end

--- The dotted-quad text of address number `n`.
function M.format_ip(n)
  return ('%d.%d.%d.%d'):format(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

--- A network 'a.b.c.d/n' (a bare address is /32): { addr = the address as written, prefix,
--- first = network address, last = broadcast address, text }, or nil, 'EINVAL: ...', 'EINVAL'.
--- The address part may have host bits set ('10.0.0.1/24': the gateway's own address in its
--- net); first/last are those of the network it lies in.
function M.parse(s)
  if type(s) ~= 'string' then
    return nil, 'EINVAL: a network must be a string like 10.0.0.0/24', 'EINVAL'
  end
  local ip, len = s:match('^([^/]+)/(%d+)$')
  if not ip then
    ip, len = s, '32'
  end
  local addr, err, code = M.parse_ip(ip)
  if not addr then
    return nil, err, code
  end
  local prefix = tonumber(len)
  if #len > 2 or prefix > 32 then
    return nil, ('EINVAL: %q: the prefix length must be 0..32'):format(s), 'EINVAL'
  end
  local size = 2 ^ (32 - prefix)
  local first = addr - addr % size
  return { addr = addr, prefix = prefix, first = first, last = first + size - 1, text = s }
end

--- Whether network `outer` (parsed) contains address number `ip`.
function M.contains_ip(outer, ip)
  return ip >= outer.first and ip <= outer.last
end

--- Whether network `outer` contains all of network `inner` (both parsed).
function M.contains(outer, inner)
  return inner.first >= outer.first and inner.last <= outer.last
end

--- The host addresses of network `net` (parsed), in order: an iterator over numbers. /31 and
--- /32 have no network or broadcast address to skip.
function M.hosts(net)
  local lo, hi = net.first, net.last
  if net.prefix < 31 then
    lo, hi = lo + 1, hi - 1
  end
  local cur = lo - 1
  return function()
    cur = cur + 1
    if cur <= hi then
      return cur
    end
  end
end

return M
