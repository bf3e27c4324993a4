-- SPDX-License-Identifier: Apache-2.0
-- The simulated TDX backend ("sim"): a software TDX for development and CI, over the
-- moonstack.native.sim state directory. It is only ever used when selected explicitly by name
-- with its own state directory and CVM name; nothing falls back to it. Quotes are real-format
-- v4 quotes that chain to the simulator's own root CA ("moonstack TDX Simulation Root CA"), so
-- a verifier accepts them only when told to trust that root. It implements the TEE backend
-- interface of moonstack.core.tee, where it is registered as 'sim'.
--
--   local tee = assert(require('moonstack.core.tee').create('sim',
--     { dir = '/var/lib/moonstack/sim', cvm = 'app-1', create = true }))
--   local quote = assert(tee:get_quote(report_data))   -- report_data <= 64 bytes, zero padded
--   assert(tee:extend_rtmr(3, digest48))
--   local r = tee:rtmrs()                              -- r[1] .. r[4] = RTMR0 .. RTMR3
local errors = require('moonstack.core.errors')
local eventlog = require('moonstack.tdx.eventlog')
local native = require('moonstack.native.sim')

local M = {}

--- The backend's name in a backend registry.
M.name = 'sim'
--- CN of the simulated root CA.
M.ROOT_CA_CN = native.ROOT_CA_CN

local TD_SIZES = {
  td_attributes = 8, xfam = 8, mrtd = 48, mr_config_id = 48, mr_owner = 48,
  mr_owner_config = 48, rtmr0 = 48, rtmr1 = 48, rtmr2 = 48, rtmr3 = 48,
}

local function unhex(s)
  return (s:gsub('..', function(h) return string.char(tonumber(h, 16)) end))
end

-- Accept each TD value as raw bytes of the right size or as hex (optional 0x).
local function td_values(fn, td)
  if td == nil then return nil end
  if type(td) ~= 'table' then
    error(('%s: td must be a table'):format(fn), 3)
  end
  local out = {}
  for k, v in pairs(td) do
    local size = TD_SIZES[k]
    if not size then
      error(('%s: unknown TD field %s'):format(fn, tostring(k)), 3)
    end
    if type(v) ~= 'string' then
      error(('%s: TD field %s must be a string'):format(fn, k), 3)
    end
    local h = v:gsub('^0[xX]', '')
    if #v == size then
      out[k] = v
    elseif #h == 2 * size and not h:find('[^0-9a-fA-F]') then
      out[k] = unhex(h)
    else
      error(('%s: TD field %s must be %d bytes or %d hex digits'):format(fn, k, size, 2 * size), 3)
    end
  end
  return out
end

--- Whether `dir` holds a simulated platform (its platform.conf, written last when created).
function M.exists(dir)
  local f = io.open(dir .. '/platform.conf', 'rb')
  if f then
    f:close()
    return true
  end
  return false
end

-- nil, 'ENOENT: no simulated platform in DIR ...' for a directory holding none.
local function absent(dir, what)
  local abs = dir
  if dir:sub(1, 1) ~= '/' then
    abs = ('%s/%s (relative to the current directory)'):format(require('luv').cwd(), dir)
  end
  return errors.fail('ENOENT', ('no simulated platform in %s (%s/platform.conf is missing)%s')
    :format(abs, dir, what or ''))
end

--- Open a simulator state directory: the native object, for tools that manage CVMs
--- (create_cvm, cvm, remove_cvm, collateral, root_ca ...). The platform is created on first
--- use unless opts.create == false: then a directory without one is nil, 'ENOENT: no
--- simulated platform in DIR ...', 'ENOENT' (a verifier told to trust a platform must not
--- invent a new one).
---@param dir string
---@return userdata|nil sim, string|nil err, string|nil code
function M.open(dir, opts)
  if type(dir) ~= 'string' or dir == '' then
    error('sim.open: dir must be a non-empty string', 2)
  end
  if opts and opts.create == false and not M.exists(dir) then
    return absent(dir)
  end
  return native.open(dir)
end

