-- SPDX-License-Identifier: Apache-2.0
-- The `eth` KMS auth backend (spec §3.9): asks the DstackKms contract on an Ethereum chain,
-- with eth_call over JSON-RPC (moonstack.eth.rpc), ABI in our own code (moonstack.eth.abi):
-- app checks call isAppAllowed(AppBootInfo) (the KMS contract checks registration and the OS
-- image, then asks the app's own contract), KMS checks call isKmsAllowed(AppBootInfo); the
-- answer is (bool isAllowed, string reason). An allowed app gets the contract's gatewayAppId().
-- Any failure (timeout, chain down, revert, no contract, malformed answer) denies, with a
-- reason saying what went wrong. Nothing is cached: an on-chain change counts at the next
-- request. info() gives GetMeta the contract address, the chain id and appImplementation().
local abi = require('moonstack.eth.abi')
local rpc = require('moonstack.eth.rpc')
local tx = require('moonstack.eth.tx')
local logging = require('moonstack.core.log')

local M = {}

--- Default timeout of one JSON-RPC call in milliseconds.
M.DEFAULT_TIMEOUT_MS = 10000

local log = logging.new('kms-auth')

local SIG = {
  app = 'isAppAllowed(' .. abi.APP_BOOT_INFO .. ')',
  kms = 'isKmsAllowed(' .. abi.APP_BOOT_INFO .. ')',
}

local Eth = {}
Eth.__index = Eth

-- Left-pad a normalised hex field to `n` bytes as upstream's auth-eth does; a longer value
-- cannot go on chain.
local function pad(info, key, n)
  local h = info[key] or ''
  if #h > 2 * n then
    error(('%s is longer than %d bytes'):format(key, n), 0)
  end
  return '0x' .. ('0'):rep(2 * n - #h) .. h
end

--- The AppBootInfo tuple (a list, abi.APP_BOOT_INFO order) of a normalised BootInfo; raises
--- with the field named when a value does not fit.
function M.boot_tuple(info)
  local adv = {}
  for i, a in ipairs(info.advisoryIds or {}) do
    adv[i] = a
  end
  return { pad(info, 'appId', 20), pad(info, 'composeHash', 32), pad(info, 'instanceId', 20),
    pad(info, 'deviceId', 32), pad(info, 'mrAggregated', 32), pad(info, 'mrSystem', 32),
    pad(info, 'osImageHash', 32), info.tcbStatus or '', adv }
end

-- eth_call `sig` with `args` on the KMS contract at `block` ('latest' or a quantity) and decode
-- `types`; nil and why on failure.
function Eth:call(sig, args, types, block)
  local data, err = abi.encode_call(sig, args)
  if not data then
    return nil, err
  end
  local out, cerr, code, revert = self.rpc:eth_call(self.contract, data, block)
  if not out then
    if code == 'EREVERT' then
      local rdata = revert and require('moonstack.crypto').unhex((revert:gsub('^0x', '')))
      local reason = rdata and abi.revert_reason(rdata)
      return nil, ('contract %s reverted %s%s'):format(self.contract, sig:match('^[%w_]+'),
        reason and ': ' .. reason or ' (' .. cerr:gsub('^EREVERT: ', '') .. ')')
    end
    return nil, ('chain unreachable: %s'):format(cerr:gsub('^E%u+: ', ''))
  end
  if out == '' then
    return nil, ('no contract answering %s at %s (empty answer)'):format(sig:match('^[%w_]+'),
      self.contract)
  end
  local vals, derr = abi.decode(types, out)
  if not vals then
    return nil, ('contract %s answered %s with malformed data: %s'):format(self.contract,
      sig:match('^[%w_]+'), derr)
  end
  return vals
end

-- The block to read at: 'latest', or with `confirmations` the head minus that many blocks;
-- with `chain_id` the node must be on that chain. nil and why on failure.
function Eth:block()
  if self.chain_id then
    local cid, err = self.rpc:chain_id()
    if not cid then
      return nil, 'chain unreachable: ' .. err:gsub('^E%u+: ', '')
    end
    if cid ~= self.chain_id then
      return nil, ('the node at %s is on chain %d, not the configured chain_id %d'):format(self.url,
        cid, self.chain_id)
    end
  end
  if self.confirmations == 0 then
    return 'latest'
  end
  local head, err = self.rpc:block_number()
  if not head then
    return nil, 'chain unreachable: ' .. err:gsub('^E%u+: ', '')
  end
  return ('0x%x'):format(math.max(0, head - self.confirmations))
end

-- Ask the contract; returns the decision or nil and the reason it could not decide.
function Eth:ask(info, scope)
  local ok, tuple = pcall(M.boot_tuple, info)
  if not ok then
    return nil, 'boot info does not fit the contract: ' .. tostring(tuple)
  end
  local block, berr = self:block()
  if not block then
    return nil, berr
  end
  local vals, err = self:call(SIG[scope], { tuple }, { 'bool', 'string' }, block)
  if not vals then
    return nil, err
  end
  local d = { allow = vals[1], reason = vals[2] }
  if d.allow and scope == 'app' then
    local gw, gerr = self:call('gatewayAppId()', {}, { 'string' }, block)
    if not gw then
      return nil, 'allowed, but gatewayAppId() failed: ' .. gerr
    end
    d.gateway_app_id = gw[1]
  end
  return d
end

--- Backend method (see moonstack.kms.auth): decide for a normalised BootInfo and a scope.
function Eth:authorize(info, scope)
  self.stats.requests = self.stats.requests + 1
  local d, why = self:ask(info, scope)
  local fields = { backend = 'eth', scope = scope, app_id = info.appId,
    compose_hash = info.composeHash, device_id = info.deviceId, mr_aggregated = info.mrAggregated,
    os_image_hash = info.osImageHash, tcb_status = info.tcbStatus, contract = self.contract }
  if not d then
    self.stats.errors = self.stats.errors + 1
    fields.error = why
    log.error('eth auth failed; denying', fields)
    return { allow = false, reason = 'eth auth: ' .. why }
  end
  if not d.allow then
    self.stats.denied = self.stats.denied + 1
  end
  fields.allow, fields.reason = d.allow, d.reason
  log.info('auth decision', fields)
  return d
end

--- Backend method (REPL policy.test): the same eth_call; it changes nothing on chain.
function Eth:test(info, scope)
  local d, why = self:ask(info, scope)
  if not d then
    return { allow = false, reason = 'eth auth: ' .. why }, nil, why
  end
  return d
end

--- Backend method: GetMeta's facts { kms_contract_address, chain_id, app_auth_implementation,
--- gateway_app_id, eth_rpc_url }, read from the chain, or nil and why (GetMeta fails then).
function Eth:info()
  local cid, err = self.rpc:chain_id()
  if not cid then
    return nil, 'eth auth: chain unreachable: ' .. err:gsub('^E%u+: ', '')
  end
  local gw, gerr = self:call('gatewayAppId()', {}, { 'string' })
  if not gw then
    return nil, 'eth auth: ' .. gerr
  end
  local impl, ierr = self:call('appImplementation()', {}, { 'address' })
  if not impl then
    return nil, 'eth auth: ' .. ierr
  end
  return { kms_contract_address = self.contract, chain_id = cid, gateway_app_id = gw[1],
    app_auth_implementation = tx.checksum(impl[1]), eth_rpc_url = self.url }
end

--- Backend method: { rpc_url, kms_contract, timeout_ms, chain_id, confirmations, requests,
--- denied, errors }.
function Eth:status()
  return { rpc_url = self.url, kms_contract = self.contract, timeout_ms = self.rpc.timeout_ms,
    chain_id = self.chain_id, confirmations = self.confirmations,
    requests = self.stats.requests, denied = self.stats.denied, errors = self.stats.errors }
end

--- Check an `auth = { kind = 'eth', ... }` table: true, or nil and the reason naming the field.
function M.check(cfg)
  if type(cfg.rpc_url) ~= 'string' or not cfg.rpc_url:match('^https?://[^/]') then
    return nil, 'auth.rpc_url must be an http:// or https:// URL (the Ethereum JSON-RPC endpoint)'
  end
  if type(cfg.kms_contract) ~= 'string' or not cfg.kms_contract:match('^0[xX]' .. ('%x'):rep(40) .. '$') then
    return nil, 'auth.kms_contract must be the DstackKms contract address (0x and 40 hex digits)'
  end
  local t = cfg.timeout_ms
  if t ~= nil and (type(t) ~= 'number' or t <= 0 or t ~= math.floor(t)) then
    return nil, 'auth.timeout_ms must be a positive integer (milliseconds)'
  end
  for _, k in ipairs({ 'chain_id', 'confirmations' }) do
    local v = cfg[k]
    if v ~= nil and (type(v) ~= 'number' or v < 0 or v ~= math.floor(v) or v >= 2 ^ 53) then
      return nil, ('auth.%s must be a non-negative integer'):format(k)
    end
  end
  local known = { kind = true, rpc_url = true, kms_contract = true, timeout_ms = true, tls = true,
    chain_id = true, confirmations = true }
  for k in pairs(cfg) do
    if not known[k] then
      return nil, ('auth.%s is not a key of the eth backend (rpc_url, kms_contract, timeout_ms, '
        .. 'chain_id, confirmations, tls)'):format(tostring(k))
    end
  end
  return true
end

--- Create an eth backend. cfg: rpc_url (http:// or https://), kms_contract ('0x' address of
--- DstackKms), timeout_ms (per JSON-RPC call, default 10000), chain_id (optional: each decision
--- first checks that the node is on this chain), confirmations (default 0: read at `latest`;
--- n: read at the head minus n blocks, so a reorganisation cannot undo what allowed a boot),
--- tls (moonstack.http.client tls options for https). Returns the backend or nil, 'EINVAL:
--- ...', 'EINVAL'. Nothing is asked of the chain here: a chain that is down at start denies
--- until it answers.
function M.new(cfg)
  local ok, err = M.check(cfg)
  if not ok then
    return nil, 'EINVAL: ' .. err, 'EINVAL'
  end
  local client = assert(rpc.new(cfg.rpc_url, { timeout_ms = cfg.timeout_ms or M.DEFAULT_TIMEOUT_MS,
    tls = cfg.tls, max_response = 256 * 1024 }))
  return setmetatable({ url = cfg.rpc_url, contract = cfg.kms_contract, rpc = client,
    chain_id = cfg.chain_id, confirmations = cfg.confirmations or 0,
    stats = { requests = 0, denied = 0, errors = 0 } }, Eth)
end

return M
