/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/proxy PROXY protocol against a real peer: the test starts haproxy (Debian's, loopback
 * only) in front of its own listeners with `send-proxy` (v1), `send-proxy-v2` with the crc32c and
 * unique-id TLVs (v2, IPv4 and IPv6) and a health check (v2 LOCAL), connects through it, and
 * parses what haproxy wrote: the addresses must be the test's own client socket and haproxy's
 * frontend, and the bytes after the header the client's payload. Skipped without haproxy.
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
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proxy/proxy_pp.h"

#define IO_TIMEOUT_MS 5000

struct env {
	pid_t haproxy;
	int data_fd, check_fd; /* the "backends" haproxy sends PROXY headers to */
	uint16_t p1, p2, p6;   /* haproxy frontends: send-proxy, send-proxy-v2, v2 over ::1 */
	bool have_v6;
	char dir[256];
};

static int listener(int fam, uint16_t *port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fam == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;

		s->sin_family = AF_INET;
		s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

		s->sin6_family = AF_INET6;
		s->sin6_addr = in6addr_loopback;
		sl = sizeof(*s);
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
		close(fd);
		return -1;
	}
	*port = ntohs(fam == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
				     : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return fd;
}

/* A port free right now (haproxy binds it a moment later; loopback, so a clash is unlikely). */
static uint16_t free_port(int fam)
{
	uint16_t port = 0;
	int fd = listener(fam, &port);

	if (fd >= 0)
		close(fd);
	return fd >= 0 ? port : 0;
}

