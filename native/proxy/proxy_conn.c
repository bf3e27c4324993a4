/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_conn: the front half of a connection on its worker — accept, the optional inbound
 * PROXY header (`pp_header` timeout), the ClientHello read into a bounded buffer (`handshake`
 * timeout), the SNI grammar, custom domains (TXT lookup on the thread pool), the id lookup
 * (instance id first, else app id) and the routing decision (snapshot, else Lua through the
 * miss queue, parked under the `handshake` timeout) — and the connection's teardown.
 */
#include "proxy/proxy_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t px_now_ms(struct px_conn *c)
{
	return uv_now(&c->w->loop);
}

static void on_timer(uv_timer_t *t);

void px_conn_arm(struct px_conn *c, uint64_t ms)
{
	c->deadline_ms = px_now_ms(c) + ms;
	uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_closed(uv_handle_t *h)
{
	struct px_conn *c = h->data;

	if (--c->closing || c->dns_busy || c->phase != PX_PH_CLOSING)
		return;
	struct px_worker *w = c->w;
	atomic_fetch_add_explicit(&w->s->churn, 1, memory_order_relaxed);
	px_relay_free(c);
	proxy_snapshot_unref(c->snap);
	free(c->in);
	free(c->cand);
	free(c->hello);
	free(c->sni);
	free(c);
	px_worker_maybe_done(w);
}

void px_conn_close_handle(struct px_conn *c, uv_handle_t *h)
{
	h->data = c;
	c->closing++;
	uv_close(h, on_closed);
}

void px_conn_close(struct px_conn *c)
{
	struct px_worker *w = c->w;
	struct proxy_server *s = w->s;

	if (c->phase == PX_PH_CLOSING)
		return;
	c->phase = PX_PH_CLOSING;
	pthread_mutex_lock(&w->mu);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	pthread_mutex_unlock(&w->mu);
	atomic_fetch_sub(&s->active, 1);
	if (c->app_counted)
		atomic_fetch_sub(&c->app_stats->active, 1);
	if (c->inst_counted)
		atomic_fetch_sub(&c->inst_stats->active, 1);
	px_connect_free(c);
	px_conn_close_handle(c, (uv_handle_t *)&c->timer);
	/* events of this batch still queued for them see the CLOSING phase (the memory lives
	 * until the timer is closed) */
	px_watch_forget(w, &c->cw);
	px_watch_forget(w, &c->bw);
	if (c->cfd >= 0)
		close(c->cfd);
	if (c->bfd >= 0)
		close(c->bfd);
	c->cfd = c->bfd = -1;
}

void px_conn_refuse(struct px_conn *c, enum proxy_refusal why)
{
	px_refuse_count(c->w->s, why);
	px_conn_close(c);
}

void px_conn_poll(struct px_conn *c, bool backend, int events)
{
	px_watch_set(c->w, backend ? &c->bw : &c->cw, events);
}

void px_addr_format(const union px_addr *a, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		snprintf(out, cap, "%s:%u", ip, ntohs(a->in.sin_port));
	} else if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(out, cap, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		snprintf(out, cap, "-");
	}
}

/* ---- routing ---- */

static void decided(struct px_conn *c, int found, const struct proxy_decision *d)
{
	struct proxy_decision def = { .allow = true, .to_port = 0, .pp = -1 };
	if (c->route.kind == PROXY_ROUTE_LOCALHOST) {
		/* the debug backend 127.0.0.1:<port>: a decision may deny it or move its port */
		if (found > 0 && !d->allow) {
			px_conn_refuse(c, PROXY_R_DENIED);
			return;
		}
		if (found > 0 && d->to_port)
			((struct sockaddr_in *)&c->baddr)->sin_port = htons(d->to_port);
		px_conn_route_decided(c, NULL);
		return;
	}
	px_conn_route_decided(c, found > 0 ? d : &def);
}

/* px_miss_lookup() for c->key, described by the connection: 1 found, 0 asked of Lua (park), -1 no
 * handler. */
static int ask(struct px_conn *c, struct proxy_decision *got)
{
	char client[64];
	px_addr_format(&c->client, client, sizeof(client));
	struct proxy_miss m = {
		.key = c->key,
		.id = c->route.id,
		.mode = c->mode,
		.sni = c->sni ? c->sni : "",
		.app_id = c->inst  ? c->inst->app_id
			  : c->app ? c->app->id
				   : "",
		.instance_id = c->inst ? c->inst->id : "",
		.client = client,
		.port = c->route.port,
	};
	return px_miss_lookup(c->w->s, c->key, &m, got);
}

