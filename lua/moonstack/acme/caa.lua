-- SPDX-License-Identifier: Apache-2.0
-- CAA records as upstream sets them (kms-vmm-gateway.md §6.9): for a base domain D, guard
-- records `0 issue ";"` and `0 issuewild ";"` first (no CA may issue while the set changes),
-- then every other issue/issuewild record at D deleted, then `0 issue` and `0 issuewild` with
-- `<issuer>;validationmethods=dns-01;accounturi=<account URI>`, then the guards deleted.
local M = {}

--- The issuer domain upstream names.
M.DEFAULT_ISSUER = 'letsencrypt.org'

--- The value of the issue/issuewild records binding `issuer` to `account_uri` and DNS-01.
function M.value(issuer, account_uri)
  return ('%s;validationmethods=dns-01;accounturi=%s'):format(issuer or M.DEFAULT_ISSUER, account_uri)
end

--- The records D ends with: { { flags, tag, value } } (issue, then issuewild).
function M.records(issuer, account_uri)
  local v = M.value(issuer, account_uri)
  return { { flags = 0, tag = 'issue', value = v }, { flags = 0, tag = 'issuewild', value = v } }
end

--- Set the CAA records of `domain` through `provider` (moonstack.acme.provider). Returns true
--- or nil, msg, code; a failure leaves the guards in place (nothing may issue), never an open set.
function M.set(provider, domain, account_uri, issuer)
  domain = domain:gsub('^%*%.', '')
  local guards, order = {}, {}
  for _, tag in ipairs({ 'issue', 'issuewild' }) do
    local id, err, code = provider:create_caa(domain, 0, tag, ';')
    if not id then
      return nil, err, code
    end
    guards[id] = true
    order[#order + 1] = id
  end
  local list, err, code = provider:list_caa(domain)
  if not list then
    return nil, err, code
  end
  for _, r in ipairs(list) do
    if not guards[r.id] and (r.tag == 'issue' or r.tag == 'issuewild') then
      local ok
      ok, err, code = provider:delete_caa(domain, r.id)
      if not ok then
        return nil, err, code
      end
    end
  end
  for _, r in ipairs(M.records(issuer, account_uri)) do
    local id
    id, err, code = provider:create_caa(domain, r.flags, r.tag, r.value)
    if not id then
      return nil, err, code
    end
  end
  for _, id in ipairs(order) do
    local ok
    ok, err, code = provider:delete_caa(domain, id)
    if not ok then
      return nil, err, code
    end
  end
  return true
end

return M
