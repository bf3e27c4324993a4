/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy VM's library: base (without load*, dofile, require, get/setfenv, collectgarbage,
 * newproxy, coroutine), string (without dump), table and math; print() sent to the VM's sink;
 * pcall/xpcall that cannot catch a blown budget or memory cap; read-only proxies for the
 * globals and the shared library tables, which rawset and the raw writers of the table library
 * (insert, remove, sort) refuse; tostring and string.format that show no heap address; the JIT
 * engine off.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <luajit.h>
#include <lualib.h>

#include "rt_policyvm_internal.h"

char rt_pvm_key_env, rt_pvm_key_readonly;

/* print(...): tostring each argument, join with tabs, hand the line to the print sink. */
static int l_print(lua_State *P)
{
	struct rt_pvm *vm = rt_pvm_of(P);
	int n = lua_gettop(P);
	luaL_Buffer b;
	size_t len;

	if (vm->prints >= RT_PVM_PRINT_LINES) {
		vm->suppressed++;
		return 0;
	}
	vm->prints++;
	luaL_buffinit(P, &b);
	for (int i = 1; i <= n; i++) {
		lua_pushvalue(P, lua_upvalueindex(1));
		lua_pushvalue(P, i);
		lua_call(P, 1, 1);
		if (!lua_isstring(P, -1))
			return luaL_error(P, "'tostring' must return a string to 'print'");
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	const char *s = lua_tolstring(P, -1, &len);
	rt_pvm_emit(vm, s, len > RT_PVM_PRINT_MAX ? RT_PVM_PRINT_MAX : len);
	return 0;
}

/* pcall that cannot catch a blown budget or memory cap: those end the whole run. */
static int l_pcall(lua_State *P)
{
	luaL_checkany(P, 1);
	int st = lua_pcall(P, lua_gettop(P) - 1, LUA_MULTRET, 0);
	if (st != 0 && rt_pvm_of(P)->tripped)
		return lua_error(P);
	lua_pushboolean(P, st == 0);
	lua_insert(P, 1);
	return lua_gettop(P);
}

/* xpcall(f, handler, ...), with the same rule as pcall. */
static int l_xpcall(lua_State *P)
{
	int n = lua_gettop(P);
	luaL_checkany(P, 2);
	// [f, h, args...] -> [h, f, args...]
	lua_pushvalue(P, 1);
	lua_pushvalue(P, 2);
	lua_replace(P, 1);
	lua_replace(P, 2);
	int st = lua_pcall(P, n - 2, LUA_MULTRET, 1);
	if (st != 0 && rt_pvm_of(P)->tripped)
		return lua_error(P);
	lua_pushboolean(P, st == 0);
	lua_replace(P, 1);
	return lua_gettop(P);
}

static bool is_readonly(lua_State *P, int idx)
{
	bool ro = false;
	if (lua_getmetatable(P, idx)) {
		rt_pvm_push_reg(P, &rt_pvm_key_readonly);
		lua_pushlightuserdata(P, &rt_pvm_key_readonly);
		lua_rawget(P, -3);
		ro = lua_rawequal(P, -1, -2);
		lua_pop(P, 3);
	}
	return ro;
}

/* rawset that refuses the read-only proxies. */
static int l_rawset(lua_State *P)
{
	luaL_checktype(P, 1, LUA_TTABLE);
	luaL_checkany(P, 2);
	luaL_checkany(P, 3);
	if (is_readonly(P, 1))
		return luaL_error(P, "attempt to modify a read-only table");
	lua_settop(P, 3);
	lua_rawset(P, 1);
	return 1;
}

/* table.insert, table.remove and table.sort (upvalue 1; upvalue 2 names it) write raw, past a
 * proxy's __newindex: refuse the read-only proxies, then call the real function. */
static int l_table_writer(lua_State *P)
{
	if (lua_type(P, 1) == LUA_TTABLE && is_readonly(P, 1))
		return luaL_error(P, "%s: attempt to modify a read-only table",
				  lua_tostring(P, lua_upvalueindex(2)));
	lua_pushvalue(P, lua_upvalueindex(1));
	lua_insert(P, 1);
	lua_call(P, lua_gettop(P) - 1, LUA_MULTRET);
	return lua_gettop(P);
}

/* A 64-bit mix (splitmix64's finaliser). */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebu;
	return x ^ (x >> 31);
}

