-- SPDX-License-Identifier: Apache-2.0
-- moonstack.agent.host: the boot progress the agent reports to its VMM. Once the boot said
-- 'done', a gateway registration that runs on is reported as gateway.status, so the boot
-- progress a waiter reads stays 'done'.
local host = require('moonstack.agent.host')
local context = require('moonstack.agent.context')

-- A notifier that records what it would send, attached to a context with an emitter.
local function recorder()
  local sent = {}
  local n = host.new(nil)
  n.api = {} -- as if agent.lua named a host API
  n.send = function(_, event, payload)
    sent[#sent + 1] = event .. '=' .. tostring(payload)
  end
  local ctx = { events = context.emitter() }
  n:attach(ctx)
  return ctx, sent
end

describe('agent host reports', function()
  it('reports the gateway registration as boot progress during the boot', function()
    local ctx, sent = recorder()
    ctx.events:emit('step', 'gateway', { state = 'registering' })
    ctx.events:emit('step', 'gateway', { state = 'registered' })
    ctx.events:emit('state', 'running', 'starting', {})
    assert.are.same({ 'boot.progress=registering with the gateway',
      'boot.progress=gateway registered', 'boot.progress=done' }, sent)
  end)

  it('keeps the boot progress at done when the registration comes after the boot', function()
    local ctx, sent = recorder()
    ctx.events:emit('state', 'running', 'starting', {})
    ctx.events:emit('step', 'gateway', { state = 'registering' })
    ctx.events:emit('step', 'gateway', { state = 'registered' })
    assert.are.same({ 'boot.progress=done', 'gateway.status=registering with the gateway',
      'gateway.status=gateway registered' }, sent)
  end)
end)
