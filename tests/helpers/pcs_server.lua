-- SPDX-License-Identifier: Apache-2.0
-- Test helper: a PCCS / Intel PCS v4-like service on 127.0.0.1 (moonstack.http.server) for
-- one collateral set in the vectors' JSON format, answering as Intel does: issuer chains
-- URL-encoded in SGX-*-Issuer-Chain headers, TCB info and QE identity wrapped with their
-- signatures, the PCK CRL as DER, the root CA CRL as hex (PCCS) or DER (/IntelSGXRootCA.der).
-- Requests for another TEE, FMSPC or CA get a 404. `srv.hits[path]` counts requests.
--   local srv = require('pcs_server')(coll, { tee = 'tdx', fmspc = 'B0C06F000000',
--     ca = 'platform', old_tcb_header = false, no_rootcacrl = false, port = 0 })
--   srv.base  -- 'http://127.0.0.1:PORT'
local server = require('moonstack.http.server')
local codec = require('moonstack.core.codec')

local function url_encode(s)
  return (s:gsub('[^%w%-%._~]', function(c) return ('%%%02X'):format(c:byte()) end))
end

return function(coll, opts)
  opts = opts or {}
  local srv = server.new({ name = 'pcs', listen = { host = '127.0.0.1', port = opts.port or 0 } })
  srv.hits = {}
  local function count(req)
    srv.hits[req.path] = (srv.hits[req.path] or 0) + 1
  end
  srv:get('/sgx/certification/v4/pckcrl', function(req, res)
    count(req)
    if req.args.ca ~= opts.ca or req.args.encoding ~= 'der' then
      return 404, { error = 'wrong ca or encoding' }
    end
    res:send(200, codec.unhex(coll.pck_crl), { ['content-type'] = 'application/pkix-crl',
      ['SGX-PCK-CRL-Issuer-Chain'] = url_encode(coll.pck_crl_issuer_chain) })
  end)
  srv:get('/:tee/certification/v4/tcb', function(req, res)
    count(req)
    if req.params.tee ~= opts.tee or req.args.fmspc ~= opts.fmspc then
      return 404, { error = 'no such FMSPC' }
    end
    local name = opts.old_tcb_header and 'SGX-TCB-Info-Issuer-Chain' or 'TCB-Info-Issuer-Chain'
    res:send(200, '{"tcbInfo":' .. coll.tcb_info .. ',"signature":"' .. coll.tcb_info_signature .. '"}',
      { ['content-type'] = 'application/json', [name] = url_encode(coll.tcb_info_issuer_chain) })
  end)
  srv:get('/:tee/certification/v4/qe/identity', function(req, res)
    count(req)
    if req.params.tee ~= opts.tee then
      return 404, { error = 'wrong TEE' }
    end
    res:send(200, '{"enclaveIdentity":' .. coll.qe_identity .. ',"signature":"'
      .. coll.qe_identity_signature .. '"}', { ['content-type'] = 'application/json',
      ['SGX-Enclave-Identity-Issuer-Chain'] = url_encode(coll.qe_identity_issuer_chain) })
  end)
  srv:get('/sgx/certification/v4/rootcacrl', function(req)
    count(req)
    if opts.no_rootcacrl then
      return 404, { error = 'no' }
    end
    return 200, coll.root_ca_crl, { ['content-type'] = 'text/plain' }
  end)
  srv:get('/IntelSGXRootCA.der', function(req)
    count(req)
    return 200, codec.unhex(coll.root_ca_crl), { ['content-type'] = 'application/pkix-crl' }
  end)
  assert(srv:listen())
  srv.base = ('http://127.0.0.1:%d'):format(srv:port())
  return srv
end
