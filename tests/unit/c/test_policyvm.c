/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the policy VM's C API (rt_policyvm.h): limits, text-only loading, the memory
 * cap, the instruction budget, the deadline, deep-copy limits and the read-only sandbox. A
 * plain LuaJIT state plays the host.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lualib.h>

#include "rt_policyvm.h"

struct fixture {
	lua_State *L;	    /* the host state */
	struct rt_pvm *vm;  /* a VM with default limits */
	char printed[2048]; /* what the policy printed, one line per \n */
	int lines;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->L = luaL_newstate();
	luaL_openlibs(f->L);
	f->vm = rt_pvm_create(NULL);
	assert_non_null(f->vm);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	rt_pvm_destroy(f->vm);
	lua_close(f->L);
	free(f);
	return 0;
}

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Load a policy whose single hook `on_test(input)` has @p body; returns the status. */
static int load_hook(struct rt_pvm *vm, const char *body)
{
	char src[2048];
	snprintf(src, sizeof(src),
		 "return { name = 't', version = 1, on_test = function(input)\n%s\nend }", body);
	return rt_pvm_load(vm, src, strlen(src), "@test.lua");
}

/* Evaluate @p expr in the host state and leave it on the stack. */
static void host_eval(lua_State *L, const char *expr)
{
	char src[1024];
	snprintf(src, sizeof(src), "return %s", expr);
	assert_int_equal(luaL_loadstring(L, src), 0);
	assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
}

static void test_defaults(void **state)
{
	struct fixture *f = *state;
	struct rt_pvm_limits l;

	rt_pvm_get_limits(f->vm, &l);
	assert_int_equal(l.memory_limit, RT_PVM_DEFAULT_MEMORY);
	assert_int_equal(l.instruction_limit, RT_PVM_DEFAULT_INSTRUCTIONS);
	assert_int_equal(l.time_limit_ms, RT_PVM_DEFAULT_TIME_MS);
	assert_int_equal(l.max_depth, RT_PVM_DEFAULT_DEPTH);
	assert_int_equal(l.max_items, RT_PVM_DEFAULT_ITEMS);
	assert_int_equal(l.max_string, RT_PVM_DEFAULT_STRING);
	// The bare sandbox is small, and fits under the smallest cap.
	assert_true(rt_pvm_memory(f->vm) > 0);
	assert_true(rt_pvm_memory(f->vm) < RT_PVM_MIN_MEMORY);
	assert_false(rt_pvm_loaded(f->vm));

	struct rt_pvm_limits tiny = { .memory_limit = 1, .max_depth = 1000 };
	struct rt_pvm *vm = rt_pvm_create(&tiny);
	assert_non_null(vm);
	rt_pvm_get_limits(vm, &l);
	assert_int_equal(l.memory_limit, RT_PVM_MIN_MEMORY);
	assert_int_equal(l.max_depth, RT_PVM_MAX_DEPTH);
	rt_pvm_destroy(vm);
	rt_pvm_destroy(NULL);

	assert_string_equal(rt_pvm_status_code(RT_PVM_OK), "OK");
	assert_string_equal(rt_pvm_status_code(RT_PVM_EPOLICY), "EPOLICY");
	assert_string_equal(rt_pvm_status_code(RT_PVM_ETIMEDOUT), "ETIMEDOUT");
	assert_string_equal(rt_pvm_status_code(RT_PVM_ENOMEM), "ENOMEM");
	assert_string_equal(rt_pvm_status_code(RT_PVM_EINVAL), "EINVAL");
	assert_string_equal(rt_pvm_status_code(RT_PVM_ENOENT), "ENOENT");
}

