/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_server: the server object — its listeners (one SO_REUSEPORT socket per worker per
 * listen address, all bound on the caller's thread so EADDRINUSE is reported at once), its
 * worker threads (each a libuv loop with the listeners, an async for stop and decisions), the
 * published snapshot (swapped under a short lock; readers take a reference) and the totals.
 */
#define _GNU_SOURCE /* accept4 */
#include "proxy/proxy_batch.h"
#include "proxy/proxy_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moonstack/rt_base.h"

static const char *const refusal_names[PROXY_R_COUNT] = {
	[PROXY_R_NOT_TLS] = "not-tls",
	[PROXY_R_MALFORMED] = "malformed",
	[PROXY_R_NO_SNI] = "no-sni",
	[PROXY_R_ROUTE] = "route",
	[PROXY_R_UNKNOWN_ID] = "unknown-id",
	[PROXY_R_NO_BACKEND] = "no-backend",
	[PROXY_R_DENIED] = "denied",
	[PROXY_R_PORT_POLICY] = "port-policy",
	[PROXY_R_CAP] = "cap",
	[PROXY_R_CONNECT] = "connect",
	[PROXY_R_TIMEOUT] = "timeout",
	[PROXY_R_DNS] = "dns",
	[PROXY_R_TLS] = "tls",
	[PROXY_R_PP] = "proxy-header",
	[PROXY_R_NO_CERT] = "no-cert",
	[PROXY_R_INTERNAL] = "internal",
};

const char *proxy_refusal_name(enum proxy_refusal r)
{
	return (unsigned)r < PROXY_R_COUNT ? refusal_names[r] : "unknown";
}

void proxy_options_default(struct proxy_options *o)
{
	memset(o, 0, sizeof(*o));
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	o->workers = n > 0 ? (unsigned)n : 1;
	o->t_connect = 5;
	o->t_handshake = 5;
	o->t_idle = 600;
	o->t_shutdown = 5;
	o->t_total = 18000;
	o->t_pp_header = 5;
	o->buffer_size = 65536;
	o->connect_top_n = 3;
	o->splice = true;
	o->io_uring = true;
	o->backlog = 4096;
}

void px_refuse_count(struct proxy_server *s, enum proxy_refusal r)
{
	atomic_fetch_add_explicit(&s->refused[r], 1, memory_order_relaxed);
}

struct proxy_snapshot *px_server_snapshot(struct proxy_server *s)
{
	pthread_mutex_lock(&s->snap_mu);
	struct proxy_snapshot *snap = s->snap ? proxy_snapshot_ref(s->snap) : NULL;
	pthread_mutex_unlock(&s->snap_mu);
	return snap;
}

/* A bound, listening, non-blocking SO_REUSEPORT socket, or -errno. */
static int open_listener(const char *host, uint16_t *port, int backlog)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(*port);
		len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(*port);
		len = sizeof(*a6);
	} else {
		return -EINVAL;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* TCP_NODELAY on the listener: accepted sockets inherit it (one system call less each) */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, len) || listen(fd, backlog)) {
		int e = -errno;
		close(fd);
		return e;
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len)) {
		int e = -errno;
		close(fd);
		return e;
	}
	*port = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
	return fd;
}

static void on_accept(uv_poll_t *h, int status, int events)
{
	struct px_listener *l = h->data;
	struct sockaddr_storage peer;

	if (status < 0 || l->w->stopping)
		return;
	for (int i = 0; i < 64; i++) {
		socklen_t len = sizeof(peer);
		int fd = accept4(l->fd, (struct sockaddr *)&peer, &len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				px_refuse_count(l->w->s, PROXY_R_INTERNAL);
			return;
		}
		px_conn_start(l->w, fd, (struct sockaddr *)&peer, len);
	}
}

static void on_listener_closed(uv_handle_t *h)
{
	struct px_listener *l = h->data;
	close(l->fd);
	l->fd = -1;
}

