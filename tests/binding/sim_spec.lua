-- SPDX-License-Identifier: Apache-2.0
-- The contract of moonstack.native.sim and of the sim TEE backend (moonstack.sim): the state
-- directory is made once and reused, quotes carry the padded report_data and the extended
-- RTMRs at the v4 offsets, the PEM chain and the collateral's chain verify with the openssl
-- CLI against the simulated root, misuse raises, failures return nil, "CODE: msg", CODE, and
-- the backend is only ever selected explicitly.
local bit = require('bit')
local uv = require('luv')
local cjson = require('cjson')
local native = require('moonstack.native.sim')
local sim = require('moonstack.sim')
local backend = require('moonstack.core.tee')
require('moonstack.tdx.tee') -- registers 'tdx' and 'sim'
local eventlog = require('moonstack.tdx.eventlog')
local fixtures = require('fixtures')

local vector = fixtures.vector

local function tmpdir()
  return fixtures.tmpdir('sim')
end

local function hex(s)
  return (s:gsub('.', function(c) return ('%02x'):format(c:byte()) end))
end

local function unhex(s)
  return (s:gsub('..', function(h) return string.char(tonumber(h, 16)) end))
end

local function u32le(s, off) -- 0-based offset
  local a, b, c, d = s:byte(off + 1, off + 4)
  return a + b * 256 + c * 65536 + d * 16777216
end

