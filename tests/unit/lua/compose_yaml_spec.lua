-- SPDX-License-Identifier: Apache-2.0
-- moonstack.compose.yaml: the docker-compose subset (mappings, sequences at and below their
-- key, quoted and plain scalars, comments, block scalars, flow collections over lines), the
-- paths' line numbers, and refusals with line numbers for what it does not understand.
local yaml = require('moonstack.compose.yaml')
local json = require('moonstack.core.json')
local fixtures = require('fixtures')

describe('compose.yaml', function()
  it('parses a compose file with every construct compose files use', function()
    local text = table.concat({
      '# top comment',
      'services:',
      '  web:   # trailing comment',
      '    image: "nginx@sha256:abc"',
      "    command: ['a', \"b c\", 'it''s']",
      '    environment:',
      '      A: 1',
      '      B: "x # not a comment"',
      '      C:',
      '      D: true',
      '    ports:',
      '    - "127.0.0.1:80:80"',
      '    - target: 443',
      '      published: 443',
      '    labels: {a: b, "c": [1, 2]}',
      '    healthcheck:',
      '      test: ["CMD",',
      '        "curl"]',
      '    entrypoint: |',
      '      line one',
      '        indented',
      '',
      '      last',
      '    script: >-',
      '      folded',
      '      text',
      'volumes:',
      '  data:',
    }, '\n') .. '\n'
    local doc, lines = assert(yaml.parse(text))
    local web = doc.services.web
    assert.equal('nginx@sha256:abc', web.image)
    assert.same({ 'a', 'b c', "it's" }, web.command)
    assert.equal(1, web.environment.A)
    assert.equal('x # not a comment', web.environment.B)
    assert.equal(json.null, web.environment.C)
    assert.equal(true, web.environment.D)
    assert.equal('127.0.0.1:80:80', web.ports[1])
    assert.equal(443, web.ports[2].published)
    assert.same({ 'a', 'c' }, yaml.keys(web.labels))
    assert.same({ 1, 2 }, web.labels.c)
    assert.same({ 'CMD', 'curl' }, web.healthcheck.test)
    assert.equal('line one\n  indented\n\nlast\n', web.entrypoint)
    assert.equal('folded text', web.script)
    assert.equal(json.null, doc.volumes.data)
    assert.same({ 'image', 'command', 'environment', 'ports', 'labels', 'healthcheck', 'entrypoint',
      'script' }, yaml.keys(web))
    assert.equal(4, lines['services.web.image'])
    assert.equal(12, lines['services.web.ports[0]'])
    assert.equal(13, lines['services.web.ports[1]'])
    assert.equal(7, lines['services.web.environment.A'])
  end)

  it('parses the atlas vllm compose of the vectors', function()
    local doc = assert(yaml.parse(fixtures.read_vector('atlas/vllm_docker_compose.yml')))
    assert.same({ 'vllm', 'nginx-cert-manager', 'auth-service', 'attestation-service' },
      yaml.keys(doc.services))
    assert.equal('AUTH_SERVICE_TOKEN=${AUTH_SERVICE_TOKEN}', doc.services['auth-service'].environment[3])
    assert.truthy(doc.services.vllm.command:find('^%-%-model openai/gpt%-oss%-120b %-%-tensor'))
    assert.equal('1h30m', doc.services.vllm.healthcheck.start_interval)
    assert.same({ '80:80', '443:443' }, doc.services['nginx-cert-manager'].ports)
  end)

  it('refuses what it does not understand, naming the line', function()
    local cases = {
      { 'a: &x 1\nb: *x\n', 'line 1: anchors' },
      { 'a: 1\nb: *x\n', 'line 2: aliases' },
      { 'a: !!str 1\n', 'line 1: tags' },
      { 'a:\n  <<: {b: 1}\n', 'line 2: merge keys' },
      { 'a: 1\na: 2\n', 'line 2: duplicate key "a"' },
      { 'a:\n\tb: 1\n', 'line 2: a tab' },
      { 'a: 1\n---\nb: 2\n', 'line 2: only one YAML document' },
      { 'a: plain\n  continued\n', 'line 2: unexpected indentation' },
      { 'a: "open\n', 'line 1: unterminated double-quoted' },
      { 'a: [1, 2\nb: 3\n', 'line 1: unterminated flow sequence' },
      { 'a:\n  b: 1\n c: 2\n', 'line 3:' },
      { '? complex\n', 'line 1: complex keys' },
      { 'a: "\\q"\n', 'line 1: unknown escape' },
      { 'a: b: c\n', 'line 1: a plain scalar holding ": "' },
      { 'just text\n', nil },
    }
    for _, c in ipairs(cases) do
      local v, err, code = yaml.parse(c[1])
      if c[2] then
        assert.is_nil(v, c[1])
        assert.equal('EPARSE', code)
        assert.truthy(err:find(c[2], 1, true), err)
      else
        assert.equal('just text', v)
      end
    end
  end)

  it('bounds its input', function()
    assert.is_nil(yaml.parse(('a: 1\n'):rep(300000)))
    local deep = {}
    for i = 1, 100 do
      deep[#deep + 1] = (' '):rep(i - 1) .. 'k:'
    end
    local v, err = yaml.parse(table.concat(deep, '\n'))
    assert.is_nil(v)
    assert.truthy(err:find('nested too deep', 1, true), err)
    -- an unterminated flow over many lines is refused at once, not re-scanned line by line
    local t0 = os.clock()
    v, err = yaml.parse('a: [\n' .. ('  x,\n'):rep(100000))
    assert.is_nil(v)
    assert.truthy(err:find('line 1: a flow collection over more than 64 lines', 1, true), err)
    assert.truthy(os.clock() - t0 < 2)
  end)
end)

describe('compose.yaml and compose.lint on mutated input', function()
  it('answer (a value or nil, EPARSE/EINVAL) and never raise', function()
    local lint = require('moonstack.compose.lint')
    local seeds = { fixtures.read_vector('atlas/vllm_docker_compose.yml'),
      fixtures.read_vector('derived/atlas-vllm-app-compose.json') }
    local alphabet = ' \n\t:-#[]{},"\'|>&*!?%@`$\\ab1'
    local rng = 0x2545F491
    local function rand(n)
      rng = (rng * 1103515245 + 12345) % 2147483648
      return rng % n + 1
    end
    for round = 1, 800 do
      local s = seeds[round % 2 + 1]
      for _ = 1, rand(4) do
        local at = rand(#s)
        local op = rand(3)
        local k = rand(#alphabet)
        local c = alphabet:sub(k, k)
        if op == 1 then
          s = s:sub(1, at - 1) .. c .. s:sub(at + 1)
        elseif op == 2 then
          s = s:sub(1, at - 1) .. c .. s:sub(at)
        else
          s = s:sub(1, at - 1) .. s:sub(at + rand(8))
        end
      end
      local ok, v, err = pcall(yaml.parse, s)
      assert(ok, v)
      assert(v ~= nil or err:match('^EPARSE: '), err)
      local ok2, r, lerr = pcall(lint.lint, s)
      assert(ok2, r)
      assert(r ~= nil or lerr:match('^E[A-Z]+: '), lerr)
    end
  end)
end)
