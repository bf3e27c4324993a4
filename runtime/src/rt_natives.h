/* SPDX-License-Identifier: Apache-2.0 */
/* Declares the luaopen function of every native listed in rt_natives.def. */
#ifndef MOONSTACK_RT_NATIVES_H
#define MOONSTACK_RT_NATIVES_H

#include <lua.h>

#define RT_NATIVE(mod) int luaopen_moonstack_native_##mod(lua_State *L);
#include "rt_natives.def"
#undef RT_NATIVE

#endif
