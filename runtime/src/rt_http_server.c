/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP server connections: parse the request (method, path, query, headers, body up to a
 * limit), hand it to the server's handler as an exchange, and write the response when the handler
 * answers (now or later). Whole responses carry Content-Length (none for 1xx/204/304), never
 * chunked; streamed ones none, closing at the end (rt_http_stream.c). Keep-alive is lws's, but
 * requests lws mishandles are refused here with a status and a close (pipelined with a body, bad
 * targets, CONNECT: README "libwebsockets 4.1 quirks", with rt_http_sock.c). Also the exchange's
 * API (moonstack/rt_http.h).
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "rt_http_internal.h"

static const struct {
	enum lws_token_indexes token;
	const char *name;
} methods[] = {
	{ WSI_TOKEN_GET_URI, "GET" },	    { WSI_TOKEN_POST_URI, "POST" },
	{ WSI_TOKEN_PUT_URI, "PUT" },	    { WSI_TOKEN_PATCH_URI, "PATCH" },
	{ WSI_TOKEN_DELETE_URI, "DELETE" }, { WSI_TOKEN_OPTIONS_URI, "OPTIONS" },
	{ WSI_TOKEN_HEAD_URI, "HEAD" },
};

static struct rt_http_server *server_of(struct lws *wsi)
{
	struct lws_vhost *vh = lws_get_vhost(wsi);
	return vh ? lws_get_vhost_user(vh) : NULL;
}

void rt_http_exchange_unref(struct rt_http_exchange *ex)
{
	if (!ex || --ex->refs > 0)
		return;
	free(ex->path);
	free(ex->query);
	rt_buf_free(&ex->body);
	rt_buf_free(&ex->resp_headers);
	free(ex->resp_body);
	rt_http_stream_free(ex);
	rt_tls_peer_release(ex->peer);
	free(ex);
}

/* The connection lets go of its exchange (response done, or connection closed). */
static void detach_exchange(struct rt_http_pss *pss)
{
	struct rt_http_exchange *ex = pss->ex;
	if (!ex)
		return;
	pss->ex = NULL;
	ex->wsi = NULL;
	ex->server = NULL;
	rt_http_exchange_unref(ex);
}

static void send_response(struct rt_http_exchange *ex);

/* Record the response on @p ex and write it. Takes @p headers' data and @p body (malloc'ed). */
static int respond_owned(struct rt_http_exchange *ex, int status, struct rt_buf *headers,
			 char *body, size_t len)
{
	if (ex->responded) {
		free(body);
		return -EALREADY;
	}
	if (!ex->wsi) {
		free(body);
		return -ENOTCONN;
	}
	ex->responded = true;
	ex->status = status;
	if (headers) {
		ex->resp_headers = *headers;
		memset(headers, 0, sizeof(*headers));
	}
	ex->resp_body = body;
	ex->resp_len = len;
	send_response(ex);
	return 0;
}

/* Respond from C (limits, handler failures) with a small JSON error body. */
static void respond_error(struct rt_http_exchange *ex, int status, const char *msg)
{
	struct rt_buf body = { 0 };
	struct rt_buf headers = { 0 };
	rt_buf_puts(&body, "{\"error\":");
	rt_json_quote(&body, msg, strlen(msg));
	rt_buf_puts(&body, "}");
	rt_buf_add(&headers, "content-type\0application/json\0", 30);
	size_t len = body.len;
	char *data = body.data;
	body.data = NULL;
	respond_owned(ex, status, &headers, data, data ? len : 0);
	rt_buf_free(&headers);
}

int rt_http_exchange_each_header(struct rt_http_exchange *ex,
				 int (*fn)(void *user, const char *name, const char *value),
				 void *user)
{
	struct lws *wsi = ex->wsi;
	char name[64];
	int rc = 0;
	for (int t = 0; wsi && !rc && t < WSI_TOKEN_COUNT; t++) {
		bool skip = t == WSI_TOKEN_HTTP_URI_ARGS || t == WSI_TOKEN_HTTP1_0;
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
			skip = skip || (int)methods[m].token == t;
		int len = skip ? 0 : lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
		if (len <= 0)
			continue;
		const char *tok = (const char *)lws_token_to_string((enum lws_token_indexes)t);
		if (!tok || tok[0] == ':')
			continue;
		size_t n = 0;
		for (; tok[n] && tok[n] != ':' && n < sizeof(name) - 1; n++)
			name[n] = (char)tolower((unsigned char)tok[n]);
		name[n] = '\0';
		char *value = malloc((size_t)len + 1);
		if (!value)
			continue;
		if (lws_hdr_copy(wsi, value, len + 1, (enum lws_token_indexes)t) >= 0)
			rc = fn(user, name, value);
		free(value);
	}
	return rc;
}

