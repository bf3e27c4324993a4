-- SPDX-License-Identifier: Apache-2.0
-- moonstack.verifier.audit (`moonstack audit`): each check of Atlas's production checklist on a
-- crafted bad input is flagged, naming the file and the key; the good examples pass (or, for
-- the development configs that legitimately trip a check, exactly that check).
local audit = require('moonstack.verifier.audit')
local json = require('moonstack.core.json')
local fixtures = require('fixtures')

local SRC = os.getenv('MOONSTACK_SRC') or '.'
local H48 = string.rep('ab', 48)
local GOOD = {
  type = 'dstack_tdx', allowed_tcb_status = { 'UpToDate' },
  expected_bootchain = { mrtd = H48, rtmr0 = H48, rtmr1 = H48, rtmr2 = H48 },
  os_image_hash = string.rep('cd', 32), app_compose = string.rep('ef', 32),
}

local function copy(t)
  local o = {}
  for k, v in pairs(t) do
    o[k] = type(v) == 'table' and copy(v) or v
  end
  return o
end

local function policy_findings(p)
  return audit.run({ policy = { file = 'p.json', value = p } })
end

-- A config as its daemon's loader validates it (kind's config module), then audited.
local function config_findings(kind, t, file, extra)
  local cfg = t
  if kind ~= 'proxy' then
    cfg = assert(require('moonstack.' .. kind .. '.config').validate(t))
  end
  local c = { file = file or (kind .. '.lua'), kind = kind, cfg = cfg }
  for k, v in pairs(extra or {}) do
    c[k] = v
  end
  return audit.run({ configs = { c } })
end

