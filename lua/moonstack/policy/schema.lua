-- SPDX-License-Identifier: Apache-2.0
-- The shapes of operator policies, as data: the fields a policy table may have, the hooks it
-- may define and the decision each hook must return, and the shape of its self-tests.
-- Components that consult a new hook register it with add_hook(); everything else reads
-- these tables, so validation stays table-driven.
local M = {}

--- Decision field specs per hook: { type = 'boolean'|'string'|'number', required = bool,
--- max_len = n (strings) }. Unknown decision fields are refused (they are usually typos).
M.hooks = {
  on_auth = {
    summary = 'KMS: may the CVM described by this BootInfo get its keys?',
    decision = {
      allow = { type = 'boolean', required = true },
      reason = { type = 'string', max_len = 1024 },
      gateway_app_id = { type = 'string', max_len = 256 },
    },
  },
  on_kms_auth = {
    summary = 'KMS: may the KMS described by this BootInfo (self-check, onboarding peer) run?',
    decision = {
      allow = { type = 'boolean', required = true },
      reason = { type = 'string', max_len = 1024 },
    },
  },
  on_route = {
    summary = 'gateway: may this route (app or instance, port) be used, to which backend port, '
      .. 'with a PROXY header?',
    decision = {
      allow = { type = 'boolean', required = true },
      reason = { type = 'string', max_len = 1024 },
      backend = { type = 'string', max_len = 256 },
      to_port = { type = 'number' }, -- another backend port (1..65535) on the instance
      pp = { type = 'boolean' }, -- send (true) or not (false) a PROXY v2 header; nil: port policy
    },
  },
}

--- Fields of the policy table other than hooks. `types` lists the accepted Lua types.
M.fields = {
  name = { types = { string = true }, required = true, max_len = 128 },
  version = { types = { string = true, number = true }, required = true, max_len = 64 },
  description = { types = { string = true }, max_len = 4096 },
  tests = { types = { table = true } },
}

--- Keys a test case may have: { name?, hook, input?, expect }.
M.test_fields = {
  name = 'string',
  hook = 'string',
  input = 'table',
  expect = 'table',
}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = tostring(k)
  end
  table.sort(keys)
  return keys
end

--- Register a hook and the decision it returns (see M.hooks for the spec format).
---@param name string hook name, 'on_<something>'
---@param spec table { summary = string, decision = { field = fieldspec, ... } }
function M.add_hook(name, spec)
  if type(name) ~= 'string' or not name:match('^on_[%w_]+$') then
    error(("schema.add_hook: hook name must look like 'on_x', got %s"):format(tostring(name)), 2)
  end
  if M.hooks[name] then
    error(("schema.add_hook: hook '%s' is already registered"):format(name), 2)
  end
  if type(spec) ~= 'table' or type(spec.decision) ~= 'table' then
    error('schema.add_hook: spec must be a table with a decision table', 2)
  end
  for field, fs in pairs(spec.decision) do
    if type(fs) ~= 'table' or (fs.type ~= 'boolean' and fs.type ~= 'string' and fs.type ~= 'number') then
      error(("schema.add_hook: decision field '%s' needs type boolean, string or number"):format(
        tostring(field)), 2)
    end
  end
  M.hooks[name] = spec
end

--- The names of the registered hooks, sorted.
function M.hook_names()
  return sorted_keys(M.hooks)
end

local function check_string(value, max_len, what)
  if max_len and #value > max_len then
    return nil, ('%s is longer than %d bytes'):format(what, max_len)
  end
  if value:find('[%z\1-\8\11\12\14-\31\127]') then
    return nil, ('%s contains control characters'):format(what)
  end
  return true
end

--- Check a decision returned by `hook`. Returns true, or nil and a message naming the field.
function M.check_decision(hook, decision)
  local spec = M.hooks[hook]
  if not spec then
    return nil, ("unknown hook '%s'"):format(tostring(hook))
  end
  if type(decision) ~= 'table' then
    return nil, ('%s must return a table, not %s'):format(hook, type(decision))
  end
  for key, value in pairs(decision) do
    local fs = spec.decision[key]
    if not fs then
      return nil, ("%s decision has unknown field '%s' (known: %s)"):format(hook, tostring(key),
        table.concat(sorted_keys(spec.decision), ', '))
    end
    if type(value) ~= fs.type then
      return nil, ('%s decision field %s must be a %s, not %s'):format(hook, key, fs.type, type(value))
    end
    if fs.type == 'string' then
      local ok, err = check_string(value, fs.max_len, ('%s decision field %s'):format(hook, key))
      if not ok then
        return nil, err
      end
    end
  end
  for key, fs in pairs(spec.decision) do
    if fs.required and decision[key] == nil then
      return nil, ('%s decision is missing the required field %s'):format(hook, key)
    end
  end
  return true
