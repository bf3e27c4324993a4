-- SPDX-License-Identifier: Apache-2.0
-- moonstack.http.static through Server:static on a real server: MIME types, ETag and
-- If-None-Match -> 304, HEAD, Cache-Control, nosniff, index pages, the redirect of a bare
-- prefix, development mode (edits show at once) and the embedded ui/ files; traversal attempts
-- sent raw on a socket and straight to the handler (the transport normalises some of them
-- away, the handler must refuse them all by itself). Also moonstack.http.assets's folder
-- beside --lua-dir, in a child process, and moonstack.http.template.
local loop = require('loop')
local raw = require('raw_conn')
local fixtures = require('fixtures')
local server = require('moonstack.http.server')
local client = require('moonstack.http.client')
local static = require('moonstack.http.static')
local assets = require('moonstack.http.assets')
local template = require('moonstack.http.template')
local native = require('moonstack.native.runtime')

local SECRET = 'top secret outside the mount'
local PNG = '\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1'

local FILES = {
  ['site/index.html'] = '<!doctype html><title>home</title>',
  ['site/app.js'] = 'console.log(1)',
  ['site/mod.mjs'] = 'export default 1',
  ['site/style.css'] = 'body{}',
  ['site/logo.svg'] = '<svg xmlns="http://www.w3.org/2000/svg"/>',
  ['site/pic.png'] = PNG,
  ['site/data.json'] = '{"a":1}',
  ['site/favicon.ico'] = '\0\0\1\0',
  ['site/font.woff2'] = 'wOF2',
  ['site/notes.txt'] = 'plain',
  ['site/blob.bin'] = '\1\2\3',
  ['site/UPPER.HTML'] = '<p>upper</p>',
  ['site/sub/index.html'] = '<p>sub</p>',
  ['site/.hidden'] = 'hidden',
  ['secret.txt'] = SECRET,
}

local TYPES = {
  ['app.js'] = 'text/javascript; charset=utf-8', ['mod.mjs'] = 'text/javascript; charset=utf-8',
  ['style.css'] = 'text/css; charset=utf-8', ['logo.svg'] = 'image/svg+xml',
  ['pic.png'] = 'image/png', ['data.json'] = 'application/json', ['favicon.ico'] = 'image/x-icon',
  ['font.woff2'] = 'font/woff2', ['notes.txt'] = 'text/plain; charset=utf-8',
  ['blob.bin'] = 'application/octet-stream', ['UPPER.HTML'] = 'text/html; charset=utf-8',
  ['index.html'] = 'text/html; charset=utf-8',
}