--- What a verifier needs to trust the existing simulated platform in `dir`: its root CA and
--- its collateral valid at `at` (Unix seconds, default now), into `vopts` (verifier options:
--- vopts.collateral, vopts.root_ca). Never creates a platform. Returns true or nil, err, code.
function M.trust(vopts, dir, at)
  local s, err, code = M.open(dir, { create = false })
  if not s then
    return nil, err, code
  end
  vopts.collateral, err, code = s:collateral(at or os.time())
  vopts.root_ca = vopts.collateral and s:root_ca()
  s:close()
  if not vopts.collateral then
    return nil, err, code
  end
  return true
end

-- The TdxEvents of a CCEL file.
local function read_ccel(path)
  local f, ferr = io.open(path, 'rb')
  if not f then
    return errors.fail('ENOENT', 'cannot read the CCEL: ' .. tostring(ferr))
  end
  local data = f:read('*a')
  f:close()
  return eventlog.from_ccel(data)
end

-- TD values for a new CVM: opts.td over the defaults, RTMR0..2 replayed from opts.ccel_file.
local function initial_td(opts)
  local td = td_values('sim.new', opts.td)
  if not opts.ccel_file then return td end
  local events, err, code = read_ccel(opts.ccel_file)
  if not events then return nil, err, code end
  local r
  r, err, code = eventlog.replay(events, { binary = true })
  if not r then return nil, err, code end
  td = td or {}
  td.rtmr0, td.rtmr1, td.rtmr2 = r[1], r[2], r[3]
  return td
end

local Backend = {}
Backend.__index = Backend

function Backend:__tostring()
  return ('moonstack.sim backend (cvm %s, %s)'):format(self.cvm, self.dir)
end

local function live(self, fn)
  if not self.sim then
    error(('sim backend:%s: the backend is closed'):format(fn), 3)
  end
  return self.sim
end

