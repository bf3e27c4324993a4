-- SPDX-License-Identifier: Apache-2.0
-- Example config for a gateway next to the development KMS of kms-dev.lua (<dev> is
-- $MOONSTACK_DEV_DIR, else .dev/ at the root of the tree): CVMs register over mutual TLS with
-- a certificate from that KMS's SignCert (the KMS root is <dev>/kms-keys/root-ca.crt: start
-- kms-dev.lua first), get an address of 10.0.0.0/25 and reach the gateway over WireGuard
-- (wireguard-go: root and /dev/net/tun); apps are https://<app_id>[-port][s|g].app.localhost.
-- In production: real certificates for rpc (from the gateway CVM's agent) and proxy.certs
-- (a wildcard certificate of *.<base_domain>), an endpoint CVMs can reach, a secret admin token.
local dev = os.getenv('MOONSTACK_DEV_DIR') or (config_dir:gsub('/examples/configs$', '') .. '/.dev')
return {
  proxy = {
    listen = { host = '0.0.0.0', port = 8443 },
    base_domain = 'app.localhost',
    self_signed_cert = true, -- proxy.certs = { { cert = 'wildcard.crt', key = 'wildcard.key' } }
    external_port = 8443,
    timeouts = { connect = 5, handshake = 5, idle = 600, shutdown = 5, total = 18000 },
  },
  debug = { insecure_localhost_backend = false },
  rpc = {
    listen = { host = '127.0.0.1', port = 8010 },
    kms_ca = dev .. '/kms-keys/root-ca.crt', -- client certificates must chain to it
    -- cert = 'rpc.crt', key = 'rpc.key' (absent: self-signed, development only)
  },
  admin = {
    listen = { host = '127.0.0.1', port = 8011 },
    token_file = dev .. '/gateway-admin.token', -- or DSTACK_GATEWAY_ADMIN_TOKEN
  },
  wg = {
    private_key_file = dev .. '/gateway-wg.key', -- made on the first start
    listen_port = 51820,
    ip = '10.0.0.1/24',
    reserved_net = { '10.0.0.1/32' },
    client_ip_range = '10.0.0.0/25',
    interface = 'wg-ms0',
    endpoint = '127.0.0.1:51820',
  },
  data_dir = dev .. '/gateway',
  control = dev .. '/gateway.sock',
  routing_policy = { path = config_dir:gsub('/configs$', '') .. '/policies/route.lua' },
  recycle = { enabled = true, interval = 300, timeout = 36000 },
  -- ACME certificates for *.<base_domain> by DNS-01 (instead of proxy.certs / self_signed_cert;
  -- the proxy serves them as they are issued and renewed). With pebble + challtestsrv locally
  -- (tests/functional/gateway_acme_test.sh shows how to start them):
  -- certbot = {
  --   acme_url = 'https://127.0.0.1:14000/dir', ca = 'pebble-tls-ca.pem',
  --   domains = { 'app.localhost' },
  --   renew_interval = 43200, renew_before_expiration = 2592000, renew_timeout = 300,
  --   max_dns_wait = 60, dns_txt_ttl = 60, auto_set_caa = true, caa_issuer = 'pebble',
  --   dns_resolver = '127.0.0.1:8053',
  --   dns = { provider = 'challtestsrv', url = 'http://127.0.0.1:8055' },
  --   -- production: acme_url = 'https://acme-v02.api.letsencrypt.org/directory',
  --   -- caa_issuer = 'letsencrypt.org', dns = { provider = 'cloudflare',
  --   --   api_token_file = '/etc/moonstack/cf-token' (0600) | env = 'CF_API_TOKEN' },
  -- },
  -- where the certbot's evidence quotes come from (AcmeInfo, /.dstack/acme-info):
  -- attestation = { agent = '/var/run/dstack.sock' }, -- in a CVM; tests: { sim = dev .. '/sim' }
}
