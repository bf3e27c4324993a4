-- SPDX-License-Identifier: Apache-2.0
-- The dashboard's shared layer (moonstack.ui): sessions (expiry, bound, cookie parsing), the
-- one-time login token (once, constant-time compare, a file others may read is refused, the
-- file burned), the gate (cookie + X-Moonstack-CSRF, Basic also needs it on a POST, tokens do
-- not, the websocket upgrade: session from its own origin or a token, never Basic), the feed
-- (snapshot at 0, after a loss or a restart; filtered and mapped deltas), the wire encoder
-- (UTF-8 repaired, empty arrays kept).
local uv = require('luv')
local events = require('moonstack.core.events')
local session = require('moonstack.ui.session')
local login = require('moonstack.ui.login')
local gate_mod = require('moonstack.ui.gate')
local feed_mod = require('moonstack.ui.feed')
local wire = require('moonstack.ui.wire')
local json = require('moonstack.core.json')

-- A request as moonstack.http.server gives it (headers by lowercase name).
local function request(method, headers)
  local h = {}
  for k, v in pairs(headers or {}) do
    h[k:lower()] = v
  end
  return { method = method, path = '/dashboard/feed', peer = '127.0.0.1', args = {},
    header = function(_, name) return h[name:lower()] end }
end

describe('moonstack.ui.session', function()
  it('opens sessions that expire after their ttl', function()
    local t = 1000
    local s = session.new({ ttl = 60, now = function() return t end })
    local id = s:create()
    assert.matches('^%x+$', id)
    assert.equal(64, #id)
    assert.is_true(s:valid(id))
    assert.is_false(s:valid(id:sub(1, 63) .. (id:sub(64) == '0' and '1' or '0')))
    assert.is_false(s:valid('nothex'))
    assert.is_false(s:valid(nil))
    t = 1059
    assert.is_true(s:valid(id))
    t = 1060
    assert.is_false(s:valid(id), 'expired')
    assert.equal(0, s:size())
  end)

  it('keeps at most max sessions, dropping the oldest', function()
    local t = 0
    local s = session.new({ max = 3, now = function() return t end })
    local ids = {}
    for i = 1, 4 do
      t = i
      ids[i] = s:create()
    end
    assert.is_false(s:valid(ids[1]))
    for i = 2, 4 do
      assert.is_true(s:valid(ids[i]))
    end
    s:drop(ids[3])
    assert.is_false(s:valid(ids[3]))
    assert.equal(2, s:size())
  end)

  it('writes and reads the cookie', function()
    local s = session.new()
    local id = s:create()
    local c = s:set_cookie(id)
    assert.matches('HttpOnly', c)
    assert.matches('SameSite=Strict', c)
    assert.matches('Path=/', c)
    assert.equal(id, session.cookie('a=b; moonstack_session=' .. id .. '; c=d'))
    assert.equal(id, session.cookie('moonstack_session=' .. id))
    assert.is_nil(session.cookie('xmoonstack_session=1'))
    assert.is_nil(session.cookie(nil))
    assert.matches('Max%-Age=0', s:set_cookie(nil))
  end)
end)

describe('moonstack.ui.login', function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, 448))
  end)
  after_each(function()
    require('moonstack.core.fs').remove_tree(dir)
  end)

  it('accepts the token once and burns the file', function()
    local path = dir .. '/login'
    local token = assert(login.issue(path))
    assert.equal(384, uv.fs_stat(path).mode % 512)
    local ok, err, code = login.consume(path, 'wrong')
    assert.is_nil(ok)
    assert.equal('EDENIED', code)
    assert.not_matches(token, err)
    assert.is_true(login.consume(path, token))
    assert.is_nil(uv.fs_stat(path), 'the file is gone')
    assert.is_nil((login.consume(path, token)))
    assert.equal('ENOENT', select(3, login.consume(path, token)))
  end)

  it('refuses a token file others may read, an empty one, and no token', function()
    local path = dir .. '/login'
    local token = assert(login.issue(path))
    uv.fs_chmod(path, 420) -- 0644
    local ok, _, code = login.consume(path, token)
    assert.is_nil(ok)
    assert.equal('EPERM', code)
    assert.is_not_nil(uv.fs_stat(path), 'left in place')
    uv.fs_chmod(path, 384)
    assert.equal('EINVAL', select(3, login.consume(path, '')))
    assert.equal('EINVAL', select(3, login.consume(nil, token)))
    local f = assert(io.open(path, 'w'))
    f:write('\n')
    f:close()
    assert.equal('ENOENT', select(3, login.consume(path, 'x')))
  end)
end)

