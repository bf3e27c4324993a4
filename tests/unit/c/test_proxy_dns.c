/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/proxy custom-domain TXT resolver against a real DNS server: the test starts Debian's
 * dnsmasq on a free loopback port (no upstream, no hosts, `--local` for the test zone so unknown
 * names are NXDOMAIN, `--txt-record` for the rows below) and checks found / compat / wildcard /
 * not found / malformed records, the cache (hits, negative answers, LRU eviction at 256, expiry
 * with a 1 s TTL, answers kept after the server is stopped), a server that never answers (a bound
 * UDP socket nobody reads: ETIMEDOUT), failover from a dead server to a live one, concurrent
 * lookups from threads, and bad configurations. Skipped without dnsmasq.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/proxy_dns.h"

#define P "_dstack-app-address."

static const char *const records[] = {
	P "app.example.test,0123abcd:8443",
	"_tapp-address.old.example.test,legacy1:443",
	P "both.example.test,newid:1",
	"_tapp-address.both.example.test,oldid:2",
	"_dstack-app-address-wildcard.wild.example.test,wildid:8080",
	P "multi.example.test,m1:80,junk",
	P "bad1.example.test,abc",
	P "bad2.example.test,abc:0",
	P "bad3.example.test,:80",
	P "bad4.example.test,a-b:80",
	P "bad5.example.test,abc:080",
	P "bad6.example.test,abc:65536",
	P "bad7.example.test,abc:80:1",
	P "bad8.example.test,abc:8x",
	"_custom.app.example.test,custom9:9",
};

struct dnsmasq {
	pid_t pid;
	uint16_t port;
	char server[32];
};

struct env {
	const char *bin;
	struct dnsmasq main;
	int dead_fd; /* a UDP socket nobody reads */
	char dead[32];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int udp_socket(uint16_t *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sin.sin_port);
	return fd;
}

static struct proxy_dns *resolver(const char *server, bool compat, double timeout)
{
	const char *servers[1] = { server };
	struct proxy_dns_config cfg = { .prefix = NULL,
					.compat = compat,
					.servers = servers,
					.nservers = 1,
					.timeout = timeout };

	return proxy_dns_new(&cfg);
}

/* Start dnsmasq with the records, TTL @p ttl; wait until it answers. */
/* Whether TCP @p port of 127.0.0.1 is free too: dnsmasq binds both, and a UDP port the kernel
 * handed out may be taken in TCP (by an ephemeral port of another test, say). */
