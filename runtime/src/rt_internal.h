/* SPDX-License-Identifier: Apache-2.0 */
/* The runtime object's layout and the runtime's private entry points. */
#ifndef MOONSTACK_RT_INTERNAL_H
#define MOONSTACK_RT_INTERNAL_H

#include "moonstack/rt.h"

struct rt_shutdown_hook {
	rt_shutdown_fn fn;
	void *ud;
	struct rt_shutdown_hook *next;
};

struct rt_runtime {
	uv_loop_t loop;
	lua_State *L;
	int exit_code;
	bool exit_requested;
	unsigned long callback_errors;
	char *lua_dir;
	struct rt_shutdown_hook *hooks;
	int shutdown_work; /**< asynchronous teardown still in progress */
};

/** Install the module searchers (dev --lua-dir, then embedded) into package.loaders. */
void rt_loader_install(lua_State *L, const char *lua_dir);

/** Register every native and bundled C library in package.preload. */
void rt_natives_preload(lua_State *L);

#endif
