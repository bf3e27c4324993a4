/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The preload table: every native (`moonstack.native.<mod>`) and bundled C library (luv,
 * cjson) the binary links. Natives are listed in rt_natives.def; they are linked in, so
 * release builds load nothing from cpath.
 */
#include <luv/luv.h>

#include "rt_internal.h"
#include "rt_natives.h"

#include <lua-cjson.h> /* needs lua.h first */

extern int luaopen_cjson_safe(lua_State *L);

static const luaL_Reg preloads[] = {
	{ "luv", luaopen_luv },
	{ "cjson", luaopen_cjson },
	{ "cjson.safe", luaopen_cjson_safe },
#define RT_NATIVE(mod) { "moonstack.native." #mod, luaopen_moonstack_native_##mod },
#include "rt_natives.def"
#undef RT_NATIVE
	{ NULL, NULL },
};

void rt_natives_preload(lua_State *L)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	for (const luaL_Reg *r = preloads; r->name; r++) {
		lua_pushcfunction(L, r->func);
		lua_setfield(L, -2, r->name);
	}
	lua_pop(L, 2);
}
