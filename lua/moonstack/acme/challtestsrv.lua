-- SPDX-License-Identifier: Apache-2.0
-- The test DNS provider: pebble-challtestsrv's management API (plain HTTP POST, JSON): TXT by
-- /set-txt (appends) and /clear-txt, CAA by /add-caa (appends) and /clear-caa. Host names are
-- sent as FQDNs with the trailing dot (without it challtestsrv accepts them and never answers).
-- Its API cannot list records: with `dns_server` ('ip:port' of its DNS listener) the CAA list
-- is read over DNS (flags, tag, value), else it is what this provider set; ids are made up, and
-- deleting one clears the name and adds the others back. For tests and development only.
local client = require('moonstack.http.client')
local dns = require('moonstack.acme.dns')

local M = {}

local P = {}
P.__index = P

--- A provider over the management URL `opts.url` (e.g. http://127.0.0.1:8055), reading CAA
--- records back from `opts.dns_server` (e.g. '127.0.0.1:8053') when given.
function M.new(opts)
  assert(type(opts.url) == 'string' and opts.url:match('^https?://'), 'challtestsrv: url required')
  return setmetatable({ url = opts.url:gsub('/$', ''), timeout_ms = opts.timeout_ms or 5000,
    dns_server = opts.dns_server, caa = {}, next_id = 0 }, P)
end

-- The CAA RDATA (RFC 8659 §4.1: flags, tag length, tag, value) as { flags, tag, value }.
local function parse_caa(rdata)
  local flags, len = rdata:byte(1, 2)
  if not len or #rdata < 2 + len then
    return nil
  end
  return { flags = flags, tag = rdata:sub(3, 2 + len), value = rdata:sub(3 + len) }
end

local function fqdn(name)
  name = name:lower()
  return name:sub(-1) == '.' and name or name .. '.'
end

function P:_post(path, body)
  local resp, err, code = client.request({ url = self.url .. path, method = 'POST', json = body,
    timeout_ms = self.timeout_ms, max_response = 64 * 1024 })
  if not resp then
    return nil, ('EDNS: challtestsrv %s: %s'):format(path, tostring(err)), code or 'EDNS'
  end
  if resp.status ~= 200 then
    return nil, ('EDNS: challtestsrv %s: HTTP %d'):format(path, resp.status), 'EDNS'
  end
  return true
end

--- Add the TXT record `value` at `name`.
function P:present(name, value)
  return self:_post('/set-txt', { host = fqdn(name), value = value })
end

--- Remove every TXT record at `name`.
function P:cleanup(name)
  return self:_post('/clear-txt', { host = fqdn(name) })
end

--- The CAA records at `domain` (over DNS with dns_server, else those this provider set):
--- { { id, flags, tag, value } }.
function P:list_caa(domain)
  local host = fqdn(domain)
  if self.dns_server then
    local answers, err, code = dns.lookup(self.dns_server, host, dns.TYPE_CAA)
    if not answers then
      return nil, err, code
    end
    local list = {}
    for _, rdata in ipairs(answers) do
      local r = parse_caa(rdata)
      if r then
        self.next_id = self.next_id + 1
        r.id = tostring(self.next_id)
        list[#list + 1] = r
      end
    end
    self.caa[host] = list
  end
  local out = {}
  for i, r in ipairs(self.caa[host] or {}) do
    out[i] = { id = r.id, flags = r.flags, tag = r.tag, value = r.value }
  end
  return out
end

--- Add a CAA record (challtestsrv serves flags 0 only). Returns its id.
function P:create_caa(domain, flags, tag, value)
  local host = fqdn(domain)
  local ok, err, code = self:_post('/add-caa', { host = host,
    policies = { { tag = tag, value = value } } })
  if not ok then
    return nil, err, code
  end
  self.next_id = self.next_id + 1
  local list = self.caa[host] or {}
  self.caa[host] = list
  list[#list + 1] = { id = tostring(self.next_id), flags = flags or 0, tag = tag, value = value }
  return tostring(self.next_id)
end

--- Delete the CAA record `id` at `domain`: clear the name, add the others back.
function P:delete_caa(domain, id)
  local host = fqdn(domain)
  local keep = {}
  for _, r in ipairs(self.caa[host] or {}) do
    if r.id ~= id then
      keep[#keep + 1] = r
    end
  end
  local ok, err, code = self:_post('/clear-caa', { host = host })
  if not ok then
    return nil, err, code
  end
  self.caa[host] = keep
  if #keep > 0 then
    local policies = {}
    for i, r in ipairs(keep) do
      policies[i] = { tag = r.tag, value = r.value }
    end
    ok, err, code = self:_post('/add-caa', { host = host, policies = policies })
    if not ok then
      return nil, err, code
    end
  end
  return true
end

return M