/* tostring(v) without heap addresses: __tostring if any, the usual text of nil, booleans,
 * numbers and strings, "function: builtin" for C functions, and for any other value its type
 * and an identity keyed by the VM's secret (equal for the same object, not an address). */
static int l_tostring(lua_State *P)
{
	char text[64];

	luaL_checkany(P, 1);
	if (luaL_callmeta(P, 1, "__tostring")) {
		if (!lua_isstring(P, -1))
			return luaL_error(P, "'__tostring' must return a string");
		return 1;
	}
	switch (lua_type(P, 1)) {
	case LUA_TNIL:
		lua_pushliteral(P, "nil");
		return 1;
	case LUA_TBOOLEAN:
		lua_pushstring(P, lua_toboolean(P, 1) ? "true" : "false");
		return 1;
	case LUA_TNUMBER:
	case LUA_TSTRING:
		lua_pushvalue(P, 1);
		lua_tolstring(P, -1, NULL);
		return 1;
	default:
		break;
	}
	if (lua_iscfunction(P, 1)) {
		lua_pushliteral(P, "function: builtin");
		return 1;
	}
	uint64_t id = mix64((uint64_t)(uintptr_t)lua_topointer(P, 1) ^ rt_pvm_of(P)->id_key);
	snprintf(text, sizeof(text), "%s: #%012llx", luaL_typename(P, 1),
		 (unsigned long long)(id >> 16));
	lua_pushstring(P, text);
	return 1;
}

/* string.format (upvalue 1) with the sandbox's tostring applied to arguments that are not
 * numbers or strings, so %s shows no heap address either. */
static int l_format(lua_State *P)
{
	int n = lua_gettop(P);
	for (int i = 2; i <= n; i++) {
		int t = lua_type(P, i);
		if (t == LUA_TNUMBER || t == LUA_TSTRING)
			continue;
		lua_pushcfunction(P, l_tostring);
		lua_pushvalue(P, i);
		lua_call(P, 1, 1);
		lua_replace(P, i);
	}
	lua_pushvalue(P, lua_upvalueindex(1));
	lua_insert(P, 1);
	lua_call(P, n, 1);
	return 1;
}

/* __newindex of a read-only proxy; upvalue 1 is the table's name ("_G" for the globals). */
static int l_readonly_newindex(lua_State *P)
{
	const char *name = lua_tostring(P, lua_upvalueindex(1));
	const char *key = lua_type(P, 2) == LUA_TSTRING ? lua_tostring(P, 2) : NULL;
	char msg[160];

	if (strcmp(name, "_G") == 0)
		snprintf(msg, sizeof(msg),
			 "attempt to set global '%s': globals are read-only (use a local)",
			 key ? key : luaL_typename(P, 2));
	else
		snprintf(msg, sizeof(msg), "attempt to set '%s' in read-only table '%s'",
			 key ? key : luaL_typename(P, 2), name);
	// LuaJIT reports the Lua caller of this C function as level 1.
	return luaL_error(P, "%s", msg);
}

/* Push a read-only proxy of the table at @p idx, called @p name in messages. */
static void push_readonly(lua_State *P, int idx, const char *name)
{
	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		idx = lua_gettop(P) + idx + 1;
	lua_newtable(P);
	lua_createtable(P, 0, 4);
	lua_pushvalue(P, idx);
	lua_setfield(P, -2, "__index");
	lua_pushstring(P, name);
	lua_pushcclosure(P, l_readonly_newindex, 1);
	lua_setfield(P, -2, "__newindex");
	lua_pushboolean(P, 0);
	lua_setfield(P, -2, "__metatable");
	lua_pushlightuserdata(P, &rt_pvm_key_readonly);
	rt_pvm_push_reg(P, &rt_pvm_key_readonly);
	lua_rawset(P, -3);
	lua_setmetatable(P, -2);
}