static bool tcp_port_free(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static int start_dnsmasq_once(const char *bin, int ttl, struct dnsmasq *m);

/* Start dnsmasq on a free port; a few tries, as the port may be taken between the check and
 * dnsmasq's bind. */
static int start_dnsmasq(const char *bin, int ttl, struct dnsmasq *m)
{
	for (int i = 0; i < 5; i++)
		if (start_dnsmasq_once(bin, ttl, m) == 0)
			return 0;
	return -1;
}

static int start_dnsmasq_once(const char *bin, int ttl, struct dnsmasq *m)
{
	char *argv[64], port_arg[32], ttl_arg[32], rec[sizeof(records) / sizeof(records[0])][128];
	size_t i, n = 0;
	uint16_t port;
	int fd = udp_socket(&port), k;

	if (fd < 0)
		return -1;
	close(fd); /* dnsmasq binds it right away; loopback only */
	if (!tcp_port_free(port))
		return -1;
	snprintf(port_arg, sizeof(port_arg), "--port=%u", port);
	snprintf(ttl_arg, sizeof(ttl_arg), "--local-ttl=%d", ttl);
	argv[n++] = "dnsmasq";
	argv[n++] = "--keep-in-foreground";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--pid-file=";
	argv[n++] = "--user=root";
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--local=/example.test/";
	argv[n++] = port_arg;
	argv[n++] = ttl_arg;
	for (i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
		snprintf(rec[i], sizeof(rec[i]), "--txt-record=%s", records[i]);
		argv[n++] = rec[i];
	}
	argv[n] = NULL;
	m->port = port;
	snprintf(m->server, sizeof(m->server), "127.0.0.1:%u", port);
	m->pid = fork();
	if (m->pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		execv(bin, argv);
		_exit(127);
	}
	if (m->pid < 0)
		return -1;
	for (k = 0; k < 100; k++) {
		struct proxy_dns *d = resolver(m->server, false, 0.1);
		char id[64];
		uint16_t p;
		int rc = d ? proxy_dns_lookup(d, "app.example.test", id, sizeof(id), &p) : -1;
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		proxy_dns_free(d);
		if (rc == 0)
			return 0;
		if (waitpid(m->pid, NULL, WNOHANG) == m->pid) {
			m->pid = -1;
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	return -1;
}

static void stop_dnsmasq(struct dnsmasq *m)
{
	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		waitpid(m->pid, NULL, 0);
		m->pid = -1;
	}
}

static int setup(void **state)
{
	static struct env e;
	static const char *const paths[] = { "/usr/sbin/dnsmasq", "/usr/bin/dnsmasq" };
	uint16_t port;
	size_t i;

	memset(&e, 0, sizeof(e));
	e.main.pid = -1;
	*state = &e;
	for (i = 0; i < 2 && !e.bin; i++)
		if (access(paths[i], X_OK) == 0)
			e.bin = paths[i];
	e.dead_fd = udp_socket(&port);
	if (e.dead_fd < 0)
		return -1;
	snprintf(e.dead, sizeof(e.dead), "127.0.0.1:%u", port);
	if (e.bin && start_dnsmasq(e.bin, 60, &e.main) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	stop_dnsmasq(&e->main);
	close(e->dead_fd);
	return 0;
}

#define NEED_DNSMASQ(e)                 \
	do {                            \
		if ((e)->main.pid <= 0) \
			skip();         \
	} while (0)

static void expect_found(struct proxy_dns *d, const char *sni, const char *id, uint16_t port)
{
	char got[PROXY_DNS_ID_MAX + 1] = "";
	uint16_t p = 0;
	int rc = proxy_dns_lookup(d, sni, got, sizeof(got), &p);

	if (rc != 0)
		fail_msg("%s: %s", sni, strerror(-rc));
	assert_string_equal(got, id);
	assert_int_equal(p, port);
}

static int lookup_rc(struct proxy_dns *d, const char *sni)
{
	char got[PROXY_DNS_ID_MAX + 1];
	uint16_t p;

	return proxy_dns_lookup(d, sni, got, sizeof(got), &p);
}

static void test_found_and_cached(void **state)
{
	struct env *e = *state;
	struct proxy_dns_stats a, b;
	struct proxy_dns *d;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, true, 2);
	assert_non_null(d);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	proxy_dns_stats(d, &a);
	assert_int_equal(a.lookups, 1);
	assert_int_equal(a.cache_hits, 0);
	assert_true(a.queries >= 1);
	/* again, in upper case: from the cache, nothing sent */
	expect_found(d, "APP.Example.test", "0123abcd", 8443);
	proxy_dns_stats(d, &b);
	assert_int_equal(b.cache_hits, 1);
	assert_int_equal(b.queries, a.queries);
	assert_int_equal(b.entries, 1);
	/* first string of several; the prefixed name wins over the compat one */
	expect_found(d, "multi.example.test", "m1", 80);
	expect_found(d, "both.example.test", "newid", 1);
	/* after a flush it is asked again */
	proxy_dns_flush(d);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	proxy_dns_stats(d, &a);
	assert_true(a.queries > b.queries);
	proxy_dns_free(d);

	/* another prefix */
	const char *servers[1] = { e->main.server };
	struct proxy_dns_config cfg = {
		.prefix = "_custom", .servers = servers, .nservers = 1, .timeout = 2
	};

	d = proxy_dns_new(&cfg);
	assert_non_null(d);
	expect_found(d, "app.example.test", "custom9", 9);
	assert_int_equal(lookup_rc(d, "old.example.test"), -ENOENT);
	proxy_dns_free(d);
}

static void test_compat(void **state)
{
	struct env *e = *state;
	struct proxy_dns *d;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, true, 2);
	expect_found(d, "old.example.test", "legacy1", 443);
	proxy_dns_free(d);
	d = resolver(e->main.server, false, 2);
	assert_int_equal(lookup_rc(d, "old.example.test"), -ENOENT);
	expect_found(d, "both.example.test", "newid", 1);
	proxy_dns_free(d);
}

static void test_wildcard(void **state)
{
	struct env *e = *state;
	struct proxy_dns *d;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, true, 2);
	expect_found(d, "anything.wild.example.test", "wildid", 8080);
	expect_found(d, "x-1.wild.example.test", "wildid", 8080);
	/* one level only: the wildcard of wild.example.test is asked at example.test */
	assert_int_equal(lookup_rc(d, "a.b.wild.example.test"), -ENOENT);
	assert_int_equal(lookup_rc(d, "wild.example.test"), -ENOENT);
	proxy_dns_free(d);
}

static void test_not_found_negative_cache(void **state)
{
	struct env *e = *state;
	struct proxy_dns_stats a, b;
	struct proxy_dns *d;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, true, 2);
	assert_int_equal(lookup_rc(d, "nothere.example.test"), -ENOENT);
	proxy_dns_stats(d, &a);
	/* prefixed + compat, then the wildcard: three questions, each answered once */
	assert_int_equal(a.queries, 3);
	assert_int_equal(lookup_rc(d, "nothere.example.test"), -ENOENT);
	proxy_dns_stats(d, &b);
	assert_int_equal(b.queries, 3);
	assert_int_equal(b.cache_hits, 1);
	/* a name outside every zone dnsmasq knows: REFUSED, so a server failure (not cached long)
	 */
	assert_int_equal(lookup_rc(d, "elsewhere.invalid"), -EAGAIN);
	proxy_dns_free(d);
}

