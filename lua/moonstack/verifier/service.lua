-- SPDX-License-Identifier: Apache-2.0
-- The verifier service (`moonstack verifier -c verifier.lua`): dstack-verifier's HTTP API
-- (kms-vmm-gateway.md §8) over moonstack.verifier.
--
--   POST /verify  {"attestation": hex} | {"quote": hex, "event_log": "<JSON array>",
--                 "vm_config": "<JSON>"} [, "debug": bool]
--     -> 200 {"is_valid", "details": {quote_verified, event_log_verified,
--        os_image_hash_verified, acpi_tables_verified, tee_variant, report_data, tcb_status,
--        advisory_ids, key_provider, app_info, boot_info, rtmr_debug (debug)}, "reason",
--        + ours: "status", "simulated", "policy": {ok, violations}, "error_code"}
--     -> 400 {"error"} for a body that is not a JSON object
--   GET /health  -> {"status": "ok", "service": "dstack-verifier"}
--
-- What the upstream fields mean here (we do not download OS images): quote_verified = DCAP
-- verification passed (and a simulated quote is allowed); event_log_verified = the log passed
-- the digest-binding and replay checks of the policy (replay_rtmrs); os_image_hash_verified =
-- the policy pins os_image_hash and the measured event matches; acpi_tables_verified = the
-- policy pins expected_bootchain (MRTD, RTMR0-2) and it matches. is_valid = verified, policy
-- satisfied, an event log given, and (for attestations) the TD's report_data equal to the
-- attestation's.
local codec = require('moonstack.core.codec')
local cjson = require('cjson.safe')
local config = require('moonstack.core.config')
local errors = require('moonstack.core.errors')
local eventlog = require('moonstack.tdx.eventlog')
local json = require('moonstack.core.json')
local log = require('moonstack.core.log').new('verifier')
local policy_mod = require('moonstack.verifier.rules')
local server = require('moonstack.http.server')
local verifier = require('moonstack.verifier')

local M = {}

--- The config schema (moonstack.core.schema).
M.SCHEMA = {
  type = 'table',
  fields = {
    listen = { type = 'table', default = { host = '127.0.0.1', port = 8080 }, fields = {
      host = { type = 'string', optional = true },
      port = { type = 'integer', min = 0, max = 65535, optional = true },
      unix = { type = 'string', optional = true },
    }, check = function(l)
      if (l.unix ~= nil) == (l.port ~= nil or l.host ~= nil) then
        return nil, 'give host and port, or unix'
      end
      return true
    end },
    collateral = { type = 'table', fields = {
      file = { type = 'string', optional = true },
      pccs = { type = 'string', pattern = '^https?://', optional = true },
      cache_dir = { type = 'string', optional = true },
      timeout_ms = { type = 'integer', min = 1, default = 30000 },
      root_ca_crl_url = { type = 'string', pattern = '^https?://', optional = true },
    }, check = function(c)
      if (c.file ~= nil) == (c.pccs ~= nil) then
        return nil, 'give file or pccs'
      end
      if c.file and c.cache_dir then
        return nil, 'cache_dir goes with pccs'
      end
      return true
    end },
    policy = { type = 'any', optional = true, check = function(v)
      return type(v) == 'string' or type(v) == 'table', 'a policy file path or a policy table'
    end },
    root_ca = { type = 'string', optional = true },
    at = { type = 'integer', min = 0, max = 253402300799, optional = true }, -- 9999-12-31
    control = { type = 'string', optional = true },
    max_body = { type = 'integer', min = 1024, default = 16 * 1024 * 1024 },
  },
}

local function read(path)
  local f, err = io.open(path, 'rb')
  if not f then
    return errors.fail('ENOENT', tostring(err))
  end
  local data = f:read('*a')
  f:close()
  return data
end

--- Load and validate a config file. Returns the config or nil, msg, code.
function M.load_config(path)
  return config.load(path, M.SCHEMA, { root = 'config' })
end

--- Build a moonstack.verifier from a validated config (reads the policy, collateral and
--- root files). Returns it or nil, msg, code.
function M.build_verifier(cfg)
  local opts = { cache_dir = cfg.collateral.cache_dir, timeout_ms = cfg.collateral.timeout_ms,
    root_ca_crl_url = cfg.collateral.root_ca_crl_url, pccs = cfg.collateral.pccs }
  local err, code
  if type(cfg.policy) == 'string' then
    opts.policy, err, code = policy_mod.load(cfg.policy)
  elseif cfg.policy then
    opts.policy, err, code = policy_mod.validate(cfg.policy)
  end
  if cfg.policy and not opts.policy then
    return nil, err, code
  end
  if cfg.collateral.file then
    opts.collateral, err, code = read(cfg.collateral.file)
    if not opts.collateral then
      return nil, err, code
    end
  end
  if cfg.root_ca then
    opts.root_ca, err, code = read(cfg.root_ca)
    if not opts.root_ca then
      return nil, err, code
    end
  end
  return verifier.new(opts)
