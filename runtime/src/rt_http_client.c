/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The asynchronous HTTP(S) client: request(opts, callback) over TCP or a unix socket, with a
 * custom CA, a client certificate, a peer-verification hook and a deadline. The callback gets
 * (nil, response) or (err_message, nil, code) exactly once.
 *
 * Response headers: every header lws knows by token, plus the custom (non-token) headers named in
 * opts.want_headers (lws cannot list custom headers, only look them up by name; Intel PCS sends
 * its certificate chains in such headers, e.g. SGX-PCK-CRL-Issuer-Chain). Names are lowercased.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "rt_http.h"

#define REQUEST_MT	     "moonstack.http.Request"
#define DEFAULT_MAX_RESPONSE (64u * 1024 * 1024)

struct rt_http_req {
	struct rt_http_ctx *ctx;
	struct lws *wsi;
	int refs; /**< Lua userdata + in flight */
	int cb_ref;
	int self_ref;
	char method[12];
	char *address; /**< host, or "+/path" for a unix socket */
	char *path;
	char *host;
	int port;
	bool use_tls;
	struct rt_buf headers;
	struct rt_buf want_headers; /**< "name:\0" lowercased custom response headers to copy */
	char *body;
	size_t body_len;
	bool body_sent;
	struct rt_tls_opts tls;
	uv_timer_t *timer;
	int timeout_ms;
	int status;
	int resp_headers_ref;
	struct rt_buf resp;
	size_t max_response;
	bool done;
};

static void req_unref(struct rt_http_req *r)
{
	if (!r || --r->refs > 0)
		return;
	free(r->address);
	free(r->path);
	free(r->host);
	rt_buf_free(&r->headers);
	rt_buf_free(&r->want_headers);
	free(r->body);
	rt_buf_free(&r->resp);
	rt_tls_opts_free(NULL, &r->tls);
	free(r);
}

static void timer_closed(uv_handle_t *h)
{
	struct rt_http_req *r = h->data;
	free(h);
	req_unref(r);
}

/* Deliver the outcome once, release the connection and the Lua references. */
static void finish(struct rt_http_req *r, const char *code, const char *err)
{
	if (r->done)
		return;
	r->done = true;
	if (r->wsi) {
		lws_set_opaque_user_data(r->wsi, NULL);
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		// On a foreign loop lws only looks at its timers again after some I/O of its
		// own: wake it, or a timed-out or cancelled connection stays open.
		if (r->ctx->lws)
			lws_cancel_service(r->ctx->lws);
		r->wsi = NULL;
	}
	if (r->timer) {
		uv_timer_stop(r->timer);
		uv_close((uv_handle_t *)r->timer, timer_closed); // holds a ref until closed
		r->timer = NULL;
	}
	lua_State *L = rt_http_ctx_state(r->ctx);
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->cb_ref);
	int nargs;
	if (err) {
		lua_pushfstring(L, "%s: %s", code, err);
		lua_pushnil(L);
		lua_pushstring(L, code);
		nargs = 3;
	} else {
		lua_pushnil(L);
		lua_createtable(L, 0, 3);
		lua_pushinteger(L, r->status);
		lua_setfield(L, -2, "status");
		if (r->resp_headers_ref != LUA_NOREF)
			lua_rawgeti(L, LUA_REGISTRYINDEX, r->resp_headers_ref);
		else
			lua_newtable(L);
		lua_setfield(L, -2, "headers");
		lua_pushlstring(L, r->resp.data ? r->resp.data : "", r->resp.len);
		lua_setfield(L, -2, "body");
		nargs = 2;
	}
	luaL_unref(L, LUA_REGISTRYINDEX, r->resp_headers_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, r->self_ref);
	r->resp_headers_ref = r->self_ref = LUA_NOREF;
	int cb = r->cb_ref;
	r->cb_ref = LUA_NOREF;
	rt_pcall_log(L, nargs, 0, "HTTP client callback");
	luaL_unref(L, LUA_REGISTRYINDEX, cb);
	if (r->tls.verify_ref != LUA_NOREF)
		luaL_unref(L, LUA_REGISTRYINDEX, r->tls.verify_ref);
	r->tls.verify_ref = LUA_NOREF;
	lua_settop(L, top);
	rt_http_ctx_release(r->ctx);
	req_unref(r); // the in-flight reference
}

