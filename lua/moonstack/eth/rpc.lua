-- SPDX-License-Identifier: Apache-2.0
-- Ethereum JSON-RPC 2.0 over moonstack.http.client: one POST per call, with a timeout and a
-- bounded answer; the result is checked (an error object, a missing result, a wrong id or
-- a non-hex quantity are errors, never values). Calls block the current task.
local client = require('moonstack.http.client')
local util = require('moonstack.http.util')
local cjson = require('cjson.safe')
local crypto = require('moonstack.crypto')

local M = {}

--- Default timeout of one call, in milliseconds.
M.DEFAULT_TIMEOUT_MS = 10000
--- Largest answer accepted, in bytes.
M.MAX_RESPONSE = 2 * 1024 * 1024

local Rpc = {}
Rpc.__index = Rpc

local short = util.excerpt

--- Call `method` with `params` (a list, default empty). Returns the JSON result (any type but
--- nil), or nil, 'ECODE: <url> <method>: why', code: EUNAVAILABLE (transport, timeout, HTTP
--- status), EPROTO (not a JSON-RPC answer), EREVERT (error object; `data` = revert data hex
--- when the node sent it, as the 4th value).
function Rpc:call(method, params)
  self.id = self.id + 1
  local id = self.id -- calls from several tasks interleave: each checks its own id
  local body = assert(cjson.encode({ jsonrpc = '2.0', id = id, method = method,
    params = params or cjson.empty_array }))
  local resp, err = client.request({ url = self.url, method = 'POST', body = body,
    timeout_ms = self.timeout_ms, max_response = self.max_response, tls = self.tls,
    headers = { ['content-type'] = 'application/json' } })
  local where = ('%s %s'):format(self.url, method)
  if not resp then
    return nil, ('EUNAVAILABLE: %s: %s'):format(where, short(err)), 'EUNAVAILABLE'
  end
  if resp.status < 200 or resp.status > 299 then
    return nil, ('EUNAVAILABLE: %s: HTTP %d: %s'):format(where, resp.status, short(resp.body)),
      'EUNAVAILABLE'
  end
  local ans = cjson.decode(resp.body)
  if type(ans) ~= 'table' or ans.jsonrpc ~= '2.0' then
    return nil, ('EPROTO: %s: not a JSON-RPC 2.0 answer: %s'):format(where, short(resp.body)), 'EPROTO'
  end
  if ans.id ~= id then
    return nil, ('EPROTO: %s: answer for id %s, asked %d'):format(where, short(ans.id), id), 'EPROTO'
  end
  if ans.error ~= nil then
    local e = type(ans.error) == 'table' and ans.error or {}
    local data = type(e.data) == 'string' and e.data or type(e.data) == 'table'
      and type(e.data.data) == 'string' and e.data.data or nil
    return nil, ('EREVERT: %s: error %s: %s'):format(where, short(e.code), short(e.message)),
      'EREVERT', data
  end
  if ans.result == nil then
    return nil, ('EPROTO: %s: answer without a result'):format(where), 'EPROTO'
  end
  return ans.result
end

--- A call whose result must be '0x' hex data: returns the bytes, or nil, msg, code.
function Rpc:call_data(method, params)
  local r, err, code, data = self:call(method, params)
  if r == nil then
    return nil, err, code, data
  end
  if type(r) ~= 'string' or not r:match('^0x%x*$') or #r % 2 == 1 then
    return nil, ('EPROTO: %s %s: result is not hex data'):format(self.url, method), 'EPROTO'
  end
  return crypto.unhex(r:sub(3))
end

--- A call whose result must be a quantity ('0x' hex): returns it as a number (below 2^53),
--- or nil, msg, code.
function Rpc:call_quantity(method, params)
  local r, err, code = self:call(method, params)
  if r == nil then
    return nil, err, code
  end
  if type(r) ~= 'string' or not r:match('^0x%x+$') or #r > 15 then
    return nil, ('EPROTO: %s %s: result is not a quantity below 2^53: %s'):format(self.url,
      method, short(r)), 'EPROTO'
  end
  return tonumber(r:sub(3), 16)
end

--- eth_call of `data` (bytes) to `to` ('0x' address) at `block` (default 'latest'): the
--- returned bytes, or nil, msg, code (EREVERT: the call reverted; 4th value its data hex).
function Rpc:eth_call(to, data, block)
  return self:call_data('eth_call', { { to = to, data = '0x' .. crypto.hex(data) }, block or 'latest' })
end

--- eth_chainId as a number.
function Rpc:chain_id()
  return self:call_quantity('eth_chainId')
end

--- eth_blockNumber as a number.
function Rpc:block_number()
  return self:call_quantity('eth_blockNumber')
end

--- eth_getCode of `addr` at 'latest': the code bytes ('' for an account without code).
function Rpc:get_code(addr)
  return self:call_data('eth_getCode', { addr, 'latest' })
end

--- eth_getTransactionCount of `addr` ('pending'): the next nonce.
function Rpc:nonce(addr)
  return self:call_quantity('eth_getTransactionCount', { addr, 'pending' })
end

--- eth_gasPrice as a '0x' quantity string (it may exceed 2^53 on some chains).
function Rpc:gas_price()
  local r, err, code = self:call('eth_gasPrice')
  if r == nil then
    return nil, err, code
  end
  if type(r) ~= 'string' or not r:match('^0x%x+$') then
    return nil, ('EPROTO: %s eth_gasPrice: not a quantity'):format(self.url), 'EPROTO'
  end
  return r
end

--- eth_estimateGas of a call object { from, to?, data, value? }: a number.
function Rpc:estimate_gas(tx)
  return self:call_quantity('eth_estimateGas', { tx })
end

--- eth_sendRawTransaction of signed bytes: the transaction hash ('0x' hex).
function Rpc:send_raw(raw)
  local r, err, code, data = self:call('eth_sendRawTransaction', { '0x' .. crypto.hex(raw) })
  if r == nil then
    return nil, err, code, data
  end
  if type(r) ~= 'string' or not r:match('^0x%x+$') then
    return nil, ('EPROTO: %s eth_sendRawTransaction: not a hash'):format(self.url), 'EPROTO'
  end
  return r
end

--- eth_getTransactionReceipt of `hash`: the receipt table, or false while it is pending.
function Rpc:receipt(hash)
  local r, err, code = self:call('eth_getTransactionReceipt', { hash })
  if r == nil then
    return nil, err, code
  end
  if r == cjson.null or r == false then
    return false
  end
  if type(r) ~= 'table' then
    return nil, ('EPROTO: %s eth_getTransactionReceipt: not an object'):format(self.url), 'EPROTO'
  end
  return r
end

--- A JSON-RPC client for `url` (http:// or https://). opts: timeout_ms (default 10000),
--- max_response (bytes, default 2 MiB), tls (moonstack.http.client tls options). Returns the
--- client or nil, 'EINVAL: ...', 'EINVAL'.
function M.new(url, opts)
  opts = opts or {}
  if type(url) ~= 'string' or not url:match('^https?://[^/]') then
    return nil, 'EINVAL: rpc_url must be an http:// or https:// URL', 'EINVAL'
  end
  local t = opts.timeout_ms or M.DEFAULT_TIMEOUT_MS
  if type(t) ~= 'number' or t <= 0 then
    return nil, 'EINVAL: timeout_ms must be a positive number', 'EINVAL'
  end
  return setmetatable({ url = url, timeout_ms = t, max_response = opts.max_response or M.MAX_RESPONSE,
    tls = opts.tls, id = 0 }, Rpc)
end

return M
