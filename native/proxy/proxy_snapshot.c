/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_snapshot: the immutable, reference-counted route snapshot (base domains and their
 * certificates, instances with their port policy and WireGuard handshake time, apps, routing
 * decisions, special backends, custom-domain resolver settings) and the lookups a connection
 * makes in it: instance id first, else app id (§6.4), healthy candidates by handshake age,
 * port policy (§6.5). Built by one thread; after proxy_snapshot_finish() nothing changes.
 */
#include "proxy/proxy_internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, const char *what)
{
	snprintf(err, errlen, fmt, what ? what : "");
	return -1;
}

struct proxy_snapshot *proxy_snapshot_new(int64_t version)
{
	struct proxy_snapshot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	atomic_init(&s->refs, 1);
	s->version = version;
	s->handshake_stale = 1800;
	s->cache_top_n = 30;
	return s;
}

struct proxy_snapshot *proxy_snapshot_ref(struct proxy_snapshot *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

int64_t proxy_snapshot_version(const struct proxy_snapshot *s)
{
	return s->version;
}

static void free_str(char *p)
{
	if (p) {
		explicit_bzero(p, strlen(p));
		free(p);
	}
}

void proxy_snapshot_unref(struct proxy_snapshot *s)
{
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < s->ndomains; i++) {
		free(s->domains[i].name);
		free(s->domains[i].cert);
		free_str(s->domains[i].key);
		SSL_CTX_free(s->domains[i].ctx);
	}
	free(s->domains);
	free(s->domain_names);
	for (size_t i = 0; i < s->ninstances; i++) {
		free(s->instances[i].id);
		free(s->instances[i].app_id);
		free(s->instances[i].ports);
	}
	free(s->instances);
	for (size_t i = 0; i < s->napps; i++) {
		free(s->apps[i].id);
		free(s->apps[i].members);
	}
	free(s->apps);
	for (size_t i = 0; i < s->nroutes; i++)
		free(s->routes[i].key);
	free(s->routes);
	px_map_free(&s->inst_map);
	px_map_free(&s->app_map);
	px_map_free(&s->route_map);
	free(s->dns_prefix);
	for (size_t i = 0; i < s->ndns_servers; i++)
		free(s->dns_servers[i]);
	free(s->dns_servers);
	px_dns_unref(s->dns);
	free(s);
}

/* Grow @p *arr (elements of @p size) to hold one more. */
static int grow(void *arr, size_t *cap, size_t n, size_t size)
{
	void **p = arr;

	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *q = realloc(*p, ncap * size);
	if (!q)
		return -1;
	memset((char *)q + *cap * size, 0, (ncap - *cap) * size);
	*p = q;
	*cap = ncap;
	return 0;
}

int proxy_snapshot_add_domain(struct proxy_snapshot *s, const char *domain, const char *cert,
			      const char *key, char *err, size_t errlen)
{
	if (s->finished)
		return fail(err, errlen, "snapshot already finished%s", NULL);
	size_t cap = s->ndomains;
	if (grow(&s->domains, &cap, s->ndomains, sizeof(*s->domains)))
		return fail(err, errlen, "out of memory%s", NULL);
	for (size_t i = 0; i < s->ndomains; i++)
		if (strcasecmp(s->domains[i].name, domain) == 0)
			return fail(err, errlen, "duplicate base domain %s", domain);
	struct px_domain *d = &s->domains[s->ndomains];
	memset(d, 0, sizeof(*d));
	d->name = strdup(domain);
	d->cert = cert ? strdup(cert) : NULL;
	d->key = key ? strdup(key) : NULL;
	if (!d->name || (cert && !d->cert) || (key && !d->key)) {
		free(d->name);
		free(d->cert);
		free_str(d->key);
		return fail(err, errlen, "out of memory%s", NULL);
	}
	s->ndomains++;
	return 0;
}

/* Parse a numeric IPv4/IPv6 address and port into @p ss. */
static int parse_addr(const char *ip, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof(*a6);
		return 0;
	}
	return -1;
}

