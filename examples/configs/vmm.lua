-- SPDX-License-Identifier: Apache-2.0
-- Example config for `moonstack vmm -c vmm.lua`: a development VMM with the process backend
-- (each CVM a supervised local process tree: moonstack agent on the simulated TDX of <dev>/sim,
-- the platform kms-dev.lua trusts), its API on the unix socket <dev>/vmm.sock (0600), CVMs'
-- keys from the dev KMS at https://localhost:8000 when their app-compose says kms_enabled.
-- <dev> is $MOONSTACK_DEV_DIR, else .dev/ at the root of the tree holding this file. Put an
-- image in first: `moonstack image build --kind process --output <dev>/vmm/images/moonstack`,
-- then `moonstack vm --url unix:<dev>/vmm.sock deploy --name hello --image moonstack
-- --compose app-compose.json` (examples/configs/README.md).
local dev = os.getenv('MOONSTACK_DEV_DIR') or (config_dir:gsub('/examples/configs$', '') .. '/.dev')
return {
  listen = { unix = dev .. '/vmm.sock' },
  run_dir = dev .. '/vmm/vm', -- one work directory per CVM
  image_dir = dev .. '/vmm/images', -- <name>/metadata.json (moonstack image build)
  backend = 'process',
  kms_urls = { 'https://localhost:8000' }, -- into each CVM's sys-config; env keys come from it
  port_mapping = { enabled = true, address = '127.0.0.1',
    ranges = { { protocol = 'tcp', from = 20000, to = 20999 } } },
  process = { sim_dir = dev .. '/sim' },
  auto_restart = { enabled = true, interval = 20, max_retries = 5, initial_backoff = 5,
    max_backoff = 300, reset_window = 300 },
  log = { max_bytes = 4 * 1024 * 1024, max_backups = 3 },
  control = dev .. '/vmm.ctl',
  -- the dashboard on http://127.0.0.1:8081/dashboard/ (also the VMM API under /prpc/, same auth):
  -- log in once with a token written to login_token_file (0600), e.g.
  --   openssl rand -hex 32 > .dev/dashboard.login && chmod 600 .dev/dashboard.login
  --   open http://127.0.0.1:8081/dashboard/login?once=$(cat .dev/dashboard.login)
  -- add auth = { token_file = ... } for tools (Bearer), and kms/gateway = { url, token_file }
  -- to show their parts (moonstack.vmm.config; `moonstack dev up` wires all three)
  dashboard = { listen = { host = '127.0.0.1', port = 8081 }, login_token_file = dev .. '/dashboard.login' },
}