static void test_load_and_call(void **state)
{
	struct fixture *f = *state;
	lua_State *L = f->L;

	assert_int_equal(load_hook(f->vm, "return { allow = input.n > 1, got = input.s .. '!', "
					  "nested = { input.list[2] } }"),
			 RT_PVM_OK);
	assert_true(rt_pvm_loaded(f->vm));
	assert_true(rt_pvm_has_hook(f->vm, "on_test"));
	assert_false(rt_pvm_has_hook(f->vm, "on_other"));
	assert_false(rt_pvm_has_hook(f->vm, "name")); // not a function

	host_eval(L, "{ n = 2, s = 'hi', list = { 'a', 'b' } }");
	int top = lua_gettop(L);
	assert_int_equal(rt_pvm_call(f->vm, "on_test", L, -1, L), RT_PVM_OK);
	assert_int_equal(lua_gettop(L), top + 1);
	lua_getfield(L, -1, "allow");
	assert_true(lua_toboolean(L, -1));
	lua_getfield(L, -2, "got");
	assert_string_equal(lua_tostring(L, -1), "hi!");
	lua_getfield(L, -3, "nested");
	lua_rawgeti(L, -1, 1);
	assert_string_equal(lua_tostring(L, -1), "b");
	lua_settop(L, 0);

	// idx 0 passes an empty table
	assert_int_equal(rt_pvm_call(f->vm, "on_test", L, 0, L), RT_PVM_EPOLICY);
	assert_non_null(strstr(rt_pvm_error(f->vm), "test.lua:2:"));
	assert_int_equal(lua_gettop(L), 0);

	assert_int_equal(rt_pvm_call(f->vm, "on_missing", L, 0, L), RT_PVM_ENOENT);
	assert_non_null(strstr(rt_pvm_error(f->vm), "on_missing"));

	// One VM, one policy.
	assert_int_equal(load_hook(f->vm, "return {}"), RT_PVM_EINVAL);
	rt_pvm_unload(f->vm);
	assert_false(rt_pvm_loaded(f->vm));
	assert_int_equal(rt_pvm_call(f->vm, "on_test", L, 0, L), RT_PVM_ENOENT);
	assert_int_equal(load_hook(f->vm, "return { second = true }"), RT_PVM_OK);
	assert_int_equal(rt_pvm_call(f->vm, "on_test", L, 0, L), RT_PVM_OK);
	lua_getfield(L, -1, "second");
	assert_true(lua_toboolean(L, -1));
}

static void test_info(void **state)
{
	struct fixture *f = *state;
	lua_State *L = f->L;
	const char *src = "return { name = 'p', version = '1.2', on_auth = function() end, "
			  "on_route = function() end, tests = { { hook = 'on_auth', "
			  "input = { a = 1 }, expect = { allow = true } } } }";

	assert_int_equal(rt_pvm_push_info(f->vm, L), RT_PVM_ENOENT);
	assert_int_equal(rt_pvm_load(f->vm, src, strlen(src), NULL), RT_PVM_OK);
	assert_int_equal(rt_pvm_push_info(f->vm, L), RT_PVM_OK);
	lua_setglobal(L, "info");
	host_eval(L, "info.fields.name == 'p' and info.fields.version == '1.2' and "
		     "info.hooks.on_auth == true and info.hooks.on_route == true and "
		     "info.fields.on_auth == nil and info.fields.tests[1].input.a == 1 and "
		     "info.fields.tests[1].expect.allow == true");
	assert_true(lua_toboolean(L, -1));

	// Functions nested below the top level cannot cross.
	rt_pvm_unload(f->vm);
	src = "return { name = 'p', tests = { { input = { f = function() end } } } }";
	assert_int_equal(rt_pvm_load(f->vm, src, strlen(src), NULL), RT_PVM_OK);
	lua_settop(L, 0);
	assert_int_equal(rt_pvm_push_info(f->vm, L), RT_PVM_EINVAL);
	assert_int_equal(lua_gettop(L), 0);
	assert_non_null(strstr(rt_pvm_error(f->vm), "policy.tests[1].input.f"));
}

