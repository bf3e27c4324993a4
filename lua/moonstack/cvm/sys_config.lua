-- SPDX-License-Identifier: Apache-2.0
-- The host's description of a CVM, as the VMM writes it into the shared folder at every start
-- (kms-vmm-gateway.md §4.5): `.sys-config.json` (kms_urls, gateway_urls, pccs_url,
-- docker_registry, host_api_url, vm_config as a JSON string, optional mr_config) and
-- `vm_config` (dstack-types VmConfig, in upstream's field order: the verifier caches
-- measurements per H256 of these bytes, so the order and the omissions are part of the format).
-- The agent reads both (moonstack.cvm.shared_folder); the KMS reads vm_config's os_image_hash.
local json = require('moonstack.core.json')

local M = {}

-- JSON of an ordered list of { key, value } pairs (nil values are left out; json.null stays).
local function ordered(pairs_list)
  local parts = {}
  for _, kv in ipairs(pairs_list) do
    if kv[2] ~= nil then
      parts[#parts + 1] = json.encode(kv[1]) .. ':' .. json.encode(kv[2])
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- A list as a JSON array (empty too).
local function array(t)
  local out = json.array()
  for i, v in ipairs(t or {}) do
    out[i] = v
  end
  return out
end

--- The vm_config JSON string of a VM. opts = { os_image_hash = hex ('' when the image has no
--- digest), cpu_count, memory_mb, image = name, hugepages = false, num_gpus = 0,
--- num_nvswitches = 0, num_nics = 1, num_verity_volumes = 0, hotplug_off = false,
--- pci_hole64_size = 0, host_share_mode = '9p', qemu_version?, tdx_attestation_variant? }.
function M.vm_config(opts)
  return ordered({
    { 'os_image_hash', opts.os_image_hash or '' },
    { 'cpu_count', opts.cpu_count or 1 },
    { 'memory_size', (opts.memory_mb or 0) * 1048576 },
    { 'qemu_version', opts.qemu_version },
    { 'pci_hole64_size', opts.pci_hole64_size or 0 },
    { 'hugepages', opts.hugepages == true },
    { 'num_gpus', opts.num_gpus or 0 },
    { 'num_nvswitches', opts.num_nvswitches or 0 },
    { 'num_nics', (opts.num_nics or 1) ~= 1 and opts.num_nics or nil },
    { 'num_verity_volumes', (opts.num_verity_volumes or 0) ~= 0 and opts.num_verity_volumes or nil },
    { 'hotplug_off', opts.hotplug_off == true },
    { 'image', opts.image or '' },
    { 'host_share_mode', opts.host_share_mode or '9p' },
    { 'tdx_attestation_variant', opts.tdx_attestation_variant ~= 'legacy'
      and opts.tdx_attestation_variant or nil },
    { 'spec_version', 1 },
  })
end

--- The .sys-config.json text. opts = { kms_urls = {}, gateway_urls = {}, pccs_url = '',
--- docker_registry = '', host_api_url, vm_config = the string of vm_config(), mr_config =
--- document string?, nvidia_attestation_proxy_url? }.
function M.build(opts)
  local pccs = opts.pccs_url or ''
  return ordered({
    { 'kms_urls', array(opts.kms_urls) },
    { 'gateway_urls', array(opts.gateway_urls) },
    { 'pccs_url', pccs },
    { 'collateral_urls', { pccs = pccs } },
    { 'nvidia_attestation_proxy_url', opts.nvidia_attestation_proxy_url or json.null },
    { 'docker_registry', opts.docker_registry or '' },
    { 'host_api_url', opts.host_api_url or '' },
    { 'vm_config', opts.vm_config or '' },
    { 'mr_config', opts.mr_config },
  })
end

return M
