-- SPDX-License-Identifier: Apache-2.0
-- What the KMS's control socket offers in the REPL besides the daemon's own globals (status(),
-- reload.config(), reload.code(), help()): `kms` (the service object, plus kms.decisions(n):
-- the recent auth decisions, newest first), `policy` (policy.reload(), policy.test(input
-- [, scope]), policy.status()), the auth backend, the metrics and the CA certificates.
-- Nothing here prints or returns a private key.
local crypto = require('moonstack.crypto')
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('kms')

local M = {}

--- The BootInfo fields policy.test fills in when the input leaves them out.
M.TEST_DEFAULTS = { teeVariant = 'dstack-tdx', tcbStatus = 'UpToDate' }

-- `kms` in the REPL: the service object with kms.decisions(n) added. Its methods are bound,
-- so both kms:status() and kms.decisions(5) work; fields read and write through to it.
local function service_view(kms)
  local extra = { decisions = function(n) return kms:decisions(n) end }
  return setmetatable(extra, {
    __index = function(view, k)
      local v = kms[k]
      if type(v) == 'function' then
        return function(self, ...)
          if self == view then
            self = kms
          end
          return v(self, ...)
        end
      end
      return v
    end,
    __newindex = function(_, k, v) kms[k] = v end,
    __complete = kms, -- moonstack.control.complete lists the object's names
    __tostring = function() return 'kms (the KMS service object; kms.decisions(n))' end,
  })
end

-- policy.test's input: a copy with the defaults filled in.
local function test_input(input)
  if type(input) ~= 'table' then
    return nil, 'EINVAL: policy.test(input): input is a BootInfo table (camelCase keys, hex)'
  end
  local out = {}
  for k, v in pairs(input) do
    out[k] = v
  end
  for k, v in pairs(M.TEST_DEFAULTS) do
    if out[k] == nil then
      out[k] = v
    end
  end
  return out
end

--- The REPL globals and their help lines for a running KMS `kms` (moonstack.kms).
function M.env(kms)
  local policy = {
    reload = function()
      local st, err, code = kms.auth:reload()
      if not st then
        log.error('policy reload from the REPL failed; the previous policy stays', { error = err })
        return nil, err, code
      end
      log.info('policy reloaded from the REPL', { version = st.version, sha256 = st.sha256 })
      return st
    end,
    test = function(input, scope)
      local info, err = test_input(input)
      if not info then
        return nil, err
      end
      return kms.auth:test(info, scope)
    end,
    status = function() return kms.auth:status() end,
  }
  local env = {
    kms = service_view(kms),
    policy = policy,
    auth = function() return kms.auth:status() end,
    -- a reload waits on the policy workers: it runs in a task, the log and auth() tell how
    -- it went (a REPL line is evaluated synchronously)
    reload_policy = function()
      task.spawn_named('kms:reload-policy', function()
        local st, err = kms.auth:reload()
        if st then
          log.info('policy reloaded from the REPL', { version = st.version, sha256 = st.sha256 })
        else
          log.error('policy reload from the REPL failed; the previous policy stays', { error = err })
        end
      end)
      return 'reloading in the background: see auth() and the log'
    end,
    metrics = function() return kms.metrics:render() end,
    certs = function()
      local m = kms.material
      return { root_ca = m.root_cert:pem(), temp_ca = m.tmp_ca_cert:pem(),
        rpc = kms.rpc_cert:pem(), k256_pubkey = crypto.hex(m.k256_pubkey) }
    end,
  }
  local doc = {
    kms = 'the KMS service object: kms:status(), kms.decisions(n) ...',
    ['kms.decisions'] = 'kms.decisions(n): the last n auth decisions (20), newest first, with the '
      .. 'policy version and sha256 that decided',
    ['policy.reload'] = "policy.reload(): reload the auth policy file now (the backend's status, "
      .. 'or the error: the previous policy stays)',
    ['policy.test'] = "policy.test(input [, 'app'|'kms']): the current auth policy's decision on "
      .. 'a BootInfo table (teeVariant, tcbStatus default to dstack-tdx, UpToDate), without side '
      .. 'effects: no event, no count, no log',
    ['policy.status'] = 'policy.status(): the auth backend (kind, policy name, version, sha256)',
    auth = 'auth(): the auth backend (kind, policy version, counts)',
    reload_policy = "reload_policy(): reload the auth backend's policy file (in the background)",
    metrics = 'metrics(): the /metrics text',
    certs = 'certs(): the root, temp CA and RPC certificates (public parts only)',
  }
  return env, doc
end

return M
