-- SPDX-License-Identifier: Apache-2.0
-- The KMS's Prometheus metrics (GET /metrics): upstream's counters of attestation-gated calls
-- (GetAppKey, GetKmsKey, SignCert) and of those that failed (status >= 400), plus ours: auth
-- denials and a latency histogram of the attestation-gated calls.
local uv = require('luv')

local M = {}

--- The methods counted as attestation requests.
M.GATED = { GetAppKey = true, GetKmsKey = true, SignCert = true }

--- Histogram bucket bounds (seconds).
M.BUCKETS = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }

local Metrics = {}
Metrics.__index = Metrics

--- A fresh set of counters.
function M.new()
  local b = {}
  for i = 1, #M.BUCKETS do
    b[i] = 0
  end
  return setmetatable({ requests = 0, failures = 0, denials = 0, buckets = b, sum = 0 }, Metrics)
end

-- The method a pRPC path names (/prpc/M or /prpc/KMS.M), or nil.
local function method_of(path)
  local m = path:match('^/prpc/KMS%.([%w_]+)$') or path:match('^/prpc/([%w_]+)$')
  return m
end

--- Wrap an HTTP handler: gated calls are counted and timed.
function Metrics:wrap(handler)
  return function(req)
    local m = method_of(req.path)
    if not (m and M.GATED[m]) then
      return handler(req)
    end
    local t0 = uv.hrtime()
    local status, body, headers = handler(req)
    local dt = (uv.hrtime() - t0) / 1e9
    self.requests = self.requests + 1
    if status >= 400 then
      self.failures = self.failures + 1
      if type(body) == 'string' and body:find('boot denied', 1, true) then
        self.denials = self.denials + 1
      end
    end
    self.sum = self.sum + dt
    for i, bound in ipairs(M.BUCKETS) do
      if dt <= bound then
        self.buckets[i] = self.buckets[i] + 1
      end
    end
    return status, body, headers
  end
end

--- The Prometheus text exposition.
function Metrics:render()
  local out = {
    '# HELP dstack_kms_attestation_requests_total Attestation-gated calls (GetAppKey, GetKmsKey, SignCert).',
    '# TYPE dstack_kms_attestation_requests_total counter',
    ('dstack_kms_attestation_requests_total %d'):format(self.requests),
    '# HELP dstack_kms_attestation_failures_total Attestation-gated calls answered with status >= 400.',
    '# TYPE dstack_kms_attestation_failures_total counter',
    ('dstack_kms_attestation_failures_total %d'):format(self.failures),
    '# HELP moonstack_kms_auth_denials_total Calls the auth backend denied.',
    '# TYPE moonstack_kms_auth_denials_total counter',
    ('moonstack_kms_auth_denials_total %d'):format(self.denials),
    '# HELP moonstack_kms_attestation_request_seconds Latency of attestation-gated calls.',
    '# TYPE moonstack_kms_attestation_request_seconds histogram',
  }
  for i, bound in ipairs(M.BUCKETS) do
    out[#out + 1] = ('moonstack_kms_attestation_request_seconds_bucket{le="%g"} %d'):format(bound,
      self.buckets[i])
  end
  out[#out + 1] = ('moonstack_kms_attestation_request_seconds_bucket{le="+Inf"} %d'):format(self.requests)
  out[#out + 1] = ('moonstack_kms_attestation_request_seconds_sum %.6f'):format(self.sum)
  out[#out + 1] = ('moonstack_kms_attestation_request_seconds_count %d'):format(self.requests)
  return table.concat(out, '\n') .. '\n'
end

return M