/*
 * Reassemble the query string from lws's '&'-separated fragments. lws has already decoded
 * them ('+' and %XX): encode them again, or a value holding '&', '=', '+' or '%' would be
 * split or decoded twice by the Lua side.
 */
char *rt_http_copy_query(struct lws *wsi)
{
	static const char hex[] = "0123456789ABCDEF";
	struct rt_buf q = { 0 };
	char frag[4096];
	for (int i = 0;; i++) {
		int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
		if (n < 0)
			break;
		if (i)
			rt_buf_putc(&q, '&');
		bool in_value = false;
		for (int k = 0; k < n; k++) {
			unsigned char c = (unsigned char)frag[k];
			if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
			    (c == '=' && !in_value)) {
				in_value = in_value || c == '=';
				rt_buf_putc(&q, (char)c);
			} else {
				char esc[3] = { '%', hex[c >> 4], hex[c & 15] };
				rt_buf_add(&q, esc, 3);
			}
		}
	}
	return q.data;
}

/* Hand the complete request to the handler. Returns -1 if it was answered at once and the
 * connection must close: the callback returns it (lws reading on as for a body it expects
 * would put off a close by timeout). */
static int dispatch(struct rt_http_server *srv, struct lws *wsi, struct rt_http_exchange *ex)
{
	ex->dispatched = true;
	ex->refs++; // answering may detach it from the connection
	srv->requests++;
	char peer[64] = "";
	lws_get_peer_simple(wsi, peer, sizeof(peer));
	struct rt_http_request req = {
		.method = ex->method,
		.path = ex->path ? ex->path : "/",
		.query = ex->query ? ex->query : "",
		.body = ex->body.data ? ex->body.data : "",
		.body_len = ex->body.len,
		.peer = srv->unix_path ? "unix" : peer,
		.server = srv->name,
	};
	if (ex->peer)
		req.peer_cert = rt_tls_peer_der(ex->peer, &req.peer_cert_len);
	srv->dispatching++;
	int status = srv->on_request(srv->user, ex, &req);
	srv->dispatching--;
	if (status != 0 && !ex->responded)
		respond_error(ex, 500, "internal error");
	if (!ex->responded && ex->wsi) {
		// The answer comes later. Stop reading meanwhile: lws would spin on a client's
		// EOF (half-close) or pipelined bytes while the transaction is open.
		lws_rx_flow_control(wsi, 0);
		ex->rx_paused = true;
	}
	int rc = ex->responded && ex->dropped ? -1 : 0;
	rt_http_exchange_unref(ex);
	return rc;
}

/* Close the connection from a callback (return -1 after this). Stop reading first, or lws
 * spins on bytes it buffered while it flushes what was written; the client may still be
 * sending: drain it once lws closed, so that it gets the answer. */
static int refuse(struct lws *wsi)
{
	lws_rx_flow_control(wsi, 0);
	rt_http_sock_linger(lws_get_socket_fd(wsi));
	return -1;
}

/* The Content-Length of the request: 0 if absent (sets *present), -1 if invalid. */
static long long content_length_of(struct lws *wsi, bool *present)
{
	char cl[32] = "";
	*present = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
	if (!*present)
		return 0;
	if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
		return -1;
	char *end = NULL;
	errno = 0;
	long long n = strtoll(cl, &end, 10);
	return errno || end == cl || *end || n < 0 ? -1 : n;
}

/*
 * What is wrong with the request line lws parsed, as a status and a message; 0 if nothing.
 * lws decodes the path (%XX) and stops it at a decoded CR or LF, so a request without an HTTP
 * version lost part of its line; a NUL would cut the path short of what was asked, and no path
 * has control bytes.
 */
