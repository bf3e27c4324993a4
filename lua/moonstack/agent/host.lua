-- SPDX-License-Identifier: Apache-2.0
-- The agent's reports to its host (kms-vmm-gateway.md §4.7: the VMM's host API, Notify), when
-- agent.lua names one (`host_api`): boot progress as the boot steps go (upstream's strings:
-- `requesting app keys`, `running main script`, `starting containers`, `done`...), the boot
-- error that stops a boot, the instance info once the identity is known (the VMM keeps it in
-- the shared folder, so the instance id survives a reboot), and shutdown progress (`powering
-- off` tells the VMM the CVM is down on purpose). Reports go out in order from one task and
-- never hold the boot up; one the host does not take is tried again for a while (a VMM
-- restarting), then dropped with a logged warning.
local uv = require('luv')
local task = require('moonstack.core.task')
local shared = require('moonstack.cvm.shared_folder')
local vmm = require('moonstack.vmm.client')
local log = require('moonstack.core.log').new('agent')

local M = {}

--- The boot.progress text of each boot step.
M.STEPS = { shared = 'reading the shared folder', tee = 'opening the TEE',
  measure = 'measuring the app', keys = 'requesting app keys',
  verify = 'checking the key provider', env = 'decrypting env', init = 'init-script' }

--- Tries per report, and the pause between them (ms): a host restarting meanwhile (the VMM
--- after a crash) still gets the reports in order.
M.TRIES, M.RETRY_MS = 40, 250

local Notifier = {}
Notifier.__index = Notifier

--- A notifier over `transport` (agent.lua host_api), or a silent one when nil.
function M.new(transport)
  return setmetatable({ api = transport and vmm.host_api(transport), queue = {} }, Notifier)
end

-- Send what is queued, in order (one task at a time).
function Notifier:_drain()
  if self.sending then
    return
  end
  self.sending = task.spawn_named('agent:host-notify', function()
    while #self.queue > 0 do
      local n = self.queue[1]
      local ok, err = self.api:notify(n[1], n[2])
      n.tries = (n.tries or 0) + 1
      if ok or n.tries >= M.TRIES then
        table.remove(self.queue, 1)
        if not ok then
          log.warn('cannot report to the host (dropped)', { event = n[1], error = err })
        end
      else
        task.sleep(M.RETRY_MS) -- the host may be restarting: the same report again
      end
    end
    self.sending = nil
  end)
end

--- Queue a report (event, payload) for the host.
function Notifier:send(event, payload)
  if not self.api then
    return
  end
  self.queue[#self.queue + 1] = { event, tostring(payload or ''):sub(1, 4096) }
  self:_drain()
end

--- Wait (inside a task) until the queued reports are out, at most `ms`.
function Notifier:flush(ms)
  local deadline = uv.now() + (ms or 2000)
  while (self.sending or #self.queue > 0) and uv.now() < deadline do
    task.sleep(10)
    uv.update_time()
  end
end

--- Report the boot of context `ctx` as it goes: its steps, its states and its identity.
function Notifier:attach(ctx)
  if not self.api then
    return
  end
  local booted = false -- once 'done' is out, boot progress stays 'done'
  ctx.events:on('step', function(name, detail)
    local text = M.STEPS[name]
    if name == 'runner' then
      text = detail and detail.runner == 'bash' and 'running main script' or 'starting containers'
    end
    if name == 'gateway' then
      text = detail and detail.state == 'registered' and 'gateway registered'
        or 'registering with the gateway'
      if booted then
        -- a registration that runs on (or again) after the boot is news, not boot progress:
        -- reported as progress it hid 'done' from whoever waits for it
        self:send('gateway.status', text)
        return
      end
    end
    if name == 'env' and ctx.instance_info then
      self:send('instance.info', shared.instance_info_json(ctx.instance_info))
    end
    if text then
      self:send('boot.progress', text)
    end
  end)
  ctx.events:on('state', function(state, old, info)
    if state == 'running' then
      booted = true
      self:send('boot.progress', 'done')
    elseif state == 'failed' then
      self:send(old == 'running' and 'boot.progress' or 'boot.error', ctx.error or 'failed')
    elseif state == 'exited' then
      self:send('boot.progress', ('app exited (status %s)'):format(tostring(info and info.exit_code)))
    elseif state == 'stopping' then
      self:send('shutdown.progress', 'stopping app')
    elseif state == 'stopped' then
      self:send('shutdown.progress', 'powering off')
    end
  end)
end

return M
