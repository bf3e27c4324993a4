/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for bindings: classes (metatables) and the nil, message, CODE failure contract. */
#include <stdio.h>

#include "moonstack/rt.h"

void rt_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, const luaL_Reg *meta)
{
	if (!luaL_newmetatable(L, tname)) {
		lua_pop(L, 1);
		return;
	}
	// [mt]
	if (meta)
		luaL_register(L, NULL, meta);
	lua_newtable(L); // [mt, methods]
	if (methods)
		luaL_register(L, NULL, methods);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, tname);
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}

int rt_push_fail(lua_State *L, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", code, msg);
	lua_pushstring(L, code);
	return 3;
}

int rt_push_uv_fail(lua_State *L, int uverr)
{
	return rt_push_fail(L, uv_err_name(uverr), "%s", uv_strerror(uverr));
}
