-- SPDX-License-Identifier: Apache-2.0
-- The KMS admin listener over real HTTP: every request needs the admin token (Bearer or
-- X-Admin-Token; missing or wrong -> 401), the token from kms.lua, a token file or the
-- environment, none -> the KMS does not start; ClearImageCache removes exactly the named
-- cache entries (or all), refuses non-hex names; the method is not on the public listener;
-- htpasswd users (bcrypt from the real htpasswd -B) over Basic auth; insecure_no_auth; a token
-- file others may read is refused (M7 item 7).
local uv = require('luv')
local cjson = require('cjson.safe')
local client = require('moonstack.http.client')
local loop = require('tests.helpers.loop')
local admin = require('moonstack.kms.admin')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')

local TOKEN = 's3cret-admin-token'
local base, kms

local function write(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

local function cfg_with(adm)
  return assert(config.validate({ key_dir = base .. '/keys', listen = { host = '127.0.0.1', port = 0 },
    auth = { kind = 'dev' }, admin = adm, image = { cache_dir = base .. '/cache' } }))
end

local function call(headers, body, port, scheme)
  return assert(loop.run_task(function()
    return client.request({ url = ('%s://127.0.0.1:%d/prpc/Admin.ClearImageCache?json')
      :format(scheme or 'http', port or kms:admin_port()), method = 'POST', host = 'localhost',
      headers = headers, body = body or '{}', tls = scheme and { insecure = true } or nil })
  end, 10000))
end

local function populate()
  for _, d in ipairs({ '/cache', '/cache/images', '/cache/images/aa01', '/cache/images/bb02',
    '/cache/measurements', '/cache/measurements/cc03' }) do
    uv.fs_mkdir(base .. d, 448)
  end
  write(base .. '/cache/images/aa01/img', 'x')
  write(base .. '/cache/measurements/cc03/m.json', '{}')
end

describe('kms admin', function()
  setup(function()
    local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(root, 493)
    base = assert(uv.fs_mkdtemp(root .. '/kms_admin_spec.XXXXXX'))
    kms = assert(server.start(cfg_with({ listen = { port = 0 }, token = TOKEN })))
  end)

  teardown(function()
    if kms then
      kms:close()
    end
    os.execute(("rm -rf '%s'"):format(base))
  end)

  it('compares tokens in constant time and resolves them config > file > env', function()
    assert.is_true(admin.equal('abc', 'abc'))
    assert.is_false(admin.equal('abc', 'abd'))
    assert.is_false(admin.equal('abc', 'abcd'))
    assert.is_false(admin.equal('', 'x'))
    local env = { ADMIN_API_TOKEN = 'compat', DSTACK_KMS_ADMIN_TOKEN = ' main\n' }
    local getenv = function(k) return env[k] end
    assert.equal('cfg', admin.token({ token = ' cfg ' }, getenv))
    write(base .. '/tok', 'from-file\n')
    assert(uv.fs_chmod(base .. '/tok', 384)) -- 0600
    assert.equal('from-file', admin.token({ token_file = base .. '/tok' }, getenv))
    assert.equal('main', admin.token({}, getenv))
    env.DSTACK_KMS_ADMIN_TOKEN = nil
    assert.equal('compat', admin.token({ token = '' }, getenv))
    local t, err, code = admin.token({}, function() return nil end)
    assert.is_nil(t)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('no token is configured', 1, true))
    t, err, code = admin.token({ token_file = base .. '/missing' }, getenv)
    assert.is_nil(t)
    assert.equal('ENOENT', code)
    assert.truthy(err:find('admin.token_file', 1, true), err)
  end)

  it('refuses a token file its group or others may read, naming the file and the fix', function()
    write(base .. '/tok-open', 'from-file\n')
    for _, mode in ipairs({ 420, 416, 388 }) do -- 0644, 0640, 0604
      assert(uv.fs_chmod(base .. '/tok-open', mode))
      local t, err, code = admin.token({ token_file = base .. '/tok-open' }, function() return 'env' end)
      assert.is_nil(t)
      assert.equal('EPERM', code)
      assert.truthy(err:find('admin.token_file ' .. base .. '/tok-open is accessible by its group or '
        .. 'others (mode 0' .. ('%o'):format(mode) .. ')', 1, true), err)
      assert.truthy(err:find('run chmod 600 ' .. base .. '/tok-open', 1, true), err)
    end
    -- and the KMS does not start with it
    local k, err, code = server.start(cfg_with({ listen = { port = 0 }, token_file = base .. '/tok-open' }))
    assert.is_nil(k)
    assert.equal('EPERM', code)
    assert.truthy(err:find('tok-open is accessible', 1, true), err)
  end)

  it('answers 401 without the right token', function()
    populate()
    for _, h in ipairs({ {}, { authorization = 'Bearer wrong' }, { ['x-admin-token'] = TOKEN .. 'x' },
      { authorization = TOKEN }, { authorization = 'Basic ' .. TOKEN } }) do
      local r = call(h, '{"image_hash":"all","config_hash":"all"}')
      assert.equal(401, r.status)
      assert.equal('Bearer realm="dstack-kms admin"', r.headers['www-authenticate'])
    end
    assert.is_true(exists(base .. '/cache/images/aa01/img'))
  end)

  it('clears the named cache entries, then all, with a valid token', function()
    populate()
    local r = call({ authorization = 'Bearer ' .. TOKEN }, '{"image_hash":"aa01","config_hash":"cc03"}')
    assert.equal(200, r.status, r.body)
    assert.is_false(exists(base .. '/cache/images/aa01'))
    assert.is_true(exists(base .. '/cache/images/bb02'))
    assert.is_false(exists(base .. '/cache/measurements/cc03'))
    r = call({ ['x-admin-token'] = TOKEN }, '{"image_hash":"../keys"}')
    assert.equal(400, r.status)
    assert.truthy(assert(cjson.decode(r.body)).error:find('image_hash must be hex', 1, true))
    assert.is_true(exists(base .. '/keys/root-ca.key'))
    r = call({ ['x-admin-token'] = TOKEN }, '{"image_hash":"all"}')
    assert.equal(200, r.status, r.body)
    assert.is_false(exists(base .. '/cache/images'))
    assert.is_true(exists(base .. '/cache/measurements'))
  end)

  it('is not served on the public listener', function()
    local r = call({ authorization = 'Bearer ' .. TOKEN }, '{}', kms:port(), 'https')
    assert.equal(400, r.status)
    assert.truthy(r.body:find('no such method', 1, true), r.body)
  end)

  it('takes htpasswd users (bcrypt, made by htpasswd -B) over Basic auth', function()
    if os.getenv('DSTACK_KMS_ADMIN_TOKEN') or os.getenv('ADMIN_API_TOKEN') then
      pending('admin token set in the environment')
      return
    end
    local h = assert(io.popen("htpasswd -nbB -C 4 ops 'pa:ss w0rd' && htpasswd -nbB -C 4 dev other"))
    local lines = h:read('*a')
    h:close()
    assert.truthy(lines:find('^ops:%$2y%$04%$'), lines)
    write(base .. '/htpasswd', '# admins\n' .. lines)
    local k = assert(server.start(cfg_with({ listen = { port = 0 }, htpasswd_file = base .. '/htpasswd' })))
    local function basic(user, pw)
      return { authorization = 'Basic ' .. require('moonstack.core.codec').base64(user .. ':' .. pw) }
    end
    local port = k:admin_port()
    assert.equal(200, call(basic('ops', 'pa:ss w0rd'), '{}', port).status)
    assert.equal(200, call(basic('dev', 'other'), '{}', port).status)
    assert.equal(401, call(basic('ops', 'pa:ss w0rd!'), '{}', port).status)
    assert.equal(401, call(basic('nobody', 'other'), '{}', port).status)
    assert.equal(401, call({ authorization = 'Basic !!!' }, '{}', port).status)
    assert.equal(401, call({ authorization = 'Bearer pa:ss w0rd' }, '{}', port).status) -- no token here
    assert.equal(401, call({}, '{}', port).status)
    k:close()
    -- a hash that is not bcrypt is refused, naming the line
    write(base .. '/htpasswd-md5', 'ops:$apr1$abcdefgh$0123456789abcdefghijkl\n')
    local k2, err, code = server.start(cfg_with({ listen = { port = 0 },
      htpasswd_file = base .. '/htpasswd-md5' }))
    assert.is_nil(k2)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('htpasswd-md5 line 1: the hash of ops is not bcrypt', 1, true), err)
  end)

  it('serves without authentication only when told so (insecure_no_auth)', function()
    if os.getenv('DSTACK_KMS_ADMIN_TOKEN') or os.getenv('ADMIN_API_TOKEN') then
      pending('admin token set in the environment')
      return
    end
    local k = assert(server.start(cfg_with({ listen = { port = 0 }, insecure_no_auth = true })))
    assert.equal(200, call({}, '{}', k:admin_port()).status)
    k:close()
  end)

  it('does not start without a token', function()
    if os.getenv('DSTACK_KMS_ADMIN_TOKEN') or os.getenv('ADMIN_API_TOKEN') then
      pending('admin token set in the environment')
      return
    end
    local k, err, code = server.start(cfg_with({ listen = { port = 0 } }))
    assert.is_nil(k)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('no token is configured', 1, true), err)
  end)
end)
