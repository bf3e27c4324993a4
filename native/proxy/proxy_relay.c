/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_relay: the back half of a connection once its backend is connected — the outbound
 * PROXY v2 header, TLS termination (SSL_accept over the client socket, fed first from a memory
 * BIO holding the ClientHello already read, then from the socket) or passthrough (the hello
 * bytes replayed), then the relay of both directions with `buffer_size` buffers (or splice(2)
 * through a pipe for passthrough), half-close passed on in each direction (shutdown(SHUT_WR);
 * close_notify to a TLS client once the backend's bytes are flushed), and the idle, total and
 * shutdown (drain) timeouts. Nothing blocks: every step stops at EAGAIN and asks its poll.
 */
#define _GNU_SOURCE /* splice, pipe2, F_SETPIPE_SZ */
#include "proxy/proxy_batch.h"
#include "proxy/proxy_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

/** Bytes one direction moves per wakeup before the loop serves other connections. */
#define PX_BUDGET (1u << 20)

void px_relay_free(struct px_conn *c)
{
	struct px_dir *dirs[2] = { &c->c2s, &c->s2c };

	for (int i = 0; i < 2; i++) {
		free(dirs[i]->buf);
		dirs[i]->buf = NULL;
		for (int k = 0; k < 2; k++)
			if (dirs[i]->pipe[k] >= 0)
				close(dirs[i]->pipe[k]);
	}
	SSL_free(c->ssl);
	c->ssl = NULL;
}

static void count(struct px_conn *c, bool in, size_t n)
{
	struct proxy_server *s = c->w->s;

	c->last_ms = px_now_ms(c);
	atomic_fetch_add_explicit(in ? &c->bytes_in : &c->bytes_out, n, memory_order_relaxed);
	atomic_fetch_add_explicit(in ? &s->bytes_in : &s->bytes_out, n, memory_order_relaxed);
	if (c->app_stats)
		atomic_fetch_add_explicit(in ? &c->app_stats->bytes_in : &c->app_stats->bytes_out,
					  n, memory_order_relaxed);
	if (c->inst_stats)
		atomic_fetch_add_explicit(in ? &c->inst_stats->bytes_in : &c->inst_stats->bytes_out,
					  n, memory_order_relaxed);
}

/* Switch the TLS read side from the memory BIO (the hello) to the socket once it is empty. */
static bool swap_rbio(struct px_conn *c)
{
	if (!c->rbio_mem || BIO_ctrl_pending(SSL_get_rbio(c->ssl)) != 0)
		return false;
	BIO *b = BIO_new_socket(c->cfd, BIO_NOCLOSE);
	if (!b)
		return false;
	SSL_set0_rbio(c->ssl, b);
	c->rbio_mem = false;
	return true;
}

/* An SSL result as bytes / 0 (end) / -EAGAIN with *want / -EPROTO. */
static ssize_t ssl_result(struct px_conn *c, int r, int *want)
{
	if (r > 0)
		return r;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*want = UV_READABLE;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = UV_WRITABLE;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		return -EPROTO;
	}
}

/* One read(2) or send(2) on a plain socket: bytes, or -EAGAIN with *want (the poll event to
 * wait for), or -errno. */
static ssize_t sock_io(int fd, void *buf, size_t n, bool out, int *want)
{
	for (;;) {
		ssize_t r = out ? send(fd, buf, n, MSG_NOSIGNAL) : read(fd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*want = out ? UV_WRITABLE : UV_READABLE;
			return -EAGAIN;
		}
		return -errno;
	}
}

/* Read from the client (TLS or not) or the backend. */
static ssize_t side_read(struct px_conn *c, bool backend, void *buf, size_t n, int *want)
{
	if (backend || !c->ssl)
		return sock_io(backend ? c->bfd : c->cfd, buf, n, false, want);
	for (;;) {
		ERR_clear_error();
		ssize_t r = ssl_result(
			c, SSL_read(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n)), want);
		if (r == -EAGAIN && *want == UV_READABLE && swap_rbio(c))
			continue;
		return r;
	}
}

static ssize_t side_write(struct px_conn *c, bool backend, const void *buf, size_t n, int *want)
{
	if (backend || !c->ssl)
		return sock_io(backend ? c->bfd : c->cfd, (void *)buf, n, true, want);
	ERR_clear_error();
	return ssl_result(c, SSL_write(c->ssl, buf, (int)(n > INT32_MAX ? INT32_MAX : n)), want);
}

