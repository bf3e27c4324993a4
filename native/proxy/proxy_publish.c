/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_publish: what happens on the main thread when Lua publishes a snapshot — its TLS
 * contexts (proxy_tls.c), its custom-domain resolver (kept across publishes while the settings
 * do not change, so the TXT cache survives), its counter sets (one per app and per instance id,
 * created on first sight and never freed before the server, so workers and the Lua side share
 * plain pointers to atomics) — and the swap itself.
 */
#include "proxy/proxy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t hash(const char *s)
{
	size_t h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h;
}

static int tab_grow(struct px_stats_tab *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64;
	struct px_stats **b = calloc(nb, sizeof(*b));

	if (!b)
		return -1;
	for (struct px_stats *x = t->all; x; x = x->next) {
		size_t i = hash(x->id) & (nb - 1);
		x->chain = b[i];
		b[i] = x;
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

/* The counter set of @p id in @p t, created on first use; NULL when out of memory. */
static struct px_stats *tab_get(struct px_stats_tab *t, const char *id)
{
	if (t->nb) {
		for (struct px_stats *x = t->b[hash(id) & (t->nb - 1)]; x; x = x->chain)
			if (strcmp(x->id, id) == 0)
				return x;
	}
	if (t->n >= t->nb && tab_grow(t))
		return NULL;
	struct px_stats *x = calloc(1, sizeof(*x));
	if (!x || !(x->id = strdup(id))) {
		free(x);
		return NULL;
	}
	size_t i = hash(id) & (t->nb - 1);
	x->chain = t->b[i];
	t->b[i] = x;
	x->next = t->all;
	t->all = x;
	t->n++;
	return x;
}

static void tab_free(struct px_stats_tab *t)
{
	for (struct px_stats *x = t->all, *n; x; x = n) {
		n = x->next;
		free(x->id);
		free(x);
	}
	free(t->b);
	memset(t, 0, sizeof(*t));
}

void px_stats_free(struct proxy_server *s)
{
	tab_free(&s->app_stats);
	tab_free(&s->inst_stats);
}

void proxy_server_stats_each(struct proxy_server *s, bool instances,
			     void (*fn)(void *ud, const struct proxy_stat *st), void *ud)
{
	for (struct px_stats *x = (instances ? &s->inst_stats : &s->app_stats)->all; x;
	     x = x->next) {
		struct proxy_stat st = {
			.id = x->id,
			.active = atomic_load(&x->active),
			.total = atomic_load(&x->total),
			.bytes_in = atomic_load(&x->bytes_in),
			.bytes_out = atomic_load(&x->bytes_out),
		};
		fn(ud, &st);
	}
}

void px_dns_unref(struct px_dns_ref *r)
{
	if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	proxy_dns_free(r->d);
	free(r->cfgkey);
	free(r);
}

/* The resolver for @p snap's settings: the current one if they did not change. */
static int attach_dns(struct proxy_server *s, struct proxy_snapshot *snap, char *err, size_t errlen)
{
	char key[2048];
	int n = snprintf(key, sizeof(key), "%s|%d|%.3f", snap->dns_prefix, snap->dns_compat,
			 snap->dns_timeout);
	for (size_t i = 0; i < snap->ndns_servers && n > 0 && (size_t)n < sizeof(key); i++)
		n += snprintf(key + n, sizeof(key) - (size_t)n, "|%s", snap->dns_servers[i]);
	if (n < 0 || (size_t)n >= sizeof(key)) {
		snprintf(err, errlen, "custom_domains settings too long");
		return -1;
	}
	if (s->dns && strcmp(s->dns->cfgkey, key) == 0) {
		atomic_fetch_add(&s->dns->refs, 1);
		snap->dns = s->dns;
		return 0;
	}
	struct px_dns_ref *r = calloc(1, sizeof(*r));
	if (!r || !(r->cfgkey = strdup(key))) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	atomic_init(&r->refs, 2); /* the snapshot's and the server's */
	struct proxy_dns_config cfg = {
		.prefix = snap->dns_prefix,
		.compat = snap->dns_compat,
		.servers = (const char *const *)snap->dns_servers,
		.nservers = snap->ndns_servers,
		.timeout = snap->dns_timeout,
	};
	if (!(r->d = proxy_dns_new(&cfg))) {
		free(r->cfgkey);
		free(r);
		snprintf(err, errlen, "custom_domains: cannot create the resolver");
		return -1;
	}
	px_dns_unref(s->dns);
	s->dns = r;
	snap->dns = r;
	return 0;
}

int proxy_server_publish(struct proxy_server *s, struct proxy_snapshot *snap, char *err,
			 size_t errlen)
{
	struct proxy_snapshot *prev = px_server_snapshot(s);
	int rc = -1;

	if (!snap->finished) {
		snprintf(err, errlen, "snapshot not finished");
		goto out;
	}
	if (px_tls_build(s->tls_cache, snap, prev, err, errlen))
		goto out;
	if (snap->has_dns && attach_dns(s, snap, err, errlen))
		goto out;
	for (size_t i = 0; i < snap->napps; i++)
		if (!(snap->apps[i].stats = tab_get(&s->app_stats, snap->apps[i].id)))
			goto oom;
	for (size_t i = 0; i < snap->ninstances; i++)
		if (!(snap->instances[i].stats = tab_get(&s->inst_stats, snap->instances[i].id)))
			goto oom;
	pthread_mutex_lock(&s->snap_mu);
	struct proxy_snapshot *old = s->snap;
	s->snap = snap;
	pthread_mutex_unlock(&s->snap_mu);
	snap = NULL;
	px_miss_clear(s);
	proxy_snapshot_unref(old);
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	proxy_snapshot_unref(snap);
	proxy_snapshot_unref(prev);
	return rc;
}