static void test_malformed(void **state)
{
	struct env *e = *state;
	static const char *const bad[] = { "bad1", "bad2", "bad3", "bad4",
					   "bad5", "bad6", "bad7", "bad8" };
	struct proxy_dns_stats a, b;
	struct proxy_dns *d;
	char sni[64];
	size_t i;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, false, 2);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(sni, sizeof(sni), "%s.example.test", bad[i]);
		if (lookup_rc(d, sni) != -EPROTO)
			fail_msg("%s accepted", sni);
	}
	proxy_dns_stats(d, &a);
	snprintf(sni, sizeof(sni), "%s.example.test", bad[0]);
	assert_int_equal(lookup_rc(d, sni), -EPROTO);
	proxy_dns_stats(d, &b);
	assert_int_equal(b.queries, a.queries); /* negative: cached */
	proxy_dns_free(d);
}

static void test_timeout(void **state)
{
	struct env *e = *state;
	struct proxy_dns_stats st;
	struct proxy_dns *d = resolver(e->dead, true, 0.3);
	double t0 = now_s(), dt;

	assert_non_null(d);
	assert_int_equal(lookup_rc(d, "app.example.test"), -ETIMEDOUT);
	dt = now_s() - t0;
	assert_true(dt >= 0.28);
	assert_true(dt < 2.0);
	proxy_dns_stats(d, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.queries, 4); /* two names, each sent twice (two passes) */
	/* remembered for a moment: no second wait */
	t0 = now_s();
	assert_int_equal(lookup_rc(d, "app.example.test"), -ETIMEDOUT);
	assert_true(now_s() - t0 < 0.1);
	proxy_dns_free(d);
}

/* A dead first server, a live second one: answered after the first slot. */
static void test_failover(void **state)
{
	struct env *e = *state;
	const char *servers[2] = { e->dead, e->main.server };
	struct proxy_dns_config cfg = { .servers = servers, .nservers = 2, .timeout = 2 };
	struct proxy_dns *d;
	double t0;

	NEED_DNSMASQ(e);
	d = proxy_dns_new(&cfg);
	assert_non_null(d);
	t0 = now_s();
	expect_found(d, "app.example.test", "0123abcd", 8443);
	assert_true(now_s() - t0 < 1.5);
	proxy_dns_free(d);
}

static void test_lru_eviction(void **state)
{
	struct env *e = *state;
	struct proxy_dns_stats a, b;
	struct proxy_dns *d;
	char sni[64];
	int i;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, false, 2);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	for (i = 0; i < PROXY_DNS_CACHE_SIZE + 20; i++) {
		snprintf(sni, sizeof(sni), "n%d.example.test", i);
		assert_int_equal(lookup_rc(d, sni), -ENOENT);
		if (i == 100) /* keep app recent: it survives */
			expect_found(d, "app.example.test", "0123abcd", 8443);
	}
	proxy_dns_stats(d, &a);
	assert_int_equal(a.entries, PROXY_DNS_CACHE_SIZE);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	assert_int_equal(lookup_rc(d, "n275.example.test"), -ENOENT);
	proxy_dns_stats(d, &b);
	assert_int_equal(b.queries, a.queries); /* both cached */
	assert_int_equal(lookup_rc(d, "n0.example.test"), -ENOENT);
	proxy_dns_stats(d, &a);
	assert_true(a.queries > b.queries); /* the oldest was evicted */
	proxy_dns_free(d);
}

/* The record's TTL (1 s here) bounds a positive answer; stopping the server shows the cache. */
static void test_ttl_and_server_gone(void **state)
{
	struct env *e = *state;
	struct proxy_dns_stats a, b;
	struct dnsmasq m = { .pid = -1 };
	struct proxy_dns *d, *live;
	struct timespec ts = { 1, 300 * 1000 * 1000 };

	NEED_DNSMASQ(e);
	assert_int_equal(start_dnsmasq(e->bin, 1, &m), 0);
	d = resolver(m.server, false, 1);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	proxy_dns_stats(d, &a);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	proxy_dns_stats(d, &b);
	assert_int_equal(b.queries, a.queries);
	nanosleep(&ts, NULL);
	expect_found(d, "app.example.test", "0123abcd", 8443);
	proxy_dns_stats(d, &b);
	assert_true(b.queries > a.queries);
	/* stop it: a cached (TTL 60 on the main server) answer stays, new names fail */
	live = resolver(e->main.server, false, 0.5);
	expect_found(live, "app.example.test", "0123abcd", 8443);
	stop_dnsmasq(&e->main);
	expect_found(live, "app.example.test", "0123abcd", 8443);
	int rc = lookup_rc(live, "multi.example.test");

	/* ICMP port unreachable (EAGAIN) or silence (ETIMEDOUT) */
	assert_true(rc == -EAGAIN || rc == -ETIMEDOUT);
	proxy_dns_free(live);
	stop_dnsmasq(&m);
	proxy_dns_free(d);
	/* the remaining tests need it again */
	assert_int_equal(start_dnsmasq(e->bin, 60, &e->main), 0);
}

