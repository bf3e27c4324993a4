-- SPDX-License-Identifier: Apache-2.0
-- Port mappings of CVMs (kms-vmm-gateway.md §4.2 `ports`, §4.3 [cvm.port_mapping]): a request's
-- PortMapping list checked field by field (protocol tcp|udp, host_port inside an allowed range
-- of the config, vm_port, host_address an IP address or empty for the config's address), no
-- duplicate in the list, no conflict with another VM's mapping (the same protocol and port on
-- the same or an unspecified address) and not already in use on the host (a test bind). Each
-- failure is EINVAL naming the field, e.g. `ports[1].host_port: tcp 30000 is outside the
-- allowed ranges (tcp 1-20000)`. Mappings are then carried out by moonstack.vmm.portmap (a
-- network namespace per CVM) when this build has it: see M.mapper().
local uv = require('luv')
local errors = require('moonstack.core.errors')

local M = {}

local function fail(msg)
  return errors.fail('EINVAL', msg)
end

--- Whether `s` is an IPv4 or IPv6 address (text form).
function M.is_ip(s)
  if type(s) ~= 'string' then
    return false
  end
  local a, b, c, d = s:match('^(%d+)%.(%d+)%.(%d+)%.(%d+)$')
  if a then
    return tonumber(a) < 256 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256
  end
  return s:find(':', 1, true) ~= nil and s:match('^[%x:%.]+$') ~= nil
end

local function unspecified(addr)
  return addr == '0.0.0.0' or addr == '::'
end

--- Whether two mappings ({ address, protocol, from }) claim the same host port.
function M.conflict(a, b)
  return a.protocol == b.protocol and a.from == b.from
    and (a.address == b.address or unspecified(a.address) or unspecified(b.address))
end

local function ranges_text(ranges)
  local parts = {}
  for _, r in ipairs(ranges) do
    parts[#parts + 1] = ('%s %d-%d'):format(r.protocol, r.from, r.to)
  end
  return table.concat(parts, ', ')
end

local function allowed(pm, protocol, port)
  for _, r in ipairs(pm.ranges) do
    if r.protocol == protocol and port >= r.from and port <= r.to then
      return true
    end
  end
  return false
end

local function port_ok(v)
  return type(v) == 'number' and v % 1 == 0 and v >= 1 and v <= 65535
end

--- The manifest's port_map ({ { address, protocol, from, to } }) of a request's `ports`
--- (PortMapping messages), checked against `pm` (the config's port_mapping). `field` names the
--- list in messages (default 'ports'). Returns the list or nil, 'EINVAL: ...', 'EINVAL'.
function M.parse(ports, pm, field)
  field = field or 'ports'
  local out = {}
  if #ports > 0 and not pm.enabled then
    return fail(('%s: port mapping is disabled on this VMM (port_mapping.enabled)'):format(field))
  end
  for i, p in ipairs(ports) do
    local where = ('%s[%d]'):format(field, i)
    local protocol = p.protocol ~= '' and p.protocol or 'tcp'
    if protocol ~= 'tcp' and protocol ~= 'udp' then
      return fail(('%s.protocol: must be tcp or udp, not %q'):format(where, protocol))
    end
    if not port_ok(p.host_port) then
      return fail(('%s.host_port: must be 1..65535'):format(where))
    end
    if not port_ok(p.vm_port) then
      return fail(('%s.vm_port: must be 1..65535'):format(where))
    end
    if not allowed(pm, protocol, p.host_port) then
      return fail(('%s.host_port: %s %d is outside the allowed ranges (%s)'):format(where, protocol,
        p.host_port, ranges_text(pm.ranges)))
    end
    local address = (p.host_address or '') ~= '' and p.host_address or pm.address
    if not M.is_ip(address) then
      return fail(('%s.host_address: %q is not an IP address'):format(where, address))
    end
    local m = { address = address, protocol = protocol, from = p.host_port, to = p.vm_port }
    for j = 1, #out do
      if M.conflict(m, out[j]) then
        return fail(('%s: duplicate host port mapping %s %s:%d'):format(where, protocol, address,
          m.from))
      end
    end
    out[#out + 1] = m
  end
  return out
end

-- Whether the host port of mapping `m` can be bound now (nothing else holds it).
local function bindable(m)
  local h = m.protocol == 'udp' and uv.new_udp() or uv.new_tcp()
  local ok, err, code = h:bind(m.address, m.from)
  if ok and m.protocol == 'tcp' then
    ok, err, code = h:listen(1, function() end)
  end
  h:close()
  return ok ~= nil and ok ~= false, err, code
end

--- Check `port_map` against the other VMs' (`others` = { { id, port_map } }) and the host:
--- true, or nil, 'EINVAL: <field>[i].host_port: ... already taken ...', 'EINVAL'.
function M.check_free(port_map, others, field)
  field = field or 'ports'
  for i, m in ipairs(port_map) do
    local where = ('%s[%d].host_port'):format(field, i)
    for _, o in ipairs(others) do
      for _, x in ipairs(o.port_map or {}) do
        if M.conflict(m, x) then
          return fail(('%s: %s %s:%d is already taken by VM %s'):format(where, m.protocol,
            m.address, m.from, o.id))
        end
      end
    end
    local ok, err, code = bindable(m)
    if not ok and code ~= 'EADDRNOTAVAIL' then
      return fail(('%s: %s %s:%d is already in use on the host (%s)'):format(where, m.protocol,
        m.address, m.from, tostring(code or err)))
    elseif not ok then
      return fail(('%s: %s is not an address of this host'):format(where, m.address))
    end
  end
  return true
end

--- The module that carries mappings out (moonstack.vmm.portmap: new({ netns_path?, ports =
--- {{ protocol, host_address, host_port, vm_port }}, socket_dir }) -> pm with :start() -> true
--- | nil, msg, code and :stop()), or nil, why when this build has none.
function M.mapper()
  local ok, mod = pcall(require, 'moonstack.vmm.portmap')
  if ok and type(mod) == 'table' and type(mod.new) == 'function' then
    return mod
  end
  return nil, 'this build has no port mapper (moonstack.vmm.portmap)'
end

--- The mapper's port list of a manifest port_map.
function M.mapper_ports(port_map)
  local out = {}
  for i, m in ipairs(port_map) do
    out[i] = { protocol = m.protocol, host_address = m.address, host_port = m.from, vm_port = m.to }
  end
  return out
end

return M
