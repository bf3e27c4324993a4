-- SPDX-License-Identifier: Apache-2.0
-- GetAppKey load from a simulated CVM, run by `moonstack run` (tests/bench/kms/run.sh):
--   moonstack run load.lua SIM_DIR KMS_URL ROOT_CA_PEM_FILE MODE CONCURRENCY COUNT
-- MODE 'appkey': one RA-TLS client identity (temp CA, fresh sim quote bound to its key), then
--   COUNT GetAppKey calls, each on a fresh mutual-TLS connection (moonstack.http.client makes one
--   request per connection), so the KMS verifies the certificate chain, the quote, the event
--   log replay and asks the auth backend every time.
-- MODE 'boot': COUNT full agent key fetches (moonstack.kms.client.get_app_keys:
--   GetTempCaCert, a new key + fresh quote + certificate, GetAppKey).
-- MODE 'meta': GetMeta on a fresh server-authenticated TLS connection (the transport baseline).
-- TARGET_URL (optional) sends the 'appkey' and 'meta' requests there instead of KMS_URL (the
--   identity still comes from KMS_URL): a peer server measured with the same client.
-- MODE 'identity': write the RA-TLS client identity to DIR/id.crt and DIR/id.key (mode 0600;
--   DIR = TARGET_URL's place) for other clients (curl) and exit.
-- CONCURRENCY tasks share the work. Prints `requests N`, `errors E`, `seconds S`, `rps R`,
-- `p50_ms`, `p90_ms`, `p99_ms`, `max_ms`, and the first error if any.
local uv = require('luv')
local cjson = require('cjson.safe')
local task = require('moonstack.core.task')
local sim = require('moonstack.sim')
local client = require('moonstack.http.client')
local ratls = require('moonstack.x509.ratls')
local x509 = require('moonstack.x509')
local kms_client = require('moonstack.kms.client')
local evidence_mod = require('moonstack.tdx.evidence')

local dir, url, ca_file, mode, conc, count, target = arg[1], arg[2], arg[3], arg[4],
  tonumber(arg[5]), tonumber(arg[6]), arg[7]
assert(dir and url and ca_file and conc and count and
  (mode == 'appkey' or mode == 'boot' or mode == 'meta' or (mode == 'identity' and target)),
  'usage: load.lua SIM_DIR KMS_URL ROOT_CA_PEM MODE(appkey|boot|meta|identity) CONCURRENCY COUNT'
    .. ' [TARGET_URL | DIR]')
target = target or url
local f = assert(io.open(ca_file))
local root_pem = f:read('*a')
f:close()

local cvm = 'bench' .. uv.os_getpid()
local tee = assert(sim.new({ dir = dir, cvm = cvm, create = true }))
assert(tee:emit_event('app-id', ('\17'):rep(20), { version = 1 }))
assert(tee:emit_event('compose-hash', ('\51'):rep(32), { version = 1 }))
assert(tee:emit_event('instance-id', ('\34'):rep(20), { version = 1 }))

local tls
local function prepare()
  local tmp = assert(client.request({ url = url .. '/prpc/GetTempCaCert?json', method = 'POST',
    body = '{}', tls = { ca = root_pem } }))
  local t = assert(cjson.decode(tmp.body))
  local ev = evidence_mod.new({ tee = tee, vm_config = '' })
  local id = assert(ratls.issue({ subject = 'RA-TLS TEMP Cert', eku = { 'client_auth' },
    issuer = { cert = assert(x509.cert(t.temp_ca_cert)), key = assert(x509.load_key(t.temp_ca_key)) },
    attest = function(rd)
      return ev:attestation(rd, 'cert')
    end }))
  tls = ratls.tls({ cert = id.cert, key = id.key }, { ca = root_pem }) -- as the agent: the leaf alone
end

local function write_identity(out_dir)
  for name, text in pairs({ ['id.crt'] = tls.cert, ['id.key'] = tls.key }) do
    local fd = assert(uv.fs_open(out_dir .. '/' .. name, 'w', tonumber('600', 8)))
    assert(uv.fs_write(fd, text, 0))
    uv.fs_close(fd)
  end
end

local function one()
  if mode == 'boot' then
    local r, err = kms_client.get_app_keys({ url = url, tee = tee, ca = root_pem })
    return r ~= nil, err
  end
  local r, err
  if mode == 'meta' then
    r, err = client.request({ url = target .. '/prpc/GetMeta?json', tls = { ca = root_pem } })
  else
    r, err = client.request({ url = target .. '/prpc/GetAppKey?json', method = 'POST',
      body = '{"api_version":1,"vm_config":""}', tls = tls })
  end
  if not r then
    return false, err
  end
  if r.status ~= 200 then
    return false, ('HTTP %d %s'):format(r.status, r.body)
  end
  return true
end

local lat, errors, first_err, next_i = {}, 0, nil, 0
task.spawn(function()
  if mode == 'identity' then
    prepare()
    write_identity(target)
    tee:close()
    return
  end
  if mode ~= 'boot' then
    prepare()
    one() -- warm-up (first handshake, caches)
  end
  local t0 = uv.hrtime()
  local running = conc
  for _ = 1, conc do
    task.spawn(function()
      while next_i < count do
        next_i = next_i + 1
        local s = uv.hrtime()
        local ok, err = one()
        lat[#lat + 1] = (uv.hrtime() - s) / 1e6
        if not ok then
          errors = errors + 1
          first_err = first_err or tostring(err)
        end
      end
      running = running - 1
    end)
  end
  while running > 0 do
    task.sleep(5)
  end
  local secs = (uv.hrtime() - t0) / 1e9
  table.sort(lat)
  local function pct(p)
    return lat[math.max(1, math.ceil(#lat * p))] or 0
  end
  print(('requests %d'):format(#lat))
  print(('errors %d'):format(errors))
  print(('seconds %.3f'):format(secs))
  print(('rps %.0f'):format(#lat / secs))
  print(('p50_ms %.2f'):format(pct(0.5)))
  print(('p90_ms %.2f'):format(pct(0.9)))
  print(('p99_ms %.2f'):format(pct(0.99)))
  print(('max_ms %.2f'):format(lat[#lat] or 0))
  if first_err then
    print('first_error ' .. first_err)
  end
  tee:close()
end)
