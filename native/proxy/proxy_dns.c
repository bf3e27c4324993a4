/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_dns: custom-domain TXT resolver with an LRU cache (see proxy_dns.h). A lookup is at most
 * two rounds (the prefixed and compat names together, then the wildcard name), sharing one
 * deadline. In a round every query goes to the servers in turn, one send per time slot (two
 * passes over the servers within the timeout), so a lost datagram or a dead server is covered;
 * a server that answers SERVFAIL/REFUSED or is unreachable is skipped at once. Answers are
 * accepted only from the connected server, with the query's id and the very question asked.
 */
#include "proxy/proxy_dns.h"
#include "proxy/proxy_sni.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PREFIX	   "_dstack-app-address"
#define COMPAT_PREFIX	   "_tapp-address"
#define PREFIX_MAX	   54 /* "<prefix>-wildcard" is one label (63) */
#define DEFAULT_TIMEOUT_MS 5000
#define QUERY_MAX	   512
#define ANSWER_MAX	   4096
#define ROUND_MAX	   2

struct server {
	struct sockaddr_storage addr;
	socklen_t len;
};

struct entry {
	bool used;
	uint32_t hash;
	int rc;
	uint16_t port;
	char id[PROXY_DNS_ID_MAX + 1];
	char key[PROXY_SNI_HOST_MAX + 1];
	uint64_t expires_ms, tick;
};

struct proxy_dns {
	pthread_mutex_t mu;
	char prefix[PREFIX_MAX + 1];
	bool compat;
	struct server servers[PROXY_DNS_SERVERS_MAX];
	size_t nservers;
	int timeout_ms;
	uint64_t tick;
	struct proxy_dns_stats st;
	struct entry cache[PROXY_DNS_CACHE_SIZE];
};

enum qstate { Q_WAIT, Q_TXT, Q_NONE, Q_FAIL, Q_TIMEOUT };

struct query {
	char name[NS_MAXDNAME];
	uint8_t pkt[QUERY_MAX];
	int len;
	uint16_t qid;
	enum qstate state;
	int rc; /* Q_TXT: 0 or -EPROTO */
	char id[PROXY_DNS_ID_MAX + 1];
	uint16_t port;
	uint32_t ttl; /* Q_TXT: the record's; Q_NONE: the negative TTL */
	unsigned sent, failed;
	bool hurry;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint32_t fnv1a(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

/* ---- configuration ---- */

static bool dec_port(const char *s, uint16_t *port)
{
	unsigned v = 0;
	size_t i, n = strlen(s);

	if (n == 0 || n > 5 || s[0] == '0')
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return false;
	*port = (uint16_t)v;
	return true;
}

/* "ip", "ip:port", "[ipv6]", "[ipv6]:port", or a bare IPv6 literal. */
static bool parse_server(const char *s, struct server *out)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *p = NULL, *colon = strchr(s, ':');
	uint16_t port = 53;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || (end[1] != '\0' && end[1] != ':'))
			return false;
		n = (size_t)(end - s - 1);
		p = end[1] == ':' ? end + 2 : NULL;
		s++;
	} else if (colon && !strchr(colon + 1, ':')) {
		n = (size_t)(colon - s);
		p = colon + 1;
	} else {
		n = strlen(s);
	}
	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, s, n);
	host[n] = '\0';
	if (p && !dec_port(p, &port))
		return false;
	struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;

	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		out->len = sizeof(*sin);
		return true;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		out->len = sizeof(*sin6);
		return true;
	}
	return false;
}