void px_watch_set(struct px_worker *w, struct px_watch *x, int events)
{
	if (x->fd < 0 || events == x->events)
		return;
	struct epoll_event ev = {
		.events = (events & UV_READABLE ? EPOLLIN : 0) |
			  (events & UV_WRITABLE ? EPOLLOUT : 0),
		.data.ptr = x,
	};
	/* leaving the set (not asking for 0): a hung-up socket would be reported over and over */
	int op = !events ? EPOLL_CTL_DEL : x->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	if (epoll_ctl(w->epfd, op, x->fd, &ev) < 0 && op != EPOLL_CTL_DEL)
		rt_log(RT_LOG_WARN, "proxy", "epoll_ctl: %s", strerror(errno));
	x->events = events;
}

void px_watch_forget(struct px_worker *w, struct px_watch *x)
{
	if (x->fd >= 0 && x->events)
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, x->fd, NULL);
	x->fd = -1;
	x->events = 0;
}

/* The worker's epoll set is ready: run the events of its sockets, a batch at a time. */
static void on_epoll(uv_poll_t *h, int status, int events)
{
	struct px_worker *w = h->data;
	struct epoll_event evs[128];
	int n;

	do {
		n = epoll_wait(w->epfd, evs, 128, 0);
		w->batching = w->batch != NULL;
		for (int i = 0; i < n; i++) {
			struct px_watch *x = evs[i].data.ptr;
			uint32_t e = evs[i].events;
			int ev = (e & EPOLLIN ? UV_READABLE : 0) | (e & EPOLLOUT ? UV_WRITABLE : 0);
			if (e & (EPOLLERR | EPOLLHUP))
				ev |= x->events; /* whatever waits learns the error from its call */
			px_watch_fire(x, e & (EPOLLERR | EPOLLHUP) ? UV_EIO : 0, ev);
		}
		w->batching = false;
		/* the backends hear the whole batch at once (proxy_batch.h) */
		px_batch_flush(w->batch);
	} while (n == 128);
}

/* Connections opened and closed since the last trim that make a trim worth it: a burst of
 * handshakes leaves free heap (their transient buffers) that glibc keeps mapped otherwise. */
#define PX_TRIM_CHURN 256

static void on_trim_timer(uv_timer_t *t)
{
	struct px_worker *w = t->data;

	if (atomic_exchange(&w->s->churn, 0) >= PX_TRIM_CHURN)
		malloc_trim(0);
}

static void on_stop_timer(uv_timer_t *t)
{
	px_conn_close_all(t->data);
}

void px_worker_maybe_done(struct px_worker *w)
{
	if (!w->stopping || w->nconns || uv_is_closing((uv_handle_t *)&w->async))
		return;
	uv_close((uv_handle_t *)&w->async, NULL);
	uv_close((uv_handle_t *)&w->stop_timer, NULL);
	uv_close((uv_handle_t *)&w->trim_timer, NULL);
	uv_close((uv_handle_t *)&w->ep_poll, NULL);
}

static void on_async(uv_async_t *a)
{
	struct px_worker *w = a->data;
	unsigned f = atomic_exchange(&w->flags, 0);

	if (f & PX_W_DECIDED)
		px_conn_wake_parked(w);
	if ((f & PX_W_STOP) && !w->stopping) {
		w->stopping = true;
		for (size_t i = 0; i < w->s->o.nlisten; i++)
			uv_close((uv_handle_t *)&w->listeners[i].poll, on_listener_closed);
		uv_timer_start(&w->stop_timer, on_stop_timer, px_ms(w->s->o.t_shutdown), 0);
		px_worker_maybe_done(w);
	}
}

static void worker_main(void *arg)
{
	struct px_worker *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void fail(char *err, size_t errlen, char *code, size_t codelen, int e, const char *what)
{
	const char *name = e < 0 ? uv_err_name(uv_translate_sys_error(-e)) : "EINVAL";
	snprintf(code, codelen, "%s", name);
	snprintf(err, errlen, "%s: %s%s%s", name, what, e < 0 ? ": " : "",
		 e < 0 ? strerror(-e) : "");
}

/* Tear down workers [0, s->nworkers) that were set up but not started. */
static void free_unstarted(struct proxy_server *s)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct px_worker *w = &s->workers[i];
		for (size_t k = 0; k < s->o.nlisten; k++) {
			if (w->listeners[k].fd >= 0) {
				uv_close((uv_handle_t *)&w->listeners[k].poll, NULL);
				close(w->listeners[k].fd);
			}
		}
		uv_close((uv_handle_t *)&w->async, NULL);
		uv_close((uv_handle_t *)&w->stop_timer, NULL);
		uv_close((uv_handle_t *)&w->trim_timer, NULL);
		if (w->epfd >= 0) {
			uv_close((uv_handle_t *)&w->ep_poll, NULL);
			uv_run(&w->loop, UV_RUN_DEFAULT);
			close(w->epfd);
		}
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
		pthread_mutex_destroy(&w->mu);
		free(w->listeners);
		free(w->scratch);
		px_batch_free(w->batch);
	}
}

