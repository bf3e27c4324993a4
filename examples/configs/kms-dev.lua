-- SPDX-License-Identifier: Apache-2.0
-- Example config for a development KMS on one machine, without TDX: every app allowed (the dev
-- backend says so loudly), quotes from moonstack's simulator accepted — those of the simulated
-- platform in <dev>/sim, which must exist first (moonstack sim init <dev>/sim): a KMS never
-- trusts a platform it invented. <dev> is $MOONSTACK_DEV_DIR, else .dev/ at the root of the
-- tree holding this file, whatever the current directory. Its pair, agent-dev.lua, boots a
-- CVM on that platform through this KMS (examples/configs/README.md). Never use this config
-- where real keys matter.
local dev = os.getenv('MOONSTACK_DEV_DIR') or (config_dir:gsub('/examples/configs$', '') .. '/.dev')
return {
  key_dir = dev .. '/kms-keys',
  listen = { host = '127.0.0.1', port = 8000 },
  domain = 'localhost',
  alt_names = { '10.0.2.2' }, -- this host's loopback as QEMU guests see it (qemu.host_access)
  auth = { kind = 'dev', gateway_app_id = 'any' },
  -- the platform of `moonstack agent -c agent-dev.lua` (its tee.dir), or of
  -- `moonstack agent --simulator --state-dir <dev>` (<state-dir>/sim)
  attestation = { simulator_dir = dev .. '/sim', allow_simulator = true },
  image = { verify = false }, -- simulated CVMs have no registered OS image
  control = dev .. '/kms.sock',
}
