-- SPDX-License-Identifier: Apache-2.0
-- Example config for a development KMS on one machine, without TDX: every app allowed (the dev
-- backend says so loudly), quotes from moonstack's simulator accepted: those of the simulated
-- platform its callers run on — the `tee = { name = 'sim', dir = ... }` directory of
-- `moonstack agent -c agent.lua`, or <socket-dir>/.moonstack-agent/sim of
-- `moonstack agent --simulator`. Never use this config where real keys matter.
return {
  key_dir = './kms-keys',
  listen = { host = '127.0.0.1', port = 8000 },
  domain = 'localhost',
  auth = { kind = 'dev', gateway_app_id = 'any' },
  attestation = { simulator_dir = './agent/.moonstack-agent/sim', allow_simulator = true },
  image = { verify = false }, -- simulated CVMs have no registered OS image
  control = './kms.sock',
}
