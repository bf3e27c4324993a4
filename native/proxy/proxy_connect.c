/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_connect: from a routing decision to a connected backend (spec §6.4, §6.5) — the
 * decision (allow, port mapping, PROXY flag), the candidates (the instance asked for, else the
 * app's healthy instances by most recent WireGuard handshake, top N), the port policy (no
 * policy ⇒ deny, restrict ⇒ listed ports only), the per-instance and per-app connection caps,
 * then non-blocking connects to every candidate at once under the `connect` timeout: the first
 * to succeed wins, the others are closed. TCP_NODELAY on both sides.
 */
#include "proxy/proxy_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void drop_cand(struct px_conn *c, struct px_cand *k)
{
	if (k->fd < 0)
		return;
	px_watch_forget(c->w, &k->watch);
	close(k->fd);
	k->fd = -1;
	if (c->cand_pending)
		c->cand_pending--;
}

void px_connect_free(struct px_conn *c)
{
	for (unsigned i = 0; i < c->ncand; i++)
		drop_cand(c, &c->cand[i]);
}

static void win(struct px_conn *c, struct px_cand *k)
{
	int fd = k->fd;

	/* the attempt's registration becomes the backend's: same socket, asked for reading now
	 * (the relay changes it as it needs; in the TLS phase a backend that speaks first is
	 * paused until the handshake is done) */
	c->bw.fd = fd;
	c->bw.events = k->watch.events;
	k->watch.fd = -1;
	k->watch.events = 0;
	k->fd = -1;
	px_connect_free(c);
	uv_timer_stop(&c->timer);
	c->bfd = fd;
	px_conn_poll(c, true, UV_READABLE);
	if (k->inst) {
		pthread_mutex_lock(&c->w->mu);
		c->inst = k->inst;
		pthread_mutex_unlock(&c->w->mu);
		if (k->inst->stats) {
			c->inst_stats = k->inst->stats;
			atomic_fetch_add(&c->inst_stats->active, 1);
			atomic_fetch_add(&c->inst_stats->total, 1);
			c->inst_counted = true;
		}
	}
	pthread_mutex_lock(&c->w->mu);
	memcpy(&c->baddr, &k->addr, sizeof(c->baddr));
	pthread_mutex_unlock(&c->w->mu);
	px_conn_backend_ready(c);
}

void px_connect_done(struct px_conn *c, struct px_cand *k, bool failed)
{
	if (!k || k->fd < 0 || c->phase != PX_PH_CONNECT)
		return;
	int err = 0;
	socklen_t len = sizeof(err);
	/* writable without an error: connected (the error is asked only when there is one) */
	if (failed && getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (failed && !err)
		err = ECONNREFUSED;
	if (err == 0) {
		win(c, k);
		return;
	}
	drop_cand(c, k);
	if (!c->cand_pending)
		px_conn_refuse(c, PROXY_R_CONNECT);
}

/* Start connecting candidate @p k. Returns 1 connected now, 0 in progress, -1 failed. */
static int start(struct px_conn *c, struct px_cand *k)
{
	k->fd = socket(k->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (k->fd < 0)
		return -1;
	nodelay(k->fd);
	c->cand_pending++;
	int rc;
	do
		rc = connect(k->fd, (struct sockaddr *)&k->addr, k->addrlen);
	while (rc < 0 && errno == EINTR);
	if (rc == 0)
		return 1;
	if (errno != EINPROGRESS) {
		drop_cand(c, k);
		return -1;
	}
	k->watch = (struct px_watch){ .c = c, .cand = k, .fd = k->fd, .kind = PX_WATCH_CAND };
	px_watch_set(c->w, &k->watch, UV_WRITABLE);
	return 0;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* Candidates, port policy and caps for an id route. Returns the count (0: refused). */
static unsigned choose(struct px_conn *c, const struct proxy_decision *d)
{
	struct proxy_server *s = c->w->s;
	struct px_instance *list[PROXY_MAX_TOP_N];
	size_t n;
	unsigned top = s->o.connect_top_n > PROXY_MAX_TOP_N ? PROXY_MAX_TOP_N : s->o.connect_top_n;
	bool pp = false, any_policy = false, any_cap = false;

	if (c->inst) {
		list[0] = c->inst;
		n = 1;
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		n = px_snapshot_candidates(c->snap, c->app, (double)ts.tv_sec, top, list,
					   PROXY_MAX_TOP_N);
		if (!n) {
			px_conn_refuse(c, PROXY_R_NO_BACKEND);
			return 0;
		}
	}
	unsigned k = 0;
	for (size_t i = 0; i < n; i++) {
		bool this_pp;
		if (!px_port_allowed(list[i], c->port, &this_pp))
			continue;
		any_policy = true;
		if (list[i]->cap && list[i]->stats &&
		    atomic_load(&list[i]->stats->active) >= list[i]->cap)
			continue;
		any_cap = true;
		if (k == 0)
			pp = this_pp;
		struct px_cand *x = &c->cand[k++];
		x->inst = list[i];
		memcpy(&x->addr, &list[i]->addr, sizeof(x->addr));
		x->addrlen = list[i]->addrlen;
		set_port(&x->addr, c->port);
		x->fd = -1;
	}
	if (!k) {
		px_conn_refuse(c, any_policy && !any_cap ? PROXY_R_CAP : PROXY_R_PORT_POLICY);
		return 0;
	}
	unsigned limit = c->app->has_max ? c->app->max_connections : s->o.max_connections_per_app;
	if (c->app->stats) {
		uint64_t now = atomic_fetch_add(&c->app->stats->active, 1);
		c->app_stats = c->app->stats;
		c->app_counted = true;
		atomic_fetch_add(&c->app_stats->total, 1);
		if (limit && now >= limit) {
			px_conn_refuse(c, PROXY_R_CAP);
			return 0;
		}
	}
	c->pp_out = d->pp >= 0 ? d->pp == 1 : pp;
	return k;
}

void px_conn_route_decided(struct px_conn *c, const struct proxy_decision *d)
{
	struct proxy_server *s = c->w->s;

	if (d && !d->allow) {
		px_conn_refuse(c, PROXY_R_DENIED);
		return;
	}
	c->phase = PX_PH_CONNECT;
	unsigned top = s->o.connect_top_n > PROXY_MAX_TOP_N ? PROXY_MAX_TOP_N : s->o.connect_top_n;
	if (!(c->cand = calloc(d && !c->inst && top > 1 ? top : 1, sizeof(*c->cand)))) {
		px_conn_refuse(c, PROXY_R_INTERNAL);
		return;
	}
	if (d) {
		c->port = d->to_port ? d->to_port : c->route.port;
		if (!(c->ncand = choose(c, d)))
			return;
	} else {
		c->ncand = 1;
		c->cand[0].inst = NULL;
		c->cand[0].fd = -1;
		memcpy(&c->cand[0].addr, &c->baddr, sizeof(c->baddr));
		c->cand[0].addrlen = c->baddr.sa.sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
								       : sizeof(struct sockaddr_in);
	}
	px_conn_arm(c, px_ms(s->o.t_connect));
	for (unsigned i = 0; i < c->ncand; i++) {
		int rc = start(c, &c->cand[i]);
		if (rc == 1) {
			win(c, &c->cand[i]);
			return;
		}
	}
	if (!c->cand_pending)
		px_conn_refuse(c, PROXY_R_CONNECT);
}
