-- SPDX-License-Identifier: Apache-2.0
-- moonstack.control over a real unix socket on the runtime's loop: the server runs in this
-- process and luv pipe clients talk to it (text frames, JSON mode, multi-line input, limits),
-- plus the socket file's life (mode 0600, stale file removed, live one refused, unlinked).
local uv = require('luv')
local cjson = require('cjson')
local loop = require('loop')
local uv_handles = require('uv_handles')
local control = require('moonstack.control')
local fixtures = require('fixtures')

local function tmpdir()
  return fixtures.tmpdir('control', true)
end

local dir
local n = 0
local function sock_path()
  n = n + 1
  return ('%s/c%d.sock'):format(dir, n)
end

-- A raw client: connect, send lines, read text frames or JSON lines.
local Client = {}
Client.__index = Client

local function connect(path)
  local c = setmetatable({ pipe = uv.new_pipe(false), buf = '', eof = false }, Client)
  local done, cerr = false, nil
  c.pipe:connect(path, function(err)
    cerr, done = err, true
  end)
  assert(loop.run_until(function() return done end, 3000), 'connect timed out')
  if cerr then
    c.pipe:close()
    return nil, cerr
  end
  c.pipe:read_start(function(_, data)
    if data then
      c.buf = c.buf .. data
    else
      c.eof = true
    end
  end)
  return c
end

function Client:send(data)
  self.pipe:write(data)
end

--- The next text frame: status, body (nil on timeout or end of stream).
function Client:frame()
  local status, body
  -- (run_until may call the predicate again once it is true: consume one frame only)
  loop.run_until(function()
    if status then
      return true
    end
    local s, len, at = self.buf:match('^(%a+) (%d+)\n()')
    if s and #self.buf - at + 1 >= tonumber(len) then
      status, body = s, self.buf:sub(at, at + tonumber(len) - 1)
      self.buf = self.buf:sub(at + tonumber(len))
      return true
    end
    return self.eof
  end, 5000)
  return status, body
end

function Client:ask(line)
  self:send(line .. '\n')
  return self:frame()
end

--- The next JSON line, raw.
function Client:json_line()
  local line
  loop.run_until(function()
    if line then
      return true
    end
    local l, rest = self.buf:match('^([^\n]*)\n(.*)$')
    if l then
      line, self.buf = l, rest
      return true
    end
    return self.eof
  end, 5000)
  return line
end

function Client:ask_json(line)
  self:send(line .. '\n')
  return self:json_line()
end

function Client:wait_eof()
  return loop.run_until(function() return self.eof end, 3000)
end

function Client:close()
  if not self.pipe:is_closing() then
    self.pipe:close()
  end
end

