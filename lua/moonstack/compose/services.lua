-- SPDX-License-Identifier: Apache-2.0
-- The lint rules over a docker-compose file (moonstack.compose.lint runs them): images pinned
-- by digest, no secrets in plain `environment`, no privileged containers, no host network,
-- no Docker socket or host paths mounted, ports not published on every interface; and the
-- ${VAR} references the file makes (for the allowed_envs rule of the app-compose).
-- Each rule adds { id, severity, field, message, fix, line? } through `add`.
local sorted_keys = require('moonstack.core.tables').sorted_keys
local yaml = require('moonstack.compose.yaml')

local M = {}

local null = yaml.null

--- The rules here: id -> { severity, summary } (the README and --help list them).
M.RULES = {
  ['image-not-pinned'] = { 'error', 'an image not pinned by digest (or built in the CVM)' },
  ['secret-in-environment'] = { 'error', 'a key, token or password in plain environment' },
  ['privileged-container'] = { 'error', 'privileged: true' },
  ['dangerous-capability'] = { 'warning', 'cap_add ALL / SYS_ADMIN, or the host pid/ipc namespace' },
  ['network-host'] = { 'error', 'network_mode: host (every port of the container is public)' },
  ['docker-socket'] = { 'error', 'the Docker socket mounted (root on the CVM)' },
  ['host-path-mount'] = { 'warning', 'a host path bind-mounted' },
  ['port-all-interfaces'] = { 'warning', 'a port published on every interface' },
}

-- Host paths a container may mount: the guest agent's sockets (upstream's documented use).
local AGENT_SOCKETS = { ['/var/run/dstack.sock'] = true, ['/var/run/tappd.sock'] = true,
  ['/run/dstack.sock'] = true, ['/run/tappd.sock'] = true }
local DOCKER_SOCKETS = { ['/var/run/docker.sock'] = true, ['/run/docker.sock'] = true,
  ['/var/run/containerd/containerd.sock'] = true, ['/run/containerd/containerd.sock'] = true }

-- Names of environment variables that hold secrets.
local SECRET_NAME = { 'PASSWORD', 'PASSWD', 'SECRET', 'TOKEN', 'PRIVATE_KEY', 'PRIVKEY',
  'API_KEY', 'APIKEY', 'ACCESS_KEY', 'CREDENTIAL', 'MNEMONIC', 'SEED_PHRASE', 'AUTH_KEY' }

-- Whether a value looks like key material whatever its name says.
local function secret_value(v)
  return v:find('-----BEGIN', 1, true) ~= nil
    or v:match('^sk%-[%w_-]+$') and #v >= 20
    or v:match('^gh[pousr]_%w+$') and #v >= 20
    or v:match('^AKIA[0-9A-Z]+$') and #v == 20
    or v:match('^xox[bpas]%-') ~= nil
    or v:match('^eyJ[%w_-]+%.[%w_-]+%.') ~= nil
    or v:match('^0x%x+$') and #v >= 66
    or v:match('^%x+$') and #v >= 64 -- 32-byte keys (a 40-digit commit id is not one)
    or v:match('^%a[%w+.-]*://[^/@:]+:[^/@]+@') ~= nil
end

local function secret_name(k)
  local up = k:upper()
  for _, s in ipairs(SECRET_NAME) do
    if up:find(s, 1, true) then
      return true
    end
  end
  return up:match('_KEY$') ~= nil or up == 'KEY'
end

-- The literal part of a value: ${VAR} / $VAR references removed, a ${VAR:-default}'s default
-- kept (a default is a literal too).
local function literal_part(v)
  return (v:gsub('%$%$', '$'):gsub('%$%{[%a_][%w_]*:?%-([^}]*)%}', '%1'):gsub('%$%{[^}]*%}', '')
    :gsub('%$[%a_][%w_]*', ''))
end

--- The variables a string interpolates: { name = true } for ${NAME}, ${NAME:-x}, $NAME
--- ($$ is a literal dollar). `with_default[name]` when every use has a default.
function M.refs(s, out, defaults)
  s = s:gsub('%$%$', '')
  for body in s:gmatch('%$%{([^}]*)%}') do
    local name, op = body:match('^([%a_][%w_]*)(.*)$')
    if name then
      out[name] = true
      if op:match('^:?%-') then
        defaults[name] = defaults[name] ~= false
      else
        defaults[name] = false
      end
    end
  end
  for name in s:gsub('%$%{[^}]*%}', ''):gmatch('%$([%a_][%w_]*)') do
    out[name] = true
    defaults[name] = false
  end
