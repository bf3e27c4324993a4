-- SPDX-License-Identifier: Apache-2.0
-- The VMM's pRPC messages (upstream vmm_rpc.proto, package vmm, field numbers kept; uint32 is
-- carried as uint64, the same varint) and the host API's (host_api.proto), as schemas of
-- moonstack.core.proto: { number, name, type [, omit_empty] [, optional] [, schema] }.
local M = {}

local function opt(f)
  f.optional = true
  return f
end

M.Empty = {}
M.Id = { { 1, 'id', 'string' } }
M.ComposeHash = { { 1, 'hash', 'string' } }
M.PortMapping = { { 1, 'protocol', 'string' }, { 2, 'host_port', 'uint64' },
  { 3, 'vm_port', 'uint64' }, { 4, 'host_address', 'string' } }
M.GpuSpec = { { 1, 'slot', 'string' } }
M.GpuConfig = { { 1, 'gpus', 'message*', schema = M.GpuSpec }, { 2, 'attach_mode', 'string' } }
M.NetworkingConfig = { { 1, 'mode', 'string' }, { 2, 'bridge_name', 'string' } }
M.VmConfiguration = { { 1, 'name', 'string' }, { 2, 'image', 'string' },
  { 3, 'compose_file', 'string' }, { 4, 'vcpu', 'uint64' }, { 5, 'memory', 'uint64' },
  { 6, 'disk_size', 'uint64' }, { 7, 'ports', 'message*', schema = M.PortMapping },
  { 8, 'encrypted_env', 'bytes' }, opt({ 9, 'app_id', 'string', omit_empty = true }),
  { 10, 'user_config', 'string' }, { 11, 'hugepages', 'bool' }, { 12, 'pin_numa', 'bool' },
  { 13, 'gpus', 'message', schema = M.GpuConfig }, { 14, 'kms_urls', 'string*' },
  { 15, 'gateway_urls', 'string*' }, { 16, 'stopped', 'bool' }, { 17, 'no_tee', 'bool' },
  { 18, 'networking', 'message', schema = M.NetworkingConfig },
  { 19, 'networks', 'message*', schema = M.NetworkingConfig },
  opt({ 21, 'simulated_tee', 'string', omit_empty = true }) }
M.GuestEvent = { { 1, 'event', 'string' }, { 2, 'body', 'string' }, { 3, 'timestamp', 'uint64' } }
M.NetworkInterfaceStatus = { { 1, 'mode', 'string' }, { 2, 'backend', 'string' },
  { 3, 'mac', 'string' }, opt({ 4, 'bridge_name', 'string', omit_empty = true }),
  opt({ 5, 'netdev_id', 'string', omit_empty = true }) }
M.VmInfo = { { 1, 'id', 'string' }, { 2, 'name', 'string' }, { 3, 'status', 'string' },
  { 4, 'uptime', 'string' }, opt({ 5, 'app_url', 'string', omit_empty = true }),
  { 6, 'app_id', 'string' }, opt({ 7, 'instance_id', 'string', omit_empty = true }),
  { 8, 'configuration', 'message', schema = M.VmConfiguration },
  opt({ 9, 'exited_at', 'string', omit_empty = true }), { 10, 'boot_progress', 'string' },
  { 11, 'boot_error', 'string' }, { 12, 'shutdown_progress', 'string' },
  { 13, 'image_version', 'string' }, { 14, 'events', 'message*', schema = M.GuestEvent },
  { 15, 'interfaces', 'message*', schema = M.NetworkInterfaceStatus } }
M.StatusRequest = { { 1, 'ids', 'string*' }, { 2, 'brief', 'bool' }, { 3, 'keyword', 'string' },
  { 4, 'page', 'uint64' }, { 5, 'page_size', 'uint64' } }
M.StatusResponse = { { 1, 'vms', 'message*', schema = M.VmInfo },
  { 2, 'port_mapping_enabled', 'bool' }, { 3, 'total', 'uint64' } }
M.ImageInfo = { { 1, 'name', 'string' }, { 2, 'description', 'string' },
  { 3, 'version', 'string' }, { 4, 'is_dev', 'bool' } }
