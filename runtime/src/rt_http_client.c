/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The asynchronous HTTP(S) client: rt_http_client_request() over TCP or a unix socket, with a
 * custom CA, a client certificate, a peer-verification hook and a deadline. The completion gets
 * the response or an error code exactly once.
 *
 * Response headers: every header lws knows by token, plus the custom (non-token) headers named in
 * want_headers (lws cannot list custom headers, only look them up by name; Intel PCS sends its
 * certificate chains in such headers, e.g. SGX-PCK-CRL-Issuer-Chain). Names are lowercased.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "rt_http_internal.h"

struct rt_http_req {
	struct rt_http_ctx *ctx;
	struct lws *wsi;
	int refs; /**< the caller's + in flight + the timer's */
	rt_http_response_fn done_fn;
	void *user;
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
	char rejected[160]; /**< why the server's certificate was refused */
	uv_timer_t *timer;
	int timeout_ms;
	int status;
	struct rt_buf resp_headers; /**< "name\0value\0" pairs, lowercased names */
	struct rt_buf resp;
	size_t max_response;
	bool done;
};

void rt_http_req_unref(struct rt_http_req *r)
{
	if (!r || --r->refs > 0)
		return;
	free(r->address);
	free(r->path);
	free(r->host);
	rt_buf_free(&r->headers);
	rt_buf_free(&r->want_headers);
	free(r->body);
	rt_buf_free(&r->resp_headers);
	rt_buf_free(&r->resp);
	rt_tls_opts_free(&r->tls);
	free(r);
}

static void timer_closed(uv_handle_t *h)
{
	struct rt_http_req *r = h->data;
	free(h);
	rt_http_req_unref(r);
}

/* Deliver the outcome once, release the connection and the context. */
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
	if (err && r->done_fn) {
		r->done_fn(r->user, NULL, code, err);
	} else if (r->done_fn) {
		struct rt_http_response res = {
			.status = r->status,
			.headers = r->resp_headers.data ? r->resp_headers.data : "",
			.headers_len = r->resp_headers.len,
			.body = r->resp.data ? r->resp.data : "",
			.body_len = r->resp.len,
		};
		r->done_fn(r->user, &res, NULL, NULL);
	}
	rt_http_ctx_release(r->ctx);
	rt_http_req_unref(r); // the in-flight reference
}

static void timeout_cb(uv_timer_t *t)
{
	struct rt_http_req *r = t->data;
	char msg[64];
	snprintf(msg, sizeof(msg), "no response within %d ms", r->timeout_ms);
	finish(r, "ETIMEDOUT", msg);
}

/* Add a header to the response's list (its name lowercased up to @p nlen bytes). */
static void add_resp_header(struct rt_http_req *r, const char *name, size_t nlen, const char *v,
			    size_t vlen)
{
	for (size_t k = 0; k < nlen; k++) {
		char c = (char)tolower((unsigned char)name[k]);
		rt_buf_add(&r->resp_headers, &c, 1);
	}
	rt_buf_putc(&r->resp_headers, '\0');
	rt_buf_add(&r->resp_headers, v, vlen);
	rt_buf_putc(&r->resp_headers, '\0');
}

/* Add the wanted custom headers that the response carries. */
static void copy_custom_headers(struct rt_http_req *r, struct lws *wsi)
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
		if (got >= 0)
			add_resp_header(r, key, klen - 1, v, (size_t)got); // without the ':'
		free(v);
	}
}

/* Store the packed names @p names (@p len bytes) lowercased with a trailing ':'. */
static int set_want_headers(struct rt_buf *out, const char *names, size_t len)
{
	for (size_t off = 0; off < len;) {
		const char *name = names + off;
		const char *end = memchr(name, '\0', len - off);
		size_t n = end ? (size_t)(end - name) : len - off;
		for (size_t k = 0; k < n; k++) {
			char c = (char)tolower((unsigned char)name[k]);
			rt_buf_add(out, &c, 1);
		}
		rt_buf_add(out, ":", 2); // ':' and the terminating NUL
		off += n + 1;
	}
	return out->failed ? -1 : 0;
}

