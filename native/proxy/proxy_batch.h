/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_batch: the sends to plain sockets (backends, passthrough clients) of one batch of socket
 * events, handed to the kernel in one io_uring_enter(2) at the end of the batch instead of one
 * send(2) each.
 *
 * Why: a backend on the same host wakes on each send, and the scheduler lets the woken process
 * run at once, so a send(2) per request means a context switch per request and a backend that
 * answers one request per wake. Queued sends reach every backend socket inside one system call;
 * the backends then wake once per batch and answer everything queued.
 *
 * A send is queued only when it is the last thing its direction does in the batch (a short read
 * that drained the source), so a direction never has more than one queued send and bytes keep
 * their order. Sends carry MSG_DONTWAIT: each completes inside the submit (bytes, or EAGAIN),
 * and what a full socket did not take goes back to the direction's own buffer to wait for
 * POLLOUT as an ordinary write would. Without io_uring (an old kernel, `io_uring_disabled`) the
 * proxy sends at once, as before.
 */
#ifndef MOONSTACK_PROXY_BATCH_H
#define MOONSTACK_PROXY_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct px_conn;
struct px_dir;

/** One worker's ring and staging area (opaque). */
struct px_batch;

/**
 * A batch for up to @p entries queued sends of @p stage_bytes staged bytes in all, or NULL when
 * io_uring is unavailable here (the caller then sends at once).
 */
struct px_batch *px_batch_new(unsigned entries, size_t stage_bytes);

/** Free @p b (NULL is fine). Nothing may be queued. */
void px_batch_free(struct px_batch *b);

/**
 * Queue @p n bytes at @p p (copied) for @p c's backend socket (@p backend) or its plain client
 * socket on behalf of direction @p d.
 * Returns false (nothing queued) if the batch is full or @p b is NULL: send at once instead.
 */
bool px_batch_queue(struct px_batch *b, struct px_conn *c, struct px_dir *d, bool backend,
		    const uint8_t *p, size_t n);

/**
 * Submit everything queued in one system call and settle each send: a complete one is done;
 * the rest of a partial one (or all of an EAGAIN one), and a failure, go to px_relay_settle().
 * Sends of connections closed since they were queued are dropped.
 */
void px_batch_flush(struct px_batch *b);

/**
 * Called by px_batch_flush() for a queued send the socket took only @p sent of (res >= 0), or
 * failed with -errno @p sent (< 0); @p rest / @p nrest are the bytes not taken. Implemented by
 * the relay.
 */
void px_relay_settle(struct px_conn *c, struct px_dir *d, long sent, const uint8_t *rest,
		     size_t nrest);

#endif
