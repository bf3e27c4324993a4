/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A QMP client on a libuv loop: connect to QEMU's `-qmp unix:PATH,server=on,wait=off` socket
 * (retrying until a deadline, since QEMU creates it a little after exec), read the greeting,
 * negotiate capabilities, then send commands with an "id" each and match the answers by id.
 * Asynchronous events are handed over as they come. Lines are newline-delimited JSON, each at
 * most `max_line` bytes; anything that is not one JSON object per line closes the connection
 * (EPROTO). Nothing is decoded here beyond framing: answers and events are raw JSON lines.
 *
 * Every callback is made from the loop, never from inside an API call. `closed` is called
 * exactly once for every connection qemu_qmp_connect() started, after the requests still
 * pending got their `response` with an error; the object is freed when it returns.
 */
#ifndef MOONSTACK_QEMU_QMP_H
#define MOONSTACK_QEMU_QMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "qemu/qemu.h"

/** Defaults and bounds. */
enum {
	QEMU_QMP_TIMEOUT_MS = 5000,	       /**< connect + greeting + capabilities */
	QEMU_QMP_RETRY_MS = 20,		       /**< between connection attempts */
	QEMU_QMP_MAX_LINE = 1024 * 1024,       /**< default longest line accepted (bytes) */
	QEMU_QMP_MIN_LINE = 1024,	       /**< smallest max_line accepted */
	QEMU_QMP_CEIL_LINE = 64 * 1024 * 1024, /**< largest max_line accepted */
	QEMU_QMP_MAX_PENDING = 1024,	       /**< requests in flight */
	QEMU_QMP_MAX_COMMAND = 128,	       /**< bytes in a command name */
};

/** A QMP connection. */
struct qemu_qmp;

/** What a connection reports. Any callback may be NULL. */
struct qemu_qmp_callbacks {
	/** Capabilities are negotiated: qemu_qmp_execute() may be called. @p greeting is the
	 *  raw greeting line ({"QMP": {...}}). */
	void (*ready)(struct qemu_qmp *q, const char *greeting, size_t len, void *ud);
	/** The answer to request @p id: the raw line (with "return" or "error"), or @p line NULL
	 *  and @p err set when the connection ended before the answer came. */
	void (*response)(struct qemu_qmp *q, uint64_t id, const char *line, size_t len,
			 const struct qemu_error *err, void *ud);
	/** An asynchronous event: the raw line ({"event": ..., "data": ..., "timestamp": ...}). */
	void (*event)(struct qemu_qmp *q, const char *line, size_t len, void *ud);
	/** The connection is over: @p err NULL when qemu_qmp_close() ended it, else why
	 *  (ETIMEDOUT, ENOENT, ECONNREFUSED, EACCES: no session by the deadline; ECLOSED: QEMU
	 *  closed it; EPROTO: not QMP, or a line too long; EQMP: capabilities refused; EIO). */
	void (*closed)(struct qemu_qmp *q, const struct qemu_error *err, void *ud);
};

/** Options of qemu_qmp_connect(); zero fields take the defaults. */
struct qemu_qmp_options {
	uint64_t timeout_ms; /**< until the session is ready (QEMU_QMP_TIMEOUT_MS) */
	size_t max_line;     /**< longest line accepted (QEMU_QMP_MAX_LINE) */
	unsigned retry_ms;   /**< between attempts while the socket is absent or refused */
};

/**
 * Start connecting to the QMP socket @p path on @p loop. Returns 0 with *@p out set (the
 * callbacks then report everything, `closed` last), or -EINVAL (@p path empty, relative or
 * longer than a unix socket path allows; bad options) / -ENOMEM with @p err filled.
 */
int qemu_qmp_connect(uv_loop_t *loop, const char *path, const struct qemu_qmp_options *opts,
		     const struct qemu_qmp_callbacks *cb, void *ud, struct qemu_qmp **out,
		     struct qemu_error *err);

/**
 * Send `{"execute": COMMAND, "arguments": ARGS, "id": N}`. @p args_json is NULL (no
 * arguments) or one JSON object on one line. *@p id gets N; the answer comes to `response`.
 * Returns 0, -EINVAL (bad command name or arguments), -EAGAIN (not ready yet, or
 * QEMU_QMP_MAX_PENDING requests in flight), -EPIPE (closing) or -ENOMEM.
 */
int qemu_qmp_execute(struct qemu_qmp *q, const char *command, const char *args_json, uint64_t *id,
		     struct qemu_error *err);

/** Close the connection (idempotent). Pending requests fail with ECANCELED, then `closed`
 *  comes with a NULL error, from the loop. */
void qemu_qmp_close(struct qemu_qmp *q);

/** Whether the session is ready (and not closing). */
bool qemu_qmp_ready(const struct qemu_qmp *q);

/** The number of requests waiting for their answer. */
size_t qemu_qmp_pending(const struct qemu_qmp *q);

#endif
