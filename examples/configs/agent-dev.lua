-- SPDX-License-Identifier: Apache-2.0
-- Example config for `moonstack agent -c agent-dev.lua`: a CVM on the simulated platform of
-- kms-dev.lua (<dev>/sim), booting the app of the shared folder next to this file
-- (agent-dev/shared: app-compose.json, a bash app with kms_enabled, and .sys-config.json
-- naming the dev KMS at https://localhost:8000) with keys from that KMS over RA-TLS. <dev> is
-- $MOONSTACK_DEV_DIR, else .dev/ at the root of the tree holding this file. Start the KMS
-- first (examples/configs/README.md); then `moonstack repl <dev>/agent.sock`, and the guest
-- API on <dev>/dstack.sock (curl --unix-socket <dev>/dstack.sock http://localhost/Info).
local dev = os.getenv('MOONSTACK_DEV_DIR') or (config_dir:gsub('/examples/configs$', '') .. '/.dev')
return {
  shared_dir = config_dir .. '/agent-dev/shared', -- read only
  state_dir = dev .. '/agent', -- keys, instance info, the app's files and logs
  tee = { name = 'sim', dir = dev .. '/sim', cvm = 'dev-app' },
  key_provider = { kind = 'kms' }, -- the URL comes from the shared .sys-config.json
  listen = {
    dstack = { unix = dev .. '/dstack.sock' },
    tappd = { unix = dev .. '/tappd.sock' },
    public = { host = '127.0.0.1', port = 8090 },
  },
  control = dev .. '/agent.sock',
  runner = { stop_grace_ms = 2000 },
}
