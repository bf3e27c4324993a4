/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.http` over the C API of moonstack/rt_http.h: listen(opts, on_request,
 * on_ws) -> server, the `exchange` object a handler answers through, the `ws` object of a
 * websocket connection, and request(opts, callback) for the client (rt_http_lua_client.c). The
 * C handlers call the Lua functions through protected calls; the registry refs are owned here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rt_http_lua.h"
#include "rt_natives.h"

#define SERVER_MT   "moonstack.http.Server"
#define EXCHANGE_MT "moonstack.http.Exchange"
#define WS_MT	    "moonstack.http.WebSocket"
/* Registry field: lightuserdata(struct rt_ws_conn *) -> its `ws` object, while open. */
#define WS_LIVE "moonstack.http.ws_live"

/* The state of the binding call in progress, for callbacks it triggers synchronously. */
static lua_State *active_L;

lua_State *rt_http_lua_state(struct rt_runtime *rt)
{
	return active_L ? active_L : rt_state(rt);
}

lua_State *rt_http_lua_enter(lua_State *L)
{
	lua_State *prev = active_L;
	active_L = L;
	return prev;
}

void rt_http_lua_leave(lua_State *prev)
{
	active_L = prev;
}

static lua_Integer opt_integer(lua_State *L, int idx, const char *field, lua_Integer def,
			       lua_Integer min, lua_Integer max)
{
	lua_getfield(L, idx, field);
	lua_Integer v = def;
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1))
			luaL_error(L, "http: option '%s' must be an integer", field);
		v = lua_tointeger(L, -1);
		if (v < min || v > max)
			luaL_error(L, "http: option '%s' must be between %d and %d", field,
				   (int)min, (int)max);
	}
	lua_pop(L, 1);
	return v;
}

/* ---- server ---- */

/* The Lua side of a server: its handlers' refs. Freed by the server's release. */
struct lserver {
	struct rt_runtime *rt;
	int on_request_ref;
	int on_ws_ref;
	int ws_filter_ref; /* opts.ws_filter, or LUA_NOREF */
	int self_ref;	   /* the userdata, kept alive while listening */
	struct rt_http_lua_hook hook;
};

struct server_ud {
	struct rt_http_server *srv;
	struct lserver *ls; /* owned here until the server starts, then by the server */
	struct rt_http_lua_scratch scratch;
};

static struct rt_http_server *check_server(lua_State *L)
{
	struct server_ud *ud = luaL_checkudata(L, 1, SERVER_MT);
	return ud->srv;
}

static void push_exchange(lua_State *L, struct rt_http_exchange *ex);
static void ws_push(lua_State *L, struct rt_ws_conn *c);

static int add_header(void *user, const char *name, const char *value)
{
	lua_State *L = user;
	lua_pushstring(L, value);
	lua_setfield(L, -2, name);
	return 0;
}

/* Push the `req` table of @p req for the handlers. */
static void push_request(lua_State *L, struct rt_http_exchange *ex,
			 const struct rt_http_request *req)
{
	lua_createtable(L, 0, 8);
	lua_pushstring(L, req->method);
	lua_setfield(L, -2, "method");
	lua_pushstring(L, req->path);
	lua_setfield(L, -2, "path");
	lua_pushstring(L, req->query);
	lua_setfield(L, -2, "query");
	lua_pushlstring(L, req->body, req->body_len);
	lua_setfield(L, -2, "body");
	lua_newtable(L);
	rt_http_exchange_each_header(ex, add_header, L);
	lua_setfield(L, -2, "headers");
	lua_pushstring(L, req->peer);
	lua_setfield(L, -2, "peer");
	if (req->peer_cert) {
		lua_pushlstring(L, (const char *)req->peer_cert, req->peer_cert_len);
		lua_setfield(L, -2, "peer_cert");
	}
	lua_pushstring(L, req->server);
	lua_setfield(L, -2, "server");
}

/* on_request(req, exchange) */
static int on_request(void *user, struct rt_http_exchange *ex, const struct rt_http_request *req)
{
	struct lserver *ls = user;
	lua_State *L = rt_http_lua_state(ls->rt);
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, ls->on_request_ref);
	push_request(L, ex, req);
	// [on_request, req]
	push_exchange(L, ex);
	int status = rt_pcall_log(L, 2, 0, "HTTP request handler");
	lua_settop(L, top);
	return status;
}

/* ws_filter(req, exchange) -> true to accept the upgrade (anything else, or an error, refuses) */
static bool on_ws_filter(void *user, struct rt_http_exchange *ex, const struct rt_http_request *req)
{
	struct lserver *ls = user;
	if (ls->ws_filter_ref == LUA_NOREF)
		return true;
	lua_State *L = rt_http_lua_state(ls->rt);
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, ls->ws_filter_ref);
	push_request(L, ex, req);
	push_exchange(L, ex);
	bool ok = rt_pcall_log(L, 2, 1, "websocket upgrade filter") == 0 && lua_isboolean(L, -1) &&
		  lua_toboolean(L, -1);
	lua_settop(L, top);
	return ok;
}

/* on_ws(event, ws [, data, binary]); the `ws` object is let go at close */
static void on_ws(void *user, struct rt_ws_conn *c, enum rt_ws_event event, const void *data,
		  size_t len, bool binary)
{
	static const char *const names[] = { "open", "message", "close" };
	struct lserver *ls = user;
	lua_State *L = rt_http_lua_state(ls->rt);
	int top = lua_gettop(L);
	if (ls->on_ws_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, ls->on_ws_ref);
		lua_pushstring(L, names[event]);
		ws_push(L, c);
		int nargs = 2;
		if (data) {
			lua_pushlstring(L, data, len);
			lua_pushboolean(L, binary);
			nargs = 4;
		}
		rt_pcall_log(L, nargs, 0, "websocket handler");
		lua_settop(L, top);
	}
	if (event == RT_WS_CLOSE) {
		lua_getfield(L, LUA_REGISTRYINDEX, WS_LIVE);
		lua_pushlightuserdata(L, c);
		lua_pushnil(L);
		lua_rawset(L, -3);
		lua_settop(L, top);
	}
}

static void parse_ws_options(lua_State *L, struct rt_http_server_config *cfg,
			     struct rt_http_lua_scratch *s)
{
	lua_getfield(L, 1, "ws_paths");
	if (!lua_isnil(L, -1)) {
		luaL_checktype(L, -1, LUA_TTABLE);
		int n = (int)lua_objlen(L, -1);
		const char **paths = rt_http_lua_keep(L, s, NULL, ((size_t)n + 1) * sizeof(char *));
		cfg->ws_paths = paths;
		for (int i = 1; i <= n; i++) {
			lua_rawgeti(L, -1, i);
			if (!lua_isstring(L, -1))
				luaL_error(L, "http: ws_paths must be a list of strings");
			const char *p = lua_tostring(L, -1);
			paths[cfg->n_ws_paths++] = rt_http_lua_keep(L, s, p, strlen(p));
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "ws_protocols");
	int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
	const char **protocols = rt_http_lua_keep(L, s, NULL, ((size_t)n + 1) * sizeof(char *));
	cfg->ws_protocols = protocols;
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (!lua_isstring(L, -1))
			luaL_error(L, "http: ws_protocols must be a list of strings");
		const char *p = lua_tostring(L, -1);
		protocols[cfg->n_ws_protocols++] = rt_http_lua_keep(L, s, p, strlen(p));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static void release_server(void *user)
{
	free(user); // its refs were released at close (or die with the state)
}

/* listen(opts, on_request [, on_ws]) -> server | nil, msg, code */
static int l_listen(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!lua_isnoneornil(L, 3))
		luaL_checktype(L, 3, LUA_TFUNCTION);
	lua_settop(L, 3);

	struct server_ud *ud = lua_newuserdata(L, sizeof(*ud)); // [opts, req, ws, ud]
	memset(ud, 0, sizeof(*ud));
	luaL_getmetatable(L, SERVER_MT);
	lua_setmetatable(L, -2);
	struct lserver *ls = calloc(1, sizeof(*ls));
	if (!ls)
		return luaL_error(L, "http.listen: out of memory");
	ls->rt = rt_from_lua(L);
	ls->on_request_ref = ls->on_ws_ref = ls->ws_filter_ref = ls->self_ref = ls->hook.ref =
		LUA_NOREF;
	ls->hook.rt = ls->rt;
	ud->ls = ls; // from here __gc owns it, even if parsing raises below
	struct rt_http_lua_scratch *s = &ud->scratch;
	struct rt_http_server_config cfg;
	rt_http_server_config_init(&cfg);

	cfg.unix_path = rt_http_lua_opt_string(L, 1, "unix", false, s);
	cfg.host = rt_http_lua_opt_string(L, 1, "host", false, s);
	cfg.name = rt_http_lua_opt_string(L, 1, "name", false, s);
	cfg.port = (int)opt_integer(L, 1, "port", 0, 0, 65535);
	cfg.unix_mode = (mode_t)opt_integer(L, 1, "mode", 0600, 0, 0777);
	cfg.max_body = (size_t)opt_integer(L, 1, "max_body", RT_HTTP_DEFAULT_MAX_BODY, 0,
					   1024L * 1024 * 1024);
	cfg.max_ws_message = (size_t)opt_integer(L, 1, "max_ws_message", RT_WS_DEFAULT_MAX_MESSAGE,
						 1, 256L * 1024 * 1024);
	lua_getfield(L, 1, "any_port");
	bool any_port = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (!cfg.unix_path && !cfg.port && !any_port)
		return luaL_error(L, "http.listen: give 'port' (or 'any_port = true'), or 'unix'");
	if (cfg.unix_path && cfg.host)
		return luaL_error(L, "http.listen: 'unix' and 'host' are exclusive");
	parse_ws_options(L, &cfg, s);
	lua_getfield(L, 1, "tls");
	rt_http_lua_tls_parse(L, lua_gettop(L), &cfg.tls, &ls->hook, s, true);
	lua_pop(L, 1);
	cfg.on_request = on_request;
	cfg.on_ws = lua_isfunction(L, 3) ? on_ws : NULL;
	lua_getfield(L, 1, "ws_filter");
	bool has_filter = lua_isfunction(L, -1);
	if (!has_filter && !lua_isnil(L, -1))
		return luaL_error(L, "http.listen: 'ws_filter' must be a function");
	lua_pop(L, 1);
	cfg.ws_filter = has_filter ? on_ws_filter : NULL;
	cfg.user = ls;
	cfg.release = release_server;

	char err[256] = "";
	int rc = rt_http_server_start(ls->rt, &cfg, &ud->srv, err, sizeof(err));
	rt_http_lua_scratch_free(s);
	if (rc != 0) {
		rt_http_lua_hook_release(L, &ls->hook);
		free(ls);
		ud->ls = NULL;
		return rt_http_lua_push_err(L, err);
	}
	lua_pushvalue(L, 2);
	ls->on_request_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lua_isfunction(L, 3)) {
		lua_pushvalue(L, 3);
		ls->on_ws_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	if (has_filter) {
		lua_getfield(L, 1, "ws_filter");
		ls->ws_filter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushvalue(L, 4);
	ls->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); // alive while listening
	return 1;
}

static int l_server_close(lua_State *L)
{
	struct server_ud *ud = luaL_checkudata(L, 1, SERVER_MT);
	if (ud->srv && !rt_http_server_closed(ud->srv)) {
		lua_State *prev = rt_http_lua_enter(L);
		rt_http_server_close(ud->srv);
		struct lserver *ls = ud->ls; // alive while ud->srv is
		luaL_unref(L, LUA_REGISTRYINDEX, ls->on_request_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, ls->on_ws_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, ls->ws_filter_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, ls->self_ref);
		ls->on_request_ref = ls->on_ws_ref = ls->ws_filter_ref = ls->self_ref = LUA_NOREF;
		rt_http_lua_hook_release(L, &ls->hook);
		rt_http_lua_leave(prev);
	}
	return 0;
}

static int l_server_gc(lua_State *L)
{
	struct server_ud *ud = luaL_checkudata(L, 1, SERVER_MT);
	rt_http_lua_scratch_free(&ud->scratch);
	if (ud->srv) {
		rt_http_server_close(ud->srv); // unreachable: its refs died with it
		rt_http_server_unref(ud->srv); // frees ls through its release, once unused
		ud->srv = NULL;
	} else {
		free(ud->ls); // never started (parsing raised): its refs die with the state
	}
	ud->ls = NULL;
	return 0;
}

static int l_server_port(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	if (!srv || rt_http_server_unix_path(srv))
		return 0;
	lua_pushinteger(L, rt_http_server_port(srv));
	return 1;
}

static int l_server_address(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	if (!srv)
		return 0;
	const char *host = rt_http_server_host(srv);
	if (rt_http_server_unix_path(srv))
		lua_pushfstring(L, "unix:%s", rt_http_server_unix_path(srv));
	else
		lua_pushfstring(L, "%s:%d", host ? host : "*", rt_http_server_port(srv));
	return 1;
}

static int l_server_stats(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	lua_createtable(L, 0, 2);
	lua_pushnumber(L, srv ? (lua_Number)rt_http_server_requests(srv) : 0);
	lua_setfield(L, -2, "requests");
	lua_pushboolean(L, !srv || rt_http_server_closed(srv));
	lua_setfield(L, -2, "closed");
	return 1;
}

static int l_server_tostring(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	bool closed = !srv || rt_http_server_closed(srv);
	lua_pushfstring(L, "http.server(%s%s)", srv ? rt_http_server_name(srv) : "?",
			closed ? ", closed" : "");
	return 1;
}

/* ---- exchange ---- */

struct exchange_ud {
	struct rt_http_exchange *ex;
};

static void push_exchange(lua_State *L, struct rt_http_exchange *ex)
{
	struct exchange_ud *ud = lua_newuserdata(L, sizeof(*ud));
	ud->ex = ex;
	rt_http_exchange_ref(ex);
	luaL_getmetatable(L, EXCHANGE_MT);
	lua_setmetatable(L, -2);
}

static struct rt_http_exchange *check_exchange(lua_State *L)
{
	struct exchange_ud *ud = luaL_checkudata(L, 1, EXCHANGE_MT);
	return ud->ex;
}

/* exchange:respond(status, headers, body) -> true | nil, msg, code */
static int l_exchange_respond(lua_State *L)
{
	struct rt_http_exchange *ex = check_exchange(L);
	int status = (int)luaL_checkinteger(L, 2);
	if (status < 100 || status > 599)
		return luaL_argerror(L, 2, "HTTP status must be 100..599");
	size_t len = 0;
	const char *body = luaL_optlstring(L, 4, "", &len);
	struct rt_buf headers = { 0 };
	if (lua_istable(L, 3)) {
		// parse may raise: nothing is allocated before it
		rt_http_headers_parse(L, 3, &headers);
	} else if (!lua_isnoneornil(L, 3)) {
		return luaL_argerror(L, 3, "headers must be a table");
	}
	if (headers.failed)
		return luaL_error(L, "exchange:respond: out of memory");
	int rc = rt_http_exchange_respond(ex, status, headers.data, headers.len, body, len);
	rt_buf_free(&headers);
	if (rc == -EALREADY)
		return rt_push_fail(L, "EALREADY", "response already sent");
	if (rc == -ENOTCONN)
		return rt_push_fail(L, "ECLOSED", "the client went away");
	if (rc)
		return luaL_error(L, "exchange:respond: out of memory");
	lua_pushboolean(L, 1);
	return 1;
}

/* exchange:begin(status, headers) -> true | nil, msg, code: a streamed answer's head */
static int l_exchange_begin(lua_State *L)
{
	struct rt_http_exchange *ex = check_exchange(L);
	int status = (int)luaL_checkinteger(L, 2);
	if (status < 100 || status > 599)
		return luaL_argerror(L, 2, "HTTP status must be 100..599");
	struct rt_buf headers = { 0 };
	if (lua_istable(L, 3))
		rt_http_headers_parse(L, 3, &headers);
	else if (!lua_isnoneornil(L, 3))
		return luaL_argerror(L, 3, "headers must be a table");
	if (headers.failed)
		return luaL_error(L, "exchange:begin: out of memory");
	int rc = rt_http_exchange_begin(ex, status, headers.data, headers.len);
	rt_buf_free(&headers);
	if (rc == -EALREADY)
		return rt_push_fail(L, "EALREADY", "response already sent");
	if (rc == -ENOTCONN)
		return rt_push_fail(L, "ECLOSED", "the client went away");
	if (rc == -EINVAL)
		return luaL_argerror(L, 3, "invalid header");
	if (rc)
		return luaL_error(L, "exchange:begin: out of memory");
	lua_pushboolean(L, 1);
	return 1;
}

/* exchange:write(data) -> true | nil, msg, code: a piece of a streamed answer */
static int l_exchange_write(lua_State *L)
{
	struct rt_http_exchange *ex = check_exchange(L);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int rc = rt_http_exchange_write(ex, data, len);
	if (rc == -ENOTCONN)
		return rt_push_fail(L, "ECLOSED", "the client went away");
	if (rc == -ENOBUFS)
		return rt_push_fail(L, "ENOBUFS", "the client is not reading");
	if (rc == -EINVAL)
		return rt_push_fail(L, "EINVAL", "not a streamed answer, or already ended");
	if (rc)
		return luaL_error(L, "exchange:write: out of memory");
	lua_pushboolean(L, 1);
	return 1;
}

/* exchange:finish(): end a streamed answer (the connection closes once it is written) */
static int l_exchange_finish(lua_State *L)
{
	rt_http_exchange_end(check_exchange(L));
	return 0;
}

/* exchange:queued() -> bytes of a streamed answer not yet written */
static int l_exchange_queued(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)rt_http_exchange_queued(check_exchange(L)));
	return 1;
}

/* exchange:header(name) -> value | nil: any request header, including custom ones */
static int l_exchange_header(lua_State *L)
{
	struct rt_http_exchange *ex = check_exchange(L);
	const char *name = luaL_checkstring(L, 2);
	size_t len;
	char *v = rt_http_exchange_header(ex, name, &len);
	if (!v)
		return 0;
	lua_pushlstring(L, v, len);
	free(v);
	return 1;
}

static int l_exchange_connected(lua_State *L)
{
	lua_pushboolean(L, rt_http_exchange_connected(check_exchange(L)));
	return 1;
}

static int l_exchange_responded(lua_State *L)
{
	lua_pushboolean(L, rt_http_exchange_responded(check_exchange(L)));
	return 1;
}

static int l_exchange_gc(lua_State *L)
{
	struct exchange_ud *ud = luaL_checkudata(L, 1, EXCHANGE_MT);
	if (ud->ex) {
		rt_http_exchange_unref(ud->ex);
		ud->ex = NULL;
	}
	return 0;
}

static int l_exchange_tostring(lua_State *L)
{
	struct rt_http_exchange *ex = check_exchange(L);
	const char *path = rt_http_exchange_path(ex);
	lua_pushfstring(L, "http.exchange(%s %s)", rt_http_exchange_method(ex), path ? path : "?");
	return 1;
}

/* ---- websocket ---- */

struct ws_ud {
	struct rt_ws_conn *c;
};

/* Push the `ws` object of @p c: created on first use, kept in WS_LIVE while the socket is open. */
static void ws_push(lua_State *L, struct rt_ws_conn *c)
{
	lua_getfield(L, LUA_REGISTRYINDEX, WS_LIVE);
	lua_pushlightuserdata(L, c);
	lua_rawget(L, -2);
	if (!lua_isnil(L, -1)) {
		lua_remove(L, -2);
		return;
	}
	lua_pop(L, 1); // [live]
	struct ws_ud *ud = lua_newuserdata(L, sizeof(*ud));
	ud->c = c;
	rt_ws_conn_ref(c);
	luaL_getmetatable(L, WS_MT);
	lua_setmetatable(L, -2);
	if (rt_ws_conn_connected(c)) {
		lua_pushlightuserdata(L, c);
		lua_pushvalue(L, -2);
		lua_rawset(L, -4); // alive while open
	}
	lua_remove(L, -2);
}

static struct rt_ws_conn *check_ws(lua_State *L)
{
	struct ws_ud *ud = luaL_checkudata(L, 1, WS_MT);
	return ud->c;
}

/* ws:send(data [, binary]) -> true | nil, msg, code */
static int l_ws_send(lua_State *L)
{
	struct rt_ws_conn *c = check_ws(L);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	int rc = rt_ws_send(c, data, len, lua_toboolean(L, 3));
	if (rc == -ENOTCONN)
		return rt_push_fail(L, "ECLOSED", "websocket is closed");
	if (rc == -ENOBUFS)
		return rt_push_fail(L, "ENOBUFS", "peer is not reading: send queue full");
	if (rc)
		return rt_push_fail(L, "ENOMEM", "out of memory");
	lua_pushboolean(L, 1);
	return 1;
}

/* ws:close([code [, reason]]) */
static int l_ws_close(lua_State *L)
{
	struct rt_ws_conn *c = check_ws(L);
	int code = (int)luaL_optinteger(L, 2, 1000);
	if (code < 1000 || code > 4999)
		return luaL_argerror(L, 2, "close code must be 1000..4999");
	rt_ws_close(c, code, luaL_optstring(L, 3, ""));
	return 0;
}

static int l_ws_id(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)rt_ws_conn_id(check_ws(L)));
	return 1;
}

static int l_ws_path(lua_State *L)
{
	lua_pushstring(L, rt_ws_conn_path(check_ws(L)));
	return 1;
}

static int l_ws_query(lua_State *L)
{
	lua_pushstring(L, rt_ws_conn_query(check_ws(L)));
	return 1;
}

static int l_ws_peer(lua_State *L)
{
	lua_pushstring(L, rt_ws_conn_peer(check_ws(L)));
	return 1;
}

static int l_ws_is_open(lua_State *L)
{
	lua_pushboolean(L, rt_ws_conn_is_open(check_ws(L)));
	return 1;
}

static int l_ws_gc(lua_State *L)
{
	struct ws_ud *ud = luaL_checkudata(L, 1, WS_MT);
	if (ud->c) {
		rt_ws_conn_unref(ud->c);
		ud->c = NULL;
	}
	return 0;
}

static int l_ws_tostring(lua_State *L)
{
	struct rt_ws_conn *c = check_ws(L);
	lua_pushfstring(L, "http.websocket(#%d %s%s)", (int)rt_ws_conn_id(c), rt_ws_conn_path(c),
			rt_ws_conn_connected(c) ? "" : ", closed");
	return 1;
}

static const luaL_Reg server_methods[] = {
	{ "close", l_server_close },
	{ "port", l_server_port },
	{ "address", l_server_address },
	{ "stats", l_server_stats },
	{ NULL, NULL },
};
static const luaL_Reg server_meta[] = {
	{ "__gc", l_server_gc },
	{ "__tostring", l_server_tostring },
	{ NULL, NULL },
};
static const luaL_Reg exchange_methods[] = {
	{ "respond", l_exchange_respond },
	{ "begin", l_exchange_begin },
	{ "write", l_exchange_write },
	{ "finish", l_exchange_finish },
	{ "queued", l_exchange_queued },
	{ "header", l_exchange_header },
	{ "connected", l_exchange_connected },
	{ "responded", l_exchange_responded },
	{ NULL, NULL },
};
static const luaL_Reg exchange_meta[] = {
	{ "__gc", l_exchange_gc },
	{ "__tostring", l_exchange_tostring },
	{ NULL, NULL },
};
static const luaL_Reg ws_methods[] = {
	{ "send", l_ws_send },	     { "close", l_ws_close },
	{ "id", l_ws_id },	     { "path", l_ws_path },
	{ "is_open", l_ws_is_open }, { "query", l_ws_query },
	{ "peer", l_ws_peer },	     { NULL, NULL },
};
static const luaL_Reg ws_meta[] = {
	{ "__gc", l_ws_gc },
	{ "__tostring", l_ws_tostring },
	{ NULL, NULL },
};
static const luaL_Reg functions[] = {
	{ "listen", l_listen },
	{ "request", rt_http_lua_request },
	{ NULL, NULL },
};

int luaopen_moonstack_native_http(lua_State *L)
{
	rt_newclass(L, SERVER_MT, server_methods, server_meta);
	rt_newclass(L, EXCHANGE_MT, exchange_methods, exchange_meta);
	rt_newclass(L, WS_MT, ws_methods, ws_meta);
	rt_http_lua_client_register(L);
	lua_getfield(L, LUA_REGISTRYINDEX, WS_LIVE);
	if (lua_isnil(L, -1)) {
		lua_newtable(L);
		lua_setfield(L, LUA_REGISTRYINDEX, WS_LIVE);
	}
	lua_pop(L, 1);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	return 1;
}
