-- SPDX-License-Identifier: Apache-2.0
-- Example config for `moonstack verifier -c verifier.lua`: the quote and event-log
-- verification service with dstack-verifier's API (POST /verify, GET /health).
return {
  -- where to listen: { host, port } or { unix = '/run/moonstack/verifier.sock' } (mode 0600)
  listen = { host = '127.0.0.1', port = 8080 },

  -- collateral: fetched from a PCCS (or Intel's PCS) and cached on disk until the earliest
  -- nextUpdate; or a fixed file: collateral = { file = '/etc/moonstack/collateral.json' }
  collateral = {
    pccs = 'https://pccs.phala.network/tdx/certification/v4',
    cache_dir = '/var/cache/moonstack/collateral',
    timeout_ms = 30000,
  },

  -- the policy every quote must satisfy: a JSON file as Atlas writes it, a Lua file, or a table
  policy = {
    allowed_tcb_status = { 'UpToDate', 'SWHardeningNeeded' },
    -- pin the CVM instead: expected_bootchain = { mrtd = ..., rtmr0 = ..., rtmr1 = ...,
    -- rtmr2 = ... }, os_image_hash = ..., app_compose = '<sha256 hex>'
    disable_runtime_verification = true,
    -- certificate-style attestations carry only RTMR3 events: replay_rtmrs = { 3 }
  },

  -- development only: trust the simulator's root CA (the policy must also set
  -- allow_simulator = true, or simulated quotes are still rejected)
  -- root_ca = '/var/lib/moonstack/sim/root-ca.pem',

  -- the REPL socket (mode 0600; its directory is created 0700 when missing):
  -- moonstack repl /run/moonstack/verifier-control.sock
  control = '/run/moonstack/verifier-control.sock',
}
