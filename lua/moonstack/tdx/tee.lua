-- SPDX-License-Identifier: Apache-2.0
-- The `tdx` TEE backend (real hardware: configfs-tsm, else TDREPORT + the host quote service;
-- RTMRs via sysfs, else the ioctl), in the interface of moonstack.core.tee, where loading this
-- module registers it as 'tdx' (and the software TDX, moonstack.sim, as 'sim', loaded on
-- first use).
local uv = require('luv')
local native = require('moonstack.native.tdx')
local eventlog = require('moonstack.tdx.eventlog')
local errors = require('moonstack.core.errors')
local task = require('moonstack.core.task')
local tee = require('moonstack.core.tee')

local M = {}

-- ---- the tdx backend ----

local Tdx = {}
Tdx.__index = Tdx

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

-- Run native `fn(args..., cb)` on the thread pool inside a task, else synchronously.
local function call(fn, ...)
  if not task.current() then
    return fn(...)
  end
  local args = { n = select('#', ...), ... }
  return task.await(function(resume)
    args[args.n + 1] = resume
    local ok, err, code = fn(unpack(args, 1, args.n + 1))
    if not ok then
      resume(nil, err, code)
    end
  end)
end

-- An absolute-path override from opts or the environment; nil when unset.
local function override(value, env)
  local v = value
  if v == nil then
    v = os.getenv(env)
  end
  if v == nil then
    return nil
  end
  if v == '' then
    return nil, env .. ': empty path override'
  end
  if v:sub(1, 1) ~= '/' then
    return nil, ('%s must be absolute: %s'):format(env, v)
  end
  return v
end

