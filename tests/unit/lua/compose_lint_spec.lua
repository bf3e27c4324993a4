-- SPDX-License-Identifier: Apache-2.0
-- moonstack.compose.lint: every rule flags a crafted bad input naming the field (and the line
-- in the docker-compose text), good inputs pass, waivers, the ordering and the counts; and the
-- compose hash / app id of the atlas vectors (as stored and normalized).
local lint = require('moonstack.compose.lint')
local app_compose = require('moonstack.cvm.app_compose')
local json = require('moonstack.core.json')
local crypto = require('moonstack.crypto')
local fixtures = require('fixtures')

local PINNED = 'nginx@sha256:' .. ('ab'):rep(32)

-- A clean docker-compose around `extra` (lines of the `web` service).
local function dc(extra)
  return 'services:\n  web:\n    image: ' .. PINNED .. '\n' .. table.concat(extra or {}, '\n') .. '\n'
end

-- An app-compose: a clean one (pinned KMS, secure time, no public logs) with `over` applied.
local function app(over, docker)
  local v = { manifest_version = 2, name = 'x', runner = 'docker-compose',
    docker_compose_file = docker or dc(), kms_enabled = true, gateway_enabled = true,
    key_provider_id = ('00'):rep(91), public_logs = false, public_sysinfo = false,
    public_tcbinfo = false, allowed_envs = json.array(), no_instance_id = false, secure_time = true }
  for k, val in pairs(over or {}) do
    v[k] = val
  end
  return json.encode(v)
end

local function findings(text)
  local r, err = lint.lint(text)
  assert(r, err)
  return r
end

