-- SPDX-License-Identifier: Apache-2.0
-- An etcd v3 client over the JSON gRPC-gateway (`POST /v3/...` on a member's client port),
-- on the runtime's HTTP client, from inside a task. Several endpoints with failover: a
-- member that cannot be reached, answers 5xx or says it has no leader is left for the next
-- one, round the list, until the call's deadline (`timeout_ms`, whole call) — so a leader
-- killed with `kill -9` costs an election, not an error. The member that answered last is
-- tried first next time.
--
-- Wire snags handled here: keys and values are base64; int64 fields arrive as JSON strings
-- ("revision":"5") and are checked and turned into numbers (revisions, counts, TTLs) or kept
-- as decimal strings (lease ids: they exceed 2^53); proto3 omits default fields (no `kvs`, no
-- `succeeded` when false). Answers are decoded strictly (moonstack.core.json: duplicate keys
-- refused), bounded by `max_response`, and every field read is type-checked (EPROTO).
local codec = require('moonstack.core.codec')
local json = require('moonstack.core.json')
local http = require('moonstack.http.client')
local task = require('moonstack.core.task')
local uv = require('luv')

local M = {}

--- Defaults: the whole-call deadline and the answer size bound.
M.TIMEOUT_MS = 5000
M.MAX_RESPONSE = 16 * 1024 * 1024

local Client = {}
Client.__index = Client
M.Client = Client

local function perr(what)
  return nil, 'EPROTO: etcd answer: ' .. what, 'EPROTO'
end

--- A client. opts = { endpoints = { 'http://127.0.0.1:2379', ... } (required, 1..16),
--- timeout_ms = 5000 (one call, failover included), max_response = 16 MiB }. Returns the client
--- or nil, msg, 'EINVAL'.
function M.new(opts)
  opts = opts or {}
  local eps = opts.endpoints
  if type(eps) ~= 'table' or #eps == 0 or #eps > 16 then
    return nil, 'EINVAL: etcd.endpoints: expected a list of 1 to 16 URLs', 'EINVAL'
  end
  local list = {}
  for i, e in ipairs(eps) do
    if type(e) ~= 'string' or not e:match('^https?://[^/%s]+/?$') then
      return nil, ('EINVAL: etcd.endpoints[%d]: expected http(s)://host:port'):format(i), 'EINVAL'
    end
    list[i] = (e:gsub('/$', ''))
  end
  local t = opts.timeout_ms or M.TIMEOUT_MS
  if type(t) ~= 'number' or t < 50 then
    return nil, 'EINVAL: etcd.timeout_ms: expected a number >= 50', 'EINVAL'
  end
  return setmetatable({ endpoints = list, current = 1, timeout_ms = t, tls = opts.tls,
    max_response = opts.max_response or M.MAX_RESPONSE, calls = 0, failovers = 0 }, Client)
end

-- Whether an answer or transport error means "another member may do better".
local function retryable(status, body, code)
  if not status then
    return code ~= 'EINVAL'
  end
  if status >= 500 then
    return true
  end
  if type(body) == 'table' then
    local c, m = body.code, tostring(body.message or body.error or '')
    -- gRPC UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED; elections and lost leaders
    if c == 14 or c == 4 or c == 10 or m:find('leader', 1, true) or m:find('timed out', 1, true) then
      return true
    end
  end
  return false
end

--- POST `body` (a table) to `path` (e.g. '/v3/kv/put') with failover; the decoded answer, or
--- nil, msg, code (EUNAVAILABLE: no member answered in time; ETCD: etcd refused the request,
--- its message kept; EPROTO: not JSON or not an object). In a task.
function Client:call(path, body, opts)
  local deadline = uv.now() + ((opts and opts.timeout_ms) or self.timeout_ms)
  local n = #self.endpoints
  local last_err, tries = 'no attempt', 0
  self.calls = self.calls + 1
  while true do
    local left = deadline - uv.now()
    if left <= 0 or tries >= 4 * n then
      break
    end
    local ep = self.endpoints[self.current]
    tries = tries + 1
    local per = math.max(20, math.min(left, 2000))
    -- the native timeout bounds the exchange; task.timeout bounds it again, whatever happens
    local resp, err, code = task.timeout(per + 500, http.request, { url = ep .. path,
      method = 'POST', json = body, timeout_ms = per, max_response = self.max_response,
      tls = self.tls })
    local status, doc
    if resp then
      status = resp.status
      doc = json.decode(resp.body or '')
      if type(doc) ~= 'table' then
        if status < 500 then
          return nil, ('EPROTO: etcd %s: HTTP %d with a body that is not a JSON object'):format(
            ep, status), 'EPROTO'
        end
        doc = nil
      end
      if status == 200 and doc then
        return doc
      end
      last_err = ('%s: HTTP %d %s'):format(ep, status,
        tostring(doc and (doc.message or doc.error) or ''))
    else
      last_err = ('%s: %s'):format(ep, tostring(err))
    end
    if not retryable(status, doc, code) then
      return nil, 'ETCD: ' .. last_err, 'ETCD'
    end
    self.current = self.current % n + 1
    self.failovers = self.failovers + 1
    if tries % n == 0 then -- round the whole list: give an election a moment
      local pause = math.min(200, deadline - uv.now())
      if pause > 0 then
        task.sleep(pause)
      end
    end
  end
  return nil, 'EUNAVAILABLE: etcd: no member answered: ' .. last_err, 'EUNAVAILABLE'
end

-- ---- from a service's config ----

--- The schema (moonstack.core.config) of a service config's `cluster.etcd` table: endpoints,
--- prefix = '/moonstack', timeout_ms = 3000, lease_ttl = 10, watch_interval_ms = 500, and for
--- an etcd served over TLS: ca_file (the CA of its certificates), cert_file + key_file (a
--- client certificate, for `--client-cert-auth`).
function M.config_schema()
  return { type = 'table', fields = {
    endpoints = { type = 'table', items = { type = 'string', pattern = '^https?://[^/%s]+/?$' } },
    prefix = { type = 'string', default = '/moonstack', pattern = '^/[%w_%-/%.]*$' },
    timeout_ms = { type = 'integer', default = 3000, min = 50, max = 600000 },
    lease_ttl = { type = 'integer', default = 10, min = 2, max = 3600 },
    watch_interval_ms = { type = 'integer', default = 500, min = 20, max = 600000 },
    ca_file = { type = 'string', optional = true, min = 1 },
    cert_file = { type = 'string', optional = true, min = 1 },
    key_file = { type = 'string', optional = true, min = 1 },
  } }
end

--- A client from a validated `cluster.etcd` table (the TLS files read here), or nil, msg, code.
function M.from_config(e)
  local tls
  if e.ca_file or e.cert_file or e.key_file then
    if (e.cert_file == nil) ~= (e.key_file == nil) then
      return nil, 'EINVAL: cluster.etcd: give both cert_file and key_file, or neither', 'EINVAL'
    end
    tls = {}
    local fs = require('moonstack.core.fs')
    for k, f in pairs({ ca = e.ca_file, cert = e.cert_file, key = e.key_file }) do
      local text, err, code = fs.read_file(f, 1024 * 1024)
      if not text then
        return nil, ('cluster.etcd.%s_file: %s'):format(k, tostring(err)), code
      end
      tls[k] = text
    end
  end
  return M.new({ endpoints = e.endpoints, timeout_ms = e.timeout_ms, tls = tls })
end

-- ---- decoding helpers ----

--- An int64 field (JSON string of digits, or absent = 0) as a number, or nil.
function M.int(v)
  if v == nil then
    return 0
  end
  if type(v) == 'string' and v:match('^%-?%d+$') and #v <= 16 then
    return tonumber(v)
  end
  if type(v) == 'number' and v % 1 == 0 then
    return v
  end
  return nil
end

local function header_rev(doc)
  local h = doc.header
  if type(h) ~= 'table' then
    return perr('no header')
  end
  local rev = M.int(h.revision)
  if not rev then
    return perr('header.revision is not an integer')
  end
  return rev
end

local function b64(s)
  return codec.base64(s)
end

-- Decode a KeyValue message.
local function kv(t)
  if type(t) ~= 'table' or type(t.key) ~= 'string' then
    return perr('a kv without a key')
  end
  local key = codec.unbase64(t.key)
  local value = t.value == nil and '' or (type(t.value) == 'string' and codec.unbase64(t.value))
  if not key or not value then
    return perr('a kv whose key or value is not base64')
  end
  local out = { key = key, value = value, create_revision = M.int(t.create_revision),
    mod_revision = M.int(t.mod_revision), version = M.int(t.version) }
  if not (out.create_revision and out.mod_revision and out.version) then
    return perr('a kv with a bad revision')
  end
  if t.lease ~= nil then
    if type(t.lease) ~= 'string' or not t.lease:match('^%d+$') then
      return perr('a kv with a bad lease')
    end
    out.lease = t.lease ~= '0' and t.lease or nil
  end
  return out
end

local function kvs(list)
  if list == nil then
    return {}
  end
  if type(list) ~= 'table' then
    return perr('kvs is not a list')
  end
  local out = {}
  for i, t in ipairs(list) do
    local one, err, code = kv(t)
    if not one then
      return nil, err, code
    end
    out[i] = one
  end
  return out
end

--- The range_end that makes `key` a prefix: its last byte that is not 0xff plus one.
function M.prefix_end(key)
  for i = #key, 1, -1 do
    local b = key:byte(i)
    if b < 255 then
      return key:sub(1, i - 1) .. string.char(b + 1)
    end
  end
  return '\0' -- every key
end

-- A RangeRequest body for `key` and opts { prefix, limit, revision, keys_only, count_only,
-- min_mod_revision, serializable }.
local function range_body(key, opts)
  opts = opts or {}
  local body = { key = b64(key) }
  if opts.prefix then
    body.range_end = b64(M.prefix_end(key))
  end
  body.limit = opts.limit and tostring(opts.limit) or nil
  body.revision = opts.revision and tostring(opts.revision) or nil
  body.min_mod_revision = opts.min_mod_revision and tostring(opts.min_mod_revision) or nil
  body.keys_only = opts.keys_only or nil
  body.count_only = opts.count_only or nil
  body.serializable = opts.serializable or nil
  return body
end

local function range_result(doc)
  local rev, err, code = header_rev(doc)
  if not rev then
    return nil, err, code
  end
  local list
  list, err, code = kvs(doc.kvs)
  if not list then
    return nil, err, code
  end
  local count = M.int(doc.count)
  if not count then
    return perr('count is not an integer')
  end
  return { kvs = list, count = count, revision = rev, more = doc.more == true }
end

--- Range over `key` (opts.prefix: every key under it). Returns { kvs = { {key, value,
--- create_revision, mod_revision, version, lease} }, count, revision, more } or nil, msg, code.
function Client:range(key, opts)
  local doc, err, code = self:call('/v3/kv/range', range_body(key, opts))
  if not doc then
    return nil, err, code
  end
  return range_result(doc)
end

--- The value of `key` (a string), or false when absent (nil, msg, code on failure); then
--- the kv record.
function Client:get(key)
  local r, err, code = self:range(key)
  if not r then
    return nil, err, code
  end
  local one = r.kvs[1]
  return one and one.value or false, one
end

--- Put `value` at `key` (opts.lease: a lease id). Returns the revision or nil, msg, code.
function Client:put(key, value, opts)
  assert(type(key) == 'string' and type(value) == 'string', 'etcd put: string key and value')
  local doc, err, code = self:call('/v3/kv/put', { key = b64(key), value = b64(value),
    lease = opts and opts.lease or nil })
  if not doc then
    return nil, err, code
  end
  return header_rev(doc)
end

--- Delete `key` (opts.prefix: every key under it). Returns the number deleted or nil, msg, code.
function Client:delete(key, opts)
  local body = { key = b64(key) }
  if opts and opts.prefix then
    body.range_end = b64(M.prefix_end(key))
  end
  local doc, err, code = self:call('/v3/kv/deleterange', body)
  if not doc then
    return nil, err, code
  end
  local n = M.int(doc.deleted)
  if not n then
    return perr('deleted is not an integer')
  end
  return n
end

-- A Compare: { key, target = 'value'|'create'|'mod'|'version'|'lease', result = '='|'!='|'<'|'>',
-- value }.
local TARGETS = { value = 'VALUE', create = 'CREATE', mod = 'MOD', version = 'VERSION',
  lease = 'LEASE' }
local FIELD = { VALUE = 'value', CREATE = 'create_revision', MOD = 'mod_revision',
  VERSION = 'version', LEASE = 'lease' }
local RESULTS = { ['='] = 'EQUAL', ['!='] = 'NOT_EQUAL', ['<'] = 'LESS', ['>'] = 'GREATER' }

local function compare(c)
  local target = assert(TARGETS[c.target], 'etcd txn: unknown compare target')
  local out = { key = b64(c.key), target = target,
    result = assert(RESULTS[c.result or '='], 'etcd txn: unknown compare result') }
  out[FIELD[target]] = target == 'VALUE' and b64(c.value) or tostring(c.value)
  return out
end

-- An op: { put = key, value, lease? } | { get = key, prefix? } | { delete = key, prefix? }.
local function op(o)
  if o.put then
    return { requestPut = { key = b64(o.put), value = b64(o.value), lease = o.lease } }
  elseif o.get then
    return { requestRange = range_body(o.get, o) }
  elseif o.delete then
    local d = { key = b64(o.delete) }
    if o.prefix then
      d.range_end = b64(M.prefix_end(o.delete))
    end
    return { requestDeleteRange = d }
  end
  error('etcd txn: an op is { put | get | delete = key }')
end

--- A transaction: if every compare holds, the `success` ops run, else the `failure` ops.
--- Returns { succeeded, revision, responses = { { kind = 'range'|'put'|'delete', ... } } }
--- (a range response carries kvs) or nil, msg, code.
function Client:txn(compares, success, failure)
  local body = {} -- an empty list would encode as {}: left out
  for i, c in ipairs(compares or {}) do
    body.compare = body.compare or {}
    body.compare[i] = compare(c)
  end
  for i, o in ipairs(success or {}) do
    body.success = body.success or {}
    body.success[i] = op(o)
  end
  for i, o in ipairs(failure or {}) do
    body.failure = body.failure or {}
    body.failure[i] = op(o)
  end
  local doc, err, code = self:call('/v3/kv/txn', body)
  if not doc then
    return nil, err, code
  end
  local rev
  rev, err, code = header_rev(doc)
  if not rev then
    return nil, err, code
  end
  local out = { succeeded = doc.succeeded == true, revision = rev, responses = {} }
  if doc.responses ~= nil and type(doc.responses) ~= 'table' then
    return perr('responses is not a list')
  end
  for i, r in ipairs(doc.responses or {}) do
    if type(r) ~= 'table' then
      return perr('a txn response is not an object')
    end
    if r.response_range then
      local rr = type(r.response_range) == 'table' and r.response_range or {}
      local list
      list, err, code = kvs(rr.kvs)
      if not list then
        return nil, err, code
      end
      out.responses[i] = { kind = 'range', kvs = list }
    elseif r.response_put then
      out.responses[i] = { kind = 'put' }
    elseif r.response_delete_range then
      out.responses[i] = { kind = 'delete',
        deleted = M.int(type(r.response_delete_range) == 'table'
          and r.response_delete_range.deleted or nil) }
    else
      return perr('a txn response of an unknown kind')
    end
  end
  return out
end

-- ---- leases (ids are decimal strings: int64 beyond 2^53) ----

local function lease_id(v)
  if type(v) ~= 'string' or not v:match('^%d+$') or #v > 20 or v == '0' then
    return nil
  end
  return v
end

--- Grant a lease of `ttl` seconds. Returns its id (a decimal string) and the granted TTL,
--- or nil, msg, code.
function Client:grant(ttl)
  assert(type(ttl) == 'number' and ttl >= 1, 'etcd grant: ttl >= 1 s')
  local doc, err, code = self:call('/v3/lease/grant', { TTL = tostring(math.floor(ttl)) })
  if not doc then
    return nil, err, code
  end
  local id, granted = lease_id(doc.ID), M.int(doc.TTL)
  if not id or not granted or granted < 1 then
    return perr('lease grant without an id or a TTL' .. (doc.error and (': ' .. doc.error) or ''))
  end
  return id, granted
end

--- Refresh lease `id` once. Returns its remaining TTL (seconds), or nil, msg, code
--- (ENOENT: the lease expired or was revoked).
function Client:keepalive(id)
  local doc, err, code = self:call('/v3/lease/keepalive', { ID = id })
  if not doc then
    return nil, err, code
  end
  local r = doc.result
  if type(r) ~= 'table' then
    return perr('keepalive without a result')
  end
  local ttl = M.int(r.TTL)
  if not ttl then
    return perr('keepalive TTL is not an integer')
  end
  if ttl <= 0 then
    return nil, ('ENOENT: etcd lease %s expired or was revoked'):format(id), 'ENOENT'
  end
  return ttl
end

--- Revoke lease `id` (its keys go). True, or nil, msg, code (a lease already gone is true).
function Client:revoke(id)
  local doc, err, code = self:call('/v3/lease/revoke', { ID = id })
  if not doc then
    if tostring(err):find('lease not found', 1, true) then
      return true
    end
    return nil, err, code
  end
  return true
end

--- Whether the cluster answers: the status of one call (a cheap range), true or nil, msg, code.
function Client:ping()
  local r, err, code = self:range('\0', { count_only = true, limit = 1 })
  if not r then
    return nil, err, code
  end
  return true, r.revision
end

--- The endpoint tried first, and call/failover counters.
function Client:status()
  return { endpoint = self.endpoints[self.current], endpoints = self.endpoints,
    calls = self.calls, failovers = self.failovers }
end

return M
