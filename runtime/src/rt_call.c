/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The protected-call contract: every entry from C into Lua goes through rt_pcall() with a
 * traceback handler; an error in a callback is logged and counted, and the loop goes on.
 */
#include <stdlib.h>

#include "moonstack/rt.h"
#include "rt_internal.h"

int rt_traceback(lua_State *L)
{
	// [err]
	if (lua_istable(L, 1)) {
		// Error objects ({code, msg, detail}) stay tables; record where they were raised.
		lua_getfield(L, 1, "traceback");
		bool has = !lua_isnil(L, -1);
		lua_pop(L, 1);
		if (!has) {
			luaL_traceback(L, L, NULL, 1);
			lua_setfield(L, 1, "traceback");
		}
		return 1;
	}
	const char *msg = lua_tostring(L, 1);
	if (!msg) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)",
					      luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

int rt_pcall(lua_State *L, int nargs, int nresults)
{
	int base = lua_gettop(L) - nargs; // the function's index
	lua_pushcfunction(L, rt_traceback);
	lua_insert(L, base);
	int status = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	return status;
}

/* Render the error value on top of the stack as text (tables: msg + traceback). */
static const char *error_text(lua_State *L)
{
	int idx = lua_gettop(L);
	if (lua_istable(L, idx)) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		if (luaL_callmeta(L, idx, "__tostring") && lua_isstring(L, -1)) {
			luaL_addvalue(&b);
		} else {
			lua_getfield(L, idx, "msg");
			if (lua_isstring(L, -1))
				luaL_addvalue(&b);
			else
				lua_pop(L, 1);
		}
		lua_getfield(L, idx, "traceback");
		if (lua_isstring(L, -1)) {
			luaL_addstring(&b, "\n");
			luaL_addvalue(&b);
		} else {
			lua_pop(L, 1);
		}
		luaL_pushresult(&b);
		lua_replace(L, idx);
	}
	const char *s = lua_tostring(L, idx);
	return s ? s : "(non-string error)";
}

int rt_pcall_log(lua_State *L, int nargs, int nresults, const char *what)
{
	int status = rt_pcall(L, nargs, nresults);
	if (status == 0)
		return 0;
	struct rt_runtime *rt = rt_from_lua(L);
	const char *text = error_text(L);
	if (status == LUA_ERRMEM) {
		// The main state cannot be trusted any more: exit and let the supervisor restart
		// us.
		rt_log(RT_LOG_ERROR, "runtime", "%s: out of memory: %s", what, text);
		exit(70);
	}
	rt->callback_errors++;
	rt_log(RT_LOG_ERROR, "runtime", "error in %s: %s", what, text);
	lua_pop(L, 1);
	return status;
}

int rt_luv_pcall(lua_State *L, int nargs, int nresults, int flags)
{
	int top = lua_gettop(L) - nargs - 1;
	int status = rt_pcall_log(L, nargs, nresults, "luv callback");
	if (status != 0)
		return -status;
	return nresults == LUA_MULTRET ? lua_gettop(L) - top : nresults;
}
