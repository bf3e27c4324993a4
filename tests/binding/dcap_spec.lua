-- SPDX-License-Identifier: Apache-2.0
-- The contract of moonstack.dcap and moonstack.native.dcap: collateral from JSON text or a
-- table of fields, parsed once; verifiers with the pinned Intel root or a simulator root;
-- verify() reports (every field, lowercase hex) checked against the independent dump of
-- derived/quotes-parsed.json; expected failures as nil, "CODE: reason", CODE; misuse raises;
-- simulated quotes from moonstack.native.sim verify only under their root with simulator.
local bit = require('bit')
local cjson = require('cjson')
local crypto = require('moonstack.crypto')
local dcap = require('moonstack.dcap')
local native = require('moonstack.native.dcap')
local sim = require('moonstack.native.sim')
local codec = require('moonstack.core.codec')
local fixtures = require('fixtures')

local read_vector = fixtures.read_vector

local TDX_NOW, SGX_NOW, NEAR_NOW = 1752919234, 1752919277, 1759388630

local function parsed_dump()
  local dump = cjson.decode(read_vector('derived/quotes-parsed.json'))
  local by_file = {}
  for _, q in ipairs(dump.quotes) do
    by_file[q.file] = q
  end
  return by_file
end

describe('moonstack.dcap', function()
  local verifier

  before_each(function()
    verifier = assert(dcap.verifier())
  end)

  after_each(function()
    verifier:close()
  end)

  describe('constants and the Intel root', function()
    it('pins the Intel SGX Root CA by its SHA-256', function()
      local der = dcap.intel_root_ca()
      assert.are.equal(read_vector('dcap-qvl/TrustedRootCA.der'), der)
      assert.are.equal(dcap.INTEL_ROOT_CA_SHA256, codec.hex(crypto.sha256(der)))
      assert.are.equal('44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3',
        native.INTEL_ROOT_CA_SHA256)
      assert.are.equal(der, verifier:root_ca())
      assert.is_false(verifier:simulated())
      assert.matches('Intel root', tostring(verifier))
    end)

    it('lists the statuses by severity', function()
      assert.are.same({ 'UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded',
        'ConfigurationAndSWHardeningNeeded', 'OutOfDate', 'OutOfDateConfigurationNeeded',
        'Revoked' }, dcap.STATUSES)
      assert.are.equal(0, dcap.severity('UpToDate'))
      assert.are.equal(4, dcap.severity('OutOfDate'))
      assert.is_nil(dcap.severity('Fine'))
    end)
  end)

  describe('collateral', function()
    it('parses the JSON text once and describes itself', function()
      local coll = assert(dcap.collateral(read_vector('dcap-qvl/tdx_quote_collateral.json')))
      local info = coll:info()
      assert.are.equal('TDX', info.tee)
      assert.are.equal('TD_QE', info.qe_identity_id)
      assert.are.equal('b0c06f000000', info.fmspc)
      assert.are.equal('0000', info.pce_id)
      assert.are.equal(17, info.tcb_evaluation_data_number)
      assert.are.equal(TDX_NOW, info.not_after - 1) -- upstream's "now" rule
      assert.is_true(info.not_before <= TDX_NOW)
      assert.are.equal(1752920163, info.tcb_info_next_update)
      assert.matches('Collateral %(TDX, FMSPC b0c06f000000%)', tostring(coll))
      coll:close()
      coll:close()
      assert.matches('closed', tostring(coll))
      assert.has_error(function() coll:info() end)
      assert.has_error(function() verifier:verify(read_vector('dcap-qvl/tdx_quote'), coll,
        { now = TDX_NOW }) end)
    end)

    it('takes a table of fields as well', function()
      local fields = cjson.decode(read_vector('dcap-qvl/sgx_quote_collateral.json'))
      local coll = assert(dcap.collateral(fields))
      local r = assert(verifier:verify(read_vector('dcap-qvl/sgx_quote'), coll, { now = SGX_NOW }))
      assert.are.equal('ConfigurationAndSWHardeningNeeded', r.status)
      fields.tcb_info_signature = fields.tcb_info_signature:upper()
      assert.truthy(dcap.collateral(fields))
      fields.tcb_info_signature = 'zz' .. fields.tcb_info_signature:sub(3)
      local c, err, code = dcap.collateral(fields)
      assert.is_nil(c)
      assert.are.equal('ECOLLATERAL', code)
      assert.matches('^ECOLLATERAL: collateral: tcb_info_signature is not hex', err)
      assert.has_error(function() dcap.collateral({ nonsense = 'x' }) end,
        'dcap.collateral: unknown field nonsense')
      assert.has_error(function() dcap.collateral({ pck_crl = 42 }) end)
      assert.has_error(function() dcap.collateral(42) end)
    end)

    it('reports malformed collateral as ECOLLATERAL', function()
      local c, err, code = dcap.collateral('{"pck_crl": "00"}')
      assert.is_nil(c)
      assert.are.equal('ECOLLATERAL', code)
      assert.matches('^ECOLLATERAL: collateral: root_ca_crl is missing', err)
      local fields = cjson.decode(read_vector('dcap-qvl/tdx_quote_collateral.json'))
      fields.tcb_info = fields.tcb_info:gsub('"tcbLevels"', '"tcbLevelz"')
      c, err = dcap.collateral(fields)
      assert.is_nil(c)
      assert.matches('TCB info: tcbLevels is missing', err)
    end)

    it('reads a collateral file', function()
      local coll = assert(dcap.read_collateral(fixtures.vector('dcap-qvl/near_quote_collateral.json')))
      assert.are.equal('20a06f000000', coll:info().fmspc)
      local c, err, code = dcap.read_collateral('/nonexistent/collateral.json')
      assert.is_nil(c)
      assert.are.equal('ENOENT', code)
      assert.matches('^ENOENT: ', err)
    end)
  end)

  describe('verify', function()
    local dump

    setup(function()
      dump = parsed_dump()
    end)

    -- Every report field equals the independent dump of the quote.
    local function check_fields(file, r)
      local q = dump[file]
      assert.are.equal(q.header.version, r.quote_version)
      assert.are.equal(q.fmspc:lower(), r.fmspc)
      if r.tee_type == 'TDX' then
        for _, k in ipairs({ 'tee_tcb_svn', 'mr_seam', 'mr_signer_seam', 'seam_attributes',
          'td_attributes', 'xfam', 'mr_config_id', 'mr_owner', 'mr_owner_config', 'rtmr0',
          'rtmr1', 'rtmr2', 'rtmr3', 'report_data' }) do
          assert.are.equal(q.report[k], r[k], k)
        end
        assert.are.equal(q.report.mr_td, r.mrtd)
      else
        for _, k in ipairs({ 'cpu_svn', 'attributes', 'mr_enclave', 'mr_signer', 'report_data',
          'isv_prod_id', 'isv_svn', 'misc_select' }) do
          assert.are.equal(q.report[k], r[k], k)
        end
      end
      assert.are.equal(q.pck_extension.cpusvn, r.pck_cpu_svn)
      assert.are.equal(q.pck_extension.pcesvn, r.pce_svn)
      assert.are.equal(q.pck_extension.ppid, r.ppid)
      for k, v in pairs(r) do
        if type(v) == 'string' and k ~= 'status' and not k:match('_status$') and k ~= 'tee_type'
          and k ~= 'tcb_date' then
          assert.is_nil(v:find('[^0-9a-f]'), k .. ' is lowercase hex')
        end
      end
    end

    it('gives the expected verdicts with the interface fields', function()
      local coll = assert(dcap.collateral(read_vector('dcap-qvl/tdx_quote_collateral.json')))
      local r = assert(verifier:verify(read_vector('dcap-qvl/tdx_quote'), coll, { now = TDX_NOW }))
      assert.are.equal('UpToDate', r.status)
      assert.are.same({}, r.advisory_ids)
      assert.are.equal('TDX', r.tee_type)
      assert.are.equal(4, r.quote_version)
      assert.is_false(r.simulated)
      assert.are.equal('UpToDate', r.platform_status)
      assert.are.equal('UpToDate', r.qe_status)
      assert.are.equal('2024-03-13T00:00:00Z', r.tcb_date)
      assert.are.equal('91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407'
        .. 'de03ae6dc5f87f27428b2538873118b7', r.mrtd)
      check_fields('dcap-qvl/tdx_quote', r)

      coll = assert(dcap.collateral(read_vector('dcap-qvl/sgx_quote_collateral.json')))
      r = assert(verifier:verify(read_vector('dcap-qvl/sgx_quote'), coll, { now = SGX_NOW }))
      assert.are.equal('ConfigurationAndSWHardeningNeeded', r.status)
      assert.are.same({ 'INTEL-SA-00289', 'INTEL-SA-00615' }, r.advisory_ids)
      assert.are.equal('SGX', r.tee_type)
      assert.are.equal(3, r.quote_version)
      assert.is_nil(r.mrtd)
      check_fields('dcap-qvl/sgx_quote', r)

      -- hex text quotes (with or without 0x, trailing newline) are accepted
      coll = assert(dcap.collateral(read_vector('dcap-qvl/near_quote_collateral.json')))
      r = assert(verifier:verify(read_vector('dcap-qvl/near_quote_hex.txt'), coll,
        { now = NEAR_NOW }))
      assert.are.equal('UpToDate', r.status)
      check_fields('dcap-qvl/near_quote_hex.txt', r)
      assert.are.equal(r.mr_config_id:sub(1, 2), '01')
    end)

    it('returns failures as nil, "CODE: reason", CODE', function()
      local coll = assert(dcap.collateral(read_vector('dcap-qvl/tdx_quote_collateral.json')))
      local cases = {
        { 'dcap-qvl/tdx-quote.hex', TDX_NOW, 'ETCB', 'No matching TCB level found' },
        { 'dcap-qvl/quote-from-tappd.hex', TDX_NOW, 'ETCB', 'No matching TCB level found' },
        { 'dcap-qvl/tdx_quote', 1752920164, 'EEXPIRED', 'TCB info expired' },
        { 'dcap-qvl/tdx_quote', 1752920163, 'ECRL', 'the PCK CRL expired' },
        { 'dcap-qvl/tdx_quote_outdated', TDX_NOW, 'EEXPIRED', 'is not valid before' },
      }
      for _, c in ipairs(cases) do
        local r, err, code = verifier:verify(read_vector(c[1]), coll, { now = c[2] })
        assert.is_nil(r)
        assert.are.equal(c[3], code)
        assert.are.equal(c[3] .. ': ', err:sub(1, #c[3] + 2))
        assert.truthy(err:find(c[4], 1, true), err)
      end
      local q = read_vector('dcap-qvl/tdx_quote')
      local flipped = q:sub(1, 568) .. string.char(bit.bxor(q:byte(569), 1)) .. q:sub(570)
      local r, err, code = verifier:verify(flipped, coll, { now = TDX_NOW })
      assert.is_nil(r)
      assert.are.equal('ESIG', code)
      assert.matches('quote signature', err)
      r, err, code = verifier:verify('0x0102', coll, { now = TDX_NOW })
      assert.is_nil(r)
      assert.are.equal('EQUOTE', code)
      assert.matches('unsupported version 513', err)
      r, err, code = verifier:verify('0x012', coll, { now = TDX_NOW })
      assert.is_nil(r)
      assert.are.equal('EQUOTE', code)
      assert.matches('odd number', err)
      -- now defaults to the current time: this collateral expired long ago
      r, err = verifier:verify(q, coll)
      assert.is_nil(r)
      assert.truthy(err)
    end)

    it('raises on misuse', function()
      local coll = assert(dcap.collateral(read_vector('dcap-qvl/tdx_quote_collateral.json')))
      local q = read_vector('dcap-qvl/tdx_quote')
      assert.has_error(function() verifier:verify(42, coll) end)
      assert.has_error(function() verifier:verify(q, coll, { now = -1 }) end)
      assert.has_error(function() verifier:verify(q, coll, { now = 1.5 }) end)
      assert.has_error(function() verifier:verify(q, coll, { when = 1 }) end,
        'verifier:verify: unknown option when')
      assert.has_error(function() verifier:verify(q, 'not a collateral', { now = TDX_NOW }) end)
      assert.has_error(function() dcap.verifier({ root = 'x' }) end,
        'dcap.verifier: unknown option root')
      assert.has_error(function() dcap.verifier({ simulator = 'yes' }) end)
      assert.has_error(function() dcap.verifier({ simulator = true }) end)
      assert.has_error(function() native.verifier({ bogus = true }) end)
      assert.has_error(function() native.verifier({ root_ca = 5 }) end)
      local v = assert(dcap.verifier())
      v:close()
      v:close()
      assert.has_error(function() v:verify(q, coll, { now = TDX_NOW }) end)
    end)

    it('refuses a root that is not Intel\'s unless it is a simulator root', function()
      local v, err, code = dcap.verifier({ root_ca = 'not a certificate' })
      assert.is_nil(v)
      assert.are.equal('ECHAIN', code)
      assert.matches('^ECHAIN: root CA: not a DER or PEM certificate', err)
      -- Intel's root given explicitly is the default verifier, never simulated
      v = assert(dcap.verifier({ root_ca = dcap.intel_root_ca(), simulator = true }))
      assert.is_false(v:simulated())
      v:close()
    end)
  end)

  describe('simulated quotes', function()
    local dir, s

    setup(function()
      dir = fixtures.tmpdir('dcap-sim')
      s = assert(sim.open(dir .. '/state'))
      local td = sim.td_defaults()
      td.mrtd = ('\x42'):rep(48)
      assert(s:create_cvm('app', td))
    end)

    teardown(function()
      s:close()
      os.execute(('rm -rf %q'):format(dir))
    end)

    it('verify under the simulator root with simulator = true only', function()
      local now = os.time()
      local quote = assert(s:quote('app', 'report data'))
      local coll = assert(dcap.collateral(assert(s:collateral(now))))
      local pem, der = s:root_ca()
      for _, root in ipairs({ pem, der }) do
        local v = assert(dcap.verifier({ root_ca = root, simulator = true }))
        assert.is_true(v:simulated())
        assert.matches('simulator root', tostring(v))
        local r = assert(v:verify(quote, coll, { now = now }))
        assert.are.equal('UpToDate', r.status)
        assert.is_true(r.simulated)
        assert.are.equal(('42'):rep(48), r.mrtd)
        assert.are.equal(codec.hex('report data' .. ('\0'):rep(53)), r.report_data)
        assert.are.equal(codec.hex(s:cvm('app').rtmr3), r.rtmr3)
        v:close()
      end
      local r, err, code = verifier:verify(quote, coll, { now = now })
      assert.is_nil(r)
      assert.are.equal('ECHAIN', code)
      assert.matches('ends in a root %(CN=moonstack TDX Simulation Root CA', err)
      local v
      v, err, code = dcap.verifier({ root_ca = der })
      assert.is_nil(v)
      assert.are.equal('ECHAIN', code)
      assert.matches('is not the Intel SGX Root CA', err)
    end)
  end)
end)
