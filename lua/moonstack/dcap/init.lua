-- SPDX-License-Identifier: Apache-2.0
-- DCAP quote verification over moonstack.native.dcap: collateral objects (dcap-qvl's
-- QuoteCollateralV3 JSON, parsed once and cached) and verifiers (the Intel SGX Root CA, pinned
-- by its SHA-256, or a simulator root when asked). Contract: native/dcap/README.md.
--
--   local dcap = require('moonstack.dcap')
--   local coll = assert(dcap.collateral(json_text))
--   local v = assert(dcap.verifier({ root_ca = nil, simulator = false }))
--   local report, err, code = v:verify(quote_bytes, coll, { now = os.time() })
--   -- report.status, report.advisory_ids, report.tee_type, report.mrtd, ... (hex)
local native = require('moonstack.native.dcap')
local quote = require('moonstack.tdx.quote')

local M = {}

--- SHA-256 (hex) of the Intel SGX Root CA trusted by default.
M.INTEL_ROOT_CA_SHA256 = native.INTEL_ROOT_CA_SHA256
--- TCB statuses in increasing severity ('UpToDate' ... 'Revoked').
M.STATUSES = native.STATUSES

local SEVERITY = {}
for i, name in ipairs(native.STATUSES) do
  SEVERITY[name] = i - 1
end

--- Severity of a TCB status name (0 = UpToDate ... 6 = Revoked), nil if unknown.
---@param status string
function M.severity(status)
  return SEVERITY[status]
end

--- The Intel SGX Root CA certificate (DER).
function M.intel_root_ca()
  return native.intel_root_ca()
end

--- Parse collateral once: the QuoteCollateralV3 JSON text, or a table of its fields (PEM and
--- JSON documents as strings, CRLs and signatures as hex). Returns a Collateral object
--- (`:info()`, `:close()`) or nil, "ECOLLATERAL: ...", 'ECOLLATERAL'.
---@param src string|table
function M.collateral(src)
  if type(src) ~= 'string' and type(src) ~= 'table' then
    error('dcap.collateral: expected the collateral JSON text or a table of its fields', 2)
  end
  return native.collateral(src)
end

--- Read and parse a collateral JSON file. Returns a Collateral or nil, msg, code.
---@param path string
function M.read_collateral(path)
  if type(path) ~= 'string' then
    error('dcap.read_collateral: path must be a string', 2)
  end
  local f, err = io.open(path, 'rb')
  if not f then
    return nil, 'ENOENT: ' .. tostring(err), 'ENOENT'
  end
  local text = f:read('*a')
  f:close()
  return native.collateral(text)
end

local Verifier = {}
Verifier.__index = Verifier

local VERIFIER_OPTS = { root_ca = 'string', simulator = 'boolean', allow_debug = 'boolean',
  allow_service_td = 'boolean' }

--- Create a verifier. Options: `root_ca` (DER or PEM; nil = the Intel SGX Root CA), `simulator`
--- (trust `root_ca` although it is not Intel's; reports then say `simulated = true`),
--- `allow_debug`, `allow_service_td`. A root other than Intel's without `simulator` is
--- nil, "ECHAIN: ...", 'ECHAIN'.
---@param opts table|nil
function M.verifier(opts)
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('dcap.verifier: opts must be a table', 2)
  end
  for k, v in pairs(opts) do
    if not VERIFIER_OPTS[k] then
      error(('dcap.verifier: unknown option %s'):format(tostring(k)), 2)
    end
    if type(v) ~= VERIFIER_OPTS[k] then
      error(('dcap.verifier: option %s must be a %s'):format(k, VERIFIER_OPTS[k]), 2)
    end
  end
  if opts.simulator and not opts.root_ca then
    error('dcap.verifier: simulator = true needs root_ca (the simulator root)', 2)
  end
  local v, err, code = native.verifier(opts)
  if not v then
    return nil, err, code
  end
  return setmetatable({ native = v, simulator = opts.simulator == true }, Verifier)
end

--- Verify `quote` (bytes, or hex text with optional 0x) against `coll` at `opts.now` (unix
--- seconds; default now). Returns the report table or nil, "CODE: reason", CODE.
---@param q string
---@param coll userdata a Collateral from dcap.collateral()
---@param opts table|nil { now = unix_seconds }
function Verifier:verify(q, coll, opts)
  if type(q) ~= 'string' then
    error('verifier:verify: quote must be a string', 2)
  end
  opts = opts or {}
  if type(opts) ~= 'table' then
    error('verifier:verify: opts must be a table', 2)
  end
  for k in pairs(opts) do
    if k ~= 'now' then
      error(('verifier:verify: unknown option %s'):format(tostring(k)), 2)
    end
  end
  local now = opts.now or os.time()
  if type(now) ~= 'number' or now < 0 or now ~= math.floor(now) then
    error('verifier:verify: now must be a non-negative integer (unix seconds)', 2)
  end
  -- Binary quotes start with a little-endian version (3..5), never with hex text.
  if q:find('^%s*%x') then
    local err, code
    q, err, code = quote.decode_input(q)
    if not q then
      return nil, err, code
    end
  end
  return self.native:verify(q, coll, now)
end

--- The DER of the trusted root.
function Verifier:root_ca()
  return self.native:root_ca()
end

--- Whether this verifier trusts a simulator root.
function Verifier:simulated()
  return self.native:simulated()
end

--- Release the verifier's caches (idempotent).
function Verifier:close()
  self.native:close()
end

function Verifier:__tostring()
  return tostring(self.native)
end

return M
