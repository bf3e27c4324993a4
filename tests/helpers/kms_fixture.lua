-- SPDX-License-Identifier: Apache-2.0
-- Test helper for KMS specs: root material from the spec's vector scalars, a simulated CVM with
-- its boot events, and the sim collateral and root written where a KMS config can point at them.
local uv = require('luv')
local keys = require('moonstack.kms.keys')
local sim = require('moonstack.sim')
local crypto = require('moonstack.crypto')

local M = {}

--- The spec's vector root P-256 scalar (kms-vmm-gateway.md §9 item 1) and k256 root (item 2).
M.ROOT = crypto.unhex('f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1')
M.K256 = ('\1'):rep(32)
--- The app identity the default boot events measure (§9 item 2).
M.APP, M.INSTANCE, M.COMPOSE = ('\17'):rep(20), ('\34'):rep(20), ('\51'):rep(32)

local function write(path, data)
  local f = assert(io.open(path, 'wb'))
  f:write(data)
  f:close()
end

--- Create a temp dir NAME.XXXXXX holding the KMS root material in base/keys (opts.k256
--- overrides its k256), a sim CVM (opts.cvm, default 'app') that emitted opts.events
--- ({ {name, payload}... }; default app-id, compose-hash, instance-id of M.APP, M.COMPOSE,
--- M.INSTANCE), and files.collateral / files.root (the sim root CA) / files.measurements (an
--- image.measurements_dir, empty until register_image()).
--- Returns { base, material, tee, files }.
function M.setup(name, opts)
  opts = opts or {}
  local root = os.getenv('MOONSTACK_TEST_TMP') or '/tmp'
  uv.fs_mkdir(root, 493)
  local fx = { base = assert(uv.fs_mkdtemp(root .. '/' .. name .. '.XXXXXX')) }
  fx.material = assert(keys.create(fx.base .. '/keys',
    { root_scalar = M.ROOT, root_k256 = opts.k256 or M.K256 }))
  fx.tee = assert(sim.new({ dir = fx.base .. '/sim', cvm = opts.cvm or 'app', create = true }))
  local events = opts.events or
    { { 'app-id', M.APP }, { 'compose-hash', M.COMPOSE }, { 'instance-id', M.INSTANCE } }
  for _, e in ipairs(events) do
    assert(fx.tee:emit_event(e[1], e[2], { version = 1 }))
  end
  fx.files = { collateral = fx.base .. '/collateral.json', root = fx.base .. '/sim-root.pem',
    measurements = fx.base .. '/boot-measurements' }
  write(fx.files.collateral, assert(fx.tee:collateral(os.time())))
  write(fx.files.root, (assert(fx.tee:root_ca())))
  return fx
end

--- Register the boot measurements of the sim CVM `tee` (default fx.tee) for OS image `hash`
--- (hex) in fx.files.measurements (the KMS config's image.measurements_dir): the image gate
--- then accepts that CVM naming that image. `extra` entries ({ mrtd, rtmr0..2 } hex) are added.
function M.register_image(fx, hash, tee, extra)
  local m = assert((tee or fx.tee):measurements())
  local entries = { { mrtd = crypto.hex(m.mrtd), rtmr0 = crypto.hex(m.rtmr0),
    rtmr1 = crypto.hex(m.rtmr1), rtmr2 = crypto.hex(m.rtmr2) } }
  for _, e in ipairs(extra or {}) do
    entries[#entries + 1] = e
  end
  uv.fs_mkdir(fx.files.measurements, 448)
  write(fx.files.measurements .. '/' .. hash .. '.json', require('cjson').encode(entries))
end

--- Close the servers a spec started, the sim CVM, and remove the temp dir.
function M.teardown(fx, servers)
  for _, k in ipairs(servers or {}) do
    k:close()
  end
  if fx and fx.tee then
    fx.tee:close()
  end
  if fx then
    os.execute(("rm -rf '%s'"):format(fx.base))
  end
end

return M