static void snapshot_headers(struct rt_http_req *r, struct lws *wsi)
{
	r->resp_headers.len = 0;
	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		if (t == WSI_TOKEN_HTTP_URI_ARGS)
			continue;
		int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
		const char *tok = (const char *)lws_token_to_string((enum lws_token_indexes)t);
		if (len <= 0 || !tok || tok[0] == ':' || !strchr(tok, ':'))
			continue;
		size_t n = strcspn(tok, ":");
		if (n > 63) // names are cut to 63 characters
			n = 63;
		if ((n == 4 && !strncasecmp(tok, "get ", 4)) ||
		    (n == 5 && !strncasecmp(tok, "post ", 5)))
			continue;
		char *v = malloc((size_t)len + 1);
		if (v && lws_hdr_copy(wsi, v, len + 1, (enum lws_token_indexes)t) >= 0)
			add_resp_header(r, tok, n, v, strlen(v));
		free(v);
	}
	copy_custom_headers(r, wsi);
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
		return rt_http_client_verify(rt_http_ctx_tls_cache(r->ctx), &r->tls, r->host,
					     (X509_STORE_CTX *)user, (SSL *)in, r->rejected,
					     sizeof(r->rejected));
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (r && r->rejected[0])
			finish(r, "ECERT", r->rejected);
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

void rt_http_client_opts_init(struct rt_http_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->method = "GET";
	o->port = 80;
	o->path = "/";
	o->timeout_ms = RT_HTTP_DEFAULT_TIMEOUT_MS;
	o->max_response = RT_HTTP_DEFAULT_MAX_RESPONSE;
}

/* Copy @p o into @p r. Returns 0 or -ENOMEM. */
static int copy_opts(struct rt_http_req *r, const struct rt_http_client_opts *o)
{
	snprintf(r->method, sizeof(r->method), "%s", o->method ? o->method : "GET");
	if (o->unix_path) {
		r->address = malloc(strlen(o->unix_path) + 2);
		if (r->address)
			sprintf(r->address, "+%s", o->unix_path);
	} else {
		r->address = strdup(o->address);
	}
	r->port = o->port;
	r->path = strdup(o->path ? o->path : "/");
	const char *host = o->host ? o->host : o->unix_path ? "localhost" : o->address;
	r->host = strdup(host);
	r->timeout_ms = o->timeout_ms;
	r->max_response = o->max_response;
	if (o->body && o->body_len) {
		r->body = malloc(o->body_len);
		if (r->body)
			memcpy(r->body, o->body, o->body_len);
		r->body_len = o->body_len;
	}
	if (o->headers_len)
		rt_buf_add(&r->headers, o->headers, o->headers_len);
	if (o->want_headers_len)
		set_want_headers(&r->want_headers, o->want_headers, o->want_headers_len);
	r->use_tls = o->use_tls;
	if (o->use_tls && rt_tls_opts_copy(&r->tls, &o->tls) != 0)
		return -ENOMEM;
	if (!r->address || !r->path || !r->host || (r->body_len && !r->body) || r->headers.failed ||
	    r->want_headers.failed)
		return -ENOMEM;
	return 0;
}

int rt_http_client_request(struct rt_runtime *rt, const struct rt_http_client_opts *o,
			   rt_http_response_fn done, void *user, struct rt_http_req **out,
			   char *err, size_t errlen)
{
	if (out)
		*out = NULL;
	if (!o->unix_path && !o->address) {
		snprintf(err, errlen, "EINVAL: give an address or a unix socket path");
		return -EINVAL;
	}
	struct rt_http_req *r = calloc(1, sizeof(*r));
	if (r)
		r->refs = 1; // the caller's
	if (!r || copy_opts(r, o) != 0) {
		rt_http_req_unref(r);
		snprintf(err, errlen, "ENOMEM: out of memory");
		return -ENOMEM;
	}
	r->ctx = rt_http_ctx_acquire(rt);
	if (!r->ctx) {
		rt_http_req_unref(r);
		snprintf(err, errlen, "EIO: cannot create the libwebsockets context");
		return -EIO;
	}
	struct lws_vhost *vh = client_vhost(r->ctx);
	if (!vh) {
		rt_http_ctx_release(r->ctx);
		rt_http_req_unref(r);
		snprintf(err, errlen, "EIO: cannot set up the client TLS context");
		return -EIO;
	}
	r->done_fn = done;
	r->user = user;
	r->refs++; // in flight, until finish()
	if (out)
		*out = r;
	else
		r->refs--; // the caller keeps none: in flight holds it

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
	if (r->use_tls) // the hostname is checked by rt_tls_check_server, not by lws
		ci.ssl_connection |= LCCSCF_USE_SSL | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	struct lws *wsi = lws_client_connect_via_info(&ci);
	if (!wsi && !r->done) {
		r->wsi = NULL;
		finish(r, "ECONNREFUSED", "cannot start the connection");
	}
	return 0;
}

void rt_http_client_cancel(struct rt_http_req *r)
{
	if (r && !r->done && r->ctx)
		finish(r, "ECANCELED", "request cancelled");
}