/* Pass the end of a direction on: SHUT_WR, or close_notify to a TLS client. */
static int side_shutdown(struct px_conn *c, bool backend, int *want)
{
	if (backend || !c->ssl) {
		shutdown(backend ? c->bfd : c->cfd, SHUT_WR);
		return 0;
	}
	ERR_clear_error();
	int r = SSL_shutdown(c->ssl);
	if (r >= 0)
		return 0;
	if (SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_WRITE) {
		*want = UV_WRITABLE;
		return -EAGAIN;
	}
	return 0; /* nothing more can be said on a broken session */
}

/* Start splicing direction @p d (passthrough, once a read filled the buffer: bulk data, where
 * two splices beat a read and a write; small messages stay on read/write, which costs fewer
 * system calls). Returns false if no pipe could be made (read/write goes on). */
static bool start_splice(struct px_conn *c, struct px_dir *d)
{
	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC)) {
		d->pipe[0] = d->pipe[1] = -1;
		return false;
	}
	fcntl(d->pipe[1], F_SETPIPE_SZ, (int)c->w->s->o.buffer_size);
	return true;
}

/* Keep the @p n bytes at @p p that the destination did not take: the direction's own buffer,
 * allocated only now (an idle or request/response connection never holds one). */
static int keep(struct px_dir *d, size_t cap, const uint8_t *p, size_t n)
{
	free(d->buf); /* the first bytes' buffer, if still there: sized for them only */
	if (!(d->buf = malloc(cap)))
		return -1;
	memmove(d->buf, p, n);
	d->off = 0;
	d->len = n;
	return 0;
}

/* Move what can be moved in direction @p d. Returns 0, or -1 on a fatal error. Bytes are read
 * into the worker's scratch buffer and written on at once; only what the destination does not
 * take is copied into the direction's own buffer, which is freed once written. */
static int pump(struct px_conn *c, struct px_dir *d, bool src_backend)
{
	bool dst_backend = !src_backend;
	size_t cap = c->w->s->o.buffer_size, moved = 0;
	uint8_t *scratch = c->w->scratch;
	int want = 0;

	if (d->queued)
		return 0; /* its bytes wait in the batch (polls as they were): px_relay_settle() */
	d->src_ev = d->dst_ev = 0;
	for (;;) {
		if (d->off < d->len) {
			ssize_t n =
				side_write(c, dst_backend, d->buf + d->off, d->len - d->off, &want);
			if (n == -EAGAIN) {
				d->dst_ev = want;
				return 0;
			}
			if (n <= 0)
				return -1;
			d->off += (size_t)n;
			if (d->off < d->len)
				continue;
			d->off = d->len = 0;
			free(d->buf);
			d->buf = NULL;
			continue;
		}
		if (d->piped) {
			ssize_t n = splice(d->pipe[0], NULL, dst_backend ? c->bfd : c->cfd, NULL,
					   d->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				d->dst_ev = UV_WRITABLE;
				return 0;
			}
			if (n <= 0)
				return -1;
			d->piped -= (size_t)n;
			continue;
		}
		if (d->eof) {
			struct px_dir *other = d == &c->c2s ? &c->s2c : &c->c2s;
			if (!d->shut && other->shut && (dst_backend || !c->ssl)) {
				d->shut = true; /* both ends done: the close that follows says it
						   all */
				return 0;
			}
			if (!d->shut) {
				if (side_shutdown(c, dst_backend, &want) == -EAGAIN) {
					d->dst_ev = want;
					return 0;
				}
				d->shut = true;
			}
			return 0;
		}
		bool tls_src = !src_backend && c->ssl;
		if (moved >= PX_BUDGET && !(tls_src && SSL_has_pending(c->ssl))) {
			d->src_ev = UV_READABLE; /* yield: come back on the next loop turn */
			return 0;
		}
		ssize_t n;
		bool more; /* whether the source may hold more right now */
		if (d->pipe[0] >= 0) {
			n = splice(src_backend ? c->bfd : c->cfd, NULL, d->pipe[1], NULL, cap,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN) {
				d->src_ev = UV_READABLE;
				return 0;
			}
			if (n > 0)
				d->piped = (size_t)n;
			more = n > 0;
		} else {
			n = side_read(c, src_backend, scratch, cap, &want);
			if (n == -EAGAIN) {
				d->src_ev = want;
				return 0;
			}
			/* a short read drained the socket (poll is level-triggered: more wakes us);
			 * TLS reads one record at a time, so ask OpenSSL what it still holds */
			more = (size_t)n == cap ||
			       (tls_src && (SSL_has_pending(c->ssl) || c->rbio_mem || n == 16384));
			/* the last read of this direction in an event batch: its send to the
			 * backend joins the batch's (proxy_batch.h); the source is read again
			 * once it says so. (Sends to passthrough clients could join too: no
			 * gain measured, the client is not on this CPU.) */
			if (n > 0 && !more && dst_backend && c->w->batching &&
			    px_batch_queue(c->w->batch, c, d, true, scratch, (size_t)n)) {
				moved += (size_t)n;
				count(c, !src_backend, (size_t)n);
				d->src_ev = UV_READABLE;
				return 0;
			}
			if (n > 0) {
				ssize_t w = side_write(c, dst_backend, scratch, (size_t)n, &want);
				if (w == -EAGAIN)
					w = 0;
				else if (w <= 0)
					return -1;
				if (w < n) {
					if (keep(d, cap, scratch + w, (size_t)(n - w)))
						return -1;
					if (want)
						d->dst_ev = want;
				}
				if (!src_backend || !c->ssl) {
					/* passthrough bulk: splice from now on */
					bool pass = !c->ssl && c->w->s->o.splice;
					if (pass && (size_t)n == cap && d->pipe[0] < 0)
						start_splice(c, d);
				}
			}
		}
		if (n < 0)
			return -1;
		if (n == 0) {
			d->eof = true;
			continue;
		}
		moved += (size_t)n;
		count(c, !src_backend, (size_t)n);
		if (d->off < d->len) {
			if (!d->dst_ev)
				d->dst_ev = UV_WRITABLE;
			return 0; /* the destination is full: read again once it drained */
		}
		if (!more) {
			d->src_ev = UV_READABLE;
			return 0;
		}
	}
}

