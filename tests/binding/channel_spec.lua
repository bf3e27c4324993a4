-- SPDX-License-Identifier: Apache-2.0
-- moonstack.channel: HTTP between a VM and its VMM over one persistent byte stream. The stream
-- here is a "wire" (a unix server joining its first two connections back to back, as QEMU
-- joins the guest's virtio-serial port and the host's chardev socket); the guest side serves
-- local callers over it (channel.serve), the host side answers with a real HTTP server
-- (channel.connect). Checks: requests in order on one stream, a server that closes its
-- connection after an answer, callers queued one at a time, the stream reopened after it
-- breaks, virtio-serial ports found by name, bad specs refused.
local uv = require('luv')
local loop = require('loop')
local fixtures = require('fixtures')
local channel = require('moonstack.channel')
local server = require('moonstack.http.server')
local http = require('moonstack.http.client')
local task = require('moonstack.core.task')

-- A wire at `path`: the first two connections are joined; returns { close(), cut() }.
local function wire(path)
  local ends = {}
  local srv = uv.new_pipe(false)
  assert(srv:bind(path))
  srv:listen(4, function()
    local c = uv.new_pipe(false)
    srv:accept(c)
    ends[#ends + 1] = c
    if #ends % 2 == 0 then
      local a, b = ends[#ends - 1], ends[#ends]
      a:read_start(function(_, d) if d then b:write(d) elseif not b:is_closing() then b:close() end end)
      b:read_start(function(_, d) if d then a:write(d) elseif not a:is_closing() then a:close() end end)
    end
  end)
  return {
    cut = function()
      for _, c in ipairs(ends) do
        if not c:is_closing() then c:close() end
      end
    end,
    close = function()
      for _, c in ipairs(ends) do
        if not c:is_closing() then c:close() end
      end
      srv:close()
    end,
  }
end

describe('moonstack.channel', function()
  local dir, w, host_srv, host_relay, guest_relay, calls

  before_each(function()
    dir = fixtures.tmpdir('channel', true)
    calls = 0
    w = wire(dir .. '/wire.sock')
    host_srv = server.new({ name = 'host-api', listen = { unix = dir .. '/host-api.sock' } })
    host_srv:post('/api/Echo', function(req)
      calls = calls + 1
      return 200, { got = req:json(), n = calls }
    end)
    host_srv:post('/api/Slow', function(req)
      task.sleep(50)
      calls = calls + 1
      return 200, { got = req:json(), n = calls }
    end)
    host_srv:post('/api/Big', function()
      return 200, { blob = ('0123456789abcdef'):rep(20000) } -- 320 KB: many frames
    end)
    host_srv:post('/api/Late', function()
      task.sleep(400)
      return 200, { late = true }
    end)
    host_srv:post('/api/Bye', function(_, res)
      res:set_header('Connection', 'close')
      return 200, { bye = true }
    end)
    assert(host_srv:listen())
    host_relay = assert(channel.connect({ unix = dir .. '/wire.sock' }, dir .. '/host-api.sock'))
    guest_relay = assert(channel.serve({ unix = dir .. '/wire.sock' }, dir .. '/local.sock'))
  end)

  after_each(function()
    guest_relay:close()
    host_relay:close()
    host_srv:close()
    w.close()
    loop.settle()
  end)

  local function call(method, body)
    local r, err = http.request({ unix = dir .. '/local.sock', path = '/api/' .. method,
      method = 'POST', json = body, timeout_ms = 3000 })
    assert(r, err)
    return r.status, require('cjson').decode(r.body)
  end

  it('carries requests over one stream, in order, and the local socket is 0600', function()
    loop.run_task(function()
      for i = 1, 5 do
        local status, v = call('Echo', { i = i })
        assert.equal(200, status)
        assert.same({ i = i }, v.got)
      end
    end)
    assert.equal(5, calls)
    assert.equal('600', ('%o'):format(uv.fs_stat(dir .. '/local.sock').mode % 512))
    assert.equal(1, guest_relay:stats().opened)
    assert.equal(5, guest_relay:stats().connections)
  end)

  it('carries a large answer whole, and the caller sees the end of it', function()
    loop.run_task(function()
      local status, v = call('Big', {})
      assert.equal(200, status)
      assert.equal(320000, #v.blob)
    end)
  end)

  it('never hands the answer of a caller that gave up to the next one', function()
    loop.run_task(function()
      local r, err = http.request({ unix = dir .. '/local.sock', path = '/api/Late', method = 'POST',
        json = {}, timeout_ms = 100 })
      assert.is_nil(r)
      assert.matches('ETIMEDOUT', err)
      local status, v = call('Echo', { mine = true })
      assert.equal(200, status)
      assert.same({ mine = true }, v.got)
      task.sleep(500) -- the late answer arrives meanwhile: dropped, not given to anyone
      status, v = call('Echo', { again = true })
      assert.equal(200, status)
      assert.same({ again = true }, v.got)
    end, 5000)
  end)

  it('opens a new connection to the server after it closed one', function()
    loop.run_task(function()
      local status, v = call('Bye', {})
      assert.equal(200, status)
      assert.is_true(v.bye)
      status, v = call('Echo', { after = 'bye' })
      assert.equal(200, status)
      assert.same({ after = 'bye' }, v.got)
    end)
    assert.is_true(host_relay:stats().connections >= 2)
  end)

  it('serves concurrent callers one at a time, each its own answer', function()
    local got = {}
    loop.run_task(function()
      local pending = 3
      for i = 1, 3 do
        task.spawn(function()
          local _, v = call('Slow', { i = i })
          got[i] = v.got.i
          pending = pending - 1
        end)
      end
      while pending > 0 do
        task.sleep(10)
      end
    end, 5000)
    assert.same({ 1, 2, 3 }, got)
  end)

  it('opens the stream again after it broke', function()
    loop.run_task(function()
      assert.equal(200, (call('Echo', { n = 1 })))
      w.cut()
      task.sleep(3 * channel.RETRY_MS)
      local status, v = call('Echo', { n = 2 })
      assert.equal(200, status)
      assert.same({ n = 2 }, v.got)
    end, 5000)
    assert.is_true(guest_relay:stats().opened >= 2)
  end)

  it('finds a virtio-serial port by name, and refuses what it cannot use', function()
    local ports = dir .. '/ports'
    for entry, name in pairs({ vport2p1 = 'org.moonstack.host-api', vport2p2 = 'org.moonstack.tee' }) do
      uv.fs_mkdir(ports, 448)
      uv.fs_mkdir(ports .. '/' .. entry, 448)
      local f = assert(io.open(ports .. '/' .. entry .. '/name', 'w'))
      f:write(name .. '\n')
      f:close()
    end
    assert.equal('/dev/vport2p2', channel.serial_device('org.moonstack.tee', ports))
    local dev, err, code = channel.serial_device('org.nope', ports)
    assert.is_nil(dev)
    assert.equal('ENOENT', code)
    assert.matches('org.nope', err)
    local r
    r, err, code = channel.serve({ vsock = { cid = 2, port = 10000 } }, dir .. '/x.sock')
    assert.is_nil(r)
    assert.equal('ENOTSUP', code)
    assert.matches('vsock', err)
    r, err, code = channel.connect({ serial = 'bad name!' }, dir .. '/x.sock')
    assert.is_nil(r)
    assert.equal('EINVAL', code)
    assert.matches('serial', err)
  end)
end)
