/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.proxy`: the gateway's C data path (proxy.h) driven from Lua.
 *
 *   local p, err, code = proxy.new(opts)   -- binds now; errors: nil, "CODE: msg", CODE
 *   p:port(i)                 -- bound port of opts.listen[i]
 *   p:publish(snapshot)       -- strict check, TLS contexts, atomic swap; returns the version
 *                                (a certificate that does not load: nil, msg, 'ETLS')
 *   p:on_route_miss(fn|nil)   -- fn(key, meta) on the loop for "<id>:<port>" not in routes
 *   p:decide(key, decision)   -- answer a miss: { allow, to_port?, pp? }
 *   p:counters(), p:conns([max]), p:close()
 *
 * Tables and behaviours: native/proxy/README.md. Misuse raises; a closed proxy's methods
 * return nil, "EBADF: the proxy is closed", "EBADF" (close is idempotent).
 */
#include "proxy/proxy_lua.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLASS "moonstack.proxy"

struct lproxy {
	struct proxy_server *s;
	struct rt_runtime *rt;
	uv_async_t *async; /**< on the main loop: route misses */
	int miss_ref;
	unsigned workers;
	size_t nlisten;
};

static void close_proxy(lua_State *L, struct lproxy *p);

static struct lproxy *check(lua_State *L)
{
	return luaL_checkudata(L, 1, CLASS);
}

static void on_async_closed(uv_handle_t *h)
{
	free(h);
}

static void on_shutdown(void *ud, int stage)
{
	struct lproxy *p = ud;
	if (stage == 0)
		close_proxy(NULL, p);
}

static void close_proxy(lua_State *L, struct lproxy *p)
{
	if (!p->s)
		return;
	proxy_server_free(p->s); /* joins the workers: nobody sends on the async after this */
	p->s = NULL;
	uv_close((uv_handle_t *)p->async, on_async_closed);
	p->async = NULL;
	rt_off_shutdown(p->rt, on_shutdown, p);
	if (p->miss_ref != LUA_NOREF) {
		luaL_unref(L ? L : rt_state(p->rt), LUA_REGISTRYINDEX, p->miss_ref);
		p->miss_ref = LUA_NOREF;
	}
}

static int closed(lua_State *L)
{
	return rt_push_fail(L, "EBADF", "the proxy is closed");
}

/* ---- proxy.new ---- */

static double opt_num(lua_State *L, int t, const char *k, const char *what, double def, double lo,
		      double hi, bool integer)
{
	lua_getfield(L, t, k);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return def;
	}
	double v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN;
	lua_pop(L, 1);
	if (!(v >= lo && v <= hi) || (integer && v != floor(v))) {
		lua_pushfstring(L, "%s%s must be %s in %f..%f", what, k,
				integer ? "an integer" : "a number", lo, hi);
		luaL_argerror(L, 1, lua_tostring(L, -1));
	}
	return v;
}

static bool opt_bool(lua_State *L, int t, const char *k, bool def)
{
	lua_getfield(L, t, k);
	bool v = def;
	if (!lua_isnil(L, -1)) {
		if (!lua_isboolean(L, -1)) {
			lua_pushfstring(L, "opts.%s must be a boolean", k);
			luaL_argerror(L, 1, lua_tostring(L, -1));
		}
		v = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	return v;
}

static void read_options(lua_State *L, struct proxy_options *o)
{
	static const char *const keys[] = {
		"listen",	 "workers",    "timeouts",
		"buffer_size",	 "inbound_pp", "max_connections_per_app",
		"connect_top_n", "splice",     "io_uring",
		"backlog",	 NULL
	};
	static const char *const tkeys[] = { "connect", "handshake", "idle", "shutdown",
					     "total",	"pp_header", NULL };
	static const char *const lkeys[] = { "host", "port", NULL };

	luaL_checktype(L, 1, LUA_TTABLE);
	proxy_options_default(o);
	proxy_lua_only_keys(L, 1, 1, "opts.", keys);
	lua_getfield(L, 1, "listen");
	if (!lua_istable(L, -1) || lua_objlen(L, -1) == 0 || lua_objlen(L, -1) > PROXY_MAX_LISTEN)
		luaL_argerror(L, 1, "opts.listen must be a list of 1..16 { host, port }");
	int lt = lua_gettop(L);
	o->nlisten = lua_objlen(L, lt);
	for (size_t i = 0; i < o->nlisten; i++) {
		lua_rawgeti(L, lt, (int)i + 1);
		int e = lua_gettop(L);
		if (!lua_istable(L, e))
			luaL_argerror(L, 1, "opts.listen[i] must be a table");
		proxy_lua_only_keys(L, 1, e, "opts.listen[i].", lkeys);
		lua_getfield(L, e, "host");
		size_t n;
		const char *host = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
		if (!host || n == 0 || n >= sizeof(o->listen[i].host))
			luaL_argerror(L, 1, "opts.listen[i].host must be a numeric address");
		memcpy(o->listen[i].host, host, n + 1);
		lua_pop(L, 1);
		o->listen[i].port =
			(uint16_t)opt_num(L, e, "port", "opts.listen[i].", -1, 0, 65535, true);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	o->workers =
		(unsigned)opt_num(L, 1, "workers", "opts.",
				  o->workers > PROXY_MAX_WORKERS ? PROXY_MAX_WORKERS : o->workers,
				  1, PROXY_MAX_WORKERS, true);
	lua_getfield(L, 1, "timeouts");
	if (!lua_isnil(L, -1)) {
		int t = lua_gettop(L);
		if (!lua_istable(L, t))
			luaL_argerror(L, 1, "opts.timeouts must be a table");
		proxy_lua_only_keys(L, 1, t, "opts.timeouts.", tkeys);
		double *dst[] = { &o->t_connect,  &o->t_handshake, &o->t_idle,
				  &o->t_shutdown, &o->t_total,	   &o->t_pp_header };
		for (int i = 0; i < 6; i++)
			*dst[i] = opt_num(L, t, tkeys[i], "opts.timeouts.", *dst[i], 0.001, 1e7,
					  false);
	}
	lua_pop(L, 1);
	o->buffer_size = (size_t)opt_num(L, 1, "buffer_size", "opts.", 65536, 1024, 16 << 20, true);
	o->inbound_pp = opt_bool(L, 1, "inbound_pp", false);
	o->max_connections_per_app =
		(unsigned)opt_num(L, 1, "max_connections_per_app", "opts.", 0, 0, 1e9, true);
	o->connect_top_n =
		(unsigned)opt_num(L, 1, "connect_top_n", "opts.", 3, 0, PROXY_MAX_TOP_N, true);
	o->splice = opt_bool(L, 1, "splice", true);
	o->io_uring = opt_bool(L, 1, "io_uring", true);
	o->backlog = (int)opt_num(L, 1, "backlog", "opts.", 4096, 1, 65535, true);
}

static void miss_notify(void *ud)
{
	uv_async_send(ud);
}

struct miss_ctx {
	lua_State *L;
	struct lproxy *p;
};

static void push_str(lua_State *L, const char *k, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, k);
}

static void call_miss(void *ud, const struct proxy_miss *m)
{
	struct miss_ctx *x = ud;
	lua_State *L = x->L;

	if (x->p->miss_ref == LUA_NOREF)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, x->p->miss_ref);
	lua_pushstring(L, m->key);
	lua_createtable(L, 0, 8);
	push_str(L, "id", m->id);
	lua_pushinteger(L, m->port);
	lua_setfield(L, -2, "port");
	push_str(L, "mode", m->mode);
	push_str(L, "sni", m->sni);
	push_str(L, "app_id", m->app_id);
	push_str(L, "instance_id", m->instance_id);
	push_str(L, "client", m->client);
	rt_pcall_log(L, 2, 0, "proxy on_route_miss");
}

static void on_async(uv_async_t *a)
{
	struct lproxy *p = a->data;
	if (!p || !p->s)
		return;
	struct miss_ctx x = { rt_state(p->rt), p };
	proxy_server_take_misses(p->s, call_miss, &x);
}

static int l_new(lua_State *L)
{
	struct proxy_options o;
	char err[256], code[32];

	read_options(L, &o);
	lua_settop(L, 1);
	struct lproxy *p = lua_newuserdata(L, sizeof(*p));
	memset(p, 0, sizeof(*p));
	p->miss_ref = LUA_NOREF;
	p->rt = rt_from_lua(L);
	luaL_getmetatable(L, CLASS);
	lua_setmetatable(L, -2);
	p->async = calloc(1, sizeof(*p->async));
	if (!p->async || uv_async_init(rt_loop(p->rt), p->async, on_async)) {
		free(p->async);
		p->async = NULL;
		return luaL_error(L, "proxy.new: cannot create the async handle");
	}
	p->async->data = p;
	p->s = proxy_server_new(&o, err, sizeof(err), code, sizeof(code));
	if (!p->s) {
		uv_close((uv_handle_t *)p->async, on_async_closed);
		p->async = NULL;
		return rt_push_fail(L, code, "%s", strchr(err, ':') ? strchr(err, ':') + 2 : err);
	}
	if (rt_on_shutdown(p->rt, on_shutdown, p) < 0) {
		close_proxy(L, p);
		return luaL_error(L, "proxy.new: out of memory");
	}
	p->workers = o.workers;
	p->nlisten = o.nlisten;
	return 1;
}

/* ---- methods ---- */

static int l_port(lua_State *L)
{
	struct lproxy *p = check(L);
	lua_Integer i = luaL_checkinteger(L, 2);
	if (i < 1 || (size_t)i > p->nlisten)
		return luaL_argerror(L, 2, "no such listen address");
	if (!p->s)
		return closed(L);
	lua_pushinteger(L, proxy_server_port(p->s, (size_t)i - 1));
	return 1;
}

static int l_publish(lua_State *L)
{
	struct lproxy *p = check(L);
	char err[300];

	luaL_checktype(L, 2, LUA_TTABLE);
	if (!p->s)
		return closed(L);
	struct proxy_snapshot *snap = proxy_lua_snapshot(L, 2);
	int64_t v = proxy_snapshot_version(snap);
	if (proxy_server_publish(p->s, snap, err, sizeof(err)))
		return rt_push_fail(L, "ETLS", "%s", err);
	lua_pushnumber(L, (lua_Number)v);
	return 1;
}

static int l_on_route_miss(lua_State *L)
{
	struct lproxy *p = check(L);
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!p->s)
		return closed(L);
	if (p->miss_ref != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, p->miss_ref);
	p->miss_ref = LUA_NOREF;
	if (lua_isfunction(L, 2)) {
		lua_pushvalue(L, 2);
		p->miss_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		proxy_server_on_miss(p->s, miss_notify, p->async);
	} else {
		proxy_server_on_miss(p->s, NULL, NULL);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_decide(lua_State *L)
{
	struct lproxy *p = check(L);
	size_t n;
	const char *key = luaL_checklstring(L, 2, &n);
	if (!proxy_lua_route_key(key, n))
		return luaL_argerror(L, 2, "key must be \"<id>:<port>\"");
	luaL_checktype(L, 3, LUA_TTABLE);
	struct proxy_decision d;
	proxy_lua_decision(L, 3, 3, "decision", &d);
	if (!p->s)
		return closed(L);
	proxy_server_decide(p->s, key, &d);
	lua_pushboolean(L, 1);
	return 1;
}

static void set_num(lua_State *L, const char *k, double v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

static void push_stat(void *ud, const struct proxy_stat *st)
{
	lua_State *L = ud;
	lua_createtable(L, 0, 4);
	set_num(L, "active", (double)st->active);
	set_num(L, "total", (double)st->total);
	set_num(L, "bytes_in", (double)st->bytes_in);
	set_num(L, "bytes_out", (double)st->bytes_out);
	lua_setfield(L, -2, st->id);
}

static int l_counters(lua_State *L)
{
	struct lproxy *p = check(L);
	struct proxy_counters c;

	if (!p->s)
		return closed(L);
	proxy_server_counters(p->s, &c);
	lua_createtable(L, 0, 11);
	set_num(L, "active", (double)c.active);
	set_num(L, "total", (double)c.total);
	set_num(L, "bytes_in", (double)c.bytes_in);
	set_num(L, "bytes_out", (double)c.bytes_out);
	set_num(L, "snapshot_version", (double)c.snapshot_version);
	set_num(L, "queued", (double)c.queued);
	set_num(L, "queued_short", (double)c.queued_short);
	lua_createtable(L, 0, PROXY_R_COUNT);
	for (int i = 0; i < PROXY_R_COUNT; i++) {
		if (c.refused[i]) {
			set_num(L, proxy_refusal_name(i), (double)c.refused[i]);
		}
	}
	lua_setfield(L, -2, "refused");
	lua_newtable(L);
	proxy_server_stats_each(p->s, false, push_stat, L);
	lua_setfield(L, -2, "apps");
	lua_newtable(L);
	proxy_server_stats_each(p->s, true, push_stat, L);
	lua_setfield(L, -2, "instances");
	return 1;
}

struct conns_ctx {
	lua_State *L;
	int n;
};

static void push_conn(void *ud, const struct proxy_conn_info *ci)
{
	struct conns_ctx *x = ud;
	lua_State *L = x->L;
	lua_createtable(L, 0, 12);
	set_num(L, "id", (double)ci->id);
	set_num(L, "worker", ci->worker + 1);
	push_str(L, "client", ci->client);
	push_str(L, "sni", ci->sni);
	push_str(L, "mode", ci->mode);
	push_str(L, "app_id", ci->app_id);
	push_str(L, "instance_id", ci->instance_id);
	push_str(L, "backend", ci->backend);
	set_num(L, "age_ms", (double)ci->age_ms);
	set_num(L, "bytes_in", (double)ci->bytes_in);
	set_num(L, "bytes_out", (double)ci->bytes_out);
	set_num(L, "snapshot_version", (double)ci->snapshot_version);
	lua_rawseti(L, -2, ++x->n);
}

static int l_conns(lua_State *L)
{
	struct lproxy *p = check(L);
	lua_Integer max = luaL_optinteger(L, 2, 0);
	if (max < 0)
		return luaL_argerror(L, 2, "max must be >= 0");
	if (!p->s)
		return closed(L);
	lua_newtable(L);
	struct conns_ctx x = { L, 0 };
	proxy_server_conns_each(p->s, (size_t)max, push_conn, &x);
	return 1;
}

static int l_close(lua_State *L)
{
	close_proxy(L, check(L));
	return 0;
}

static int l_gc(lua_State *L)
{
	close_proxy(L, check(L));
	return 0;
}

static int l_tostring(lua_State *L)
{
	struct lproxy *p = check(L);
	if (!p->s)
		lua_pushliteral(L, "proxy<closed>");
	else
		lua_pushfstring(L, "proxy<%d workers, port %d, snapshot %d>", (int)p->workers,
				(int)proxy_server_port(p->s, 0), (int)proxy_server_version(p->s));
	return 1;
}

int luaopen_moonstack_native_proxy(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "port", l_port },
		{ "publish", l_publish },
		{ "on_route_miss", l_on_route_miss },
		{ "decide", l_decide },
		{ "counters", l_counters },
		{ "conns", l_conns },
		{ "close", l_close },
		{ NULL, NULL },
	};
	static const luaL_Reg meta[] = {
		{ "__gc", l_gc },
		{ "__tostring", l_tostring },
		{ NULL, NULL },
	};
	rt_newclass(L, CLASS, methods, meta);
	lua_createtable(L, 0, 1);
	lua_pushcfunction(L, l_new);
	lua_setfield(L, -2, "new");
	return 1;
}
