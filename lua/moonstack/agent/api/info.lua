-- SPDX-License-Identifier: Apache-2.0
-- The guest API's identity answers (guest-and-attestation.md §1.3, §5.5): AppInfo with its
-- tcb_info (measurements from a fresh local quote with zero report_data, the full event log,
-- the raw app-compose), Version, GpuInfo, and the AppInfo fields of the RA-TLS extension 1.9.
-- AppInfo is rebuilt only when the event log changes (moonstack.tdx.evidence:version()).
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local quote = require('moonstack.tdx.quote')
local events_lib = require('moonstack.verifier.events')
local eventlog = require('moonstack.tdx.eventlog')
local proto = require('moonstack.core.proto')
local runtime = require('moonstack.native.runtime')

local M = {}

--- The dstack API level this agent serves (SDKs probe Version to detect OS >= 0.5.7 features).
M.VERSION = '0.5.8'

--- Version.rev: "git:" and 20 hex digits naming this build of moonstack (a digest of its
--- version string: moonstack does not embed a git revision).
M.REV = 'git:' .. crypto.hex(crypto.sha256('moonstack ' .. runtime.version())):sub(1, 20)

--- The `Server:` header value.
M.IDENT = 'moonstack guest agent'

--- Where GpuInfo reads the boot-time GPU attestation.
M.GPU_ATTESTATION_FILE = '/run/nvidia-gpu-attestation/attestation.out'

local Info = {}
Info.__index = Info

--- The identity source of a context. opts: dmi_dir (/sys/class/dmi/id), gpu_file.
function M.new(ctx, evidence, opts)
  opts = opts or {}
  return setmetatable({ ctx = ctx, evidence = evidence, dmi_dir = opts.dmi_dir or '/sys/class/dmi/id',
    gpu_file = opts.gpu_file or M.GPU_ATTESTATION_FILE, app_cert = '' }, Info)
end

local function read_trimmed(path)
  local text = fs.read_file(path, 4096)
  return text and (text:gsub('^%s+', ''):gsub('%s+$', '')) or ''
end

--- Version -> { version, rev }.
function M.version()
  return { version = M.VERSION, rev = M.REV }
end

--- GpuInfo -> { attestation = the file's text, '' if missing }.
function Info:gpu_info()
  return { attestation = fs.read_file(self.gpu_file) or '' }
end

-- The key-provider info JSON text: the measured event's payload, else from the context.
local function key_provider_text(ctx, events)
  local kp = events_lib.find(events, 'key-provider')
  if kp then
    return kp
  end
  local k = ctx.key_provider_info
  if type(k) == 'table' then
    return '{"name":' .. proto.json_string(k.name or 'none') .. ',"id":'
      .. proto.json_string(k.id or '') .. '}'
  end
  return type(k) == 'string' and k or ''
end

-- Pretty-printed JSON object (two-space indent) from ordered { key, raw JSON value } pairs.
local function pretty_object(pairs_list)
  local lines = {}
  for i, kv in ipairs(pairs_list) do
    lines[i] = '  "' .. kv[1] .. '": ' .. kv[2]
  end
  return '{\n' .. table.concat(lines, ',\n') .. '\n}'
end

-- Build the AppInfo state for the current event log.
function Info:_build()
  local ctx, ev = self.ctx, self.evidence
  local events, err, code = ev:events()
  if not events then
    return nil, err, code
  end
  local td
  td, err, code = quote.report_of(ev:quote(string.rep('\0', 64)))
  if not td then
    return nil, err, code
  end
  local report = {}
  for k, v in pairs(td) do
    if type(v) == 'string' then
      report[k] = crypto.hex(v)
    end
  end
  report.mrtd = report.mr_td
  -- Info is unverified by definition (upstream decodes its own attestation unchecked).
  local ai = events_lib.app_info(events, report, { ok = true }, { vm_config = ctx.vm_config })
  local function pick(measured, fallback)
    if measured ~= nil and measured ~= '' then
      return measured
    end
    return fallback and crypto.hex(fallback) or ''
  end
  local hexes = {
    app_id = pick(ai.app_id, ctx.app_id), instance_id = pick(ai.instance_id, ctx.instance_id),
    compose_hash = pick(ai.compose_hash, ctx.compose_hash), device_id = ai.device_id,
    mr_aggregated = ai.mr_aggregated, mr_system = ai.mr_system,
    os_image_hash = pick(ai.os_image_hash, ctx.os_image_hash),
  }
  local kp = key_provider_text(ctx, events)
  local full = {}
  for i, e in ipairs(events) do
    full[i] = eventlog.event_json(e)
  end
  local tcb_info = pretty_object({
    { 'mrtd', '"' .. report.mrtd .. '"' },
    { 'rtmr0', '"' .. report.rtmr0 .. '"' }, { 'rtmr1', '"' .. report.rtmr1 .. '"' },
    { 'rtmr2', '"' .. report.rtmr2 .. '"' }, { 'rtmr3', '"' .. report.rtmr3 .. '"' },
    { 'mr_aggregated', '"' .. hexes.mr_aggregated .. '"' },
    { 'os_image_hash', '"' .. hexes.os_image_hash .. '"' },
    { 'compose_hash', '"' .. hexes.compose_hash .. '"' },
    { 'device_id', '"' .. hexes.device_id .. '"' },
    { 'event_log', '[' .. table.concat(full, ',') .. ']' },
    { 'app_compose', proto.json_string(ctx.app_compose_text or '') },
  })
  local bin = {}
  for k, v in pairs(hexes) do
    bin[k] = crypto.unhex(v) or ''
  end
  bin.key_provider_info = kp
  return { hex = hexes, bin = bin, tcb_info = tcb_info, key_provider_info = kp }
end

-- The cached state for the current event log.
function Info:_state()
  local v = self.evidence:version()
  if self.cache and self.cache.version == v then
    return self.cache.state
  end
  local state, err, code = self:_build()
  if not state then
    return nil, err, code
  end
  self.cache = { version = v, state = state }
  return state
end

--- AppInfo (binary bytes fields, strings as such). `public` hides tcb_info and vm_config
--- unless allowed (Worker.Info with public_tcbinfo false).
function Info:app_info(public)
  local s, err, code = self:_state()
  if not s then
    return nil, err, code
  end
  local ctx = self.ctx
  local show_tcb = not public or public.tcbinfo ~= false
  local compose = ctx.app_compose or {}
  return {
    app_id = s.bin.app_id, instance_id = s.bin.instance_id, app_cert = self.app_cert,
    tcb_info = show_tcb and s.tcb_info or '', app_name = ctx.app_name or compose.name or '',
    device_id = s.bin.device_id, mr_aggregated = s.bin.mr_aggregated,
    os_image_hash = s.bin.os_image_hash, key_provider_info = s.key_provider_info,
    compose_hash = s.bin.compose_hash, vm_config = show_tcb and (ctx.vm_config or '') or '',
    cloud_vendor = read_trimmed(self.dmi_dir .. '/sys_vendor'),
    cloud_product = read_trimmed(self.dmi_dir .. '/product_name'),
  }
end

--- The AppInfo fields of RA-TLS extension 1.9 (binary), for attestation.app_info_ext().
function Info:app_info_ext_fields()
  local s, err, code = self:_state()
  if not s then
    return nil, err, code
  end
  return s.bin
end

--- The tcb_info JSON text decoded (for the dashboard), or nil.
function Info:tcb_info_table()
  local s = self:_state()
  return s and cjson.decode(s.tcb_info) or nil
end

return M
