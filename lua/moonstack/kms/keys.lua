-- SPDX-License-Identifier: Apache-2.0
-- The KMS root material (kms-vmm-gateway.md §3.1) in its key directory:
--   root-ca.key / root-ca.crt   P-256 root CA (PEM PKCS#8 / self-signed, profiles.kms_root_ca)
--   root-k256.key               the raw 32-byte secp256k1 root scalar (binary)
--   tmp-ca.key / tmp-ca.crt     the client temp CA (profiles.kms_tmp_ca)
-- The first start generates all five (directory 0700, files 0600, each written atomically);
-- later starts load them. An empty or missing directory is the only state that generates: a
-- partial set, an unreadable, corrupt or mismatched file is an EKEYS error naming the file,
-- never a silent regeneration. With opts.sealer (moonstack.kms.seal) the three private keys
-- are sealed at rest; a sealed file without a sealer, a plain one with a sealer, or one that
-- does not unseal (other measurements, tampering) is an EKEYS error as well. As ssh does, a
-- private key file its group or others may read (or owned by another user), or a directory
-- others may write, is refused, naming the file and the chmod that fixes it; the temporaries
-- of an interrupted first start (full private keys) are removed by open().
local uv = require('luv')
local crypto = require('moonstack.crypto')
local fs = require('moonstack.core.fs')
local x509 = require('moonstack.x509')
local profiles = require('moonstack.x509.profiles')
local seal = require('moonstack.kms.seal')

local errors = require('moonstack.core.errors')

local M = {}

--- The file names, in the order they are written.
M.FILES = { 'root-ca.key', 'root-ca.crt', 'root-k256.key', 'tmp-ca.key', 'tmp-ca.crt' }

-- The files sealed when a sealer is given.
local SECRET = { ['root-ca.key'] = true, ['root-k256.key'] = true, ['tmp-ca.key'] = true }

-- Largest file accepted (a PEM key or certificate is far smaller).
local MAX_FILE = 64 * 1024

local function fail(fmt, ...)
  return errors.fail('EKEYS', fmt:format(...))
end

local function path_of(dir, name)
  return dir .. '/' .. name
end

-- Which of the files exist: present (list), missing (list).
local function survey(dir)
  local present, missing = {}, {}
  for _, name in ipairs(M.FILES) do
    local st = uv.fs_stat(path_of(dir, name))
    if st then
      present[#present + 1] = name
    else
      missing[#missing + 1] = name
    end
  end
  return present, missing
end

local function read(dir, name, sealer)
  local p = path_of(dir, name)
  if SECRET[name] then
    local ok, perr = fs.check_private(p)
    if not ok then
      return fail('%s', (perr:gsub('^EPERM: ', '')))
    end
  end
  local data, err = fs.read_file(p, MAX_FILE)
  if not data then
    return fail('cannot read %s: %s', p, err)
  end
  if not SECRET[name] then
    return data
  end
  if sealer then
    if not seal.is_sealed(data) then
      return fail('%s is not sealed, but sealing is configured', p)
    end
    local pt, uerr = sealer:unseal(name, data)
    if not pt then
      return fail('%s: %s', p, uerr)
    end
    return pt
  end
  if seal.is_sealed(data) then
    return fail('%s is sealed: configure the sealing backend to open it', p)
  end
  return data
end

-- A private P-256 key and the certificate that must carry its public key.
local function load_pair(dir, key_name, cert_name, sealer)
  local kp, cp = path_of(dir, key_name), path_of(dir, cert_name)
  local ktext, err, code = read(dir, key_name, sealer)
  if not ktext then
    return nil, err, code
  end
  local key, kerr = x509.load_key(ktext)
  if not key or not key:is_private() then
    return fail('%s is not a P-256 private key (%s)', kp, kerr or 'public key only')
  end
  local ctext
  ctext, err, code = read(dir, cert_name)
  if not ctext then
    return nil, err, code
  end
  local cert, cerr = x509.cert(ctext)
  if not cert then
    return fail('%s is not a certificate (%s)', cp, cerr)
  end
  if cert:spki() ~= key:spki() then
    return fail('%s does not certify the key in %s', cp, kp)
  end
  return key, cert
end

local function k256_of(dir, sealer)
  local p = path_of(dir, 'root-k256.key')
  local raw, err, code = read(dir, 'root-k256.key', sealer)
  if not raw then
    return nil, err, code
  end
  if #raw ~= 32 then
    return fail('%s must hold a raw 32-byte secp256k1 scalar, found %d bytes', p, #raw)
  end
  local pub = crypto.k256.pubkey(raw)
  if not pub then
    return fail('%s is not a valid secp256k1 scalar', p)
  end
  return raw, pub
end

--- The material as a table: { dir, root_key (x509 Key), root_scalar (32 bytes), root_cert
--- (Cert), root_k256 (32 bytes), k256_pubkey (33 bytes compressed), tmp_ca_key (Key),
--- tmp_ca_cert (Cert) }.
local function material(dir, root_key, root_cert, k256, k256_pub, tmp_key, tmp_cert)
  return { dir = dir, root_key = root_key, root_scalar = root_key:scalar(), root_cert = root_cert,
    root_k256 = k256, k256_pubkey = k256_pub, tmp_ca_key = tmp_key, tmp_ca_cert = tmp_cert }
end

--- Load the root material of a complete key directory (opts.sealer: the private keys are
--- sealed). Returns the material (see above) or nil, 'EKEYS: ...', 'EKEYS'.
function M.load(dir, opts)
  assert(type(dir) == 'string' and dir ~= '', 'kms.keys.load: dir must be a non-empty string')
  local present, missing = survey(dir)
  if #missing > 0 then
    return fail('key directory %s is incomplete: missing %s (present: %s)', dir,
      table.concat(missing, ', '), #present > 0 and table.concat(present, ', ') or 'none')
  end
  local dok, derr = fs.check_private_dir(dir, 'the key directory')
  if not dok then
    return fail('%s', (derr:gsub('^EPERM: ', '')))
  end
  local sealer = opts and opts.sealer
  local root_key, root_cert, code = load_pair(dir, 'root-ca.key', 'root-ca.crt', sealer)
  if not root_key then
    return nil, root_cert, code
  end
  local k256, k256_pub, kcode = k256_of(dir, sealer)
  if not k256 then
    return nil, k256_pub, kcode
  end
  local tmp_key, tmp_cert, tcode = load_pair(dir, 'tmp-ca.key', 'tmp-ca.crt', sealer)
  if not tmp_key then
    return nil, tmp_cert, tcode
  end
  return material(dir, root_key, root_cert, k256, k256_pub, tmp_key, tmp_cert)
end

--- Generate fresh root material in memory, for `dir` (nothing is written: write() stores it).
--- opts: for tests and vectors root_scalar = 32 bytes, root_k256 = 32 bytes. Returns the
--- material or nil, msg, code.
function M.generate(dir, opts)
  opts = opts or {}
  local root_key, kerr
  if opts.root_scalar then
    root_key, kerr = x509.key_from_scalar(opts.root_scalar)
  else
    root_key, kerr = x509.generate_key()
  end
  if not root_key then
    return fail('cannot make the root CA key: %s', kerr)
  end
  local k256 = opts.root_k256 or crypto.k256.generate()
  local k256_pub = crypto.k256.pubkey(k256)
  if not k256_pub then
    return fail('the root k256 key is not a valid secp256k1 scalar')
  end
  local root_cert, cerr = profiles.kms_root_ca(root_key)
  if not root_cert then
    return fail('cannot issue the root CA certificate: %s', cerr)
  end
  local tmp_key = x509.generate_key()
  local tmp_cert, terr = profiles.kms_tmp_ca(tmp_key)
  if not tmp_cert then
    return fail('cannot issue the temp CA certificate: %s', terr)
  end
  return material(dir, root_key, root_cert, k256, k256_pub, tmp_key, tmp_cert)
end

--- Generate fresh root material into `dir` (created 0700 if missing; it must hold none of the
--- files). opts: sealer (moonstack.kms.seal) to seal the private keys; for tests and
--- vectors root_scalar = 32 bytes, root_k256 = 32 bytes.
--- Returns the material or nil, msg, code.
function M.create(dir, opts)
  assert(type(dir) == 'string' and dir ~= '', 'kms.keys.create: dir must be a non-empty string')
  opts = opts or {}
  local present = survey(dir)
  if #present > 0 then
    return fail('key directory %s already holds %s: refusing to overwrite', dir,
      table.concat(present, ', '))
  end
  local m, err, code = M.generate(dir, opts)
  if not m then
    return nil, err, code
  end
  return M.write(dir, m, opts)
end

--- Write given root material `m` = { root_key, root_cert, root_k256, tmp_ca_key, tmp_ca_cert }
--- (x509 Key/Cert, raw k256 scalar) into `dir` (created 0700; it must hold none of the files;
--- opts.sealer seals the private keys): onboarding's copy of another KMS's keys. The
--- certificates must be for the keys next to them. Returns the material or nil, msg, code.
function M.write(dir, m, opts)
  assert(type(dir) == 'string' and dir ~= '' and type(m) == 'table', 'kms.keys.write: dir and material')
  opts = opts or {}
  local present = survey(dir)
  if #present > 0 then
    return fail('key directory %s already holds %s: refusing to overwrite', dir,
      table.concat(present, ', '))
  end
  local ok, err, code = fs.mkdir_p(dir, 448) -- 0700
  if not ok then
    return fail('cannot create the key directory %s: %s', dir, tostring(err or code))
  end
  ok, err = fs.check_private_dir(dir, 'the key directory')
  if not ok then
    return fail('%s', (err:gsub('^EPERM: ', '')))
  end
  local k256_pub = type(m.root_k256) == 'string' and #m.root_k256 == 32 and crypto.k256.pubkey(m.root_k256)
  if not k256_pub then
    return fail('the root k256 key is not a valid secp256k1 scalar')
  end
  if m.root_cert:spki() ~= m.root_key:spki() or m.tmp_ca_cert:spki() ~= m.tmp_ca_key:spki() then
    return fail('a CA certificate is not for the key given with it')
  end
  local content = {
    ['root-ca.key'] = m.root_key:pkcs8_pem(), ['root-ca.crt'] = m.root_cert:pem(),
    ['root-k256.key'] = m.root_k256, ['tmp-ca.key'] = m.tmp_ca_key:pkcs8_pem(),
    ['tmp-ca.crt'] = m.tmp_ca_cert:pem(),
  }
  for _, name in ipairs(M.FILES) do
    local data = content[name]
    if opts.sealer and SECRET[name] then
      data = opts.sealer:seal(name, data)
    end
    local wok, werr, wcode = fs.write_atomic(path_of(dir, name), data, 384) -- 0600
    if not wok then
      return fail('cannot write %s: %s', path_of(dir, name), tostring(werr or wcode))
    end
  end
  return material(dir, m.root_key, m.root_cert, m.root_k256, k256_pub, m.tmp_ca_key, m.tmp_ca_cert)
end

--- Certificates renewed by renew() when they expire within this many seconds (365 days).
M.RENEW_WITHIN = 365 * 86400

--- Renew the root and temp CA certificates of loaded material `m` that expire within
--- RENEW_WITHIN of opts.now (default os.time()): a new self-signed certificate for the same key,
--- written atomically (0600), so every derived key and every SPKI pin stays valid (spec §3.1).
--- Returns the list of renewed file names (maybe empty), or nil, 'EKEYS: ...', 'EKEYS'.
function M.renew(m, opts)
  local now = opts and opts.now or os.time()
  local renewed = {}
  for _, c in ipairs({ { 'root-ca.crt', 'root_cert', 'root_key', profiles.kms_root_ca },
    { 'tmp-ca.crt', 'tmp_ca_cert', 'tmp_ca_key', profiles.kms_tmp_ca } }) do
    local name, cert_field, key_field, issue = c[1], c[2], c[3], c[4]
    if m[cert_field]:info().not_after < now + M.RENEW_WITHIN then
      local cert, err = issue(m[key_field])
      if not cert then
        return fail('cannot renew %s: %s', path_of(m.dir, name), tostring(err))
      end
      local ok, werr, wcode = fs.write_atomic(path_of(m.dir, name), cert:pem(), 384) -- 0600
      if not ok then
        return fail('cannot write the renewed %s: %s', path_of(m.dir, name), tostring(werr or wcode))
      end
      m[cert_field] = cert
      renewed[#renewed + 1] = name
    end
  end
  return renewed
end

--- Remove the temporaries an interrupted write left in `dir` (`<file>.tmp.<pid>.<hex>`: a
--- kill during the first start leaves full private keys there). Returns the removed names
--- (maybe empty) or nil, 'EKEYS: ...', 'EKEYS'.
function M.clean_temporaries(dir)
  local removed = {}
  for _, name in ipairs(fs.atomic_leftovers(dir)) do
    local ok, err, code = uv.fs_unlink(path_of(dir, name))
    if not ok and code ~= 'ENOENT' then
      return fail('cannot remove the leftover %s: %s', path_of(dir, name), tostring(err))
    end
    removed[#removed + 1] = name
  end
  return removed
end

--- Load the material of `dir`, or generate it when the directory is missing or holds none of
--- the files (opts as for create: sealer, ...; opts.defer_write = true: generated material is
--- not written, the caller stores it with write(dir, m, opts) once everything else is ready).
--- Leftover temporaries are removed first (opts.on_cleaned(names) is told). Returns material,
--- created (boolean) or nil, msg, code.
function M.open(dir, opts)
  assert(type(dir) == 'string' and dir ~= '', 'kms.keys.open: dir must be a non-empty string')
  opts = opts or {}
  local removed, rerr, rcode = M.clean_temporaries(dir)
  if not removed then
    return nil, rerr, rcode
  end
  if #removed > 0 and opts.on_cleaned then
    opts.on_cleaned(removed)
  end
  local present = survey(dir)
  if #present == 0 then
    local m, err, code
    if uv.fs_stat(dir) then
      local ok, derr = fs.check_private_dir(dir, 'the key directory')
      if not ok then
        return fail('%s', (derr:gsub('^EPERM: ', '')))
      end
    end
    if opts.defer_write then
      m, err, code = M.generate(dir, opts)
    else
      m, err, code = M.create(dir, opts)
    end
    if not m then
      return nil, err, code
    end
    return m, true
  end
  local m, err, code = M.load(dir, opts)
  if not m then
    return nil, err, code
  end
  return m, false
end

return M