static void test_load_errors(void **state)
{
	struct fixture *f = *state;
	lua_State *L = f->L;
	size_t len;

	// Real LuaJIT bytecode, made by the host.
	host_eval(L, "string.dump(function() return { name = 'x' } end)");
	const char *bc = lua_tolstring(L, -1, &len);
	assert_int_equal(bc[0], '\033');
	assert_int_equal(rt_pvm_load(f->vm, bc, len, NULL), RT_PVM_EINVAL);
	assert_non_null(strstr(rt_pvm_error(f->vm), "bytecode"));
	assert_int_equal(rt_pvm_load(f->vm, "\033LJ\002", 4, NULL), RT_PVM_EINVAL);
	// Leading space: not bytecode to the check, and the text parser refuses the byte.
	assert_int_equal(rt_pvm_load(f->vm, " \033LJ", 4, NULL), RT_PVM_EPOLICY);
	assert_false(rt_pvm_loaded(f->vm));

	assert_int_equal(rt_pvm_load(f->vm, "return {", 8, "@bad.lua"), RT_PVM_EPOLICY);
	assert_non_null(strstr(rt_pvm_error(f->vm), "bad.lua:1:"));
	assert_int_equal(rt_pvm_load(f->vm, "return 1", 8, NULL), RT_PVM_EPOLICY);
	assert_non_null(strstr(rt_pvm_error(f->vm), "must return a table"));
	assert_int_equal(rt_pvm_load(f->vm, "error('nope')", 13, "=p"), RT_PVM_EPOLICY);
	assert_string_equal(rt_pvm_error(f->vm), "p:1: nope");
	assert_int_equal(rt_pvm_load(f->vm, "while true do end", 17, NULL), RT_PVM_ETIMEDOUT);
	assert_false(rt_pvm_loaded(f->vm));
	// Inside the sandbox, nothing can load bytecode (or anything else) either.
	const char *src = "return { ok = load ~= nil or loadstring ~= nil or dofile ~= nil or "
			  "loadfile ~= nil or require ~= nil or string.dump ~= nil }";
	assert_int_equal(rt_pvm_load(f->vm, src, strlen(src), NULL), RT_PVM_OK);
	assert_int_equal(rt_pvm_push_info(f->vm, L), RT_PVM_OK);
	lua_getfield(L, -1, "fields");
	lua_getfield(L, -1, "ok");
	assert_int_equal(lua_type(L, -1), LUA_TBOOLEAN);
	assert_false(lua_toboolean(L, -1));
}

static void test_memory_cap(void **state)
{
	struct rt_pvm_limits limits = { .memory_limit = 4u << 20, .time_limit_ms = 10000 };
	struct rt_pvm *vm = rt_pvm_create(&limits);
	lua_State *L = ((struct fixture *)*state)->L;

	assert_non_null(vm);
	size_t base = rt_pvm_memory(vm);
	// Distinct strings (identical ones are interned once).
	assert_int_equal(load_hook(vm, "if input.small then return { n = #string.rep('x', 1000) } "
				       "end local t = {} while true do "
				       "t[#t + 1] = string.rep('x', 100000) .. #t end"),
			 RT_PVM_OK);
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ENOMEM);
	assert_non_null(strstr(rt_pvm_error(vm), "memory limit"));
	assert_true(rt_pvm_memory_peak(vm) <= limits.memory_limit);
	assert_true(rt_pvm_memory_peak(vm) > limits.memory_limit / 2);
	// The garbage is collected and the VM is usable again.
	assert_true(rt_pvm_memory(vm) < base + (256u << 10));
	host_eval(L, "{ small = true }");
	assert_int_equal(rt_pvm_call(vm, "on_test", L, -1, L), RT_PVM_OK);
	lua_getfield(L, -1, "n");
	assert_int_equal(lua_tointeger(L, -1), 1000);
	lua_settop(L, 0);

	// A single huge allocation, and one caught by pcall: both end the run.
	rt_pvm_unload(vm);
	assert_int_equal(load_hook(vm, "if input.p then local ok = pcall(string.rep, 'x', 1e8) "
				       "return { caught = ok } end local s = string.rep('x', 1e9)"),
			 RT_PVM_OK);
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ENOMEM);
	host_eval(L, "{ p = true }");
	assert_int_equal(rt_pvm_call(vm, "on_test", L, -1, L), RT_PVM_ENOMEM);
	rt_pvm_destroy(vm);
}

static void test_instruction_budget(void **state)
{
	struct rt_pvm_limits limits = { .instruction_limit = 100000, .time_limit_ms = 60000 };
	struct rt_pvm *vm = rt_pvm_create(&limits);
	lua_State *L = ((struct fixture *)*state)->L;

	assert_int_equal(load_hook(vm, "if input.n then for i = 1, input.n do end return {} end "
				       "while true do end"),
			 RT_PVM_OK);
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ETIMEDOUT);
	assert_non_null(strstr(rt_pvm_error(vm), "instruction budget of 100000 exceeded"));
	assert_non_null(strstr(rt_pvm_error(vm), "test.lua:2"));
	assert_true(rt_pvm_last_instructions(vm) > 100000);
	assert_true(rt_pvm_last_instructions(vm) <= 101000);
	// Work under the budget passes; the budget is per run.
	for (int i = 0; i < 3; i++) {
		host_eval(L, "{ n = 10000 }");
		assert_int_equal(rt_pvm_call(vm, "on_test", L, -1, L), RT_PVM_OK);
		lua_settop(L, 0);
	}
	host_eval(L, "{ n = 1000000 }");
	assert_int_equal(rt_pvm_call(vm, "on_test", L, -1, L), RT_PVM_ETIMEDOUT);
	lua_settop(L, 0);

	// pcall cannot swallow the budget: the run ends.
	rt_pvm_unload(vm);
	assert_int_equal(load_hook(vm, "while true do pcall(function() while true do end end) "
				       "xpcall(function() while true do end end, function(e) "
				       "return e end) end"),
			 RT_PVM_OK);
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ETIMEDOUT);
	rt_pvm_destroy(vm);
}