static void timeout_cb(uv_timer_t *t)
{
	struct rt_http_req *r = t->data;
	char msg[64];
	snprintf(msg, sizeof(msg), "no response within %d ms", r->timeout_ms);
	finish(r, "ETIMEDOUT", msg);
}

/* Add the wanted custom headers that the response carries to the table on top of the stack. */
static void copy_custom_headers(struct rt_http_req *r, struct lws *wsi, lua_State *L)
{
	for (size_t off = 0; off < r->want_headers.len;) {
		const char *key = r->want_headers.data + off; // "name:"
		size_t klen = strlen(key);
		off += klen + 1;
		int n = lws_hdr_custom_length(wsi, key, (int)klen);
		if (n < 0)
			continue;
		char *v = malloc((size_t)n + 1);
		if (!v)
			continue;
		int got = lws_hdr_custom_copy(wsi, v, n + 1, key, (int)klen);
		if (got >= 0) {
			lua_pushlstring(L, key, klen - 1); // without the ':'
			lua_pushlstring(L, v, (size_t)got);
			lua_rawset(L, -3);
		}
		free(v);
	}
}

/* opts.want_headers: an array of header names, stored lowercased with a trailing ':'. */
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
		for (size_t k = 0; k < len; k++) {
			char c = (char)tolower((unsigned char)name[k]);
			rt_buf_add(out, &c, 1);
		}
		rt_buf_add(out, ":", 2); // ':' and the terminating NUL
		lua_pop(L, 1);
	}
}

static void snapshot_headers(struct rt_http_req *r, struct lws *wsi)
{
	lua_State *L = rt_http_ctx_state(r->ctx);
	char name[64];
	lua_newtable(L);
	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		if (t == WSI_TOKEN_HTTP_URI_ARGS)
			continue;
		int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
		const char *tok = (const char *)lws_token_to_string((enum lws_token_indexes)t);
		if (len <= 0 || !tok || tok[0] == ':' || !strchr(tok, ':'))
			continue;
		size_t n = 0;
		for (; tok[n] && tok[n] != ':' && n < sizeof(name) - 1; n++)
			name[n] = (char)tolower((unsigned char)tok[n]);
		name[n] = '\0';
		if (!strcmp(name, "get ") || !strcmp(name, "post "))
			continue;
		char *v = malloc((size_t)len + 1);
		if (v && lws_hdr_copy(wsi, v, len + 1, (enum lws_token_indexes)t) >= 0) {
			lua_pushstring(L, v);
			lua_setfield(L, -2, name);
		}
		free(v);
	}
	copy_custom_headers(r, wsi, L);
	r->resp_headers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int append_headers(struct rt_http_req *r, struct lws *wsi, unsigned char **p,
			  unsigned char *end)
{
	for (size_t off = 0; off < r->headers.len;) {
		const char *name = r->headers.data + off;
		const char *value = name + strlen(name) + 1;
		off = (size_t)(value - r->headers.data) + strlen(value) + 1;
		if (!strcasecmp(name, "content-length") || !strcasecmp(name, "host"))
			continue;
		char hname[128];
		snprintf(hname, sizeof(hname), "%s:", name);
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)hname,
						(const unsigned char *)value, (int)strlen(value), p,
						end))
			return -1;
	}
	if (r->body_len || strcmp(r->method, "GET")) {
		char cl[24];
		int n = snprintf(cl, sizeof(cl), "%zu", r->body_len);
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
						 (unsigned char *)cl, n, p, end))
			return -1;
	}
	if (r->body_len) {
		lws_client_http_body_pending(wsi, 1);
		lws_callback_on_writable(wsi);
	}
	return 0;
}

static int write_body(struct rt_http_req *r, struct lws *wsi)
{
	if (r->body_sent)
		return 0;
	unsigned char *buf = malloc(LWS_PRE + r->body_len);
	if (!buf)
		return -1;
	memcpy(buf + LWS_PRE, r->body, r->body_len);
	int n = lws_write(wsi, buf + LWS_PRE, r->body_len, LWS_WRITE_HTTP_FINAL);
	free(buf);
	if (n < (int)r->body_len)
		return -1;
	r->body_sent = true;
	lws_client_http_body_pending(wsi, 0);
	return 0;
}

