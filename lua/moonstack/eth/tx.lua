-- SPDX-License-Identifier: Apache-2.0
-- Ethereum transactions in our own code: RLP, legacy EIP-155 and EIP-1559 (type 2) signing with
-- the native secp256k1 recoverable signature, addresses from keys, and send(): fill the nonce,
-- fees, gas and chain id from the node (moonstack.eth.rpc), sign, submit, wait for the receipt
-- and check its status. Keys are 32-byte strings and never leave this module but as signatures.
local crypto = require('moonstack.crypto')
local task = require('moonstack.core.task')
local uv = require('luv')

local M = {}

-- ---------------------------------------------------------------------------------------
-- RLP

local function be_bytes(n)
  local t = {}
  while n > 0 do
    table.insert(t, 1, string.char(n % 256))
    n = math.floor(n / 256)
  end
  return table.concat(t)
end

local function rlp_len(len, short_base, long_base)
  if len <= 55 then
    return string.char(short_base + len)
  end
  local l = be_bytes(len)
  return string.char(long_base + #l) .. l
end

--- RLP of `v`: a byte string, or a list (table) of such values, nested.
function M.rlp(v)
  if type(v) == 'string' then
    if #v == 1 and v:byte() < 0x80 then
      return v
    end
    return rlp_len(#v, 0x80, 0xb7) .. v
  end
  assert(type(v) == 'table', 'rlp: a string or a list')
  local parts = {}
  for i, e in ipairs(v) do
    parts[i] = M.rlp(e)
  end
  local payload = table.concat(parts)
  return rlp_len(#payload, 0xc0, 0xf7) .. payload
end

--- A quantity (a non-negative integer number below 2^53, or a '0x' hex string) as minimal
--- big-endian bytes (zero = ''), for RLP. Raises on anything else.
function M.quantity(q)
  if type(q) == 'number' then
    assert(q >= 0 and q == math.floor(q) and q < 2 ^ 53, 'quantity: an integer in [0, 2^53)')
    return be_bytes(q)
  end
  assert(type(q) == 'string' and q:match('^0[xX]%x*$'), 'quantity: a number or a 0x hex string')
  local h = q:sub(3):gsub('^0+', '')
  if #h % 2 == 1 then
    h = '0' .. h
  end
  return crypto.unhex(h)
end

-- ---------------------------------------------------------------------------------------
-- keys and signing

--- The '0x' address (lower case) of a 32-byte secp256k1 private key, or nil, msg, code.
function M.address(key)
  local pub, err, code = crypto.k256.pubkey(key, false)
  if not pub then
    return nil, err, code
  end
  return '0x' .. crypto.hex(crypto.keccak256(pub:sub(2)):sub(13))
end

--- The EIP-55 checksummed form of a '0x' address.
function M.checksum(addr)
  local h = addr:sub(3):lower()
  local d = crypto.hex(crypto.keccak256(h))
  local out = {}
  for i = 1, 40 do
    local c = h:sub(i, i)
    out[i] = tonumber(d:sub(i, i), 16) >= 8 and c:upper() or c
  end
  return '0x' .. table.concat(out)
end

local function to_bytes(to)
  if to == nil then
    return ''
  end
  local b = crypto.unhex((to:gsub('^0[xX]', '')), 20)
  assert(b, 'tx.to must be a 20-byte 0x address')
  return b
end

local function strip(b)
  return (b:gsub('^%z+', ''))
end

--- Sign `tx` with `key` (32 bytes). tx = { type = 0 (legacy, EIP-155) | 2 (EIP-1559), chain_id,
--- nonce, gas, to ('0x' address; nil creates a contract), value = 0, data = bytes '' ,
--- gas_price (type 0) | max_fee, max_priority_fee (type 2) } (quantities: numbers or '0x'
--- hex). Returns the raw signed transaction (bytes) and its hash ('0x' hex), or nil, msg.
function M.sign(tx, key)
  local ok, raw = pcall(function()
    local q = M.quantity
    local to, data, value = to_bytes(tx.to), tx.data or '', q(tx.value or 0)
    if (tx.type or 0) == 0 then
      local fields = { q(tx.nonce), q(tx.gas_price), q(tx.gas), to, value, data }
      local unsigned = { fields[1], fields[2], fields[3], fields[4], fields[5], fields[6],
        q(tx.chain_id), '', '' }
      local sig = assert(crypto.k256.sign_recoverable(key, crypto.keccak256(M.rlp(unsigned))))
      local cid = type(tx.chain_id) == 'number' and tx.chain_id or tonumber(tx.chain_id:sub(3), 16)
      fields[7] = q(sig:byte(65) + cid * 2 + 35)
      fields[8], fields[9] = strip(sig:sub(1, 32)), strip(sig:sub(33, 64))
      return M.rlp(fields)
    elseif tx.type == 2 then
      local fields = { q(tx.chain_id), q(tx.nonce), q(tx.max_priority_fee), q(tx.max_fee),
        q(tx.gas), to, value, data, {} }
      local sig = assert(crypto.k256.sign_recoverable(key, crypto.keccak256('\2' .. M.rlp(fields))))
      fields[10] = q(sig:byte(65))
      fields[11], fields[12] = strip(sig:sub(1, 32)), strip(sig:sub(33, 64))
      return '\2' .. M.rlp(fields)
    end
    error('tx.type must be 0 or 2')
  end)
  if not ok then
    return nil, 'EINVAL: ' .. tostring(raw):gsub('^.-:%d+: ', '')
  end
  return raw, '0x' .. crypto.hex(crypto.keccak256(raw))
end

-- ---------------------------------------------------------------------------------------
-- sending

--- Wait for the receipt of `hash` (polling every 100 ms, up to timeout_ms, default 60000).
--- Returns the receipt, or nil, msg, code (ETIMEDOUT, or the RPC's error).
function M.wait_receipt(rpc, hash, timeout_ms)
  local deadline = uv.now() + (timeout_ms or 60000)
  while true do
    local r, err, code = rpc:receipt(hash)
    if r then
      return r
    elseif r == nil then
      return nil, err, code
    end
    if uv.now() >= deadline then
      return nil, ('ETIMEDOUT: transaction %s not mined in time'):format(hash), 'ETIMEDOUT'
    end
    task.sleep(100)
  end
end

--- Send a transaction from `key` through `rpc` (moonstack.eth.rpc): opts = { to?, data = bytes,
--- value = 0, gas? (default: the node's estimate + 20 %), timeout_ms = 60000 }. The nonce, the
--- gas price (legacy transaction, EIP-155) and the chain id come from the node. Call from a
--- task. Returns the receipt (status '0x1'), or nil, 'ECODE: ...', code: a call the node's
--- estimate says reverts (EREVERT, with the revert reason when it gave one), a mined
--- transaction with status 0 (EREVERT), or the RPC's errors.
function M.send(rpc, key, opts)
  local from, err, code = M.address(key)
  if not from then
    return nil, err, code
  end
  local chain_id
  chain_id, err, code = rpc:chain_id()
  if not chain_id then
    return nil, err, code
  end
  local nonce
  nonce, err, code = rpc:nonce(from)
  if not nonce then
    return nil, err, code
  end
  local price
  price, err, code = rpc:gas_price()
  if not price then
    return nil, err, code
  end
  local call = { from = from, to = opts.to, data = '0x' .. crypto.hex(opts.data or ''),
    value = opts.value and '0x' .. crypto.hex(M.quantity(opts.value)) or nil }
  local gas = opts.gas
  if not gas then
    local est, eerr, ecode, data = rpc:estimate_gas(call)
    if not est then
      local rdata = data and crypto.unhex((data:gsub('^0x', '')))
      local reason = rdata and require('moonstack.eth.abi').revert_reason(rdata)
      return nil, reason and ('EREVERT: the transaction would revert: %s'):format(reason) or eerr,
        ecode
    end
    gas = math.floor(est * 1.2) + 10000
  end
  local raw, hash = M.sign({ type = 0, chain_id = chain_id, nonce = nonce, gas_price = price,
    gas = gas, to = opts.to, value = opts.value or 0, data = opts.data or '' }, key)
  if not raw then
    return nil, hash, 'EINVAL'
  end
  local sent
  sent, err, code = rpc:send_raw(raw)
  if not sent then
    return nil, err, code
  end
  local receipt
  receipt, err, code = M.wait_receipt(rpc, hash, opts.timeout_ms)
  if not receipt then
    return nil, err, code
  end
  if receipt.status ~= '0x1' then
    return nil, ('EREVERT: transaction %s reverted (status %s)'):format(hash, tostring(receipt.status)),
      'EREVERT', receipt
  end
  return receipt
end

return M
