/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The QMP client (qemu_qmp.h): connection attempts until a deadline, greeting, capability
 * negotiation, requests matched to answers by id, events, bounded line framing, and a close
 * path that fails what is pending and reports once, from the loop.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "qemu/qemu_check.h"
#include "qemu/qemu_json.h"
#include "qemu/qemu_qmp.h"

enum state {
	S_CONNECTING, /* no socket yet: attempts every retry_ms */
	S_GREETING,   /* connected: waiting for {"QMP": ...} */
	S_CAPS,	      /* qmp_capabilities sent */
	S_READY,
};

struct qemu_qmp {
	uv_loop_t *loop;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct qemu_qmp_callbacks cb;
	void *ud;
	size_t max_line;
	unsigned retry_ms;
	uint64_t timeout_ms;
	enum state state;
	bool closing;
	int handles; /* open uv handles: the two timers and the pipe */
	uv_timer_t retry, deadline;
	uv_pipe_t *pipe;
	uv_connect_t connect_req;
	int last_connect_err;
	char *line; /* the line being assembled */
	size_t line_len, line_cap;
	char *greeting;
	size_t greeting_len;
	uint64_t next_id, caps_id;
	uint64_t *pending;
	size_t npending;
	struct qemu_error close_err;
	bool has_close_err;
	char rbuf[64 * 1024];
};

struct wreq {
	uv_write_t req;
	struct qemu_qmp *q;
	char data[];
};

static void finish(struct qemu_qmp *q)
{
	struct qemu_error cancel;
	const struct qemu_error *perr = &q->close_err;
	if (!q->has_close_err) {
		qemu_fail(&cancel, ECANCELED, "ECANCELED", "the QMP connection was closed");
		perr = &cancel;
	}
	for (size_t i = 0; i < q->npending; i++)
		if (q->cb.response)
			q->cb.response(q, q->pending[i], NULL, 0, perr, q->ud);
	if (q->cb.closed)
		q->cb.closed(q, q->has_close_err ? &q->close_err : NULL, q->ud);
	free(q->pending);
	free(q->line);
	free(q->greeting);
	free(q);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct qemu_qmp *q = h->data;
	if ((uv_handle_t *)q->pipe == h) {
		q->pipe = NULL;
		free(h);
	} else if (h->type == UV_NAMED_PIPE) {
		free(h); // an earlier attempt's pipe
	}
	if (--q->handles == 0 && q->closing)
		finish(q);
}

/* End the connection; @p code NULL: closed by the caller. */
__attribute__((format(printf, 3, 4))) static void shut(struct qemu_qmp *q, const char *code,
						       const char *fmt, ...)
{
	if (q->closing)
		return;
	q->closing = true;
	if (code) {
		q->has_close_err = true;
		snprintf(q->close_err.code, sizeof(q->close_err.code), "%s", code);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(q->close_err.msg, sizeof(q->close_err.msg), fmt, ap);
		va_end(ap);
	}
	uv_close((uv_handle_t *)&q->retry, on_handle_closed);
	uv_close((uv_handle_t *)&q->deadline, on_handle_closed);
	if (q->pipe && !uv_is_closing((uv_handle_t *)q->pipe))
		uv_close((uv_handle_t *)q->pipe, on_handle_closed);
}

