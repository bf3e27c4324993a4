/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmocka tests of the runtime core: the JSON buffer and quoting, log levels, the embedded file
 * table, the runtime's protected calls (traceback, error objects, callback errors counted while
 * the loop goes on) and the shutdown sequence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "moonstack/rt.h"
#include "rt_embedded.h"
#include "rt_json.h"

static char *quote(const char *s, size_t len)
{
	static struct rt_buf b;
	rt_buf_free(&b);
	rt_json_quote(&b, s, len);
	return b.data;
}

static void test_json_quote(void **state)
{
	assert_string_equal(quote("plain", 5), "\"plain\"");
	assert_string_equal(quote("a\"b\\c", 5), "\"a\\\"b\\\\c\"");
	assert_string_equal(quote("l1\nl2\t\r", 7), "\"l1\\nl2\\t\\r\"");
	assert_string_equal(quote("\x01\x7f", 2), "\"\\u0001\\u007f\"");
	// valid UTF-8 passes through, invalid bytes become U+FFFD, NUL is escaped
	assert_string_equal(quote("\xc3\xa9", 2), "\"\xc3\xa9\"");
	assert_string_equal(quote("\xff\xc3", 2), "\"\\ufffd\\ufffd\"");
	assert_string_equal(quote("\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\""); // surrogate
	assert_string_equal(quote("a\0b", 3), "\"a\\u0000b\"");
	rt_buf_free(&(struct rt_buf){ 0 });
}

static void test_buf_grows(void **state)
{
	struct rt_buf b = { 0 };
	// an empty piece may come as (NULL, 0): lws hands an empty request body so (UBSan checks)
	assert_int_equal(rt_buf_add(&b, NULL, 0), 0);
	assert_int_equal(b.len, 0);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(rt_buf_printf(&b, "%04d", i % 10000), 0);
	assert_int_equal(b.len, 40000);
	assert_memory_equal(b.data + 39996, "9999", 4);
	assert_int_equal(b.data[b.len], '\0');
	rt_buf_free(&b);
	assert_null(b.data);
}

static void test_hex(void **state)
{
	const uint8_t bytes[] = { 0x00, 0x9f, 0xa0, 0xff };
	char out[9];
	uint8_t back[4];
	rt_hex_encode(bytes, 4, out, false);
	assert_string_equal(out, "009fa0ff");
	rt_hex_encode(bytes, 4, out, true);
	assert_string_equal(out, "009FA0FF");
	assert_int_equal(rt_hex_decode("009fA0Ff", 8, back, 4), 0);
	assert_memory_equal(back, bytes, 4);
	assert_int_equal(rt_hex_decode("009fa0f", 7, back, 4), -1);	// odd length
	assert_int_equal(rt_hex_decode("009fa0fg", 8, back, 4), -1);	// not hex
	assert_int_equal(rt_hex_decode("009fa0ff00", 10, back, 4), -1); // too long
}

static void test_log_levels(void **state)
{
	assert_int_equal(rt_log_level_parse("debug"), RT_LOG_DEBUG);
	assert_int_equal(rt_log_level_parse("warn"), RT_LOG_WARN);
	assert_int_equal(rt_log_level_parse("warning"), RT_LOG_WARN);
	assert_int_equal(rt_log_level_parse("error"), RT_LOG_ERROR);
	assert_int_equal(rt_log_level_parse("loud"), -1);
	assert_int_equal(rt_log_level_parse(NULL), -1);
	assert_string_equal(rt_log_level_name(RT_LOG_INFO), "info");
	rt_log_set_level(RT_LOG_ERROR);
	assert_int_equal(rt_log_get_level(), RT_LOG_ERROR);
	rt_log_set_level(RT_LOG_INFO);
}

static void test_embedded_files(void **state)
{
	const struct rt_embedded_file *f = rt_embedded_find("lua/moonstack/cli.lua");
	assert_non_null(f);
	assert_true(f->len > 100);
	assert_int_equal(f->data[f->len], '\0');
	assert_non_null(strstr((const char *)f->data, "SPDX-License-Identifier"));
	assert_null(rt_embedded_find("lua/moonstack/nope.lua"));
	assert_null(rt_embedded_find("../lua/moonstack/cli.lua"));
}

static struct rt_runtime *new_runtime(void)
{
	struct rt_options opts = { 0 };
	struct rt_runtime *rt = rt_create(&opts);
	assert_non_null(rt);
	return rt;
}

static int run_string(lua_State *L, const char *code, int nresults)
{
	assert_int_equal(luaL_loadstring(L, code), 0);
	return rt_pcall(L, 0, nresults);
}

static void test_pcall_traceback(void **state)
{
	struct rt_runtime *rt = new_runtime();
	lua_State *L = rt_state(rt);
	int top = lua_gettop(L);

	assert_int_equal(run_string(L, "local function inner() error('deep') end inner()", 0),
			 LUA_ERRRUN);
	const char *msg = lua_tostring(L, -1);
	assert_non_null(strstr(msg, "deep"));
	assert_non_null(strstr(msg, "stack traceback:"));
	assert_non_null(strstr(msg, "in function 'inner'"));
	lua_pop(L, 1);

	// error objects stay tables and get their traceback recorded
	assert_int_equal(run_string(L, "error({code='EDENIED', msg='no'})", 0), LUA_ERRRUN);
	assert_true(lua_istable(L, -1));
	lua_getfield(L, -1, "code");
	assert_string_equal(lua_tostring(L, -1), "EDENIED");
	lua_getfield(L, -2, "traceback");
	assert_non_null(strstr(lua_tostring(L, -1), "stack traceback"));
	lua_pop(L, 3);

	// success passes results through and leaves the stack balanced
	assert_int_equal(run_string(L, "return 40 + 2", 1), 0);
	assert_int_equal(lua_tointeger(L, -1), 42);
	lua_pop(L, 1);
	assert_int_equal(lua_gettop(L), top);
	rt_destroy(rt);
}

static void test_callback_errors_keep_loop(void **state)
{
	struct rt_runtime *rt = new_runtime();
	lua_State *L = rt_state(rt);
	// A luv timer raises twice, then records that it kept running.
	assert_int_equal(run_string(L,
				    "local uv = require('luv'); n = 0\n"
				    "local t = uv.new_timer()\n"
				    "t:start(1, 1, function()\n"
				    "  n = n + 1\n"
				    "  if n <= 2 then error('callback failure ' .. n) end\n"
				    "  if n == 4 then t:close() end\n"
				    "end)",
				    0),
			 0);
	rt_run(rt);
	lua_getglobal(L, "n");
	assert_int_equal(lua_tointeger(L, -1), 4);
	lua_pop(L, 1);
	assert_int_equal(rt_callback_errors(rt), 2);
	assert_int_equal(rt_exit_code(rt), 0);
	rt_destroy(rt);
}

static int hook_order[4];
static int hook_calls;

static void record_hook(void *ud, int stage)
{
	hook_order[hook_calls++] = (int)(intptr_t)ud * 10 + stage;
}

static void test_shutdown_hooks(void **state)
{
	struct rt_runtime *rt = new_runtime();
	hook_calls = 0;
	assert_int_equal(rt_on_shutdown(rt, record_hook, (void *)1), 0);
	assert_int_equal(rt_on_shutdown(rt, record_hook, (void *)2), 0);
	assert_int_equal(rt_on_shutdown(rt, record_hook, (void *)3), 0);
	rt_off_shutdown(rt, record_hook, (void *)2);
	rt_destroy(rt);
	// newest first, stage 0 for all, then stage 1 for all; the removed hook never runs
	assert_int_equal(hook_calls, 4);
	assert_int_equal(hook_order[0], 30);
	assert_int_equal(hook_order[1], 10);
	assert_int_equal(hook_order[2], 31);
	assert_int_equal(hook_order[3], 11);
}

static void test_request_exit(void **state)
{
	struct rt_runtime *rt = new_runtime();
	lua_State *L = rt_state(rt);
	// a timer that would keep the loop alive for a minute; exit(5) stops it at once
	assert_int_equal(run_string(L,
				    "local uv = require('luv')\n"
				    "uv.new_timer():start(60000, 0, function() end)\n"
				    "uv.new_timer():start(1, 0, function()\n"
				    "  require('moonstack.native.runtime').exit(5) end)",
				    0),
			 0);
	rt_run(rt);
	assert_true(rt_exit_requested(rt));
	assert_int_equal(rt_exit_code(rt), 5);
	rt_destroy(rt); // closes the pending timer handle
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_quote),
		cmocka_unit_test(test_buf_grows),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_log_levels),
		cmocka_unit_test(test_embedded_files),
		cmocka_unit_test(test_pcall_traceback),
		cmocka_unit_test(test_callback_errors_keep_loop),
		cmocka_unit_test(test_shutdown_hooks),
		cmocka_unit_test(test_request_exit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
