-- SPDX-License-Identifier: Apache-2.0
-- Example config for `moonstack kms -c kms.lua` as a dstack app in a TDX CVM: attested by its
-- guest agent, its root keys sealed to it, apps authorised by an auth webhook (upstream's
-- auth-eth / auth-simple) or a Lua policy, OS images gated on registered boot measurements.
-- Every key is described in lua/moonstack/kms/config.lua.
return {
  -- the root material (0700 directory, 0600 files); created by onboarding below
  key_dir = '/etc/kms/certs',

  -- the pRPC listener (HTTPS; client certificates from the temp CA requested, not required)
  listen = { host = '0.0.0.0', port = 8000 },
  domain = 'kms.example.com', -- the RPC certificate's name (onboarding's choice wins)

  -- this KMS's own TEE: its guest agent attests the RPC certificate and onboarding
  tee = { kind = 'agent', socket = '/var/run/dstack.sock' },
  -- the private root keys sealed at rest with a key only this measured app gets
  seal = { tee = 'agent', socket = '/var/run/dstack.sock' },

  -- how callers' quotes are checked: Intel's root, collateral from a PCCS
  attestation = {
    pccs = 'https://pccs.phala.network/tdx/certification/v4',
    cache_dir = '/var/cache/moonstack/collateral',
  },

  -- who gets keys: upstream's webhook contract (POST <url>/bootAuth/app|kms, GET <url>)
  auth = { kind = 'webhook', url = 'http://auth-api:8000', timeout_ms = 10000 },
  -- or a sandboxed Lua policy, reloaded on SIGHUP or when the file changes:
  -- auth = { kind = 'policy', path = '/etc/kms/policy.lua' },

  -- an OS image named by a caller must show the boot measurements registered for it:
  -- /etc/kms/images/<os_image_hash>.json = `dstack-mr measure --json` output (or a list)
  image = { cache_dir = '/usr/share/dstack/images', measurements_dir = '/etc/kms/images' },

  -- no keys yet: serve the onboarding page and the Onboard service on the RPC port until
  -- Finish (Bootstrap fresh keys, or Onboard from a running KMS); unattended instead:
  -- onboard = { auto_bootstrap_domain = 'kms.example.com' } or { source_url = 'https://kms-a:8000' }
  onboard = { listen = { host = '0.0.0.0', port = 8000 } },
  site_name = 'example-site',

  -- admin listener (loopback, plain HTTP): the token comes from DSTACK_KMS_ADMIN_TOKEN
  admin = { listen = { host = '127.0.0.1', port = 8001 } },

  -- the REPL socket (mode 0600): moonstack repl /run/moonstack/kms.sock
  control = '/run/moonstack/kms.sock',
}