local function write(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

-- Run a shell command; returns whether it exited 0, and its output.
local function sh(cmd)
  local p = assert(io.popen(cmd .. ' 2>&1; echo "exit=$?"'))
  local out = p:read('*a')
  p:close()
  local body, rc = out:match('^(.-)exit=(%d+)%s*$')
  return rc == '0', body
end

-- SHA-384 with the openssl CLI (an implementation independent of the native).
local function sha384(dir, data)
  write(dir .. '/in.bin', data)
  local ok, out = sh(('openssl dgst -sha384 -binary %q | od -An -v -tx1'):format(dir .. '/in.bin'))
  assert(ok, out)
  return unhex((out:gsub('%s', '')))
end

-- The PEM certificates of a text, in order.
local function pem_certs(text)
  local certs = {}
  for c in text:gmatch('%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-\n') do
    certs[#certs + 1] = c
  end
  return certs
end

local function openssl_verify(dir, root_pem, leaf, intermediates)
  write(dir .. '/root.pem', root_pem)
  write(dir .. '/leaf.pem', leaf)
  local untrusted = ''
  if intermediates then
    write(dir .. '/inter.pem', intermediates)
    untrusted = ('-untrusted %q'):format(dir .. '/inter.pem')
  end
  return sh(('openssl verify -CAfile %q %s %q'):format(dir .. '/root.pem', untrusted, dir .. '/leaf.pem'))
end

describe('moonstack.native.sim', function()
  local dir, s

  before_each(function()
    dir = tmpdir()
    s = assert(native.open(dir .. '/state'))
  end)

  after_each(function()
    if s then s:close() end
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('makes the state directory once and reuses it', function()
    local pem, der = s:root_ca()
    assert.truthy(pem:find('BEGIN CERTIFICATE', 1, true))
    assert.truthy(#der > 300)
    assert.equal(dir .. '/state', s:dir())
    assert.truthy(tostring(s):find('moonstack.sim.Sim', 1, true))
    local st = assert(uv.fs_stat(dir .. '/state/attestation.key.pem'))
    assert.equal(tonumber('600', 8), bit.band(st.mode, tonumber('777', 8)))
    local again = assert(native.open(dir .. '/state/'))
    local pem2, der2 = again:root_ca()
    assert.equal(der, der2)
    assert.equal(pem, pem2)
    assert.equal(s:attestation_key(), again:attestation_key())
    assert.same(s:platform(), again:platform())
    again:close()
    assert.equal('moonstack TDX Simulation Root CA', native.ROOT_CA_CN)
  end)

  it('keeps TD values per CVM and extends RTMRs with SHA-384', function()
    local td = native.td_defaults()
    assert.equal('0000001000000000', hex(td.td_attributes))
    td.mrtd = ('\17'):rep(48)
    assert.is_true(s:create_cvm('vm-1', td))
    local got = assert(s:cvm('vm-1'))
    assert.equal(td.mrtd, got.mrtd)
    assert.equal(('\0'):rep(48), got.rtmr3)
    local expect = got.rtmr3
    for i = 1, 3 do
      local digest = ('%c'):format(i):rep(48)
      expect = sha384(dir, expect .. digest)
      assert.equal(expect, s:extend_rtmr('vm-1', 3, digest))
    end
    assert.equal(expect, s:cvm('vm-1').rtmr3)
    assert.equal(('\0'):rep(48), s:cvm('vm-1').rtmr2)
  end)

  it('issues quotes with the padded report_data and the RTMRs at the v4 offsets', function()
    assert(s:create_cvm('q', { mrtd = ('\171'):rep(48) }))
    local r2 = assert(s:extend_rtmr('q', 2, ('\1'):rep(48)))
    for _, n in ipairs({ 0, 1, 20, 32, 63, 64 }) do
      local rd = ('\250'):rep(n)
      local q = assert(s:quote('q', rd))
      assert.equal(4, q:byte(1) + q:byte(2) * 256)
      assert.equal(0x81, u32le(q, 4))
      assert.equal('939a7233f79c4ca9940a0db3957f0607', hex(q:sub(13, 28)))
      assert.equal(('\171'):rep(48), q:sub(185, 232))
      assert.equal(r2, q:sub(377 + 2 * 48, 376 + 3 * 48))
      assert.equal(rd .. ('\0'):rep(64 - n), q:sub(569, 632))
      assert.equal(#q, 636 + u32le(q, 632))
      assert.equal(6, q:byte(765) + q:byte(766) * 256)
    end
    local q1, q2 = s:quote('q', 'same'), s:quote('q', 'same')
    assert.not_equal(q1, q2) -- fresh signatures every time
    assert.equal(q1:sub(1, 632), q2:sub(1, 632))
  end)

  it('embeds a PEM chain that openssl verifies against the simulated root only', function()
    assert(s:create_cvm('c'))
    local q = assert(s:quote('c', 'x'))
    local chain = q:match('(%-%-%-%-%-BEGIN CERTIFICATE.*%-%-%-%-%-END CERTIFICATE%-%-%-%-%-\n)%z$')
    assert.truthy(chain, 'NUL-terminated PEM chain at the end of the quote')
    assert.equal(s:pck_chain(), chain)
    local certs = pem_certs(chain)
    assert.equal(3, #certs)
    local root_pem = s:root_ca()
    assert.equal(root_pem, certs[3])
    local ok, out = openssl_verify(dir, root_pem, certs[1], certs[2])
    assert.is_true(ok, out)
    local other = assert(native.open(dir .. '/other'))
    ok = openssl_verify(dir, (other:root_ca()), certs[1], certs[2])
    other:close()
    assert.is_false(ok)
  end)

  it('issues collateral in the dcap-qvl JSON shape', function()
    local now = os.time()
    local c = cjson.decode((assert(s:collateral(now))))
    for _, k in ipairs({ 'pck_crl_issuer_chain', 'root_ca_crl', 'pck_crl', 'tcb_info_issuer_chain',
      'tcb_info', 'tcb_info_signature', 'qe_identity_issuer_chain', 'qe_identity',
      'qe_identity_signature' }) do
      assert.equal('string', type(c[k]), k)
    end
    assert.equal(128, #c.tcb_info_signature)
    assert.equal(128, #c.qe_identity_signature)
    local tcb = cjson.decode(c.tcb_info)
    assert.equal('TDX', tcb.id)
    assert.equal(3, tcb.version)
    assert.equal(hex(s:platform().fmspc):upper(), tcb.fmspc)
    assert.equal('UpToDate', tcb.tcbLevels[1].tcbStatus)
    assert.equal(os.date('!%Y-%m-%dT%H:%M:%SZ', now - 3600), tcb.issueDate)
    local qe = cjson.decode(c.qe_identity)
    assert.equal('TD_QE', qe.id)
    assert.equal(hex(s:platform().qe_mr_signer):upper(), qe.mrsigner)
    local tcb_certs = pem_certs(c.tcb_info_issuer_chain)
    assert.equal(2, #tcb_certs)
    local ok, out = openssl_verify(dir, (s:root_ca()), tcb_certs[1])
    assert.is_true(ok, out)
    write(dir .. '/crl.der', unhex(c.root_ca_crl))
    ok, out = sh(('openssl crl -inform DER -in %q -noout -CAfile %q'):format(dir .. '/crl.der',
      dir .. '/root.pem'))
    assert.is_true(ok, out)
    assert.truthy(out:find('verify OK', 1, true), out)
    assert.has_error(function() s:collateral(-1) end)
  end)

  it('returns nil, message, code on expected failures', function()
    local function fails(expected_code, pattern, v, err, code)
      assert.is_nil(v)
      assert.equal(expected_code, code)
      assert.equal(expected_code .. ': ', err:sub(1, #expected_code + 2))
      assert.truthy(err:find(pattern, 1, true), err)
    end
    fails('ENOENT', 'nope', s:cvm('nope'))
    fails('ENOENT', 'nope', s:quote('nope', ''))
    fails('ENOENT', 'nope', s:extend_rtmr('nope', 0, ('\0'):rep(48)))
    fails('EINVAL', 'CVM name', s:create_cvm('../escape'))
    assert(s:create_cvm('dup'))
    fails('EEXIST', 'dup', s:create_cvm('dup'))
    assert.is_true(s:create_cvm('dup', nil, true))
    assert.is_true(s:remove_cvm('dup'))
    fails('ENOENT', 'dup', s:remove_cvm('dup'))
    write(dir .. '/file', 'x')
    fails('EIO', 'file', native.open(dir .. '/file'))
  end)

  it('raises on misuse', function()
    assert(s:create_cvm('m'))
    assert.has_error(function() native.open() end)
    assert.has_error(function() s:extend_rtmr('m', 4, ('\0'):rep(48)) end)
    assert.has_error(function() s:extend_rtmr('m', -1, ('\0'):rep(48)) end)
    assert.has_error(function() s:extend_rtmr('m', 0, ('\0'):rep(47)) end)
    assert.has_error(function() s:quote('m', ('x'):rep(65)) end)
    assert.has_error(function() s:create_cvm('n', { mrtd = 'short' }) end)
    assert.has_error(function() s:create_cvm('n', { bogus = ('\0'):rep(48) }) end)
    assert.has_error(function() s.cvm({}, 'm') end)
    s:close()
    s:close() -- idempotent
    assert.truthy(tostring(s):find('closed', 1, true))
    assert.has_error(function() s:quote('m', '') end)
    s = nil
  end)
end)

describe('moonstack.sim backend', function()
  local dir

  before_each(function()
    dir = tmpdir()
  end)

  after_each(function()
    os.execute(('rm -rf %q'):format(dir))
  end)

  it('is selected only explicitly, with a state directory and a CVM name', function()
    assert.has_error(function() sim.new() end)
    assert.has_error(function() sim.new({ cvm = 'a' }) end)
    assert.has_error(function() sim.new({ dir = dir }) end)
    local b, err, code = sim.new({ dir = dir, cvm = 'absent' })
    assert.is_nil(b)
    assert.equal('ENOENT', code)
    assert.truthy(err:find('absent', 1, true))
    assert.equal('sim', sim.name)
  end)

  it('quotes report_data of any length up to 64, padded with zeros', function()
    local b = assert(sim.new({ dir = dir, cvm = 'app', create = true,
      td = { mrtd = ('ab'):rep(48), mr_config_id = '0x' .. ('01'):rep(48) } }))
    assert.equal('sim', b.name)
    assert.is_true(b.simulated)
    assert.is_true(b:info().simulated)
    for _, n in ipairs({ 0, 1, 16, 32, 48, 63, 64 }) do
      local rd = ('r'):rep(n)
      local q = assert(b:get_quote(rd))
      assert.equal(rd .. ('\0'):rep(64 - n), q:sub(569, 632))
      assert.equal(('\171'):rep(48), q:sub(185, 232))
      assert.equal(('\1'):rep(48), q:sub(233, 280))
    end
    local v, err, code = b:get_quote(('r'):rep(65))
    assert.is_nil(v)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('65', 1, true))
    assert.has_error(function() b:get_quote(42) end)
    b:close()
  end)

  it('extends RTMRs and reports them', function()
    local b = assert(sim.new({ dir = dir, cvm = 'app', create = true }))
    local before = assert(b:rtmrs())
    assert.equal(4, #before)
    assert.is_true(b:extend_rtmr(3, ('\7'):rep(48)))
    local after = b:rtmrs()
    assert.equal(before[1], after[1])
    assert.equal(sha384(dir, before[4] .. ('\7'):rep(48)), after[4])
    assert.equal(after[4], b:get_quote(''):sub(521, 568))
    assert.has_error(function() b:extend_rtmr(4, ('\7'):rep(48)) end)
    assert.has_error(function() b:extend_rtmr(1, 'short') end)
    -- the state survives: a second backend on the same CVM sees it; reset starts over
    local b2 = assert(sim.new({ dir = dir, cvm = 'app' }))
    assert.equal(after[4], b2:rtmrs()[4])
    b2:close()
    local b3 = assert(sim.new({ dir = dir, cvm = 'app', reset = true }))
    assert.equal(('\0'):rep(48), b3:rtmrs()[4])
    b3:close()
    local pem = b:root_ca()
    assert.truthy(pem:find('BEGIN CERTIFICATE', 1, true))
    assert.equal('TDX', cjson.decode(cjson.decode(b:collateral()).tcb_info).id)
    b:close()
    b:close()
    assert.has_error(function() b:get_quote('') end)
  end)

  it('is the registry\'s "sim" backend, created only by name and options', function()
    assert.truthy(table.concat(backend.names(), ','):find('sim', 1, true))
    assert.has_error(function() backend.create() end)
    assert.has_error(function() backend.create('sim') end) -- no dir, no CVM: no default
    local b = assert(backend.create('sim', { dir = dir, cvm = 'reg', create = true }))
    assert.equal('sim', b.name)
    assert.is_true(b.simulated)
    assert.equal(4, u32le(assert(b:get_quote('r')), 0) % 65536)
    b:close()
  end)

  it('starts RTMR0..2 from a CCEL and logs runtime events that replay to the RTMRs', function()
    local b = assert(sim.new({ dir = dir, cvm = 'boot', create = true,
      ccel_file = vector('dstack/cc-eventlog/ccel.bin') }))
    local r = assert(b:rtmrs())
    -- upstream cross-check: this CCEL replays to the RTMR0 of quote-from-tappd.hex
    assert.equal('274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f9'
      .. '00a1c44d32386fd3c993dc814e62af9d', hex(r[1]))
    assert.equal(r[1], assert(b:get_quote('')):sub(377, 424))
    local digest = assert(b:emit_event('app-id', 'abc', { version = 1 }))
    assert.equal(eventlog.runtime_digest('app-id', 'abc', 1), digest)
    assert(b:emit_event('compose-hash', 'def', { version = 1 }))
    local events = assert(b:event_log())
    assert.equal('compose-hash', events[#events].event)
    local replayed = assert(eventlog.replay(events, { binary = true }))
    assert.same(assert(b:rtmrs()), replayed)
    local st = assert(uv.fs_stat(b:info().runtime_log_dir .. '/runtime_events.log'))
    assert.equal(tonumber('600', 8), bit.band(st.mode, tonumber('777', 8)))
    b:close()
    local v, _, code = sim.new({ dir = dir, cvm = 'x', create = true, ccel_file = dir .. '/none' })
    assert.is_nil(v)
    assert.equal('ENOENT', code)
  end)
end)