/* The system's name servers (resolv.conf), through a private resolver state. */
static size_t system_servers(struct server *out)
{
	struct __res_state st;
	size_t n = 0;
	int i;

	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0) {
		res_nclose(&st);
		return 0;
	}
	for (i = 0; i < st.nscount && n < PROXY_DNS_SERVERS_MAX; i++) {
		memset(&out[n], 0, sizeof(out[n]));
		if (st._u._ext.nsaddrs[i]) {
			memcpy(&out[n].addr, st._u._ext.nsaddrs[i], sizeof(struct sockaddr_in6));
			out[n].len = sizeof(struct sockaddr_in6);
		} else if (st.nsaddr_list[i].sin_family == AF_INET) {
			memcpy(&out[n].addr, &st.nsaddr_list[i], sizeof(struct sockaddr_in));
			out[n].len = sizeof(struct sockaddr_in);
		} else {
			continue;
		}
		n++;
	}
	res_nclose(&st);
	return n;
}

static bool prefix_ok(const char *p)
{
	size_t i, n = strlen(p);

	if (n == 0 || n > PREFIX_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
		      (p[i] >= '0' && p[i] <= '9') || p[i] == '_' || p[i] == '-'))
			return false;
	return true;
}

struct proxy_dns *proxy_dns_new(const struct proxy_dns_config *cfg)
{
	const char *prefix = cfg->prefix ? cfg->prefix : DEFAULT_PREFIX;
	struct proxy_dns *d;
	size_t i;

	if (!prefix_ok(prefix) || cfg->nservers > PROXY_DNS_SERVERS_MAX ||
	    (cfg->nservers && !cfg->servers)) {
		errno = EINVAL;
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		errno = ENOMEM;
		return NULL;
	}
	memcpy(d->prefix, prefix, strlen(prefix) + 1);
	d->compat = cfg->compat;
	for (i = 0; i < cfg->nservers; i++) {
		if (!cfg->servers[i] || !parse_server(cfg->servers[i], &d->servers[i])) {
			free(d);
			errno = EINVAL;
			return NULL;
		}
	}
	d->nservers = cfg->nservers ? cfg->nservers : system_servers(d->servers);
	if (d->nservers == 0) {
		free(d);
		errno = ENOENT;
		return NULL;
	}
	d->timeout_ms = cfg->timeout > 0 ? (int)(cfg->timeout * 1000 + 0.5) : DEFAULT_TIMEOUT_MS;
	if (d->timeout_ms < 1)
		d->timeout_ms = 1;
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		free(d);
		errno = ENOMEM;
		return NULL;
	}
	return d;
}

void proxy_dns_free(struct proxy_dns *d)
{
	if (!d)
		return;
	pthread_mutex_destroy(&d->mu);
	free(d);
}

/* ---- answers ---- */

/* Two presentation-form names, case-insensitively, a trailing dot ignored (ours have no escapes,
 * so an escaped name from a server never matches). */
static bool same_name(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);

	if (na && a[na - 1] == '.')
		na--;
	if (nb && b[nb - 1] == '.')
		nb--;
	return na == nb && strncasecmp(a, b, na) == 0;
}

/* "<id>:<port>": id [0-9A-Za-z]{1,63}, port 1..65535 without leading zeros. */
static bool parse_record(const uint8_t *s, size_t n, char *id, uint16_t *port)
{
	char digits[6];
	size_t i, colon = n;

	for (i = 0; i < n; i++) {
		if (s[i] == ':') {
			colon = i;
			break;
		}
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	}
	if (colon == 0 || colon == n || colon > PROXY_DNS_ID_MAX || n - colon - 1 > 5)
		return false;
	memcpy(digits, s + colon + 1, n - colon - 1);
	digits[n - colon - 1] = '\0';
	if (!dec_port(digits, port))
		return false;
	memcpy(id, s, colon);
	id[colon] = '\0';
	return true;
}

/* TTL of a negative answer: the SOA's (min of its TTL and MINIMUM) if any, capped. */
static uint32_t negative_ttl(ns_msg *msg)
{
	uint32_t ttl = PROXY_DNS_NEGATIVE_TTL_MAX;
	ns_rr rr;
	int i;

	for (i = 0; i < ns_msg_count(*msg, ns_s_ns); i++) {
		if (ns_parserr(msg, ns_s_ns, i, &rr) < 0)
			break;
		if (ns_rr_type(rr) == ns_t_soa && ns_rr_rdlen(rr) >= 20) {
			uint32_t min = ns_get32(ns_rr_rdata(rr) + ns_rr_rdlen(rr) - 4);

			if (ns_rr_ttl(rr) < ttl)
				ttl = ns_rr_ttl(rr);
			if (min < ttl)
				ttl = min;
			break;
		}
	}
	return ttl;
}

