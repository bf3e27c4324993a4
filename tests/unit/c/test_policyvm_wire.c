/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the policy wire format (rt_policyvm_wire.c: encode with limits, decode bytes
 * that may be hostile), the VM's wire entry points, and the sandbox rules added for the policy
 * workers: a run that overruns its deadline inside one C call fails, the table library's raw
 * writers refuse the read-only globals, and tostring/string.format show no heap address.
 */
#include <math.h>
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

static const struct rt_pvm_wire_limits LIM = { 32, 10000, 1u << 20, 4u << 20 };

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static lua_State *host(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	// deep equality of plain values, for the checks below
	assert_int_equal(
		luaL_dostring(L, "function same(a, b)\n"
				 "  if type(a) ~= 'table' or type(b) ~= 'table' then\n"
				 "    return a == b end\n"
				 "  for k, v in pairs(a) do if not same(v, b[k]) then\n"
				 "    return false end end\n"
				 "  for k in pairs(b) do if a[k] == nil then return false end end\n"
				 "  return true end"),
		0);
	return L;
}

/* Evaluate @p expr in @p L and leave it on the stack. */
static void eval(lua_State *L, const char *expr)
{
	char src[1024];
	snprintf(src, sizeof(src), "return %s", expr);
	assert_int_equal(luaL_loadstring(L, src), 0);
	assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
}

static int encode(lua_State *L, const char *expr, const struct rt_pvm_wire_limits *lim,
		  struct rt_pvm_buf *out, char *err)
{
	eval(L, expr);
	int rc = rt_pvm_encode(L, -1, lim, "v", out, err, 400);
	lua_pop(L, 1);
	return rc;
}

static void test_roundtrip(void **state)
{
	lua_State *L = host();
	const char *values[] = {
		"nil",
		"true",
		"-0.5",
		"'a\\0b'",
		"{}",
		"{ 1, 2, 'x', { y = { z = false } } }",
		"{ [1.5] = 'f', [true] = 1, [false] = 0, s = string.rep('q', 70000), [-3] = -1 / 0 "
		"}",
	};
	char err[400];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct rt_pvm_buf b = { 0 };
		assert_int_equal(encode(L, values[i], &LIM, &b, err), 0);
		assert_int_equal(rt_pvm_decode(L, b.data, b.len, &LIM, err, sizeof(err)), 0);
		lua_setglobal(L, "got");
		char expr[256];
		snprintf(expr, sizeof(expr), "same(got, %s)", values[i]);
		eval(L, expr);
		if (!lua_toboolean(L, -1))
			fail_msg("%s did not survive the trip", values[i]);
		lua_pop(L, 1);
		rt_pvm_buf_free(&b);
	}
	assert_int_equal(lua_gettop(L), 0);
	lua_close(L);
}

static void test_encode_limits(void **state)
{
	lua_State *L = host();
	static const struct rt_pvm_wire_limits small = { 3, 5, 4, 4096 };
	static const struct rt_pvm_wire_limits tight = { 32, 10000, 100, 64 };
	static const struct {
		const char *expr, *msg;
		const struct rt_pvm_wire_limits *lim;
	} bad[] = {
		{ "(function() local t = {} t.me = t return t end)()",
		  "v.me: the table contains itself (a cycle)", &LIM },
		{ "{ f = print }", "v.f: a function value cannot be copied", &LIM },
		{ "{ [{}] = 1 }", "a table key cannot be copied", &LIM },
		{ "{ a = { b = { c = {} } } }", "v.a.b.c: tables nested deeper than 3 levels",
		  &small },
		{ "{ 1, 2, 3, 4, 5, 6 }", "more than 5 table entries", &small },
		{ "{ s = 'hello' }", "v.s: a string of 5 bytes exceeds the limit of 4", &small },
		{ "{ 'abcd', 'abcd', 'abcd', 'abcd', 'abcd' }", "more than 64 bytes in all",
		  &tight },
	};
	char err[400];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct rt_pvm_buf b = { 0 };
		assert_int_equal(encode(L, bad[i].expr, bad[i].lim, &b, err), -1);
		if (!strstr(err, bad[i].msg))
			fail_msg("%s: got '%s'", bad[i].expr, err);
		rt_pvm_buf_free(&b);
	}
	// 10,000 references to one 1 MiB string: refused at 4 MiB, not copied 10,000 times
	struct rt_pvm_buf b = { 0 };
	uint64_t t0 = ms_now();
	assert_int_equal(encode(L,
				"(function() local s, t = string.rep('x', 2^20), {} "
				"for i = 1, 10000 do t[i] = s end return t end)()",
				&LIM, &b, err),
			 -1);
	assert_non_null(strstr(err, "more than 4194304 bytes in all"));
	assert_true(ms_now() - t0 < 1000);
	assert_true(b.len <= LIM.max_bytes);
	rt_pvm_buf_free(&b);
	assert_int_equal(lua_gettop(L), 0);
	lua_close(L);
}

