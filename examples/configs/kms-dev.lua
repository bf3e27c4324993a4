-- SPDX-License-Identifier: Apache-2.0
-- Example config for a development KMS on one machine, without TDX: every app allowed (the dev
-- backend says so loudly), quotes from moonstack's simulator accepted. Make the simulator's
-- collateral and root first, e.g. with `moonstack agent --simulator` (its state directory) or
-- moonstack.sim; never use this config where real keys matter.
return {
  key_dir = './kms-keys',
  listen = { host = '127.0.0.1', port = 8000 },
  domain = 'localhost',
  auth = { kind = 'dev', gateway_app_id = 'any' },
  attestation = {
    collateral_file = './sim/collateral.json',
    root_ca_file = './sim/root-ca.pem',
    allow_simulator = true,
  },
  image = { verify = false }, -- simulated CVMs have no registered OS image
  control = './kms.sock',
}