static int check_target(struct lws *wsi, const char *uri, size_t len, const char **msg)
{
	int query = 0;
	for (int i = 0; lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++)
		query += lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i) + 1;
	if (len >= RT_HTTP_MAX_URI || query >= (int)RT_HTTP_MAX_URI) {
		*msg = "request target too long";
		return 414;
	}
	*msg = "invalid request target";
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP) <= 0 || !uri)
		return 400;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)uri[i] < 0x20 || uri[i] == 0x7f)
			return 400;
	return 0;
}

static int on_http(struct rt_http_server *srv, struct lws *wsi, struct rt_http_pss *pss,
		   const char *uri, size_t len)
{
	const char *method = "GET";
	for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
		if (lws_hdr_total_length(wsi, methods[m].token) > 0) {
			method = methods[m].name;
			break;
		}
	}
	bool cl_present;
	long long content_length = content_length_of(wsi, &cl_present);
	// lws reads a body when there is a Content-Length, or for these methods without one
	bool lws_body = content_length != 0 ||
			(!cl_present && (!strcmp(method, "POST") || !strcmp(method, "PUT") ||
					 !strcmp(method, "PATCH")));
	int fd = lws_get_socket_fd(wsi);
	if (lws_body && rt_http_sock_pipelined(fd)) {
		// Sent before the previous answer: lws parsed it from its own buffer and would
		// spin feeding that buffer to the body parser. Close: the client retries it.
		rt_log(RT_LOG_DEBUG, "http", "%s: closing on a pipelined request with a body",
		       srv->name);
		return refuse(wsi);
	}
	rt_http_sock_mark(fd);

	struct rt_http_exchange *ex = calloc(1, sizeof(*ex));
	if (!ex)
		return refuse(wsi);
	ex->refs = 1;
	ex->wsi = wsi;
	ex->server = srv;
	ex->body_limit = srv->max_body;
	detach_exchange(pss);
	pss->ex = ex;
	strcpy(ex->method, method);
	ex->head_only = strcmp(ex->method, "HEAD") == 0;
	ex->path = strndup(uri && len ? uri : "/", uri && len ? len : 1);
	ex->query = rt_http_copy_query(wsi);
	if (srv->tls.cert)
		ex->peer = rt_http_peer_take(wsi);

	const char *msg = NULL;
	int status = check_target(wsi, uri, len, &msg);
	if (!status && content_length < 0) {
		status = 400; // where the body ends is unknown
		msg = "invalid Content-Length";
	}
	if (!status && (unsigned long long)content_length > ex->body_limit) {
		ex->body_too_big = true;
		status = 413;
		msg = "request body too large";
	}
	if (status) {
		ex->close_after = true;
		respond_error(ex, status, msg);
		return refuse(wsi); // the error is written: close
	}
	if (lws_body && !cl_present)
		ex->close_after = true; // lws takes what follows as the body: do not keep it
	return content_length == 0 ? dispatch(srv, wsi, ex) : 0;
}

static int on_body(struct lws *wsi, struct rt_http_pss *pss, const void *in, size_t len)
{
	struct rt_http_exchange *ex = pss->ex;
	rt_http_sock_mark(lws_get_socket_fd(wsi));
	if (!ex || ex->body_too_big || ex->responded)
		return 0;
	if (ex->body.len + len > ex->body_limit) {
		ex->body_too_big = ex->close_after = true;
		respond_error(ex, 413, "request body too large");
		return refuse(wsi); // the error is written: close
	}
	if (rt_buf_add(&ex->body, in, len)) {
		ex->close_after = true;
		respond_error(ex, 500, "out of memory");
		return refuse(wsi);
	}
	return 0;
}

/* Whether a response with @p status has a body (and so a Content-Length). */
static bool has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

/* The status line, Content-Type and Content-Length, none on a status that has no body (RFC
 * 9110 8.6: a 304 may only repeat the 200's; a HEAD answer gives the GET's). Non-zero on error. */
static int add_status_headers(struct lws *wsi, struct rt_http_exchange *ex, const char *ctype,
			      lws_filepos_t content_len, unsigned char **p, unsigned char *end)
{
	if (has_body(ex->status))
		return lws_add_http_common_headers(wsi, (unsigned int)ex->status, ctype,
						   content_len, p, end);
	if (lws_add_http_header_status(wsi, (unsigned int)ex->status, p, end))
		return 1;
	return ctype && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
						     (const unsigned char *)ctype,
						     (int)strlen(ctype), p, end);
}

