/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Websocket connections on a server: open/message/close events to the server's handler, a
 * bounded outgoing queue drained one message per writeable callback, fragment reassembly with a
 * size cap. Also the connection's API (moonstack/rt_http.h).
 */
#include <errno.h>
#include <string.h>

#include "rt_http_internal.h"

/* Cap on queued outgoing bytes per connection: a slow reader must not exhaust memory. */
#define WS_MAX_QUEUED (16u * 1024 * 1024)

void rt_ws_conn_unref(struct rt_ws_conn *c)
{
	if (!c || --c->refs > 0)
		return;
	while (c->out_head) {
		struct rt_ws_msg *m = c->out_head;
		c->out_head = m->next;
		free(m);
	}
	rt_buf_free(&c->in);
	free(c->path);
	free(c->query);
	free(c);
}

int rt_ws_send(struct rt_ws_conn *c, const void *data, size_t len, bool binary)
{
	if (!c->wsi || c->close_requested)
		return -ENOTCONN;
	if (c->out_bytes + len > WS_MAX_QUEUED)
		return -ENOBUFS;
	struct rt_ws_msg *m = malloc(sizeof(*m) + LWS_PRE + len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->len = len;
	m->binary = binary;
	memcpy(m->data + LWS_PRE, data, len);
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	c->out_bytes += len;
	lws_callback_on_writable(c->wsi);
	return 0;
}

void rt_ws_close(struct rt_ws_conn *c, int code, const char *reason)
{
	if (!c->wsi || c->close_requested)
		return;
	c->close_requested = true;
	c->close_code = code;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason ? reason : "");
	lws_callback_on_writable(c->wsi);
}

/* Hand an event to the server's websocket handler, if the connection still has its server. */
static void notify(struct rt_ws_conn *c, enum rt_ws_event event, const char *data, size_t len,
		   bool binary)
{
	struct rt_http_server *srv = c->server;
	if (!srv || !srv->on_ws)
		return;
	srv->on_ws(srv->user, c, event, data, len, binary);
}

static int on_established(struct lws *wsi, struct rt_http_pss *pss)
{
	struct rt_http_server *srv = lws_get_vhost_user(lws_get_vhost(wsi));
	struct rt_ws_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->refs = 1; // the connection's
	c->wsi = wsi;
	c->server = srv;
	c->id = ++srv->next_ws_id;
	char uri[512] = "/";
	lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI);
	char *q = strchr(uri, '?');
	if (q)
		*q = '\0';
	c->path = strdup(uri);
	c->query = rt_http_copy_query(wsi);
	lws_get_peer_simple(wsi, c->peer, sizeof(c->peer));
	pss->ws = c;
	notify(c, RT_WS_OPEN, NULL, 0, false);
	return 0;
}

static int on_receive(struct lws *wsi, struct rt_ws_conn *c, const void *in, size_t len)
{
	if (lws_is_first_fragment(wsi)) {
		c->in.len = 0;
		c->in_binary = lws_frame_is_binary(wsi);
	}
	size_t cap = c->server ? c->server->max_ws_message : RT_WS_DEFAULT_MAX_MESSAGE;
	if (c->in.len + len > cap) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				 (unsigned char *)"message too large", 17);
		return -1;
	}
	if (rt_buf_add(&c->in, in, len))
		return -1;
	if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
		notify(c, RT_WS_MESSAGE, c->in.data ? c->in.data : "", c->in.len, c->in_binary);
		c->in.len = 0;
	}
	return 0;
}

/*
 * Send the close frame ourselves (raw: lws has no public close write) and let lws finish when
 * the peer answers, or at the timeout. Returning -1 after lws_close_reason() is the usual way,
 * but lws built with _DEBUG (Debian's is) closes such a connection twice on the libuv loop,
 * dropping the frame unsent. Returns 0 or -1.
 */
static int send_close_frame(struct lws *wsi, struct rt_ws_conn *c)
{
	unsigned char frame[LWS_PRE + 2 + 125];
	size_t n = strlen(c->close_reason);
	if (n > 123)
		n = 123;
	unsigned char *f = frame + LWS_PRE;
	f[0] = 0x88; // FIN | close
	f[1] = (unsigned char)(n + 2);
	f[2] = (unsigned char)(c->close_code >> 8);
	f[3] = (unsigned char)(c->close_code & 0xff);
	memcpy(f + 4, c->close_reason, n);
	c->close_started = true;
	if (lws_write(wsi, f, n + 4, LWS_WRITE_RAW) < (int)(n + 4))
		return -1;
	lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 5);
	return 0;
}

static int on_writeable(struct lws *wsi, struct rt_ws_conn *c)
{
	if (c->close_requested && !c->out_head) {
		if (c->close_started)
			return 0;
		return send_close_frame(wsi, c);
	}
	struct rt_ws_msg *m = c->out_head;
	if (!m)
		return 0;
	int w = lws_write(wsi, m->data + LWS_PRE, m->len,
			  m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
	c->out_head = m->next;
	if (!c->out_head)
		c->out_tail = NULL;
	c->out_bytes -= m->len;
	free(m);
	if (w < 0)
		return -1;
	if (c->out_head || c->close_requested)
		lws_callback_on_writable(wsi);
	return 0;
}

int rt_ws_handle(struct lws *wsi, enum lws_callback_reasons reason, struct rt_http_pss *pss,
		 void *in, size_t len)
{
	struct rt_ws_conn *c = pss ? pss->ws : NULL;
	switch (reason) {
	case LWS_CALLBACK_ESTABLISHED:
		return on_established(wsi, pss);
	case LWS_CALLBACK_RECEIVE:
		return c ? on_receive(wsi, c, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? on_writeable(wsi, c) : 0;
	case LWS_CALLBACK_USER:
		// The server is closing (rt_http_server_close): send a requested close frame
		// now, the vhost goes before the next writeable callback would come.
		if (c && c->wsi && c->close_requested && !c->close_started)
			send_close_frame(wsi, c);
		return 0;
	case LWS_CALLBACK_CLOSED:
		if (!c)
			return 0;
		pss->ws = NULL;
		c->wsi = NULL;
		notify(c, RT_WS_CLOSE, NULL, 0, false);
		c->server = NULL;
		rt_ws_conn_unref(c);
		return 0;
	default:
		return 0;
	}
}

void rt_ws_conn_ref(struct rt_ws_conn *c)
{
	c->refs++;
}

unsigned long rt_ws_conn_id(const struct rt_ws_conn *c)
{
	return c->id;
}

const char *rt_ws_conn_path(const struct rt_ws_conn *c)
{
	return c->path;
}

const char *rt_ws_conn_query(const struct rt_ws_conn *c)
{
	return c->query ? c->query : "";
}

const char *rt_ws_conn_peer(const struct rt_ws_conn *c)
{
	return c->peer;
}

bool rt_ws_conn_connected(const struct rt_ws_conn *c)
{
	return c->wsi != NULL;
}

bool rt_ws_conn_is_open(const struct rt_ws_conn *c)
{
	return c->wsi != NULL && !c->close_requested;
}