end

local function check_tests(tests, hooks)
  local n = 0
  for k in pairs(tests) do
    n = n + 1
    if type(k) ~= 'number' or k < 1 or k % 1 ~= 0 then
      return nil, ("tests must be a list of test cases (unexpected key '%s')"):format(tostring(k))
    end
  end
  if n ~= #tests then
    return nil, 'tests must be a list without holes'
  end
  for i, case in ipairs(tests) do
    local where = ('tests[%d]'):format(i)
    if type(case) ~= 'table' then
      return nil, ('%s must be a table, not %s'):format(where, type(case))
    end
    for key, value in pairs(case) do
      local want = M.test_fields[key]
      if not want then
        return nil, ("%s has unknown field '%s' (known: %s)"):format(where, tostring(key),
          table.concat(sorted_keys(M.test_fields), ', '))
      end
      if type(value) ~= want then
        return nil, ('%s.%s must be a %s, not %s'):format(where, key, want, type(value))
      end
    end
    if case.hook == nil then
      return nil, ('%s.hook is required'):format(where)
    end
    if not hooks[case.hook] then
      return nil, ("%s.hook '%s' is not a hook of this policy"):format(where, case.hook)
    end
    if case.expect == nil then
      return nil, ('%s.expect is required'):format(where)
    end
    local decision = M.hooks[case.hook].decision
    for key, value in pairs(case.expect) do
      local fs = decision[key]
      if not fs then
        return nil, ("%s.expect has unknown field '%s' for %s"):format(where, tostring(key), case.hook)
      end
      if type(value) ~= fs.type then
        return nil, ('%s.expect.%s must be a %s, not %s'):format(where, key, fs.type, type(value))
      end
    end
  end
  return true
end

--- Check a loaded policy's description `info` = { fields = {...}, hooks = { name = true } }
--- (what the policy VM reports). `required` optionally lists hooks the policy must define.
--- Returns true, or nil and a message naming the field.
function M.check_policy(info, required)
  local fields, hooks = info.fields or {}, info.hooks or {}
  for name in pairs(hooks) do
    if not M.hooks[name] then
      if M.fields[name] then
        return nil, ('policy field %s must not be a function'):format(name)
      end
      return nil, ("policy has unknown hook '%s' (known: %s)"):format(name,
        table.concat(M.hook_names(), ', '))
    end
  end
  for key, value in pairs(fields) do
    local fs = M.fields[key]
    if not fs then
      if M.hooks[key] then
        return nil, ('policy field %s must be a function, not %s'):format(tostring(key), type(value))
      end
      return nil, ("policy has unknown field '%s' (known: %s, and hooks %s)"):format(tostring(key),
        table.concat(sorted_keys(M.fields), ', '), table.concat(M.hook_names(), ', '))
    end
    if not fs.types[type(value)] then
      return nil, ('policy field %s must be a %s, not %s'):format(key,
        table.concat(sorted_keys(fs.types), ' or '), type(value))
    end
    if type(value) == 'string' then
      if value == '' then
        return nil, ('policy field %s must not be empty'):format(key)
      end
      local ok, err = check_string(value, fs.max_len, 'policy field ' .. key)
      if not ok then
        return nil, err
      end
    end
  end
  for key, fs in pairs(M.fields) do
    if fs.required and fields[key] == nil then
      return nil, ('policy is missing the required field %s'):format(key)
    end
  end
  if next(hooks) == nil then
    return nil, ('policy defines no hook (one of: %s)'):format(table.concat(M.hook_names(), ', '))
  end
  for _, name in ipairs(required or {}) do
    if not hooks[name] then
      return nil, ('policy must define the hook %s'):format(name)
    end
  end
  if fields.tests ~= nil then
    return check_tests(fields.tests, hooks)
  end
  return true
end

return M
