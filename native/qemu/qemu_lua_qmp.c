/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding of the QMP client (qemu_qmp.h) on the runtime's loop, part of
 * `moonstack.native.qemu`:
 *
 *   local conn, err, code = native.qmp_connect(path, {
 *     timeout_ms = 5000, max_line = 1048576, retry_ms = 20,
 *     on_ready = function(greeting_line) end,   -- the session is ready
 *     on_event = function(event_line) end,      -- each asynchronous event
 *     on_close = function(err, code) end })     -- once; err nil when conn:close() ended it
 *   local id, err, code = conn:execute(command, args_json_or_nil, function(line, err, code) end)
 *   conn:close()            -- idempotent; pending callbacks get nil, 'ECANCELED: ...'
 *   conn:ready(), conn:pending()
 *
 * Lines are handed over raw (Lua decodes them). A connection keeps itself alive until on_close
 * has run, whether or not the caller still holds it. Callbacks run from the loop through the
 * runtime's protected call (an error is logged). At runtime shutdown every connection is
 * closed without calling back into Lua.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "qemu/qemu_lua.h"
#include "qemu/qemu_qmp.h"

#define QMP_CLASS "moonstack.qemu.Qmp"

struct lqmp_ud;

/* A connection's Lua side; lives until the connection's `closed` callback. */
struct lqmp {
	struct rt_runtime *rt;
	struct qemu_qmp *q;
	struct lqmp_ud *ud; /* the userdata, anchored in the table below */
	int tbl;	    /* registry ref: { ud, on_ready, on_event, on_close, [id] = cb } */
	bool quiet;	    /* no more Lua callbacks (runtime shutting down) */
	bool lua_gone;	    /* the Lua state is closing: no Lua API at all */
	bool work_begun;    /* rt_shutdown_work_begin() was called for it */
};

struct lqmp_ud {
	struct lqmp *c; /* NULL once closed */
};

/* Push the connection's table and its field @p key (string) or [@p id]; returns the type. */
static int push_member(lua_State *L, struct lqmp *c, const char *key, double id)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->tbl);
	if (key)
		lua_pushstring(L, key);
	else
		lua_pushnumber(L, id);
	lua_rawget(L, -2);
	return lua_type(L, -1);
}

static void on_ready(struct qemu_qmp *q, const char *greeting, size_t len, void *ud)
{
	struct lqmp *c = ud;
	if (c->quiet)
		return;
	lua_State *L = rt_state(c->rt);
	int top = lua_gettop(L);
	if (push_member(L, c, "on_ready", 0) == LUA_TFUNCTION) {
		lua_pushlstring(L, greeting, len);
		rt_pcall_log(L, 1, 0, "QMP on_ready callback");
	}
	lua_settop(L, top);
}

static void on_event(struct qemu_qmp *q, const char *line, size_t len, void *ud)
{
	struct lqmp *c = ud;
	if (c->quiet)
		return;
	lua_State *L = rt_state(c->rt);
	int top = lua_gettop(L);
	if (push_member(L, c, "on_event", 0) == LUA_TFUNCTION) {
		lua_pushlstring(L, line, len);
		rt_pcall_log(L, 1, 0, "QMP on_event callback");
	}
	lua_settop(L, top);
}

static void on_response(struct qemu_qmp *q, uint64_t id, const char *line, size_t len,
			const struct qemu_error *err, void *ud)
{
	struct lqmp *c = ud;
	if (c->lua_gone)
		return;
	lua_State *L = rt_state(c->rt);
	int top = lua_gettop(L);
	int type = push_member(L, c, NULL, (double)id); // [tbl, cb]
	lua_pushnumber(L, (double)id);			// forget the callback first
	lua_pushnil(L);
	lua_rawset(L, -4);
	if (type == LUA_TFUNCTION && !c->quiet) {
		int nargs = 1;
		if (line) {
			lua_pushlstring(L, line, len);
		} else {
			lua_pushnil(L);
			lua_pushfstring(L, "%s: %s", err->code, err->msg);
			lua_pushstring(L, err->code);
			nargs = 3;
		}
		rt_pcall_log(L, nargs, 0, "QMP execute callback");
	}
	lua_settop(L, top);
}