local function write(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

local function request(method, path, extra)
  return ('%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s\r\n'):format(method, path,
    extra or '')
end

describe('moonstack.http.static', function()
  local srv, where, base, dir, real_dir

  -- One raw request on a fresh connection; the parsed response.
  local function fetch(method, path, extra)
    local r, c = raw.request(where, request(method, path, extra))
    assert(r, c)
    c:close()
    return r
  end

  local function get(path, headers)
    return loop.run_task(function()
      return assert(client.get(base .. path, { headers = headers,
        want_headers = { 'x-content-type-options', 'x-extra' } }))
    end)
  end

  setup(function()
    dir = fixtures.tmpdir('static', true)
    os.execute(('mkdir -p %q %q'):format(dir .. '/ui/site/sub', dir .. '/ui/other'))
    for name, data in pairs(FILES) do
      write(dir .. '/ui/' .. name, data)
    end
    real_dir = assets.dir
    assets.dir = function() return dir .. '/ui' end -- development mode on the temporary tree
    srv = server.new({ name = 'static-spec', listen = { host = '127.0.0.1', port = 0 } })
    srv:static('/ui', 'site', { headers = { ['X-Extra'] = 'yes' } })
    srv:static('/kms/', 'kms/onboarding')
    srv:get('/handler', function() return 200, 'a route' end)
    assert(srv:listen())
    where = { host = '127.0.0.1', port = srv:port() }
    base = 'http://127.0.0.1:' .. srv:port()
  end)

  teardown(function()
    assets.dir = real_dir
    srv:close()
    loop.settle()
    os.execute(('rm -rf %q'):format(dir))
  end)

  describe('files', function()
    it('serves the index page with its headers', function()
      local r = get('/ui/')
      assert.equal(200, r.status)
      assert.equal(FILES['site/index.html'], r.body)
      assert.equal('text/html; charset=utf-8', r.headers['content-type'])
      assert.matches('^"[0-9a-f]+"$', r.headers.etag)
      assert.equal(static.etag(r.body), r.headers.etag)
      assert.equal('no-cache', r.headers['cache-control'])
      assert.equal('nosniff', r.headers['x-content-type-options'])
      assert.equal('yes', r.headers['x-extra'])
      assert.equal(FILES['site/index.html'], get('/ui/index.html').body)
      assert.equal(FILES['site/sub/index.html'], get('/ui/sub/').body)
    end)

    it('names every type by its extension', function()
      for name, ctype in pairs(TYPES) do
        local r = get('/ui/' .. name)
        assert.equal(200, r.status, name)
        assert.equal(ctype, r.headers['content-type'], name)
        assert.equal(FILES['site/' .. name], r.body, name)
      end
      assert.equal('application/octet-stream', static.mime('noext'))
      assert.equal('image/png', static.mime('a/B.PNG'))
    end)

    it('answers If-None-Match with 304 when the tag matches', function()
      local etag = get('/ui/app.js').headers.etag
      for _, inm in ipairs({ etag, 'W/' .. etag, '"nope", ' .. etag, '*' }) do
        local r = fetch('GET', '/ui/app.js', 'If-None-Match: ' .. inm .. '\r\n')
        assert.equal(304, r.status, inm)
        assert.equal('', r.body)
        assert.equal(etag, r.headers.etag)
        assert.equal('no-cache', r.headers['cache-control'])
        assert.equal('nosniff', r.headers['x-content-type-options'])
      end
      local r = get('/ui/app.js', { ['If-None-Match'] = '"other"' })
      assert.equal(200, r.status)
      assert.equal(FILES['site/app.js'], r.body)
      assert.equal(304, get('/ui/app.js', { ['If-None-Match'] = etag }).status)
    end)

    it('answers HEAD with the headers of GET and no body', function()
      local g = fetch('GET', '/ui/pic.png')
      local c = assert(raw.connect(where))
      c:write(request('HEAD', '/ui/pic.png'))
      local h = assert(c:read_response(2000, true))
      assert.equal(200, h.status)
      assert.equal(tostring(#PNG), h.headers['content-length'])
      assert.equal(g.headers.etag, h.headers.etag)
      assert.equal('image/png', h.headers['content-type'])
      assert.equal('nosniff', h.headers['x-content-type-options'])
      c:wait_eof(2000)
      assert.equal('', c:data()) -- nothing after the head
      c:close()
      assert.equal(PNG, g.body)
    end)

    it('redirects a bare prefix, refuses other methods and misses with 404', function()
      local r = fetch('GET', '/ui')
      assert.equal(301, r.status)
      assert.equal('/ui/', r.headers.location)
      assert.equal(405, fetch('POST', '/ui/app.js').status)
      assert.equal(405, fetch('DELETE', '/ui/').status)
      r = fetch('GET', '/ui/missing-file.html')
      assert.equal(404, r.status)
      assert.equal('nosniff', r.headers['x-content-type-options'])
      assert.is_nil(r.body:find('missing', 1, true))
      assert.equal(404, fetch('GET', '/ui/sub').status) -- a folder without '/'
      assert.equal('a route', get('/handler').body)
    end)

    it('shows edits at once in development mode', function()
      local before = get('/ui/notes.txt')
      write(dir .. '/ui/site/notes.txt', 'edited')
      local after = get('/ui/notes.txt')
      assert.equal('edited', after.body)
      assert.are_not.equal(before.headers.etag, after.headers.etag)
      write(dir .. '/ui/site/notes.txt', FILES['site/notes.txt'])
    end)
  end)

  describe('traversal', function()
    local function refused(r, what)
      -- the transport cuts a path at a decoded %00: what is left is a file inside the mount
      local inside = r.status == 200
        and (r.body == FILES['site/index.html'] or r.body == FILES['site/app.js'])
      assert.is_true(inside or r.status == 404 or r.status == 400 or r.status == 403 or r.status == 301,
        what .. ': HTTP ' .. r.status)
      assert.is_nil(r.body:find(SECRET, 1, true), what)
      assert.is_nil(r.body:find('secret', 1, true), what)
      assert.is_nil(r.body:find(dir, 1, true), what)
      assert.is_nil(r.body:find('passwd', 1, true), what)
    end

    it('refuses every escape sent raw on a socket', function()
      for _, target in ipairs({
        '/ui/../secret.txt', '/ui/%2e%2e/secret.txt', '/ui/%2E%2E/secret.txt',
        '/ui/.%2e/secret.txt', '/ui/..%2fsecret.txt', '/ui/%2e%2e%2fsecret.txt',
        '/ui/sub/../../secret.txt', '/ui/..\\secret.txt', '/ui/%5c..%5csecret.txt',
        '/ui/%252e%252e/secret.txt', '/ui/%252e%252e%252fsecret.txt', '/ui//etc/passwd',
        '/ui/%2fetc%2fpasswd', '/ui/%00../secret.txt', '/ui/app.js%00', '/ui/.hidden',
        '/ui/%2ehidden', '/ui/C:%5csecret.txt', '/ui/%c0%ae%c0%ae/secret.txt',
        '/../../../../etc/passwd', '/ui/sub/%2e%2e/%2e%2e/secret.txt',
      }) do
        local r, c = raw.request(where, request('GET', target))
        if r then
          c:close()
          refused(r, target)
        end
      end
    end)

    it('refuses them in the handler itself, whatever the transport passed', function()
      local files = static.new('site')
      for _, rest in ipairs({ '../secret.txt', '..', '.', './index.html', 'sub/../../secret.txt',
        '/etc/passwd', '//etc/passwd', '..\\secret.txt', 'a\\b', 'index.html\0.png',
        '%2e%2e/secret.txt', '%2e%2e%2fsecret.txt', '.hidden', 'sub//index.html', 'C:/x',
        'sub/./index.html', ('a/'):rep(300) .. 'x' }) do
        local status, body = files:serve({ method = 'GET', headers = {} }, rest)
        assert.equal(404, status, ('%q'):format(rest))
        assert.same({ error = 'not found' }, body)
      end
      assert.equal(200, (files:serve({ method = 'GET', headers = {} }, 'sub/index.html')))
      assert.has_error(function() static.new('../x') end)
      assert.has_error(function() static.new('/abs') end)
      assert.has_error(function() srv:static('no-slash', 'site') end)
    end)

    it('never reads outside ui/ through assets.read', function()
      for _, name in ipairs({ '../secret.txt', '/etc/passwd', 'site/../secret.txt', 'a\\b', '' }) do
        local data, err, code = assets.read(name)
        assert.is_nil(data)
        assert.equal('EINVAL', code, name)
        assert.is_true(name == '' or not err:find(name, 1, true))
      end
      local data, err, code = assets.read('site/nope.txt')
      assert.is_nil(data)
      assert.equal('ENOENT', code)
      assert.is_nil(err:find('nope', 1, true))
      assert.equal('ENOENT', select(3, assets.read('site'))) -- a folder
      assert.equal('ENOENT', select(3, assets.read('secret.txt/x'))) -- a file as a folder
    end)
  end)

  describe('embedded files', function()
    before_each(function() assets.dir = real_dir end)
    after_each(function() assets.dir = function() return dir .. '/ui' end end)

    it('serves the ui/ folder compiled into the binary', function()
      if real_dir() then
        return -- run with --lua-dir: the files come from the source tree
      end
      assert.is_false(assets.dev())
      local page = native.embedded('ui/kms/onboarding/index.html')
      assert.is_string(page)
      assert.equal(page, assets.read('kms/onboarding/index.html'))
      local r = get('/kms/')
      assert.equal(200, r.status)
      assert.equal(page, r.body)
      assert.equal(static.etag(page), r.headers.etag)
      r = get('/kms/onboarding.js')
      assert.equal('text/javascript; charset=utf-8', r.headers['content-type'])
      assert.equal(304, get('/kms/onboarding.js', { ['If-None-Match'] = r.headers.etag }).status)
      assert.equal(404, get('/kms/nope.js').status)
      assert.equal(404, fetch('GET', '/kms/%2e%2e/%2e%2e/lua/moonstack/cli.lua').status)
    end)
  end)
end)

describe('moonstack.http.assets', function()
  it('reads the ui/ folder beside --lua-dir, lexically', function()
    local moonstack, src = os.getenv('MOONSTACK'), os.getenv('MOONSTACK_SRC')
    if not moonstack or not src then
      return pending('needs MOONSTACK and MOONSTACK_SRC (run through ctest)')
    end
    local dir = fixtures.tmpdir('assets', true)
    os.execute(('mkdir -p %q && ln -s %q %q'):format(dir .. '/tree/ui/kms/onboarding', src .. '/lua',
      dir .. '/tree/lua'))
    write(dir .. '/tree/ui/kms/onboarding/index.html', 'dev copy')
    local p = io.popen(('%q --lua-dir %q -e %q 2>&1'):format(moonstack, dir .. '/tree/lua/',
      "local a = require('moonstack.http.assets') "
        .. "io.write(a.dir(), '|', a.read('kms/onboarding/index.html'))"))
    local out = p:read('*a')
    p:close()
    os.execute(('rm -rf %q'):format(dir))
    assert.equal(dir .. '/tree/ui|dev copy', out)
  end)
end)

describe('moonstack.http.template', function()
  it('inserts every value as text', function()
    local out = template.render('<h1>{{t}}</h1><a title="{{t}}">{{n}} {{b}}{{missing}}</a>',
      { t = '<script>alert("x")</script>&\'', n = 42, b = false })
    assert.equal('<h1>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</h1>'
      .. '<a title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">42 </a>', out)
  end)

  it('repeats, shows and hides sections', function()
    local t = '{{#rows}}[{{k}}={{v}}{{#flag}}!{{/flag}}]{{/rows}}{{^rows}}none{{/rows}}'
      .. '{{#s}}<{{s}}>{{/s}}{{#list}}({{.}}){{/list}}'
    assert.equal('[a=1!][b=&lt;&gt;!]<x>(1)(&amp;)', template.render(t,
      { rows = { { k = 'a', v = 1 }, { k = 'b', v = '<>' } }, flag = true, s = 'x', list = { 1, '&' } }))
    assert.equal('none', template.render(t, { rows = {} }))
    assert.equal('[a=1]', template.render('{{#rows}}[{{k}}={{v}}{{#flag}}!{{/flag}}]{{/rows}}',
      { rows = { { k = 'a', v = 1, flag = false } }, flag = true }))
  end)

  it('raises on a malformed template or a table as text', function()
    for _, bad in ipairs({ '{{#a}}', '{{/a}}', '{{#a}}{{/b}}', '{{a', '{{a b}}', '{{{a}}}', '{{&a}}' }) do
      assert.has_error(function() template.render(bad, { a = true }) end)
    end
    assert.has_error(function() template.render('{{a}}', { a = {} }) end)
  end)
end)