/* Ask the snapshot, then the overlay / Lua, for the decision of c->key. */
static void decide(struct px_conn *c)
{
	const struct proxy_decision *d = px_snapshot_route(c->snap, c->key);
	if (d) {
		decided(c, 1, d);
		return;
	}
	struct proxy_decision got;
	int rc = ask(c, &got);
	if (rc == 0) {
		c->phase = PX_PH_DECIDE;
		px_conn_arm(c, px_ms(c->w->s->o.t_handshake));
		return;
	}
	decided(c, rc, &got);
}

void px_conn_wake_parked(struct px_worker *w)
{
	struct px_conn *c, *next;

	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->phase != PX_PH_DECIDE)
			continue;
		struct proxy_decision got;
		int rc = ask(c, &got);
		if (rc != 0) {
			uv_timer_stop(&c->timer);
			decided(c, rc, &got);
		}
	}
}

static void lookup_id(struct px_conn *c, const char *id, uint16_t port)
{
	struct px_instance *inst = px_snapshot_instance(c->snap, id);
	struct px_app *app = inst ? inst->app : px_snapshot_app(c->snap, id);

	if (!app) {
		px_conn_refuse(c, PROXY_R_UNKNOWN_ID);
		return;
	}
	pthread_mutex_lock(&c->w->mu);
	c->inst = inst;
	c->app = app;
	pthread_mutex_unlock(&c->w->mu);
	c->route.port = port;
	snprintf(c->key, sizeof(c->key), "%s:%u", id, port);
	decide(c);
}

/** A custom domain's TXT lookup on the thread pool. */
struct px_dns_job {
	uv_work_t work;
	struct px_conn *c;
	int rc;
	uint16_t port;
	char id[PROXY_ROUTE_ID_MAX + 1];
};

static void dns_work(uv_work_t *wk)
{
	struct px_dns_job *j = wk->data;
	struct px_conn *c = j->c;
	j->rc = proxy_dns_lookup(c->snap->dns->d, c->sni, j->id, sizeof(j->id), &j->port);
}

static void dns_done(uv_work_t *wk, int status)
{
	struct px_dns_job *j = wk->data;
	struct px_conn *c = j->c;

	c->dns_busy = false;
	c->dns = NULL;
	if (c->phase == PX_PH_CLOSING) {
		free(j);
		c->closing++; /* on_closed's accounting frees it once its handles are closed */
		on_closed((uv_handle_t *)&c->timer);
		return;
	}
	if (status || j->rc || !j->id[0]) {
		free(j);
		px_conn_refuse(c, PROXY_R_DNS);
		return;
	}
	snprintf(c->route.id, sizeof(c->route.id), "%s", j->id);
	uint16_t port = j->port;
	free(j);
	lookup_id(c, c->route.id, port);
}

static void custom_domain(struct px_conn *c)
{
	if (c->snap->dns && c->snap->dns->d && (c->dns = calloc(1, sizeof(*c->dns)))) {
		c->phase = PX_PH_DNS;
		c->dns->c = c;
		c->dns->work.data = c->dns;
		c->dns_busy = true;
		if (uv_queue_work(&c->w->loop, &c->dns->work, dns_work, dns_done) == 0)
			return;
		c->dns_busy = false;
		free(c->dns);
		c->dns = NULL;
	}
	px_conn_refuse(c, PROXY_R_DNS);
}

