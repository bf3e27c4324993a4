-- SPDX-License-Identifier: Apache-2.0
-- Example config for a gateway on one machine, for local use: the proxy alone (no WireGuard,
-- no RPC), apps reached on this host through the `localhost` id, which
-- debug.insecure_localhost_backend enables: https://localhost-8080.app.localhost:8443 is
-- relayed (TLS terminated with a self-signed *.app.localhost) to 127.0.0.1:8080, and
-- localhost-8443s.app.localhost passes TLS through to 127.0.0.1:8443's app. Never expose it.
local dev = os.getenv('MOONSTACK_DEV_DIR') or (config_dir:gsub('/examples/configs$', '') .. '/.dev')
return {
  proxy = {
    listen = { host = '127.0.0.1', port = 8443 },
    base_domain = 'app.localhost',
    self_signed_cert = true,
    workers = 2,
  },
  debug = { insecure_localhost_backend = true },
  control = dev .. '/gateway-local.sock',
}