int proxy_snapshot_add_instance(struct proxy_snapshot *s, const struct proxy_instance_spec *in,
				char *err, size_t errlen)
{
	if (s->finished)
		return fail(err, errlen, "snapshot already finished%s", NULL);
	if (grow(&s->instances, &s->capinstances, s->ninstances, sizeof(*s->instances)))
		return fail(err, errlen, "out of memory%s", NULL);
	struct px_instance *x = &s->instances[s->ninstances];
	memset(x, 0, sizeof(*x));
	if (parse_addr(in->ip, 0, &x->addr, &x->addrlen))
		return fail(err, errlen, "instance %s: ip is not a numeric address", in->id);
	x->id = strdup(in->id);
	x->app_id = strdup(in->app_id);
	x->ports = in->nports ? calloc(in->nports, sizeof(*x->ports)) : NULL;
	if (!x->id || !x->app_id || (in->nports && !x->ports)) {
		free(x->id);
		free(x->app_id);
		free(x->ports);
		return fail(err, errlen, "out of memory%s", NULL);
	}
	for (size_t i = 0; i < in->nports; i++)
		x->ports[i] = (struct px_port){ in->ports[i], in->pp[i] };
	x->nports = in->nports;
	x->last_handshake = in->last_handshake;
	x->has_ports = in->has_ports;
	x->restrict_ports = in->restrict_ports;
	x->cap = in->connections_cap;
	s->ninstances++;
	return 0;
}

/* The app entry of @p id, created if @p create. */
static struct px_app *app_entry(struct proxy_snapshot *s, const char *id, bool create)
{
	for (size_t i = 0; i < s->napps; i++)
		if (strcmp(s->apps[i].id, id) == 0)
			return &s->apps[i];
	if (!create || grow(&s->apps, &s->capapps, s->napps, sizeof(*s->apps)))
		return NULL;
	struct px_app *a = &s->apps[s->napps];
	memset(a, 0, sizeof(*a));
	if (!(a->id = strdup(id)))
		return NULL;
	s->napps++;
	return a;
}

int proxy_snapshot_add_app(struct proxy_snapshot *s, const char *app_id, bool has_max,
			   unsigned max_connections, char *err, size_t errlen)
{
	if (s->finished)
		return fail(err, errlen, "snapshot already finished%s", NULL);
	if (app_entry(s, app_id, false))
		return fail(err, errlen, "duplicate app %s", app_id);
	struct px_app *a = app_entry(s, app_id, true);
	if (!a)
		return fail(err, errlen, "out of memory%s", NULL);
	a->has_max = has_max;
	a->max_connections = max_connections;
	return 0;
}

int proxy_snapshot_add_route(struct proxy_snapshot *s, const char *key,
			     const struct proxy_decision *d, char *err, size_t errlen)
{
	if (s->finished)
		return fail(err, errlen, "snapshot already finished%s", NULL);
	if (grow(&s->routes, &s->caproutes, s->nroutes, sizeof(*s->routes)))
		return fail(err, errlen, "out of memory%s", NULL);
	struct px_route *r = &s->routes[s->nroutes];
	if (!(r->key = strdup(key)))
		return fail(err, errlen, "out of memory%s", NULL);
	r->d = *d;
	s->nroutes++;
	return 0;
}

int proxy_snapshot_set(struct proxy_snapshot *s, bool insecure_localhost, const char *special_host,
		       uint16_t special_port, double handshake_stale, unsigned cache_top_n,
		       char *err, size_t errlen)
{
	s->insecure_localhost = insecure_localhost;
	s->has_special = special_host != NULL;
	if (special_host && parse_addr(special_host, special_port, &s->special, &s->speciallen))
		return fail(err, errlen, "special.host %s is not a numeric address", special_host);
	s->handshake_stale = handshake_stale;
	s->cache_top_n = cache_top_n;
	return 0;
}

int proxy_snapshot_set_dns(struct proxy_snapshot *s, const char *prefix, bool compat,
			   const char *const *servers, size_t nservers, double timeout, char *err,
			   size_t errlen)
{
	if (s->has_dns)
		return fail(err, errlen, "custom_domains set twice%s", NULL);
	s->dns_prefix = strdup(prefix);
	s->dns_servers = calloc(nservers ? nservers : 1, sizeof(char *));
	if (!s->dns_prefix || !s->dns_servers)
		return fail(err, errlen, "out of memory%s", NULL);
	for (size_t i = 0; i < nservers; i++) {
		if (!(s->dns_servers[i] = strdup(servers[i])))
			return fail(err, errlen, "out of memory%s", NULL);
		s->ndns_servers = i + 1;
	}
	s->dns_compat = compat;
	s->dns_timeout = timeout;
	s->has_dns = true;
	return 0;
}

/* Most recent handshake first; ties by id so the order is stable. */
static int by_handshake(const void *a, const void *b)
{
	const struct px_instance *x = *(struct px_instance *const *)a;
	const struct px_instance *y = *(struct px_instance *const *)b;

	if (x->last_handshake != y->last_handshake)
		return x->last_handshake > y->last_handshake ? -1 : 1;
	return strcmp(x->id, y->id);
}