/* The answers: follow CNAMEs from the question, take the first TXT of the name reached. */
static void read_answers(ns_msg *msg, struct query *q)
{
	char cur[NS_MAXDNAME];
	ns_rr rr;
	int i;

	memcpy(cur, q->name, sizeof(cur));
	for (i = 0; i < ns_msg_count(*msg, ns_s_an); i++) {
		if (ns_parserr(msg, ns_s_an, i, &rr) < 0) {
			q->state = Q_FAIL;
			return;
		}
		if (ns_rr_class(rr) != ns_c_in || !same_name(ns_rr_name(rr), cur))
			continue;
		if (ns_rr_type(rr) == ns_t_cname) {
			if (ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), ns_rr_rdata(rr),
					       cur, sizeof(cur)) < 0) {
				q->state = Q_FAIL;
				return;
			}
			continue;
		}
		if (ns_rr_type(rr) != ns_t_txt)
			continue;
		/* first character-string of the RDATA */
		q->state = Q_TXT;
		q->ttl = ns_rr_ttl(rr);
		q->rc = ns_rr_rdlen(rr) >= 1 && (size_t)ns_rr_rdata(rr)[0] + 1 <= ns_rr_rdlen(rr) &&
					parse_record(ns_rr_rdata(rr) + 1, ns_rr_rdata(rr)[0], q->id,
						     &q->port)
				? 0
				: -EPROTO;
		return;
	}
	q->state = Q_NONE; /* NODATA */
	q->ttl = negative_ttl(msg);
}

/* One datagram from server @p s; unknown ids and other questions are ignored. */
static void on_answer(const uint8_t *buf, int n, unsigned s, struct query *qs, size_t nq)
{
	struct query *q = NULL;
	ns_msg msg;
	ns_rr rr;
	uint16_t id;
	size_t i;

	if (n < NS_HFIXEDSZ)
		return;
	id = (uint16_t)(buf[0] << 8 | buf[1]);
	for (i = 0; i < nq; i++)
		if (qs[i].state == Q_WAIT && qs[i].qid == id)
			q = &qs[i];
	if (!q)
		return;
	if (ns_initparse(buf, n, &msg) < 0 || !ns_msg_getflag(msg, ns_f_qr) ||
	    ns_msg_getflag(msg, ns_f_opcode) != ns_o_query || ns_msg_count(msg, ns_s_qd) != 1 ||
	    ns_parserr(&msg, ns_s_qd, 0, &rr) < 0)
		goto server_failed;
	if (ns_rr_type(rr) != ns_t_txt || ns_rr_class(rr) != ns_c_in ||
	    !same_name(ns_rr_name(rr), q->name))
		return; /* not the question we asked */
	switch (ns_msg_getflag(msg, ns_f_rcode)) {
	case ns_r_noerror:
		if (ns_msg_getflag(msg, ns_f_tc)) {
			/* a TXT of "<id>:<port>" fits easily: no TCP retry, refuse */
			q->state = Q_TXT;
			q->rc = -EPROTO;
			q->ttl = PROXY_DNS_NEGATIVE_TTL_MAX;
			return;
		}
		read_answers(&msg, q);
		if (q->state != Q_FAIL)
			return;
		q->state = Q_WAIT;
		goto server_failed;
	case ns_r_nxdomain:
		q->state = Q_NONE;
		q->ttl = negative_ttl(&msg);
		return;
	default:
		goto server_failed;
	}
server_failed:
	q->failed |= 1u << s;
	q->hurry = true;
}

/* ---- transport ---- */

