-- SPDX-License-Identifier: Apache-2.0
-- What the KMS's control socket offers in the REPL besides the daemon's own globals (`kms`,
-- status(), reload.config(), reload.code(), help()): the auth backend, the metrics and the
-- CA certificates. Nothing here prints or returns a private key.
local crypto = require('moonstack.crypto')
local task = require('moonstack.core.task')
local log = require('moonstack.core.log').new('kms')

local M = {}

--- The REPL globals and their help lines for a running KMS `kms` (moonstack.kms).
function M.env(kms)
  local env = {
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
    auth = 'auth(): the auth backend (kind, policy version, counts)',
    reload_policy = "reload_policy(): reload the auth backend's policy file (in the background)",
    metrics = 'metrics(): the /metrics text',
    certs = 'certs(): the root, temp CA and RPC certificates (public parts only)',
  }
  return env, doc
end

return M
