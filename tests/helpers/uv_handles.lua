-- SPDX-License-Identifier: Apache-2.0
-- Test helper: count the libuv handles alive on the runtime's loop, including handles luv did
-- not create (libwebsockets', the runtime's own). luv's uv.walk assumes every handle is a luv
-- handle and crashes on the others, so this walks the loop through the FFI instead.
local ffi = require('ffi')

local M = {}

ffi.cdef([[
typedef struct uv_loop_s uv_loop_t;
typedef struct uv_handle_s uv_handle_t;
typedef void (*moonstack_test_walk_cb)(uv_handle_t *h, void *arg);
void uv_walk(uv_loop_t *loop, moonstack_test_walk_cb cb, void *arg);
int uv_is_closing(const uv_handle_t *h);
int uv_handle_get_type(const uv_handle_t *h);
const char *uv_handle_type_name(int type);
typedef struct { uv_loop_t *loop; } moonstack_test_luv_ctx;
]])

local collected
-- One callback for the process: it only appends to `collected`.
local walk_cb = ffi.cast('moonstack_test_walk_cb', function(h)
  if ffi.C.uv_is_closing(h) == 0 then
    collected[#collected + 1] = h
  end
end)

local function the_loop()
  local ctx = debug.getregistry().luv_context
  assert(ctx, 'uv_handles: luv has no context in this state')
  return ffi.cast('moonstack_test_luv_ctx *', ctx).loop
end

-- The uv_handle_t of a luv handle object (luv's userdata holds a pointer to it).
local function raw_handle(h)
  return ffi.cast('void **', h)[0]
end

--- Every handle on the loop that is not closing: a list of { ptr, type } (type: 'tcp',
--- 'timer', ...), leaving out the luv handle objects in the set `except`.
function M.list(except)
  collected = {}
  ffi.C.uv_walk(the_loop(), walk_cb, nil)
  local skip = {}
  for h in pairs(except or {}) do
    skip[tostring(ffi.cast('void *', raw_handle(h)))] = true
  end
  local out = {}
  for _, h in ipairs(collected) do
    local key = tostring(ffi.cast('void *', h))
    if not skip[key] then
      out[#out + 1] = { ptr = key, type = ffi.string(ffi.C.uv_handle_type_name(ffi.C.uv_handle_get_type(h))) }
    end
  end
  collected = nil
  return out
end
-- uv_walk calls back into Lua: keep it out of compiled traces.
jit.off(M.list)

--- Number of live handles (see list()).
function M.count(except)
  return #M.list(except)
end

--- A short description such as "tcp, timer, timer", for assertion messages.
function M.describe(except)
  local types = {}
  for _, h in ipairs(M.list(except)) do
    types[#types + 1] = h.type
  end
  table.sort(types)
  return table.concat(types, ', ')
end

return M