-- The finding `id` at `field` (asserting there is one), with its severity checked.
local function has(text, id, field, severity)
  local r = findings(text)
  for _, f in ipairs(r.findings) do
    if f.id == id and f.field == field then
      assert.equal(severity or lint.RULES[id][1], f.severity)
      assert.truthy(#f.fix > 0 and #f.message > 0)
      return f, r
    end
  end
  local got = {}
  for _, f in ipairs(r.findings) do
    got[#got + 1] = f.id .. '@' .. f.field
  end
  error(('no %s at %s; got: %s'):format(id, field, table.concat(got, ', ')))
end

describe('compose.lint', function()
  it('passes a clean app-compose and a clean docker-compose without findings', function()
    assert.same({}, findings(app()).findings)
    local r = findings(dc({ '    ports:', '      - "127.0.0.1:8080:80"' }))
    assert.equal('docker-compose', r.kind)
    assert.same({}, r.findings)
  end)

  it('flags each docker-compose rule naming the field and the line', function()
    local f = has(dc():gsub(PINNED, 'nginx:latest'), 'image-not-pinned', 'services.web.image')
    assert.equal(3, f.line)
    has(dc():gsub(PINNED, 'nginx@sha256:abc'), 'image-not-pinned', 'services.web.image')
    has('services:\n  web:\n    build: .\n', 'image-not-pinned', 'services.web.build')
    has(dc({ '    environment:', '      DB_PASSWORD: hunter2' }), 'secret-in-environment',
      'services.web.environment.DB_PASSWORD')
    has(dc({ '    environment:', '      - API_TOKEN=abc' }), 'secret-in-environment',
      'services.web.environment[0]')
    has(dc({ '    environment:', '      - NOTE=' .. ('f'):rep(64) }), 'secret-in-environment',
      'services.web.environment[0]')
    has(dc({ '    environment:', '      - PEM=-----BEGIN PRIVATE KEY-----' }),
      'secret-in-environment', 'services.web.environment[0]')
    has(dc({ '    environment:', '      DB_PASSWORD: ${DB_PASSWORD:-changeme}' }),
      'secret-in-environment', 'services.web.environment.DB_PASSWORD')
    has(dc({ '    privileged: "true"' }), 'privileged-container', 'services.web.privileged')
    f = has(dc({ '    privileged: true' }), 'privileged-container', 'services.web.privileged')
    assert.equal(4, f.line)
    has(dc({ '    cap_add: [SYS_ADMIN]' }), 'dangerous-capability', 'services.web.cap_add[0]')
    has(dc({ '    pid: host' }), 'dangerous-capability', 'services.web.pid')
    has(dc({ '    network_mode: host' }), 'network-host', 'services.web.network_mode')
    has(dc({ '    volumes:', '      - /var/run/docker.sock:/var/run/docker.sock' }),
      'docker-socket', 'services.web.volumes[0]')
    has(dc({ '    volumes:', '      - type: bind', '        source: /run/docker.sock',
      '        target: /s' }), 'docker-socket', 'services.web.volumes[0]')
    has(dc({ '    volumes:', '      - data:/d', '      - /etc:/host-etc:ro' }), 'host-path-mount',
      'services.web.volumes[1]')
    for i, p in ipairs({ '"8080:80"', '"0.0.0.0:8080:80"', '"[::]:8080:80"', '80', '"80/udp"' }) do
      has(dc({ '    ports:', '      - "127.0.0.1:1:1"', '      - ' .. p }), 'port-all-interfaces',
        'services.web.ports[1]')
      assert(i)
    end
    has(dc({ '    ports:', '      - target: 80', '        published: 8080' }),
      'port-all-interfaces', 'services.web.ports[0]')
    has(dc({ '    ports:', '      - target: 80' }), 'port-all-interfaces', 'services.web.ports[0]')
    assert.same({}, findings(dc({ '    ports:', '      - target: 80',
      '        host_ip: 127.0.0.1' })).findings)
  end)

  it('does not flag references, the agent socket, named volumes or loopback ports', function()
    local r = findings(dc({ '    environment:', '      DB_PASSWORD: ${DB_PASSWORD}',
      '      - ignored: 1', '    volumes:', '      - /var/run/dstack.sock:/var/run/dstack.sock',
      '      - data:/data', '    ports:', '      - "127.0.0.1:8080:80"' }):gsub('      %- ignored: 1\n', ''))
    assert.same({}, r.findings)
    r = findings(dc({ '    environment:', '      TOKEN_TTL: 3600', '      USE_TOKEN: "false"',
      '      COMMIT: ' .. ('a'):rep(40) }))
    assert.same({}, r.findings)
  end)

  it('flags each app-compose rule naming the field', function()
    has(app({ public_logs = true }), 'public-logs', 'public_logs')
    has(app({ public_sysinfo = true }), 'public-sysinfo', 'public_sysinfo')
    has(app({ public_tcbinfo = true }), 'public-tcbinfo', 'public_tcbinfo')
    has(app({ public_tcbinfo = json.null }), 'public-tcbinfo', 'public_tcbinfo') -- default true
    has(app({ key_provider_id = '' }), 'key-provider-not-pinned', 'key_provider_id')
    has(app({ kms_enabled = false, local_key_provider_enabled = true, key_provider_id = '' }),
      'key-provider-not-pinned', 'key_provider_id')
    has(app({ secure_time = false }), 'secure-time-off', 'secure_time')
    local docker = dc({ '    environment:', '      GREETING: ${GREETING}', '      X: ${OPT:-d}' })
    local f = has(app({ allowed_envs = json.array({ 'OTHER' }) }, docker), 'env-not-allowed',
      'docker_compose_file.services.web.environment.GREETING', 'error')
    assert.equal(5, f.line)
    has(app({}, docker), 'env-not-allowed', 'docker_compose_file.services.web.environment.X',
      'warning')
    has(app({ allowed_envs = json.array({ 'K' }) }), 'encrypted-env-unauthenticated', 'allowed_envs')
    has(app({ pre_launch_script = 'cat /dstack/user_config' }), 'user-config-unchecked',
      'pre_launch_script')
    has(json.encode({ manifest_version = 2, name = 'b', runner = 'bash',
      bash_script = 'cat /dstack/user_config' }),
      'user-config-unchecked', 'bash_script')
    has(app({ manifest_version = '3', init_script = json.array({ 'true', 'jq . /dstack/user_config' }) }),
      'user-config-unchecked', 'init_script[1]')
    -- a sha256 elsewhere in the script is not a check of user_config
    has(app({ pre_launch_script = 'P=$(head -c 32 /dev/urandom | sha256sum)\njq . /dstack/user_config' }),
      'user-config-unchecked', 'pre_launch_script')
    -- naming LAUNCH_TOKEN without comparing its hash is not the pattern
    has(app({ allowed_envs = json.array({ 'LAUNCH_TOKEN' }), pre_launch_script = 'echo $LAUNCH_TOKEN' }),
      'encrypted-env-unauthenticated', 'allowed_envs')
    has(app({ init_script = 'echo hi' }), 'init-script', 'init_script')
    has(app({ manifest_version = '3', init_script = json.array({ 'a', 'b' }) }), 'init-script',
      'init_script[1]')
    has(app({ pre_launch_script = 'echo hi' }), 'pre-launch-script', 'pre_launch_script')
    has(app({ no_instance_id = true }), 'no-instance-id-gateway', 'no_instance_id')
    has(app({ no_instance_id = true, gateway_enabled = false, features = json.array({ 'tproxy-net' }) }),
      'no-instance-id-gateway', 'no_instance_id')
    has(app({}, dc():gsub(PINNED, 'nginx:1')), 'image-not-pinned',
      'docker_compose_file.services.web.image')
  end)

  it('accepts the authenticity checks that answer the env and user_config rules', function()
    local pre = 'echo "$LAUNCH_TOKEN" | sha256sum | grep -q "$LAUNCH_TOKEN_HASH" || exit 1\n'
    local r = findings(app({ allowed_envs = json.array({ 'LAUNCH_TOKEN' }), pre_launch_script = pre }))
    for _, f in ipairs(r.findings) do
      assert.is_not.equal('encrypted-env-unauthenticated', f.id)
    end
    r = findings(app({ manifest_version = '3', allowed_envs = json.array({ 'K' }),
      requirements = { launch_token_hash = ('00'):rep(32) } }))
    assert.same({}, r.findings)
    r = findings(app({ pre_launch_script = 'echo "$H  /dstack/user_config" | sha256sum -c' }))
    for _, f in ipairs(r.findings) do
      assert.is_not.equal('user-config-unchecked', f.id)
    end
  end)

  it('orders by severity, counts, and honours waivers with a reason', function()
    local docker = '# moonstack-lint: ignore image-not-pinned built offline\n' ..
      dc({ '    privileged: true' }):gsub(PINNED, 'x:1')
    local r = findings(app({ public_logs = true, public_tcbinfo = true }, docker))
    assert.same({ 'privileged-container', 'public-logs', 'public-tcbinfo', 'image-not-pinned' },
      { r.findings[1].id, r.findings[2].id, r.findings[3].id, r.findings[4].id })
    assert.equal('built offline', r.findings[4].suppressed)
    assert.same({ error = 1, warning = 1, info = 1, suppressed = 1 }, r.counts)
    -- a waiver without a reason waives nothing
    r = findings(('# moonstack-lint: ignore image-not-pinned\n' .. dc()):gsub(PINNED, 'x:1'))
    assert.equal(1, r.counts.error)
  end)

  it('reports parse and structure errors naming the field', function()
    local cases = {
      { '{"name": "x"}', 'manifest_version' },
      { app({ docker_compose_file = 'services:\n  a: &x 1\n' }), 'docker_compose_file: line 2: anchors' },
      { app({ docker_compose_file = 'version: "3"\n' }), 'docker_compose_file: services' },
      { 'services: [a]\n', 'services' },
      { 'a: 1\na: 2\n', 'line 2: duplicate key' },
    }
    for _, c in ipairs(cases) do
      local r, err = lint.lint(c[1])
      assert.is_nil(r)
      assert.truthy(err:find(c[2], 1, true), err)
    end
  end)

  it('lints the examples and the atlas vectors without errors', function()
    for _, a in ipairs({ 'hello', 'sdk' }) do
      local text = fixtures.read(os.getenv('MOONSTACK_SRC') .. '/examples/apps/' .. a ..
        '/docker-compose.yaml')
      assert.equal(0, findings(text).counts.error, a)
      local composed = app_compose.new({ name = a, docker_compose_file = text,
        allowed_envs = { a == 'hello' and 'GREETING' or 'NOTE' } })
      assert.equal(0, findings(composed).counts.error, a)
    end
    for _, v in ipairs({ 'atlas-default-app-compose.json', 'atlas-vllm-app-compose.json' }) do
      assert.equal(0, findings(fixtures.read_vector('derived/' .. v)).counts.error, v)
    end
  end)
end)

describe('compose hash and app id', function()
  local cases = {
    { 'derived/atlas-default-app-compose.json',
      'a372f45a6f60cacfdf6be794a0729e3fb79c43b190db2e38b91544d149d9f6b5' },
    { 'derived/atlas-vllm-app-compose.json',
      '11899cdb6d8e0022298eb89acc347faafb8720488428c965542ff13b47949fa4' },
  }
  it('reproduces the vectors, as stored and normalized from another layout', function()
    for _, c in ipairs(cases) do
      local raw = fixtures.read_vector(c[1])
      assert.equal(c[2], crypto.hex(app_compose.compose_hash(raw)))
      assert.equal(c[2]:sub(1, 40), crypto.hex(assert(app_compose.app_id(app_compose.compose_hash(raw)))))
      -- re-laid out (spaces, other key order): the stored hash changes, the normalized one not
      local v = assert(json.decode(raw))
      local pretty = '{\n  ' .. assert(json.encode(v)):sub(2):gsub('","', '",\n  "')
      assert.is_not.equal(c[2], crypto.hex(app_compose.compose_hash(pretty)))
      assert.equal(c[2], crypto.hex(app_compose.compose_hash(assert(json.canonical(pretty)))))
    end
  end)
end)