struct worker {
	struct proxy_dns *d;
	int bad;
};

static void *hammer(void *arg)
{
	struct worker *w = arg;
	static const char *const names[] = { "app.example.test", "old.example.test",
					     "a.wild.example.test", "nothere.example.test",
					     "bad1.example.test" };
	static const int want[] = { 0, 0, 0, -ENOENT, -EPROTO };
	int i;

	for (i = 0; i < 300; i++) {
		char id[PROXY_DNS_ID_MAX + 1];
		uint16_t p;
		size_t k = (size_t)i % 5;
		int rc = proxy_dns_lookup(w->d, names[k], id, sizeof(id), &p);

		if (rc != want[k])
			w->bad++;
		if (i % 50 == 0)
			proxy_dns_flush(w->d);
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct env *e = *state;
	struct worker w[6];
	pthread_t t[6];
	struct proxy_dns *d;
	int i;

	NEED_DNSMASQ(e);
	d = resolver(e->main.server, true, 2);
	for (i = 0; i < 6; i++) {
		w[i].d = d;
		w[i].bad = 0;
		assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
	}
	for (i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	proxy_dns_free(d);
}

static void test_bad_input(void **state)
{
	struct env *e = *state;
	static const char *const bad_servers[] = { "1.2.3.4:0",	    "[::1",	"[::1]x",
						   "host:53",	    "1.2.3.4:", "1.2.3.4:053",
						   "1.2.3.4:65536", "",		"[]:53" };
	static const char *const good_servers[] = { "127.0.0.1", "[::1]:5353", "::1", "[::1]",
						    "10.0.0.1:53" };
	struct proxy_dns_config cfg = { .nservers = 1 };
	struct proxy_dns *d;
	char id[4];
	uint16_t p;
	size_t i;

	for (i = 0; i < sizeof(bad_servers) / sizeof(bad_servers[0]); i++) {
		cfg.servers = &bad_servers[i];
		errno = 0;
		if (proxy_dns_new(&cfg) != NULL || errno != EINVAL)
			fail_msg("server '%s' accepted", bad_servers[i]);
	}
	for (i = 0; i < sizeof(good_servers) / sizeof(good_servers[0]); i++) {
		cfg.servers = &good_servers[i];
		d = proxy_dns_new(&cfg);
		if (!d)
			fail_msg("server '%s' refused", good_servers[i]);
		proxy_dns_free(d);
	}
	cfg.servers = &good_servers[0];
	cfg.prefix = "a.b";
	assert_null(proxy_dns_new(&cfg));
	cfg.prefix = "";
	assert_null(proxy_dns_new(&cfg));
	cfg.prefix = NULL;
	/* the system's servers: a resolver, or ENOENT without any */
	cfg.nservers = 0;
	cfg.servers = NULL;
	d = proxy_dns_new(&cfg);
	assert_true(d != NULL || errno == ENOENT);
	proxy_dns_free(d);

	d = resolver(e->dead, false, 0.2);
	assert_int_equal(proxy_dns_lookup(d, "", id, sizeof(id), &p), -EINVAL);
	assert_int_equal(proxy_dns_lookup(d, "a..b", id, sizeof(id), &p), -EINVAL);
	assert_int_equal(proxy_dns_lookup(d, "10.0.0.1", id, sizeof(id), &p), -EINVAL);
	assert_int_equal(proxy_dns_lookup(d, "x_y.test", id, sizeof(id), &p), -EINVAL);
	proxy_dns_free(d);
	if (e->main.pid > 0) {
		d = resolver(e->main.server, false, 2);
		assert_int_equal(proxy_dns_lookup(d, "app.example.test", id, sizeof(id), &p),
				 -ENOSPC);
		proxy_dns_free(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found_and_cached),
		cmocka_unit_test(test_compat),
		cmocka_unit_test(test_wildcard),
		cmocka_unit_test(test_not_found_negative_cache),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_failover),
		cmocka_unit_test(test_lru_eviction),
		cmocka_unit_test(test_ttl_and_server_gone),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_bad_input),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
