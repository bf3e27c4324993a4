-- SPDX-License-Identifier: Apache-2.0
-- moonstack.kms.image, the OS-image gate: a BootInfo naming an image passes only with boot
-- measurements registered for it (one object or a list; any case, 0x allowed); none named
-- passes; verify = false passes all; malformed registrations are refused naming the file and
-- the field; a changed file is read again.
local uv = require('luv')
local image = require('moonstack.kms.image')

local H = ('ab'):rep(32)
local GOOD = { mrtd = ('01'):rep(48), rtmr0 = ('02'):rep(48), rtmr1 = ('03'):rep(48), rtmr2 = ('04'):rep(48) }

local function boot(over)
  local b = { osImageHash = H, mrtd = GOOD.mrtd, rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1, rtmr2 = GOOD.rtmr2,
    rtmr3 = ('ff'):rep(48) }
  for k, v in pairs(over or {}) do
    b[k] = v
  end
  return b
end

describe('kms.image gate', function()
  local dir

  before_each(function()
    local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
    uv.fs_mkdir(root, 493)
    dir = assert(uv.fs_mkdtemp(root .. '/kms_image_spec.XXXXXX'))
  end)

  after_each(function()
    os.execute(("rm -rf '%s'"):format(dir))
  end)

  local function register(text, hash)
    local f = assert(io.open(dir .. '/' .. (hash or H) .. '.json', 'wb'))
    f:write(text)
    f:close()
  end

  it('passes a boot chain registered for the named image, and nothing else', function()
    local g = image.new(dir)
    register(require('cjson').encode(GOOD))
    assert.is_true(g:check(boot()))
    assert.is_true(g:check(boot({ osImageHash = H:upper() })))
    for _, f in ipairs({ 'mrtd', 'rtmr0', 'rtmr1', 'rtmr2' }) do
      local ok, err, code = g:check(boot({ [f] = ('00'):rep(48) }))
      assert.is_nil(ok, f)
      assert.equal('EIMAGE', code)
      assert.truthy(err:find('are not those registered for OS image ' .. H, 1, true), err)
    end
    -- RTMR3 (the app's runtime events) is not the image's
    assert.is_true(g:check(boot({ rtmr3 = ('00'):rep(48) })))
  end)

  it('accepts a list of boot chains (one per VM shape), 0x and any case', function()
    local g = image.new(dir)
    local other = { mrtd = '0x' .. ('AA'):rep(48), rtmr0 = ('BB'):rep(48), rtmr1 = ('cc'):rep(48),
      rtmr2 = ('dd'):rep(48) }
    register(require('cjson').encode({ other, GOOD }))
    assert.is_true(g:check(boot()))
    assert.is_true(g:check(boot({ mrtd = ('aa'):rep(48), rtmr0 = ('bb'):rep(48), rtmr1 = ('cc'):rep(48),
      rtmr2 = ('dd'):rep(48) })))
  end)

  it('lets a BootInfo naming no image through, and everything when verify = false', function()
    assert.is_true(image.new(dir):check(boot({ osImageHash = '' })))
    assert.is_true(image.new(dir, { verify = false }):check(boot({ osImageHash = ('cd'):rep(32) })))
    local ok, err = image.new(dir):check(boot({ osImageHash = 'zz' }))
    assert.is_nil(ok)
    assert.truthy(err:find('osImageHash is not 32 bytes of hex', 1, true), err)
  end)

  it('refuses unknown images and malformed registrations, naming the file and field', function()
    local g = image.new(dir)
    local ok, err = g:check(boot())
    assert.is_nil(ok)
    assert.truthy(err:find('OS image ' .. H .. ' has no registered boot measurements (' .. dir, 1, true), err)
    local cases = {
      { 'not json', 'not a measurements object or a list of them' },
      { '[]', 'not a measurements object or a list of them' },
      { '[5]', 'entry 1 is not an object' },
      { '{"mrtd":"00","rtmr0":"00","rtmr1":"00","rtmr2":"00"}', 'entry 1: mrtd must be 48 bytes of hex' },
      { require('cjson').encode({ mrtd = GOOD.mrtd, rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1 }),
        'entry 1: rtmr2 must be 48 bytes of hex' },
      { require('cjson').encode({ GOOD, { mrtd = ('zz'):rep(48), rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1,
        rtmr2 = GOOD.rtmr2 } }), 'entry 2: mrtd must be 48 bytes of hex' },
    }
    for _, c in ipairs(cases) do
      register(c[1])
      ok, err = image.new(dir):check(boot())
      assert.is_nil(ok, c[1])
      assert.truthy(err:find(c[2], 1, true), ('%q not in %q'):format(c[2], err))
      assert.truthy(err:find(H .. '.json', 1, true), err)
    end
  end)

  it('reads a changed registration again', function()
    local g = image.new(dir)
    register(require('cjson').encode({ mrtd = ('09'):rep(48), rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1,
      rtmr2 = GOOD.rtmr2 }))
    assert.is_nil((g:check(boot())))
    register(require('cjson').encode({ { mrtd = ('09'):rep(48), rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1,
      rtmr2 = GOOD.rtmr2 }, GOOD }))
    assert.is_true(g:check(boot()))
  end)
  it('register() adds entries (deduplicated, as a list) that the gate then passes', function()
    local sub = dir .. '/m'
    local ok, what = image.register(sub, H:upper(), { mrtd = '0x' .. GOOD.mrtd:upper(),
      rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1, rtmr2 = GOOD.rtmr2, vm_config = { cpu_count = 2 } })
    assert.is_true(ok)
    assert.equal('added', what)
    assert.is_true(image.new(sub):check(boot()))
    assert.same({ true, 'present' }, { image.register(sub, H, GOOD) })
    local other = { mrtd = ('aa'):rep(48), rtmr0 = GOOD.rtmr0, rtmr1 = GOOD.rtmr1, rtmr2 = GOOD.rtmr2 }
    assert.same({ true, 'added' }, { image.register(sub, H, other) })
    local list = require('cjson').decode(io.open(sub .. '/' .. H .. '.json'):read('*a'))
    assert.equal(2, #list)
    assert.equal(2, list[1].vm_config.cpu_count)
    assert.is_true(image.new(sub):check(boot({ mrtd = other.mrtd })))
    assert.is_true(image.new(sub):check(boot()))
    -- an existing single object becomes a list
    register(require('cjson').encode(GOOD))
    assert.same({ true, 'added' }, { image.register(dir, H, other) })
    assert.equal(2, #require('cjson').decode(io.open(dir .. '/' .. H .. '.json'):read('*a')))
    -- refusals name the field
    local bad = { mrtd = GOOD.mrtd, rtmr0 = GOOD.rtmr0, rtmr1 = ('03'):rep(47), rtmr2 = GOOD.rtmr2 }
    local _, err, code = image.register(sub, H, bad)
    assert.equal('EIMAGE', code)
    assert.truthy(err:find('rtmr1 must be 48 bytes of hex', 1, true), err)
    _, err = image.register(sub, 'zz', GOOD)
    assert.truthy(err:find('os_image_hash', 1, true), err)
  end)
  it('passes by the lite path (vm_config tdx_measurement + event log) without a registration', function()
    local fixtures = require('tests.helpers.fixtures')
    local cjson = require('cjson')
    local d = cjson.decode(fixtures.read_vector('dstack/verifier/tdx-lite-getquote.json'))
    local function reg(off) return d.quote:sub(off * 2 + 1, (off + 48) * 2) end
    local lb = { osImageHash = 'e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db',
      mrtd = reg(184), rtmr0 = reg(376), rtmr1 = reg(424), rtmr2 = reg(472) }
    local g = image.new(dir)
    local ctx = { vm_config = d.vm_config, events = function() return cjson.decode(d.event_log) end }
    assert.is_true(g:check(lb, ctx))
    -- nested as upstream's sys-config / GetQuote shapes
    assert.is_true(g:check(lb, { vm_config = cjson.encode({ vm_config = d.vm_config }),
      events = cjson.decode(d.event_log) }))
    -- without the context, or with another register, or another image: denied, saying why
    local ok, err = g:check(lb)
    assert.is_nil(ok)
    assert.truthy(err:find('no registered boot measurements', 1, true), err)
    local other = {}
    for k, v in pairs(lb) do other[k] = v end
    other.rtmr1 = ('00'):rep(48)
    ok, err = g:check(other, ctx)
    assert.is_nil(ok)
    assert.truthy(err:find('lite measurement: its measurement document gives another RTMR1', 1, true), err)
    other.rtmr1, other.osImageHash = lb.rtmr1, H
    ok, err = g:check(other, ctx)
    assert.is_nil(ok)
    assert.truthy(err:find('vm_config.os_image_hash is not the image named', 1, true), err)
    -- an event log without the ACPI events, or a broken one: denied
    ok, err = g:check(lb, { vm_config = d.vm_config, events = {} })
    assert.is_nil(ok)
    assert.truthy(err:find('ACPI', 1, true), err)
    ok, err = g:check(lb, { vm_config = d.vm_config, events = function() error('boom') end })
    assert.is_nil(ok)
    assert.truthy(err:find('internal error', 1, true), err)
  end)
end)
