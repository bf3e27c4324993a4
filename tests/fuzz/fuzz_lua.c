/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the parsers written in Lua. One binary per target (FUZZ_LUA_TARGET):
 * it embeds LuaJIT with the runtime's natives and loader (moonstack_rt, as the executable does),
 * loads the project's modules from <source>/lua ($MOONSTACK_SRC, else the tree it was built
 * from), and runs tests/fuzz/lua/<target>.lua, which returns a function of one string. Each
 * input goes to that function in a protected call on one reused lua_State: the function returns
 * on a clean result or a clean (documented) error and raises on anything else, which aborts
 * here with the message (a crash for libFuzzer); a LuaJIT panic aborts too, a loop that does not
 * end is libFuzzer's -timeout.
 *
 * Coverage: the Lua code is interpreted, so LuaJIT's own edges say little about it. A line hook
 * (JIT off) maps each (previous line, line) pair of the Lua code to one of 64 Ki extra counters
 * that libFuzzer reads as coverage features. MOONSTACK_FUZZ_LUA_JIT=1 instead runs the code as
 * production does, JIT on and no hook: several times the executions per second, guided only by
 * the outcome of each input (the driver's last clean error, digits dropped, as a feature): for
 * long runs over a corpus grown with the hook.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "rt_internal.h"

#ifndef FUZZ_LUA_TARGET
#error "FUZZ_LUA_TARGET (the driver's name) is required"
#endif
#ifndef FUZZ_SRC_DIR
#define FUZZ_SRC_DIR "."
#endif

#define COUNTERS (1u << 16)
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t lua_cov[COUNTERS];
static unsigned prev_line;
static lua_State *L;
static int driver_ref = LUA_NOREF;
static unsigned long inputs;
static bool jit_on; /* MOONSTACK_FUZZ_LUA_JIT */

/* Process-lifetime allocations of the runtime's libraries (libuv's loop, lua-cjson's encode
 * buffers) are not leaks of a parser: the state lives until exit. LuaJIT's own heap is not
 * malloc'ed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libuv.so\nleak:liblua5.1-cjson.so\n";
}

static void line_hook(lua_State *l, lua_Debug *ar)
{
	(void)l;
	unsigned line = (unsigned)ar->currentline;
	unsigned idx = (prev_line * 40503u ^ line) & (COUNTERS - 1);

	if (lua_cov[idx] != 255)
		lua_cov[idx]++;
	prev_line = line;
}

static int panic(lua_State *l)
{
	fprintf(stderr, "fuzz_lua: LuaJIT panic: %s\n", lua_tostring(l, -1));
	abort();
}

static void setup(void)
{
	const char *src = getenv("MOONSTACK_SRC");
	char path[4096];

	if (!src || !*src)
		src = FUZZ_SRC_DIR;
	L = luaL_newstate();
	if (!L)
		abort();
	lua_atpanic(L, panic);
	luaL_openlibs(L);
	const char *jit = getenv("MOONSTACK_FUZZ_LUA_JIT");

	jit_on = jit && *jit && strcmp(jit, "0") != 0;

	if (!jit_on)
		luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
	rt_natives_preload(L);
	snprintf(path, sizeof(path), "%s/lua", src);
	rt_loader_install(L, path);
	lua_getglobal(L, "package");
	snprintf(path, sizeof(path), "%s/tests/fuzz/lua/?.lua", src);
	lua_pushstring(L, path);
	lua_setfield(L, -2, "path"); /* the drivers' helpers (fuzz_check) */
	lua_pop(L, 1);
	snprintf(path, sizeof(path), "%s/tests/fuzz/lua/%s.lua", src, FUZZ_LUA_TARGET);
	if (luaL_loadfile(L, path) != 0 || lua_pcall(L, 0, 1, 0) != 0 || !lua_isfunction(L, -1)) {
		fprintf(stderr, "fuzz_lua: cannot load %s: %s\n", path,
			lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no function returned)");
		exit(2);
	}
	driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (!jit_on)
		lua_sethook(L, line_hook, LUA_MASKLINE, 0);
}

static int traceback(lua_State *l)
{
	const char *msg = lua_tostring(l, 1);

	luaL_traceback(l, l, msg ? msg : luaL_typename(l, 1), 1);
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	if (!L)
		setup();
	int top = lua_gettop(L);

	prev_line = 0;
	lua_pushcfunction(L, traceback);
	lua_rawgeti(L, LUA_REGISTRYINDEX, driver_ref);
	lua_pushlstring(L, (const char *)data, len);
	if (lua_pcall(L, 1, 0, top + 1) != 0) {
		fprintf(stderr, "fuzz_lua(%s): not a clean result or error:\n%s\n", FUZZ_LUA_TARGET,
			lua_tostring(L, -1));
		abort();
	}
	if (jit_on) {
		/* the outcome the driver recorded (fuzz_check.lua), hashed into the counters */
		size_t n = 0;
		const char *o;
		uint32_t h = 2166136261u;

		lua_getglobal(L, "FUZZ_OUTCOME");
		o = lua_tolstring(L, -1, &n);
		for (size_t i = 0; o && i < n; i++)
			h = (h ^ (uint8_t)o[i]) * 16777619u;
		lua_cov[h & (COUNTERS - 1)] = 1;
		lua_pushnil(L);
		lua_setglobal(L, "FUZZ_OUTCOME");
	}
	lua_settop(L, top);
	if (++inputs % 256 == 0)
		lua_gc(L, LUA_GCSTEP, 200);
	if (inputs % 8192 == 0)
		lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
