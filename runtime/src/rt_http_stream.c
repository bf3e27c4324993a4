/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streamed HTTP responses: the head goes out at once without Content-Length (lws then marks the
 * connection "close"), the body pieces are queued on the exchange and written one per
 * LWS_CALLBACK_HTTP_WRITEABLE (lws calls it only once its own buffered output is flushed), and
 * after the end the connection is closed the way whole responses close theirs. A client that
 * goes away detaches the exchange: later writes answer -ENOTCONN.
 */
#include <errno.h>
#include <string.h>

#include "rt_http_internal.h"

void rt_http_stream_free(struct rt_http_exchange *ex)
{
	struct rt_http_chunk *c = ex->out_head;
	while (c) {
		struct rt_http_chunk *next = c->next;
		free(c);
		c = next;
	}
	ex->out_head = ex->out_tail = NULL;
	ex->out_bytes = 0;
}

/* Close the connection of @p wsi on a later turn (as send_response() does). */
static void close_later(struct lws *wsi)
{
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	lws_cancel_service(lws_get_context(wsi));
}

int rt_http_exchange_begin(struct rt_http_exchange *ex, int status, const char *headers,
			   size_t headers_len)
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
	if (headers_len && rt_buf_add(&h, headers, headers_len)) {
		rt_buf_free(&h);
		return -ENOMEM;
	}
	ex->responded = true;
	ex->streaming = true;
	ex->status = status;
	rt_buf_free(&ex->resp_headers);
	ex->resp_headers = h;
	if (ex->rx_paused) {
		lws_rx_flow_control(ex->wsi, 1);
		ex->rx_paused = false;
	}
	if (rt_http_write_head(ex->wsi, ex, LWS_ILLEGAL_HTTP_CONTENT_LEN)) {
		ex->stream_ended = true;
		close_later(ex->wsi);
		return -ENOTCONN;
	}
	if (ex->head_only) {
		ex->stream_ended = true;
		lws_callback_on_writable(ex->wsi);
	}
	return 0;
}

int rt_http_exchange_write(struct rt_http_exchange *ex, const void *data, size_t len)
{
	if (!ex->streaming || ex->stream_ended)
		return -EINVAL;
	if (!ex->wsi)
		return -ENOTCONN;
	if (len == 0)
		return 0;
	if (ex->out_bytes + len > RT_HTTP_STREAM_MAX_QUEUED)
		return -ENOBUFS;
	struct rt_http_chunk *c = malloc(sizeof(*c) + LWS_PRE + len);
	if (!c)
		return -ENOMEM;
	c->next = NULL;
	c->len = len;
	memcpy(c->data + LWS_PRE, data, len);
	if (ex->out_tail)
		ex->out_tail->next = c;
	else
		ex->out_head = c;
	ex->out_tail = c;
	ex->out_bytes += len;
	lws_callback_on_writable(ex->wsi);
	return 0;
}

int rt_http_exchange_end(struct rt_http_exchange *ex)
{
	if (!ex->streaming)
		return -EINVAL;
	if (ex->stream_ended)
		return 0;
	ex->stream_ended = true;
	if (ex->wsi)
		lws_callback_on_writable(ex->wsi);
	return 0;
}

size_t rt_http_exchange_queued(const struct rt_http_exchange *ex)
{
	return ex->out_bytes;
}

int rt_http_stream_writeable(struct lws *wsi, struct rt_http_pss *pss)
{
	struct rt_http_exchange *ex = pss ? pss->ex : NULL;
	if (!ex || !ex->streaming)
		return 0;
	struct rt_http_chunk *c = ex->out_head;
	if (c && !ex->head_only) {
		ex->out_head = c->next;
		if (!ex->out_head)
			ex->out_tail = NULL;
		ex->out_bytes -= c->len;
		int n = lws_write(wsi, c->data + LWS_PRE, c->len, LWS_WRITE_HTTP);
		free(c);
		if (n < 0) {
			ex->stream_ended = true;
			close_later(wsi);
			return 0;
		}
		if (ex->out_head || ex->stream_ended)
			lws_callback_on_writable(wsi);
		return 0;
	}
	if (ex->stream_ended) {
		rt_http_stream_free(ex);
		close_later(wsi);
	}
	return 0;
}