int rt_http_write_head(struct lws *wsi, struct rt_http_exchange *ex, lws_filepos_t content_len)
{
	const char *ctype = NULL;
	size_t need = LWS_PRE + 512;
	for (size_t off = 0; off < ex->resp_headers.len;) {
		const char *name = ex->resp_headers.data + off;
		const char *value = name + strlen(name) + 1;
		off = (size_t)(value - ex->resp_headers.data) + strlen(value) + 1;
		need += strlen(name) + strlen(value) + 8;
		if (strcasecmp(name, "content-type") == 0)
			ctype = value;
	}
	unsigned char *buf = malloc(need);
	if (!buf)
		return -1;
	unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + need - 1;
	int rc = -1;
	if (add_status_headers(wsi, ex, ctype, content_len, &p, end))
		goto out;
	if (ex->close_after &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
					 5, &p, end))
		goto out;
	for (size_t off = 0; off < ex->resp_headers.len;) {
		const char *name = ex->resp_headers.data + off;
		const char *value = name + strlen(name) + 1;
		off = (size_t)(value - ex->resp_headers.data) + strlen(value) + 1;
		if (strcasecmp(name, "content-type") == 0 ||
		    strcasecmp(name, "content-length") == 0)
			continue;
		char hname[128];
		snprintf(hname, sizeof(hname), "%s:", name);
		if (lws_add_http_header_by_name(wsi, (const unsigned char *)hname,
						(const unsigned char *)value, (int)strlen(value),
						&p, end))
			goto out;
	}
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		goto out;
	rc = 0;
out:
	free(buf);
	return rc;
}

/*
 * Write the whole response at once; lws keeps what the socket does not take yet, sends it on
 * POLLOUT and then completes the transaction by itself. Waiting for a writeable callback
 * instead loses the response to a client that half-closed after its request: lws reads its
 * EOF first and drops the connection.
 */
static void send_response(struct rt_http_exchange *ex)
{
	struct lws *wsi = ex->wsi;
	struct rt_http_pss *pss = lws_wsi_user(wsi);
	// its vhost is going: the connection goes with this response (the request was read whole,
	// so without a lingering close, which would hold the client's EOF for its whole delay)
	bool server_closing = ex->server && ex->server->closed && !ex->close_after;
	if (server_closing)
		ex->close_after = true;
	int rc = rt_http_write_head(wsi, ex, (lws_filepos_t)ex->resp_len);
	if (rc == 0 && ex->resp_len && !ex->head_only && has_body(ex->status)) {
		unsigned char *buf = malloc(LWS_PRE + ex->resp_len);
		rc = -1;
		if (buf) {
			memcpy(buf + LWS_PRE, ex->resp_body, ex->resp_len);
			int n = lws_write(wsi, buf + LWS_PRE, ex->resp_len, LWS_WRITE_HTTP_FINAL);
			rc = n < (int)ex->resp_len ? -1 : 0;
			free(buf);
		}
	}
	bool drop = rc != 0 || ex->close_after;
	bool paused = ex->rx_paused;
	ex->dropped = drop;
	if (pss && pss->ex == ex)
		detach_exchange(pss); // may free ex
	if (drop || lws_http_transaction_completed(wsi)) {
		// read nothing more: lws would spin on bytes it buffered until the kill
		lws_rx_flow_control(wsi, 0);
		if (drop && !server_closing)
			rt_http_sock_linger(lws_get_socket_fd(wsi)); // the client may be sending
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		lws_cancel_service(lws_get_context(wsi)); // on a foreign loop, lws needs a nudge
	} else if (paused) {
		lws_rx_flow_control(wsi, 1);
	}
}

/*
 * lws turns a CONNECT request into a raw connection (no more HTTP, no timeout) and hands it to
 * protocol 0, ours: answer 405 and close, as for any method a server does not serve.
 */