static void route(struct px_conn *c)
{
	struct proxy_snapshot *snap = c->snap;
	struct proxy_route_config cfg = {
		.base_domains = snap->domain_names,
		.n_base_domains = snap->ndomains,
		.insecure_localhost = snap->insecure_localhost,
	};

	if (!c->sni) {
		px_conn_refuse(c, PROXY_R_NO_SNI);
		return;
	}
	if (proxy_route_parse(&cfg, c->sni, strlen(c->sni), &c->route)) {
		px_conn_refuse(c, PROXY_R_ROUTE);
		return;
	}
	c->mode = c->route.mode == PROXY_ROUTE_PASSTHROUGH    ? "passthrough"
		  : c->route.mode == PROXY_ROUTE_TERMINATE_H2 ? "h2"
							      : "terminate";
	switch (c->route.kind) {
	case PROXY_ROUTE_HEALTH:
	case PROXY_ROUTE_GATEWAY:
		if (!snap->has_special) {
			px_conn_refuse(c, PROXY_R_NO_BACKEND);
			return;
		}
		memcpy(&c->baddr, &snap->special, sizeof(c->baddr));
		px_conn_route_decided(c, NULL);
		return;
	case PROXY_ROUTE_LOCALHOST: {
		struct sockaddr_in *a = (struct sockaddr_in *)&c->baddr;
		memset(&c->baddr, 0, sizeof(c->baddr));
		a->sin_family = AF_INET;
		a->sin_port = htons(c->route.port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		snprintf(c->key, sizeof(c->key), "localhost:%u", c->route.port);
		decide(c);
		return;
	}
	case PROXY_ROUTE_CUSTOM:
		custom_domain(c);
		return;
	case PROXY_ROUTE_APP:
		lookup_id(c, c->route.id, c->route.port);
		return;
	}
}

/* ---- reading the PROXY header and the hello ---- */

/* Parse what was read; route once the hello is complete. */
static void parse_input(struct px_conn *c)
{
	struct proxy_server *s = c->w->s;

	if (c->phase == PX_PH_PP) {
		struct proxy_pp_header h;
		enum proxy_pp_result r = proxy_pp_parse(c->in, c->inlen, &h);
		if (r == PROXY_PP_NEED_MORE) {
			if (h.need > PX_INBUF - PROXY_SNI_MAX_BYTES)
				px_conn_refuse(c, PROXY_R_PP);
			return;
		}
		if (r != PROXY_PP_OK) {
			px_conn_refuse(c, PROXY_R_PP);
			return;
		}
		if (!h.local && h.family != AF_UNSPEC) {
			pthread_mutex_lock(&c->w->mu);
			memcpy(&c->client, &h.src, sizeof(c->client));
			memcpy(&c->local, &h.dst, sizeof(c->local));
			pthread_mutex_unlock(&c->w->mu);
		}
		c->hello_off = h.header_bytes;
		c->phase = PX_PH_HELLO;
		px_conn_arm(c, px_ms(s->o.t_handshake));
	}
	enum proxy_sni_status st =
		proxy_sni_parse(c->in + c->hello_off, c->inlen - c->hello_off, c->hello);
	switch (st) {
	case PROXY_SNI_NEED_MORE:
		if (c->inlen >= PX_INBUF)
			px_conn_refuse(c, PROXY_R_MALFORMED);
		return;
	case PROXY_SNI_NOT_TLS:
		px_conn_refuse(c, PROXY_R_NOT_TLS);
		return;
	case PROXY_SNI_MALFORMED:
		px_conn_refuse(c, PROXY_R_MALFORMED);
		return;
	case PROXY_SNI_OK:
		break;
	}
	if (c->hello->has_sni) {
		char *sni = strndup(c->hello->host, c->hello->host_len);
		if (!sni) {
			px_conn_refuse(c, PROXY_R_INTERNAL);
			return;
		}
		pthread_mutex_lock(&c->w->mu);
		c->sni = sni;
		pthread_mutex_unlock(&c->w->mu);
	}
	free(c->hello);
	c->hello = NULL;
	/* the client poll stays as it is (readable) while the route is decided and the backend
	 * connected: a client that waits costs no poll change; one that sends more early is
	 * paused by px_conn_on_poll */
	uv_timer_stop(&c->timer);
	route(c);
}

static void read_input(struct px_conn *c)
{
	for (;;) {
		if (c->inlen == c->incap && c->incap < PX_INBUF) {
			size_t cap = c->incap * 2 < PX_INBUF ? c->incap * 2 : PX_INBUF;
			uint8_t *in = realloc(c->in, cap);
			if (!in) {
				px_conn_refuse(c, PROXY_R_INTERNAL);
				return;
			}
			c->in = in;
			c->incap = cap;
		}
		size_t want = c->incap - c->inlen;
		if (want == 0) {
			px_conn_refuse(c, PROXY_R_MALFORMED);
			return;
		}
		ssize_t n = read(c->cfd, c->in + c->inlen, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			px_conn_refuse(c, c->phase == PX_PH_PP ? PROXY_R_PP : PROXY_R_MALFORMED);
			return;
		}
		c->inlen += (size_t)n;
		parse_input(c);
		if (c->phase != PX_PH_PP && c->phase != PX_PH_HELLO)
			return;
	}
}

void px_watch_fire(struct px_watch *x, int status, int events)
{
	struct px_conn *c = x->c;
	bool backend = x->kind == PX_WATCH_BACKEND;

	if (x->fd < 0 || c->phase == PX_PH_CLOSING)
		return; /* closed earlier in this batch */
	if (x->kind == PX_WATCH_CAND) {
		px_connect_done(c, x->cand, status < 0);
		return;
	}
	switch (c->phase) {
	case PX_PH_PP:
	case PX_PH_HELLO:
		if (!backend)
			read_input(c);
		return;
	case PX_PH_DNS:
	case PX_PH_DECIDE:
	case PX_PH_CONNECT:
		/* the client sent more before its backend is there: the relay reads it later */
		px_conn_poll(c, backend, 0);
		return;
	case PX_PH_TLS:
		if (backend) {
			/* a backend that speaks first: heard once the client's handshake is done */
			px_conn_poll(c, true, 0);
			return;
		}
		px_relay_poll(c, false, status, events);
		return;
	case PX_PH_RELAY:
	case PX_PH_DRAIN:
		px_relay_poll(c, backend, status, events);
		return;
	default:
		return;
	}
}

static void on_timer(uv_timer_t *t)
{
	struct px_conn *c = t->data;

	switch (c->phase) {
	case PX_PH_PP:
	case PX_PH_HELLO:
	case PX_PH_DECIDE:
		px_conn_refuse(c, PROXY_R_TIMEOUT);
		return;
	case PX_PH_CONNECT:
		px_conn_refuse(c, PROXY_R_CONNECT);
		return;
	case PX_PH_TLS:
	case PX_PH_RELAY:
	case PX_PH_DRAIN:
		px_relay_timer(c);
		return;
	default:
		return; /* DNS: the resolver's own timeout bounds it */
	}
}

void px_conn_start(struct px_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen)
{
	struct proxy_server *s = w->s;
	struct px_conn *c = calloc(1, sizeof(*c));
	uint8_t *in = malloc(PX_INBUF_FIRST);
	struct proxy_sni_hello *hello = malloc(sizeof(*hello));
	struct proxy_snapshot *snap = px_server_snapshot(s);

	if (!c || !in || !hello || !snap) {
		free(c);
		free(in);
		free(hello);
		proxy_snapshot_unref(snap);
		close(fd);
		px_refuse_count(s, snap ? PROXY_R_INTERNAL : PROXY_R_NO_BACKEND);
		return;
	}
	atomic_fetch_add_explicit(&s->churn, 1, memory_order_relaxed);
	c->w = w;
	c->hello = hello;
	c->in = in;
	c->incap = PX_INBUF_FIRST;
	c->snap = snap;
	c->cfd = fd;
	c->bfd = -1;
	c->c2s.pipe[0] = c->c2s.pipe[1] = c->s2c.pipe[0] = c->s2c.pipe[1] = -1;
	c->id = atomic_fetch_add(&s->conn_ids, 1) + 1;
	memcpy(&c->client, peer, peerlen < sizeof(c->client) ? peerlen : sizeof(c->client));
	/* c->local: from an inbound PROXY header, else asked of the socket when an outbound
	 * header needs it */
	c->started_ms = uv_hrtime() / 1000000;
	c->total_deadline_ms = uv_now(&w->loop) + px_ms(s->o.t_total);
	uv_timer_init(&w->loop, &c->timer);
	c->timer.data = c;
	c->cw = (struct px_watch){ .c = c, .fd = fd, .kind = PX_WATCH_CLIENT };
	c->bw = (struct px_watch){ .c = c, .fd = -1, .kind = PX_WATCH_BACKEND };
	pthread_mutex_lock(&w->mu);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	pthread_mutex_unlock(&w->mu);
	atomic_fetch_add(&s->active, 1);
	atomic_fetch_add(&s->total, 1);
	c->phase = s->o.inbound_pp ? PX_PH_PP : PX_PH_HELLO;
	px_conn_arm(c, px_ms(s->o.inbound_pp ? s->o.t_pp_header : s->o.t_handshake));
	px_conn_poll(c, false, UV_READABLE);
}

void px_conn_close_all(struct px_worker *w)
{
	while (w->conns)
		px_conn_close(w->conns);
}
