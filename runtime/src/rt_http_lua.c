/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.http`: listen(opts, on_request, on_ws) -> server, the `exchange`
 * object a handler answers through, the `ws` object of a websocket connection, and
 * request(opts, callback) for the client (rt_http_client.c).
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "rt_http.h"
#include "rt_natives.h"

#define SERVER_MT   "moonstack.http.Server"
#define EXCHANGE_MT "moonstack.http.Exchange"
#define WS_MT	    "moonstack.http.WebSocket"

static char *opt_string(lua_State *L, int idx, const char *field, bool required)
{
	lua_getfield(L, idx, field);
	char *v = NULL;
	if (lua_isstring(L, -1)) {
		v = strdup(lua_tostring(L, -1));
	} else if (!lua_isnil(L, -1) || required) {
		lua_pop(L, 1);
		luaL_error(L, "http: option '%s' must be a string", field);
	}
	lua_pop(L, 1);
	return v;
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

static bool header_text_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

void rt_http_headers_parse(lua_State *L, int idx, struct rt_buf *out)
{
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
			luaL_error(L, "http: headers must map names to strings");
		const char *name = lua_tostring(L, -2);
		const char *value = lua_tostring(L, -1);
		// Reject anything that could split the header block (response splitting).
		if (!*name || strlen(name) > 100 || strpbrk(name, " :\t") ||
		    !header_text_ok(name) || !header_text_ok(value))
			luaL_error(L, "http: invalid header '%s'", name);
		rt_buf_add(out, name, strlen(name) + 1);
		rt_buf_add(out, value, strlen(value) + 1);
		lua_pop(L, 1);
	}
}

void rt_tls_opts_parse(lua_State *L, int idx, struct rt_tls_opts *t, bool server)
{
	t->verify_ref = LUA_NOREF;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	t->cert = opt_string(L, idx, "cert", false);
	t->key = opt_string(L, idx, "key", false);
	t->ca = opt_string(L, idx, "ca", false);
	if ((t->cert == NULL) != (t->key == NULL))
		luaL_error(L, "http: tls.cert and tls.key go together");
	if (server && !t->cert)
		luaL_error(L, "http: a TLS server needs tls.cert and tls.key");
	lua_getfield(L, idx, "client_cert");
	const char *mode = lua_isnil(L, -1) ? "none" : lua_tostring(L, -1);
	if (!mode || (strcmp(mode, "none") && strcmp(mode, "request") && strcmp(mode, "require")))
		luaL_error(L, "http: tls.client_cert must be 'none', 'request' or 'require'");
	t->require_peer = strcmp(mode, "require") == 0;
	lua_pop(L, 1);
	lua_getfield(L, idx, "insecure");
	t->insecure = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, idx, "skip_hostname");
	t->skip_hostname = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, idx, "verify");
	if (lua_isfunction(L, -1)) {
		t->verify_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	} else {
		if (!lua_isnil(L, -1))
			luaL_error(L, "http: tls.verify must be a function");
		lua_pop(L, 1);
	}
}

/* ---- server ---- */

struct server_ud {
	struct rt_http_server *srv;
};

static struct rt_http_server *check_server(lua_State *L)
{
	struct server_ud *ud = luaL_checkudata(L, 1, SERVER_MT);
	return ud->srv;
}

static void parse_ws_options(lua_State *L, struct rt_http_server *srv)
{
	lua_getfield(L, 1, "ws_paths");
	if (!lua_isnil(L, -1)) {
		luaL_checktype(L, -1, LUA_TTABLE);
		int n = (int)lua_objlen(L, -1);
		srv->ws_paths = calloc((size_t)n + 1, sizeof(char *));
		for (int i = 1; i <= n; i++) {
			lua_rawgeti(L, -1, i);
			if (!lua_isstring(L, -1))
				luaL_error(L, "http: ws_paths must be a list of strings");
			srv->ws_paths[srv->n_ws_paths++] = strdup(lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	// protocols: [0] ours (HTTP, and websockets without a subprotocol), then named ones.
	lua_getfield(L, 1, "ws_protocols");
	int n = lua_istable(L, -1) ? (int)lua_objlen(L, -1) : 0;
	srv->protocols = calloc((size_t)n + 2, sizeof(struct lws_protocols));
	srv->protocols[0].name = "moonstack";
	srv->protocols[0].callback = rt_http_server_callback;
	srv->protocols[0].per_session_data_size = sizeof(struct rt_http_pss);
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (!lua_isstring(L, -1))
			luaL_error(L, "http: ws_protocols must be a list of strings");
		srv->protocols[i].name = strdup(lua_tostring(L, -1));
		srv->protocols[i].callback = rt_http_server_callback;
		srv->protocols[i].per_session_data_size = sizeof(struct rt_http_pss);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
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
	ud->srv = NULL;
	luaL_getmetatable(L, SERVER_MT);
	lua_setmetatable(L, -2);
	struct rt_http_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return luaL_error(L, "http.listen: out of memory");
	srv->refs = 1; // the userdata's
	srv->on_request_ref = srv->on_ws_ref = srv->self_ref = LUA_NOREF;
	srv->tls.verify_ref = LUA_NOREF;
	ud->srv = srv; // from here __gc owns it, even if parsing raises below

	srv->unix_path = opt_string(L, 1, "unix", false);
	srv->host = opt_string(L, 1, "host", false);
	srv->name = opt_string(L, 1, "name", false);
	if (!srv->name)
		srv->name = strdup(srv->unix_path ? "unix" : "http");
	srv->port = (int)opt_integer(L, 1, "port", 0, 0, 65535);
	srv->unix_mode = (mode_t)opt_integer(L, 1, "mode", 0600, 0, 0777);
	srv->max_body = (size_t)opt_integer(L, 1, "max_body", RT_HTTP_DEFAULT_MAX_BODY, 0,
					    1024L * 1024 * 1024);
	srv->max_ws_message = (size_t)opt_integer(L, 1, "max_ws_message", RT_WS_DEFAULT_MAX_MESSAGE,
						  1, 256L * 1024 * 1024);
	lua_getfield(L, 1, "any_port");
	bool any_port = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (!srv->unix_path && !srv->port && !any_port)
		return luaL_error(L, "http.listen: give 'port' (or 'any_port = true'), or 'unix'");
	if (srv->unix_path && srv->host)
		return luaL_error(L, "http.listen: 'unix' and 'host' are exclusive");
	parse_ws_options(L, srv);
	lua_getfield(L, 1, "tls");
	rt_tls_opts_parse(L, lua_gettop(L), &srv->tls, true);
	lua_pop(L, 1);

	char err[256] = "";
	int rc = rt_http_server_start(srv, L, err, sizeof(err));
	if (rc != 0) {
		srv->closed = true;
		const char *colon = strchr(err, ':');
		lua_pushnil(L);
		lua_pushstring(L, err);
		lua_pushlstring(L, err, colon ? (size_t)(colon - err) : strlen(err));
		return 3;
	}
	lua_pushvalue(L, 2);
	srv->on_request_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lua_isfunction(L, 3)) {
		lua_pushvalue(L, 3);
		srv->on_ws_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushvalue(L, 4);
	srv->self_ref = luaL_ref(L, LUA_REGISTRYINDEX); // alive while listening
	if (srv->unix_path)
		rt_log(RT_LOG_DEBUG, "http", "%s listening on unix:%s", srv->name, srv->unix_path);
	else
		rt_log(RT_LOG_DEBUG, "http", "%s listening on %s:%d", srv->name,
		       srv->host ? srv->host : "*", srv->port);
	return 1;
}

static int l_server_close(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	if (srv && !srv->closed) {
		if (srv->ctx)
			srv->ctx->active_L = L;
		rt_http_server_close(srv, L);
		if (srv->ctx && !srv->ctx_released)
			srv->ctx->active_L = NULL;
	}
	return 0;
}

static int l_server_gc(lua_State *L)
{
	struct server_ud *ud = luaL_checkudata(L, 1, SERVER_MT);
	if (ud->srv) {
		rt_http_server_close(ud->srv, NULL); // unreachable: its refs died with it
		rt_http_server_unref(ud->srv);
		ud->srv = NULL;
	}
	return 0;
}

static int l_server_port(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	if (!srv || srv->unix_path)
		return 0;
	lua_pushinteger(L, srv->port);
	return 1;
}

static int l_server_address(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	if (srv->unix_path)
		lua_pushfstring(L, "unix:%s", srv->unix_path);
	else
		lua_pushfstring(L, "%s:%d", srv->host ? srv->host : "*", srv->port);
	return 1;
}

static int l_server_stats(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	lua_createtable(L, 0, 2);
	lua_pushnumber(L, (lua_Number)srv->requests);
	lua_setfield(L, -2, "requests");
	lua_pushboolean(L, srv->closed);
	lua_setfield(L, -2, "closed");
	return 1;
}

static int l_server_tostring(lua_State *L)
{
	struct rt_http_server *srv = check_server(L);
	lua_pushfstring(L, "http.server(%s%s)", srv->name, srv->closed ? ", closed" : "");
	return 1;
}

/* ---- exchange ---- */

struct exchange_ud {
	struct rt_http_exchange *ex;
};

void rt_http_push_exchange(lua_State *L, struct rt_http_exchange *ex)
{
	struct exchange_ud *ud = lua_newuserdata(L, sizeof(*ud));
	ud->ex = ex;
	ex->refs++;
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
		// Build in a userdata-free way: parse may raise, so parse before allocating body.
		rt_http_headers_parse(L, 3, &headers);
	} else if (!lua_isnoneornil(L, 3)) {
		return luaL_argerror(L, 3, "headers must be a table");
	}
	char *copy = malloc(len ? len : 1);
	if (!copy) {
		rt_buf_free(&headers);
		return luaL_error(L, "exchange:respond: out of memory");
	}
	memcpy(copy, body, len);
	int rc = rt_http_exchange_respond(ex, status, &headers, copy, len);
	rt_buf_free(&headers);
	if (rc == -EALREADY)
		return rt_push_fail(L, "EALREADY", "response already sent");
	if (rc == -ENOTCONN)
		return rt_push_fail(L, "ECLOSED", "the client went away");
	lua_pushboolean(L, 1);
	return 1;
}

/* exchange:header(name) -> value | nil: any request header, including custom ones */
static int l_exchange_header(lua_State *L)
{
	struct rt_http_exchange *ex = check_exchange(L);
	const char *name = luaL_checkstring(L, 2);
	if (!ex->wsi || ex->responded)
		return 0;
	char key[128];
	snprintf(key, sizeof(key), "%s:", name);
	for (char *p = key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		const char *tok = (const char *)lws_token_to_string((enum lws_token_indexes)t);
		if (tok && strcasecmp(tok, key) == 0) {
			int n = lws_hdr_total_length(ex->wsi, (enum lws_token_indexes)t);
			if (n <= 0)
				return 0;
			char *v = malloc((size_t)n + 1);
			if (v && lws_hdr_copy(ex->wsi, v, n + 1, (enum lws_token_indexes)t) >= 0)
				lua_pushstring(L, v);
			free(v);
			return v ? 1 : 0;
		}
	}
	int n = lws_hdr_custom_length(ex->wsi, key, (int)strlen(key));
	if (n < 0)
		return 0;
	char *v = malloc((size_t)n + 1);
	if (!v)
		return 0;
	int got = lws_hdr_custom_copy(ex->wsi, v, n + 1, key, (int)strlen(key));
	if (got >= 0)
		lua_pushlstring(L, v, (size_t)got);
	free(v);
	return got >= 0 ? 1 : 0;
}

static int l_exchange_connected(lua_State *L)
{
	lua_pushboolean(L, check_exchange(L)->wsi != NULL);
	return 1;
}

static int l_exchange_responded(lua_State *L)
{
	lua_pushboolean(L, check_exchange(L)->responded);
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
	lua_pushfstring(L, "http.exchange(%s %s)", ex->method, ex->path ? ex->path : "?");
	return 1;
}

/* ---- websocket ---- */

struct ws_ud {
	struct rt_ws_conn *c;
};

void rt_ws_push(lua_State *L, struct rt_ws_conn *c)
{
	if (c->lua_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, c->lua_ref);
		return;
	}
	struct ws_ud *ud = lua_newuserdata(L, sizeof(*ud));
	ud->c = c;
	c->refs++;
	luaL_getmetatable(L, WS_MT);
	lua_setmetatable(L, -2);
	if (c->wsi) {
		lua_pushvalue(L, -1);
		c->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX); // alive while open
	}
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
	lua_pushnumber(L, (lua_Number)check_ws(L)->id);
	return 1;
}

static int l_ws_path(lua_State *L)
{
	lua_pushstring(L, check_ws(L)->path);
	return 1;
}

static int l_ws_is_open(lua_State *L)
{
	struct rt_ws_conn *c = check_ws(L);
	lua_pushboolean(L, c->wsi != NULL && !c->close_requested);
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
	lua_pushfstring(L, "http.websocket(#%d %s%s)", (int)c->id, c->path,
			c->wsi ? "" : ", closed");
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
	{ "send", l_ws_send }, { "close", l_ws_close },	    { "id", l_ws_id },
	{ "path", l_ws_path }, { "is_open", l_ws_is_open }, { NULL, NULL },
};
static const luaL_Reg ws_meta[] = {
	{ "__gc", l_ws_gc },
	{ "__tostring", l_ws_tostring },
	{ NULL, NULL },
};
static const luaL_Reg functions[] = {
	{ "listen", l_listen },
	{ "request", rt_http_client_request },
	{ NULL, NULL },
};

int luaopen_moonstack_native_http(lua_State *L)
{
	rt_newclass(L, SERVER_MT, server_methods, server_meta);
	rt_newclass(L, EXCHANGE_MT, exchange_methods, exchange_meta);
	rt_newclass(L, WS_MT, ws_methods, ws_meta);
	rt_http_client_register(L);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	return 1;
}
