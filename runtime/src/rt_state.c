/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime object: the libuv loop, the main lua_State bound to it through luv, and the
 * shutdown sequence (foreign-loop users first, then handles, then Lua, then the loop).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>
#include <luv/luv.h>

#include "rt_internal.h"

static const char RT_REGISTRY_KEY = 0;

struct rt_runtime *rt_from_lua(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)&RT_REGISTRY_KEY);
	lua_rawget(L, LUA_REGISTRYINDEX);
	struct rt_runtime *rt = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (!rt)
		luaL_error(L, "moonstack runtime not initialised in this state");
	return rt;
}

uv_loop_t *rt_loop(struct rt_runtime *rt)
{
	return &rt->loop;
}

lua_State *rt_state(struct rt_runtime *rt)
{
	return rt->L;
}

void rt_request_exit(struct rt_runtime *rt, int code)
{
	rt->exit_code = code;
	rt->exit_requested = true;
	uv_stop(&rt->loop);
}

void rt_set_exit_code(struct rt_runtime *rt, int code)
{
	rt->exit_code = code;
}

int rt_exit_code(const struct rt_runtime *rt)
{
	return rt->exit_code;
}

bool rt_exit_requested(const struct rt_runtime *rt)
{
	return rt->exit_requested;
}

unsigned long rt_callback_errors(const struct rt_runtime *rt)
{
	return rt->callback_errors;
}

int rt_on_shutdown(struct rt_runtime *rt, rt_shutdown_fn fn, void *ud)
{
	struct rt_shutdown_hook *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->fn = fn;
	h->ud = ud;
	h->next = rt->hooks;
	rt->hooks = h;
	return 0;
}

void rt_off_shutdown(struct rt_runtime *rt, rt_shutdown_fn fn, void *ud)
{
	for (struct rt_shutdown_hook **p = &rt->hooks; *p; p = &(*p)->next) {
		if ((*p)->fn == fn && (*p)->ud == ud) {
			struct rt_shutdown_hook *h = *p;
			*p = h->next;
			free(h);
			return;
		}
	}
}

void rt_shutdown_work_begin(struct rt_runtime *rt)
{
	rt->shutdown_work++;
}

void rt_shutdown_work_done(struct rt_runtime *rt)
{
	if (rt->shutdown_work > 0)
		rt->shutdown_work--;
}

/* Turn the loop without blocking until announced teardown work is finished (bounded). */
static void drain_shutdown_work(struct rt_runtime *rt)
{
	for (int i = 0; rt->shutdown_work > 0 && i < 10000; i++)
		uv_run(&rt->loop, UV_RUN_NOWAIT);
	if (rt->shutdown_work > 0)
		rt_log(RT_LOG_WARN, "runtime", "%d teardown tasks did not finish",
		       rt->shutdown_work);
}

static void run_hooks(struct rt_runtime *rt, int stage)
{
	struct rt_shutdown_hook *h = rt->hooks;
	while (h) {
		struct rt_shutdown_hook *next = h->next; // a hook may remove itself
		h->fn(h->ud, stage);
		h = next;
	}
}

static int open_state(lua_State *L)
{
	struct rt_runtime *rt = lua_touserdata(L, 1);
	luaL_openlibs(L);
	lua_pushlightuserdata(L, (void *)&RT_REGISTRY_KEY);
	lua_pushlightuserdata(L, rt);
	lua_rawset(L, LUA_REGISTRYINDEX);
	// luv must know the loop and our callback runner before luaopen_luv: its default
	// runner exits the process on the first callback error.
	luv_set_loop(L, &rt->loop);
	luv_set_callback(L, rt_luv_pcall);
	rt_natives_preload(L);
	rt_loader_install(L, rt->lua_dir);
	return 0;
}

struct rt_runtime *rt_create(const struct rt_options *opts)
{
	struct rt_runtime *rt = calloc(1, sizeof(*rt));
	if (!rt)
		return NULL;
	int err = uv_loop_init(&rt->loop);
	if (err) {
		rt_log(RT_LOG_ERROR, "runtime", "uv_loop_init: %s", uv_strerror(err));
		free(rt);
		return NULL;
	}
	if (opts && opts->lua_dir)
		rt->lua_dir = strdup(opts->lua_dir);
	rt->L = luaL_newstate();
	if (!rt->L) {
		rt_log(RT_LOG_ERROR, "runtime", "cannot create the Lua state");
		uv_loop_close(&rt->loop);
		free(rt->lua_dir);
		free(rt);
		return NULL;
	}
	lua_pushcfunction(rt->L, open_state);
	lua_pushlightuserdata(rt->L, rt);
	if (rt_pcall(rt->L, 1, 0) != 0) {
		rt_log(RT_LOG_ERROR, "runtime", "setting up the Lua state failed: %s",
		       lua_tostring(rt->L, -1));
		lua_close(rt->L);
		uv_loop_close(&rt->loop);
		free(rt->lua_dir);
		free(rt);
		return NULL;
	}
	return rt;
}

void rt_run(struct rt_runtime *rt)
{
	if (!rt->exit_requested)
		uv_run(&rt->loop, UV_RUN_DEFAULT);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void rt_destroy(struct rt_runtime *rt)
{
	if (!rt)
		return;
	run_hooks(rt, 0);
	drain_shutdown_work(rt);
	// Handles still open belong to Lua (luv) or to no one: close them so the loop drains.
	// luv frees its handle data from the userdata's __gc, which lua_close runs below.
	uv_walk(&rt->loop, close_walk_cb, NULL);
	uv_run(&rt->loop, UV_RUN_DEFAULT);
	run_hooks(rt, 1);
	drain_shutdown_work(rt);
	uv_run(&rt->loop, UV_RUN_DEFAULT);
	lua_close(rt->L);
	uv_run(&rt->loop, UV_RUN_DEFAULT);
	int err = uv_loop_close(&rt->loop);
	if (err)
		rt_log(RT_LOG_WARN, "runtime", "uv_loop_close: %s", uv_strerror(err));
	while (rt->hooks) {
		struct rt_shutdown_hook *h = rt->hooks;
		rt->hooks = h->next;
		free(h);
	}
	free(rt->lua_dir);
	free(rt);
}