static void expect_malformed(lua_State *L, const char *data, size_t len,
			     const struct rt_pvm_wire_limits *lim, const char *msg)
{
	char err[256];
	int top = lua_gettop(L);
	assert_int_equal(rt_pvm_decode(L, data, len, lim, err, sizeof(err)), -1);
	assert_int_equal(lua_gettop(L), top);
	if (msg && !strstr(err, msg))
		fail_msg("expected '%s', got '%s'", msg, err);
}

static void test_decode_malformed(void **state)
{
	lua_State *L = host();
	struct rt_pvm_buf b = { 0 };
	char err[400];

	// every truncation of a valid encoding is refused, without reading past the end
	assert_int_equal(encode(L, "{ a = { 1, 'two', true }, [2.5] = 'x' }", &LIM, &b, err), 0);
	for (size_t n = 0; n < b.len; n++) {
		char *cut = malloc(n ? n : 1);
		memcpy(cut, b.data, n);
		expect_malformed(L, cut, n, &LIM, NULL);
		free(cut);
	}
	// a byte after the value
	rt_pvm_buf_put(&b, "t", 1);
	expect_malformed(L, b.data, b.len, &LIM, "bytes after the value");
	rt_pvm_buf_free(&b);

	expect_malformed(L, "x", 1, &LIM, "an unknown tag");
	expect_malformed(L, "{n}", 3, &LIM, "a nil or table key");
	expect_malformed(L, "{{}t}", 5, &LIM, "a nil or table key");
	expect_malformed(L, "{tn}", 4, &LIM, "a nil value in a table");
	char nan_key[11] = "{d";
	double nan = NAN;
	memcpy(nan_key + 2, &nan, sizeof(nan));
	nan_key[10] = 't';
	expect_malformed(L, nan_key, sizeof(nan_key), &LIM, "a NaN key");
	char big[5] = "s";
	uint32_t huge = 0xffffffffu;
	memcpy(big + 1, &huge, sizeof(huge));
	expect_malformed(L, big, sizeof(big), &LIM, "a string over the limit");
	char deep[200];
	for (size_t i = 0; i < sizeof(deep); i += 2)
		memcpy(deep + i, "{t", 2); // { true = { true = { ...
	expect_malformed(L, deep, sizeof(deep), &LIM, "nested too deep");
	struct rt_pvm_wire_limits two = { 32, 2, 100, 100 };
	expect_malformed(L, "{ttffdddddddd}", 6, &two, NULL);
	expect_malformed(L, "{tttfft}", 8, &two, "too many table entries");
	assert_int_equal(lua_gettop(L), 0);
	lua_close(L);
}

