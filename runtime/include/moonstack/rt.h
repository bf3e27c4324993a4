/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one header natives and runtime bindings include: the runtime object (moonstack/rt_base.h),
 * the Lua side of it (the main state, the protected-call contract) and small helpers for writing
 * luv-style bindings.
 */
#ifndef MOONSTACK_RT_H
#define MOONSTACK_RT_H

#include <lauxlib.h>
#include <lua.h>

#include "moonstack/rt_base.h"

/** The main state. */
lua_State *rt_state(struct rt_runtime *rt);

/** The runtime that owns @p L (the main state or a coroutine of it). Never NULL. */
struct rt_runtime *rt_from_lua(lua_State *L);

/**
 * Message handler for lua_pcall: turns the error into a string (honouring __tostring on error
 * objects) and appends a traceback. Error objects that are tables are kept as tables, with
 * the traceback stored in their `traceback` field.
 */
int rt_traceback(lua_State *L);

/**
 * Call the function below @p nargs arguments in protected mode with rt_traceback() as the
 * handler. Returns the lua_pcall status; on error the error value is left on the stack.
 */
int rt_pcall(lua_State *L, int nargs, int nresults);

/**
 * Like rt_pcall(), but on error log it (with @p what as context), count it as a callback
 * error, and pop it. LUA_ERRMEM is fatal. Returns the lua_pcall status.
 */
int rt_pcall_log(lua_State *L, int nargs, int nresults, const char *what);

/** The callback runner luv uses (luv_CFpcall): errors are logged and the loop goes on. */
int rt_luv_pcall(lua_State *L, int nargs, int nresults, int flags);

/**
 * Create (or fetch) the metatable @p tname with @p methods as its __index and @p meta as
 * metamethods. Leaves nothing on the stack.
 */
void rt_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, const luaL_Reg *meta);

/** Push nil, "CODE: message", "CODE" (the expected-failure contract). Returns 3. */
int rt_push_fail(lua_State *L, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** Push nil, "ENAME: strerror", "ENAME" for a libuv error. Returns 3. */
int rt_push_uv_fail(lua_State *L, int uverr);

/** Queue `work` (its data set by the caller) on libuv's thread pool with the Lua function at
 *  stack index @p cb_idx as its completion callback: *@p cb_ref gets a registry reference to
 *  it and *@p state the runtime's main state, for @p after_cb to call it with. Returns 0, or
 *  the uv error (the reference released). */
int rt_queue_lua_work(lua_State *L, uv_work_t *work, int cb_idx, lua_State **state, int *cb_ref,
		      uv_work_cb work_cb, uv_after_work_cb after_cb);

/**
 * `moonstack policy-worker ARGS...` (hidden; @p argv[0] is "policy-worker"): serve one policy
 * VM over stdin/stdout for a daemon that can kill it (runtime/src/rt_policyvm_worker.c has the
 * options and the protocol). Runs without the Lua runtime. Returns the exit code.
 */
int rt_policy_worker_main(int argc, char **argv);

/**
 * `moonstack ns-exec [--net | --net-join PATH | --net-pid PID] [--mount] -- PROG ARGS...`
 * (hidden; @p argv[0] is "ns-exec"): exec PROG in new network and/or mount namespaces
 * (runtime/src/rt_nsexec.c). Runs without the Lua runtime. Returns the exit code if it cannot
 * exec: 126 when a namespace cannot be made, 127 when PROG cannot be executed, 2 on misuse.
 */
int rt_ns_exec_main(int argc, char **argv);

#endif