describe('moonstack.control', function()
  local servers, clients

  setup(function()
    dir = tmpdir()
  end)

  teardown(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  before_each(function()
    servers, clients = {}, {}
  end)

  after_each(function()
    for _, c in ipairs(clients) do
      c:close()
    end
    for _, s in ipairs(servers) do
      s:close()
    end
    loop.settle(20)
  end)

  local function listen(opts, path)
    path = path or sock_path()
    local srv, err, code = control.listen(path, opts)
    assert(srv, err)
    servers[#servers + 1] = srv
    return srv, path, code
  end

  local function client(path)
    local c = assert(connect(path))
    clients[#clients + 1] = c
    return c
  end

  it('evaluates 1+1 to 2', function()
    local _, path = listen()
    local c = client(path)
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
  end)

  it('runs statements, then expressions see their effect, without touching _G', function()
    local _, path = listen()
    local c = client(path)
    assert.same({ 'ok', '' }, { c:ask('control_spec_x = 5') })
    assert.same({ 'ok', '5\n' }, { c:ask('control_spec_x') })
    assert.is_nil(rawget(_G, 'control_spec_x'))
    assert.same({ 'ok', '1\nnil\n"two"\n' }, { c:ask('1, nil, "two"') })
    assert.same({ 'ok', '{ 1, 2, k = { v = true } }\n' }, { c:ask('{ 1, 2, k = { v = true } }') })
    assert.same({ 'ok', '' }, { c:ask('') })
  end)

  it('offers the daemon helpers as globals', function()
    local ctx = { answer = 42 }
    local _, path = listen({ env = { ctx = ctx, answer = function() return ctx.answer end } })
    local c = client(path)
    assert.same({ 'ok', '42\n' }, { c:ask('answer()') })
    assert.same({ 'ok', '' }, { c:ask('ctx.answer = 43') })
    assert.equal(43, ctx.answer)
  end)

  it('returns evaluation errors with a traceback and goes on', function()
    local _, path = listen()
    local c = client(path)
    local status, body = c:ask('error("boom")')
    assert.equal('error', status)
    assert.matches('^repl:1: boom\nstack traceback:\n', body)
    status, body = c:ask('x = = 1')
    assert.equal('error', status)
    assert.matches("unexpected symbol near '='", body)
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
    -- print goes to the reply, before the values
    assert.same({ 'ok', 'hi\t1\n7\n' }, { c:ask('print("hi", 1) return 7') })
  end)

  it('continues incomplete chunks on the next lines', function()
    local _, path = listen()
    local c = client(path)
    assert.same({ 'more', '' }, { c:ask('for i = 1, 2 do') })
    assert.same({ 'more', '' }, { c:ask('print(i * 10)') })
    assert.same({ 'ok', '10\n20\n' }, { c:ask('end') })
    assert.same({ 'more', '' }, { c:ask('if true then') })
    assert.same({ 'ok', '' }, { c:ask('\\reset') })
    assert.same({ 'ok', '3\n' }, { c:ask('3') })
  end)

  it('serves JSON mode', function()
    local _, path = listen()
    local c = client(path)
    assert.equal('{"ok":true,"mode":"json"}', c:ask_json('\\json'))
    assert.same({ ok = true, results = { 2 } }, cjson.decode(c:ask_json('1+1')))
    assert.equal('{"ok":true,"results":[]}', c:ask_json('y = 1'))
    assert.equal('{"ok":true,"results":[null,1]}', c:ask_json('nil, 1'))
    local r = cjson.decode(c:ask_json('{ a = { 1, 2 }, f = print, s = "x\\ny" }'))
    assert.same({ 1, 2 }, r.results[1].a)
    assert.matches('^<function', r.results[1].f)
    assert.equal('x\ny', r.results[1].s)
    r = cjson.decode(c:ask_json('error("bad")'))
    assert.is_false(r.ok)
    assert.matches('^repl:1: bad', r.error)
    r = cjson.decode(c:ask_json('print("out") return 1'))
    assert.same({ ok = true, results = { 1 }, output = 'out\n' }, r)
    -- no multi-line continuation in JSON mode: an incomplete line is an error
    r = cjson.decode(c:ask_json('for i = 1, 2 do'))
    assert.is_false(r.ok)
    assert.matches("'<eof>'", r.error)
    assert.same({ 'ok', '' }, { c:ask('\\text') })
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
  end)

  it('answers the commands', function()
    local _, path = listen()
    local c = client(path)
    local status, body = c:ask('\\help')
    assert.equal('ok', status)
    assert.matches('\\json', body, 1, true)
    status, body = c:ask('\\nope')
    assert.equal('error', status)
    assert.matches("unknown command '\\nope'", body, 1, true)
    assert.same({ 'bye', '' }, { c:ask('\\quit') })
    assert.is_true(c:wait_eof())
  end)

  it('serves several clients at once, sharing the environment', function()
    local srv, path = listen()
    local a, b = client(path), client(path)
    a:send('shared_v = "from a"\n')
    b:send('1\n')
    assert.same({ 'ok', '' }, { a:frame() })
    assert.same({ 'ok', '1\n' }, { b:frame() })
    assert.same({ 'ok', '"from a"\n' }, { b:ask('shared_v') })
    assert.equal(2, srv:clients())
    -- one client in the middle of a multi-line chunk does not disturb another
    assert.same({ 'more', '' }, { a:ask('do') })
    assert.same({ 'ok', '5\n' }, { b:ask('5') })
    assert.same({ 'ok', '' }, { a:ask('end') })
    a:close()
    assert.is_true(loop.run_until(function() return srv:clients() == 1 end, 2000))
  end)

  it('handles requests split across writes and several in one write', function()
    local _, path = listen()
    local c = client(path)
    c:send('1')
    loop.settle(20)
    c:send('+1\n2+2\n3+3\r\n')
    assert.same({ 'ok', '2\n' }, { c:frame() })
    assert.same({ 'ok', '4\n' }, { c:frame() })
    assert.same({ 'ok', '6\n' }, { c:frame() })
  end)

  it('rejects a line over the limit and keeps serving the connection', function()
    local _, path = listen()
    local c = client(path)
    c:send('x = "' .. ('a'):rep(2 * 1024 * 1024) .. '"\n')
    local status, body = c:frame()
    assert.equal('error', status)
    assert.matches('^ETOOBIG: line longer than 1048576 bytes', body)
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
    -- a line just under a small limit is fine
    local _, p2 = listen({ max_line = 100 })
    local c2 = client(p2)
    assert.same({ 'ok', '"' .. ('b'):rep(90) .. '"\n' }, { c2:ask('"' .. ('b'):rep(90) .. '"') })
    assert.equal('error', (c2:ask(('1+'):rep(60) .. '1')))
    assert.same({ 'ok', '3\n' }, { c2:ask('1+2') })
  end)

  it('stops a runaway evaluation at the time limit', function()
    local _, path = listen({ timeout = 0.2 })
    local c = client(path)
    local status, body = c:ask('while true do end')
    assert.equal('error', status)
    assert.matches('^ETIMEDOUT', body)
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
  end)

  it('turns away clients over the limit', function()
    local _, path = listen({ max_clients = 1 })
    local a = client(path)
    assert.same({ 'ok', '1\n' }, { a:ask('1') })
    local b = client(path)
    local status, body = b:frame()
    assert.equal('error', status)
    assert.matches('^EBUSY', body)
    assert.is_true(b:wait_eof())
    assert.same({ 'ok', '2\n' }, { a:ask('2') })
  end)

  it('creates the socket with mode 0600', function()
    local _, path = listen()
    local st = assert(uv.fs_stat(path))
    assert.equal('socket', st.type)
    assert.equal(tonumber('600', 8), st.mode % 512)
  end)

  it('removes a stale socket file and refuses a live one', function()
    -- a socket file nobody listens on: bind, hard-link, close (libuv unlinks the bound name)
    local tmp, stale = sock_path(), sock_path()
    local p = uv.new_pipe(false)
    assert(p:bind(tmp))
    assert(uv.fs_link(tmp, stale))
    p:close()
    loop.run_until(function() return p:is_closing() and not uv.fs_stat(tmp) end, 1000)
    assert.equal('socket', uv.fs_stat(stale).type)
    local _, path = listen(nil, stale)
    assert.same({ 'ok', '2\n' }, { client(path):ask('1+1') })
    -- a second server on the same path is refused; the first goes on
    local srv2, err, code = control.listen(path)
    assert.is_nil(srv2)
    assert.equal('EADDRINUSE', code)
    assert.matches('already listening on ' .. path, err, 1, true)
    assert.same({ 'ok', '3\n' }, { client(path):ask('3') })
  end)

  it('refuses a path that is not a socket, or too long', function()
    local path = sock_path()
    local f = assert(io.open(path, 'w'))
    f:write('keep me')
    f:close()
    local srv, err, code = control.listen(path)
    assert.is_nil(srv)
    assert.equal('EEXIST', code)
    assert.matches('is not a socket', err)
    assert.equal('keep me', assert(io.open(path)):read('*a'))
    srv, err, code = control.listen(dir .. '/' .. ('x'):rep(120))
    assert.is_nil(srv)
    assert.equal('ENAMETOOLONG', code)
    assert.matches('^ENAMETOOLONG: ', err)
  end)

  it('creates a missing directory (0700) and names what it cannot create or bind (M7 item 9)',
    function()
      local path = dir .. '/run/moonstack/ctl.sock'
      assert.is_true(require('moonstack.control.server').check(path))
      local _, p = listen(nil, path)
      assert.equal(tonumber('700', 8), assert(uv.fs_stat(dir .. '/run/moonstack')).mode % 512)
      assert.same({ 'ok', '2\n' }, { client(p):ask('1+1') })
      local f = assert(io.open(dir .. '/afile', 'w'))
      f:close()
      local server = require('moonstack.control.server')
      for _, fn in ipairs({ server.check, control.listen }) do
        local srv, err, code = fn(dir .. '/afile/run/ctl.sock')
        assert.is_nil(srv)
        assert.equal('ENOTDIR', code)
        assert.matches(('cannot create %s/afile/run, the directory of the control socket '
          .. '%s/afile/run/ctl.sock'):format(dir, dir), err, 1, true)
        assert.matches('install -d -m 0700 ' .. dir .. '/afile/run', err, 1, true)
        srv, err, code = fn(dir .. '/afile/ctl.sock')
        assert.is_nil(srv)
        assert.equal('ENOTDIR', code)
        assert.matches('cannot bind the control socket ' .. dir .. '/afile/ctl.sock', err, 1, true)
      end
      -- check() creates nothing and sees a live socket
      assert.is_nil(uv.fs_stat(dir .. '/afile2'))
      assert.is_true(server.check(dir .. '/afile2/x/ctl.sock'))
      assert.is_nil(uv.fs_stat(dir .. '/afile2'))
      local ok, err, code = server.check(p)
      assert.is_nil(ok)
      assert.equal('EADDRINUSE', code, err)
      assert.is_true(control.check(nil))
      assert.is_nil((control.check({ path = p })))
    end)

  it('unlinks the socket on close, idempotently, and leaves no handle behind', function()
    loop.settle(20)
    local baseline = uv_handles.count()
    local srv, path = listen()
    local c = client(path)
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
    assert.is_true(uv_handles.count() > baseline)
    srv:close()
    srv:close()
    assert.is_nil(uv.fs_stat(path))
    assert.is_true(c:wait_eof())
    c:close()
    -- (+1: run_until's own timer)
    loop.run_until(function() return uv_handles.count() <= baseline + 1 end, 2000)
    assert.equal(baseline, uv_handles.count(), 'left: ' .. uv_handles.describe())
    assert.is_nil(connect(path))
    loop.run_until(function() return uv_handles.count() <= baseline + 1 end, 1000)
    assert.equal(baseline, uv_handles.count(), 'left: ' .. uv_handles.describe())
    assert.matches('%(closed%)$', tostring(srv))
  end)

  it('raises on misuse', function()
    assert.has_error(function() control.listen(nil) end,
      'control.listen: path must be a non-empty string')
    assert.has_error(function() control.listen(sock_path(), 'x') end,
      'control.listen: opts must be a table')
    assert.has_error(function() control.open(42) end,
      'control.open: cfg must be a path, a table or nil')
    assert.has_error(function() control.open({}) end,
      'control.open: cfg.path must be a non-empty string')
  end)

  it('opens from a daemon config', function()
    assert.is_false(control.open(nil))
    assert.is_false(control.open(false))
    assert.is_false(control.open({ path = sock_path(), enabled = false }))
    local srv = assert(control.open({ path = sock_path(), timeout = 0.2 }, { who = 'daemon' }))
    servers[#servers + 1] = srv
    local c = client(srv.path)
    assert.same({ 'ok', '"daemon"\n' }, { c:ask('who') })
    assert.equal('error', (c:ask('while true do end')))
    srv = assert(control.open(sock_path()))
    servers[#servers + 1] = srv
    assert.same({ 'ok', '4\n' }, { client(srv.path):ask('2*2') })
  end)

  it('answers \\complete with the names that complete the last name (M11)', function()
    local _, path = listen({}, nil)
    local c = client(path)
    assert.same({ 'ok', '' }, { c:ask('obj = { alpha = 1, beta = 2 }') })
    assert.same({ 'ok', 'obj.alpha\nobj.beta\n' }, { c:ask('\\complete obj.') })
    assert.same({ 'ok', 'obj.beta\n' }, { c:ask('\\complete x = obj.b') })
    assert.same({ 'ok', 'string.format\n' }, { c:ask('\\complete string.for') })
    assert.same({ 'ok', '' }, { c:ask('\\complete nothing.here.') })
    assert.equal('{"ok":true,"mode":"json"}', c:ask_json('\\json'))
    assert.equal('{"ok":true,"results":[["obj.alpha"]]}', c:ask_json('\\complete obj.al'))
  end)

  it('serves the helpers of the daemon in completions (M11)', function()
    local _, path = listen({ env = { vm = { list = function() end, info = function() end } } })
    local c = client(path)
    assert.same({ 'ok', 'vm.info\nvm.list\n' }, { c:ask('\\complete vm.') })
    assert.same({ 'ok', 'vm\n' }, { c:ask('\\complete v') })
  end)

  it('interrupts a computing chunk on \\interrupt, and the session goes on (M11)', function()
    local _, path = listen({ timeout = 20 })
    local c = client(path)
    local t0 = uv.hrtime()
    -- the interrupt comes in the same read as the chunk: the loop is not running meanwhile
    c:send('while true do end\n\\interrupt\n')
    local status, body = c:frame()
    assert.equal('error', status)
    assert.matches('^EINTR: evaluation interrupted', body)
    assert.is_true((uv.hrtime() - t0) / 1e9 < 5, 'interrupted well before the 20 s limit')
    assert.same({ 'ok', '2\n' }, { c:ask('1+1') })
  end)

  it('lets a chunk wait on I/O without blocking the loop, in order, and interrupts a wait (M11)',
    function()
      local _, path = listen({ env = { sleep = require('moonstack.core.task').sleep } })
      local a, b = client(path), client(path)
      a:send('sleep(150) return "slept"\n"next"\n')
      -- another client is served while the first chunk waits
      assert.same({ 'ok', '"other"\n' }, { b:ask('"other"') })
      assert.same({ 'ok', '"slept"\n' }, { a:frame() })
      assert.same({ 'ok', '"next"\n' }, { a:frame() })
      a:send('sleep(60000)\n')
      loop.settle(50)
      a:send('\\interrupt\n')
      local status, body = a:frame()
      assert.equal('error', status)
      assert.matches('ECANCELED: evaluation interrupted', body)
      assert.same({ 'ok', '3\n' }, { a:ask('1+2') })
      assert.equal(0, require('moonstack.control.guard').active())
    end)
end)