M.ImageListResponse = { { 1, 'images', 'message*', schema = M.ImageInfo } }
M.AppId = { { 1, 'app_id', 'bytes' } }
M.PublicKeyResponse = { { 1, 'public_key', 'bytes' }, { 2, 'signature', 'bytes' },
  { 3, 'timestamp', 'uint64' }, { 4, 'signature_v1', 'bytes' } }
M.GetInfoResponse = { { 1, 'found', 'bool' }, { 2, 'info', 'message', schema = M.VmInfo } }
M.UpdateVmRequest = { { 1, 'id', 'string' }, { 2, 'compose_file', 'string' },
  { 3, 'encrypted_env', 'bytes' }, { 4, 'user_config', 'string' }, { 5, 'update_ports', 'bool' },
  { 7, 'ports', 'message*', schema = M.PortMapping }, { 8, 'update_kms_urls', 'bool' },
  { 9, 'kms_urls', 'string*' }, { 10, 'update_gateway_urls', 'bool' },
  { 11, 'gateway_urls', 'string*' }, { 13, 'gpus', 'message', schema = M.GpuConfig },
  opt({ 14, 'vcpu', 'uint64' }), opt({ 15, 'memory', 'uint64' }), opt({ 16, 'disk_size', 'uint64' }),
  opt({ 17, 'image', 'string' }), opt({ 18, 'no_tee', 'bool' }), { 19, 'update_networking', 'bool' },
  { 20, 'networks', 'message*', schema = M.NetworkingConfig } }
M.ResizeVmRequest = { { 1, 'id', 'string' }, opt({ 2, 'vcpu', 'uint64' }),
  opt({ 3, 'memory', 'uint64' }), opt({ 4, 'disk_size', 'uint64' }), opt({ 5, 'image', 'string' }) }
M.KmsSettings = { { 1, 'url', 'string' }, { 2, 'urls', 'string*' } }
M.GatewaySettings = { { 1, 'url', 'string' }, { 2, 'base_domain', 'string' },
  { 3, 'port', 'uint64' }, { 4, 'agent_port', 'uint64' }, { 5, 'urls', 'string*' } }
M.ResourcesSettings = { { 1, 'max_cvm_number', 'uint64' }, { 2, 'max_allocable_vcpu', 'uint64' },
  { 3, 'max_allocable_memory_in_mb', 'uint64' } }
M.NetworkingCapabilities = { { 1, 'supported_modes', 'string*' }, { 2, 'default_mode', 'string' },
  { 4, 'default_bridge', 'string' } }
M.GetMetaResponse = { { 1, 'kms', 'message', schema = M.KmsSettings },
  { 2, 'gateway', 'message', schema = M.GatewaySettings },
  { 3, 'resources', 'message', schema = M.ResourcesSettings },
  { 4, 'networking', 'message', schema = M.NetworkingCapabilities } }
M.VersionResponse = { { 1, 'version', 'string' }, { 2, 'rev', 'string' } }
M.GpuInfo = { { 1, 'slot', 'string' }, { 2, 'product_id', 'string' },
  { 3, 'description', 'string' }, { 4, 'is_free', 'bool' } }
M.ListGpusResponse = { { 1, 'gpus', 'message*', schema = M.GpuInfo },
  { 2, 'allow_attach_all', 'bool' } }
M.ReloadVmsResponse = { { 1, 'loaded', 'uint64' }, { 2, 'updated', 'uint64' },
  { 3, 'removed', 'uint64' } }
M.SvProcessInfo = { { 1, 'id', 'string' }, { 2, 'name', 'string' }, { 3, 'status', 'string' },
  opt({ 4, 'pid', 'uint64' }), { 5, 'command', 'string' }, { 6, 'note', 'string' } }
M.SvListResponse = { { 1, 'processes', 'message*', schema = M.SvProcessInfo } }

-- host API (guest -> VMM)
M.Notification = { { 1, 'event', 'string' }, { 2, 'payload', 'string' } }
M.HostInfo = { { 1, 'name', 'string' }, { 2, 'version', 'string' } }
M.GetSealingKeyRequest = { { 1, 'quote', 'bytes' } }
M.GetSealingKeyResponse = { { 1, 'encrypted_key', 'bytes' }, { 2, 'provider_quote', 'bytes' } }

return M