end

-- camelCase BootInfo keys, from the API's snake_case raw ones.
local BOOT_KEYS = { 'mrAggregated', 'osImageHash', 'mrSystem', 'appId', 'composeHash', 'instanceId',
  'deviceId', 'keyProviderInfo', 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3' }

-- The dstack-verifier `details` of a check result (moonstack.verifier check_quote) under
-- policy `p`.
local function details_of(result, p, debug)
  local r = result.report or {}
  local d = {
    quote_verified = result.verified, event_log_verified = false, os_image_hash_verified = false,
    acpi_tables_verified = false, advisory_ids = json.array({}),
  }
  if r.tee_type then
    d.tee_variant = result.tee_variant
    d.report_data = r.report_data
    d.tcb_status = result.status
    d.ppid = r.ppid -- the PCK certificate's platform id (hex; device_id = SHA-256 of it)
    for i, id in ipairs(result.advisory_ids) do
      d.advisory_ids[i] = id
    end
  end
  d.event_log_verified = result.event_log and result.event_log.verified or false
  local violated = {}
  for _, v in ipairs(result.violations) do
    violated[v.field:match('^[^.]+')] = true
  end
  if result.verified and p and not p.disable_runtime_verification then
    d.os_image_hash_verified = d.event_log_verified and not violated.os_image_hash
    d.acpi_tables_verified = not violated.expected_bootchain
  end
  if result.app_info then
    d.app_info = result.app_info
    d.key_provider = result.app_info.key_provider
  end
  local b = result.boot_info
  if b then
    d.boot_info = { teeVariant = b.tee_variant, tcbStatus = b.tcb_status, advisoryIds = d.advisory_ids }
    for _, k in ipairs(BOOT_KEYS) do
      d.boot_info[k] = codec.hex(b[k:gsub('%u', function(c) return '_' .. c:lower() end)])
    end
    -- as the AppInfo shows it: a vm_config may name an os_image_hash that is not hex
    d.boot_info.osImageHash = result.app_info.os_image_hash
  end
  if debug and result.event_log and result.event_log.replayed then
    d.rtmr_debug = { replayed = result.event_log.replayed,
      quoted = { rtmr0 = r.rtmr0, rtmr1 = r.rtmr1, rtmr2 = r.rtmr2, rtmr3 = r.rtmr3 } }
  end
  return d
end

local function invalid(reason, code)
  return { is_valid = false, reason = reason, error_code = code,
    details = { quote_verified = false, event_log_verified = false, os_image_hash_verified = false,
      acpi_tables_verified = false, advisory_ids = json.array({}) },
    policy = { ok = false, violations = json.array() } }
end

-- The check of a request body with verifier `v`: the API's result (accepted or not), or nil,
-- why the request is unreadable.
local function check(v, body, now)
  if body.attestation ~= nil and body.attestation ~= cjson.null then
    if type(body.attestation) ~= 'string' then
      return nil, 'attestation must be a hex string'
    end
    local bytes = codec.unhex(body.attestation)
    if not bytes then
      return nil, 'attestation is not hex'
    end
    local res, err, _, detail = v:check_attestation(bytes, { now = now })
    return res or detail, err
  end
  if type(body.quote) ~= 'string' then
    return nil, 'quote (hex) or attestation (hex) is required'
  end
  local q = codec.unhex(body.quote)
  if not q then
    return nil, 'quote is not hex'
  end
  if type(body.event_log) ~= 'string' then
    return nil, 'event_log (a JSON array as a string) is required'
  end
  local evs, err = eventlog.from_json(body.event_log)
  if not evs then
    return nil, 'event_log: ' .. err
  end
  local vm_config = body.vm_config
  if vm_config ~= nil and vm_config ~= cjson.null and type(vm_config) ~= 'string' then
    return nil, 'vm_config must be a JSON string'
  end
  local res, _, _, detail = v:check_quote(q, evs, { now = now,
    vm_config = vm_config ~= cjson.null and vm_config or nil })
  return res or detail
end

--- Handle one decoded /verify request body with verifier `v` (runs in a task when `v`
--- fetches collateral). Returns the response table.
function M.handle(v, body, opts)
  opts = opts or {}
  local result, err = check(v, body, opts.now)
  if not result then
    return invalid('invalid request: ' .. tostring(err), 'EINVAL')
  end
  local resp = { is_valid = false, details = details_of(result, v.policy, body.debug == true),
    policy = result.verification.policy }
  if result.report then
    resp.status, resp.simulated = result.status, result.report.simulated
  end
  local reasons = {}
  for _, f in ipairs(result.failures) do
    if f.stage == 'quote' then
      reasons[#reasons + 1] = 'quote verification failed: ' .. f.reason
      resp.error_code = f.code
    elseif f.stage == 'policy' then
      reasons[#reasons + 1] = ('policy %s: %s'):format(f.field, f.reason)
    else
      reasons[#reasons + 1] = f.reason
    end
  end
  resp.is_valid = #reasons == 0
  resp.reason = #reasons > 0 and table.concat(reasons, '; ') or json.null
  return resp
end

local Service = {}
Service.__index = Service

--- Create the service from a validated config. Returns it or nil, msg, code.
function M.new(cfg)
  local v, err, code = M.build_verifier(cfg)
  if not v then
    return nil, err, code
  end
  return setmetatable({ cfg = cfg, verifier = v, requests = 0 }, Service)
end

local function send(res, status, value)
  return res:send(status, json.encode(value), { ['content-type'] = 'application/json' })
end

--- Start listening. Returns self or nil, msg, code.
function Service:start()
  local srv = server.new({ name = 'verifier', listen = self.cfg.listen, max_body = self.cfg.max_body,
    headers = { ['x-app-version'] = 'moonstack' } })
  srv:get('/health', function(_, res)
    return send(res, 200, { status = 'ok', service = 'dstack-verifier' })
  end)
  srv:post('/verify', function(req, res)
    self.requests = self.requests + 1
    local body = cjson.decode(req.body or '')
    if type(body) ~= 'table' or body[1] ~= nil then
      return send(res, 400, { error = 'the body must be a JSON object' })
    end
    local resp = M.handle(self.verifier, body, { now = self.cfg.at })
    log.info('verify', { valid = resp.is_valid, status = resp.status, reason = resp.reason ~= json.null
      and resp.reason or nil })
    return send(res, 200, resp)
  end)
  local ok, err, code = srv:listen()
  if not ok then
    return nil, err, code
  end
  self.server = srv
  return self
end

--- Start the service from a validated config (the service contract of moonstack.daemon.serve).
--- Returns it listening, or nil, msg, code.
function M.start(cfg, log_)
  local s, err, code = M.new(cfg)
  if not s then
    return nil, err, code
  end
  local ok
  ok, err, code = s:start()
  if not ok then
    return nil, err, code
  end
  local l = log_ or log
  l.info('verifier listening', { address = s:address() })
  return s
end

--- A snapshot for the REPL.
function Service:status()
  return { address = self:address(), requests = self.requests, at = self.cfg.at }
end

-- Config keys a running verifier applies in place (the others need a restart).
local LIVE = { policy = true, collateral = true, root_ca = true, at = true, control = true }

--- Re-read the policy, collateral and root files of `cfg` (default: the current config);
--- the previous verifier stays on failure. `changed` (daemon.serve's) lists the changed
--- top-level keys: a listener change answers ERESTART. Returns true or nil, msg, code.
function Service:reload(cfg, changed)
  for _, k in ipairs(changed or {}) do
    if not LIVE[k] then
      return nil, ('ERESTART: %s changed: restart the verifier to apply'):format(k), 'ERESTART'
    end
  end
  local v, err, code = M.build_verifier(cfg or self.cfg)
  if not v then
    return nil, err, code
  end
  self.verifier = v
  if cfg then
    self.cfg.policy, self.cfg.collateral, self.cfg.root_ca, self.cfg.at = cfg.policy, cfg.collateral,
      cfg.root_ca, cfg.at
  end
  return true
end

--- The bound address ('host:port' or 'unix:/path').
function Service:address()
  return self.server and self.server:address()
end

--- The bound TCP port.
function Service:port()
  return self.server and self.server:port()
end

--- Stop listening (idempotent).
function Service:stop()
  if self.server then
    self.server:close()
    self.server = nil
  end
end

return M