int proxy_snapshot_finish(struct proxy_snapshot *s, char *err, size_t errlen)
{
	if (s->finished)
		return fail(err, errlen, "snapshot already finished%s", NULL);
	for (size_t i = 0; i < s->ninstances; i++)
		if (!app_entry(s, s->instances[i].app_id, true))
			return fail(err, errlen, "out of memory%s", NULL);
	s->domain_names = calloc(s->ndomains ? s->ndomains : 1, sizeof(char *));
	if (!s->domain_names || px_map_init(&s->inst_map, s->ninstances) ||
	    px_map_init(&s->app_map, s->napps) || px_map_init(&s->route_map, s->nroutes))
		return fail(err, errlen, "out of memory%s", NULL);
	for (size_t i = 0; i < s->ndomains; i++)
		s->domain_names[i] = s->domains[i].name;
	for (size_t i = 0; i < s->napps; i++) {
		px_map_put(&s->app_map, s->apps[i].id, &s->apps[i]);
		s->apps[i].members = NULL;
	}
	for (size_t i = 0; i < s->ninstances; i++) {
		struct px_instance *x = &s->instances[i];
		if (px_map_put(&s->inst_map, x->id, x))
			return fail(err, errlen, "duplicate instance %s", x->id);
		x->app = px_map_get(&s->app_map, x->app_id, strlen(x->app_id));
		x->app->nmembers++;
	}
	for (size_t i = 0; i < s->napps; i++) {
		struct px_app *a = &s->apps[i];
		if (a->nmembers && !(a->members = calloc(a->nmembers, sizeof(*a->members))))
			return fail(err, errlen, "out of memory%s", NULL);
		a->nmembers = 0;
	}
	for (size_t i = 0; i < s->ninstances; i++) {
		struct px_app *a = s->instances[i].app;
		a->members[a->nmembers++] = &s->instances[i];
	}
	for (size_t i = 0; i < s->napps; i++)
		if (s->apps[i].nmembers > 1)
			qsort(s->apps[i].members, s->apps[i].nmembers, sizeof(void *),
			      by_handshake);
	for (size_t i = 0; i < s->nroutes; i++)
		if (px_map_put(&s->route_map, s->routes[i].key, &s->routes[i]))
			return fail(err, errlen, "duplicate route %s", s->routes[i].key);
	s->finished = true;
	return 0;
}

struct px_instance *px_snapshot_instance(const struct proxy_snapshot *s, const char *id)
{
	return px_map_get(&s->inst_map, id, strlen(id));
}

struct px_app *px_snapshot_app(const struct proxy_snapshot *s, const char *id)
{
	return px_map_get(&s->app_map, id, strlen(id));
}

const struct proxy_decision *px_snapshot_route(const struct proxy_snapshot *s, const char *key)
{
	struct px_route *r = px_map_get(&s->route_map, key, strlen(key));
	return r ? &r->d : NULL;
}

static bool healthy(const struct proxy_snapshot *s, const struct px_instance *x, double now)
{
	return x->last_handshake > 0 && now - x->last_handshake < s->handshake_stale;
}

size_t px_snapshot_candidates(const struct proxy_snapshot *s, const struct px_app *app, double now,
			      unsigned top_n, struct px_instance **out, size_t max)
{
	size_t n = 0, nhealthy = 0;

	for (size_t i = 0; i < app->nmembers; i++)
		nhealthy += healthy(s, app->members[i], now);
	if (!nhealthy || !max)
		return 0;
	if (top_n == 0) {
		/* one random healthy instance (spread the load) */
		size_t pick = (size_t)arc4random_uniform((uint32_t)nhealthy);
		for (size_t i = 0; i < app->nmembers; i++)
			if (healthy(s, app->members[i], now) && pick-- == 0)
				out[n++] = app->members[i];
		return n;
	}
	for (size_t i = 0; i < app->nmembers && n < top_n && n < max; i++)
		if (healthy(s, app->members[i], now))
			out[n++] = app->members[i];
	return n;
}

bool px_port_allowed(const struct px_instance *in, uint16_t port, bool *pp)
{
	*pp = false;
	if (!in->has_ports)
		return false;
	for (size_t i = 0; i < in->nports; i++) {
		if (in->ports[i].port == port) {
			*pp = in->ports[i].pp;
			return true;
		}
	}
	return !in->restrict_ports;
}
