-- SPDX-License-Identifier: Apache-2.0
-- The simulated quote service (moonstack.sim.service, a VMM's, holding a VM's simulated TD)
-- and the guest's `sim-remote` TEE backend that uses it over a unix socket (in a VM, the relay
-- of its channel). Checks: runtime events emitted by the guest extend the host's RTMR3 and
-- the guest's log (the host's launch events, then its runtime events) replays to every RTMR;
-- the quote the host makes carries the report data and
-- verifies with the simulator's root, event log included; the guest cannot extend RTMR0/1 nor
-- send malformed bodies; the backend is reachable through moonstack.core.tee by name.
local loop = require('loop')
local fixtures = require('fixtures')
local sim = require('moonstack.sim')
local service = require('moonstack.sim.service')
local server = require('moonstack.http.server')
local http = require('moonstack.http.client')
local tee_registry = require('moonstack.core.tee')
require('moonstack.tdx.tee')
local verifier = require('moonstack.verifier')
local eventlog = require('moonstack.tdx.eventlog')

describe('sim-remote over the simulated quote service', function()
  local base, host_tee, srv, guest

  setup(function()
    base = fixtures.tmpdir('sim_remote', true)
    -- launch events as a VMM makes them; the TD's RTMR0-2 are their replay
    local boot = {}
    for imr = 0, 2 do
      local payload = 'launch ' .. imr
      boot[#boot + 1] = { imr = imr, event_type = 0x0D, event = 'test', event_payload = payload,
        version = 1, digest = require('moonstack.crypto').sha384(payload) }
    end
    local r = assert(eventlog.replay(boot, { binary = true }))
    host_tee = assert(sim.new({ dir = base .. '/sim', cvm = 'vm-1', create = true, reset = true,
      td = { rtmr0 = r[1], rtmr1 = r[2], rtmr2 = r[3] } }))
    srv = server.new({ name = 'quote-service', listen = { unix = base .. '/tee.sock' } })
    service.attach(srv, host_tee, { boot_events = boot })
    assert(srv:listen())
    guest = assert(tee_registry.create('sim-remote', { socket = base .. '/tee.sock',
      runtime_log_dir = base .. '/guest-log' }))
  end)

  teardown(function()
    srv:close()
    host_tee:close()
    loop.settle()
  end)

  it('extends the host\'s RTMR3 with the guest\'s runtime events, and quotes them', function()
    local before = assert(host_tee:measurements())
    loop.run_task(function()
      assert(eventlog.emit(guest, 'system-preparing', '', { dir = base .. '/guest-log', version = 1 }))
      assert(guest:emit_event('app-id', ('\17'):rep(20), { version = 1 }))
    end)
    local after = assert(host_tee:measurements())
    assert.are_not.equal(before.rtmr3, after.rtmr3)
    assert.equal(before.mrtd, after.mrtd)
    local events
    loop.run_task(function() events = assert(guest:event_log()) end)
    assert.equal(5, #events) -- 3 launch events from the host, 2 runtime events of the guest
    local replayed = assert(eventlog.replay(events, { binary = true }))
    assert.same({ after.rtmr0, after.rtmr1, after.rtmr2, after.rtmr3 }, replayed)
    local quote, gm
    loop.run_task(function()
      quote = assert(guest:get_quote('guest report data'))
      gm = assert(guest:measurements())
    end)
    assert.equal(after.rtmr3, gm.rtmr3)
    local now = os.time()
    local v = assert(verifier.new({ policy = { allow_simulator = true, disable_runtime_verification = true },
      collateral = assert(host_tee:collateral(now)), root_ca = (assert(host_tee:root_ca())) }))
    local r = assert(v:check_quote(quote, events, { now = now }))
    assert.is_true(r.simulated)
    assert.is_true(r.event_log.verified) -- every RTMR replayed from the events
    assert.equal(after.rtmr3, r.rtmrs.rtmr3)
    local rd = 'guest report data'
    assert.equal(require('moonstack.core.codec').hex(rd .. ('\0'):rep(64 - #rd)),
      r.report_data or r.quote and r.quote.report_data or r.report and r.report.report_data)
  end)

  it('refuses RTMR0/1 and malformed requests', function()
    loop.run_task(function()
      local ok, err, code = guest:extend_rtmr(0, ('\1'):rep(48))
      assert.is_nil(ok)
      assert.equal('ETEE', code)
      assert.matches('RTMR2 or RTMR3', err)
      ok, err = guest:extend_rtmr(3, 'short')
      assert.is_nil(ok)
      assert.matches('48 bytes', err)
      local bodies = { 'not json', '[]', '{"report_data":"zz"}',
        '{"report_data":"' .. ('00'):rep(65) .. '"}' }
      for _, body in ipairs(bodies) do
        local r = assert(http.request({ unix = base .. '/tee.sock', path = '/tee/GetQuote',
          method = 'POST', body = body, headers = { ['content-type'] = 'application/json' } }))
        assert.equal(400, r.status, body)
      end
      local r = assert(http.request({ unix = base .. '/tee.sock', path = '/tee/Nope',
        method = 'POST', body = '{}' }))
      assert.equal(404, r.status)
    end)
  end)
end)
