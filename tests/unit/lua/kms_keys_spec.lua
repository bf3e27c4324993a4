-- SPDX-License-Identifier: Apache-2.0
-- moonstack.kms.keys: the first start creates the root material (0700 directory, 0600 files,
-- certificates of the right profiles), later starts load the same keys, and a partial,
-- corrupt or mismatched directory is an EKEYS error naming the file, never a regeneration;
-- sealed at rest, the private keys open only with the same measurements and file names; CA
-- certificates due within 365 days are renewed for the same keys.
local bit = require('bit')
local uv = require('luv')
local crypto = require('moonstack.crypto')
local x509 = require('moonstack.x509')
local keys = require('moonstack.kms.keys')
local seal = require('moonstack.kms.seal')

local base

local function fresh_dir(name)
  return base .. '/' .. name
end

local function slurp(p)
  local f = assert(io.open(p, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

local function spit(p, s)
  local f = assert(io.open(p, 'wb'))
  f:write(s)
  f:close()
end

local function mode_of(p)
  return bit.band(uv.fs_stat(p).mode, 511)
end

local function expect_ekeys(fragment, m, err, code)
  assert.is_nil(m)
  assert.equal('EKEYS', code)
  assert.truthy(err:find(fragment, 1, true), ('%q not in %q'):format(fragment, err))
end

describe('kms.keys', function()
  setup(function()
    local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(root, 493)
    base = assert(uv.fs_mkdtemp(root .. '/kms_keys_spec.XXXXXX'))
  end)

  teardown(function()
    os.execute(("rm -rf '%s'"):format(base))
  end)

  it('creates the root material on first start and loads the same keys later', function()
    local dir = fresh_dir('first/keys')
    local m, created = keys.open(dir)
    assert.is_table(m, created)
    assert.is_true(created)
    assert.equal(448, mode_of(dir)) -- 0700
    for _, name in ipairs(keys.FILES) do
      assert.equal(384, mode_of(dir .. '/' .. name), name) -- 0600
    end
    assert.equal(32, #slurp(dir .. '/root-k256.key'))
    assert.equal(slurp(dir .. '/root-k256.key'), m.root_k256)
    assert.equal(crypto.k256.pubkey(m.root_k256), m.k256_pubkey)

    local root = m.root_cert:info()
    assert.equal('Dstack KMS CA', root.cn)
    assert.equal('Dstack', root.org)
    assert.is_true(root.ca)
    assert.equal(1, root.pathlen)
    local tmp = m.tmp_ca_cert:info()
    assert.equal('Dstack Client Temp CA', tmp.cn)
    assert.equal(0, tmp.pathlen)
    assert.not_equal(m.root_scalar, m.tmp_ca_key:scalar())

    local again, created2 = keys.open(dir)
    assert.is_false(created2)
    assert.equal(m.root_scalar, again.root_scalar)
    assert.equal(m.root_k256, again.root_k256)
    assert.equal(m.root_cert:pem(), again.root_cert:pem())
    assert.equal(m.tmp_ca_key:scalar(), again.tmp_ca_key:scalar())
    assert.equal(m.tmp_ca_cert:pem(), again.tmp_ca_cert:pem())
    -- nothing left behind by the atomic writes
    local n = 0
    for _ in uv.fs_scandir_next, uv.fs_scandir(dir) do
      n = n + 1
    end
    assert.equal(#keys.FILES, n)
  end)

  it('uses given root scalars (vectors) and refuses to overwrite', function()
    local dir = fresh_dir('vector')
    local scalar = crypto.unhex('f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1')
    local m = assert(keys.create(dir, { root_scalar = scalar, root_k256 = ('\1'):rep(32) }))
    assert.equal(scalar, m.root_scalar)
    assert.equal(scalar, assert(x509.load_key(slurp(dir .. '/root-ca.key'))):scalar())
    expect_ekeys('refusing to overwrite', keys.create(dir))
  end)

  it('refuses a partial directory, naming the missing files', function()
    local dir = fresh_dir('partial')
    assert(keys.create(dir))
    os.remove(dir .. '/root-k256.key')
    os.remove(dir .. '/tmp-ca.crt')
    expect_ekeys('missing root-k256.key, tmp-ca.crt', keys.open(dir))
    assert.is_nil(uv.fs_stat(dir .. '/root-k256.key')) -- not regenerated
  end)

  it('refuses corrupt files, naming the file', function()
    local dir = fresh_dir('corrupt')
    local m = assert(keys.create(dir))
    local k256 = slurp(dir .. '/root-k256.key')
    spit(dir .. '/root-k256.key', k256:sub(1, 31))
    expect_ekeys(dir .. '/root-k256.key must hold a raw 32-byte', keys.open(dir))
    spit(dir .. '/root-k256.key', ('\0'):rep(32))
    expect_ekeys(dir .. '/root-k256.key is not a valid secp256k1 scalar', keys.open(dir))
    spit(dir .. '/root-k256.key', k256)

    local key = slurp(dir .. '/root-ca.key')
    spit(dir .. '/root-ca.key', key:sub(1, 60))
    expect_ekeys(dir .. '/root-ca.key is not a P-256 private key', keys.open(dir))
    spit(dir .. '/root-ca.key', m.root_key:public_pem())
    expect_ekeys(dir .. '/root-ca.key is not a P-256 private key', keys.open(dir))
    spit(dir .. '/root-ca.key', key)

    spit(dir .. '/tmp-ca.crt', 'garbage')
    expect_ekeys(dir .. '/tmp-ca.crt is not a certificate', keys.open(dir))
    spit(dir .. '/tmp-ca.crt', m.root_cert:pem()) -- a valid cert of another key
    expect_ekeys(dir .. '/tmp-ca.crt does not certify the key in ' .. dir .. '/tmp-ca.key',
      keys.open(dir))
    spit(dir .. '/tmp-ca.crt', m.tmp_ca_cert:pem())
    assert.equal(m.root_scalar, assert(keys.open(dir)).root_scalar)
  end)

  it('removes the temporaries of an interrupted first start before creating (M7 item 7)', function()
    local dir = fresh_dir('interrupted')
    assert(uv.fs_mkdir(dir, 448))
    -- what a kill between write_atomic's open and rename leaves: a full private key
    local left = { 'root-ca.key.tmp.4242.1f2e3d', 'tmp-ca.key.tmp.4242.abc' }
    for _, name in ipairs(left) do
      spit(dir .. '/' .. name, '-----BEGIN PRIVATE KEY-----\n...\n')
    end
    spit(dir .. '/notes.tmp', 'not ours') -- another name pattern: kept
    local told
    local m, created = keys.open(dir, { on_cleaned = function(names) told = names end })
    assert.is_table(m, created)
    assert.is_true(created)
    assert.same(left, told)
    for _, name in ipairs(left) do
      assert.is_nil(uv.fs_stat(dir .. '/' .. name), name)
    end
    assert.is_table(uv.fs_stat(dir .. '/notes.tmp'))
    -- leftovers next to a complete directory go too (a kill during a renewal)
    spit(dir .. '/root-ca.crt.tmp.77.ff', 'x')
    assert(keys.open(dir))
    assert.is_nil(uv.fs_stat(dir .. '/root-ca.crt.tmp.77.ff'))
  end)

  it('generates without writing when told to defer (the KMS writes once it is ready)', function()
    local dir = fresh_dir('deferred')
    local m, created = keys.open(dir, { defer_write = true })
    assert.is_table(m, created)
    assert.is_true(created)
    assert.is_nil(uv.fs_stat(dir))
    assert(keys.write(dir, m))
    assert.equal(m.root_scalar, assert(keys.load(dir)).root_scalar)
  end)

  it('refuses private keys others may read and a directory others may write (M7 item 7)', function()
    local dir = fresh_dir('modes')
    assert(keys.create(dir))
    for _, c in ipairs({ { 'root-ca.key', 420 }, { 'root-k256.key', 416 }, { 'tmp-ca.key', 388 } }) do
      local p = dir .. '/' .. c[1]
      assert(uv.fs_chmod(p, c[2]))
      expect_ekeys(('%s is accessible by its group or others (mode 0%o)'):format(p, c[2]), keys.open(dir))
      expect_ekeys('run chmod 600 ' .. p, keys.load(dir))
      assert(uv.fs_chmod(p, 384))
    end
    -- certificates are public; a directory others may read but not write still loads
    assert(uv.fs_chmod(dir .. '/root-ca.crt', 420))
    assert(uv.fs_chmod(dir, 493)) -- 0755
    assert(keys.open(dir))
    assert(uv.fs_chmod(dir, 511)) -- 0777: anyone could swap the files
    expect_ekeys('the key directory ' .. dir .. ' is writable by its group or others (mode 0777)',
      keys.open(dir))
    expect_ekeys('run chmod 700 ' .. dir, keys.load(dir))
    -- an empty directory others may write is not filled either
    local open = fresh_dir('open-empty')
    assert(uv.fs_mkdir(open, 448))
    assert(uv.fs_chmod(open, 511))
    expect_ekeys('is writable by its group or others', keys.open(open))
    assert.same({}, (function()
      local names = {}
      for name in uv.fs_scandir_next, uv.fs_scandir(open) do
        names[#names + 1] = name
      end
      return names
    end)())
  end)

  describe('sealed at rest', function()
    local function measurements(tweak)
      return { mrtd = ('\1'):rep(48), rtmr0 = ('\2'):rep(48), rtmr1 = (tweak or '\3'):rep(48),
        rtmr2 = ('\4'):rep(48) }
    end

    it('seals the private keys with the CVM measurements and loads them back', function()
      local tee = assert(require('moonstack.sim').new({ dir = base .. '/sim', cvm = 'kms',
        create = true }))
      local sealer = assert(seal.sim(tee))
      tee:close()
      local dir = fresh_dir('sealed')
      local m = assert(keys.open(dir, { sealer = sealer }))
      for _, name in ipairs({ 'root-ca.key', 'root-k256.key', 'tmp-ca.key' }) do
        local data = slurp(dir .. '/' .. name)
        assert.is_true(seal.is_sealed(data), name)
        assert.is_nil(data:find('PRIVATE KEY', 1, true), name)
      end
      assert.is_false(seal.is_sealed(slurp(dir .. '/root-ca.crt')))
      local again = assert(keys.open(dir, { sealer = sealer }))
      assert.equal(m.root_scalar, again.root_scalar)
      assert.equal(m.root_k256, again.root_k256)
      assert.equal(m.tmp_ca_key:scalar(), again.tmp_ca_key:scalar())
      -- the same measurements give the same key (a restart of the same CVM)
      local m2 = assert(require('moonstack.sim').new({ dir = base .. '/sim', cvm = 'kms' }))
      assert.equal(m.root_k256, assert(keys.load(dir, { sealer = assert(seal.sim(m2)) })).root_k256)
      m2:close()
    end)

    it('refuses a sealed directory without the sealer, with other measurements, or swapped files',
      function()
        local dir = fresh_dir('sealed2')
        local sealer = seal.from_measurements('test', measurements())
        assert(keys.create(dir, { sealer = sealer }))
        expect_ekeys(dir .. '/root-ca.key is sealed: configure the sealing backend', keys.load(dir))
        local other = seal.from_measurements('test', measurements('\5'))
        expect_ekeys(dir .. '/root-ca.key: EUNSEAL: cannot unseal', keys.load(dir, { sealer = other }))
        local tmp_key = slurp(dir .. '/tmp-ca.key')
        spit(dir .. '/tmp-ca.key', slurp(dir .. '/root-ca.key'))
        expect_ekeys(dir .. '/tmp-ca.key: EUNSEAL: cannot unseal', keys.load(dir, { sealer = sealer }))
        spit(dir .. '/tmp-ca.key', tmp_key:sub(1, 20))
        expect_ekeys(dir .. '/tmp-ca.key: EUNSEAL: sealed blob truncated',
          keys.load(dir, { sealer = sealer }))
        spit(dir .. '/tmp-ca.key', tmp_key)
        assert(keys.load(dir, { sealer = sealer }))
        -- a plain directory is refused when sealing is configured
        local plain = fresh_dir('plain')
        assert(keys.create(plain))
        expect_ekeys(plain .. '/root-ca.key is not sealed, but sealing is configured',
          keys.load(plain, { sealer = sealer }))
      end)
  end)

  it('renews CA certificates that expire within 365 days, keeping their keys', function()
    local dir = fresh_dir('renew')
    local m = assert(keys.create(dir))
    local profiles = require('moonstack.x509.profiles')
    local now = os.time()
    -- the root expires in 100 days, the temp CA in 400: only the root is renewed
    local day = 86400
    local soon = assert(profiles.kms_root_ca(m.root_key, { not_after = now + 100 * day }))
    local later = assert(profiles.kms_tmp_ca(m.tmp_ca_key, { not_after = now + 400 * day }))
    spit(dir .. '/root-ca.crt', soon:pem())
    spit(dir .. '/tmp-ca.crt', later:pem())
    local tmp_before = slurp(dir .. '/tmp-ca.crt')
    local loaded = assert(keys.load(dir))
    assert.same({ 'root-ca.crt' }, assert(keys.renew(loaded, { now = now })))
    local root = assert(x509.cert(slurp(dir .. '/root-ca.crt')))
    assert.truthy(root:info().not_after > now + 3000 * 86400)
    assert.equal(m.root_key:spki(), root:spki())
    assert.equal('Dstack KMS CA', root:info().cn)
    assert.equal(root:pem(), loaded.root_cert:pem())
    assert.equal(tmp_before, slurp(dir .. '/tmp-ca.crt'))
    assert.equal(384, bit.band(assert(uv.fs_stat(dir .. '/root-ca.crt')).mode, 511))
    -- a year later the temp CA is due too; nothing is due right after
    assert.same({ 'tmp-ca.crt' }, assert(keys.renew(loaded, { now = now + 40 * 86400 })))
    assert.equal(m.tmp_ca_key:spki(), assert(x509.cert(slurp(dir .. '/tmp-ca.crt'))):spki())
    assert.same({}, assert(keys.renew(assert(keys.load(dir)), { now = now })))
  end)

  it('raises on misuse', function()
    assert.has_error(function() keys.open(nil) end, 'kms.keys.open: dir must be a non-empty string')
    assert.has_error(function() keys.load('') end, 'kms.keys.load: dir must be a non-empty string')
  end)
end)
