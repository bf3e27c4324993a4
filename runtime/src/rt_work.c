/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for bindings that need the runtime's libuv loop: libuv failures and work queued on the
 * thread pool. Kept apart from rt_util.c, which the stand-alone Lua modules (rockspecs/) link. */
#include "moonstack/rt.h"

int rt_push_uv_fail(lua_State *L, int uverr)
{
	return rt_push_fail(L, uv_err_name(uverr), "%s", uv_strerror(uverr));
}

int rt_queue_lua_work(lua_State *L, uv_work_t *work, int cb_idx, lua_State **state, int *cb_ref,
		      uv_work_cb work_cb, uv_after_work_cb after_cb)
{
	struct rt_runtime *rt = rt_from_lua(L);
	*state = rt_state(rt);
	lua_pushvalue(L, cb_idx);
	*cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	int rc = uv_queue_work(rt_loop(rt), work, work_cb, after_cb);
	if (rc) {
		luaL_unref(L, LUA_REGISTRYINDEX, *cb_ref);
		*cb_ref = LUA_NOREF;
	}
	return rc;
}
