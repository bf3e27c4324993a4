-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: app-compose.json as the guest and the KMS read it (moonstack.cvm.app_compose):
-- parse, then the readers over a parsed document (key provider, allowed envs, public flags,
-- init scripts, event log version, app id from its hash). Clean errors only.
local check = require('fuzz_check')
local app_compose = require('moonstack.cvm.app_compose')

return function(data)
  local app = check.result('app_compose.parse', app_compose.parse(data))
  if app then
    local hash = app_compose.compose_hash(data)
    check.check(type(hash) == 'string' and #hash == 32, 'compose hash')
    app_compose.key_provider(app)
    app_compose.allowed_envs(app)
    app_compose.public_flags(app)
    app_compose.init_scripts(app)
    app_compose.event_log_version(app)
    app_compose.key_provider_id(app)
    check.check(type(app_compose.app_id(hash)) == 'string', 'app id')
  end
end
