-- SPDX-License-Identifier: Apache-2.0
-- `moonstack audit --policy FILE [--config FILE ...]`: Atlas's production checklist as checks
-- (moonstack.verifier.audit) over a verifier policy (Atlas's JSON or ours) and the deployment's
-- configs, each loaded the way its daemon loads it (the service's config module; nothing is
-- started), plus the modes of the secret paths they name and the running processes' command
-- lines. Exit 0 clean, 1 findings, 2 usage error or a file that does not load.
local args = require('moonstack.core.args')
local audit = require('moonstack.verifier.audit')
local config = require('moonstack.core.config')
local json = require('moonstack.core.json')

local PROG = 'moonstack audit'

local spec = {
  usage = 'moonstack audit [--policy FILE] [--config [KIND:]FILE ...] [--proc DIR | --no-proc] '
    .. '[--json]',
  summary = "check a policy and the deployment's configs against Atlas's production checklist",
  description = table.concat({
    'The policy (JSON as Atlas writes it, or a Lua file returning our verifier policy):',
    'Revoked or OutOfDate TCB statuses without a grace period, disable_runtime_verification,',
    'a missing expected_bootchain / os_image_hash / app_compose, simulator or debug TDs.',
    'Each config is loaded by its daemon\'s loader; its kind comes from the file name',
    '(kms*, gateway*, vmm*, verifier*, agent*; *proxy* or *.env: an aTLS proxy, Lua, JSON or',
    'KEY=VALUE lines with ATLS_PROXY_ALLOWLIST/LISTEN/USER) or KIND:FILE. Checked: plain',
    'http:// and ws:// URLs to non-loopback hosts, admin listeners without auth, open proxy',
    'allowlists, a proxy running as root, key files, token files and sockets others can read',
    '(mode & 0077), secrets on command lines (config args and the running processes).',
    'Each finding names the file and the key. Exit 0 clean, 1 findings, 2 usage error.',
  }, '\n'),
  options = {
    { '--policy', arg = 'FILE', help = 'the verifier policy (Atlas JSON or a Lua file)' },
    { '--config', arg = '[KIND:]FILE', multiple = true,
      help = 'a daemon config (kms gateway vmm verifier agent proxy)' },
    { '--proc', arg = 'DIR', help = 'where to scan processes', default = '/proc' },
    { '--no-proc', help = 'do not scan the running processes' },
    { '--json', help = 'print the findings as one JSON object' },
  },
}

local KINDS = { 'kms', 'gateway', 'vmm', 'verifier', 'agent', 'proxy' }
local LOADERS = {
  kms = function(p) return require('moonstack.kms.config').load(p) end,
  gateway = function(p) return require('moonstack.gateway.config').load(p) end,
  vmm = function(p) return require('moonstack.vmm.config').load(p) end,
  agent = function(p) return require('moonstack.agent.config').load(p) end,
  verifier = function(p) return require('moonstack.verifier.service').load_config(p) end,
}

local function read(path)
  local f, err = io.open(path, 'rb')
  if not f then
    return nil, err
  end
  local s = f:read('*a')
  f:close()
  return s
end

-- An aTLS proxy's settings: KEY=VALUE lines (an env file), a JSON object or a Lua table.
function LOADERS.proxy(path)
  local text, err = read(path)
  if not text then
    return nil, err
  end
  local first = text:match('^%s*(%S)')
  if first == '{' then
    local v, jerr = json.decode(text)
    if type(v) ~= 'table' then
      return nil, ('%s: not a JSON object: %s'):format(path, tostring(jerr))
    end
    return v
  end
  if not text:find('return', 1, true) then
    local env = {}
    for line in text:gmatch('[^\n]+') do
      local k, v = line:match('^%s*export%s+([%w_]+)=(.*)$')
      if not k then
        k, v = line:match('^%s*([%w_]+)=(.*)$')
      end
      if k then
        env[k] = v:gsub('^"(.*)"$', '%1'):gsub("^'(.*)'$", '%1')
      end
    end
    return env
  end
  return config.load(path)
end

local function kind_of(arg)
  local k, path = arg:match('^(%a+):(.+)$')
  if k and LOADERS[k] then
    return k, path
  end
  local base = arg:match('([^/]*)$'):lower()
  if base:find('proxy', 1, true) or base:find('atls', 1, true) or base:match('%.env$') then
    return 'proxy', arg
  end
  for _, kind in ipairs(KINDS) do
    if base:sub(1, #kind) == kind then
      return kind, arg
    end
  end
  return nil, arg
end

local function load_policy(path)
  local text, err = read(path)
  if not text then
    return nil, err
  end
  if text:match('^%s*{') then
    local v, jerr = json.decode(text)
    if v == nil then
      return nil, ('%s: not JSON: %s'):format(path, tostring(jerr))
    end
    return v
  end
  return config.load(path)
end

local function print_text(out, findings, checked)
  for _, f in ipairs(findings) do
    out:write(('%-7s %s: %s: %s [%s]\n        fix: %s\n'):format(f.severity, f.file, f.key,
      f.message, f.id, f.fix))
  end
  local n = { error = 0, warning = 0 }
  for _, f in ipairs(findings) do
    n[f.severity] = n[f.severity] + 1
  end
  out:write(('%d error(s), %d warning(s) in %s\n'):format(n.error, n.warning,
    table.concat(checked, ', ')))
end

local function run(argv)
  local opts, code = args.parse_command(PROG, spec, argv)
  if not opts then
    return code
  end
  local configs_args = opts.config or {}
  if type(configs_args) == 'string' then
    configs_args = { configs_args }
  end
  if not opts.policy and #configs_args == 0 then
    io.stderr:write(PROG, ': give --policy FILE and/or --config FILE (see --help)\n')
    return 2
  end
  local checked, input = {}, { configs = {} }
  if opts.policy then
    local v, err = load_policy(opts.policy)
    if v == nil then
      io.stderr:write(PROG, ': policy ', tostring(err), '\n')
      return 2
    end
    input.policy = { file = opts.policy, value = v }
    checked[#checked + 1] = opts.policy .. ' (policy)'
  end
  for _, a in ipairs(configs_args) do
    local kind, path = kind_of(a)
    if not kind then
      io.stderr:write(PROG, ': ', a, ': which daemon? name it KIND:FILE (',
        table.concat(KINDS, ', '), ')\n')
      return 2
    end
    local cfg, err = LOADERS[kind](path)
    if not cfg then
      io.stderr:write(PROG, ': ', path, ' (', kind, '): ', tostring(err), '\n')
      return 2
    end
    input.configs[#input.configs + 1] = { file = path, kind = kind, cfg = cfg,
      dir = config.dir_of(path) }
    checked[#checked + 1] = ('%s (%s)'):format(path, kind)
  end
  input.proc = not opts.no_proc and opts.proc
  local findings = audit.run(input)
  if opts.json then
    local n = { error = 0, warning = 0 }
    for _, f in ipairs(findings) do
      n[f.severity] = n[f.severity] + 1
    end
    io.stdout:write(json.encode({ ok = #findings == 0, findings = json.array(findings),
      errors = n.error, warnings = n.warning, checked = json.array(checked) }), '\n')
  else
    print_text(io.stdout, findings, checked)
  end
  return #findings == 0 and 0 or 1
end

return {
  name = 'audit',
  summary = spec.summary,
  run = run,
}