int rt_http_client_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			    size_t len)
{
	struct rt_http_req *r = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
		// Sent to the context's protocol 0 (ours) with the real wsi; in = SSL *.
		if (!r)
			return 1;
		return rt_tls_verify_server(r->ctx, &r->tls, r->host, (X509_STORE_CTX *)user,
					    (SSL *)in);
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (r && r->tls.rejected[0])
			finish(r, "ECERT", r->tls.rejected);
		else if (r)
			finish(r, "ECONNREFUSED", in ? (const char *)in : "connection failed");
		return 0;
	case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
		if (!r)
			return -1;
		return append_headers(r, wsi, (unsigned char **)in,
				      (unsigned char *)*(char **)in + len);
	case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE:
		return r ? write_body(r, wsi) : -1;
	case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
		if (!r)
			return -1;
		r->status = (int)lws_http_client_http_response(wsi);
		snapshot_headers(r, wsi);
		return 0;
	case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
		char buffer[LWS_PRE + 4096];
		char *px = buffer + LWS_PRE;
		int lenx = (int)sizeof(buffer) - LWS_PRE;
		if (lws_http_client_read(wsi, &px, &lenx) < 0)
			return -1;
		return 0;
	}
	case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
		if (!r)
			return -1;
		if (r->resp.len + len > r->max_response) {
			finish(r, "ETOOBIG", "response larger than max_response");
			return -1;
		}
		rt_buf_add(&r->resp, in, len);
		return 0;
	case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
		if (r)
			finish(r, NULL, NULL);
		return -1; // one request per connection
	case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
		if (r) {
			r->wsi = NULL;
			lws_set_opaque_user_data(wsi, NULL);
			if (r->status)
				finish(r, NULL, NULL); // body delimited by the close
			else
				finish(r, "ECONNRESET", "connection closed before a response");
		}
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

