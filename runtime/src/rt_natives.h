/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarations of every native's luaopen function, and RT_NATIVE_PRELOADS, the list that
 * rt_natives.c puts into package.preload. Add one declaration and one list line per native.
 */
#ifndef MOONSTACK_RT_NATIVES_H
#define MOONSTACK_RT_NATIVES_H

#include <lua.h>

int luaopen_moonstack_native_policyvm(lua_State *L);
int luaopen_moonstack_native_http(lua_State *L);

#define RT_NATIVE_PRELOADS                                                  \
	{ "moonstack.native.policyvm", luaopen_moonstack_native_policyvm }, \
		{ "moonstack.native.http", luaopen_moonstack_native_http },

#endif
