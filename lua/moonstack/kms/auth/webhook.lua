-- SPDX-License-Identifier: Apache-2.0
-- The `webhook` KMS auth backend (spec §3.8): POST the BootInfo as upstream serialises it to
-- <url>/bootAuth/app or <url>/bootAuth/kms with `User-Agent: dstack-kms/<version>`; the answer
-- must be HTTP 2xx JSON with isAllowed (boolean), gatewayAppId and reason (strings). Anything
-- else (transport error, timeout, other status, bad JSON, a missing or mistyped key) denies.
-- `GET <url>` gives GetMeta its facts (info()).
local client = require('moonstack.http.client')
local bootinfo = require('moonstack.kms.auth.bootinfo')
local util = require('moonstack.http.util')
local logging = require('moonstack.core.log')

local M = {}

--- Default request timeout in milliseconds.
M.DEFAULT_TIMEOUT_MS = 10000
--- Largest answer accepted, in bytes.
M.MAX_RESPONSE = 64 * 1024

local log = logging.new('kms-auth')

local Webhook = {}
Webhook.__index = Webhook

local function user_agent()
  local ok, native = pcall(require, 'moonstack.native.runtime')
  local v = ok and native.version and native.version() or '0'
  return 'dstack-kms/' .. tostring(v)
end

--- Join `url` and `path` as upstream does: a '/' is inserted unless `url` ends with one.
function M.url_join(url, path)
  if url:sub(-1) ~= '/' then
    url = url .. '/'
  end
  return url .. path
end

local short = util.excerpt

-- Ask the webhook; returns the decision or nil and the reason it could not decide.
function Webhook:ask(info, scope)
  local url = M.url_join(self.url, scope == 'kms' and 'bootAuth/kms' or 'bootAuth/app')
  local resp, err = client.request({
    url = url, method = 'POST', body = bootinfo.encode(info), timeout_ms = self.timeout_ms,
    max_response = M.MAX_RESPONSE,
    headers = { ['content-type'] = 'application/json', ['user-agent'] = self.user_agent },
    tls = self.tls,
  })
  if not resp then
    return nil, ('auth webhook %s unreachable: %s'):format(url, short(err))
  end
  if resp.status < 200 or resp.status > 299 then
    return nil, ('auth webhook %s returned HTTP %d: %s'):format(url, resp.status, short(resp.body))
  end
  local ans, derr = util.decode_json(resp.body)
  if type(ans) ~= 'table' then
    return nil, ('auth webhook %s answered with invalid JSON: %s'):format(url, short(derr or resp.body))
  end
  for key, want in pairs({ isAllowed = 'boolean', gatewayAppId = 'string', reason = 'string' }) do
    if type(ans[key]) ~= want then
      return nil, ('auth webhook %s answer lacks %s (a %s)'):format(url, key, want)
    end
  end
  return { allow = ans.isAllowed, reason = ans.reason, gateway_app_id = ans.gatewayAppId }
end

--- Backend method (see moonstack.kms.auth): decide for a normalised BootInfo and a scope.
function Webhook:authorize(info, scope)
  self.stats.requests = self.stats.requests + 1
  local d, why = self:ask(info, scope)
  if not d then
    self.stats.errors = self.stats.errors + 1
    log.error('auth webhook failed; denying', { scope = scope, error = why, app_id = info.appId })
    return { allow = false, reason = why }
  end
  if not d.allow then
    self.stats.denied = self.stats.denied + 1
  end
  log.info('auth decision', { backend = 'webhook', scope = scope, allow = d.allow, reason = d.reason,
    app_id = info.appId, compose_hash = info.composeHash, url = self.url })
  return d
end

--- Backend method: GetMeta's facts from `GET <url>` (spec §3.8): { gateway_app_id,
--- kms_contract_address, eth_rpc_url, chain_id, app_auth_implementation } (absent keys omitted), or nil and
--- why. The answer must be HTTP 2xx JSON; upstream fails GetMeta otherwise, and so do we.
function Webhook:info()
  local resp, err = client.request({ url = self.url, method = 'GET', timeout_ms = self.timeout_ms,
    max_response = M.MAX_RESPONSE, headers = { ['user-agent'] = self.user_agent }, tls = self.tls })
  if not resp then
    return nil, ('auth webhook %s unreachable: %s'):format(self.url, short(err))
  end
  if resp.status < 200 or resp.status > 299 then
    return nil, ('auth webhook %s returned HTTP %d: %s'):format(self.url, resp.status, short(resp.body))
  end
  local ans = util.decode_json(resp.body)
  if type(ans) ~= 'table' then
    return nil, ('auth webhook %s answered GET with invalid JSON: %s'):format(self.url, short(resp.body))
  end
  local function str(k)
    return type(ans[k]) == 'string' and ans[k] or nil
  end
  local cid = ans.chainId
  return { gateway_app_id = str('gatewayAppId'), kms_contract_address = str('kmsContractAddr'),
    eth_rpc_url = str('ethRpcUrl'),
    chain_id = type(cid) == 'number' and cid >= 0 and cid == math.floor(cid) and cid or nil,
    app_auth_implementation = str('appAuthImplementation') or str('appImplementation') }
end

--- Backend method: { url, timeout_ms, requests, denied, errors }.
function Webhook:status()
  return { url = self.url, timeout_ms = self.timeout_ms, requests = self.stats.requests,
    denied = self.stats.denied, errors = self.stats.errors }
end

--- Create a webhook backend. cfg: url (http:// or https://, required), timeout_ms (default
--- 10000), tls (moonstack.http.client tls options for https, e.g. { ca = PEM }).
--- Returns the backend, or nil, 'EINVAL: ...', 'EINVAL'.
function M.new(cfg)
  if type(cfg.url) ~= 'string' or not cfg.url:match('^https?://[^/]') then
    return nil, 'EINVAL: webhook url must be an http:// or https:// URL', 'EINVAL'
  end
  local t = cfg.timeout_ms or M.DEFAULT_TIMEOUT_MS
  if type(t) ~= 'number' or t <= 0 then
    return nil, 'EINVAL: webhook timeout_ms must be a positive number', 'EINVAL'
  end
  return setmetatable({
    url = cfg.url, timeout_ms = t, tls = cfg.tls, user_agent = user_agent(),
    stats = { requests = 0, denied = 0, errors = 0 },
  }, Webhook)
end

return M