static void test_call_and_info_wire(void **state)
{
	lua_State *L = host();
	struct rt_pvm *vm = rt_pvm_create(NULL);
	struct rt_pvm_buf in = { 0 }, out = { 0 }, info = { 0 };
	char err[400];
	const char *src = "return { name = 'w', version = 2, tests = { { x = 1 } },\n"
			  "  on_test = function(i) return { echo = i, n = #i.list } end }";

	assert_int_equal(rt_pvm_info_wire(vm, &info), RT_PVM_ENOENT);
	assert_int_equal(rt_pvm_call_wire(vm, "on_test", NULL, 0, &out), RT_PVM_ENOENT);
	assert_int_equal(rt_pvm_load(vm, src, strlen(src), "=w"), RT_PVM_OK);
	assert_int_equal(rt_pvm_info_wire(vm, &info), RT_PVM_OK);
	assert_int_equal(rt_pvm_decode(L, info.data, info.len,
				       &(struct rt_pvm_wire_limits){ 33, 10002, 1 << 20, 4 << 20 },
				       err, sizeof(err)),
			 0);
	lua_setglobal(L, "info");
	eval(L, "same(info, { fields = { name = 'w', version = 2, tests = { { x = 1 } } }, "
		"hooks = { on_test = true } })");
	assert_true(lua_toboolean(L, -1));
	lua_pop(L, 1);

	assert_int_equal(encode(L, "{ list = { 'a', 'b' } }", &LIM, &in, err), 0);
	assert_int_equal(rt_pvm_call_wire(vm, "on_test", in.data, in.len, &out), RT_PVM_OK);
	assert_int_equal(rt_pvm_decode(L, out.data, out.len, &LIM, err, sizeof(err)), 0);
	lua_setglobal(L, "r");
	eval(L, "same(r, { echo = { list = { 'a', 'b' } }, n = 2 })");
	assert_true(lua_toboolean(L, -1));
	lua_pop(L, 1);

	// input that is not a table, and garbage input, are refused by the VM too
	size_t before = out.len;
	assert_int_equal(rt_pvm_call_wire(vm, "on_test", "t", 1, &out), RT_PVM_EINVAL);
	assert_non_null(strstr(rt_pvm_error(vm), "input: not a table"));
	assert_int_equal(rt_pvm_call_wire(vm, "on_test", "{s", 2, &out), RT_PVM_EINVAL);
	assert_non_null(strstr(rt_pvm_error(vm), "malformed policy data"));
	assert_int_equal(out.len, before);
	rt_pvm_buf_free(&in);
	rt_pvm_buf_free(&out);
	rt_pvm_buf_free(&info);
	rt_pvm_destroy(vm);
	lua_close(L);
}

/* One C call that outlasts the deadline between two hooks: the run fails all the same. */
static void test_overrun_in_a_c_call(void **state)
{
	lua_State *L = host();
	struct rt_pvm_limits limits = { .time_limit_ms = 20 };
	struct rt_pvm *vm = rt_pvm_create(&limits);
	const char *backtrack = "('a'):rep(22):find(('a?'):rep(22) .. ('a'):rep(22))";
	char src[512];

	snprintf(src, sizeof(src),
		 "return { on_test = function() return { r = %s } end, "
		 "on_quick = function() return {} end }",
		 backtrack);
	assert_int_equal(rt_pvm_load(vm, src, strlen(src), "=bt"), RT_PVM_OK);
	uint64_t t0 = ms_now();
	assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_ETIMEDOUT);
	assert_true(ms_now() - t0 >= 20);
	assert_non_null(strstr(rt_pvm_error(vm), "deadline of 20 ms exceeded"));
	assert_non_null(strstr(rt_pvm_error(vm), "in a library call"));
	assert_int_equal(lua_gettop(L), 0);
	// the VM goes on
	assert_int_equal(rt_pvm_call(vm, "on_quick", L, 0, L), RT_PVM_OK);
	lua_pop(L, 1);
	rt_pvm_destroy(vm);

	// the same at the top level of a policy file: not loaded
	vm = rt_pvm_create(&limits);
	snprintf(src, sizeof(src), "local r = %s return {}", backtrack);
	assert_int_equal(rt_pvm_load(vm, src, strlen(src), "=bt"), RT_PVM_ETIMEDOUT);
	assert_false(rt_pvm_loaded(vm));
	rt_pvm_destroy(vm);
	lua_close(L);
}

/* Run @p body as a hook of a fresh VM; leave its result in global `r` of @p L. */
static int run_body(lua_State *L, const char *body, char *err, size_t errlen)
{
	struct rt_pvm *vm = rt_pvm_create(NULL);
	char src[2048];
	snprintf(src, sizeof(src), "return { on_test = function()\n%s\nend }", body);
	assert_int_equal(rt_pvm_load(vm, src, strlen(src), "@t.lua"), RT_PVM_OK);
	int st = rt_pvm_call(vm, "on_test", L, 0, L);
	if (st == RT_PVM_OK)
		lua_setglobal(L, "r");
	snprintf(err, errlen, "%s", rt_pvm_error(vm));
	// a second call sees what the first one left behind
	if (st == RT_PVM_OK) {
		assert_int_equal(rt_pvm_call(vm, "on_test", L, 0, L), RT_PVM_OK);
		lua_setglobal(L, "r2");
	}
	rt_pvm_destroy(vm);
	return st;
}

