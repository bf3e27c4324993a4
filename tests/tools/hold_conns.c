/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hold_conns: opens many TCP (optionally TLS) connections to one address, holds them open and
 * idle, then closes them all — the load of the gateway's "10k idle connections" benchmark and of
 * its fd-leak test. One thread, non-blocking sockets on epoll, so 10k connections cost the client
 * little. It prints `ready N` (N connections established, handshakes done) once all are up or
 * failed, waits for its standard input to close (or --hold-ms), closes everything and prints
 * `closed N`. Exit status 0 when every connection came up, 1 otherwise.
 *
 * usage: hold_conns HOST PORT COUNT [--tls SNI] [--hold-ms MS] [--timeout-ms MS] [--rate N]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum state { CONNECTING, HANDSHAKING, UP, FAILED };

struct conn {
	int fd;
	SSL *ssl;
	enum state st;
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: hold_conns HOST PORT COUNT [--tls SNI] [--hold-ms MS] "
		"[--timeout-ms MS]\n"
		"Opens COUNT connections (TLS with SNI when --tls), prints 'ready N', holds\n"
		"them until stdin closes (or MS elapse), closes them, prints 'closed N'.\n");
}

/* Drives one connection's handshake; returns its new state. */
static enum state step(struct conn *c, int ep, SSL_CTX *ctx, const char *sni)
{
	if (c->st == CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
			return FAILED;
		if (!ctx)
			return UP;
		c->ssl = SSL_new(ctx);
		if (!c->ssl)
			return FAILED;
		SSL_set_fd(c->ssl, c->fd);
		SSL_set_tlsext_host_name(c->ssl, sni);
		SSL_set_connect_state(c->ssl);
		c->st = HANDSHAKING;
	}
	int r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return UP;
	int e = SSL_get_error(c->ssl, r);
	struct epoll_event ev = { .data.ptr = c };
	if (e == SSL_ERROR_WANT_READ)
		ev.events = EPOLLIN;
	else if (e == SSL_ERROR_WANT_WRITE)
		ev.events = EPOLLOUT;
	else
		return FAILED;
	epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
	return HANDSHAKING;
}

/* Whether a held connection that became readable was closed by the server (an EOF, an error),
 * rather than sent something: TLS 1.3 servers send session tickets after the handshake. */
static bool is_dropped(struct conn *c, uint32_t events)
{
	if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		return true;
	char buf[4096];
	if (!c->ssl) {
		ssize_t r = read(c->fd, buf, sizeof(buf));
		return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
	}
	for (;;) {
		int r = SSL_read(c->ssl, buf, sizeof(buf));
		if (r > 0)
			continue;
		int e = SSL_get_error(c->ssl, r);
		return e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
	}
}

int main(int argc, char **argv)
{
	if (argc < 4 || !strcmp(argv[1], "--help")) {
		usage();
		return argc < 4 ? 2 : 0;
	}
	const char *host = argv[1];
	int port = atoi(argv[2]);
	long count = atol(argv[3]);
	const char *sni = NULL;
	long hold_ms = -1, timeout_ms = 30000;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--tls") && i + 1 < argc)
			sni = argv[++i];
		else if (!strcmp(argv[i], "--hold-ms") && i + 1 < argc)
			hold_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--timeout-ms") && i + 1 < argc)
			timeout_ms = atol(argv[++i]);
		else {
			usage();
			return 2;
		}
	}
	if (port <= 0 || port > 65535 || count <= 0 || count > 1000000) {
		usage();
		return 2;
	}
	struct rlimit rl = { (rlim_t)count + 64, (rlim_t)count + 64 };
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		getrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)count + 16) {
			fprintf(stderr, "hold_conns: RLIMIT_NOFILE %llu is too low for %ld\n",
				(unsigned long long)rl.rlim_cur, count);
			return 2;
		}
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "hold_conns: HOST must be an IPv4 address\n");
		return 2;
	}
	SSL_CTX *ctx = NULL;
	if (sni) {
		ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	}
	struct conn *cs = calloc((size_t)count, sizeof(*cs));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (!cs || ep < 0)
		return 2;
	long pending = 0, up = 0, failed = 0;
	/* Connect in waves so the listener's backlog is not overrun. */
	long next = 0;
	long long deadline = now_ms() + timeout_ms;
	struct epoll_event evs[256];
	while ((next < count || pending > 0) && now_ms() < deadline) {
		while (next < count && pending < 512) {
			struct conn *c = &cs[next++];
			c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (c->fd < 0) {
				c->st = FAILED;
				failed++;
				continue;
			}
			int one = 1;
			setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
			    errno != EINPROGRESS) {
				c->st = FAILED;
				failed++;
				continue;
			}
			c->st = CONNECTING;
			struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = c };
			epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
			pending++;
		}
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->st != CONNECTING && c->st != HANDSHAKING)
				continue;
			enum state st = step(c, ep, ctx, sni);
			if (st == UP || st == FAILED) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				pending--;
				if (st == UP)
					up++;
				else
					failed++;
			}
			c->st = st;
		}
	}
	failed += pending; /* timed out */
	printf("ready %ld\n", up);
	if (failed)
		printf("failed %ld\n", failed);
	fflush(stdout);
	/* Hold: until stdin closes, or for hold_ms. Every connection is watched: one the server
	 * closes while held counts as dropped. */
	long long until = hold_ms >= 0 ? now_ms() + hold_ms : -1;
	for (long i = 0; i < count; i++) {
		if (cs[i].st == UP) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP,
						  .data.ptr = &cs[i] };
			epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
		}
	}
	long dropped = 0;
	for (;;) {
		struct pollfd p = { .fd = 0, .events = POLLIN };
		int wait = 100;
		if (until >= 0 && now_ms() >= until)
			break;
		if (hold_ms < 0 && poll(&p, 1, 0) > 0) {
			char b[64];
			if (read(0, b, sizeof(b)) <= 0)
				break;
		}
		int n = epoll_wait(ep, evs, 256, wait);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!is_dropped(c, evs[i].events))
				continue;
			epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
			dropped++;
		}
	}
	long closed = 0;
	for (long i = 0; i < count; i++) {
		if (cs[i].ssl) {
			SSL_set_quiet_shutdown(cs[i].ssl, 1);
			SSL_free(cs[i].ssl);
		}
		if (cs[i].st != FAILED || cs[i].fd > 0) {
			if (cs[i].fd > 0 && close(cs[i].fd) == 0)
				closed++;
		}
	}
	printf("closed %ld\n", closed);
	if (dropped)
		printf("dropped %ld\n", dropped);
	SSL_CTX_free(ctx);
	free(cs);
	return failed || dropped ? 1 : 0;
}
