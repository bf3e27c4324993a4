-- SPDX-License-Identifier: Apache-2.0
-- The contract of moonstack.native.tdx and its Lua layer (moonstack.tdx.*): misuse raises
-- naming the function, failures return nil, "CODE: message", CODE; slow calls take a callback
-- and run off the loop (a fake configfs kernel and a fake QGS run on the loop meanwhile); the
-- backend registry selects by name only; the tdx backend drives a fake tree end to end.
-- luacheck: max line length 180
local uv = require('luv')
local cjson = require('cjson')
local tdx = require('moonstack.native.tdx')
local codec = require('moonstack.core.codec')
local quote = require('moonstack.tdx.quote')
local eventlog = require('moonstack.tdx.eventlog')
local backend = require('moonstack.core.tee')
require('moonstack.tdx.tee') -- registers 'tdx' and 'sim'
local loop = require('loop')
local fixtures = require('fixtures')

local vector = fixtures.vector

local read = fixtures.read

local function write(path, data)
  local tmp = path .. '.tmp'
  local f = assert(io.open(tmp, 'wb'))
  f:write(data)
  f:close()
  assert(os.rename(tmp, path)) -- readers never see a partial file
end

local function tmpdir()
  return fixtures.tmpdir('tdx')
end

local function mkdir_p(path)
  assert(os.execute(('mkdir -p %q'):format(path)) == 0)
end

local QUOTE = read(vector('dcap-qvl/tdx_quote'))
local Z48 = ('\0'):rep(48)

-- A fake configfs-tsm entry with a "kernel" on a luv timer: 64 bytes in inblob produce a quote
-- carrying them, then generation + 1. Returns the entry path and a stop function.
local function fake_tsm(root)
  local entry = root .. '/sys/kernel/config/tsm/report/com.intel.dcap'
  mkdir_p(entry)
  write(entry .. '/provider', 'tdx_guest\n')
  write(entry .. '/inblob', '')
  write(entry .. '/outblob', '')
  write(entry .. '/generation', '0\n')
  local gen = 0
  local timer = uv.new_timer()
  timer:start(1, 1, function()
    local st = uv.fs_stat(entry .. '/inblob')
    if st and st.size == 64 then
      local rd = read(entry .. '/inblob')
      write(entry .. '/inblob', '')
      write(entry .. '/outblob', QUOTE:sub(1, 568) .. rd .. QUOTE:sub(633))
      gen = gen + 1
      write(entry .. '/generation', gen .. '\n')
    end
  end)
  return entry, function() timer:close() end
end

local FAST = { poll_ms = 1, timeout_ms = 3000, provider_retries = 2, provider_wait_ms = 1 }

