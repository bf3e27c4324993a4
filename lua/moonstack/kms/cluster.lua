-- SPDX-License-Identifier: Apache-2.0
-- KMS replicas on etcd (issue M12 item 3), with `cluster = { etcd = { endpoints, prefix,
-- timeout_ms, lease_ttl }, url?, node_id?, role? }` in kms.lua: membership only. Each KMS puts
-- <prefix>/kms/members/<id> = { id, url, role = 'source'|'replica', domain, since } under a
-- lease (gone within lease_ttl of its death); a new replica with `onboard = {
-- source_from_cluster = true }` finds a live 'source' there and replicates from its URL over
-- mutual RA-TLS as with onboard.source_url (moonstack.kms.replicate). No key, public or
-- private, is ever written to etcd.
local crypto = require('moonstack.crypto')
local etcd = require('moonstack.etcd')
local registry = require('moonstack.etcd.registry')
local task = require('moonstack.core.task')
local uv = require('luv')

local M = {}

local function base(c)
  return c.etcd.prefix:gsub('/$', '') .. '/kms/members/'
end

--- The etcd client of a validated `cluster` config, or nil, msg, code.
function M.client(c)
  return etcd.from_config(c.etcd)
end

--- The members { { id, url, role, domain, since } } sorted by id, or nil, msg, code.
function M.members(c, client)
  local err, code
  if not client then
    client, err, code = M.client(c)
    if not client then
      return nil, err, code
    end
  end
  local list
  list, err, code = registry.list(client, base(c))
  if not list then
    return nil, err, code
  end
  local out = {}
  for _, m in pairs(list) do
    if type(m.url) == 'string' and m.url:match('^https://') and type(m.role) == 'string' then
      out[#out + 1] = m
    end
  end
  table.sort(out, function(a, b) return tostring(a.id) < tostring(b.id) end)
  return out
end

--- The URL of a live onboarding source (waits up to timeout_ms for one to appear; in a task),
--- or nil, msg, code.
function M.find_source(c, timeout_ms, log)
  local client, cerr, ccode = M.client(c)
  if not client then
    return nil, cerr, ccode
  end
  local deadline = uv.now() + timeout_ms
  local last
  repeat
    local list, err = M.members(c, client)
    for _, m in ipairs(list or {}) do
      if m.role == 'source' then
        if log then
          log.info('onboarding source found in etcd', { url = m.url, id = m.id })
        end
        return m.url
      end
    end
    last = err or 'no member with role source'
    task.sleep(200)
  until uv.now() >= deadline
  return nil, 'ESOURCE: no onboarding source in etcd (' .. base(c) .. '): ' .. tostring(last),
    'ESOURCE'
end

--- Register KMS `kms` (started: its address known). Returns the registry (close() it), or
--- nil, msg, code (the etcd TLS files).
function M.register(kms)
  local cfg, c = kms.cfg, kms.cfg.cluster
  local client, err, code = M.client(c)
  if not client then
    return nil, err, code
  end
  local url = c.url or ('https://' .. kms:address())
  local id = c.node_id and tostring(c.node_id) or crypto.hex(crypto.sha256(url)):sub(1, 16)
  local role = c.role or ((cfg.onboard and (cfg.onboard.source_url
    or cfg.onboard.source_from_cluster)) and 'replica' or 'source')
  local reg = registry.new(client, c.etcd.lease_ttl, { name = 'kms:etcd', log = kms.log })
  reg.member = { id = id, url = url, role = role, domain = kms.domain or '', since = os.time() }
  task.spawn_named('kms:etcd-register', function()
    reg:set(base(c) .. id, reg.member) -- put now, or by the keeper once a lease is granted
  end)
  kms.log.info('registering in etcd', { id = id, url = url, role = role })
  return reg
end

return M