/* Open worker @p w's loop, handles and listeners. Returns 0 or -errno (-EINVAL: address). */
static int setup_worker(struct proxy_server *s, struct px_worker *w, unsigned idx)
{
	w->s = s;
	w->idx = idx;
	w->epfd = -1;
	w->listeners = calloc(s->o.nlisten, sizeof(*w->listeners));
	w->scratch = malloc(s->o.buffer_size);
	if (!w->listeners || !w->scratch || uv_loop_init(&w->loop)) {
		free(w->listeners);
		free(w->scratch);
		w->listeners = NULL;
		w->scratch = NULL;
		return -ENOMEM;
	}
	pthread_mutex_init(&w->mu, NULL);
	uv_async_init(&w->loop, &w->async, on_async);
	w->async.data = w;
	uv_timer_init(&w->loop, &w->stop_timer);
	w->stop_timer.data = w;
	uv_timer_init(&w->loop, &w->trim_timer);
	w->trim_timer.data = w;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -errno;
	uv_poll_init(&w->loop, &w->ep_poll, w->epfd);
	w->ep_poll.data = w;
	uv_poll_start(&w->ep_poll, UV_READABLE, on_epoll);
	/* a batch's queued sends: up to 256, staged in 16 read buffers (none: send at once) */
	if (s->o.io_uring)
		w->batch = px_batch_new(256, 16 * s->o.buffer_size);
	if (idx == 0)
		uv_timer_start(&w->trim_timer, on_trim_timer, 2000, 2000);
	for (size_t k = 0; k < s->o.nlisten; k++)
		w->listeners[k].fd = -1;
	s->nworkers = idx + 1;
	for (size_t k = 0; k < s->o.nlisten; k++) {
		struct px_listener *l = &w->listeners[k];
		uint16_t port = s->ports[k] ? s->ports[k] : s->o.listen[k].port;
		int fd = open_listener(s->o.listen[k].host, &port, s->o.backlog);
		if (fd < 0)
			return fd;
		s->ports[k] = port;
		l->fd = fd;
		l->w = w;
		uv_poll_init_socket(&w->loop, &l->poll, fd);
		l->poll.data = l;
		uv_poll_start(&l->poll, UV_READABLE, on_accept);
	}
	return 0;
}

struct proxy_server *proxy_server_new(const struct proxy_options *o, char *err, size_t errlen,
				      char *code, size_t codelen)
{
	struct proxy_server *s = calloc(1, sizeof(*s));

	if (!s || o->nlisten == 0 || o->nlisten > PROXY_MAX_LISTEN || o->workers == 0 ||
	    o->workers > PROXY_MAX_WORKERS) {
		free(s);
		fail(err, errlen, code, codelen, s ? 0 : -ENOMEM, "bad options");
		return NULL;
	}
	s->o = *o;
	pthread_mutex_init(&s->snap_mu, NULL);
	pthread_mutex_init(&s->miss_mu, NULL);
	s->tls_cache = rt_tls_cache_new();
	s->workers = calloc(o->workers, sizeof(*s->workers));
	if (!s->tls_cache || !s->workers) {
		fail(err, errlen, code, codelen, -ENOMEM, "cannot allocate the server");
		goto fail;
	}
	for (unsigned i = 0; i < o->workers; i++) {
		int e = setup_worker(s, &s->workers[i], i);
		if (e) {
			char what[128];
			snprintf(what, sizeof(what), "cannot listen on %s port %u",
				 o->listen[0].host, o->listen[0].port);
			fail(err, errlen, code, codelen, e, what);
			free_unstarted(s);
			goto fail;
		}
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		if (uv_thread_create(&s->workers[i].thread, worker_main, &s->workers[i])) {
			fail(err, errlen, code, codelen, -EAGAIN, "cannot start a worker thread");
			s->started = i;
			proxy_server_free(s);
			return NULL;
		}
	}
	s->started = s->nworkers;
	return s;
fail:
	rt_tls_cache_free(s->tls_cache);
	free(s->workers);
	pthread_mutex_destroy(&s->snap_mu);
	pthread_mutex_destroy(&s->miss_mu);
	free(s);
	return NULL;
}

