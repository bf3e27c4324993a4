/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime's services the verification natives call, for the stand-alone Lua C modules the
 * rockspec builds (plain LuaJIT, OpenResty): there is no moonstack event loop, no TLS peer
 * cache and no runtime log in such a process. Work that would go to the loop's thread pool
 * fails with ENOSYS (the Lua wrappers call the synchronous form outside a task), a peer
 * certificate is always decoded from its bytes, and callback errors go to stderr.
 * The rest of the binding helpers (classes, hex, the failure contract) come from
 * runtime/src/rt_util.c, compiled into each module as is.
 */
#include <stdio.h>

#include "moonstack/rt.h"
#include "moonstack/rt_tls.h"

int rt_push_uv_fail(lua_State *L, int uverr)
{
	(void)uverr;
	return rt_push_fail(L, "ENOSYS", "no moonstack event loop in this process");
}

int rt_queue_lua_work(lua_State *L, uv_work_t *work, int cb_idx, lua_State **state, int *cb_ref,
		      uv_work_cb work_cb, uv_after_work_cb after_cb)
{
	(void)L, (void)work, (void)cb_idx, (void)state, (void)work_cb, (void)after_cb;
	*cb_ref = LUA_NOREF;
	return UV_ENOSYS;
}

int rt_pcall_log(lua_State *L, int nargs, int nresults, const char *what)
{
	int status = lua_pcall(L, nargs, nresults, 0);
	if (status != 0) {
		const char *msg = lua_tostring(L, -1);
		fprintf(stderr, "moonstack: error in %s: %s\n", what, msg ? msg : "(non-string)");
		lua_pop(L, 1);
	}
	return status;
}

X509 *rt_tls_peer_x509(const void *der, size_t len)
{
	(void)der, (void)len;
	return NULL;
}
