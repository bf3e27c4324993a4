-- SPDX-License-Identifier: Apache-2.0
-- JOSE for ACME (RFC 8555 §6.2, RFC 7515/7517/7518/7638): base64url, the JWK of a P-256
-- account key, its RFC 7638 thumbprint, ES256 flattened JWS (r||s signatures from
-- moonstack.crypto's P-256), and the DNS-01 key authorization digest.
local codec = require('moonstack.core.codec')
local crypto = require('moonstack.crypto')
local json = require('moonstack.core.json')
local x509 = require('moonstack.x509')

local M = {}

--- base64url without padding (RFC 7515 §2).
function M.b64url(s)
  return (codec.base64(s):gsub('[+/=]', { ['+'] = '-', ['/'] = '_', ['='] = '' }))
end

--- Decode base64url (padding optional). Returns bytes or nil, 'EINVAL: ...', 'EINVAL'.
function M.unb64url(s)
  if type(s) ~= 'string' or s:find('[^%w%-_=]') then
    return nil, 'EINVAL: not base64url', 'EINVAL'
  end
  local t = s:gsub('=', ''):gsub('[-_]', { ['-'] = '+', ['_'] = '/' })
  t = t .. ('='):rep((4 - #t % 4) % 4)
  local v, err = codec.unbase64(t)
  if not v then
    return nil, 'EINVAL: ' .. tostring(err), 'EINVAL'
  end
  return v
end

--- The public JWK of a P-256 key (a moonstack.x509 Key or PEM): { kty, crv, x, y }.
function M.jwk(key)
  local k = x509.key(key, 'jws.jwk')
  local pt = k:public_point()
  assert(#pt == 65 and pt:byte(1) == 4, 'jws.jwk: an uncompressed P-256 point expected')
  return { kty = 'EC', crv = 'P-256', x = M.b64url(pt:sub(2, 33)), y = M.b64url(pt:sub(34, 65)) }
end

--- The RFC 7638 thumbprint (base64url of SHA-256 over the canonical JWK: the required
--- members in lexicographic order, no whitespace: crv, kty, x, y for EC; e, kty, n for RSA).
function M.thumbprint(jwk)
  local req = jwk.kty == 'RSA' and { e = jwk.e, kty = 'RSA', n = jwk.n } or
    { crv = jwk.crv, kty = jwk.kty, x = jwk.x, y = jwk.y }
  return M.b64url(crypto.sha256(json.encode(req)))
end

--- A flattened JWS (RFC 7515 §7.2.2) over `payload` (a string; '' for POST-as-GET) with the
--- protected header `header` (alg ES256 is set here), signed by the private P-256 `key`.
--- Returns the JSON text.
function M.sign(key, header, payload)
  local k = x509.key(key, 'jws.sign')
  local h = {}
  for name, v in pairs(header) do
    h[name] = v
  end
  h.alg = 'ES256'
  local protected = M.b64url(json.encode(h))
  local body = M.b64url(payload)
  local sig, err, code = crypto.p256.sign(k:scalar(), crypto.sha256(protected .. '.' .. body))
  if not sig then
    return nil, err, code
  end
  return json.encode({ protected = protected, payload = body, signature = M.b64url(sig) })
end

--- The key authorization of a challenge token (RFC 8555 §8.1): token '.' thumbprint.
function M.key_authorization(token, thumbprint)
  return token .. '.' .. thumbprint
end

--- The TXT value of a DNS-01 challenge (RFC 8555 §8.4): base64url(SHA-256(key authorization)).
function M.dns01_value(token, thumbprint)
  return M.b64url(crypto.sha256(M.key_authorization(token, thumbprint)))
end

return M
