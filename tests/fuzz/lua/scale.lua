-- SPDX-License-Identifier: Apache-2.0
-- Fuzz driver: SCALE decoders of bytes from outside. First byte picks: 0 a VersionedAttestation
-- (tdx.attestation.decode: SCALE v0 with quote, event log and runtime events; msgpack v1), 1
-- the KMS's CertSigningRequestV1, 2 V2 (kms.csr) — on the rest of the input. A decoded
-- attestation is re-encoded and decodes to the same bytes.
local check = require('fuzz_check')
local attestation = require('moonstack.tdx.attestation')
local csr = require('moonstack.kms.csr')

return function(data)
  if #data < 1 then
    return
  end
  local sel, rest = data:byte(1) % 3, data:sub(2)
  if sel == 0 then
    local att = check.result('attestation.decode', attestation.decode(rest))
    if att then
      local ok, enc = pcall(attestation.encode, att)
      if ok and enc then
        local again = check.result('attestation.decode(encode)', attestation.decode(enc))
        check.check(again ~= nil and again.quote == att.quote, 'attestation round trip')
      end
    end
  elseif sel == 1 then
    check.result('csr.decode_v1', csr.decode_v1(rest))
  else
    check.result('csr.decode_v2', csr.decode_v2(rest))
  end
end
