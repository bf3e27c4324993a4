/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_batch: one io_uring per worker, driven through the raw system calls (the kernel's UAPI
 * header, no liburing), used for one thing only — the batch's queued sends to backends, all
 * submitted by one io_uring_enter(2) and all settled before it returns (MSG_DONTWAIT). See
 * proxy_batch.h for why.
 */
#define _GNU_SOURCE
#include "proxy/proxy_batch.h"

#include "proxy/proxy_conn.h"
#include "proxy/proxy_internal.h"

#include <errno.h>
#include <limits.h>
#include <linux/io_uring.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

struct px_batch_entry {
	struct px_conn *c;
	struct px_dir *d;
	bool backend;	 /**< to the backend's socket, else the client's */
	size_t off, len; /**< the bytes, in the stage */
};

struct px_batch {
	int fd;
	unsigned entries;
	/* submission ring */
	void *sq_map;
	size_t sq_map_len;
	_Atomic unsigned *sq_head, *sq_tail;
	unsigned *sq_mask, *sq_array;
	struct io_uring_sqe *sqes;
	size_t sqes_len;
	/* completion ring */
	void *cq_map; /**< == sq_map with IORING_FEAT_SINGLE_MMAP */
	size_t cq_map_len;
	_Atomic unsigned *cq_head, *cq_tail;
	unsigned *cq_mask;
	struct io_uring_cqe *cqes;
	/* what this batch queued */
	struct px_batch_entry *q;
	unsigned nq;
	uint8_t *stage;
	size_t stage_cap, stage_len;
};

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int sys_enter(int fd, unsigned submit, unsigned min_complete, unsigned flags)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, min_complete, flags, NULL, 0);
}

void px_batch_free(struct px_batch *b)
{
	if (!b)
		return;
	if (b->sqes)
		munmap(b->sqes, b->sqes_len);
	if (b->cq_map && b->cq_map != b->sq_map)
		munmap(b->cq_map, b->cq_map_len);
	if (b->sq_map)
		munmap(b->sq_map, b->sq_map_len);
	if (b->fd >= 0)
		close(b->fd);
	free(b->q);
	free(b->stage);
	free(b);
}

/* Put a send of @p len bytes at @p p to @p fd (MSG_DONTWAIT: settled inside the submit) in the
 * submission slot of @p tail, tagged @p tag. The caller publishes the tail. */
static void put_send(struct px_batch *b, unsigned tail, int fd, const void *p, size_t len,
		     uint64_t tag)
{
	unsigned slot = tail & *b->sq_mask;
	struct io_uring_sqe *s = &b->sqes[slot];

	memset(s, 0, sizeof(*s));
	s->opcode = IORING_OP_SEND;
	s->fd = fd;
	s->addr = (uint64_t)(uintptr_t)p;
	s->len = (uint32_t)len;
	s->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
	s->user_data = tag;
	b->sq_array[slot] = slot;
}

/* Whether this kernel settles a MSG_DONTWAIT send inside the submit when the socket is full
 * (-EAGAIN in the completion) instead of waiting for room: px_batch_flush() relies on it. */
static bool settles_inline(struct px_batch *b)
{
	int sv[2];
	bool ok = false;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		return false;
	int small = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	char fill[4096] = { 0 };
	for (int i = 0; i < 4096 && send(sv[0], fill, sizeof(fill), MSG_DONTWAIT) > 0; i++)
		;
	unsigned tail = atomic_load_explicit(b->sq_tail, memory_order_relaxed);
	put_send(b, tail, sv[0], fill, 1, 0);
	atomic_store_explicit(b->sq_tail, tail + 1, memory_order_release);
	if (sys_enter(b->fd, 1, 0, 0) == 1) {
		unsigned head = atomic_load_explicit(b->cq_head, memory_order_relaxed);
		if (head != atomic_load_explicit(b->cq_tail, memory_order_acquire)) {
			ok = b->cqes[head & *b->cq_mask].res == -EAGAIN;
			atomic_store_explicit(b->cq_head, head + 1, memory_order_release);
		}
	}
	close(sv[0]);
	close(sv[1]);
	return ok; /* false: a send still pending dies with the ring, which the caller closes */
}

