/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Declarations of every native's luaopen function, and RT_NATIVE_PRELOADS, the list that
 * rt_natives.c puts into package.preload. Add one declaration and one list line per native.
 */
#ifndef MOONSTACK_RT_NATIVES_H
#define MOONSTACK_RT_NATIVES_H

#include <lua.h>

#define RT_NATIVE_PRELOADS

#endif