static const char *uv_code(int e)
{
	switch (e) {
	case UV_ENOENT:
		return "ENOENT";
	case UV_ECONNREFUSED:
		return "ECONNREFUSED";
	case UV_EACCES:
	case UV_EPERM:
		return "EACCES";
	default:
		return "EIO";
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	struct qemu_qmp *q = w->q;
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		shut(q, "EIO", "writing to QMP socket %s failed: %s", q->path, uv_strerror(status));
}

/* Queue @p len bytes (a whole line with its newline). */
static int send_bytes(struct qemu_qmp *q, const char *data, size_t len)
{
	struct wreq *w = malloc(sizeof(*w) + len);
	if (!w)
		return -ENOMEM;
	w->q = q;
	memcpy(w->data, data, len);
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
	int rc = uv_write(&w->req, (uv_stream_t *)q->pipe, &buf, 1, on_write);
	if (rc < 0) {
		free(w);
		shut(q, "EIO", "writing to QMP socket %s failed: %s", q->path, uv_strerror(rc));
		return -EPIPE;
	}
	return 0;
}

static bool take_pending(struct qemu_qmp *q, uint64_t id)
{
	for (size_t i = 0; i < q->npending; i++) {
		if (q->pending[i] == id) {
			memmove(&q->pending[i], &q->pending[i + 1],
				(q->npending - i - 1) * sizeof(*q->pending));
			q->npending--;
			return true;
		}
	}
	return false;
}

static void on_greeting(struct qemu_qmp *q, const char *line, size_t len,
			const struct qemu_json_top *top)
{
	if (!top->qmp) {
		shut(q, "EPROTO", "%s: expected the QMP greeting, got another JSON object",
		     q->path);
		return;
	}
	q->greeting = malloc(len + 1);
	if (!q->greeting) {
		shut(q, "ENOMEM", "out of memory");
		return;
	}
	memcpy(q->greeting, line, len);
	q->greeting[len] = '\0';
	q->greeting_len = len;
	q->caps_id = ++q->next_id;
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "{\"execute\":\"qmp_capabilities\",\"id\":%llu}\n",
			 (unsigned long long)q->caps_id);
	q->state = S_CAPS;
	if (send_bytes(q, buf, (size_t)n) == -ENOMEM)
		shut(q, "ENOMEM", "out of memory");
}

static void on_line(struct qemu_qmp *q, const char *line, size_t len)
{
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len == 0)
		return;
	struct qemu_json_top top;
	size_t where = 0;
	if (qemu_json_scan(line, len, &top, &where) < 0) {
		shut(q, "EPROTO", "%s sent a line that is not one JSON object (byte %zu of %zu)",
		     q->path, where, len);
		return;
	}
	switch (q->state) {
	case S_GREETING:
		on_greeting(q, line, len, &top);
		return;
	case S_CAPS:
		if (!top.has_id || top.id != q->caps_id || !(top.ret || top.error))
			return; // nothing else is expected before the answer
		if (top.error) {
			shut(q, "EQMP", "qmp_capabilities refused: %.200s", line);
			return;
		}
		q->state = S_READY;
		uv_timer_stop(&q->deadline);
		if (q->cb.ready)
			q->cb.ready(q, q->greeting, q->greeting_len, q->ud);
		return;
	case S_READY:
		if (top.event) {
			if (q->cb.event)
				q->cb.event(q, line, len, q->ud);
		} else if ((top.ret || top.error) && top.has_id && take_pending(q, top.id)) {
			if (q->cb.response)
				q->cb.response(q, top.id, line, len, NULL, q->ud);
		} // else: an answer nobody waits for (no id, unknown id): dropped
		return;
	default:
		return;
	}
}

/* Append @p len bytes to the line being assembled, bounded by max_line. */
static int line_add(struct qemu_qmp *q, const char *p, size_t len)
{
	if (q->line_len + len > q->max_line) {
		shut(q, "EPROTO", "%s sent a line longer than %zu bytes", q->path, q->max_line);
		return -1;
	}
	if (q->line_len + len > q->line_cap) {
		size_t cap = q->line_cap ? q->line_cap : 4096;
		while (cap < q->line_len + len)
			cap *= 2;
		if (cap > q->max_line)
			cap = q->max_line;
		char *n = realloc(q->line, cap);
		if (!n) {
			shut(q, "ENOMEM", "out of memory");
			return -1;
		}
		q->line = n;
		q->line_cap = cap;
	}
	memcpy(q->line + q->line_len, p, len);
	q->line_len += len;
	return 0;
}

