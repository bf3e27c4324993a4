/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_miss: routing decisions not in the snapshot. A worker whose connection needs a
 * decision for an unseen "<id>:<port>" queues a miss (once per key) and notifies the main
 * thread (uv_async in the binding); Lua answers with proxy_server_decide(), which records the
 * decision (an overlay on the snapshot's routes until the next publish folds it in) and wakes
 * the workers so parked connections go on. Guarded by one mutex; bounded.
 */
#include "proxy/proxy_internal.h"

#include <stdlib.h>
#include <string.h>

/** Most keys asked or answered between two publishes; beyond, unseen keys are denied. */
#define PX_MISS_MAX 16384

struct px_miss_q {
	struct px_miss_q *next;
	struct proxy_miss m;
	char strings[];
};

static size_t ndecided(const struct proxy_server *s)
{
	size_t n = 0;
	for (const struct px_decided *d = s->decided; d; d = d->next)
		n++;
	return n;
}

/* A queued copy of @p m (one allocation). */
static struct px_miss_q *copy_miss(const struct proxy_miss *m)
{
	const char *src[7] = {
		m->key, m->id, m->mode, m->sni, m->app_id, m->instance_id, m->client
	};
	size_t len[7], total = 0;

	for (int i = 0; i < 7; i++)
		total += (len[i] = strlen(src[i] ? src[i] : "")) + 1;
	struct px_miss_q *q = calloc(1, sizeof(*q) + total);
	if (!q)
		return NULL;
	const char **dst[7] = { &q->m.key,    &q->m.id,		 &q->m.mode,  &q->m.sni,
				&q->m.app_id, &q->m.instance_id, &q->m.client };
	char *p = q->strings;
	for (int i = 0; i < 7; i++) {
		memcpy(p, src[i] ? src[i] : "", len[i] + 1);
		*dst[i] = p;
		p += len[i] + 1;
	}
	q->m.port = m->port;
	return q;
}

int px_miss_lookup(struct proxy_server *s, const char *key, const struct proxy_miss *m,
		   struct proxy_decision *d)
{
	pthread_mutex_lock(&s->miss_mu);
	for (struct px_decided *x = s->decided; x; x = x->next) {
		if (strcmp(x->key, key) == 0) {
			int rc = x->answered ? 1 : 0;
			if (x->answered)
				*d = x->d;
			pthread_mutex_unlock(&s->miss_mu);
			return rc;
		}
	}
	proxy_miss_notify_fn fn = s->miss_fn;
	void *ud = s->miss_ud;
	if (!fn) {
		pthread_mutex_unlock(&s->miss_mu);
		return -1;
	}
	struct px_decided *x = ndecided(s) < PX_MISS_MAX ? calloc(1, sizeof(*x)) : NULL;
	struct px_miss_q *q = x ? copy_miss(m) : NULL;
	if (!q || !(x->key = strdup(key))) {
		free(q);
		free(x);
		pthread_mutex_unlock(&s->miss_mu);
		*d = (struct proxy_decision){ .allow = false, .pp = -1 };
		return 1;
	}
	x->next = s->decided;
	s->decided = x;
	q->next = s->misses;
	s->misses = q;
	pthread_mutex_unlock(&s->miss_mu);
	fn(ud);
	return 0;
}

void proxy_server_on_miss(struct proxy_server *s, proxy_miss_notify_fn fn, void *ud)
{
	pthread_mutex_lock(&s->miss_mu);
	s->miss_fn = fn;
	s->miss_ud = ud;
	pthread_mutex_unlock(&s->miss_mu);
}

void proxy_server_take_misses(struct proxy_server *s,
			      void (*fn)(void *ud, const struct proxy_miss *m), void *ud)
{
	pthread_mutex_lock(&s->miss_mu);
	struct px_miss_q *q = s->misses, *fifo = NULL;
	s->misses = NULL;
	pthread_mutex_unlock(&s->miss_mu);
	while (q) {
		struct px_miss_q *n = q->next;
		q->next = fifo;
		fifo = q;
		q = n;
	}
	while (fifo) {
		struct px_miss_q *n = fifo->next;
		fn(ud, &fifo->m);
		free(fifo);
		fifo = n;
	}
}

void proxy_server_decide(struct proxy_server *s, const char *key, const struct proxy_decision *d)
{
	struct px_decided *x;

	pthread_mutex_lock(&s->miss_mu);
	for (x = s->decided; x; x = x->next)
		if (strcmp(x->key, key) == 0)
			break;
	if (!x && ndecided(s) < PX_MISS_MAX && (x = calloc(1, sizeof(*x)))) {
		if (!(x->key = strdup(key))) {
			free(x);
			x = NULL;
		} else {
			x->next = s->decided;
			s->decided = x;
		}
	}
	if (x) {
		x->d = *d;
		x->answered = true;
	}
	pthread_mutex_unlock(&s->miss_mu);
	for (unsigned i = 0; i < s->started; i++) {
		atomic_fetch_or(&s->workers[i].flags, PX_W_DECIDED);
		uv_async_send(&s->workers[i].async);
	}
}

void px_miss_clear(struct proxy_server *s)
{
	pthread_mutex_lock(&s->miss_mu);
	for (struct px_decided **pp = &s->decided; *pp;) {
		struct px_decided *x = *pp;
		*pp = x->next;
		free(x->key);
		free(x);
	}
	pthread_mutex_unlock(&s->miss_mu);
}

void px_miss_free(struct proxy_server *s)
{
	for (struct px_decided *x = s->decided, *n; x; x = n) {
		n = x->next;
		free(x->key);
		free(x);
	}
	s->decided = NULL;
	for (struct px_miss_q *q = s->misses, *n; q; q = n) {
		n = q->next;
		free(q);
	}
	s->misses = NULL;
}
