-- SPDX-License-Identifier: Apache-2.0
-- The house rules of lua/moonstack (ARCHITECTURE.md, DESIGN.md §3.1), checked on the source:
--   * a module requires only its own layer or lower (0 core, 1 platform, 2 domain, 3 services,
--     4 entry); every top-level folder must be on the map (an unmapped one is an error);
--   * a service reaches another service only through that service's `client` module;
--   * every service folder has the service shape: init.lua, api.lua (or api/init.lua),
--     repl.lua, and client.lua when another service uses it.
-- Requires are found in every form: require('x'), require 'x', require "x",
-- pcall(require, 'x'), and module names registered for lazy loading (a string literal
-- 'moonstack.<folder>...' passed to any call), so a dynamic load cannot hide an edge.
-- usage: luajit scripts/check-layers.lua LUA_ROOT   (a line per violation, then a summary;
-- exit 1 when there is any)
local root = assert(arg[1], 'usage: check-layers.lua LUA_ROOT')

local LAYER = {
  core = 0,
  crypto = 1, x509 = 1, tdx = 1, sim = 1, dcap = 1, http = 1, control = 1, policy = 1,
  daemon = 1, netns = 1, wg = 1, qemu = 1, proxy = 1, channel = 1, eth = 1, acme = 1, etcd = 1,
  verifier = 2, cvm = 2, ui = 2, compose = 2, mr = 2, atls = 2,
  agent = 3, kms = 3, vmm = 3, gateway = 3,
  commands = 4, cli = 4, devstack = 4,
}
local NAMES = { [0] = 'core', 'platform', 'domain', 'services', 'entry' }
local SHAPE = { 'init', 'api', 'repl' }

local function top_of(mod)
  return mod:match('^moonstack%.([%w_]+)')
end

-- Strip comments (so documentation naming a module is not an edge), keep strings.
local function code_of(src)
  src = src:gsub('%-%-%[(=*)%[.-%]%1%]', '')
  return (src:gsub('%-%-[^\n]*', ''))
end

local problems, files, edges = {}, 0, 0
local function problem(fmt, ...)
  problems[#problems + 1] = fmt:format(...)
end

local modules, used = {}, {} -- module name -> path; service -> { [user service] = dep }
local p = assert(io.popen('cd "' .. root .. '" && find moonstack -name "*.lua" | sort'))
for path in p:lines() do
  modules[path:gsub('%.lua$', ''):gsub('/init$', ''):gsub('/', '.')] = path
end
p:close()

for me, path in pairs(modules) do
  files = files + 1
  local mytop = top_of(me)
  local f = assert(io.open(root .. '/' .. path))
  local src = code_of(f:read('*a'))
  f:close()
  if mytop and LAYER[mytop] == nil then
    problem('%s: folder %s is not on the layer map (ARCHITECTURE.md)', path, mytop)
  end
  local seen = {}
  for dep in src:gmatch("['\"](moonstack%.[%w_%.]+)['\"]") do
    local dtop = top_of(dep)
    if not seen[dep] and dtop and dtop ~= mytop then
      seen[dep] = true
      if dtop ~= 'native' then
        edges = edges + 1
        local a, b = LAYER[mytop], LAYER[dtop]
        if b == nil then
          problem('%s names %s: folder %s is not on the layer map', path, dep, dtop)
        elseif a and b > a then
          problem('%s (layer %d %s) requires %s (layer %d %s)', path, a, NAMES[a], dep, b, NAMES[b])
        elseif a == 3 and b == 3 then
          if dep ~= 'moonstack.' .. dtop .. '.client' then
            problem('%s: service %s reaches into service %s (only moonstack.%s.client may be used)',
              path, mytop, dep, dtop)
          end
          used[dtop] = used[dtop] or {}
          used[dtop][mytop] = dep
        end
      end
    end
  end
end

local folders = {}
for name in pairs(modules) do
  folders[top_of(name) or ''] = true
end
for svc, layer in pairs(LAYER) do
  if layer == 3 and folders[svc] then
    for _, part in ipairs(SHAPE) do
      local name = part == 'init' and 'moonstack.' .. svc or 'moonstack.' .. svc .. '.' .. part
      if not modules[name] then
        problem('service %s has no %s.lua (the service shape: init, api, repl, client)', svc, part)
      end
    end
  end
end
for svc, users in pairs(used) do
  for user in pairs(users) do
    if not modules['moonstack.' .. svc .. '.client'] then
      problem('service %s uses service %s, which has no client.lua', user, svc)
    end
  end
end

table.sort(problems)
for _, l in ipairs(problems) do
  print(l)
end
print(('%d files, %d cross-folder requires, %d problems'):format(files, edges, #problems))
os.exit(#problems == 0 and 0 or 1)
