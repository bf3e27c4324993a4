/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.http`, client side: request(opts, callback) -> request object (with
 * :cancel()) over rt_http_client_request(); the callback gets (nil, response) or
 * (err_message, nil, code) exactly once. Also what both binding files share: option parsing into
 * the C structures, and Lua functions as TLS verification hooks (`tls.verify(peer)`).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "rt_http_lua.h"

#define REQUEST_MT "moonstack.http.Request"

void *rt_http_lua_keep(lua_State *L, struct rt_http_lua_scratch *s, const void *p, size_t len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 8;
		struct rt_http_lua_item *items = realloc(s->items, cap * sizeof(*items));
		if (!items)
			luaL_error(L, "http: out of memory");
		s->items = items;
		s->cap = cap;
	}
	char *copy = calloc(1, len + 1);
	if (!copy)
		luaL_error(L, "http: out of memory");
	if (p && len)
		memcpy(copy, p, len);
	s->items[s->n].p = copy;
	s->items[s->n++].len = len;
	return copy;
}

void rt_http_lua_scratch_free(struct rt_http_lua_scratch *s)
{
	for (size_t i = 0; i < s->n; i++) {
		OPENSSL_cleanse(s->items[i].p, s->items[i].len); // may hold private key material
		free(s->items[i].p);
	}
	free(s->items);
	s->items = NULL;
	s->n = s->cap = 0;
	for (size_t i = 0; i < sizeof(s->bufs) / sizeof(s->bufs[0]); i++)
		rt_buf_free(&s->bufs[i]);
}

const char *rt_http_lua_opt_string(lua_State *L, int idx, const char *field, bool required,
				   struct rt_http_lua_scratch *s)
{
	lua_getfield(L, idx, field);
	const char *v = NULL;
	if (lua_isstring(L, -1)) {
		const char *str = lua_tostring(L, -1);
		v = rt_http_lua_keep(L, s, str, strlen(str));
	} else if (!lua_isnil(L, -1) || required) {
		lua_pop(L, 1);
		luaL_error(L, "http: option '%s' must be a string", field);
	}
	lua_pop(L, 1);
	return v;
}

int rt_http_lua_push_err(lua_State *L, const char *err)
{
	const char *colon = strchr(err, ':');
	lua_pushnil(L);
	lua_pushstring(L, err);
	lua_pushlstring(L, err, colon ? (size_t)(colon - err) : strlen(err));
	return 3;
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

void rt_http_lua_tls_parse(lua_State *L, int idx, struct rt_tls_config *t,
			   struct rt_http_lua_hook *hook, struct rt_http_lua_scratch *s,
			   bool server)
{
	hook->ref = LUA_NOREF;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	t->cert = rt_http_lua_opt_string(L, idx, "cert", false, s);
	t->key = rt_http_lua_opt_string(L, idx, "key", false, s);
	t->ca = rt_http_lua_opt_string(L, idx, "ca", false, s);
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
		hook->ref = luaL_ref(L, LUA_REGISTRYINDEX);
		t->verify = rt_http_lua_verify;
		t->verify_user = hook;
	} else {
		if (!lua_isnil(L, -1))
			luaL_error(L, "http: tls.verify must be a function");
		lua_pop(L, 1);
	}
}

static void push_der(lua_State *L, X509 *x)
{
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);
	if (len > 0) {
		lua_pushlstring(L, (const char *)der, (size_t)len);
		OPENSSL_free(der);
	} else {
		lua_pushnil(L);
	}
}

/* Push the peer description {der = leaf DER, chain = {DER...}, preverify = bool, error = str}. */
static void push_peer(lua_State *L, X509_STORE_CTX *store, int preverify_ok)
{
	lua_createtable(L, 0, 4);
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	if (leaf) {
		push_der(L, leaf);
		lua_setfield(L, -2, "der");
	}
	// The chain as the peer sent it (leaf first), for verifiers that check it themselves.
	lua_newtable(L);
	int n = 0;
	if (leaf) {
		push_der(L, leaf);
		lua_rawseti(L, -2, ++n);
	}
	STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(store);
	for (int i = 0; untrusted && i < sk_X509_num(untrusted); i++) {
		X509 *c = sk_X509_value(untrusted, i);
		if (c == leaf || X509_cmp(c, leaf) == 0)
			continue;
		push_der(L, c);
		lua_rawseti(L, -2, ++n);
	}
	lua_setfield(L, -2, "chain");
	lua_pushboolean(L, preverify_ok);
	lua_setfield(L, -2, "preverify");
	int err = X509_STORE_CTX_get_error(store);
	if (err != X509_V_OK) {
		lua_pushstring(L, X509_verify_cert_error_string(err));
		lua_setfield(L, -2, "error");
	}
}

bool rt_http_lua_verify(void *user, X509_STORE_CTX *store, bool ok, const char *why)
{
	struct rt_http_lua_hook *h = user;
	if (h->ref == LUA_NOREF)
		return ok; // released: the built-in verdict stands
	lua_State *L = rt_http_lua_state(h->rt);
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
	push_peer(L, store, ok);
	if (!ok && why) {
		lua_pushstring(L, why);
		lua_setfield(L, -2, "error");
	}
	bool accept = false;
	if (rt_pcall_log(L, 1, 2, "TLS peer verification hook") == 0) {
		accept = lua_toboolean(L, -2);
		if (!accept) {
			const char *reason = lua_tostring(L, -1);
			rt_log(RT_LOG_WARN, "tls", "peer certificate rejected by hook: %s",
			       reason ? reason : "no reason given");
		}
	}
	lua_settop(L, top);
	return accept;
}

void rt_http_lua_hook_release(lua_State *L, struct rt_http_lua_hook *h)
{
	if (h->ref != LUA_NOREF && h->ref != 0)
		luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
	h->ref = LUA_NOREF;
}

/* ---- client requests ---- */

/* The Lua side of a request in flight: freed by its completion. */
struct lreq {
	struct rt_runtime *rt;
	int cb_ref;
	int self_ref;
	struct rt_http_lua_hook hook;
};

struct request_ud {
	struct rt_http_req *r;
	struct lreq *lr; /* until the request started (then its completion owns it) */
	struct rt_http_lua_scratch scratch;
};

/* Push the packed "name\0value\0" list @p h as a table. */
static void push_headers(lua_State *L, const char *h, size_t len)
{
	lua_newtable(L);
	for (size_t off = 0; off < len;) {
		const char *name = h + off;
		const char *value = name + strlen(name) + 1;
		size_t vlen = strnlen(value, len - (size_t)(value - h));
		off = (size_t)(value - h) + vlen + 1;
		lua_pushlstring(L, value, vlen);
		lua_setfield(L, -2, name);
	}
}

static void on_done(void *user, const struct rt_http_response *res, const char *code,
		    const char *msg)
{
	struct lreq *lr = user;
	lua_State *L = rt_http_lua_state(lr->rt);
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lr->cb_ref);
	int nargs;
	if (!res) {
		lua_pushfstring(L, "%s: %s", code, msg);
		lua_pushnil(L);
		lua_pushstring(L, code);
		nargs = 3;
	} else {
		lua_pushnil(L);
		lua_createtable(L, 0, 3);
		lua_pushinteger(L, res->status);
		lua_setfield(L, -2, "status");
		push_headers(L, res->headers, res->headers_len);
		lua_setfield(L, -2, "headers");
		lua_pushlstring(L, res->body, res->body_len);
		lua_setfield(L, -2, "body");
		nargs = 2;
	}
	luaL_unref(L, LUA_REGISTRYINDEX, lr->self_ref);
	lr->self_ref = LUA_NOREF;
	int cb = lr->cb_ref;
	lr->cb_ref = LUA_NOREF;
	rt_pcall_log(L, nargs, 0, "HTTP client callback");
	luaL_unref(L, LUA_REGISTRYINDEX, cb);
	rt_http_lua_hook_release(L, &lr->hook);
	lua_settop(L, top);
	free(lr);
}

/* opts.want_headers: an array of header names, packed "name\0name\0". */
static void parse_want_headers(lua_State *L, int idx, struct rt_buf *out)
{
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	for (int i = 1;; i++) {
		lua_rawgeti(L, idx, i);
		if (lua_isnil(L, -1)) {
			lua_pop(L, 1);
			break;
		}
		size_t len = 0;
		const char *name = lua_tolstring(L, -1, &len);
		if (lua_type(L, -1) != LUA_TSTRING || len == 0 || len > 100 ||
		    strpbrk(name, " :\t\r\n"))
			luaL_error(L, "http.request: want_headers[%d] must be a header name", i);
		rt_buf_add(out, name, strlen(name) + 1);
		lua_pop(L, 1);
	}
}

/* A string option read at the top of the stack with luaL_optstring, copied (NULL stays NULL). */
static const char *keep_opt(lua_State *L, struct rt_http_lua_scratch *s, const char *def)
{
	const char *v = luaL_optstring(L, -1, def);
	return v ? rt_http_lua_keep(L, s, v, strlen(v)) : NULL;
}

/* request(opts, callback) -> request object (with :cancel()) */
int rt_http_lua_request(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	struct request_ud *ud = lua_newuserdata(L, sizeof(*ud)); // [opts, cb, ud]
	memset(ud, 0, sizeof(*ud));
	luaL_getmetatable(L, REQUEST_MT);
	lua_setmetatable(L, -2);
	struct lreq *lr = calloc(1, sizeof(*lr));
	if (!lr)
		return luaL_error(L, "http.request: out of memory");
	lr->rt = rt_from_lua(L);
	lr->cb_ref = lr->self_ref = lr->hook.ref = LUA_NOREF;
	lr->hook.rt = lr->rt;
	ud->lr = lr; // from here __gc owns it, even if parsing raises below
	struct rt_http_lua_scratch *s = &ud->scratch;
	struct rt_http_client_opts o;
	rt_http_client_opts_init(&o);

	lua_getfield(L, 1, "method");
	o.method = keep_opt(L, s, "GET");
	lua_pop(L, 1);
	lua_getfield(L, 1, "unix");
	const char *unix_path = lua_tostring(L, -1);
	lua_getfield(L, 1, "address");
	const char *address = lua_tostring(L, -1);
	if (!unix_path && !address)
		return luaL_error(L, "http.request: give 'address' or 'unix'");
	if (unix_path)
		o.unix_path = rt_http_lua_keep(L, s, unix_path, strlen(unix_path));
	else
		o.address = rt_http_lua_keep(L, s, address, strlen(address));
	lua_pop(L, 2);
	lua_getfield(L, 1, "port");
	o.port = (int)luaL_optinteger(L, -1, 80);
	lua_pop(L, 1);
	lua_getfield(L, 1, "path");
	o.path = keep_opt(L, s, "/");
	lua_pop(L, 1);
	lua_getfield(L, 1, "host");
	o.host = keep_opt(L, s, NULL); // NULL: "localhost" on a unix socket, else the address
	lua_pop(L, 1);
	lua_getfield(L, 1, "timeout_ms");
	o.timeout_ms = (int)luaL_optinteger(L, -1, RT_HTTP_DEFAULT_TIMEOUT_MS);
	lua_pop(L, 1);
	lua_getfield(L, 1, "max_response");
	o.max_response = (size_t)luaL_optinteger(L, -1, RT_HTTP_DEFAULT_MAX_RESPONSE);
	lua_pop(L, 1);
	lua_getfield(L, 1, "body");
	size_t blen = 0;
	const char *body = luaL_optlstring(L, -1, NULL, &blen);
	if (body && blen) {
		o.body = rt_http_lua_keep(L, s, body, blen);
		o.body_len = blen;
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "headers");
	rt_http_headers_parse(L, lua_gettop(L), &s->bufs[0]);
	lua_pop(L, 1);
	lua_getfield(L, 1, "want_headers");
	parse_want_headers(L, lua_gettop(L), &s->bufs[1]);
	lua_pop(L, 1);
	o.headers = s->bufs[0].data;
	o.headers_len = s->bufs[0].len;
	o.want_headers = s->bufs[1].data;
	o.want_headers_len = s->bufs[1].len;
	lua_getfield(L, 1, "tls");
	o.use_tls = lua_istable(L, -1) || lua_toboolean(L, -1);
	if (lua_istable(L, -1))
		rt_http_lua_tls_parse(L, lua_gettop(L), &o.tls, &lr->hook, s, false);
	lua_pop(L, 1);

	// The completion may come from rt_http_client_request() itself: reference first.
	lua_pushvalue(L, 2);
	lr->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, 3);
	lr->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	char err[256] = "";
	lua_State *prev = rt_http_lua_enter(L);
	int rc = rt_http_client_request(lr->rt, &o, on_done, lr, &ud->r, err, sizeof(err));
	rt_http_lua_leave(prev);
	rt_http_lua_scratch_free(s);
	if (rc != 0) {
		luaL_unref(L, LUA_REGISTRYINDEX, lr->cb_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, lr->self_ref);
		rt_http_lua_hook_release(L, &lr->hook);
		free(lr);
		ud->lr = NULL;
		return rt_http_lua_push_err(L, err);
	}
	ud->lr = NULL; // the completion frees it
	lua_settop(L, 3);
	return 1;
}

static int l_request_cancel(lua_State *L)
{
	struct request_ud *ud = luaL_checkudata(L, 1, REQUEST_MT);
	if (ud->r) {
		lua_State *prev = rt_http_lua_enter(L);
		rt_http_client_cancel(ud->r);
		rt_http_lua_leave(prev);
	}
	return 0;
}

static int l_request_gc(lua_State *L)
{
	struct request_ud *ud = luaL_checkudata(L, 1, REQUEST_MT);
	rt_http_lua_scratch_free(&ud->scratch);
	free(ud->lr); // only if parsing raised: its refs die with the state
	ud->lr = NULL;
	if (ud->r) {
		rt_http_req_unref(ud->r);
		ud->r = NULL;
	}
	return 0;
}

static const luaL_Reg request_methods[] = {
	{ "cancel", l_request_cancel },
	{ NULL, NULL },
};
static const luaL_Reg request_meta[] = {
	{ "__gc", l_request_gc },
	{ NULL, NULL },
};

void rt_http_lua_client_register(lua_State *L)
{
	rt_newclass(L, REQUEST_MT, request_methods, request_meta);
}