describe('moonstack.ui.gate', function()
  local sessions, gate, id
  local hash = '$2y$04$QksxRG5Cuou6UFcerCpAv.EGEoHbNS9oFt86nBHqRqR5dzzuV9eUa' -- 'pw', cost 4

  before_each(function()
    sessions = session.new()
    gate = gate_mod.new({ creds = { tokens = { 'tok-1' }, users = { admin = hash } },
      sessions = sessions })
    id = sessions:create()
  end)

  local function judge(req)
    local r
    require('moonstack.core.task').spawn(function() r = { gate:judge(req) } end)
    require('loop').run_until(function() return r ~= nil end, 5000)
    return unpack(r)
  end

  it('lets a session GET, and POST only with the CSRF header', function()
    local cookie = 'moonstack_session=' .. id
    assert.is_true(judge(request('GET', { Cookie = cookie })))
    local ok, status = judge(request('POST', { Cookie = cookie }))
    assert.is_false(ok)
    assert.equal(403, status)
    ok = judge(request('POST', { Cookie = cookie, ['X-Moonstack-CSRF'] = '1' }))
    assert.is_true(ok)
    ok, status = judge(request('POST', { Cookie = 'moonstack_session=' .. ('0'):rep(64),
      ['X-Moonstack-CSRF'] = '1' }))
    assert.is_false(ok)
    assert.equal(401, status)
  end)

  it('takes tokens without the CSRF header, Basic only with it on a POST', function()
    assert.is_true(judge(request('POST', { Authorization = 'Bearer tok-1' })))
    assert.is_true(judge(request('POST', { ['X-Admin-Token'] = 'tok-1' })))
    assert.equal(401, select(2, judge(request('GET', { Authorization = 'Bearer nope' }))))
    local basic = 'Basic ' .. require('moonstack.core.codec').base64('admin:pw')
    assert.is_true(judge(request('GET', { Authorization = basic })))
    assert.equal(403, select(2, judge(request('POST', { Authorization = basic }))))
    assert.is_true(judge(request('POST', { Authorization = basic, ['X-Moonstack-CSRF'] = '1' })))
  end)

  it('judges a websocket upgrade: a session from its own origin or a token', function()
    local cookie = 'moonstack_session=' .. id
    assert.is_true(gate:judge_upgrade(request('GET', { Cookie = cookie, Host = 'h:1' })))
    assert.is_true(gate:judge_upgrade(request('GET', { Cookie = cookie, Host = 'h:1',
      Origin = 'http://h:1' })))
    assert.is_false(gate:judge_upgrade(request('GET', { Cookie = cookie, Host = 'h:1',
      Origin = 'http://evil.example' })))
    assert.is_true(gate:judge_upgrade(request('GET', { Authorization = 'Bearer tok-1' })))
    assert.is_false(gate:judge_upgrade(request('GET', { Authorization = 'Bearer tok-2' })))
    assert.is_false(gate:judge_upgrade(request('GET', {})))
    local basic = 'Basic ' .. require('moonstack.core.codec').base64('admin:pw')
    assert.is_false(gate:judge_upgrade(request('GET', { Authorization = basic })))
  end)
end)

describe('moonstack.ui.feed', function()
  local bus, state, feed
  before_each(function()
    bus = events.new({ capacity = 4 })
    state = { n = 0 }
    feed = feed_mod.new({ part = 'p', bus = bus, snapshot = function() return { n = state.n } end,
      filter = function(ev) return ev.topic:sub(1, 2) == 'p.' end,
      map = function(ev)
        if ev.topic == 'p.rename' then
          ev.topic = 'p.renamed'
        end
        return ev
      end })
  end)

  it('answers since=0 with a snapshot and the seq to go on from', function()
    bus:publish('p.a', { x = 1 })
    state.n = 5
    local r = feed:read(0)
    assert.equal('p', r.part)
    assert.equal(1, r.seq)
    assert.same({ n = 5 }, r.snapshot)
    assert.equal(0, #r.events)
  end)

  it('gives the filtered, mapped events after seq', function()
    bus:publish('p.a', { x = 1 })
    local seq = feed:read(0).seq
    bus:publish('q.other', {})
    bus:publish('p.rename', { y = 2 })
    local r = feed:read(seq)
    assert.is_nil(r.snapshot)
    assert.equal(3, r.seq)
    assert.equal(1, #r.events)
    assert.equal('p.renamed', r.events[1].topic)
    assert.same({ y = 2 }, r.events[1].data)
    assert.equal(3, r.events[1].seq)
    assert.is_number(r.events[1].time)
    r = feed:read(r.seq)
    assert.equal(0, #r.events)
    assert.equal('[]', wire.encode(r.events))
  end)

  it('sends a snapshot again when events were lost or the daemon restarted', function()
    bus:publish('p.a', {})
    for _ = 1, 5 do
      bus:publish('p.b', {})
    end
    local r = feed:read(1) -- events 2..6 kept? capacity 4: 3..6; 2 is lost
    assert.is_table(r.snapshot)
    r = feed:read(2)
    assert.is_nil(r.snapshot)
    assert.equal(4, #r.events)
    r = feed:read(100) -- ahead of the bus: it restarted
    assert.is_table(r.snapshot)
    assert.equal(6, r.seq)
  end)

  it('passes live events to subscribers', function()
    local got = {}
    local sub = feed:subscribe(function(ev) got[#got + 1] = ev.topic end)
    bus:publish('p.rename', {})
    bus:publish('x.y', {})
    sub:close()
    bus:publish('p.a', {})
    assert.same({ 'p.renamed' }, got)
  end)
end)

describe('moonstack.ui.wire', function()
  it('repairs invalid UTF-8 and keeps valid text', function()
    assert.equal('abc', wire.utf8('abc'))
    assert.equal('h\195\169', wire.utf8('h\195\169'))
    assert.equal('a\239\191\189b', wire.utf8('a\255b'))
    assert.equal('\239\191\189\239\191\189', wire.utf8('\192\128')) -- overlong
    assert.equal('\239\191\189', wire.utf8('\237\160\128'):sub(1, 3)) -- a surrogate
    local text = wire.encode({ lines = wire.array({ 'ok', 'bad\255' }), none = wire.array() })
    assert.equal('{"lines":["ok","bad\239\191\189"],"none":[]}', text)
    assert.same({ lines = { 'ok', 'bad\239\191\189' }, none = {} }, wire.decode(text))
    assert.equal('{"a":null}', wire.encode({ a = json.null }))
  end)
end)