local function pad64(report_data)
  if type(report_data) ~= 'string' then
    error('backend:get_quote: report_data must be a string', 3)
  end
  if #report_data > 64 then
    return errors.fail('EINVAL', ('report_data is %d bytes (64 at most)'):format(#report_data))
  end
  return report_data .. ('\0'):rep(64 - #report_data)
end

--- Create a `tdx` backend. opts (all optional): root (prefix of the standard paths, for fake
--- trees), configfs_path (else env DCAP_TDX_QUOTE_CONFIGFS_PATH), rtmr_sysfs_path (else env
--- DCAP_TDX_RTMR_SYSFS_PATH), ccel_file (else env DSTACK_CCEL_FILE), device, attest_conf,
--- qgs ({path=} or {cid=, port=}, else the port in /etc/tdx-attest.conf), tsm (configfs-tsm
--- timing: poll_ms, timeout_ms, busy_sleep_ms, busy_retries, provider_retries,
--- provider_wait_ms), runtime_log_dir (/run/log/dstack).
function M.new_tdx(opts)
  opts = opts or {}
  local root = opts.root or ''
  local self = setmetatable({ name = 'tdx', simulated = false, root = root }, Tdx)
  local err
  for _, o in ipairs({ { 'configfs_path', 'DCAP_TDX_QUOTE_CONFIGFS_PATH' },
      { 'rtmr_sysfs_path', 'DCAP_TDX_RTMR_SYSFS_PATH' }, { 'ccel_file', 'DSTACK_CCEL_FILE' } }) do
    self[o[1]], err = override(opts[o[1]], o[2])
    if err then
      return errors.fail('EINVAL', err)
    end
  end
  self.device = opts.device or root .. native.DEVICE
  self.attest_conf = opts.attest_conf or root .. '/etc/tdx-attest.conf'
  self.ccel_file = self.ccel_file or root .. '/sys/firmware/acpi/tables/data/CCEL'
  self.runtime_log_dir = opts.runtime_log_dir or root .. '/run/log/dstack'
  self.qgs = opts.qgs
  self.tsm = {}
  for k, v in pairs(opts.tsm or {}) do
    self.tsm[k] = v
  end
  self.tsm.root = root ~= '' and root or nil
  self.tsm.entry = self.configfs_path
  return self
end

-- The QGS endpoint: opts.qgs, else `port=<n>` in the attest config.
function Tdx:qgs_endpoint()
  if self.qgs then
    return self.qgs
  end
  local f = io.open(self.attest_conf, 'r')
  if not f then
    return nil
  end
  local text = f:read('*a')
  f:close()
  for line in text:gmatch('[^\n]+') do
    local port = tonumber(line:match('^%s*port%s*=%s*(%d+)%s*$'))
    if port and port > 0 then
      return { cid = native.QGS_HOST_CID, port = port }
    end
  end
  return nil
end

--- How quotes are obtained ('configfs' or 'qgs'), as dstack's tdx-attest selects it; or nil,
--- 'ENOTSUP: no quote method available ...', 'ENOTSUP'.
function Tdx:quote_method()
  local report = self.root .. '/sys/kernel/config/tsm/report'
  if self.configfs_path or exists(report .. '/com.intel.dcap') or exists(report) then
    return 'configfs'
  end
  if self:qgs_endpoint() then
    return 'qgs'
  end
  return errors.fail('ENOTSUP', ('no quote method available (no %s, no port in %s)'):format(
    report, self.attest_conf))
end

--- A quote binding `report_data` (zero-padded to 64 bytes).
function Tdx:get_quote(report_data)
  local rd, err, code = pad64(report_data)
  if not rd then
    return nil, err, code
  end
  local method
  method, err, code = self:quote_method()
  if not method then
    return nil, err, code
  end
  if method == 'configfs' then
    return call(native.tsm_get_quote, self.tsm, rd)
  end
  local tdreport
  tdreport, err, code = call(native.guest_get_report, self.device, rd)
  if not tdreport then
    return nil, err, code
  end
  return call(native.qgs_get_quote, self:qgs_endpoint(), tdreport)
end

--- The TDREPORT (1024 bytes) for `report_data` from GET_REPORT0.
function Tdx:get_report(report_data)
  local rd, err, code = pad64(report_data)
  if not rd then
    return nil, err, code
  end
  return call(native.guest_get_report, self.device, rd)
end

function Tdx:measurements_dir()
  if self.rtmr_sysfs_path then
    return self.rtmr_sysfs_path
  end
  local dir = self.root .. native.SYSFS_MEASUREMENTS
  return exists(dir) and dir or nil
end

--- RTMR[index] = SHA-384(RTMR || digest): through sysfs when present, else the ioctl.
function Tdx:extend_rtmr(index, digest)
  if type(index) ~= 'number' or index < 0 or index > 3 or index % 1 ~= 0 then
    error('backend:extend_rtmr: index must be 0..3', 2)
  end
  if type(digest) ~= 'string' or #digest ~= 48 then
    error('backend:extend_rtmr: digest must be 48 bytes', 2)
  end
  local dir = self:measurements_dir()
  if dir then
    return native.sysfs_extend_rtmr(dir, index, digest)
  end
  return call(native.guest_extend_rtmr, self.device, index, digest)
end

--- Current RTMR0..3 (binary): from sysfs when present, else from a TDREPORT.
function Tdx:rtmrs()
  local dir = self:measurements_dir()
  local out = {}
  if dir then
    for i = 0, 3 do
      local mr, err, code = native.sysfs_read_mr(dir, 'rtmr' .. i)
      if not mr then
        return nil, err, code
      end
      out[i + 1] = mr
    end
    return out
  end
  local report, err, code = self:get_report('')
  if not report then
    return nil, err, code
  end
  for i = 0, 3 do
    out[i + 1] = report:sub(721 + 48 * i, 768 + 48 * i) -- TDINFO.RTMR[i] at 720 + 48 i
  end
  return out
end

--- The full event log: the CCEL (ACPI labels applied), then the runtime events.
function Tdx:event_log()
  local f, ferr = io.open(self.ccel_file, 'rb')
  if not f then
    return errors.fail('ENOENT', 'cannot read the CCEL: ' .. tostring(ferr))
  end
  local data = f:read('*a')
  f:close()
  local events, err, code = eventlog.from_ccel(data)
  if not events then
    return nil, err, code
  end
  return eventlog.append_runtime_log(events, self.runtime_log_dir)
end

--- Extend RTMR3 with a runtime event and log it (eventlog.emit in runtime_log_dir).
function Tdx:emit_event(name, payload, opts)
  return eventlog.emit_logged(self, self.runtime_log_dir, name, payload, opts)
end

--- What this backend uses.
function Tdx:info()
  local method = self:quote_method()
  return { name = self.name, simulated = false, quote_method = method,
    configfs_path = self.configfs_path, measurements_dir = self:measurements_dir(),
    device = self.device, ccel_file = self.ccel_file, runtime_log_dir = self.runtime_log_dir,
    qgs = self:qgs_endpoint() }
end

tee.register('tdx', M.new_tdx, 'Intel TDX hardware (configfs-tsm, /dev/tdx_guest, QGS)')
tee.register('sim', 'moonstack.sim', 'software TDX with a simulated PKI (development, CI)')
tee.register('sim-remote', 'moonstack.sim.remote',
  'software TDX held by the host (the VMM\'s simulated quote service, over the VM\'s channel)')

return M