static int refuse_connect(struct lws *wsi)
{
	static const char answer[] = "HTTP/1.1 405 Method Not Allowed\r\n"
				     "content-type: application/json\r\n"
				     "content-length: 30\r\n"
				     "connection: close\r\n\r\n"
				     "{\"error\":\"method not allowed\"}";
	unsigned char buf[LWS_PRE + sizeof(answer)];
	memcpy(buf + LWS_PRE, answer, sizeof(answer) - 1);
	rt_http_sock_upgraded(lws_get_socket_fd(wsi));
	lws_write(wsi, buf + LWS_PRE, sizeof(answer) - 1, LWS_WRITE_RAW);
	return refuse(wsi);
}

static bool ws_path_allowed(struct rt_http_server *srv, struct lws *wsi)
{
	char uri[512];
	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0)
		return false;
	char *q = strchr(uri, '?');
	if (q)
		*q = '\0';
	for (int i = 0; i < srv->n_ws_paths; i++)
		if (strcmp(srv->ws_paths[i], uri) == 0)
			return true;
	return false;
}

/* Ask the server's upgrade filter about the websocket upgrade on @p wsi (true: accept). The
 * filter sees the request through a headers-only exchange, detached when it returns. */
static bool ws_upgrade_allowed(struct rt_http_server *srv, struct lws *wsi)
{
	if (!srv->ws_filter)
		return true;
	struct rt_http_exchange *ex = calloc(1, sizeof(*ex));
	char *path = malloc(512);
	if (!ex || !path) {
		free(ex);
		free(path);
		return false;
	}
	if (lws_hdr_copy(wsi, path, 512, WSI_TOKEN_GET_URI) <= 0)
		strcpy(path, "/");
	char *q = strchr(path, '?');
	if (q)
		*q = '\0';
	ex->refs = 1;
	ex->wsi = wsi;
	ex->server = srv;
	ex->filter_only = true;
	strcpy(ex->method, "GET");
	ex->path = path;
	ex->query = rt_http_copy_query(wsi);
	char peer[64] = "";
	lws_get_peer_simple(wsi, peer, sizeof(peer));
	struct rt_http_request req = {
		.method = ex->method,
		.path = ex->path,
		.query = ex->query ? ex->query : "",
		.body = "",
		.peer = srv->unix_path ? "unix" : peer,
		.server = srv->name,
	};
	srv->dispatching++;
	bool ok = srv->ws_filter(srv->user, ex, &req);
	srv->dispatching--;
	ex->wsi = NULL;
	ex->server = NULL;
	rt_http_exchange_unref(ex);
	return ok;
}