uint16_t proxy_server_port(const struct proxy_server *s, size_t i)
{
	return i < s->o.nlisten ? s->ports[i] : 0;
}

int64_t proxy_server_version(struct proxy_server *s)
{
	pthread_mutex_lock(&s->snap_mu);
	int64_t v = s->snap ? s->snap->version : -1;
	pthread_mutex_unlock(&s->snap_mu);
	return v;
}

void proxy_server_counters(struct proxy_server *s, struct proxy_counters *c)
{
	c->active = atomic_load(&s->active);
	c->total = atomic_load(&s->total);
	c->bytes_in = atomic_load(&s->bytes_in);
	c->bytes_out = atomic_load(&s->bytes_out);
	for (int i = 0; i < PROXY_R_COUNT; i++)
		c->refused[i] = atomic_load(&s->refused[i]);
	c->snapshot_version = proxy_server_version(s);
	c->queued = atomic_load(&s->queued);
	c->queued_short = atomic_load(&s->queued_short);
}

void proxy_server_conns_each(struct proxy_server *s, size_t max,
			     void (*fn)(void *ud, const struct proxy_conn_info *c), void *ud)
{
	size_t n = 0;

	for (unsigned i = 0; i < s->started; i++) {
		struct px_worker *w = &s->workers[i];
		uint64_t now = uv_hrtime() / 1000000;
		pthread_mutex_lock(&w->mu);
		for (struct px_conn *c = w->conns; c && (!max || n < max); c = c->next, n++) {
			char client[64], backend[64] = "";
			px_addr_format(&c->client, client, sizeof(client));
			if (c->bfd >= 0)
				px_addr_format(&c->baddr, backend, sizeof(backend));
			struct proxy_conn_info ci = {
				.id = c->id,
				.worker = w->idx,
				.client = client,
				.sni = c->sni ? c->sni : "",
				.mode = c->mode ? c->mode : "",
				.app_id = c->inst  ? c->inst->app_id
					  : c->app ? c->app->id
						   : "",
				.instance_id = c->inst ? c->inst->id : "",
				.backend = backend,
				.age_ms = now > c->started_ms ? now - c->started_ms : 0,
				.bytes_in = atomic_load(&c->bytes_in),
				.bytes_out = atomic_load(&c->bytes_out),
				.snapshot_version = c->snap ? c->snap->version : -1,
			};
			fn(ud, &ci);
		}
		pthread_mutex_unlock(&w->mu);
	}
}

void proxy_server_free(struct proxy_server *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->started; i++) {
		atomic_fetch_or(&s->workers[i].flags, PX_W_STOP);
		uv_async_send(&s->workers[i].async);
	}
	for (unsigned i = 0; i < s->started; i++) {
		struct px_worker *w = &s->workers[i];
		uv_thread_join(&w->thread);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&w->loop))
			rt_log(RT_LOG_WARN, "proxy", "worker %u loop still has handles", i);
		if (w->epfd >= 0)
			close(w->epfd);
		pthread_mutex_destroy(&w->mu);
		free(w->listeners);
		free(w->scratch);
		px_batch_free(w->batch);
	}
	proxy_snapshot_unref(s->snap);
	px_dns_unref(s->dns);
	px_miss_free(s);
	px_stats_free(s);
	rt_tls_cache_free(s->tls_cache);
	free(s->workers);
	pthread_mutex_destroy(&s->snap_mu);
	pthread_mutex_destroy(&s->miss_mu);
	free(s);
}