struct px_batch *px_batch_new(unsigned entries, size_t stage_bytes)
{
	struct io_uring_params p;
	struct px_batch *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	memset(&p, 0, sizeof(p));
	b->fd = sys_setup(entries, &p);
	if (b->fd < 0) {
		free(b);
		return NULL; /* ENOSYS, EPERM (io_uring_disabled), ENOMEM: send at once */
	}
	b->entries = p.sq_entries;
	b->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	b->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		if (b->cq_map_len > b->sq_map_len)
			b->sq_map_len = b->cq_map_len;
		b->cq_map_len = b->sq_map_len;
	}
	b->sq_map = mmap(NULL, b->sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			 b->fd, IORING_OFF_SQ_RING);
	if (b->sq_map == MAP_FAILED) {
		b->sq_map = NULL;
		goto fail;
	}
	if (p.features & IORING_FEAT_SINGLE_MMAP) {
		b->cq_map = b->sq_map;
	} else {
		b->cq_map = mmap(NULL, b->cq_map_len, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_POPULATE, b->fd, IORING_OFF_CQ_RING);
		if (b->cq_map == MAP_FAILED) {
			b->cq_map = NULL;
			goto fail;
		}
	}
	b->sqes_len = p.sq_entries * sizeof(struct io_uring_sqe);
	b->sqes = mmap(NULL, b->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, b->fd,
		       IORING_OFF_SQES);
	if (b->sqes == MAP_FAILED) {
		b->sqes = NULL;
		goto fail;
	}
	uint8_t *sq = b->sq_map, *cq = b->cq_map;
	b->sq_head = (_Atomic unsigned *)(sq + p.sq_off.head);
	b->sq_tail = (_Atomic unsigned *)(sq + p.sq_off.tail);
	b->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
	b->sq_array = (unsigned *)(sq + p.sq_off.array);
	b->cq_head = (_Atomic unsigned *)(cq + p.cq_off.head);
	b->cq_tail = (_Atomic unsigned *)(cq + p.cq_off.tail);
	b->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
	b->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	b->q = calloc(b->entries, sizeof(*b->q));
	b->stage_cap = stage_bytes;
	b->stage = malloc(stage_bytes);
	if (!b->q || !b->stage || !settles_inline(b))
		goto fail;
	return b;
fail:
	px_batch_free(b);
	return NULL;
}

bool px_batch_queue(struct px_batch *b, struct px_conn *c, struct px_dir *d, bool backend,
		    const uint8_t *p, size_t n)
{
	if (!b || b->nq == b->entries || n > b->stage_cap - b->stage_len)
		return false;
	memcpy(b->stage + b->stage_len, p, n);
	b->q[b->nq++] = (struct px_batch_entry){
		.c = c, .d = d, .backend = backend, .off = b->stage_len, .len = n
	};
	b->stage_len += n;
	d->queued = true;
	atomic_fetch_add_explicit(&c->w->s->queued, 1, memory_order_relaxed);
	return true;
}

/* The results of the submitted sends, by entry index; LONG_MIN = none yet. */
static void reap(struct px_batch *b, long *res, unsigned *pending)
{
	unsigned head = atomic_load_explicit(b->cq_head, memory_order_relaxed);
	unsigned tail = atomic_load_explicit(b->cq_tail, memory_order_acquire);

	for (; head != tail; head++) {
		struct io_uring_cqe *e = &b->cqes[head & *b->cq_mask];
		if (e->user_data < b->nq && res[e->user_data] == LONG_MIN) {
			res[e->user_data] = e->res;
			(*pending)--;
		}
	}
	atomic_store_explicit(b->cq_head, head, memory_order_release);
}

void px_batch_flush(struct px_batch *b)
{
	if (!b || !b->nq)
		return;
	long res[b->nq];
	unsigned order[b->nq]; /* entry indices in submission order */
	unsigned tail = atomic_load_explicit(b->sq_tail, memory_order_relaxed), n = 0;

	for (unsigned i = 0; i < b->nq; i++) {
		struct px_batch_entry *e = &b->q[i];
		res[i] = LONG_MIN;
		int fd = e->backend ? e->c->bfd : e->c->cfd;
		if (e->c->phase == PX_PH_CLOSING || fd < 0) {
			res[i] = 0; /* closed since: dropped */
			e->c = NULL;
			continue;
		}
		put_send(b, tail, fd, b->stage + e->off, e->len, i);
		tail++;
		order[n++] = i;
	}
	atomic_store_explicit(b->sq_tail, tail, memory_order_release);
	unsigned pending = n, left = n;
	while (left) {
		int r = sys_enter(b->fd, left, 0, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			/* the kernel took no more: take the rest back; each is then an ordinary
			 * write waiting for POLLOUT (nothing of it was sent) */
			atomic_store_explicit(b->sq_tail, tail - left, memory_order_release);
			for (unsigned k = n - left; k < n; k++) {
				res[order[k]] = -EAGAIN;
				pending--;
			}
			break;
		}
		left -= (unsigned)r;
	}
	reap(b, res, &pending);
	while (pending) {
		/* not settled inside the submit (not expected with MSG_DONTWAIT): wait for it;
		 * the stage must outlive the send */
		int r = sys_enter(b->fd, 0, pending, IORING_ENTER_GETEVENTS);
		if (r < 0 && errno != EINTR && errno != EAGAIN && errno != EBUSY)
			break;
		reap(b, res, &pending);
	}
	for (unsigned i = 0; i < b->nq; i++) {
		struct px_batch_entry *e = &b->q[i];
		if (!e->c)
			continue;
		e->d->queued = false;
		if (res[i] == (long)e->len)
			continue;
		if (res[i] == LONG_MIN)
			res[i] = -EIO;
		atomic_fetch_add_explicit(&e->c->w->s->queued_short, 1, memory_order_relaxed);
		size_t sent = res[i] > 0 ? (size_t)res[i] : 0;
		px_relay_settle(e->c, e->d, res[i], b->stage + e->off + sent, e->len - sent);
	}
	b->nq = 0;
	b->stage_len = 0;
}