end

--- Every ${VAR} of a parsed compose with the path of its first use:
--- { { name, field, line, has_default } } in file order.
function M.variables(doc, lines)
  local list, seen = {}, {}
  local function walk(v, path)
    if type(v) == 'string' then
      local found, defaults = {}, {}
      M.refs(v, found, defaults)
      for _, n in ipairs(sorted_keys(found)) do
        if not seen[n] then
          seen[n] = #list + 1
          list[#list + 1] = { name = n, field = path, line = lines[path], has_default = defaults[n] }
        elseif not defaults[n] then
          list[seen[n]].has_default = false
        end
      end
    elseif type(v) == 'table' and v ~= null then
      if #v > 0 then
        for i, item in ipairs(v) do
          walk(item, ('%s[%d]'):format(path, i - 1))
        end
      else
        for _, k in ipairs(yaml.keys(v)) do
          walk(v[k], path == '' and k or path .. '.' .. k)
        end
      end
    end
  end
  walk(doc, '')
  return list
end

-- environment as { { key, value (string or nil), field } }.
local function env_entries(env, path)
  local out = {}
  if type(env) ~= 'table' or env == null then
    return out
  end
  if #env > 0 then
    for i, item in ipairs(env) do
      local s = tostring(item)
      local k, v = s:match('^([^=]+)=(.*)$')
      out[#out + 1] = { key = k or s, value = v, field = ('%s.environment[%d]'):format(path, i - 1) }
    end
  else
    for _, k in ipairs(yaml.keys(env)) do
      local v = env[k]
      out[#out + 1] = { key = k, value = v ~= null and tostring(v) or nil,
        field = path .. '.environment.' .. k }
    end
  end
  return out
end

-- A volume's source and target: short "SRC:DST[:MODE]" or long { type, source, target }.
local function volume_source(v)
  if type(v) == 'string' then
    local src, rest = v:match('^([^:]+):(.+)$')
    return src, rest
  elseif type(v) == 'table' and v ~= null then
    return type(v.source) == 'string' and v.source or nil, v.target, v.type
  end
end

-- A port's host address: short "[IP:]HOST:CONTAINER[/proto]" / "CONTAINER", long { host_ip }.
-- Returns the address ('' when none given), or nil when the entry is not a port.
local function port_host_ip(p)
  if type(p) == 'number' then
    return ''
  elseif type(p) == 'string' then
    local s = p:gsub('/%a+$', '')
    local v6 = s:match('^%[([^%]]*)%]:')
    if v6 then
      return v6
    end
    local parts = {}
    for part in (s .. ':'):gmatch('([^:]*):') do
      parts[#parts + 1] = part
    end
    if #parts >= 3 then
      return table.concat(parts, ':', 1, #parts - 2)
    end
    return ''
  elseif type(p) == 'table' and p ~= null then
    -- without `published` the port is published on a random host port (as "80" is)
    return type(p.host_ip) == 'string' and p.host_ip or ''
  end
end

local ALL_INTERFACES = { [''] = true, ['0.0.0.0'] = true, ['::'] = true }

--- Run the docker-compose rules over `doc` (the parsed YAML), `lines` (its paths' lines),
--- field names prefixed with `prefix`; `add(id, severity, field, line, message, fix)`.
function M.check(doc, lines, prefix, add)
  local function field(path)
    return prefix .. path
  end
  for _, name in ipairs(yaml.keys(doc.services)) do
    local svc = doc.services[name]
    local path = 'services.' .. name
    if type(svc) ~= 'table' or svc == null then
      svc = {}
    end
    local image = svc.image
    if type(image) == 'string' then
      if not image:match('@sha256:%x+$') or #image:match('@sha256:(%x+)$') ~= 64 then
        add('image-not-pinned', 'error', field(path .. '.image'), lines[path .. '.image'],
          ('image "%s" is not pinned by digest: the registry can change what runs under the '
            .. 'same compose hash'):format(image),
          ('pin it: %s@sha256:<digest> (docker buildx imagetools inspect %s)'):format(
            image:gsub('@.*$', ''), image))
      end
    elseif svc.build ~= nil then
      add('image-not-pinned', 'error', field(path .. '.build'), lines[path .. '.build'],
        'the image is built inside the CVM from a context the compose hash does not cover',
        'build reproducibly outside, push, and reference the image by digest')
    end
    for _, e in ipairs(env_entries(svc.environment, path)) do
      local v = e.value and literal_part(e.value):match('^%s*(.-)%s*$')
      if v and v ~= ''
          and ((secret_name(e.key) and not v:match('^%d+$') and v ~= 'true' and v ~= 'false')
            or secret_value(v)) then
        add('secret-in-environment', 'error', field(e.field), lines[e.field],
          ('%s has a literal value that looks like a secret: it is readable by anyone who '
            .. 'sees the compose'):format(e.key),
          ('pass it as an encrypted env: %s: ${%s}, the key in allowed_envs, the value in the '
            .. 'env file'):format(e.key, e.key))
      end
    end
    if svc.privileged == true or svc.privileged == 'true' then
      add('privileged-container', 'error', field(path .. '.privileged'), lines[path .. '.privileged'],
        'a privileged container has every capability and the devices of the CVM',
        'drop privileged; add only the capabilities or devices the service needs')
    end
    if type(svc.cap_add) == 'table' then
      for i, cap in ipairs(svc.cap_add) do
        local c = tostring(cap):upper():gsub('^CAP_', '')
        if c == 'ALL' or c == 'SYS_ADMIN' or c == 'SYS_PTRACE' or c == 'SYS_MODULE' then
          local f = ('%s.cap_add[%d]'):format(path, i - 1)
          add('dangerous-capability', 'warning', field(f), lines[f],
            ('cap_add %s gives the container control over the CVM'):format(c),
            'drop it or use a narrower capability')
        end
      end
    end
    for _, ns in ipairs({ 'pid', 'ipc' }) do
      if svc[ns] == 'host' then
        add('dangerous-capability', 'warning', field(path .. '.' .. ns), lines[path .. '.' .. ns],
          ('%s: host shares the CVM\'s %s namespace with the container'):format(ns, ns),
          'remove it')
      end
    end
    if svc.network_mode == 'host' then
      add('network-host', 'error', field(path .. '.network_mode'), lines[path .. '.network_mode'],
        'network_mode: host publishes every port the container listens on',
        'use the default bridge network and publish only the ports you mean to')
    end
    if type(svc.volumes) == 'table' and svc.volumes ~= null then
      for i, vol in ipairs(svc.volumes) do
        local src, _, typ = volume_source(vol)
        local f = ('%s.volumes[%d]'):format(path, i - 1)
        if src and DOCKER_SOCKETS[src] then
          add('docker-socket', 'error', field(f), lines[f],
            ('%s mounted: the container controls the CVM\'s engine (root on the CVM)'):format(src),
            'do not mount the engine socket; talk to the guest agent (dstack.sock) if you need it')
        elseif src and (src:match('^[/.~]') or typ == 'bind') and not AGENT_SOCKETS[src] then
          add('host-path-mount', 'warning', field(f), lines[f],
            ('host path %s mounted into the container: its content is not covered by the compose '
              .. 'hash'):format(src),
            'use a named volume, or check what the path holds before trusting it')
        end
      end
    end
    if type(svc.ports) == 'table' and svc.ports ~= null then
      for i, p in ipairs(svc.ports) do
        local ip = port_host_ip(p)
        local f = ('%s.ports[%d]'):format(path, i - 1)
        if ip and ALL_INTERFACES[ip] then
          add('port-all-interfaces', 'warning', field(f), lines[f],
            ('port %s is published on every interface of the CVM'):format(
              type(p) == 'table' and tostring(p.published ~= nil and p.published ~= null and p.published
              or p.target) or tostring(p)),
            'publish on 127.0.0.1 ("127.0.0.1:HOST:CONTAINER") or the address the gateway '
              .. 'reaches, and only the ports you mean to serve')
        end
      end
    end
  end
end

return M
