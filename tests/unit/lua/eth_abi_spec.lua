-- SPDX-License-Identifier: Apache-2.0
-- moonstack.eth.abi and moonstack.eth.tx against vectors made by ethers 6.17.0
-- (tests/fixtures/eth/vectors.json; tests/fixtures/eth/make.js says how), the ABI spec's own
-- examples, and garbage a node could answer: every malformed offset, length or padding refused.
local cjson = require('cjson')
local crypto = require('moonstack.crypto')
local abi = require('moonstack.eth.abi')
local tx = require('moonstack.eth.tx')
local fixtures = require('tests.helpers.fixtures')

local V = cjson.decode(fixtures.read((os.getenv('MOONSTACK_SRC') or '.')
  .. '/tests/fixtures/eth/vectors.json'))
local hex, unhex = crypto.hex, crypto.unhex
local BOOT = abi.APP_BOOT_INFO

local function lower_list(t)
  local out = {}
  for i, v in ipairs(t) do
    out[i] = type(v) == 'string' and v:match('^0x') and v:lower() or v
  end
  return out
end

describe('moonstack.eth.abi', function()
  it('computes selectors as ethers does', function()
    for sig, sel in pairs(V.selectors) do
      assert.are.equal(sel, '0x' .. hex(abi.selector(sig)))
    end
    assert.are.equal('1e079198', hex(abi.selector('isAppAllowed(' .. BOOT .. ')')))
  end)

  it('encodes AppBootInfo calls byte for byte as ethers', function()
    for _, c in ipairs(V.calls) do
      if c.boot then
        local boot = {}
        for i, v in ipairs(c.boot) do
          boot[i] = v
        end
        boot[9] = c.boot[9]
        local data = assert(abi.encode_call(c.fn .. '(' .. BOOT .. ')', { boot }))
        assert.are.equal(c.data, '0x' .. hex(data), c.fn)
        -- and decodes back
        local back = assert(abi.decode({ BOOT }, data:sub(5)))[1]
        assert.are.same(lower_list(c.boot), lower_list(back))
      end
    end
  end)

  it('encodes other argument lists as ethers', function()
    local sigs = { setGatewayAppId = 'setGatewayAppId(string)',
      deployAndRegisterApp = 'deployAndRegisterApp(address,bool,bool,bool,bytes32,bytes32)',
      setKmsQuote = 'setKmsQuote(bytes)' }
    for _, c in ipairs(V.calls) do
      if sigs[c.fn] then
        assert.are.equal(c.data, '0x' .. hex(assert(abi.encode_call(sigs[c.fn], c.args))), c.fn)
      end
    end
  end)

  it('decodes return data as ethers encoded it', function()
    for _, r in ipairs(V.returns) do
      local vals = assert(abi.decode(r.types, unhex(r.data:sub(3))))
      local want = {}
      for i, v in ipairs(r.values) do
        local h = type(v) == 'string' and v:match('^0x') and v:lower()
        want[i] = r.types[i] == 'uint256' and tonumber(v) or h or v
      end
      assert.are.same(want, vals)
      assert.are.equal(r.data, '0x' .. hex(assert(abi.encode(r.types, vals))))
    end
  end)

  it('matches the ABI specification examples', function()
    -- baz(uint32,bool) with (69, true)
    assert.are.equal('cdcd77c0' .. ('0'):rep(62) .. '45' .. ('0'):rep(63) .. '1',
      hex(assert(abi.encode_call('baz(uint32,bool)', { 69, true }))))
    -- sam(bytes,bool,uint256[]) with ("dave", true, [1,2,3])
    local want = 'a5643bf2'
      .. '0000000000000000000000000000000000000000000000000000000000000060'
      .. '0000000000000000000000000000000000000000000000000000000000000001'
      .. '00000000000000000000000000000000000000000000000000000000000000a0'
      .. '0000000000000000000000000000000000000000000000000000000000000004'
      .. '6461766500000000000000000000000000000000000000000000000000000000'
      .. '0000000000000000000000000000000000000000000000000000000000000003'
      .. '0000000000000000000000000000000000000000000000000000000000000001'
      .. '0000000000000000000000000000000000000000000000000000000000000002'
      .. '0000000000000000000000000000000000000000000000000000000000000003'
    assert.are.equal(want, hex(assert(abi.encode_call('sam(bytes,bool,uint256[])',
      { '0x' .. hex('dave'), true, { 1, 2, 3 } }))))
    assert.are.same({ '0x' .. hex('dave'), true, { 1, 2, 3 } },
      assert(abi.decode({ 'bytes', 'bool', 'uint256[]' }, unhex(want:sub(9)))))
  end)

  it('refuses values of the wrong type or size', function()
    local _, err = abi.encode({ 'address' }, { '0x1234' })
    assert.matches('EINVAL: value%[1%]: expected 20 bytes', err)
    _, err = abi.encode({ 'bool' }, { 1 })
    assert.matches('expected a boolean', err)
    _, err = abi.encode({ 'uint8' }, { 256 })
    assert.matches('does not fit uint8', err)
    _, err = abi.encode({ 'bytes32' }, { 'zz' })
    assert.matches('hex string', err)
    _, err = abi.parse_type('uint7')
    assert.matches('bad abi type', err)
  end)

  it('refuses garbage answers: short, offsets and lengths outside, bad padding', function()
    local good = unhex(V.returns[2].data:sub(3)) -- (false, "Compose hash not allowed")
    local T = { 'bool', 'string' }
    assert.is_truthy(abi.decode(T, good))
    local function bad(data, pattern)
      local v, err, code = abi.decode(T, data)
      assert.is_nil(v)
      assert.are.equal('EABI', code)
      assert.matches(pattern, err)
    end
    bad('', 'beyond the data')
    bad(good:sub(1, 40), 'beyond the data')
    bad(good:sub(1, 100), 'runs past the data')
    local function set_word(data, i, w) return data:sub(1, (i - 1) * 32) .. w .. data:sub(i * 32 + 1) end
    local function num(n)
      return ('\0'):rep(28) .. string.char(math.floor(n / 2 ^ 24) % 256, math.floor(n / 65536) % 256,
        math.floor(n / 256) % 256, n % 256)
    end
    bad(set_word(good, 2, num(4000)), 'beyond the data')               -- offset past the end
    bad(set_word(good, 2, ('\255'):rep(32)), 'out of range')           -- absurd offset
    bad(set_word(good, 3, num(200)), 'runs past the data')             -- length past the end
    bad(set_word(good, 1, num(2)), 'neither 0 nor 1')                  -- bool 2
    bad(good:sub(1, -2) .. '\1', 'non%-zero padding')                  -- dirty string padding
    local v, err = abi.decode({ 'address' }, ('\1'):rep(32))
    assert.is_nil(v)
    assert.matches('non%-zero high bytes', err)
    -- an array claiming more elements than the data could hold
    v, err = abi.decode({ 'string[]' }, num(32) .. num(1000000))
    assert.is_nil(v)
    assert.matches('cannot fit', err)
    -- many array elements pointing at one big string: refused, not amplified
    local big = ('x'):rep(4096)
    local n = 200
    local parts = { num(32), num(n) }
    for _ = 1, n do
      parts[#parts + 1] = num(32 * n) -- every element's offset: the same string
    end
    parts[#parts + 1] = num(#big) .. big
    v, err = abi.decode({ 'string[]' }, table.concat(parts))
    assert.is_nil(v)
    assert.matches('exceed 4 times the data', err)
    v = assert(abi.decode({ 'string[]' }, num(32) .. num(3) .. num(96) .. num(96) .. num(96) .. num(3)
      .. 'abc' .. ('\0'):rep(29)))
    assert.are.same({ { 'abc', 'abc', 'abc' } }, v) -- a little sharing is legal
    -- random data never raises
    math.randomseed(7)
    for _ = 1, 300 do
      local t = {}
      for i = 1, math.random(0, 400) do
        t[i] = string.char(math.random(0, 3) == 0 and math.random(0, 255) or 0)
      end
      local ok = pcall(abi.decode, { BOOT }, table.concat(t))
      assert.is_true(ok)
    end
  end)

  it('reads Error(string) revert reasons', function()
    local data = abi.selector('Error(string)') .. assert(abi.encode({ 'string' }, { 'Invalid app ID' }))
    assert.are.equal('Invalid app ID', abi.revert_reason(data))
    assert.is_nil(abi.revert_reason('\1\2\3\4'))
  end)
end)

describe('moonstack.eth.tx', function()
  local key = unhex(V.key:sub(3))

  it('derives the address of a key', function()
    assert.are.equal(V.address:lower(), tx.address(key))
    assert.are.equal(V.address, tx.checksum(tx.address(key)))
  end)

  it('RLP-encodes as the yellow paper examples', function()
    assert.are.equal('83646f67', hex(tx.rlp('dog')))
    assert.are.equal('c88363617483646f67', hex(tx.rlp({ 'cat', 'dog' })))
    assert.are.equal('80', hex(tx.rlp('')))
    assert.are.equal('c0', hex(tx.rlp({})))
    assert.are.equal('0f', hex(tx.rlp('\15')))
    assert.are.equal('820400', hex(tx.rlp('\4\0')))
    assert.are.equal('c7c0c1c0c3c0c1c0', hex(tx.rlp({ {}, { {} }, { {}, { {} } } })))
    local long = ('a'):rep(56)
    assert.are.equal('b838' .. hex(long), hex(tx.rlp(long)))
  end)

  it('signs legacy and EIP-1559 transactions as ethers', function()
    for _, v in ipairs(V.txs) do
      local t = v.tx
      local raw, hash = tx.sign({ type = t.type, chain_id = t.chainId, nonce = t.nonce,
        gas_price = t.gasPrice and ('0x%x'):format(tonumber(t.gasPrice)),
        max_fee = t.maxFeePerGas and ('0x%x'):format(tonumber(t.maxFeePerGas)),
        max_priority_fee = t.maxPriorityFeePerGas and ('0x%x'):format(tonumber(t.maxPriorityFeePerGas)),
        gas = tonumber(t.gasLimit), to = t.to ~= cjson.null and t.to or nil,
        value = t.value == '1000000000000000000' and '0xde0b6b3a7640000' or tonumber(t.value),
        data = unhex(t.data:sub(3)) }, key)
      assert.are.equal(v.raw, '0x' .. hex(raw))
      assert.are.equal(v.hash, hash)
    end
  end)
end)