static uint16_t random_id(void)
{
	uint16_t v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (uint16_t)(now_ms() * 2654435761u >> 7);
	return v;
}

/* Send @p q's next datagrams whose slots have come (at once after a server failed); a query
 * every server failed is Q_FAIL. */
static void pump(struct query *q, const int *fds, size_t ns, uint64_t start, uint64_t slot,
		 uint64_t now, uint64_t *stat_queries)
{
	unsigned all = (1u << ns) - 1;

	while (q->state == Q_WAIT && q->sent < ROUND_MAX * ns &&
	       (q->hurry || start + q->sent * slot <= now)) {
		unsigned s = q->sent % ns;

		q->sent++;
		if (q->failed & (1u << s)) {
			q->hurry = true; /* a dead server's slot goes to the next one */
			continue;
		}
		if (fds[s] < 0 || send(fds[s], q->pkt, (size_t)q->len, MSG_NOSIGNAL) != q->len) {
			q->failed |= 1u << s;
			q->hurry = true;
			continue;
		}
		q->hurry = false;
		(*stat_queries)++;
	}
	if (q->state == Q_WAIT && (q->failed & all) == all)
		q->state = Q_FAIL;
}

/* Run the queries of one round until each has an answer or @p deadline passes. */
static void run_round(struct proxy_dns *d, const int *fds, struct query *qs, size_t nq,
		      uint64_t deadline, uint64_t *stat_queries)
{
	size_t ns = d->nservers, i;
	uint64_t start = now_ms();
	uint64_t slot = deadline > start ? (deadline - start) / (ROUND_MAX * ns) : 0;
	uint8_t buf[ANSWER_MAX];

	for (;;) {
		struct pollfd pfd[PROXY_DNS_SERVERS_MAX];
		uint64_t now = now_ms(), wake = deadline;
		bool waiting = false;

		for (i = 0; i < nq; i++) {
			struct query *q = &qs[i];

			pump(q, fds, ns, start, slot, now, stat_queries);
			if (q->state != Q_WAIT)
				continue;
			waiting = true;
			if (q->sent < ROUND_MAX * ns && start + q->sent * slot < wake)
				wake = start + q->sent * slot;
		}
		if (!waiting)
			return;
		if (now >= deadline) {
			for (i = 0; i < nq; i++)
				if (qs[i].state == Q_WAIT)
					qs[i].state = Q_TIMEOUT;
			return;
		}
		for (i = 0; i < ns; i++) {
			pfd[i].fd = fds[i];
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		if (poll(pfd, (nfds_t)ns, wake > now ? (int)(wake - now) : 0) <= 0)
			continue;
		for (i = 0; i < ns; i++) {
			if (!(pfd[i].revents & (POLLIN | POLLERR)))
				continue;
			for (;;) {
				ssize_t n = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT);
				size_t k;

				if (n >= 0) {
					on_answer(buf, (int)n, (unsigned)i, qs, nq);
					continue;
				}
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					break;
				/* ICMP unreachable: this server is gone for every query */
				for (k = 0; k < nq; k++) {
					qs[k].failed |= 1u << i;
					qs[k].hurry = true;
				}
				break;
			}
		}
	}
}

/* Build the TXT query for @p q->name with a fresh id unlike the others of the round. */
static bool build(res_state st, struct query *qs, size_t k)
{
	struct query *q = &qs[k];
	size_t i;

	q->len = res_nmkquery(st, ns_o_query, q->name, ns_c_in, ns_t_txt, NULL, 0, NULL, q->pkt,
			      sizeof(q->pkt));
	if (q->len < NS_HFIXEDSZ)
		return false;
again:
	q->qid = random_id();
	for (i = 0; i < k; i++)
		if (qs[i].qid == q->qid)
			goto again;
	q->pkt[0] = (uint8_t)(q->qid >> 8);
	q->pkt[1] = (uint8_t)q->qid;
	return true;
}