static void test_deadline(void **state)
{
	struct rt_pvm_limits limits = { .instruction_limit = UINT64_C(1) << 50,
					.time_limit_ms = 30 };
	struct rt_pvm *vm = rt_pvm_create(&limits);
	lua_State *L = ((struct fixture *)*state)->L;

	assert_int_equal(load_hook(vm, "local n = 0 while true do n = n + 1 end"), RT_PVM_OK);
	uint64_t t0 = ms_now();
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ETIMEDOUT);
	uint64_t elapsed = ms_now() - t0;
	assert_non_null(strstr(rt_pvm_error(vm), "deadline of 30 ms exceeded"));
	assert_true(elapsed >= 30);
	assert_true(elapsed < 1000);
	// A loop in a Lua callback of a C function (table.sort's comparator) is caught too.
	rt_pvm_unload(vm);
	assert_int_equal(load_hook(vm, "table.sort({ 3, 2, 1 }, function(a, b) "
				       "while true do end end)"),
			 RT_PVM_OK);
	t0 = ms_now();
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ETIMEDOUT);
	assert_true(ms_now() - t0 < 1000);
	rt_pvm_destroy(vm);
}

static void test_copy_limits(void **state)
{
	struct rt_pvm_limits limits = { .max_depth = 3, .max_items = 10, .max_string = 8 };
	struct rt_pvm *vm = rt_pvm_create(&limits);
	lua_State *L = ((struct fixture *)*state)->L;
	static const struct {
		const char *input;
		const char *msg;
	} bad_inputs[] = {
		{ "{ a = { b = { c = {} } } }", "input.a.b.c: tables nested deeper than 3" },
		{ "{ f = print }", "input.f: a function value cannot be copied" },
		{ "{ co = coroutine.create(print) }", "input.co: a thread value" },
		{ "{ u = io.stdout }", "input.u: a userdata value" },
		{ "{ [{}] = 1 }", "a table key cannot be copied" },
		{ "{ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 }", "more than 10 table entries" },
		{ "{ s = '123456789' }", "input.s: a string of 9 bytes exceeds the limit of 8" },
		{ "(function() local t = { x = {} } t.x.y = t return t end)()",
		  "input.x.y: the table contains itself" },
	};

	assert_int_equal(load_hook(vm, "if input.out == 'fn' then return { f = print } end "
				       "if input.out == 'deep' then return { { { { } } } } end "
				       "if input.out == 'cycle' then local t = {} t[1] = t "
				       "return t end return input"),
			 RT_PVM_OK);
	for (size_t i = 0; i < sizeof(bad_inputs) / sizeof(bad_inputs[0]); i++) {
		lua_settop(L, 0);
		host_eval(L, bad_inputs[i].input);
		assert_int_equal(rt_pvm_call(vm, "on_test", L, 1, L), RT_PVM_EINVAL);
		if (!strstr(rt_pvm_error(vm), bad_inputs[i].msg))
			fail_msg("input %s: got '%s'", bad_inputs[i].input, rt_pvm_error(vm));
		assert_int_equal(lua_gettop(L), 1); // the host's stack is as it was
	}
	// Shared (acyclic) subtables are fine: they are copied twice.
	lua_settop(L, 0);
	host_eval(L, "(function() local s = { 1 } return { a = s, b = s, [true] = 1.5 } end)()");
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 1, L), RT_PVM_OK);
	lua_getfield(L, -1, "a");
	lua_getfield(L, -2, "b");
	assert_false(lua_rawequal(L, -1, -2));
	assert_false(lua_rawequal(L, -1, 1));
	lua_pushboolean(L, 1);
	lua_rawget(L, 2);
	assert_true(lua_tonumber(L, -1) == 1.5);

	static const struct {
		const char *out;
		const char *msg;
	} bad_outputs[] = {
		{ "{ out = 'fn' }", "result.f: a function value" },
		{ "{ out = 'deep' }", "result[1][1][1]: tables nested deeper" },
		{ "{ out = 'cycle' }", "result[1]: the table contains itself" },
	};
	for (size_t i = 0; i < sizeof(bad_outputs) / sizeof(bad_outputs[0]); i++) {
		lua_settop(L, 0);
		host_eval(L, bad_outputs[i].out);
		assert_int_equal(rt_pvm_call(vm, "on_test", L, 1, L), RT_PVM_EINVAL);
		if (!strstr(rt_pvm_error(vm), bad_outputs[i].msg))
			fail_msg("output %s: got '%s'", bad_outputs[i].out, rt_pvm_error(vm));
		assert_int_equal(lua_gettop(L), 1);
	}
	rt_pvm_destroy(vm);
}