describe('moonstack.native.tdx', function()
  it('exposes its functions and the ABI constants', function()
    for _, name in ipairs({ 'parse_quote', 'parse_pem_chain', 'parse_tcg', 'ccel_events',
      'runtime_preimage', 'runtime_digest', 'replay', 'extend', 'sha384', 'tsm_entry',
      'tsm_get_quote', 'guest_get_report', 'guest_extend_rtmr', 'guest_get_quote',
      'qgs_get_quote', 'qgs_encode_request', 'sysfs_extend_rtmr', 'sysfs_read_mr', 'flock' }) do
      assert.is_function(tdx[name], name)
    end
    assert.equal(0x08000001, tdx.RUNTIME_EVENT_TYPE)
    assert.equal(0xC4405401, tdx.CMD_GET_REPORT0)
    assert.equal(0x80315403, tdx.CMD_EXTEND_RTMR)
    assert.equal(4050, tdx.QGS_PORT)
    assert.equal('/dev/tdx_guest', tdx.DEVICE)
  end)

  describe('parse_quote', function()
    it('parses in place into binary fields', function()
      local q = assert(tdx.parse_quote(QUOTE))
      assert.equal(4, q.version)
      assert.equal(0x81, q.tee_type)
      assert.equal('TDX', q.tee)
      assert.equal(QUOTE:sub(185, 232), q.report.mr_td)
      assert.equal(QUOTE:sub(569, 632), q.report.report_data)
      assert.equal(632, q.signed_len)
      assert.equal(70, q.trailing)
      assert.is_false(q.trailing_nonzero)
      assert.equal(6, q.cert_type)
      assert.equal(5, q.inner_cert_type)
      assert.is_true(q.qe_hash_ok)
      assert.truthy(q.pck_chain:find('^%-%-%-%-%-BEGIN CERTIFICATE'))
      assert.is_nil(q.report.mr_servicetd)
    end)

    it('fails with EQUOTE and the offset, and raises on misuse', function()
      local q, err, code, off = tdx.parse_quote(QUOTE:sub(1, 640))
      assert.is_nil(q)
      assert.equal('EQUOTE', code)
      assert.equal(636, off)
      assert.truthy(err:find('^EQUOTE: truncated: signature data at offset 636'))
      assert.has_error(function() tdx.parse_quote() end, "bad argument #1 to 'parse_quote' (string expected, got no value)")
      assert.has_error(function() tdx.parse_quote({}) end)
    end)

    it('parses the PEM chain with the SGX extension', function()
      local certs = assert(tdx.parse_pem_chain(assert(tdx.parse_quote(QUOTE)).pck_chain))
      assert.equal(3, #certs)
      assert.equal('C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX PCK Certificate', certs[1].subject)
      assert.equal('b0c06f000000', codec.hex(certs[1].sgx.fmspc))
      assert.equal(11, certs[1].sgx.pcesvn)
      assert.same({ 3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0 }, certs[1].sgx.tcb_components)
      assert.is_nil(certs[3].sgx)
      local none, err, code = tdx.parse_pem_chain('not pem')
      assert.is_nil(none)
      assert.equal('EQUOTE', code)
      assert.truthy(err:find('certificate 0'))
    end)
  end)

  describe('event logs', function()
    local ccel = read(vector('dstack/cc-eventlog/ccel.bin'))

    it('parses the CCEL and converts it (labels optional)', function()
      local log = assert(tdx.parse_tcg(ccel))
      assert.equal(18, #log.events)
      assert.equal(1933, log.end_offset)
      assert.same({ { id = 12, digest_size = 48 } }, log.spec_id.algorithms)
      local raw = assert(tdx.ccel_events(ccel))
      local labelled = assert(tdx.ccel_events(ccel, true))
      assert.equal('', raw[9].event)
      assert.equal('acpi-loader', labelled[9].event)
      assert.equal('ACPI DATA', labelled[9].event_payload)
      local r = assert(tdx.replay(raw))
      assert.equal('274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f900a1c44d32386fd3c993dc814e62af9d',
        codec.hex(r[1]))
      local bad, err, code = tdx.parse_tcg(ccel:sub(1, 100))
      assert.is_nil(bad)
      assert.equal('EEVENTLOG', code)
      assert.truthy(err:find('truncated'))
    end)

    it('computes runtime digests and preimages', function()
      assert.equal('67b4be4efed0893cfa2bb1d35dca209ad8348b4c97f980807bcde8b9a0f26398dd0923d6eccb5aa2096d98046da8740f',
        codec.hex(tdx.runtime_digest('app-id', '\222\173\190\239')))
      assert.equal('{"name":"compose-hash","payload":"abcd","type":134217729}',
        tdx.runtime_preimage('compose-hash', '\171\205', 2))
      local none, _, code = tdx.runtime_digest('\255', '', 2)
      assert.is_nil(none)
      assert.equal('EINVAL', code)
      assert.has_error(function() tdx.runtime_digest('x', '', 3) end, 'tdx.runtime_digest: version must be 1 or 2')
    end)

    it('replays, recomputing runtime digests; misuse raises', function()
      local d = tdx.runtime_digest('app-id', 'x')
      local ev = { { imr = 3, event_type = tdx.RUNTIME_EVENT_TYPE, digest = '', event = 'app-id', event_payload = 'x' } }
      local r = assert(tdx.replay(ev))
      assert.equal(tdx.extend(Z48, d), r[4])
      assert.equal(Z48, r[1])
      local none, err, code = tdx.replay({ { imr = 5, event_type = 1, digest = Z48 } })
      assert.is_nil(none)
      assert.equal('EEVENTLOG', code)
      assert.truthy(err:find('event 0: imr 5'))
      assert.has_error(function() tdx.replay({ 'x' }) end, 'tdx.replay: event 1 is not a table')
      assert.has_error(function() tdx.replay({ { imr = 0, event_type = 1, digest = 'short' } }) end,
        'tdx.replay: event 1: digest must be empty or 48 bytes')
      assert.has_error(function() tdx.extend('x', Z48) end, 'tdx.extend: mr must be a 48-byte string')
      assert.equal(tdx.sha384(Z48 .. d), tdx.extend(Z48, d))
    end)
  end)

  describe('configfs-tsm', function()
    it('obtains a quote off the loop while a fake kernel runs on it', function()
      local root = tmpdir()
      local entry, stop = fake_tsm(root)
      assert.equal(entry, assert(tdx.tsm_entry({ root = root })))
      local rd = ('r'):rep(64)
      local got, gerr
      assert.is_true(tdx.tsm_get_quote({ root = root, poll_ms = 1, timeout_ms = 3000 }, rd,
        function(q, err) got, gerr = q, err end))
      assert.is_true(loop.run_until(function() return got ~= nil or gerr ~= nil end, 5000))
      assert.is_nil(gerr)
      assert.equal(rd, got:sub(569, 632))
      assert.equal('1', read(entry .. '/generation'):match('%d+'))
      stop()
      os.execute(('rm -rf %q'):format(root))
    end)

    it('reports failures through the callback and in the return values', function()
      local root = tmpdir()
      local q, err, code = tdx.tsm_get_quote({ root = root }, ('\0'):rep(64))
      assert.is_nil(q)
      assert.equal('ENOENT', code)
      assert.truthy(err:find('configfs%-tsm is not available'))
      local res
      tdx.tsm_get_quote({ entry = 'relative' }, ('\0'):rep(64), function(...) res = { ... } end)
      assert.is_true(loop.run_until(function() return res ~= nil end, 2000))
      assert.same({ nil, 'EINVAL: configfs-tsm: path override must be absolute: relative', 'EINVAL' }, res)
      os.execute(('rm -rf %q'):format(root))
    end)

    it('raises on misuse', function()
      assert.has_error(function() tdx.tsm_get_quote({}, 'short') end, 'tdx.tsm_get_quote: report_data must be a 64-byte string')
      assert.has_error(function() tdx.tsm_get_quote({ bogus = 1 }, ('\0'):rep(64)) end, "tdx.tsm_get_quote: unknown option 'bogus'")
      assert.has_error(function() tdx.tsm_get_quote({ poll_ms = -1 }, ('\0'):rep(64)) end)
      assert.has_error(function() tdx.tsm_get_quote({ root = '/x' }, ('\0'):rep(64), 42) end, 'tdx.tsm_get_quote: the callback must be a function')
    end)
  end)

  describe('devices and services', function()
    it('maps device errors to codes, sync and async', function()
      local r, err, code, _ = tdx.guest_get_report('/nonexistent/tdx_guest', ('\0'):rep(64))
      assert.is_nil(r)
      assert.equal('ENOENT', code)
      assert.truthy(err:find('/nonexistent/tdx_guest'))
      local file = os.tmpname()
      _, _, code = tdx.guest_extend_rtmr(file, 3, Z48)
      assert.equal('ENOTSUP', code) -- a regular file answers ENOTTY
      os.remove(file)
      local res
      assert.is_true(tdx.guest_get_quote('/nonexistent/tdx_guest', ('\0'):rep(1024), function(...) res = { ... } end))
      assert.is_true(loop.run_until(function() return res ~= nil end, 2000))
      assert.equal('ENOENT', res[3])
      assert.has_error(function() tdx.guest_extend_rtmr(nil, 4, Z48) end, 'tdx.guest_extend_rtmr: RTMR index must be 0..3')
    end)

    it('speaks the QGS protocol to a service on a unix socket', function()
      local dir = tmpdir()
      local path = dir .. '/qgs.sock'
      local tdreport = ('T'):rep(1024)
      local server = uv.new_pipe(false)
      assert(server:bind(path))
      local received = ''
      server:listen(1, function()
        local client = uv.new_pipe(false)
        server:accept(client)
        client:read_start(function(_, data)
          received = received .. (data or '')
          if #received == 4 + 1048 then
            local quote_bytes = QUOTE
            local body = string.char(1, 0, 0, 0, 1, 0, 0, 0)
            local size = 24 + #quote_bytes
            local function le32(n)
              return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, 0)
            end
            local msg = body:sub(1, 4) .. le32(1) .. le32(size) .. le32(0) .. le32(0) .. le32(#quote_bytes) .. quote_bytes
            local be = string.char(0, math.floor(size / 65536) % 256, math.floor(size / 256) % 256, size % 256)
            client:write(be .. msg, function() client:close() end)
          end
        end)
      end)
      local got, gerr
      assert.is_true(tdx.qgs_get_quote({ path = path, timeout_ms = 3000 }, tdreport, function(q, err) got, gerr = q, err end))
      assert.is_true(loop.run_until(function() return got ~= nil or gerr ~= nil end, 5000))
      assert.is_nil(gerr)
      assert.equal(QUOTE, got)
      assert.equal(tdx.qgs_encode_request(tdreport), received)
      server:close()
      os.execute(('rm -rf %q'):format(dir))
      assert.has_error(function() tdx.qgs_get_quote({}, tdreport) end, "tdx.qgs_get_quote: option 'port' (or 'path') is required")
    end)

    it('extends and reads RTMRs through sysfs files', function()
      local dir = tmpdir()
      write(dir .. '/rtmr3:sha384', '')
      local d = ('\7'):rep(48)
      assert.is_true(tdx.sysfs_extend_rtmr(dir, 3, d))
      assert.equal(d, assert(tdx.sysfs_read_mr(dir, 'rtmr3')))
      local none, _, code = tdx.sysfs_read_mr(dir, 'rtmr2')
      assert.is_nil(none)
      assert.equal('ENOENT', code)
      _, _, code = tdx.sysfs_read_mr(dir, 'rtmr9')
      assert.equal('EINVAL', code)
      assert.has_error(function() tdx.sysfs_extend_rtmr(dir, 3, 'short') end)
      os.execute(('rm -rf %q'):format(dir))
    end)

    it('locks a file exclusively until unlock, close or GC', function()
      local dir = tmpdir()
      local path = dir .. '/lock'
      local a = assert(tdx.flock(path))
      assert.is_true(a:held())
      assert.truthy(tostring(a):find('held'))
      local b, _, code = tdx.flock(path, false)
      assert.is_nil(b)
      assert.equal('EBUSY', code)
      a:unlock()
      a:close() -- idempotent
      assert.is_false(a:held())
      local function take_and_drop() assert(tdx.flock(path, false)) end
      take_and_drop() -- the GC releases the dropped lock
      collectgarbage()
      collectgarbage()
      assert(tdx.flock(path, false)):close()
      assert.equal('0600', ('%o'):format(uv.fs_stat(path).mode % 4096):sub(-4):gsub('^6', '06'))
      os.execute(('rm -rf %q'):format(dir))
    end)
  end)
end)

describe('moonstack.tdx.quote', function()
  it('decodes binary and hex input and describes the quote', function()
    local hex = read(vector('dcap-qvl/tdx-quote.hex'))
    local bytes, fmt = quote.decode_input(hex)
    assert.equal('hex', fmt)
    local d = assert(quote.describe(assert(quote.parse(bytes))))
    assert.equal('7ba9e262ce6979087e34632603f354dd8f8a870f5947d116af8114db6c9d0d74c48bec4280e5b4f4a37025a10905bb29', d.mrtd)
    assert.equal('0x81', d.tee_type)
    assert.equal(3, #d.pck_chain_subjects)
    assert.equal('b0c06f000000', d.fmspc)
    assert.equal(select(2, quote.decode_input(QUOTE)), 'binary')
    local none, err, code = quote.decode_input('0xabc')
    assert.is_nil(none)
    assert.equal('EQUOTE', code)
    assert.truthy(err:find('odd number'))
    assert.equal('ENOENT', select(3, quote.read_file('/nonexistent/quote')))
  end)
end)

describe('moonstack.tdx.eventlog', function()
  it('reads JSON logs (stripped too) and replays them to the quote', function()
    local doc = cjson.decode(read(vector('dstack/verifier/tdx-lite-getquote.json')))
    local events = assert(eventlog.from_json(doc))
    assert.equal(29, #events)
    assert.equal('', events[21].digest) -- stripped runtime event
    local r = assert(eventlog.replay(events))
    local q = assert(quote.parse(codec.unhex(doc.quote)))
    for i = 1, 4 do
      assert.equal(codec.hex(q.report['rtmr' .. (i - 1)]), r[i])
    end
    assert.same(events, assert(eventlog.from_json(eventlog.to_json(events))))
  end)

  it('validates V2 preimages as dstack does', function()
    local ev = assert(eventlog.runtime_event('app-id', 'fixture', 2))
    assert.is_true(eventlog.validate_v2({ ev }))
    local copy = function(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end
    local missing = copy(ev)
    missing.preimage = nil
    assert.truthy(select(2, eventlog.validate_v2({ missing })):find('missing its digest preimage'))
    local tampered = copy(ev)
    tampered.digest = ('\1'):rep(48)
    assert.truthy(select(2, eventlog.validate_v2({ tampered })):find('does not match'))
    local reordered = copy(ev)
    reordered.preimage = '{"type":134217729,"name":"app-id","payload":"66697874757265"}'
    reordered.digest = tdx.sha384(reordered.preimage)
    assert.truthy(select(2, eventlog.validate_v2({ reordered })):find('not the canonical'))
    assert.truthy(eventlog.event_json(ev):find('^{"imr":3,"event_type":134217729,"digest":"%x+","event":"app%-id","event_payload":"66697874757265","version":2,"preimage":"'))
  end)

  it('parses runtime log lines (base64, optional version)', function()
    local events = assert(eventlog.parse_runtime_log('{"event":"app-id","payload":"AQID"}\n\n'
      .. eventlog.runtime_log_line('x', '\255', 2) .. '\n'))
    assert.equal('\1\2\3', events[1].event_payload)
    assert.equal(1, events[1].version)
    assert.equal(2, events[2].version)
    assert.equal(tdx.runtime_digest('x', '\255', 2), events[2].digest)
    assert.equal('{"event":"x","payload":"/w==","version":2}', eventlog.runtime_log_line('x', '\255', 2))
    assert.equal('EEVENTLOG', select(3, eventlog.parse_runtime_log('{"event":1}')))
  end)
end)

describe('moonstack.core.tee + moonstack.tdx.tee', function()
  it('selects backends by name only', function()
    assert.same({ 'sim', 'sim-remote', 'tdx' }, backend.names())
    assert.has_error(function() backend.create() end)
    local none, err, code = backend.create('sgx')
    assert.is_nil(none)
    assert.equal('EINVAL', code)
    assert.truthy(err:find("unknown TEE backend 'sgx' %(available: sim, sim%-remote, tdx%)"))
    backend.register('fake', function(opts) return { name = 'fake', opts = opts } end)
    assert.equal(7, backend.create('fake', { x = 7 }).opts.x)
    backend.register('broken', 'moonstack.no.such.module')
    assert.equal('ENOTSUP', select(3, backend.create('broken')))
    assert.has_error(function() backend.register('Bad Name', function() end) end)
  end)

  it('validates path overrides', function()
    local none, err, code = backend.create('tdx', { configfs_path = 'relative/path' })
    assert.is_nil(none)
    assert.equal('EINVAL', code)
    assert.truthy(err:find('must be absolute'))
    assert.equal('EINVAL', select(3, backend.create('tdx', { ccel_file = '' })))
  end)

  it('picks the quote method as tdx-attest does', function()
    local root = tmpdir()
    local b = assert(backend.create('tdx', { root = root }))
    local none, err, code = b:quote_method()
    assert.is_nil(none)
    assert.equal('ENOTSUP', code)
    assert.truthy(err:find('no quote method available'))
    mkdir_p(root .. '/etc')
    write(root .. '/etc/tdx-attest.conf', '# comment\nport=4050\n')
    assert.equal('qgs', b:quote_method())
    assert.same({ cid = 2, port = 4050 }, b:qgs_endpoint())
    mkdir_p(root .. '/sys/kernel/config/tsm/report')
    assert.equal('configfs', b:quote_method())
    os.execute(('rm -rf %q'):format(root))
  end)

  it('runs the tdx backend against a fake tree: quote, extend, emit, event log', function()
    local root = tmpdir()
    local _, stop = fake_tsm(root)
    local mdir = root .. tdx.SYSFS_MEASUREMENTS
    mkdir_p(mdir)
    write(mdir .. '/rtmr3:sha384', '')
    mkdir_p(root .. '/sys/firmware/acpi/tables/data')
    write(root .. '/sys/firmware/acpi/tables/data/CCEL', read(vector('dstack/cc-eventlog/ccel.bin')))
    mkdir_p(root .. '/run/log/dstack')
    write(root .. '/run/log/dstack/runtime_event_version', '2\n')
    local b = assert(backend.create('tdx', { root = root, tsm = FAST }))
    assert.is_false(b.simulated)
    local q = loop.run_task(function() return assert(b:get_quote('hello')) end, 5000)
    assert.equal('hello' .. ('\0'):rep(59), q:sub(569, 632))
    assert.equal('EINVAL', select(3, b:get_quote(('x'):rep(65))))
    -- emit: RTMR3 extended through sysfs (a plain file here keeps the last digest)
    local digest = assert(b:emit_event('app-id', 'abc'))
    assert.equal(tdx.runtime_digest('app-id', 'abc', 2), digest)
    assert.equal(digest, read(mdir .. '/rtmr3:sha384'))
    local log = read(root .. '/run/log/dstack/runtime_events.log')
    assert.equal('{"event":"app-id","payload":"YWJj","version":2}\n', log)
    assert.equal('0600', ('%o'):format(uv.fs_stat(root .. '/run/log/dstack/runtime_events.log').mode):sub(-4))
    local events = assert(b:event_log())
    assert.equal(19, #events)
    assert.equal('acpi-loader', events[9].event)
    assert.equal('app-id', events[19].event)
    local r = assert(eventlog.replay(events))
    assert.equal(codec.hex(tdx.extend(Z48, digest)), r[4])
    assert.equal(b.name, b:info().name)
    assert.equal('configfs', b:info().quote_method)
    -- without a version file, emitting fails and extends nothing
    os.remove(root .. '/run/log/dstack/runtime_event_version')
    write(mdir .. '/rtmr3:sha384', '')
    local none, err, code = b:emit_event('x', '')
    assert.is_nil(none)
    assert.equal('ENOENT', code)
    assert.truthy(err:find('runtime_event_version'))
    assert.equal('', read(mdir .. '/rtmr3:sha384'))
    stop()
    os.execute(('rm -rf %q'):format(root))
  end)
end)