int rt_pvm_open_sandbox(lua_State *P)
{
	static const luaL_Reg libs[] = {
		{ "", luaopen_base },
		{ LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table },
		{ LUA_MATHLIBNAME, luaopen_math },
		{ NULL, NULL },
	};
	static const char *const removed[] = {
		"load",		  "loadstring", "dofile",  "loadfile", "require",
		"module",	  "getfenv",	"setfenv", "gcinfo",   "newproxy",
		"collectgarbage", "coroutine",	"package", "io",       "os",
		"debug",	  "jit",	"ffi",	   "bit",      NULL,
	};

	for (const luaL_Reg *lib = libs; lib->func; lib++) {
		lua_pushcfunction(P, lib->func);
		lua_pushstring(P, lib->name);
		lua_call(P, 1, 0);
	}
	lua_settop(P, 0);
	// No trace is ever compiled in this state, so the count hook always fires.
	luaJIT_setmode(P, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);

	// The mark read-only metatables carry (a unique table, compared by identity).
	lua_pushlightuserdata(P, &rt_pvm_key_readonly);
	lua_newtable(P);
	lua_rawset(P, LUA_REGISTRYINDEX);

	for (const char *const *name = removed; *name; name++) {
		lua_pushnil(P);
		lua_setfield(P, LUA_GLOBALSINDEX, *name);
	}
	lua_getglobal(P, LUA_STRLIBNAME);
	lua_pushnil(P);
	lua_setfield(P, -2, "dump");
	lua_pop(P, 1);

	lua_pushcfunction(P, l_tostring);
	lua_pushvalue(P, -1);
	lua_setglobal(P, "tostring");
	lua_pushcclosure(P, l_print, 1);
	lua_setglobal(P, "print");
	// Wrapped in the real library tables: the string metatable's __index is the real one.
	lua_getglobal(P, LUA_STRLIBNAME);
	lua_getfield(P, -1, "format");
	lua_pushcclosure(P, l_format, 1);
	lua_setfield(P, -2, "format");
	lua_getglobal(P, LUA_TABLIBNAME);
	static const char *const writers[] = { "insert", "remove", "sort", NULL };
	for (const char *const *w = writers; *w; w++) {
		lua_getfield(P, -1, *w);
		lua_pushfstring(P, "table.%s", *w);
		lua_pushcclosure(P, l_table_writer, 2);
		lua_setfield(P, -2, *w);
	}
	lua_settop(P, 0);
	lua_pushcfunction(P, l_pcall);
	lua_setglobal(P, "pcall");
	lua_pushcfunction(P, l_xpcall);
	lua_setglobal(P, "xpcall");
	lua_pushcfunction(P, l_rawset);
	lua_setglobal(P, "rawset");

	// Hide the string metatable: its __index is the real string table.
	lua_pushliteral(P, "");
	if (lua_getmetatable(P, -1)) {
		lua_pushboolean(P, 0);
		lua_setfield(P, -2, "__metatable");
	}
	lua_settop(P, 0);

	static const char *const shared[] = { LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
					      NULL };
	for (const char *const *name = shared; *name; name++) {
		lua_getglobal(P, *name);
		push_readonly(P, -1, *name);
		lua_setglobal(P, *name);
		lua_pop(P, 1);
	}
	lua_pushvalue(P, LUA_GLOBALSINDEX);
	push_readonly(P, -1, "_G");
	lua_pushvalue(P, -1);
	lua_setglobal(P, "_G");
	lua_pushlightuserdata(P, &rt_pvm_key_env);
	lua_insert(P, -2);
	lua_rawset(P, LUA_REGISTRYINDEX);
	lua_settop(P, 0);
	// Collect a little earlier than the default (200): the cap counts uncollected garbage.
	lua_gc(P, LUA_GCSETPAUSE, 150);
	return 0;
}