-- The findings with `id`, as "file: key" strings.
local function where(findings, id)
  local out = {}
  for _, f in ipairs(findings) do
    if f.id == id then
      out[#out + 1] = f.file .. ': ' .. f.key
    end
  end
  return out
end

local function ids(findings)
  local out = {}
  for _, f in ipairs(findings) do
    out[#out + 1] = f.id .. ' ' .. f.key
  end
  return out
end

describe('moonstack audit: the policy', function()
  it('passes a pinned policy (ours and the Atlas-style example)', function()
    assert.are.same({}, ids(policy_findings(copy(GOOD))))
    local text = fixtures.read(SRC .. '/examples/audit/atlas-policy.json')
    assert.are.same({}, ids(policy_findings(assert(json.decode(text)))))
  end)

  it('flags Revoked, and OutOfDate without a grace period', function()
    local p = copy(GOOD)
    p.allowed_tcb_status = { 'UpToDate', 'OutOfDate', 'Revoked' }
    local f = policy_findings(p)
    assert.are.same({ 'p.json: allowed_tcb_status[3]' }, where(f, 'tcb.revoked'))
    assert.are.same({ 'p.json: allowed_tcb_status[2]' }, where(f, 'tcb.outdated_without_grace'))
    p.allowed_tcb_status = { 'UpToDate', 'OutOfDateConfigurationNeeded' }
    p.grace_period = 0
    assert.are.same({ 'p.json: allowed_tcb_status[2]' },
      where(policy_findings(p), 'tcb.outdated_without_grace'))
    p.grace_period = 86400
    assert.are.same({}, ids(policy_findings(p)))
  end)

  it('flags disable_runtime_verification', function()
    local f = policy_findings({ disable_runtime_verification = true })
    assert.are.same({ 'p.json: disable_runtime_verification' }, where(f, 'runtime.disabled'))
  end)

  it('flags a missing bootchain, register, os_image_hash and app_compose', function()
    local f = policy_findings({ allowed_tcb_status = { 'UpToDate' } })
    assert.are.same({ 'p.json: expected_bootchain' }, where(f, 'runtime.no_bootchain'))
    assert.are.same({ 'p.json: os_image_hash' }, where(f, 'runtime.no_os_image_hash'))
    assert.are.same({ 'p.json: app_compose' }, where(f, 'runtime.no_app_compose'))
    local p = copy(GOOD)
    p.expected_bootchain.rtmr1 = nil
    assert.are.same({ 'p.json: expected_bootchain.rtmr1' },
      where(policy_findings(p), 'runtime.no_bootchain'))
  end)

  it('flags simulator and debug TDs, and a policy our verifier refuses', function()
    local p = copy(GOOD)
    p.allow_simulator, p.allow_debug, p.bogus = true, true, 1
    local f = policy_findings(p)
    assert.are.same({ 'p.json: allow_simulator' }, where(f, 'policy.simulator'))
    assert.are.same({ 'p.json: allow_debug' }, where(f, 'policy.debug'))
    assert.are.same({ 'p.json: bogus' }, where(f, 'policy.invalid'))
  end)
end)

describe('moonstack audit: the configs', function()
  it('flags an open or wildcard proxy allowlist', function()
    for _, list in ipairs({ '*', 'tee.example.com:443,0.0.0.0/0', '*.example.com:443',
      'tee.example.com:*', 'tee.example.com', '' }) do
      local f = config_findings('proxy', { ATLS_PROXY_ALLOWLIST = list }, 'proxy.env')
      assert.are.same({ 'proxy.env: ATLS_PROXY_ALLOWLIST' }, where(f, 'proxy.open_allowlist'), list)
    end
    local f = config_findings('proxy', { allowlist = { 'a.example.com:443', '10.0.0.0/8' } })
    assert.are.same({ 'proxy.lua: allowlist' }, where(f, 'proxy.open_allowlist'))
    assert.are.same({}, ids(config_findings('proxy',
      { ATLS_PROXY_ALLOWLIST = 'a.example.com:443,b.example.com:8443' })))
  end)

  it('flags a proxy running as root, and serving plain ws on a public listener', function()
    local f = config_findings('proxy', { allowlist = 'a.example.com:443', user = 'root',
      listen = '0.0.0.0:9000' })
    assert.are.same({ 'proxy.lua: user' }, where(f, 'proxy.root'))
    assert.are.same({ 'proxy.lua: listen' }, where(f, 'tls.plain_ws'))
    f = config_findings('proxy', { allowlist = 'a.example.com:443', listen = '0.0.0.0:9000',
      cert = 'c.pem', key = 'k.pem', user = 'nobody' })
    assert.are.same({}, ids(f))
  end)

  it('flags plain http:// and ws:// URLs where TLS is expected (not loopback)', function()
    local f = config_findings('vmm', { kms_urls = { 'http://kms.example.com:8000' },
      gateway_urls = { 'https://gw.example.com:8000', 'http://127.0.0.1:9000' },
      pccs_url = 'ws://pccs.example.com' })
    -- kms_url is derived from kms_urls[1] by the loader: both are named
    assert.are.same({ 'vmm.lua: kms_url', 'vmm.lua: kms_urls[1]', 'vmm.lua: pccs_url' },
      where(f, 'tls.plain_url'))
    assert.are.equal('error', f[1].severity)
    f = config_findings('kms', { auth = { kind = 'webhook', url = 'http://auth-api:8000' } })
    assert.are.same({ 'kms.lua: auth.url' }, where(f, 'tls.plain_url'))
    assert.are.equal('warning', f[1].severity) -- a single-label (internal) name
  end)

  it('flags admin listeners without auth', function()
    local f = config_findings('kms', { admin = { listen = { host = '0.0.0.0', port = 8001 },
      insecure_no_auth = true } })
    assert.are.same({ 'kms.lua: admin.insecure_no_auth' }, where(f, 'admin.no_auth'))
    assert.are.same({ 'kms.lua: admin.listen.host' }, where(f, 'admin.exposed'))
    f = config_findings('gateway', { proxy = { base_domain = 'app.example.com' },
      admin = { listen = { host = '127.0.0.1', port = 8011 }, insecure_no_auth = true } })
    assert.are.same({ 'gateway.lua: admin.insecure_no_auth' }, where(f, 'admin.no_auth'))
    f = config_findings('vmm', { listen = { host = '0.0.0.0', port = 8080 } })
    assert.are.same({ 'vmm.lua: auth.enabled' }, where(f, 'admin.no_auth'))
    f = config_findings('vmm', { listen = { host = '0.0.0.0', port = 8080 },
      auth = { enabled = true, tokens = { 'x' } } })
    assert.are.same({}, where(f, 'admin.no_auth'))
  end)

  it('flags key files, key directories and sockets others can read', function()
    local dir = fixtures.tmpdir('audit')
    finally(function() os.execute(('rm -rf %q'):format(dir)) end)
    os.execute(('mkdir -m 0755 %q/keys && touch %q/keys/root-k256.key %q/tok %q/ok'
      .. ' && chmod 0644 %q/keys/root-k256.key %q/tok && chmod 0600 %q/ok')
      :format(dir, dir, dir, dir, dir, dir, dir))
    local f = config_findings('kms', { key_dir = dir .. '/keys', admin = {
      listen = { host = '127.0.0.1', port = 8001 }, token_file = dir .. '/tok' } })
    assert.are.same({ 'kms.lua: admin.token_file', 'kms.lua: key_dir', 'kms.lua: key_dir' },
      where(f, 'perm.readable'))
    assert.matches('tok has mode 0644', f[1].message)
    assert.matches('keys has mode 0755', f[2].message)
    assert.matches('root%-k256%.key has mode 0644', f[3].message)
    -- relative to the config's directory; a 0600 file passes
    f = config_findings('kms', { admin = { listen = { host = '127.0.0.1', port = 8001 },
      token_file = 'ok' } }, nil, { dir = dir })
    assert.are.same({}, where(f, 'perm.readable'))
    -- a control socket bound with the default umask
    local uv = require('luv')
    local pipe = uv.new_pipe(false)
    assert(pipe:bind(dir .. '/ctl.sock'))
    os.execute(('chmod 0666 %q/ctl.sock'):format(dir))
    f = config_findings('vmm', { control = dir .. '/ctl.sock' })
    pipe:close()
    assert.are.same({ 'vmm.lua: control' }, where(f, 'perm.readable'))
  end)

  it('flags config values that put secrets on command lines', function()
    local f = config_findings('agent', { tee = { name = 'sim', dir = '/tmp/x', cvm = 'c' },
      runner = { dockerd = { args = { '--debug', '--tlskey', '/x', '--registry-token=abc' } } } })
    assert.are.same({ 'agent.lua: runner.dockerd.args[4]' }, where(f, 'argv.secret_in_config'))
    for _, finding in ipairs(f) do
      assert.is_nil(finding.message:find('abc', 1, true))
    end
  end)

  it('passes the shipped production examples; the dev ones trip only their dev settings', function()
    local config = require('moonstack.core.config')
    local function example(kind, name)
      local path = SRC .. '/examples/configs/' .. name
      local cfg = assert(require('moonstack.' .. kind .. '.config').load(path))
      return audit.run({ configs = { { file = name, kind = kind, cfg = cfg,
        dir = config.dir_of(path) } } })
    end
    assert.are.same({}, ids(example('gateway', 'gateway.lua')))
    assert.are.same({}, ids(example('vmm', 'vmm.lua')))
    assert.are.same({}, ids(example('vmm', 'vmm-qemu.lua')))
    -- kms.lua's auth webhook is upstream's auth-api sidecar on the CVM's internal network
    -- (a single-label name): a warning, not an error
    assert.are.same({ 'tls.plain_url auth.url' }, ids(example('kms', 'kms.lua')))
    assert.are.equal('warning', example('kms', 'kms.lua')[1].severity)
    -- kms-dev.lua is the development KMS: allow-all auth, the simulator's quotes
    assert.are.same({ 'kms.dev_auth auth.kind', 'policy.simulator attestation.simulator_dir' },
      ids(example('kms', 'kms-dev.lua')))
    -- gateway-local.lua routes `localhost` to the host for local development
    assert.are.same({ 'gateway.localhost_backend debug.insecure_localhost_backend' },
      ids(example('gateway', 'gateway-local.lua')))
  end)
end)

describe('moonstack audit: running processes', function()
  it('flags secrets in a moonstack process command line, naming the flag, never the value', function()
    local dir = fixtures.tmpdir('auditproc')
    finally(function() os.execute(('rm -rf %q'):format(dir)) end)
    -- a /proc-shaped tree: one moonstack daemon with a token flag, one aTLS proxy with an open
    -- allowlist running as root, one unrelated process
    local function proc(pid, argv, status, environ)
      os.execute(('mkdir -p %q/%d'):format(dir, pid))
      local f = assert(io.open(('%s/%d/cmdline'):format(dir, pid), 'wb'))
      f:write(table.concat(argv, '\0') .. '\0')
      f:close()
      f = assert(io.open(('%s/%d/status'):format(dir, pid), 'wb'))
      f:write('Name:\tx\nUid:\t' .. status .. '\n')
      f:close()
      f = assert(io.open(('%s/%d/environ'):format(dir, pid), 'wb'))
      f:write(environ or '')
      f:close()
    end
    proc(101, { '/usr/bin/moonstack', 'kms', '-c', 'kms.lua', '--admin-token', 's3cr3t' },
      '1000\t1000\t1000\t1000')
    proc(102, { '/usr/bin/moonstack', 'atls', 'proxy', '--listen', '127.0.0.1:9000',
      '--allowlist', 'a.example.com:443,*' }, '0\t0\t0\t0')
    proc(103, { '/usr/bin/atlas-proxy' }, '65534\t65534\t65534\t65534',
      'HOME=/\0ATLS_PROXY_ALLOWLIST=0.0.0.0/0\0')
    proc(104, { '/bin/sleep', '--token', 'x' }, '0\t0\t0\t0')
    -- a key given as a file is not a secret on the command line
    proc(105, { '/usr/bin/moonstack', 'atls', 'proxy', '--allowlist', 'a.example.com:443',
      '--cert', '/etc/p/cert.pem', '--key', '/etc/p/key.pem', '--user', 'nobody' },
      '65534\t65534\t65534\t65534')
    proc(106, { '/usr/bin/moonstack', 'atls', 'proxy', '--allowlist', 'a.example.com:443',
      '--listen', '0.0.0.0:9000' }, '65534\t65534\t65534\t65534')
    local f = audit.run({ proc = dir })
    assert.are.same({ dir .. '/101/cmdline: --admin-token' }, where(f, 'argv.secret'))
    assert.are.same({ dir .. '/102/cmdline: --allowlist',
      dir .. '/103/environ: ATLS_PROXY_ALLOWLIST' }, where(f, 'proxy.open_allowlist'))
    assert.are.same({ dir .. '/102/status: Uid' }, where(f, 'proxy.root'))
    assert.are.same({ dir .. '/106/cmdline: --listen' }, where(f, 'tls.plain_ws'))
    for _, finding in ipairs(f) do
      assert.is_nil(finding.message:find('s3cr3t', 1, true))
    end
  end)
end)