static void test_readonly_table_writers(void **state)
{
	lua_State *L = host();
	static const char *const writers[] = {
		"table.insert(_G, 'v')", "table.insert(_G, 1, 'v')", "table.insert(string, 'v')",
		"table.remove(math)",	 "table.sort(table)",	     "table.insert(_G.table, 1)",
	};
	char err[512], body[256];

	for (size_t i = 0; i < sizeof(writers) / sizeof(writers[0]); i++) {
		snprintf(body, sizeof(body), "%s return {}", writers[i]);
		assert_int_equal(run_body(L, body, err, sizeof(err)), RT_PVM_EPOLICY);
		if (!strstr(err, "attempt to modify a read-only table"))
			fail_msg("%s: got '%s'", writers[i], err);
		// under pcall, nothing is written either
		snprintf(body, sizeof(body),
			 "local ok = pcall(function() %s end) "
			 "return { ok = ok, n = #_G + #string + #math + #table }",
			 writers[i]);
		assert_int_equal(run_body(L, body, err, sizeof(err)), RT_PVM_OK);
		eval(L, "r.ok == false and r.n == 0 and r2.n == 0");
		if (!lua_toboolean(L, -1))
			fail_msg("%s wrote into a read-only table", writers[i]);
		lua_pop(L, 1);
	}
	// on the policy's own tables they work as usual
	assert_int_equal(run_body(L,
				  "local t = { 3, 1, 2 } table.insert(t, 4) table.sort(t) "
				  "table.remove(t, 1) return t",
				  err, sizeof(err)),
			 RT_PVM_OK);
	eval(L, "same(r, { 2, 3, 4 })");
	assert_true(lua_toboolean(L, -1));
	lua_close(L);
}

static void test_tostring_hides_addresses(void **state)
{
	lua_State *L = host();
	char err[512];

	assert_int_equal(
		run_body(L,
			 "local t, mt = {}, setmetatable({}, { __tostring = function() return 'M' "
			 "end })\n"
			 "return { tostring(print), tostring(pcall), tostring(tostring), "
			 "tostring(string),\n"
			 "  tostring(_G), tostring(t), tostring(function() end), "
			 "('%s'):format(string),\n"
			 "  string.format('%s %s %d', print, t, 7), tostring(mt), tostring(1.5),\n"
			 "  tostring(nil), tostring(false), tostring(t) == tostring(t),\n"
			 "  tostring(t) ~= tostring({}), tostring('s') }",
			 err, sizeof(err)),
		RT_PVM_OK);
	eval(L, "(function() for i = 1, 13 do if tostring(r[i]):find('0x') then return i end end "
		"return 0 end)()");
	assert_int_equal(lua_tointeger(L, -1), 0);
	lua_pop(L, 1);
	eval(L,
	     "r[1] == 'function: builtin' and r[2] == 'function: builtin' and "
	     "r[4]:match('^table: #%x+$') and r[6]:match('^table: #%x+$') and "
	     "r[7]:match('^function: #%x+$') and r[8] == r[4] and r[9]:match('^function: builtin "
	     "table: #%x+ 7$') and r[10] == 'M' and r[11] == '1.5' and r[12] == 'nil' and "
	     "r[13] == 'false' and r[14] == true and r[15] == true and r[16] == 's'");
	if (!lua_toboolean(L, -1)) {
		eval(L, "table.concat(r, ' | ', 1, 13)");
		fail_msg("got %s", lua_tostring(L, -1));
	}
	lua_close(L);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_call_and_info_wire),
		cmocka_unit_test(test_overrun_in_a_c_call),
		cmocka_unit_test(test_readonly_table_writers),
		cmocka_unit_test(test_tostring_hides_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