/* One round over @p names; the query states come back in @p qs. */
static void round_of(struct proxy_dns *d, res_state st, const int *fds, const char *const *names,
		     size_t n, struct query *qs, uint64_t deadline, uint64_t *stat_queries)
{
	size_t i;

	for (i = 0; i < n; i++) {
		memset(&qs[i], 0, sizeof(qs[i]));
		if (strlen(names[i]) > PROXY_SNI_HOST_MAX) {
			qs[i].state = Q_NONE; /* cannot exist */
			qs[i].ttl = PROXY_DNS_NEGATIVE_TTL_MAX;
			continue;
		}
		memcpy(qs[i].name, names[i], strlen(names[i]) + 1);
		if (!build(st, qs, i))
			qs[i].state = Q_FAIL;
	}
	run_round(d, fds, qs, n, deadline, stat_queries);
}

/* Resolve @p host: 0 with @p id / @p port, or -errno; *ttl is how long to cache it. */
static int resolve(struct proxy_dns *d, const char *host, char *id, uint16_t *port, uint32_t *ttl,
		   uint64_t *stat_queries)
{
	char n0[PROXY_SNI_HOST_MAX + 80], n1[PROXY_SNI_HOST_MAX + 80];
	const char *names[2] = { n0, n1 };
	struct query qs[2];
	int fds[PROXY_DNS_SERVERS_MAX];
	uint64_t deadline = now_ms() + (uint64_t)d->timeout_ms;
	struct __res_state st;
	const char *parent;
	size_t i, nq = 1;
	int rc = -ENOENT;
	bool timeout = false, failed = false;

	memset(&st, 0, sizeof(st));
	if (res_ninit(&st) != 0) {
		res_nclose(&st);
		return -EAGAIN;
	}
	st.options |= RES_RECURSE;
	for (i = 0; i < d->nservers; i++) {
		fds[i] = socket(d->servers[i].addr.ss_family,
				SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fds[i] >= 0 && connect(fds[i], (struct sockaddr *)&d->servers[i].addr,
					   d->servers[i].len) != 0) {
			close(fds[i]);
			fds[i] = -1;
		}
	}

	/* round 1: <prefix>.<sni>, and _tapp-address.<sni> with compat */
	*ttl = PROXY_DNS_NEGATIVE_TTL_MAX;
	snprintf(n0, sizeof(n0), "%s.%s", d->prefix, host);
	if (d->compat && strcmp(d->prefix, COMPAT_PREFIX) != 0) {
		snprintf(n1, sizeof(n1), "%s.%s", COMPAT_PREFIX, host);
		nq = 2;
	}
	round_of(d, &st, fds, names, nq, qs, deadline, stat_queries);
	for (i = 0; i < nq; i++) {
		if (qs[i].state == Q_TXT) {
			rc = qs[i].rc;
			goto found;
		}
		timeout |= qs[i].state == Q_TIMEOUT;
		failed |= qs[i].state == Q_FAIL;
		if (qs[i].state == Q_NONE && qs[i].ttl < *ttl)
			*ttl = qs[i].ttl;
	}
	if (timeout || failed)
		goto out;

	/* round 2: <prefix>-wildcard.<parent> */
	parent = strchr(host, '.');
	if (!parent)
		goto out;
	snprintf(n0, sizeof(n0), "%s-wildcard.%s", d->prefix, parent + 1);
	round_of(d, &st, fds, names, 1, qs, deadline, stat_queries);
	i = 0;
	if (qs[0].state == Q_TXT) {
		rc = qs[0].rc;
		goto found;
	}
	timeout = qs[0].state == Q_TIMEOUT;
	failed = qs[0].state == Q_FAIL;
	if (qs[0].state == Q_NONE && qs[0].ttl < *ttl)
		*ttl = qs[0].ttl;
	goto out;

found:
	*ttl = rc == 0 ? qs[i].ttl : PROXY_DNS_NEGATIVE_TTL_MAX;
	if (rc == 0) {
		memcpy(id, qs[i].id, strlen(qs[i].id) + 1);
		*port = qs[i].port;
		if (*ttl > PROXY_DNS_POSITIVE_TTL_MAX)
			*ttl = PROXY_DNS_POSITIVE_TTL_MAX;
	}
out:
	if (rc == -ENOENT && timeout)
		rc = -ETIMEDOUT;
	else if (rc == -ENOENT && failed)
		rc = -EAGAIN;
	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		*ttl = PROXY_DNS_FAILURE_TTL;
	for (i = 0; i < d->nservers; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	res_nclose(&st);
	return rc;
}

/* ---- cache ---- */

static struct entry *cache_find(struct proxy_dns *d, const char *key, uint32_t h)
{
	size_t i;

	for (i = 0; i < PROXY_DNS_CACHE_SIZE; i++)
		if (d->cache[i].used && d->cache[i].hash == h && !strcmp(d->cache[i].key, key))
			return &d->cache[i];
	return NULL;
}

/* The entry for @p key: its own, else a free one, else the least recently used. */
static struct entry *cache_slot(struct proxy_dns *d, const char *key, uint32_t h)
{
	struct entry *e = cache_find(d, key, h), *lru = &d->cache[0];
	size_t i;

	if (e)
		return e;
	for (i = 0; i < PROXY_DNS_CACHE_SIZE; i++) {
		if (!d->cache[i].used) {
			d->st.entries++;
			return &d->cache[i];
		}
		if (d->cache[i].tick < lru->tick)
			lru = &d->cache[i];
	}
	return lru;
}

int proxy_dns_lookup(struct proxy_dns *d, const char *sni, char *id, size_t idcap, uint16_t *port)
{
	char host[PROXY_SNI_HOST_MAX + 1], got[PROXY_DNS_ID_MAX + 1] = "";
	uint16_t got_port = 0;
	uint32_t h, ttl = 0;
	uint64_t queries = 0, now;
	struct entry *e;
	int rc;

	if (!sni || !proxy_sni_host_valid(sni, strnlen(sni, PROXY_SNI_HOST_MAX + 1), host))
		return -EINVAL;
	h = fnv1a(host);
	pthread_mutex_lock(&d->mu);
	d->st.lookups++;
	e = cache_find(d, host, h);
	now = now_ms();
	if (e && e->expires_ms > now) {
		e->tick = ++d->tick;
		d->st.cache_hits++;
		rc = e->rc;
		memcpy(got, e->id, sizeof(got));
		got_port = e->port;
		pthread_mutex_unlock(&d->mu);
		goto deliver;
	}
	pthread_mutex_unlock(&d->mu);

	rc = resolve(d, host, got, &got_port, &ttl, &queries);

	pthread_mutex_lock(&d->mu);
	d->st.queries += queries;
	if (rc == -ETIMEDOUT)
		d->st.timeouts++;
	e = cache_slot(d, host, h);
	memset(e, 0, sizeof(*e));
	e->used = true;
	e->hash = h;
	memcpy(e->key, host, strlen(host) + 1);
	e->rc = rc;
	memcpy(e->id, got, sizeof(e->id));
	e->port = got_port;
	e->expires_ms = now_ms() + (uint64_t)ttl * 1000;
	e->tick = ++d->tick;
	pthread_mutex_unlock(&d->mu);
deliver:
	if (rc != 0)
		return rc;
	if (strlen(got) + 1 > idcap)
		return -ENOSPC;
	memcpy(id, got, strlen(got) + 1);
	*port = got_port;
	return 0;
}

void proxy_dns_stats(struct proxy_dns *d, struct proxy_dns_stats *out)
{
	pthread_mutex_lock(&d->mu);
	*out = d->st;
	pthread_mutex_unlock(&d->mu);
}

void proxy_dns_flush(struct proxy_dns *d)
{
	pthread_mutex_lock(&d->mu);
	memset(d->cache, 0, sizeof(d->cache));
	d->st.entries = 0;
	pthread_mutex_unlock(&d->mu);
}
