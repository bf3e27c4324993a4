-- SPDX-License-Identifier: Apache-2.0
-- pRPC's HTTP methods: GET and HEAD take the message from the query, POST from the body; any
-- other method (PUT, DELETE, PATCH, OPTIONS) is a 405 with Allow, on method paths and on the
-- paths the fallback serves alike (they answered 200 as if they were POSTs).
local cjson = require('cjson.safe')
local prpc = require('moonstack.core.prpc')

local Echo = { { 1, 'text', 'string' } }
local methods = {
  Echo = { input = Echo, output = Echo, call = function(args) return { text = args.text } end },
}

local function handler()
  return prpc.handler({ { prefix = '/prpc/', service = 'Test', methods = methods } }, function(req)
    if req.path == '/health' then
      return 200, 'OK', { ['content-type'] = 'text/plain' }
    end
  end)
end

local function req(method, path, opts)
  opts = opts or {}
  return { method = method, path = path, body = opts.body or '', args = opts.args or {},
    headers = { ['content-type'] = opts.ctype } }
end

describe('pRPC methods', function()
  it('answers GET from the query and POST from the body', function()
    local h = handler()
    local status, body = h(req('GET', '/prpc/Echo', { args = { text = 'q' } }))
    assert.are.equal(200, status)
    assert.are.equal('q', cjson.decode(body).text)
    status, body = h(req('POST', '/prpc/Test.Echo', { body = '{"text":"b"}', ctype = 'application/json' }))
    assert.are.equal(200, status)
    assert.are.equal('b', cjson.decode(body).text)
  end)

  it('answers HEAD as GET (the server leaves the body out)', function()
    local status, body, headers = handler()(req('HEAD', '/prpc/Echo', { args = { text = 'h' } }))
    assert.are.equal(200, status)
    assert.are.equal('h', cjson.decode(body).text)
    assert.are.equal('application/json', headers['content-type'])
  end)

  it('refuses other methods with 405 and Allow, before any body is decoded', function()
    local h = handler()
    for _, m in ipairs({ 'PUT', 'DELETE', 'PATCH', 'OPTIONS' }) do
      for _, path in ipairs({ '/prpc/Echo', '/prpc/Test.Echo', '/prpc/Nope', '/health', '/x' }) do
        local status, body, headers = h(req(m, path, { body = '{}', ctype = 'application/json' }))
        assert.are.equal(405, status, m .. ' ' .. path)
        assert.are.equal('method not allowed', cjson.decode(body).error)
        assert.are.equal('GET, HEAD, POST', headers.allow)
      end
    end
  end)
end)