static void on_shutdown(void *ud, int stage);

static void on_closed(struct qemu_qmp *q, const struct qemu_error *err, void *ud)
{
	struct lqmp *c = ud;
	if (!c->lua_gone) {
		lua_State *L = rt_state(c->rt);
		int top = lua_gettop(L);
		if (c->ud)
			c->ud->c = NULL;
		if (!c->quiet && push_member(L, c, "on_close", 0) == LUA_TFUNCTION) {
			if (err) {
				lua_pushfstring(L, "%s: %s", err->code, err->msg);
				lua_pushstring(L, err->code);
			} else {
				lua_pushnil(L);
				lua_pushnil(L);
			}
			rt_pcall_log(L, 2, 0, "QMP on_close callback");
		}
		lua_settop(L, top);
		luaL_unref(L, LUA_REGISTRYINDEX, c->tbl);
	}
	rt_off_shutdown(c->rt, on_shutdown, c);
	if (c->work_begun)
		rt_shutdown_work_done(c->rt);
	free(c);
}

/* Runtime shutdown, stage 0: close without calling back into Lua; the loop drains it. */
static void on_shutdown(void *ud, int stage)
{
	struct lqmp *c = ud;
	if (stage != 0 || c->work_begun)
		return;
	c->quiet = true;
	c->work_begun = true;
	rt_shutdown_work_begin(c->rt);
	qemu_qmp_close(c->q);
}

/* String argument @p idx without embedded NUL (NULL when optional and absent). */
static const char *arg_str(lua_State *L, int idx, bool optional)
{
	if (optional && lua_isnoneornil(L, idx))
		return NULL;
	size_t len;
	const char *s = luaL_checklstring(L, idx, &len);
	if (strlen(s) != len)
		luaL_argerror(L, idx, "contains a NUL byte");
	return s;
}

/* The connection behind the userdata at 1, or NULL once it is closed. */
static struct lqmp *check_conn(lua_State *L)
{
	struct lqmp_ud *u = luaL_checkudata(L, 1, QMP_CLASS);
	return u->c;
}

static int optint(lua_State *L, int t, const char *key, lua_Number max)
{
	lua_getfield(L, t, key);
	lua_Number v = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
	lua_pop(L, 1);
	if (!(v >= 0 && v <= max) || v != floor(v)) // NaN fails too
		luaL_error(L, "qmp_connect: opts.%s must be an integer in 0..%.0f", key, max);
	return (int)v;
}

