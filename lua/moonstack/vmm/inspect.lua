-- SPDX-License-Identifier: Apache-2.0
-- What the operator's REPL asks of a running VM (vm.qmp, vm.guest, vm.quote in
-- moonstack.vmm.repl): a QMP command of a QEMU guest, a call of the guest agent's guest API
-- (the host's channel to it: the qemu backend's virtio-serial relay, the process backend's
-- guest.sock in the VM's work dir; both are backend:transports(vm).guest_api), and a fresh
-- quote from the guest verified here with moonstack.verifier. Call from a task (every one of
-- them waits on I/O).
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local errors = require('moonstack.core.errors')
local agent_client = require('moonstack.agent.client')

local M = {}

local function running(vmm, id)
  local vm, err, code = vmm:find(id)
  if not vm then
    return nil, err, code
  end
  if not vm:running() then
    return errors.fail('ENOTCONN', ('VM %s is not running (%s)'):format(id, vm:status()))
  end
  return vm
end

--- QMP command `cmd` (with the `args` table) on VM `id` of the qemu backend: QEMU's "return"
--- value, or nil, msg, code (ENOTSUP on the process backend, ENOTCONN when not running, EQMP
--- when QEMU refused the command).
function M.qmp(vmm, id, cmd, args)
  if type(cmd) ~= 'string' or cmd == '' then
    return errors.fail('EINVAL', "vm.qmp(id, cmd, args): cmd is a QMP command name ('query-status')")
  end
  if args ~= nil and type(args) ~= 'table' then
    return errors.fail('EINVAL', 'vm.qmp(id, cmd, args): args is a table')
  end
  local vm, err, code = running(vmm, id)
  if not vm then
    return nil, err, code
  end
  if vmm.backend.name ~= 'qemu' then
    return errors.fail('ENOTSUP', ('VM %s runs on the %s backend, which has no QMP: only the '
      .. 'qemu backend has (use vm.guest(id, method) for the guest agent)'):format(id,
        tostring(vmm.backend.name)))
  end
  local h = vm.handle
  if not h.qmp then
    return errors.fail('ENOTCONN', ('no QMP connection to VM %s'):format(id))
  end
  local r
  r, err, code = h.qmp:execute(cmd, args)
  if r == nil and err then
    return nil, err, code
  end
  return r
end

--- Guest API method `method` of VM `id` with the JSON-able `args`: the guest's answer
--- (decoded JSON: bytes as hex), or nil, msg, code (EGUEST when the guest is unreachable or
--- refused).
function M.guest(vmm, id, method, args)
  if type(method) ~= 'string' or not method:match('^[%w_]+$') then
    return errors.fail('EINVAL', "vm.guest(id, method, args): method is a guest API method "
      .. "('Info', 'SysInfo', 'NetworkInfo', 'ListContainers', 'GetQuote')")
  end
  if args ~= nil and type(args) ~= 'table' then
    return errors.fail('EINVAL', 'vm.guest(id, method, args): args is a table')
  end
  local vm, err, code = running(vmm, id)
  if not vm then
    return nil, err, code
  end
  return vmm:guest(vm):call(method, args or {})
end

-- The verifier for the quotes of this VMM's guests: on the simulated platform of
-- process.sim_dir (the guests without TDX attest there) its collateral and root; else the
-- default PCCS (a TDX host).
local function verifier_for(vmm)
  local verifier = require('moonstack.verifier')
  local dir = vmm.cfg.process and vmm.cfg.process.sim_dir
  local opts = { policy = { disable_runtime_verification = true } }
  local sim = require('moonstack.sim')
  if dir and sim.exists(dir) then
    local ok, err, code = sim.trust(opts, dir)
    if not ok then
      return nil, err, code
    end
    opts.policy.allow_simulator = true
  end
  return verifier.new(opts)
end

local function hex(v)
  return type(v) == 'string' and codec.hex(v) or v
end

-- The verdict summary of a check_quote result `r`.
local function verdict(r, rd, answer)
  local rep = r.report or {}
  local out = {
    ok = r.ok, code = r.code, error = r.error, verified = r.verified, policy_ok = r.policy_ok,
    status = r.status, advisory_ids = r.advisory_ids, simulated = r.simulated,
    tee_type = r.tee_type, mrtd = rep.mrtd, rtmr0 = rep.rtmr0, rtmr1 = rep.rtmr1,
    rtmr2 = rep.rtmr2, rtmr3 = rep.rtmr3, mr_config_id = rep.mr_config_id,
    report_data = rep.report_data, nonce_bound = rep.report_data == codec.hex(rd),
    event_log = r.event_log and { given = r.event_log.given, verified = r.event_log.verified,
      events = #(answer.events or {}) },
    failures = r.failures,
  }
  local b = r.boot_info
  if b then
    out.app_id, out.instance_id, out.compose_hash = hex(b.app_id), hex(b.instance_id),
      hex(b.compose_hash)
    out.os_image_hash, out.mr_aggregated = hex(b.os_image_hash), hex(b.mr_aggregated)
  end
  return out
end

--- A fresh quote from VM `id` (the guest API's GetQuote over a random nonce) verified here:
--- the quote (DCAP, simulator root when the guest runs on process.sim_dir), its report_data
--- (SHA-512('vmm-quote:' .. nonce): nonce_bound), and the event log's replay to RTMR0-3.
--- Returns the verdict summary { ok, code?, error?, verified, status (TCB), simulated, mrtd,
--- rtmr0..3, report_data, nonce_bound, event_log = { given, verified, events }, app_id,
--- instance_id, compose_hash, os_image_hash, mr_aggregated, failures }, or nil, msg, code
--- when no quote came.
function M.quote(vmm, id)
  local nonce = crypto.random(32)
  local answer, err, code = M.guest(vmm, id, 'GetQuote', { report_data = codec.hex(nonce) })
  if not answer then
    return nil, err, code
  end
  local quote = type(answer.quote) == 'string' and codec.unhex(answer.quote)
  if not quote or quote == '' then
    return errors.fail('EGUEST', ('VM %s answered GetQuote without a quote'):format(id))
  end
  local rd = agent_client.guest_quote_report_data(nonce)
  local v
  v, err, code = verifier_for(vmm)
  if not v then
    return nil, 'verifier: ' .. tostring(err), code
  end
  local events = require('cjson.safe').decode(answer.event_log or '')
  local r, _, _, rejected = v:check_quote(quote, answer.event_log, { report_data = rd,
    vm_config = answer.vm_config ~= '' and answer.vm_config or nil })
  return verdict(r or rejected, rd, { events = type(events) == 'table' and events or nil })
end

return M