--- A fresh v4 quote over `report_data` (at most 64 bytes, zero padded to 64).
---@param report_data string
---@return string|nil quote, string|nil err, string|nil code
function Backend:get_quote(report_data)
  local s = live(self, 'get_quote')
  if type(report_data) ~= 'string' then
    error('sim backend:get_quote: report_data must be a string', 2)
  end
  if #report_data > 64 then
    return errors.fail('EINVAL', ('report_data is %d bytes, at most 64 allowed'):format(#report_data))
  end
  return s:quote(self.cvm, report_data)
end

--- Extend RTMR `index` (0..3) with a 48-byte digest: RTMR = SHA-384(RTMR || digest).
---@return boolean|nil ok, string|nil err, string|nil code
function Backend:extend_rtmr(index, digest)
  local s = live(self, 'extend_rtmr')
  if type(index) ~= 'number' or index % 1 ~= 0 or index < 0 or index > 3 then
    error('sim backend:extend_rtmr: index must be an integer 0..3', 2)
  end
  if type(digest) ~= 'string' or #digest ~= 48 then
    error('sim backend:extend_rtmr: digest must be 48 bytes', 2)
  end
  local value, err, code = s:extend_rtmr(self.cvm, index, digest)
  if not value then return nil, err, code end
  return true
end

--- The current RTMRs as a list: [1] = RTMR0 ... [4] = RTMR3 (48 raw bytes each).
---@return table|nil rtmrs, string|nil err, string|nil code
function Backend:rtmrs()
  local td, err, code = live(self, 'rtmrs'):cvm(self.cvm)
  if not td then return nil, err, code end
  return { td.rtmr0, td.rtmr1, td.rtmr2, td.rtmr3 }
end

--- All TD values of the CVM (raw bytes): td_attributes, xfam, mrtd, mr_config_id, mr_owner,
--- mr_owner_config, rtmr0..rtmr3.
function Backend:measurements()
  return live(self, 'measurements'):cvm(self.cvm)
end

--- What this backend is: { name = 'sim', simulated = true, dir, cvm, root_ca_cn, ccel_file,
--- runtime_log_dir }.
function Backend:info()
  live(self, 'info')
  return { name = M.name, simulated = true, dir = self.dir, cvm = self.cvm,
    root_ca_cn = M.ROOT_CA_CN, ccel_file = self.ccel_file, runtime_log_dir = self.runtime_log_dir }
end

--- The event log: the boot events of `ccel_file` (none without one), then the runtime events
--- logged in `runtime_log_dir`. Replaying it gives the RTMRs when every extension went through
--- emit_event (or the CCEL).
function Backend:event_log()
  live(self, 'event_log')
  local events = {}
  if self.ccel_file then
    local err, code
    events, err, code = read_ccel(self.ccel_file)
    if not events then return nil, err, code end
  end
  return eventlog.append_runtime_log(events, self.runtime_log_dir)
end

--- Extend RTMR3 with a runtime event and log it in `runtime_log_dir` (eventlog.emit; opts.version
--- or the directory's runtime_event_version). Returns the digest.
function Backend:emit_event(name, payload, opts)
  live(self, 'emit_event')
  return eventlog.emit_logged(self, self.runtime_log_dir, name, payload, opts)
end

--- Collateral JSON for the simulated platform (the dcap-qvl format), valid around `now`.
function Backend:collateral(now)
  return live(self, 'collateral'):collateral(now)
end

--- The simulated root CA: PEM, DER (the only trust anchor its quotes chain to).
function Backend:root_ca()
  return live(self, 'root_ca'):root_ca()
end

--- Release the state directory handle (idempotent).
function Backend:close()
  if self.sim then
    self.sim:close()
    self.sim = nil
  end
end

--- Select the simulated TDX for one CVM. `opts.dir` (state directory) and `opts.cvm` (CVM
--- name) are required: there is no default, so the simulator is never picked by accident.
--- With `opts.create`, a missing CVM is created; `opts.reset` recreates it even if it exists.
--- A new CVM gets `opts.td` (raw or hex TD values, defaults otherwise) and, with
--- `opts.ccel_file`, RTMR0..2 replayed from that CCEL (whose events event_log() then returns).
--- `opts.runtime_log_dir` (default <dir>/cvms/<cvm>.runtime) holds the runtime event log.
---@param opts table { dir, cvm, create?, reset?, td?, ccel_file?, runtime_log_dir? }
---@return table|nil backend, string|nil err, string|nil code
function M.new(opts)
  if type(opts) ~= 'table' then
    error('sim.new: opts must be a table', 2)
  end
  if type(opts.dir) ~= 'string' or opts.dir == '' then
    error('sim.new: opts.dir (the simulator state directory) is required', 2)
  end
  if type(opts.cvm) ~= 'string' or opts.cvm == '' then
    error('sim.new: opts.cvm (the CVM name) is required', 2)
  end
  for _, k in ipairs({ 'ccel_file', 'runtime_log_dir' }) do
    if opts[k] ~= nil and (type(opts[k]) ~= 'string' or opts[k] == '') then
      error(('sim.new: opts.%s must be a non-empty string'):format(k), 2)
    end
  end
  local td, err, code = initial_td(opts)
  if err then return nil, err, code end
  if not (opts.create or opts.reset) and not M.exists(opts.dir) then
    return absent(opts.dir, (': no CVM %s there'):format(opts.cvm))
  end
  local s
  s, err, code = native.open(opts.dir)
  if not s then return nil, err, code end
  local ok
  if opts.reset then
    ok, err, code = s:create_cvm(opts.cvm, td, true)
  else
    ok, err, code = s:cvm(opts.cvm)
    if not ok and code == 'ENOENT' and opts.create then
      ok, err, code = s:create_cvm(opts.cvm, td, false)
      if not ok and code == 'EEXIST' then -- created concurrently: use it
        ok, err, code = s:cvm(opts.cvm)
      end
    end
  end
  if not ok then
    s:close()
    return nil, err, code
  end
  return setmetatable({ sim = s, dir = opts.dir, cvm = opts.cvm, name = M.name, simulated = true,
    ccel_file = opts.ccel_file,
    runtime_log_dir = opts.runtime_log_dir or ('%s/cvms/%s.runtime'):format(opts.dir, opts.cvm),
  }, Backend)
end

return M
