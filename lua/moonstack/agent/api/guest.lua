-- SPDX-License-Identifier: Apache-2.0
-- The guest API (kms-vmm-gateway.md §4.7, upstream guest_api.proto `GuestApi`): what the VMM
-- asks a CVM's agent, on its own listener (`listen.guest`; vsock port 8000 upstream, a unix
-- socket in the VM's work dir with the process backend), at /api/<Method>: Info (the AppInfo
-- of DstackGuest), SysInfo, NetworkInfo, ListContainers (the app's services), Shutdown (the
-- agent stops the app and exits, as a SIGTERM does: the VMM's ShutdownVm) and, moonstack's,
-- GetQuote (a fresh quote and the event log for the operator's REPL, vm.quote): the host
-- picks only a nonce; the quote's report_data is SHA-512('vmm-quote:' .. nonce), so it cannot
-- pass for an RA-TLS certificate's or an app's own quote (their report_data has other
-- prefixes) with any relying party.
local uv = require('luv')
local client = require('moonstack.agent.client')
local errors = require('moonstack.core.errors')
local sysinfo = require('moonstack.agent.api.sysinfo')
local methods_lib = require('moonstack.agent.api.methods')
local messages = require('moonstack.agent.api.messages')

local M = {}

--- The guest API's messages (moonstack.core.proto schemas, upstream field numbers).
M.messages = {
  Empty = {},
  DiskInfo = { { 1, 'name', 'string' }, { 2, 'mount_point', 'string' },
    { 3, 'total_size', 'uint64' }, { 4, 'free_size', 'uint64' } },
  Container = { { 1, 'id', 'string' }, { 2, 'names', 'string*' }, { 3, 'image', 'string' },
    { 4, 'image_id', 'string' }, { 5, 'command', 'string' }, { 6, 'created', 'uint64' },
    { 7, 'state', 'string' }, { 8, 'status', 'string' } },
  NetworkInformation = { { 1, 'dns_servers', 'string*' }, { 4, 'wg_info', 'string' } },
}
local msg = M.messages
msg.SystemInfo = { { 1, 'os_name', 'string' }, { 2, 'os_version', 'string' },
  { 3, 'kernel_version', 'string' }, { 4, 'cpu_model', 'string' }, { 5, 'num_cpus', 'uint64' },
  { 6, 'total_memory', 'uint64' }, { 7, 'available_memory', 'uint64' },
  { 8, 'used_memory', 'uint64' }, { 9, 'free_memory', 'uint64' }, { 10, 'total_swap', 'uint64' },
  { 11, 'used_swap', 'uint64' }, { 12, 'free_swap', 'uint64' }, { 13, 'uptime', 'uint64' },
  { 14, 'loadavg_one', 'uint64' }, { 15, 'loadavg_five', 'uint64' },
  { 16, 'loadavg_fifteen', 'uint64' }, { 17, 'disks', 'message*', schema = msg.DiskInfo } }
msg.ListContainersResponse = { { 1, 'containers', 'message*', schema = msg.Container } }

--- How long Shutdown waits before the agent stops itself (ms): its answer goes out first.
M.SHUTDOWN_DELAY_MS = 50

-- GetQuote: a quote over the nonce's report_data, the event log in its quote form.
local function get_quote(ctx, ev, a)
  local nonce = a.report_data or ''
  if #nonce > 64 then
    return errors.fail('EINVAL', 'report_data: the nonce is at most 64 bytes')
  end
  local rd = client.guest_quote_report_data(nonce)
  local q, log_json, code = methods_lib.quote_and_log(ev, rd)
  if not q then
    return nil, log_json, code
  end
  return { quote = q, event_log = log_json, report_data = rd, vm_config = ctx.vm_config or '' }
end

--- The GuestApi methods over `ctx`, with `app_info` (the DstackGuest Info method),
--- `on_shutdown` (default: SIGTERM to this process, which stops the app and exits) and
--- `evidence` (the agent's moonstack.tdx.evidence: GetQuote; without it GetQuote is absent).
function M.methods(ctx, app_info, on_shutdown, evidence)
  on_shutdown = on_shutdown or function() uv.kill(uv.os_getpid(), 'sigterm') end
  return {
    GetQuote = evidence and { input = messages.RawQuoteArgs, output = messages.GetQuoteResponse,
      call = function(a) return get_quote(ctx, evidence, a) end } or nil,
    Info = app_info,
    SysInfo = { input = msg.Empty, output = msg.SystemInfo, call = function()
      local s = sysinfo.collect()
      local disks = {}
      for i, d in ipairs(s.disks) do
        disks[i] = { name = d.mount_point, mount_point = d.mount_point, total_size = d.total,
          free_size = d.free }
      end
      return { os_name = s.os_name, os_version = s.os_version, kernel_version = s.kernel_version,
        cpu_model = s.cpu_model, num_cpus = s.num_cpus, total_memory = s.memory_total,
        available_memory = s.memory_available, used_memory = s.memory_used,
        free_memory = s.memory_free, total_swap = s.swap_total, used_swap = s.swap_used,
        free_swap = s.swap_free, uptime = s.uptime, loadavg_one = s.load_1m,
        loadavg_five = s.load_5m, loadavg_fifteen = s.load_15m, disks = disks }
    end },
    NetworkInfo = { input = msg.Empty, output = msg.NetworkInformation, call = function()
      return { dns_servers = {}, wg_info = '' }
    end },
    ListContainers = { input = msg.Empty, output = msg.ListContainersResponse, call = function()
      local out = {}
      for i, s in ipairs(ctx.logs and ctx.logs:list() or {}) do
        out[i] = { id = s.name, names = { s.name }, image = '', image_id = '', command = '',
          created = s.started_at or 0, state = s.status or '',
          status = s.exit_code and ('exited (%s)'):format(s.exit_code) or (s.status or '') }
      end
      return { containers = out }
    end },
    Shutdown = { input = msg.Empty, output = msg.Empty, call = function()
      local t = uv.new_timer()
      t:start(M.SHUTDOWN_DELAY_MS, 0, function()
        t:close()
        on_shutdown()
      end)
      return {}
    end },
  }
end

return M
