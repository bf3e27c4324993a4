-- SPDX-License-Identifier: Apache-2.0
-- The KMS's parts built from its validated config (moonstack.kms.config): the caller checker
-- (attestation), the sealer of the key directory (seal), the evidence of its own TEE (tee),
-- and the key directory's first filling (onboard: replicate, bootstrap, or onboarding mode).
-- moonstack.kms (init.lua) assembles them; `moonstack kms derive -c` uses the sealer.
local uv = require('luv')
local auth = require('moonstack.kms.auth')
local keys = require('moonstack.kms.keys')

local M = {}

--- The caller checker (moonstack.kms.attest) of a validated `attestation` config table.
function M.attest_from_config(a, image)
  local fs = require('moonstack.core.fs')
  local opts = { pccs = a.pccs, cache_dir = a.cache_dir, timeout_ms = a.timeout_ms,
    allow_simulator = a.allow_simulator }
  if image then
    opts.image = require('moonstack.kms.image').new(image.measurements_dir
      or image.cache_dir .. '/boot-measurements', { verify = image.verify })
  end
  local err, code
  if a.collateral_file then
    opts.collateral, err, code = fs.read_file(a.collateral_file, 16 * 1024 * 1024)
    if not opts.collateral then
      return nil, err, code
    end
  end
  if a.simulator_dir then -- development: the simulated platform's own root and collateral
    local ok
    -- never a new platform: a KMS told to trust one must not start trusting another
    ok, err, code = require('moonstack.sim').trust(opts, a.simulator_dir)
    if not ok and code == 'ENOENT' then
      return nil, ('simulator_dir: %s: give the state directory of the simulated platform the '
        .. 'CVMs run on (agent.lua tee.dir, or <socket-dir>/.moonstack-agent/sim of `moonstack '
        .. 'agent --simulator`), or create it first: moonstack sim init %s'):format(err,
        a.simulator_dir), code
    elseif not ok then
      return nil, err, code
    end
  end
  if a.root_ca_file then
    opts.root_ca, err, code = fs.read_file(a.root_ca_file, 1024 * 1024)
    if not opts.root_ca then
      return nil, err, code
    end
  end
  return require('moonstack.kms.attest').new(opts)
end

--- The sealer (moonstack.kms.seal) of a validated `seal` config table, or nil, msg, code.
function M.sealer_from_config(c)
  if c.tee == 'agent' then
    return require('moonstack.kms.seal').agent(c.socket)
  end
  local tee, err, code = require('moonstack.sim').new({ dir = c.dir, cvm = c.cvm })
  if not tee then
    return nil, err, code
  end
  local sealer
  sealer, err, code = require('moonstack.kms.seal').sim(tee)
  tee:close()
  return sealer, err, code
end

--- The evidence source of the KMS's own TEE (a validated `tee` config table): an object with
--- attestation(report_data, form) (moonstack.agent.client, or moonstack.tdx.evidence over a
--- simulated CVM) and close(); or nil, msg, code.
function M.evidence_from_config(c)
  if c.kind == 'agent' then
    local g = require('moonstack.agent.client').new(c.socket)
    g.close = function() end
    return g
  end
  local tee, err, code = require('moonstack.sim').new({ dir = c.dir, cvm = c.cvm })
  if not tee then
    return nil, err, code
  end
  local ev = require('moonstack.tdx.evidence').new({ tee = tee, vm_config = '' })
  return { attestation = function(_, rd, form) return ev:attestation(rd, form) end,
    close = function() tee:close() end }
end

--- Whether `dir` holds any of the root material files.
function M.has_keys(dir)
  for _, name in ipairs(keys.FILES) do
    if uv.fs_stat(dir .. '/' .. name) then
      return true
    end
  end
  return false
end

--- Fill cfg.key_dir as kms.lua `onboard` says (in a task): replicate from source_url, or
--- bootstrap auto_bootstrap_domain, or serve onboarding mode (moonstack.kms.onboarding) until
--- Finish. This KMS's evidence comes from cfg.tee, callers are checked with cfg.attestation and
--- cfg.auth. hooks.onboarding_ready(address) is told where onboarding mode listens. Returns
--- true or nil, msg, code.
function M.onboard_from_config(cfg, sealer, log, hooks)
  local o = cfg.onboard
  local ctx = { key_dir = cfg.key_dir, sealer = sealer, log = log, timeout_ms = o.timeout_ms,
    site_name = cfg.site_name, has_keys = function() return M.has_keys(cfg.key_dir) end }
  local err, code
  if cfg.attestation then
    ctx.attest, err, code = M.attest_from_config(cfg.attestation, cfg.image)
    if not ctx.attest then
      return nil, err, code
    end
  end
  ctx.auth, err, code = auth.new(cfg.auth)
  if not ctx.auth then
    return nil, err, code
  end
  local function done(...)
    if ctx.evidence then
      ctx.evidence:close()
    end
    ctx.auth:close()
    return ...
  end
  if cfg.tee then
    ctx.evidence, err, code = M.evidence_from_config(cfg.tee)
    if not ctx.evidence then
      return done(nil, err, code)
    end
    if ctx.attest and cfg.self_authorization then
      ctx.selfauth, err, code = require('moonstack.kms.selfauth').new({ evidence = ctx.evidence,
        attest = ctx.attest, auth = ctx.auth, log = log })
      if not ctx.selfauth then
        return done(nil, err, code)
      end
    end
  end
  local onboarding = require('moonstack.kms.onboarding')
  local source_url = o.source_url
  if o.source_from_cluster then -- the live onboarding source registered in etcd
    source_url, err, code = require('moonstack.kms.cluster').find_source(cfg.cluster,
      o.timeout_ms, log)
    if not source_url then
      return done(nil, err, code)
    end
  end
  if source_url then
    local m
    m, err, code = require('moonstack.kms.replicate').replicate({ source_url = source_url,
      key_dir = cfg.key_dir, evidence = ctx.evidence, attest = ctx.attest, auth = ctx.auth,
      sealer = sealer, timeout_ms = o.timeout_ms, log = log })
    return done(m and true, err, code)
  end
  if o.auto_bootstrap_domain then
    local r
    r, err, code = onboarding.bootstrap(ctx, o.auto_bootstrap_domain)
    if r then
      log.info('bootstrapped (auto_bootstrap_domain)', { domain = o.auto_bootstrap_domain,
        attested = r.attestation ~= '' })
    end
    return done(r and true, err, code)
  end
  return done(onboarding.serve(ctx, o.listen, hooks and hooks.onboarding_ready))
end

--- The runtime event a code swap is recorded under in RTMR3 (its payload: the code's SHA-256).
M.CODE_EVENT = 'moonstack-code'

--- The hook that records a code swap in the KMS's own TEE before it happens (tee config:
--- agent -> its guest agent's EmitEvent; sim -> the simulated CVM's RTMR3), or nil without a
--- TEE. hook(kms, staged) -> true | nil, msg, code.
function M.code_recorder(c)
  if not c then
    return nil
  end
  return function(_, staged)
    local digest = require('moonstack.crypto').unhex(staged.hash)
    if c.kind == 'agent' then
      return require('moonstack.agent.client').new(c.socket):emit_event(M.CODE_EVENT, digest)
    end
    local tee, err, code = require('moonstack.sim').new({ dir = c.dir, cvm = c.cvm })
    if not tee then
      return nil, err, code
    end
    local ok
    ok, err, code = tee:emit_event(M.CODE_EVENT, digest)
    tee:close()
    return ok and true, err, code
  end
end

return M
