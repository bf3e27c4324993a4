-- SPDX-License-Identifier: Apache-2.0
-- moonstack.acme.cloudflare against a local stand-in of Cloudflare's v4 API (the real one is
-- not reachable here), answering in the API's shape: zones paged 50 a page (the zone the
-- longest suffix picks is on the third page), records paged 100 a page and filtered by name
-- (the fake also answers near-misses the client must drop), Bearer token checked. Asserts the
-- requests the client makes (paths, query, bodies) and the records it leaves: TXT present and
-- cleanup, CAA as upstream (moonstack.acme.caa) with data { flags, tag, value }.
local loop = require('loop')
local server = require('moonstack.http.server')
local json = require('moonstack.core.json')
local caa = require('moonstack.acme.caa')
local cloudflare = require('moonstack.acme.cloudflare')

describe('acme.cloudflare against an API stand-in', function()
  local srv, base
  local zones, records, log, next_id = {}, {}, {}, 0

  setup(function()
    for i = 1, 120 do
      zones[#zones + 1] = { id = ('z%03d'):format(i), name = ('filler%d.example'):format(i) }
    end
    zones[10] = { id = 'zlocal', name = 'test.local' }
    zones[110] = { id = 'zsub', name = 'Sub.Test.Local' } -- third page, mixed case
    zones[20] = { id = 'zother', name = 'est.local' } -- a suffix of the name but not a label
    srv = server.new({ name = 'cf', listen = { host = '127.0.0.1', port = 0 } })
    srv:route('*', '/*', function(req)
      log[#log + 1] = req.method .. ' ' .. req.path
      if req.headers.authorization ~= 'Bearer tok-123' then
        return 403, { success = false, errors = { { code = 9109, message = 'Invalid access token' } } }
      end
      local a = req.args or {}
      if req.method == 'GET' and req.path == '/client/v4/zones' then
        local page, per = tonumber(a.page), tonumber(a.per_page)
        assert(per == 50, 'per_page')
        local out = {}
        for i = (page - 1) * per + 1, math.min(page * per, #zones) do
          out[#out + 1] = zones[i]
        end
        return 200, { success = true, result = json.array(out),
          result_info = { page = page, total_pages = math.ceil(#zones / per) } }
      end
      local zone, rest = req.path:match('^/client/v4/zones/(%w+)/dns_records(.*)$')
      if zone and req.method == 'GET' and rest == '' then
        assert(tonumber(a.per_page) == 100, 'per_page')
        local match = {}
        for _, r in ipairs(records) do
          -- like the API, a loose match: the client must filter the exact name itself
          if r.zone == zone and r.name:lower():find(a.name:lower(), 1, true) then
            match[#match + 1] = r
          end
        end
        local page = tonumber(a.page)
        local out = {}
        for i = (page - 1) * 100 + 1, math.min(page * 100, #match) do
          local r = match[i]
          out[#out + 1] = { id = r.id, name = r.name, type = r.type, content = r.content, data = r.data }
        end
        return 200, { success = true, result = json.array(out),
          result_info = { page = page, total_pages = math.max(1, math.ceil(#match / 100)) } }
      elseif zone and req.method == 'POST' and rest == '' then
        local b = json.decode(req.body)
        next_id = next_id + 1
        local r = { id = 'r' .. next_id, zone = zone, name = b.name, type = b.type, ttl = b.ttl,
          content = b.content, data = b.data }
        if b.type == 'CAA' then
          r.content = ('%d %s "%s"'):format(b.data.flags, b.data.tag, b.data.value)
        end
        records[#records + 1] = r
        return 200, { success = true, result = { id = r.id } }
      elseif zone and req.method == 'DELETE' then
        local id = rest:match('^/(%w+)$')
        for i, r in ipairs(records) do
          if r.id == id and r.zone == zone then
            table.remove(records, i)
            return 200, { success = true, result = { id = id } }
          end
        end
        return 404, { success = false, errors = { { message = 'not found' } } }
      end
      return 404, { success = false, errors = { { message = 'no route' } } }
    end)
    assert(srv:listen())
    base = ('http://127.0.0.1:%d/client/v4'):format(srv:port())
  end)

  teardown(function()
    srv:close()
  end)

  local function count(t)
    local n = 0
    for _, r in ipairs(records) do
      if r.type == t then
        n = n + 1
      end
    end
    return n
  end

  it('picks the zone by the longest suffix over every page', function()
    loop.run_task(function()
      local p = cloudflare.new({ api_token = 'tok-123', api_url = base })
      assert.equal('zsub', p:zone('*.a.sub.test.local.'))
      assert.equal('zlocal', p:zone('_acme-challenge.test.local'))
      assert.equal('zlocal', p:zone('test.local'))
      local none, err = p:zone('nowhere.invalid')
      assert.is_nil(none)
      assert.matches('ENOENT', err)
    end)
  end)

  it('creates TXT records with the TTL and removes only the exact name', function()
    loop.run_task(function()
      local p = cloudflare.new({ api_token = 'tok-123', api_url = base, ttl = 120 })
      -- a near-miss the stand-in answers for the name: it must survive the cleanup
      records[#records + 1] = { id = 'keep1', zone = 'zlocal', name = 'x._acme-challenge.test.local',
        type = 'TXT', content = 'other' }
      for i = 1, 130 do -- two pages of records at the name
        assert(p:present('_acme-challenge.test.local.', 'v' .. i))
      end
      assert.equal(131, count('TXT'))
      assert.equal(120, records[2].ttl)
      assert.equal('_acme-challenge.test.local', records[2].name)
      assert.is_true(p:cleanup('_ACME-challenge.test.local'))
      assert.equal(1, count('TXT'))
      assert.equal('keep1', records[1].id)
    end)
  end)

  it('sets CAA as upstream with data { flags, tag, value }', function()
    loop.run_task(function()
      local p = cloudflare.new({ api_token = 'tok-123', api_url = base })
      records[#records + 1] = { id = 'old1', zone = 'zlocal', name = 'test.local', type = 'CAA',
        content = '0 issue "comodoca.com"' }
      records[#records + 1] = { id = 'old2', zone = 'zlocal', name = 'test.local', type = 'CAA',
        data = { flags = 0, tag = 'iodef', value = 'mailto:sec@test.local' },
        content = '0 iodef "mailto:sec@test.local"' }
      assert.is_true(caa.set(p, 'test.local', 'https://acme.example/acct/9'))
      local got = {}
      for _, r in ipairs(p:list_caa('test.local')) do
        got[#got + 1] = ('%d %s %s'):format(r.flags, r.tag, r.value)
      end
      table.sort(got)
      local v = 'letsencrypt.org;validationmethods=dns-01;accounturi=https://acme.example/acct/9'
      assert.same({ '0 iodef mailto:sec@test.local', '0 issue ' .. v, '0 issuewild ' .. v }, got)
    end)
  end)

  it('fails closed on a bad token without naming it', function()
    loop.run_task(function()
      local p = cloudflare.new({ api_token = 'wrong-secret', api_url = base })
      local ok, err, code = p:present('_acme-challenge.test.local', 'x')
      assert.is_nil(ok)
      assert.equal('EDNS', code)
      assert.matches('HTTP 403', err)
      assert.is_nil(err:find('wrong-secret', 1, true))
    end)
  end)
end)