/* native.qmp_connect(path, opts) */
static int l_qmp_connect(lua_State *L)
{
	const char *path = arg_str(L, 1, false);
	if (lua_isnoneornil(L, 2))
		lua_newtable(L);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_settop(L, 2);
	static const char *const cbs[] = { "on_ready", "on_event", "on_close" };
	for (int i = 0; i < 3; i++) {
		lua_getfield(L, 2, cbs[i]);
		if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
			return luaL_error(L, "qmp_connect: opts.%s must be a function", cbs[i]);
		lua_pop(L, 1);
	}
	struct qemu_qmp_options o = {
		.timeout_ms = (uint64_t)optint(L, 2, "timeout_ms", 86400000),
		.max_line = (size_t)optint(L, 2, "max_line", QEMU_QMP_CEIL_LINE),
		.retry_ms = (unsigned)optint(L, 2, "retry_ms", 60000),
	};
	struct lqmp *c = calloc(1, sizeof(*c));
	if (!c)
		return luaL_error(L, "qmp_connect: out of memory");
	c->rt = rt_from_lua(L);
	c->tbl = LUA_NOREF;
	if (rt_on_shutdown(c->rt, on_shutdown, c) < 0) {
		free(c);
		return luaL_error(L, "qmp_connect: out of memory");
	}
	struct lqmp_ud *u = lua_newuserdata(L, sizeof(*u)); // 3
	u->c = NULL;
	luaL_getmetatable(L, QMP_CLASS);
	lua_setmetatable(L, -2);
	lua_createtable(L, 0, 4); // 4: the connection's table
	lua_pushvalue(L, 3);
	lua_setfield(L, 4, "ud");
	for (int i = 0; i < 3; i++) {
		lua_getfield(L, 2, cbs[i]);
		lua_setfield(L, 4, cbs[i]);
	}
	struct qemu_qmp_callbacks cb = {
		.ready = on_ready,
		.response = on_response,
		.event = on_event,
		.closed = on_closed,
	};
	struct qemu_error e;
	if (qemu_qmp_connect(rt_loop(c->rt), path, &o, &cb, c, &c->q, &e) < 0) {
		rt_off_shutdown(c->rt, on_shutdown, c);
		free(c);
		return rt_push_fail(L, e.code, "%s", e.msg);
	}
	c->tbl = luaL_ref(L, LUA_REGISTRYINDEX); // pops the table
	c->ud = u;
	u->c = c;
	return 1;
}

/* conn:execute(command, args_json_or_nil, callback) */
static int l_execute(lua_State *L)
{
	struct lqmp *c = check_conn(L);
	const char *cmd = arg_str(L, 2, false);
	const char *args = arg_str(L, 3, true);
	luaL_checktype(L, 4, LUA_TFUNCTION);
	if (!c)
		return rt_push_fail(L, "EPIPE", "the QMP connection is closed");
	struct qemu_error e;
	uint64_t id;
	if (qemu_qmp_execute(c->q, cmd, args, &id, &e) < 0)
		return rt_push_fail(L, e.code, "%s", e.msg);
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->tbl);
	lua_pushnumber(L, (double)id);
	lua_pushvalue(L, 4);
	lua_rawset(L, -3);
	lua_pushnumber(L, (double)id);
	return 1;
}

/* conn:close() */
static int l_close(lua_State *L)
{
	struct lqmp *c = check_conn(L);
	if (c)
		qemu_qmp_close(c->q);
	return 0;
}

/* __gc: only reached when the Lua state closes (an open connection anchors itself). */
static int l_gc(lua_State *L)
{
	struct lqmp_ud *u = luaL_checkudata(L, 1, QMP_CLASS);
	if (u->c) {
		u->c->lua_gone = true;
		u->c->quiet = true;
		u->c->ud = NULL;
		qemu_qmp_close(u->c->q);
		u->c = NULL;
	}
	return 0;
}

static int l_ready(lua_State *L)
{
	struct lqmp *c = check_conn(L);
	lua_pushboolean(L, c && qemu_qmp_ready(c->q));
	return 1;
}

static int l_pending(lua_State *L)
{
	struct lqmp *c = check_conn(L);
	lua_pushinteger(L, c ? (lua_Integer)qemu_qmp_pending(c->q) : 0);
	return 1;
}

static int l_tostring(lua_State *L)
{
	struct lqmp *c = check_conn(L);
	lua_pushstring(L, !c			 ? "qmp<closed>"
			  : qemu_qmp_ready(c->q) ? "qmp<ready>"
						 : "qmp<connecting>");
	return 1;
}

void qemu_lua_qmp_open(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "execute", l_execute }, { "close", l_close }, { "ready", l_ready },
		{ "pending", l_pending }, { NULL, NULL },
	};
	static const luaL_Reg meta[] = {
		{ "__gc", l_gc },
		{ "__tostring", l_tostring },
		{ NULL, NULL },
	};
	rt_newclass(L, QMP_CLASS, methods, meta);
	lua_pushcfunction(L, l_qmp_connect);
	lua_setfield(L, -2, "qmp_connect");
}
