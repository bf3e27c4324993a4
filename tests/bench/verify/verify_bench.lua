-- SPDX-License-Identifier: Apache-2.0
-- Benchmark: in-process DCAP verification of vectors/dcap-qvl/tdx_quote (collateral parsed once).
-- Prints the status, the batch layout and the median time per quote in microseconds.
local uv = require('luv')
local dcap = require('moonstack.dcap')

local dir = assert(os.getenv('MOONSTACK_VECTORS'), 'MOONSTACK_VECTORS must be set')
local function read(rel)
  local f = assert(io.open(dir .. '/' .. rel, 'rb'))
  local s = f:read('*a')
  f:close()
  return s
end

local NOW = 1752919234 -- upstream's verification time for this sample
local quote = read('dcap-qvl/tdx_quote')
local coll = assert(dcap.collateral(read('dcap-qvl/tdx_quote_collateral.json')))
local v = dcap.verifier({})
local report = assert(v:verify(quote, coll, { now = NOW }))
assert(report.status == 'UpToDate', 'unexpected status ' .. tostring(report.status))

local BATCHES, PER_BATCH = 31, 200
local times = {}
for b = 1, BATCHES do
  local t0 = uv.hrtime()
  for _ = 1, PER_BATCH do
    assert(v:verify(quote, coll, { now = NOW }))
  end
  times[b] = (uv.hrtime() - t0) / 1e3 / PER_BATCH
end
table.sort(times)
print('status ' .. report.status)
print(('batches %d x %d'):format(BATCHES, PER_BATCH))
print(('median_us %.2f'):format(times[(BATCHES + 1) / 2]))