/* Ask each socket's poll for what the directions wait on after their last pump. */
static void repoll(struct px_conn *c)
{
	px_conn_poll(c, false, c->c2s.src_ev | c->s2c.dst_ev);
	px_conn_poll(c, true, c->c2s.dst_ev | c->s2c.src_ev);
}

static void arm_relay(struct px_conn *c)
{
	struct proxy_server *s = c->w->s;
	uint64_t now = px_now_ms(c);
	uint64_t next = c->total_deadline_ms;
	uint64_t idle = c->last_ms + px_ms(s->o.t_idle);

	if (idle < next)
		next = idle;
	if (c->phase == PX_PH_DRAIN && c->drain_deadline_ms < next)
		next = c->drain_deadline_ms;
	px_conn_arm(c, next > now ? next - now : 1);
}

/* Pump the directions waiting on what happened (both with @p events 0: at the start, or after
 * an error), then ask each socket's poll for what the next step waits on. */
static void relay(struct px_conn *c, bool backend, int events)
{
	bool all = events == 0;
	/* c2s reads the client and writes the backend; s2c the other way */
	bool c2s = all || (!backend && (c->c2s.src_ev & events)) ||
		   (backend && (c->c2s.dst_ev & events));
	bool s2c = all || (backend && (c->s2c.src_ev & events)) ||
		   (!backend && (c->s2c.dst_ev & events));
	if ((c2s && pump(c, &c->c2s, false)) || (s2c && pump(c, &c->s2c, true))) {
		px_conn_close(c);
		return;
	}
	if (c->c2s.shut && c->s2c.shut) {
		px_conn_close(c);
		return;
	}
	if ((c->c2s.shut || c->s2c.shut) && c->phase == PX_PH_RELAY) {
		c->phase = PX_PH_DRAIN;
		c->drain_deadline_ms = px_now_ms(c) + px_ms(c->w->s->o.t_shutdown);
		arm_relay(c);
	}
	repoll(c);
}

static void start_relay(struct px_conn *c)
{
	c->phase = PX_PH_RELAY;
	c->last_ms = px_now_ms(c);
	arm_relay(c);
	/* pump what the client sent (or the queued hello); a backend has not spoken yet as a rule,
	 * so its POLLIN is awaited rather than a read tried (one system call less each) */
	c->c2s.src_ev = UV_READABLE;
	c->s2c.src_ev = UV_READABLE;
	relay(c, false, UV_READABLE);
}