const struct lws_protocols rt_http_client_protocols[] = {
	{ "moonstack-http-client", rt_http_client_callback, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* One client vhost per context: trust and identity are applied per connection. */
static struct lws_vhost *client_vhost(struct rt_http_ctx *ctx)
{
	if (ctx->client_vhost)
		return ctx->client_vhost;
	struct lws_context_creation_info vi;
	memset(&vi, 0, sizeof(vi));
	vi.port = CONTEXT_PORT_NO_LISTEN;
	vi.vhost_name = "client";
	vi.protocols = rt_http_client_protocols;
	// Verification is ours (rt_tls_verify_server): OpenSSL's store stays empty.
	vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
	ctx->client_vhost = lws_create_vhost(ctx->lws, &vi);
	return ctx->client_vhost;
}

/* request(opts, callback) -> request object (with :cancel()) */
int rt_http_client_request(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_settop(L, 2);
	struct rt_http_req **ud = lua_newuserdata(L, sizeof(*ud)); // [opts, cb, ud]
	*ud = NULL;
	luaL_getmetatable(L, REQUEST_MT);
	lua_setmetatable(L, -2);
	struct rt_http_req *r = calloc(1, sizeof(*r));
	if (!r)
		return luaL_error(L, "http.request: out of memory");
	r->refs = 1;
	r->cb_ref = r->self_ref = r->resp_headers_ref = LUA_NOREF;
	r->tls.verify_ref = LUA_NOREF;
	*ud = r;

	lua_getfield(L, 1, "method");
	snprintf(r->method, sizeof(r->method), "%s", luaL_optstring(L, -1, "GET"));
	lua_pop(L, 1);
	lua_getfield(L, 1, "unix");
	const char *unix_path = lua_tostring(L, -1);
	lua_getfield(L, 1, "address");
	const char *address = lua_tostring(L, -1);
	if (!unix_path && !address)
		return luaL_error(L, "http.request: give 'address' or 'unix'");
	if (unix_path)
		r->address = malloc(strlen(unix_path) + 2), sprintf(r->address, "+%s", unix_path);
	else
		r->address = strdup(address);
	lua_pop(L, 2);
	lua_getfield(L, 1, "port");
	r->port = (int)luaL_optinteger(L, -1, 80);
	lua_pop(L, 1);
	lua_getfield(L, 1, "path");
	r->path = strdup(luaL_optstring(L, -1, "/"));
	lua_pop(L, 1);
	lua_getfield(L, 1, "host");
	r->host = strdup(luaL_optstring(L, -1, unix_path ? "localhost" : r->address));
	lua_pop(L, 1);
	lua_getfield(L, 1, "timeout_ms");
	r->timeout_ms = (int)luaL_optinteger(L, -1, 30000);
	lua_pop(L, 1);
	lua_getfield(L, 1, "max_response");
	r->max_response = (size_t)luaL_optinteger(L, -1, DEFAULT_MAX_RESPONSE);
	lua_pop(L, 1);
	lua_getfield(L, 1, "body");
	size_t blen = 0;
	const char *body = luaL_optlstring(L, -1, NULL, &blen);
	if (body && blen) {
		r->body = malloc(blen);
		memcpy(r->body, body, blen);
		r->body_len = blen;
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "headers");
	rt_http_headers_parse(L, lua_gettop(L), &r->headers);
	lua_pop(L, 1);
	lua_getfield(L, 1, "want_headers");
	parse_want_headers(L, lua_gettop(L), &r->want_headers);
	lua_pop(L, 1);
	lua_getfield(L, 1, "tls");
	r->use_tls = lua_istable(L, -1) || lua_toboolean(L, -1);
	if (lua_istable(L, -1))
		rt_tls_opts_parse(L, lua_gettop(L), &r->tls, false);
	lua_pop(L, 1);

	r->ctx = rt_http_ctx_acquire(L);
	if (!r->ctx)
		return rt_push_fail(L, "EIO", "cannot create the libwebsockets context");
	struct lws_vhost *vh = client_vhost(r->ctx);
	if (!vh) {
		rt_http_ctx_release(r->ctx);
		return rt_push_fail(L, "EIO", "cannot set up the client TLS context");
	}
	lua_pushvalue(L, 2);
	r->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, 3);
	r->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	r->refs++; // in flight, until finish()

	r->timer = malloc(sizeof(*r->timer));
	uv_timer_init(rt_loop(r->ctx->rt), r->timer);
	r->timer->data = r;
	r->refs++; // the timer's, until it is closed
	uv_timer_start(r->timer, timeout_cb, (uint64_t)r->timeout_ms, 0);

	struct lws_client_connect_info ci;
	memset(&ci, 0, sizeof(ci));
	ci.context = r->ctx->lws;
	ci.vhost = vh;
	ci.address = r->address;
	ci.port = r->port;
	ci.path = r->path;
	ci.host = r->host;
	ci.origin = r->host;
	ci.method = r->method;
	ci.alpn = "http/1.1";
	ci.local_protocol_name = "moonstack-http-client";
	ci.opaque_user_data = r;
	ci.pwsi = &r->wsi;
	ci.ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
	if (r->use_tls) // the hostname is checked by rt_tls_verify_server, not by lws
		ci.ssl_connection |= LCCSCF_USE_SSL | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	r->ctx->active_L = L;
	struct lws *wsi = lws_client_connect_via_info(&ci);
	r->ctx->active_L = NULL;
	if (!wsi && !r->done) {
		r->wsi = NULL;
		finish(r, "ECONNREFUSED", "cannot start the connection");
	}
	return 1;
}

static int l_request_cancel(lua_State *L)
{
	struct rt_http_req **ud = luaL_checkudata(L, 1, REQUEST_MT);
	struct rt_http_req *r = *ud;
	if (r && !r->done && r->ctx) {
		r->ctx->active_L = L;
		struct rt_http_ctx *ctx = r->ctx;
		finish(r, "ECANCELED", "request cancelled");
		ctx->active_L = NULL;
	}
	return 0;
}

static int l_request_gc(lua_State *L)
{
	struct rt_http_req **ud = luaL_checkudata(L, 1, REQUEST_MT);
	if (*ud) {
		req_unref(*ud);
		*ud = NULL;
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

void rt_http_client_register(lua_State *L)
{
	rt_newclass(L, REQUEST_MT, request_methods, request_meta);
}