static void feed(struct qemu_qmp *q, const char *p, size_t len)
{
	while (len && !q->closing) {
		const char *nl = memchr(p, '\n', len);
		size_t chunk = nl ? (size_t)(nl - p) : len;
		if (q->line_len == 0 && nl) { // a whole line in the read buffer: no copy
			if (chunk > q->max_line) {
				shut(q, "EPROTO", "%s sent a line longer than %zu bytes", q->path,
				     q->max_line);
				return;
			}
			on_line(q, p, chunk);
		} else {
			if (line_add(q, p, chunk) < 0)
				return;
			if (nl) {
				size_t n = q->line_len;
				q->line_len = 0; // reset before on_line runs callbacks
				on_line(q, q->line, n);
			}
		}
		if (!nl)
			return;
		p = nl + 1;
		len -= chunk + 1;
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct qemu_qmp *q = h->data;
	*buf = uv_buf_init(q->rbuf, sizeof(q->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct qemu_qmp *q = s->data;
	if (q->closing || nread == 0)
		return;
	if (nread == UV_EOF || nread == UV_ECONNRESET) { // a reset: it exited with bytes unread
		shut(q, "ECLOSED", "QEMU closed the QMP connection %s%s", q->path,
		     nread == UV_EOF ? "" : " (reset)");
		return;
	}
	if (nread < 0) {
		shut(q, "EIO", "reading QMP socket %s failed: %s", q->path,
		     uv_strerror((int)nread));
		return;
	}
	feed(q, buf->base, (size_t)nread);
}

static void attempt(struct qemu_qmp *q);

static void on_retry(uv_timer_t *t)
{
	struct qemu_qmp *q = t->data;
	if (!q->closing)
		attempt(q);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct qemu_qmp *q = req->data;
	if (q->closing)
		return; // the pipe is being closed with the rest
	if (status == 0) {
		q->state = S_GREETING;
		int rc = uv_read_start((uv_stream_t *)q->pipe, on_alloc, on_read);
		if (rc < 0)
			shut(q, "EIO", "reading QMP socket %s failed: %s", q->path,
			     uv_strerror(rc));
		return;
	}
	q->last_connect_err = status;
	uv_pipe_t *p = q->pipe;
	q->pipe = NULL;
	uv_close((uv_handle_t *)p, on_handle_closed);
	if (status == UV_ENOENT || status == UV_ECONNREFUSED || status == UV_EAGAIN)
		uv_timer_start(&q->retry, on_retry, q->retry_ms, 0);
	else
		shut(q, uv_code(status), "cannot connect to QMP socket %s: %s", q->path,
		     uv_strerror(status));
}

static void attempt(struct qemu_qmp *q)
{
	uv_pipe_t *p = malloc(sizeof(*p));
	if (!p) {
		shut(q, "ENOMEM", "out of memory");
		return;
	}
	uv_pipe_init(q->loop, p, 0);
	p->data = q;
	q->pipe = p;
	q->handles++;
	q->connect_req.data = q;
	uv_pipe_connect(&q->connect_req, p, q->path, on_connect);
}

static void on_deadline(uv_timer_t *t)
{
	struct qemu_qmp *q = t->data;
	if (q->state == S_CONNECTING) {
		int e = q->last_connect_err ? q->last_connect_err : UV_ENOENT;
		shut(q, e == UV_ECONNREFUSED || e == UV_ENOENT ? "ETIMEDOUT" : uv_code(e),
		     "no QMP socket at %s within %llu ms (%s)", q->path,
		     (unsigned long long)q->timeout_ms, uv_strerror(e));
	} else if (q->state != S_READY) {
		shut(q, "ETIMEDOUT", "%s: no QMP %s within %llu ms", q->path,
		     q->state == S_GREETING ? "greeting" : "capabilities answer",
		     (unsigned long long)q->timeout_ms);
	}
}

int qemu_qmp_connect(uv_loop_t *loop, const char *path, const struct qemu_qmp_options *opts,
		     const struct qemu_qmp_callbacks *cb, void *ud, struct qemu_qmp **out,
		     struct qemu_error *err)
{
	*out = NULL;
	int rc = qemu_check_path(err, "path", path, QEMU_MAX_SOCKET);
	if (rc)
		return rc;
	struct qemu_qmp_options o = opts ? *opts : (struct qemu_qmp_options){ 0 };
	if (o.max_line && (o.max_line < QEMU_QMP_MIN_LINE || o.max_line > QEMU_QMP_CEIL_LINE))
		return qemu_bad(err, "max_line", "must be %d..%d bytes", QEMU_QMP_MIN_LINE,
				QEMU_QMP_CEIL_LINE);
	if (o.timeout_ms > 24ull * 3600 * 1000)
		return qemu_bad(err, "timeout_ms", "longer than a day");
	struct qemu_qmp *q = calloc(1, sizeof(*q));
	if (!q)
		return qemu_fail(err, ENOMEM, "ENOMEM", "out of memory");
	q->loop = loop;
	snprintf(q->path, sizeof(q->path), "%s", path);
	if (cb)
		q->cb = *cb;
	q->ud = ud;
	q->max_line = o.max_line ? o.max_line : QEMU_QMP_MAX_LINE;
	q->retry_ms = o.retry_ms ? o.retry_ms : QEMU_QMP_RETRY_MS;
	q->timeout_ms = o.timeout_ms ? o.timeout_ms : QEMU_QMP_TIMEOUT_MS;
	q->pending = calloc(QEMU_QMP_MAX_PENDING, sizeof(*q->pending));
	if (!q->pending) {
		free(q);
		return qemu_fail(err, ENOMEM, "ENOMEM", "out of memory");
	}
	uv_timer_init(loop, &q->retry);
	uv_timer_init(loop, &q->deadline);
	q->retry.data = q->deadline.data = q;
	q->handles = 2;
	uv_timer_start(&q->deadline, on_deadline, q->timeout_ms, 0);
	attempt(q);
	*out = q;
	return 0;
}

int qemu_qmp_execute(struct qemu_qmp *q, const char *command, const char *args_json, uint64_t *id,
		     struct qemu_error *err)
{
	if (q->closing)
		return qemu_fail(err, EPIPE, "EPIPE", "the QMP connection is closed");
	if (q->state != S_READY)
		return qemu_fail(err, EAGAIN, "EAGAIN", "the QMP session is not ready yet");
	int rc = qemu_check_name(err, "command", command, QEMU_QMP_MAX_COMMAND, NULL);
	if (rc)
		return rc;
	size_t alen = args_json ? strlen(args_json) : 0;
	if (alen) {
		struct qemu_json_top top;
		size_t where;
		if (alen > q->max_line - 128)
			return qemu_bad(err, "arguments", "longer than %zu bytes",
					q->max_line - 128);
		if (memchr(args_json, '\n', alen) || memchr(args_json, '\r', alen))
			return qemu_bad(err, "arguments", "must be on one line");
		if (qemu_json_scan(args_json, alen, &top, &where) < 0)
			return qemu_bad(err, "arguments", "not a JSON object (byte %zu)", where);
	}
	if (q->npending >= QEMU_QMP_MAX_PENDING)
		return qemu_fail(err, EAGAIN, "EAGAIN", "%d QMP requests already in flight",
				 QEMU_QMP_MAX_PENDING);
	uint64_t n = ++q->next_id;
	char *buf = NULL;
	int len = asprintf(&buf, "{\"execute\":\"%s\"%s%s,\"id\":%llu}\n", command,
			   alen ? ",\"arguments\":" : "", alen ? args_json : "",
			   (unsigned long long)n);
	if (len < 0)
		return qemu_fail(err, ENOMEM, "ENOMEM", "out of memory");
	rc = send_bytes(q, buf, (size_t)len);
	free(buf);
	if (rc == -ENOMEM)
		return qemu_fail(err, ENOMEM, "ENOMEM", "out of memory");
	if (rc < 0)
		return qemu_fail(err, EPIPE, "EPIPE", "the QMP connection is closed");
	q->pending[q->npending++] = n;
	if (id)
		*id = n;
	return 0;
}

void qemu_qmp_close(struct qemu_qmp *q)
{
	if (q)
		shut(q, NULL, "%s", "");
}

bool qemu_qmp_ready(const struct qemu_qmp *q)
{
	return q->state == S_READY && !q->closing;
}

size_t qemu_qmp_pending(const struct qemu_qmp *q)
{
	return q->npending;
}