static void tls_step(struct px_conn *c)
{
	for (;;) {
		int want = 0;
		ERR_clear_error();
		ssize_t r = ssl_result(c, SSL_accept(c->ssl), &want);
		if (r > 0) {
			uv_timer_stop(&c->timer);
			start_relay(c);
			return;
		}
		if (r == -EAGAIN && want == UV_READABLE && swap_rbio(c))
			continue;
		if (r == -EAGAIN) {
			px_conn_poll(c, false, want);
			return;
		}
		px_conn_refuse(c, PROXY_R_TLS);
		return;
	}
}

void px_relay_settle(struct px_conn *c, struct px_dir *d, long sent, const uint8_t *rest,
		     size_t nrest)
{
	if (sent < 0 && sent != -EAGAIN) {
		px_conn_close(c);
		return;
	}
	/* what the backend's socket did not take waits in the direction's buffer for POLLOUT,
	 * as after a short write; the client is not read meanwhile */
	if (keep(d, c->w->s->o.buffer_size, rest, nrest)) {
		px_conn_close(c);
		return;
	}
	d->dst_ev = UV_WRITABLE;
	d->src_ev = 0;
	repoll(c);
}

void px_relay_poll(struct px_conn *c, bool backend, int status, int events)
{
	if (c->phase == PX_PH_TLS)
		tls_step(c);
	else
		relay(c, backend, status < 0 ? 0 : events);
}

void px_relay_timer(struct px_conn *c)
{
	uint64_t now = px_now_ms(c);

	if (c->phase == PX_PH_TLS) {
		px_conn_refuse(c, PROXY_R_TIMEOUT);
		return;
	}
	if (now >= c->total_deadline_ms || now >= c->last_ms + px_ms(c->w->s->o.t_idle) ||
	    (c->phase == PX_PH_DRAIN && now >= c->drain_deadline_ms)) {
		px_conn_close(c);
		return;
	}
	arm_relay(c);
}

/* Queue @p n bytes for the backend ahead of everything else. */
static void queue_c2s(struct px_conn *c, const void *p, size_t n)
{
	memcpy(c->c2s.buf + c->c2s.len, p, n);
	c->c2s.len += n;
}

void px_conn_backend_ready(struct px_conn *c)
{
	struct proxy_server *s = c->w->s;
	size_t hello = c->inlen - c->hello_off;
	bool pass = c->route.mode == PROXY_ROUTE_PASSTHROUGH;

	/* what goes to the backend first (a PROXY header, the replayed hello) */
	if ((c->pp_out || pass) && !(c->c2s.buf = malloc(256 + hello))) {
		px_conn_refuse(c, PROXY_R_INTERNAL);
		return;
	}
	if (c->pp_out) {
		uint8_t hdr[256];
		if (c->local.sa.sa_family == AF_UNSPEC) {
			socklen_t len = sizeof(c->local);
			getsockname(c->cfd, &c->local.sa, &len);
		}
		ssize_t n = proxy_pp_build_v2((struct sockaddr *)&c->client,
					      (struct sockaddr *)&c->local, hdr, sizeof(hdr));
		if (n < 0) {
			px_conn_refuse(c, PROXY_R_INTERNAL);
			return;
		}
		queue_c2s(c, hdr, (size_t)n);
	}
	if (pass) {
		queue_c2s(c, c->in + c->hello_off, hello);
		count(c, true, hello);
		free(c->in);
		c->in = NULL;
		start_relay(c);
		return;
	}
	int bi = c->route.base_index;
	SSL_CTX *ctx = bi >= 0 && (size_t)bi < c->snap->ndomains ? c->snap->domains[bi].ctx : NULL;
	BIO *rb = ctx ? BIO_new(BIO_s_mem()) : NULL;
	BIO *wb = rb ? BIO_new_socket(c->cfd, BIO_NOCLOSE) : NULL;
	c->ssl = wb ? SSL_new(ctx) : NULL;
	if (!c->ssl || BIO_write(rb, c->in + c->hello_off, (int)hello) != (int)hello) {
		BIO_free(rb);
		BIO_free(wb);
		px_conn_refuse(c, ctx ? PROXY_R_INTERNAL : PROXY_R_NO_CERT);
		return;
	}
	BIO_set_mem_eof_return(rb, -1);
	SSL_set_bio(c->ssl, rb, wb);
	c->rbio_mem = true;
	SSL_set_app_data(c->ssl, c->route.mode == PROXY_ROUTE_TERMINATE_H2 ? (void *)1 : NULL);
	SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_set_accept_state(c->ssl);
	free(c->in);
	c->in = NULL;
	c->phase = PX_PH_TLS;
	px_conn_arm(c, px_ms(s->o.t_handshake));
	tls_step(c);
}
