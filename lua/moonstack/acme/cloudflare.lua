-- SPDX-License-Identifier: Apache-2.0
-- The Cloudflare DNS provider (kms-vmm-gateway.md §6.9, upstream's use of the v4 API): the
-- zone of a domain is the longest suffix among all zones (paged, 50 a page), records are
-- listed by name (paged, 100 a page, at most 19 pages) and filtered exactly (case-insensitive,
-- trailing dot ignored), created (TXT with a TTL; CAA with data { flags, tag, value }) and
-- deleted by id. Authorization: Bearer <token>. Implements the provider interface of
-- moonstack.acme.provider.
local client = require('moonstack.http.client')
local json = require('moonstack.core.json')

local M = {}

M.DEFAULT_URL = 'https://api.cloudflare.com/client/v4'
local MAX_ZONE_PAGES = 100
local MAX_RECORD_PAGES = 19

local P = {}
P.__index = P

local function fail(code, msg)
  return nil, code .. ': cloudflare: ' .. msg, code
end

local function norm(name)
  return (name:gsub('^%*%.', ''):gsub('%.$', ''):lower())
end

--- A provider over `opts.api_token` (required; never logged), `opts.api_url`, `opts.ttl` (TXT
--- TTL, 60), `opts.timeout_ms` (15 s), `opts.ca` (PEM text to trust, tests).
function M.new(opts)
  assert(type(opts.api_token) == 'string' and opts.api_token ~= '', 'cloudflare: api_token required')
  return setmetatable({ token = opts.api_token, url = (opts.api_url or M.DEFAULT_URL):gsub('/$', ''),
    ttl = opts.ttl or 60, timeout_ms = opts.timeout_ms or 15000,
    tls = opts.ca and { ca = opts.ca } or nil, zones = {} }, P)
end

-- Call the API: the decoded `result` and the whole answer, or nil, msg, code.
function P:_call(method, path, query, body)
  local resp, err, code = client.request({ url = self.url .. path, method = method, query = query,
    json = body, headers = { authorization = 'Bearer ' .. self.token }, tls = self.tls,
    timeout_ms = self.timeout_ms, max_response = 4 * 1024 * 1024 })
  if not resp then
    return fail(code or 'EDNS', ('%s %s: %s'):format(method, path, tostring(err)))
  end
  local v = json.decode(resp.body)
  if type(v) ~= 'table' or json.is_array(v) then
    return fail('EDNS', ('%s %s: HTTP %d, not JSON'):format(method, path, resp.status))
  end
  if resp.status < 200 or resp.status > 299 or v.success ~= true then
    local e = type(v.errors) == 'table' and type(v.errors[1]) == 'table' and v.errors[1].message
    return fail('EDNS', ('%s %s: HTTP %d %s'):format(method, path, resp.status,
      type(e) == 'string' and e:sub(1, 200) or ''))
  end
  return v.result, v
end

local function total_pages(v)
  local ri = type(v.result_info) == 'table' and v.result_info or {}
  local n = tonumber(ri.total_pages)
  return n and math.floor(n) or 1
end

--- The zone id for `domain` (longest suffix of all the zones), cached.
function P:zone(domain)
  local d = norm(domain)
  if self.zones[d] then
    return self.zones[d]
  end
  local best, best_len
  local page = 1
  repeat
    local result, v, code = self:_call('GET', '/zones', { page = tostring(page), per_page = '50' })
    if not result then
      return nil, v, code
    end
    if type(result) ~= 'table' then
      return fail('EDNS', 'zones: result is not a list')
    end
    for _, z in ipairs(result) do
      if type(z) == 'table' and type(z.name) == 'string' and type(z.id) == 'string' then
        local zn = norm(z.name)
        if (d == zn or d:sub(-(#zn + 1)) == '.' .. zn) and (not best_len or #zn > best_len) then
          best, best_len = z.id, #zn
        end
      end
    end
    page = page + 1
  until page > total_pages(v) or page > MAX_ZONE_PAGES
  if not best then
    return fail('ENOENT', ('no zone for %s'):format(d))
  end
  if not best:match('^[%w]+$') then
    return fail('EDNS', 'a zone id that is not alphanumeric')
  end
  self.zones[d] = best
  return best
end

--- The records named `fqdn` (exactly) of `rtype` (nil: all): { { id, name, type, content,
--- data } }.
function P:records(fqdn, rtype)
  local zone, err, code = self:zone(fqdn)
  if not zone then
    return nil, err, code
  end
  local out, page, want = {}, 1, norm(fqdn)
  repeat
    local result, v, rcode = self:_call('GET', '/zones/' .. zone .. '/dns_records',
      { name = want, page = tostring(page), per_page = '100' })
    if not result then
      return nil, v, rcode
    end
    for _, r in ipairs(type(result) == 'table' and result or {}) do
      if type(r) == 'table' and type(r.id) == 'string' and type(r.name) == 'string' and
          norm(r.name) == want and (not rtype or r.type == rtype) then
        out[#out + 1] = { id = r.id, name = r.name, type = r.type, content = r.content,
          data = r.data }
      end
    end
    page = page + 1
  until page > total_pages(v) or page > MAX_RECORD_PAGES
  return out, zone
end

function P:_delete(zone, id)
  if not id:match('^[%w]+$') then
    return fail('EDNS', 'a record id that is not alphanumeric')
  end
  local r, err, code = self:_call('DELETE', '/zones/' .. zone .. '/dns_records/' .. id)
  if not r then
    return nil, err, code
  end
  return true
end

function P:_create(fqdn, rec)
  local zone, err, code = self:zone(fqdn)
  if not zone then
    return nil, err, code
  end
  rec.name = norm(fqdn)
  local result
  result, err, code = self:_call('POST', '/zones/' .. zone .. '/dns_records', nil, rec)
  if not result then
    return nil, err, code
  end
  if type(result) ~= 'table' or type(result.id) ~= 'string' then
    return fail('EDNS', 'create: no result.id')
  end
  return result.id
end

--- Create the TXT record `value` at `fqdn`. Returns the record id.
function P:present(fqdn, value)
  return self:_create(fqdn, { type = 'TXT', content = value, ttl = self.ttl })
end

--- Delete every TXT record at `fqdn`.
function P:cleanup(fqdn)
  local list, zone, code = self:records(fqdn, 'TXT')
  if not list then
    return nil, zone, code
  end
  for _, r in ipairs(list) do
    local ok, err, dcode = self:_delete(zone, r.id)
    if not ok then
      return nil, err, dcode
    end
  end
  return true
end

--- The CAA records at `domain`: { { id, flags, tag, value } }.
function P:list_caa(domain)
  local list, err, code = self:records(domain, 'CAA')
  if not list then
    return nil, err, code
  end
  local out = {}
  for _, r in ipairs(list) do
    local flags, tag, value
    if type(r.data) == 'table' then
      flags, tag, value = tonumber(r.data.flags), r.data.tag, r.data.value
    end
    if type(tag) ~= 'string' and type(r.content) == 'string' then
      -- content: `0 issue "value"`: the tag is the 2nd whitespace-separated token
      local f, t, v = r.content:match('^(%d+)%s+(%S+)%s*(.*)$')
      flags, tag, value = tonumber(f), t, v and v:gsub('^"(.*)"$', '%1')
    end
    out[#out + 1] = { id = r.id, flags = flags or 0, tag = tag, value = value }
  end
  return out
end

--- Create a CAA record. Returns its id.
function P:create_caa(domain, flags, tag, value)
  return self:_create(domain, { type = 'CAA', data = { flags = flags, tag = tag, value = value } })
end

--- Delete the CAA record `id` at `domain`.
function P:delete_caa(domain, id)
  local zone, err, code = self:zone(domain)
  if not zone then
    return nil, err, code
  end
  return self:_delete(zone, id)
end

return M