static int connect_to(int fam, uint16_t port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fam == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;

		s->sin_family = AF_INET;
		s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		s->sin_port = htons(port);
		sl = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;

		s->sin6_family = AF_INET6;
		s->sin6_addr = in6addr_loopback;
		s->sin6_port = htons(port);
		sl = sizeof(*s);
	}
	if (fd >= 0 && connect(fd, (struct sockaddr *)&ss, sl) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

static int accept_timeout(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };

	if (poll(&p, 1, IO_TIMEOUT_MS) != 1)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

static const char *find_haproxy(void)
{
	static const char *const paths[] = { "/usr/sbin/haproxy", "/usr/bin/haproxy",
					     "/usr/local/sbin/haproxy" };
	size_t i;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

static int setup(void **state)
{
	static struct env e;
	const char *bin = find_haproxy(), *tmp = getenv("MOONSTACK_TEST_TMP");
	uint16_t data_port, check_port;
	char cfg[512];
	FILE *f;
	int i, fd;

	memset(&e, 0, sizeof(e));
	e.haproxy = -1;
	*state = &e;
	if (!bin)
		return 0; /* each test skips */
	snprintf(e.dir, sizeof(e.dir), "%s/pp-haproxy-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (tmp && *tmp) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", tmp);
		if (system(cmd) != 0)
			return -1;
	}
	if (!mkdtemp(e.dir))
		return -1;
	e.data_fd = listener(AF_INET, &data_port);
	e.check_fd = listener(AF_INET, &check_port);
	e.p1 = free_port(AF_INET);
	e.p2 = free_port(AF_INET);
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	e.have_v6 = fd >= 0 && (e.p6 = free_port(AF_INET6)) != 0;
	if (fd >= 0)
		close(fd);
	if (e.data_fd < 0 || e.check_fd < 0 || !e.p1 || !e.p2)
		return -1;

	snprintf(cfg, sizeof(cfg), "%s/haproxy.cfg", e.dir);
	f = fopen(cfg, "w");
	if (!f)
		return -1;
	fprintf(f,
		"global\n  maxconn 64\n  nbthread 1\n"
		"defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n"
		"  timeout server 10s\n"
		"frontend f1\n  bind 127.0.0.1:%u\n  default_backend b1\n"
		"frontend f2\n  bind 127.0.0.1:%u\n",
		e.p1, e.p2);
	if (e.have_v6)
		fprintf(f, "  bind [::1]:%u\n", e.p6);
	fprintf(f,
		"  unique-id-format %%{+X}o\\ %%ci:%%cp_%%fi:%%fp_%%Ts\n  default_backend b2\n"
		"backend b1\n  server s 127.0.0.1:%u send-proxy\n"
		"backend b2\n  server s 127.0.0.1:%u send-proxy-v2 proxy-v2-options "
		"crc32c,unique-id\n"
		"backend bc\n  server s 127.0.0.1:%u send-proxy-v2 check inter 200ms\n",
		data_port, data_port, check_port);
	fclose(f);

	e.haproxy = fork();
	if (e.haproxy == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		execl(bin, "haproxy", "-db", "-f", cfg, (char *)NULL);
		_exit(127);
	}
	if (e.haproxy < 0)
		return -1;
	/* ready when both IPv4 frontends accept */
	for (i = 0; i < 200; i++) {
		int a = connect_to(AF_INET, e.p1), b = connect_to(AF_INET, e.p2);
		struct timespec ts = { 0, 50 * 1000 * 1000 };

		if (a >= 0)
			close(a);
		if (b >= 0)
			close(b);
		if (a >= 0 && b >= 0)
			break;
		if (waitpid(e.haproxy, NULL, WNOHANG) == e.haproxy) {
			e.haproxy = -1;
			return -1;
		}
		nanosleep(&ts, NULL);
	}
	if (i == 200)
		return -1;
	/* the readiness probes went through to data_fd: drain them */
	for (;;) {
		struct pollfd p = { .fd = e.data_fd, .events = POLLIN };

		if (poll(&p, 1, 300) != 1)
			break;
		fd = accept4(e.data_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			close(fd);
	}
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	char cmd[300];

	if (e->haproxy > 0) {
		kill(e->haproxy, SIGTERM);
		waitpid(e->haproxy, NULL, 0);
	}
	if (e->data_fd > 0)
		close(e->data_fd);
	if (e->check_fd > 0)
		close(e->check_fd);
	if (e->dir[0] && strstr(e->dir, "pp-haproxy-")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

/* Read from @p fd until the PROXY header and @p want_payload bytes after it are in. */
static size_t read_header(int fd, uint8_t *buf, size_t cap, size_t want_payload,
			  struct proxy_pp_header *h)
{
	size_t len = 0;
	enum proxy_pp_result r = PROXY_PP_NEED_MORE;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		r = proxy_pp_parse(buf, len, h);
		if (r == PROXY_PP_OK && len >= h->header_bytes + want_payload)
			return len;
		if (r == PROXY_PP_MALFORMED || r == PROXY_PP_NOT_PP)
			fail_msg("haproxy's header refused: %s %s", proxy_pp_result_name(r),
				 h->error ? h->error : "");
		if (poll(&p, 1, IO_TIMEOUT_MS) != 1)
			fail_msg("no bytes from haproxy (%zu so far)", len);
		n = recv(fd, buf + len, cap - len, 0);
		if (n <= 0)
			fail_msg("haproxy closed after %zu bytes (%s)", len,
				 proxy_pp_result_name(r));
		len += (size_t)n;
	}
}

static void check_addr(const struct sockaddr_storage *got, const struct sockaddr_storage *want)
{
	assert_int_equal(got->ss_family, want->ss_family);
	if (want->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)got, *b = (const void *)want;

		assert_memory_equal(&a->sin_addr, &b->sin_addr, 4);
		assert_int_equal(ntohs(a->sin_port), ntohs(b->sin_port));
	} else {
		const struct sockaddr_in6 *a = (const void *)got, *b = (const void *)want;

		assert_memory_equal(&a->sin6_addr, &b->sin6_addr, 16);
		assert_int_equal(ntohs(a->sin6_port), ntohs(b->sin6_port));
	}
}

static void through(struct env *e, int fam, uint16_t port, int version)
{
	const char payload[] = "\x16\x03\x01 hello through haproxy";
	struct sockaddr_storage me, front;
	socklen_t sl = sizeof(me);
	struct proxy_pp_header h;
	uint8_t buf[4096];
	size_t len;
	int c, s;

	c = connect_to(fam, port);
	assert_true(c >= 0);
	assert_int_equal(getsockname(c, (struct sockaddr *)&me, &sl), 0);
	sl = sizeof(front);
	assert_int_equal(getpeername(c, (struct sockaddr *)&front, &sl), 0);
	assert_int_equal(send(c, payload, sizeof(payload) - 1, 0), (ssize_t)sizeof(payload) - 1);
	s = accept_timeout(e->data_fd);
	assert_true(s >= 0);
	len = read_header(s, buf, sizeof(buf), sizeof(payload) - 1, &h);
	assert_int_equal(h.version, version);
	assert_false(h.local);
	assert_int_equal(h.family, fam);
	check_addr(&h.src, &me);
	check_addr(&h.dst, &front);
	assert_int_equal(len - h.header_bytes, sizeof(payload) - 1);
	assert_memory_equal(buf + h.header_bytes, payload, sizeof(payload) - 1);
	if (version == 2) /* the crc32c and unique-id TLVs were walked */
		assert_true(h.header_bytes > (fam == AF_INET ? 28u : 52u) + 7 + 3);
	/* haproxy's bytes again through the builder: the same header (v1), or without TLVs (v2) */
	{
		uint8_t again[PROXY_PP_BUILD_MAX];
		ssize_t n = version == 1 ? proxy_pp_build_v1((struct sockaddr *)&me,
							     (struct sockaddr *)&front, again,
							     sizeof(again))
					 : proxy_pp_build_v2((struct sockaddr *)&me,
							     (struct sockaddr *)&front, again,
							     sizeof(again));

		assert_true(n > 0);
		if (version == 1) {
			assert_int_equal((size_t)n, h.header_bytes);
			assert_memory_equal(again, buf, (size_t)n);
		} else {
			assert_memory_equal(again, buf, 14); /* signature, command, family */
			assert_memory_equal(again + 16, buf + 16, (size_t)n - 16);
		}
	}
	close(s);
	close(c);
}

static void test_haproxy_v1(void **state)
{
	struct env *e = *state;

	if (e->haproxy <= 0)
		skip();
	through(e, AF_INET, e->p1, 1);
}

static void test_haproxy_v2(void **state)
{
	struct env *e = *state;

	if (e->haproxy <= 0)
		skip();
	through(e, AF_INET, e->p2, 2);
}

static void test_haproxy_v2_ipv6(void **state)
{
	struct env *e = *state;

	if (e->haproxy <= 0 || !e->have_v6)
		skip();
	through(e, AF_INET6, e->p6, 2);
}

/* haproxy's health check over send-proxy-v2 is a LOCAL header. */
static void test_haproxy_v2_local_check(void **state)
{
	struct env *e = *state;
	struct proxy_pp_header h;
	uint8_t buf[512];
	int s;

	if (e->haproxy <= 0)
		skip();
	s = accept_timeout(e->check_fd);
	assert_true(s >= 0);
	read_header(s, buf, sizeof(buf), 0, &h);
	assert_int_equal(h.version, 2);
	assert_true(h.local);
	assert_int_equal(h.family, AF_UNSPEC);
	close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_haproxy_v1),
		cmocka_unit_test(test_haproxy_v2),
		cmocka_unit_test(test_haproxy_v2_ipv6),
		cmocka_unit_test(test_haproxy_v2_local_check),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
