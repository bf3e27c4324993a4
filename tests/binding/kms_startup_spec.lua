-- SPDX-License-Identifier: Apache-2.0
-- The KMS's first start writes its root keys last (M7 item 14): a config that cannot work
-- (an unknown auth kind, a port in use, an admin listener without a token, a missing
-- collateral file or simulated platform) fails with nothing written to the key directory,
-- and the unknown-kind error lists the valid kinds; a good config writes the five files (0600)
-- once its listeners are bound.
local bit = require('bit')
local uv = require('luv')
local config = require('moonstack.kms.config')
local server = require('moonstack.kms')
local keys = require('moonstack.kms.keys')

local base

local function cfg_of(t)
  t.key_dir = t.key_dir or (base .. '/keys')
  t.listen = t.listen or { host = '127.0.0.1', port = 0 }
  t.auth = t.auth or { kind = 'dev' }
  return assert(config.validate(t))
end

-- A TCP port held by this test (a listener nobody accepts on).
local function busy_port()
  local tcp = uv.new_tcp()
  assert(tcp:bind('127.0.0.1', 0))
  assert(tcp:listen(1, function() end))
  return tcp, tcp:getsockname().port
end

local function nothing_written(dir)
  if not uv.fs_stat(dir) then
    return true
  end
  local names = {}
  for name in uv.fs_scandir_next, uv.fs_scandir(dir) do
    names[#names + 1] = name
  end
  assert.same({}, names)
  return true
end

describe('kms first start', function()
  setup(function()
    local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(root, 493)
    base = assert(uv.fs_mkdtemp(root .. '/kms_startup_spec.XXXXXX'))
  end)

  teardown(function()
    os.execute(("rm -rf '%s'"):format(base))
  end)

  it('refuses an unknown auth kind at validation, listing the valid kinds', function()
    local cfg, err, code = config.validate({ key_dir = base .. '/keys', auth = { kind = 'devv' } })
    assert.is_nil(cfg)
    assert.equal('EINVAL', code)
    assert.truthy(err:find("config.auth.kind: unknown auth kind 'devv' (valid: dev, eth, policy, webhook)",
      1, true), err)
    -- a kind slipped past validation: refused by start, nothing written
    local c = cfg_of({ key_dir = base .. '/devv' })
    c.auth = { kind = 'devv' }
    local k
    k, err, code = server.start(c)
    assert.is_nil(k)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('valid: dev, eth, policy, webhook', 1, true), err)
    assert.is_true(nothing_written(base .. '/devv'))
  end)

  it('writes nothing when the RPC port is in use', function()
    local tcp, port = busy_port()
    local k, err, code = server.start(cfg_of({ key_dir = base .. '/busy-rpc',
      listen = { host = '127.0.0.1', port = port } }))
    tcp:close()
    assert.is_nil(k)
    assert.equal('EADDRINUSE', code)
    assert.truthy(err:find('rpc listener', 1, true), err)
    assert.is_true(nothing_written(base .. '/busy-rpc'))
  end)

  it('writes nothing when the admin port is in use or the admin has no credential', function()
    local tcp, port = busy_port()
    local k, err, code = server.start(cfg_of({ key_dir = base .. '/busy-admin',
      admin = { listen = { port = port }, token = 'x' } }))
    tcp:close()
    assert.is_nil(k)
    assert.equal('EADDRINUSE', code)
    assert.truthy(err:find('admin listener', 1, true), err)
    assert.is_true(nothing_written(base .. '/busy-admin'))
    if not (os.getenv('DSTACK_KMS_ADMIN_TOKEN') or os.getenv('ADMIN_API_TOKEN')) then
      k, err, code = server.start(cfg_of({ key_dir = base .. '/no-token',
        admin = { listen = { port = 0 } } }))
      assert.is_nil(k)
      assert.equal('EINVAL', code, err)
      assert.is_true(nothing_written(base .. '/no-token'))
    end
  end)

  it('writes nothing when the attestation settings are unusable', function()
    local k, err, code = server.start(cfg_of({ key_dir = base .. '/no-coll',
      attestation = { collateral_file = base .. '/missing.json' } }))
    assert.is_nil(k)
    assert.equal('ENOENT', code, err)
    assert.is_true(nothing_written(base .. '/no-coll'))
  end)

  it('writes the five files, 0600, once the listeners are bound', function()
    local k = assert(server.start(cfg_of({ key_dir = base .. '/good' })))
    assert.truthy(k:port() > 0)
    for _, name in ipairs(keys.FILES) do
      local st = assert(uv.fs_stat(base .. '/good/' .. name), name)
      assert.equal(384, bit.band(st.mode, 511), name)
    end
    assert.equal(448, bit.band(assert(uv.fs_stat(base .. '/good')).mode, 511))
    local root = k.material.root_scalar
    k:close()
    local again = assert(server.start(cfg_of({ key_dir = base .. '/good' })))
    assert.equal(root, again.material.root_scalar)
    again:close()
  end)
end)