static void test_sandbox(void **state)
{
	struct fixture *f = *state;
	lua_State *L = f->L;
	static const struct {
		const char *body;
		const char *msg;
	} denied[] = {
		{ "x = 1", "attempt to set global 'x'" },
		{ "_G.y = 1", "attempt to set global 'y'" },
		{ "rawset(_G, 'z', 1)", "read-only table" },
		{ "string.upper = nil", "attempt to set 'upper' in read-only table 'string'" },
		{ "table.insert = nil", "read-only table 'table'" },
		{ "math.pi = 3", "read-only table 'math'" },
		{ "setmetatable(_G, {})", "protected metatable" },
		{ "return io.open('/etc/passwd')", "global 'io'" },
		{ "return os.getenv('HOME')", "global 'os'" },
		{ "return require('ffi')", "global 'require'" },
		{ "return debug.getinfo(1)", "global 'debug'" },
		{ "return jit.status()", "global 'jit'" },
		{ "return string.dump(print)", "field 'dump'" },
		{ "setfenv(1, {})", "global 'setfenv'" },
		{ "return coroutine.wrap(print)", "global 'coroutine'" },
		{ "return collectgarbage('count')", "global 'collectgarbage'" },
		{ "return newproxy(true)", "global 'newproxy'" },
	};

	for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
		struct rt_pvm *vm = rt_pvm_create(NULL);
		assert_int_equal(load_hook(vm, denied[i].body), RT_PVM_OK);
		assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_EPOLICY);
		if (!strstr(rt_pvm_error(vm), denied[i].msg))
			fail_msg("%s: got '%s'", denied[i].body, rt_pvm_error(vm));
		rt_pvm_destroy(vm);
	}
	// What stays available works, and nothing a run wrote survives into the next.
	assert_int_equal(load_hook(f->vm,
				   "local mt = getmetatable('') "
				   "return { up = ('ab'):upper(), mt = mt, n = math.floor(2.5), "
				   "c = table.concat({ 1, 2 }, ','), g = _G.string == string, "
				   "ok = select(2, pcall(error, 'e')) }"),
			 RT_PVM_OK);
	assert_int_equal(rt_pvm_call(f->vm, "on_test", L, 0, L), RT_PVM_OK);
	lua_setglobal(L, "r");
	host_eval(L, "r.up == 'AB' and r.mt == false and r.n == 2 and r.c == '1,2' and r.g == true "
		     "and r.ok == 'e'");
	assert_true(lua_toboolean(L, -1));
}

static void on_print(void *ud, const char *line, size_t len)
{
	struct fixture *f = ud;
	size_t used = strlen(f->printed);
	snprintf(f->printed + used, sizeof(f->printed) - used, "%.*s\n", (int)len, line);
	f->lines++;
}

static void test_print(void **state)
{
	struct fixture *f = *state;

	rt_pvm_set_print(f->vm, on_print, f);
	assert_int_equal(load_hook(f->vm, "print('a', 1, nil, true) "
					  "for i = 1, 40 do print(i) end return {}"),
			 RT_PVM_OK);
	assert_int_equal(rt_pvm_call(f->vm, "on_test", f->L, 0, f->L), RT_PVM_OK);
	assert_int_equal(f->lines, RT_PVM_PRINT_LINES + 1);
	const char *head = "a\t1\tnil\ttrue\n1\n2\n";
	assert_true(strncmp(f->printed, head, strlen(head)) == 0);
	assert_non_null(strstr(f->printed, "\n31\n(9 more lines suppressed)\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_and_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_instruction_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_print, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