int rt_http_server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			    size_t len)
{
	struct rt_http_pss *pss = user;
	struct rt_http_server *srv;

	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		// user = SSL_CTX *, in = the vhost: install our verification policy.
		srv = lws_get_vhost_user((struct lws_vhost *)in);
		if (srv)
			rt_http_server_tls_setup(srv, (SSL_CTX *)user);
		return 0;
	case LWS_CALLBACK_OPENSSL_PERFORM_SERVER_CERT_VERIFICATION:
		// lws sends a client connection's check to protocol 0 of the context's first
		// vhost, which may be a server's: hand it to the client side.
		return rt_http_client_callback(wsi, reason, user, in, len);
	case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
		// Only reached if lws installed its own verify callback; ours replaces it.
		return (int)len ? 0 : 1;
	default:
		break;
	}

	srv = wsi ? server_of(wsi) : NULL;
	if (!srv || srv->closed) {
		if (reason == LWS_CALLBACK_CLOSED_HTTP ||
		    reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL) {
			if (pss)
				detach_exchange(pss);
		}
		if ((reason == LWS_CALLBACK_CLOSED || reason == LWS_CALLBACK_USER) && pss &&
		    pss->ws)
			return rt_ws_handle(wsi, reason, pss, in, len);
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_http(srv, wsi, pss, in, len);
	case LWS_CALLBACK_HTTP_BODY:
		return on_body(wsi, pss, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		rt_http_sock_mark(lws_get_socket_fd(wsi));
		if (pss->ex && !pss->ex->dispatched && !pss->ex->responded)
			return dispatch(srv, wsi, pss->ex);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		// whole responses are written by send_response(); streamed ones piece by piece
		return rt_http_stream_writeable(wsi, pss);
	case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
		rt_http_sock_accepted(lws_get_socket_fd(wsi));
		return 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (pss)
			detach_exchange(pss);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (!ws_path_allowed(srv, wsi) || !ws_upgrade_allowed(srv, wsi))
			return 1;
		rt_http_sock_upgraded(lws_get_socket_fd(wsi));
		return 0;
	case LWS_CALLBACK_RAW_ADOPT:
		return refuse_connect(wsi);
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_CLOSED:
		return rt_ws_handle(wsi, reason, pss, in, len);
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

void rt_http_exchange_ref(struct rt_http_exchange *ex)
{
	ex->refs++;
}

static bool header_text_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

/* Whether the packed list @p h (@p len bytes) is whole "name\0value\0" pairs that cannot split
 * the header block (response splitting). */
bool rt_http_headers_ok(const char *h, size_t len)
{
	for (size_t off = 0; off < len;) {
		const char *name = h + off;
		const char *nend = memchr(name, '\0', len - off);
		const char *value = nend ? nend + 1 : NULL;
		const char *vend = value ? memchr(value, '\0', len - (size_t)(value - h)) : NULL;
		if (!vend || !*name || nend - name > 100 || strpbrk(name, " :\t") ||
		    !header_text_ok(name) || !header_text_ok(value))
			return false;
		off = (size_t)(vend - h) + 1;
	}
	return true;
}

int rt_http_exchange_respond(struct rt_http_exchange *ex, int status, const char *headers,
			     size_t headers_len, const void *body, size_t len)
{
	if (status < 100 || status > 599 ||
	    (headers_len && !rt_http_headers_ok(headers, headers_len)))
		return -EINVAL;
	if (ex->filter_only)
		return -EPERM;
	if (ex->responded)
		return -EALREADY;
	if (!ex->wsi)
		return -ENOTCONN;
	struct rt_buf h = { 0 };
	char *copy = malloc(len ? len : 1);
	if (!copy || (headers_len && rt_buf_add(&h, headers, headers_len))) {
		free(copy);
		rt_buf_free(&h);
		return -ENOMEM;
	}
	if (len)
		memcpy(copy, body, len);
	int rc = respond_owned(ex, status, &h, copy, len);
	rt_buf_free(&h);
	return rc;
}

char *rt_http_exchange_header(struct rt_http_exchange *ex, const char *name, size_t *len)
{
	if (!ex->wsi || ex->responded)
		return NULL;
	char key[128];
	snprintf(key, sizeof(key), "%s:", name);
	for (char *p = key; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		const char *tok = (const char *)lws_token_to_string((enum lws_token_indexes)t);
		if (tok && strcasecmp(tok, key) == 0) {
			int n = lws_hdr_total_length(ex->wsi, (enum lws_token_indexes)t);
			if (n <= 0)
				return NULL;
			char *v = malloc((size_t)n + 1);
			if (v && lws_hdr_copy(ex->wsi, v, n + 1, (enum lws_token_indexes)t) < 0) {
				free(v);
				v = NULL;
			}
			if (v && len)
				*len = strlen(v);
			return v;
		}
	}
	int n = lws_hdr_custom_length(ex->wsi, key, (int)strlen(key));
	if (n < 0)
		return NULL;
	char *v = malloc((size_t)n + 1);
	if (!v)
		return NULL;
	int got = lws_hdr_custom_copy(ex->wsi, v, n + 1, key, (int)strlen(key));
	if (got < 0) {
		free(v);
		return NULL;
	}
	v[got] = '\0';
	if (len)
		*len = (size_t)got;
	return v;
}

bool rt_http_exchange_connected(const struct rt_http_exchange *ex)
{
	return ex->wsi != NULL;
}

bool rt_http_exchange_responded(const struct rt_http_exchange *ex)
{
	return ex->responded;
}

const char *rt_http_exchange_method(const struct rt_http_exchange *ex)
{
	return ex->method;
}

const char *rt_http_exchange_path(const struct rt_http_exchange *ex)
{
	return ex->path;
}

const unsigned char *rt_http_exchange_peer_cert(const struct rt_http_exchange *ex, size_t *len)
{
	*len = 0;
	return ex->peer ? rt_tls_peer_der(ex->peer, len) : NULL;
}

X509 *rt_http_exchange_peer_x509(const struct rt_http_exchange *ex)
{
	return ex->peer ? rt_tls_peer_cert(ex->peer) : NULL;
}
