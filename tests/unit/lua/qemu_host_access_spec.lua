-- SPDX-License-Identifier: Apache-2.0
-- QEMU guests reaching services on their host's loopback (qemu.host_access, as `moonstack dev
-- up --backend qemu` runs them): the sys-config URLs the qemu backend gives a guest (localhost
-- and 127.x become 10.0.2.2, nothing else changes), the WireGuard endpoint the agent dials for
-- a gateway advertising a loopback endpoint (the host it reached the gateway's RPC at), the
-- VMM and KMS config keys, and the KMS RPC certificate's further SANs.
local qemu_backend = require('moonstack.vmm.backend.qemu')
local agent_gateway = require('moonstack.agent.gateway')
local vmm_config = require('moonstack.vmm.config')
local kms_config = require('moonstack.kms.config')
local profiles = require('moonstack.x509.profiles')
local x509 = require('moonstack.x509')

describe('qemu.host_access: guest URLs', function()
  local g = qemu_backend.guest_url

  it('points loopback URLs at 10.0.2.2 when on', function()
    assert.equal('https://10.0.2.2:8000', g('https://localhost:8000', true))
    assert.equal('https://10.0.2.2:9000/prpc', g('https://127.0.0.1:9000/prpc', true))
    assert.equal('http://10.0.2.2/x', g('http://LOCALHOST/x', true))
    assert.equal('https://10.0.2.2:1', g('https://127.3.2.1:1', true))
  end)

  it('leaves other URLs, and every URL when off, unchanged', function()
    assert.equal('https://kms.example.com:8000', g('https://kms.example.com:8000', true))
    assert.equal('https://10.1.2.3:8000', g('https://10.1.2.3:8000', true))
    assert.equal('https://localhost.example:1', g('https://localhost.example:1', true))
    assert.equal('https://localhost:8000', g('https://localhost:8000', false))
    assert.equal('https://localhost:8000', g('https://localhost:8000', nil))
  end)

  it('is a VMM config key, off by default', function()
    local cfg = assert(vmm_config.validate({ backend = 'qemu' }))
    assert.is_false(cfg.qemu.host_access)
    cfg = assert(vmm_config.validate({ backend = 'qemu', qemu = { host_access = true } }))
    assert.is_true(cfg.qemu.host_access)
    local bad, err = vmm_config.validate({ qemu = { host_access = 'yes' } })
    assert.is_nil(bad)
    assert.matches('host_access', err)
  end)
end)

describe('the agent: WireGuard endpoint of a gateway on its host\'s loopback', function()
  local e = agent_gateway.endpoint_for

  it('dials the host the gateway RPC was reached at', function()
    assert.equal('10.0.2.2:51820', e('127.0.0.1:51820', 'https://10.0.2.2:8011'))
    assert.equal('10.0.2.2:51820', e('localhost:51820', 'https://10.0.2.2:8011/prpc'))
    assert.equal('gw.example:51820', e('[::1]:51820', 'https://gw.example'))
    assert.equal('[fd00::2]:7', e('127.0.0.1:7', 'https://[fd00::2]:8011'))
  end)

  it('keeps any other endpoint, and every endpoint reached through a loopback URL', function()
    assert.equal('203.0.113.5:51820', e('203.0.113.5:51820', 'https://10.0.2.2:8011'))
    assert.equal('127.0.0.1:51820', e('127.0.0.1:51820', 'https://localhost:8011'))
    assert.equal('127.0.0.1:51820', e('127.0.0.1:51820', 'https://127.0.0.1:8011'))
    assert.equal('127.0.0.1:51820', e('127.0.0.1:51820', nil))
  end)
end)

describe('the KMS RPC certificate: alt_names', function()
  it('is a config key (a list of names), empty by default', function()
    local cfg = assert(kms_config.validate({ auth = { kind = 'dev' } }))
    assert.same({}, cfg.alt_names)
    cfg = assert(kms_config.validate({ auth = { kind = 'dev' }, alt_names = { '10.0.2.2' } }))
    assert.same({ '10.0.2.2' }, cfg.alt_names)
    assert.is_nil((kms_config.validate({ auth = { kind = 'dev' }, alt_names = { 3 } })))
  end)

  it('adds the names (IPs as iPAddress) after the domain', function()
    local root_key = x509.generate_key()
    local root = assert(x509.issue({ subject = 'root', key = root_key, ca = { pathlen = 1 } }))
    local cert = assert(profiles.kms_rpc_cert({ key = x509.generate_key(), domain = 'localhost',
      alt_names = { 'localhost', '10.0.2.2', 'kms.test' }, ca = { cert = root, key = root_key } }))
    local info = cert:info()
    assert.same({ 'localhost', 'kms.test' }, info.dns)
    assert.same({ '10.0.2.2' }, info.ips)
  end)
end)
