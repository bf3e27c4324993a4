-- SPDX-License-Identifier: Apache-2.0
-- Verification policy: what a verified quote (and its event log) must show to be accepted.
-- Atlas-compatible fields (concrete-security/atlas `DstackTdxPolicy`) plus moonstack's own;
-- unknown fields and contradictory combinations are errors that name the field.
--
--   type                          'dstack_tdx' (optional; Atlas's tag)
--   allowed_tcb_status            TCB statuses accepted (default {'UpToDate'}); never 'Revoked'
--   grace_period                  seconds an OutOfDate platform stays acceptable after the
--                                 tcbDate of its matched TCB level (needs an OutOfDate status
--                                 allowed)
--   expected_bootchain            { mrtd, rtmr0, rtmr1, rtmr2 } (hex, 48 bytes each)
--   os_image_hash                 hex (32 bytes): the measured os-image-hash runtime event
--   app_compose                   the expected app-compose: its SHA-256 as 64 hex digits; the
--                                 exact app-compose.json text (a string starting with '{',
--                                 hashed as is, as the guest does); or a JSON value (table),
--                                 hashed in Atlas's canonical form (sorted keys, compact)
--   disable_runtime_verification  skip expected_bootchain / os_image_hash / app_compose /
--                                 key_provider (default false; then all of the first three are
--                                 required, as in Atlas)
--   pccs_url, cache_collateral    Atlas's collateral settings (used by `moonstack verify`)
--   allow_simulator               accept quotes from the simulator root (default false)
--   allow_debug                   accept a TD with the DEBUG attribute (default false)
--   report_data                   hex (exact, zero-padded to 64 bytes), or { exact = hex },
--                                 { prefix = hex }, or { tag = 'app-data', content = hex,
--                                 hash = 'sha512' } (= pad64(H(tag ':' content)), dstack's rule)
--   replay_rtmrs                  RTMRs the event log replay must reproduce (default
--                                 {0, 1, 2, 3}; 3 is required)
--   key_provider                  { name = 'kms', id = hex? }: the key-provider runtime event
local codec = require('moonstack.core.codec')
local config = require('moonstack.core.config')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local json = require('moonstack.core.json')
local schema = require('moonstack.core.schema')

local M = {}

--- TCB statuses a DCAP verification can report, least severe first.
M.TCB_STATUSES = { 'UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded',
  'ConfigurationAndSWHardeningNeeded', 'TDRelaunchAdvised', 'TDRelaunchAdvisedConfigurationNeeded',
  'OutOfDate', 'OutOfDateConfigurationNeeded', 'Revoked' }
local HASHES = { sha256 = 32, sha384 = 48, sha512 = 64, keccak256 = 32 }

local function hex_node(size, extra)
  local n = { type = 'string', pattern = '^[0-9a-fA-F]*$', min = 2 * size, max = 2 * size }
  for k, v in pairs(extra or {}) do
    n[k] = v
  end
  return n
end

local function hex_upto(max)
  return { type = 'string', pattern = '^[0-9a-fA-F]*$', max = 2 * max,
    check = function(v) return #v % 2 == 0, 'odd number of hex digits' end }
end

local REPORT_DATA = {
  type = 'table', fields = {
    exact = hex_upto(64), prefix = hex_upto(64), tag = { type = 'string', optional = true },
    content = { type = 'string', pattern = '^[0-9a-fA-F]*$', optional = true },
    hash = { type = 'string', enum = { 'sha256', 'sha384', 'sha512', 'keccak256' }, optional = true },
  },
}
REPORT_DATA.fields.exact.optional = true
REPORT_DATA.fields.prefix.optional = true

local function check_report_data(v)
  if type(v) == 'string' then
    return true
  end
  local modes = (v.exact and 1 or 0) + (v.prefix and 1 or 0) + (v.tag and 1 or 0)
  if modes ~= 1 then
    return nil, 'give exactly one of exact, prefix or tag (+ content)'
  end
  if (v.content ~= nil or v.hash ~= nil) and not v.tag then
    return nil, 'content and hash go with tag'
  end
  if v.tag and not v.content then
    return nil, 'tag needs content (hex)'
  end
  if v.content and #v.content % 2 ~= 0 then
    return nil, 'content has an odd number of hex digits'
  end
  return true
end

--- The policy schema (moonstack.core.schema).
M.SCHEMA = {
  type = 'table',
  fields = {
    type = { type = 'string', enum = { 'dstack_tdx' }, optional = true },
    allowed_tcb_status = { type = 'table', default = { 'UpToDate' }, min = 1,
      items = { type = 'string', enum = M.TCB_STATUSES } },
    grace_period = { type = 'integer', min = 0, optional = true },
    expected_bootchain = { type = 'table', optional = true, fields = {
      mrtd = hex_node(48), rtmr0 = hex_node(48), rtmr1 = hex_node(48), rtmr2 = hex_node(48) } },
    os_image_hash = hex_node(32, { optional = true }),
    app_compose = { type = 'any', optional = true, check = function(v)
      if type(v) == 'table' then
        return true
      end
      if type(v) ~= 'string' then
        return nil, 'expected a string (hash or JSON text) or a table (JSON value)'
      end
      if v:match('^%x+$') and #v == 64 or v:match('^%s*{') then
        return true
      end
      return nil, 'a string must be the SHA-256 (64 hex digits) or the app-compose JSON text'
    end },
    disable_runtime_verification = { type = 'boolean', default = false },
    pccs_url = { type = 'string', pattern = '^https?://', optional = true },
    cache_collateral = { type = 'boolean', default = false },
    allow_simulator = { type = 'boolean', default = false },
    allow_debug = { type = 'boolean', default = false },
    report_data = { type = 'any', optional = true, check = function(v)
      if type(v) == 'string' then
        if not v:match('^[0-9a-fA-F]*$') or #v % 2 ~= 0 or #v > 128 then
          return nil, 'expected hex of at most 64 bytes'
        end
        return true
      end
      local ok, err = schema.validate(v, REPORT_DATA, 'report_data')
      if not ok then
        return nil, (err:gsub('^EINVAL: report_data%.?', ''))
      end
      return check_report_data(v)
    end },
    replay_rtmrs = { type = 'table', default = { 0, 1, 2, 3 }, min = 1, max = 4,
      items = { type = 'integer', min = 0, max = 3 } },
    key_provider = { type = 'table', optional = true, fields = {
      name = { type = 'string', enum = { 'none', 'kms', 'local-sgx', 'tpm' } },
      id = { type = 'string', pattern = '^[0-9a-fA-F]*$', optional = true } } },
  },
}

local compiled = setmetatable({}, { __mode = 'k' })

local contains = require('moonstack.core.tables').contains

-- Cross-field rules: { {field, reason} } for a schema-valid copy.
local function contradictions(p)
  local out = {}
  local function bad(field, reason)
    out[#out + 1] = ('policy.%s: %s'):format(field, reason)
  end
  if contains(p.allowed_tcb_status, 'Revoked') then
    bad('allowed_tcb_status', "'Revoked' can never be allowed: a revoked platform fails verification")
  end
  if p.grace_period ~= nil and not (contains(p.allowed_tcb_status, 'OutOfDate')
      or contains(p.allowed_tcb_status, 'OutOfDateConfigurationNeeded')) then
    bad('grace_period', 'applies to OutOfDate platforms only, but allowed_tcb_status does not '
      .. 'include OutOfDate')
  end
  local runtime = { 'expected_bootchain', 'os_image_hash', 'app_compose', 'key_provider' }
  if p.disable_runtime_verification then
    for _, f in ipairs(runtime) do
      if p[f] ~= nil then
        bad(f, 'is set but disable_runtime_verification is true, so it would be ignored')
      end
    end
  else
    local missing = {}
    for i = 1, 3 do
      if p[runtime[i]] == nil then
        missing[#missing + 1] = runtime[i]
      end
    end
    if #missing > 0 then
      bad(missing[1], ('%s required unless disable_runtime_verification is true (missing: %s)')
        :format(#missing > 1 and 'expected_bootchain, os_image_hash and app_compose are'
          or 'is', table.concat(missing, ', ')))
    end
  end
  local seen = {}
  for _, i in ipairs(p.replay_rtmrs) do
    if seen[i] then
      bad('replay_rtmrs', ('lists RTMR%d twice'):format(i))
    end
    seen[i] = true
  end
  if not seen[3] then
    bad('replay_rtmrs', 'must include 3: runtime events (compose-hash, key-provider...) are '
      .. 'trusted only once RTMR3 replays')
  end
  return out
end

local function pad64(b)
  return b .. string.rep('\0', 64 - #b)
end

-- Precomputed values: compose hash, report_data rule (binary).
local function compile(p, raw_app_compose)
  local c = {}
  local ac = raw_app_compose or p.app_compose
  if type(ac) == 'table' then
    c.compose_hash = codec.hex(crypto.sha256(json.encode(ac)))
  elseif type(ac) == 'string' then
    if ac:match('^%x+$') and #ac == 64 then
      c.compose_hash = ac:lower()
    else
      c.compose_hash = codec.hex(crypto.sha256(ac))
    end
  end
  local rd = p.report_data
  if type(rd) == 'string' then
    rd = { exact = rd }
  end
  if rd then
    if rd.exact then
      c.report_data = { mode = 'exact', bytes = pad64(codec.unhex(rd.exact)) }
    elseif rd.prefix then
      c.report_data = { mode = 'prefix', bytes = codec.unhex(rd.prefix) }
    else
      local alg = rd.hash or 'sha512'
      local digest = crypto.hash(alg, rd.tag .. ':' .. codec.unhex(rd.content))
      c.report_data = { mode = 'exact', bytes = pad64(digest:sub(1, HASHES[alg])),
        rule = ('%s(%s:content)'):format(alg, rd.tag) }
    end
  end
  return c
end

--- Validate a policy table. Returns the validated policy (a copy with defaults, hex
--- lowercased) or nil, 'EINVAL: policy.<field>: <reason>[; ...]', 'EINVAL'. `raw_app_compose`
--- (internal) is the canonical JSON text of an app_compose read from a JSON file.
---@param t table
function M.validate(t, raw_app_compose)
  if compiled[t] then
    return t
  end
  if type(t) ~= 'table' then
    return errors.fail('EINVAL', ('policy: expected a table, got %s'):format(type(t)))
  end
  local p, err = schema.validate(t, M.SCHEMA, 'policy')
  if not p then
    return nil, err, 'EINVAL'
  end
  local bad = contradictions(p)
  if #bad > 0 then
    return errors.fail('EINVAL', table.concat(bad, '; '))
  end
  if p.expected_bootchain then
    for k, v in pairs(p.expected_bootchain) do
      p.expected_bootchain[k] = v:lower()
    end
  end
  if p.os_image_hash then
    p.os_image_hash = p.os_image_hash:lower()
  end
  if p.key_provider and p.key_provider.id then
    p.key_provider.id = p.key_provider.id:lower()
  end
  -- hash the caller's app_compose, not the schema's copy (which drops array marks)
  compiled[p] = compile(p, raw_app_compose or t.app_compose)
  return p
end

--- Load a policy file: JSON (an Atlas policy; first non-blank character '{') or a Lua chunk
--- returning a table (moonstack.core.config's sandbox). Returns the validated policy or nil,
--- msg, code (ENOENT, EPARSE, EINVAL).
---@param path string
function M.load(path)
  if type(path) ~= 'string' then
    error('policy.load: path must be a string', 2)
  end
  local f, oerr = io.open(path, 'rb')
  if not f then
    return errors.fail(oerr and oerr:find('No such file') and 'ENOENT' or 'EIO', tostring(oerr))
  end
  local text = f:read('*a')
  f:close()
  return M.load_string(text, path)
end

--- Load a policy from text (see load); `name` labels messages.
function M.load_string(text, name)
  name = name or 'policy'
  if text:match('^%s*{') then
    local v, raw = json.decode_with_raw(text)
    if v == nil then
      return nil, ('EPARSE: %s: %s'):format(name, raw:gsub('^EPARSE: ', '')), 'EPARSE'
    end
    if type(v) ~= 'table' or json.is_array(v) then
      return errors.fail('EINVAL', name .. ': the policy must be a JSON object')
    end
    local canonical
    if type(v.app_compose) == 'table' then
      canonical = assert(json.canonical(raw.app_compose))
    end
    local p, err, code = M.validate(v, canonical)
    if not p then
      return nil, ('%s: %s: %s'):format(code, name, err:gsub('^EINVAL: ', '')), code
    end
    return p
  end
  local t, err, code = config.load_string(text, '@' .. name)
  if not t then
    return nil, err, code
  end
  local p
  p, err, code = M.validate(t)
  if not p then
    return nil, ('%s: %s: %s'):format(code, name, err:gsub('^EINVAL: ', '')), code
  end
  return p
end

--- The SHA-256 (hex) the policy expects in the compose-hash event, or nil.
function M.compose_hash(p)
  local c = compiled[p]
  return c and c.compose_hash
end

local evaluate = require('moonstack.verifier.rules_eval')

--- Evaluate a policy (validated or not) against a verified report (moonstack.dcap's report:
--- hex fields, status, simulated, tcb_date...). opts: event_log (TdxEvents, or TdxEvent JSON
--- text/table), now (unix seconds, default os.time(); for grace_period), vm_config and ppid
--- (for app_info). Returns { ok, violations = { {field, reason} }, event_log = { given,
--- verified, replayed }, app_info } or nil, msg, code when the policy itself is invalid.
function M.evaluate(p, report, opts)
  if type(report) ~= 'table' then
    error('policy.evaluate: report must be a table', 2)
  end
  local v, err, code = M.validate(p)
  if not v then
    return nil, err, code
  end
  return evaluate(v, compiled[v], report, opts or {})
end

return M
