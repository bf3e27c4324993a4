/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libwebsockets' socket calls, as the HTTP server core sees them. The executable defines recv(),
 * send(), shutdown(), listen(), SSL_read(), SSL_write() and SSL_shutdown(); lws calls them through
 * its PLT, so they bind here (ELF interposition) and reach the real functions unchanged after a
 * little bookkeeping per server connection, on the loop thread only (other threads pass straight
 * through). lws 4.1 gives no other way to know:
 *
 *  - whether a request was parsed from lws's own buffer of bytes read past the previous request
 *    (pipelined): it never reads a socket while that buffer holds bytes, so "no read since the
 *    previous request ended" says so. A request with a body parsed from there spins the loop
 *    forever in lws (rt_http_server.c refuses it);
 *  - that lws is dropping a connection on a request it could not parse (a header section larger
 *    than its header space, a NUL in the path, a malformed request line): lws closes without a
 *    status. The last call on such a connection was a read, and it is shut down next: answer
 *    400 (431 when lws logged that the headers did not fit) just before.
 *
 *  - which socket a new vhost listens on, and which connections are a server's: lws 4.1 closes
 *    a destroyed vhost's listener and idle connections only in a check it runs every 30 s
 *    (rt_http_listen.c closes them at once).
 *
 * A connection closed while the client may still be sending is drained for a while after lws
 * closed it (lingering close): closing a socket with unread bytes resets it, and the client may
 * lose the answer it was sent.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_http_internal.h"

/** What is known of a server connection, by its file descriptor. */
struct sock_state {
	ino_t ino;	/**< the socket's inode: the fd number may be reused */
	uint64_t reads; /**< successful reads by lws */
	uint64_t mark;	/**< reads when the last request's input ended */
	bool server;	/**< a server connection not closed yet */
	bool last_read; /**< nothing was written since the last read */
	bool upgraded;	/**< websocket or raw: no HTTP requests any more */
	bool lingering; /**< drained after close (rt_http_sock_linger()) */
};

/** A connection drained after lws closed it: a duplicate of its descriptor. */
struct lingerer {
	struct lingerer *next;
	int fd;
	uint64_t deadline_ms;
	size_t drained;
};

static _Thread_local bool on_loop; /* this thread runs lws: keep the books */
static struct sock_state *socks;
static size_t socks_len;
static int pending_status;   /* lws logged why it is about to drop the connection it parses */
static int last_listen = -1; /* the last socket listen() succeeded on, on the loop thread */

static uv_loop_t *loop;
static uv_timer_t linger_timer;
static bool linger_timer_ready;
static struct lingerer *lingerers;
static struct rt_runtime *hooked_rt;

static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static int (*real_shutdown)(int, int);
static int (*real_listen)(int, int);
static int (*real_ssl_read)(SSL *, void *, int);
static int (*real_ssl_write)(SSL *, const void *, int);
static int (*real_ssl_shutdown)(SSL *);

/* Resolve the real functions before main (lazily too, should a constructor run first). */
__attribute__((constructor)) static void resolve_real(void)
{
	*(void **)&real_recv = dlsym(RTLD_NEXT, "recv");
	*(void **)&real_send = dlsym(RTLD_NEXT, "send");
	*(void **)&real_shutdown = dlsym(RTLD_NEXT, "shutdown");
	*(void **)&real_listen = dlsym(RTLD_NEXT, "listen");
	*(void **)&real_ssl_read = dlsym(RTLD_NEXT, "SSL_read");
	*(void **)&real_ssl_write = dlsym(RTLD_NEXT, "SSL_write");
	*(void **)&real_ssl_shutdown = dlsym(RTLD_NEXT, "SSL_shutdown");
}

#define REAL(name, sym)                                                 \
	do {                                                            \
		if (!real_##name)                                       \
			*(void **)&real_##name = dlsym(RTLD_NEXT, sym); \
	} while (0)

/* The state of @p fd, growing the table if @p grow (NULL off the loop thread, or none). */
static struct sock_state *sock(int fd, bool grow)
{
	if (!on_loop || fd < 0)
		return NULL;
	if ((size_t)fd >= socks_len) {
		if (!grow)
			return NULL;
		size_t len = socks_len ? socks_len : 256;
		while (len <= (size_t)fd)
			len *= 2;
		struct sock_state *t = realloc(socks, len * sizeof(*t));
		if (!t)
			return NULL;
		memset(t + socks_len, 0, (len - socks_len) * sizeof(*t));
		socks = t;
		socks_len = len;
	}
	return &socks[fd];
}

/* The state of @p fd if it is still the server connection it was recorded for. */
static struct sock_state *server_sock(int fd)
{
	struct sock_state *s = sock(fd, false);
	struct stat st;
	if (!s || !s->server)
		return NULL;
	if (fstat(fd, &st) != 0 || st.st_ino != s->ino) {
		s->server = false; // closed behind our back, the number reused
		return NULL;
	}
	return s;
}

static void note_read(int fd)
{
	struct sock_state *s = sock(fd, false);
	if (!on_loop)
		return;
	pending_status = 0; // lws moved on to another read
	if (s) {
		s->reads++;
		s->last_read = true;
	}
}

static void note_write(int fd)
{
	struct sock_state *s = sock(fd, false);
	if (s)
		s->last_read = false;
}

/* Write a small JSON error straight to the socket lws is about to shut down. */
static void write_status(int fd, SSL *ssl, int status)
{
	const char *reason = status == 431 ? "Request Header Fields Too Large" : "Bad Request";
	const char *msg = status == 431 ? "request header fields too large" : "bad request";
	char body[96], buf[320];
	int blen = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", msg);
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
			 "content-length: %d\r\nconnection: close\r\n\r\n%s",
			 status, reason, blen, body);
	if (ssl)
		real_ssl_write(ssl, buf, n);
	else
		real_send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* lws shuts @p fd down: answer the request it dropped unparsed, if that is why. */
static void before_shutdown(int fd, SSL *ssl)
{
	struct sock_state *s = server_sock(fd);
	int status = pending_status ? pending_status : 400;
	pending_status = 0;
	if (!s)
		return;
	s->server = false; // closing: once is enough
	if (s->upgraded || !s->last_read || s->reads <= s->mark)
		return;
	write_status(fd, ssl, status);
	rt_http_sock_linger(fd);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	REAL(recv, "recv");
	ssize_t n = real_recv(fd, buf, len, flags);
	if (n > 0 && !(flags & MSG_PEEK))
		note_read(fd);
	return n;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	REAL(send, "send");
	ssize_t n = real_send(fd, buf, len, flags);
	if (n > 0)
		note_write(fd);
	return n;
}

int shutdown(int fd, int how)
{
	REAL(shutdown, "shutdown");
	REAL(send, "send");
	before_shutdown(fd, NULL);
	return real_shutdown(fd, how);
}

int listen(int fd, int backlog)
{
	REAL(listen, "listen");
	int rc = real_listen(fd, backlog);
	if (rc == 0 && on_loop)
		last_listen = fd;
	return rc;
}

int SSL_read(SSL *ssl, void *buf, int num)
{
	REAL(ssl_read, "SSL_read");
	int n = real_ssl_read(ssl, buf, num);
	if (n > 0)
		note_read(SSL_get_fd(ssl));
	return n;
}

int SSL_write(SSL *ssl, const void *buf, int num)
{
	REAL(ssl_write, "SSL_write");
	int n = real_ssl_write(ssl, buf, num);
	if (n > 0)
		note_write(SSL_get_fd(ssl));
	return n;
}

int SSL_shutdown(SSL *ssl)
{
	REAL(ssl_shutdown, "SSL_shutdown");
	REAL(ssl_write, "SSL_write");
	REAL(shutdown, "shutdown");
	int fd = SSL_get_fd(ssl);
	before_shutdown(fd, ssl);
	int n = real_ssl_shutdown(ssl);
	struct sock_state *s = sock(fd, false);
	if (s && s->lingering) {
		s->lingering = false;
		real_shutdown(fd, SHUT_WR); // the drained duplicate keeps the socket open
	}
	return n;
}

void rt_http_sock_listen_begin(void)
{
	last_listen = -1;
}

int rt_http_sock_listen_end(void)
{
	int fd = last_listen;
	last_listen = -1;
	return fd;
}

void rt_http_sock_each_conn(void (*fn)(int fd, void *ud), void *ud)
{
	for (size_t fd = 0; fd < socks_len; fd++)
		if (server_sock((int)fd))
			fn((int)fd, ud);
}

void rt_http_sock_accepted(int fd)
{
	struct sock_state *s = sock(fd, true);
	struct stat st;
	if (!s)
		return;
	memset(s, 0, sizeof(*s));
	if (fstat(fd, &st) == 0) {
		s->ino = st.st_ino;
		s->server = true;
	}
}

/* The state of @p fd, a server connection lws holds now (no reuse check needed). */
static struct sock_state *live_sock(int fd)
{
	struct sock_state *s = sock(fd, false);
	return s && s->server ? s : NULL;
}

void rt_http_sock_mark(int fd)
{
	struct sock_state *s = live_sock(fd);
	if (s)
		s->mark = s->reads;
}

bool rt_http_sock_pipelined(int fd)
{
	struct sock_state *s = live_sock(fd);
	return s && s->mark && s->reads == s->mark;
}

void rt_http_sock_upgraded(int fd)
{
	struct sock_state *s = live_sock(fd);
	if (s)
		s->upgraded = true;
}

void rt_http_sock_header_overflow(void)
{
	if (on_loop)
		pending_status = 431;
}

/* ---- lingering close ---- */

#define LINGER_MS	 2000
#define LINGER_TICK_MS	 20
#define LINGER_MAX_DRAIN (4u * 1024 * 1024)

static void linger_tick(uv_timer_t *t)
{
	char buf[16384];
	uint64_t now = uv_now(t->loop);
	REAL(recv, "recv");
	for (struct lingerer **p = &lingerers; *p;) {
		struct lingerer *l = *p;
		ssize_t n;
		while ((n = real_recv(l->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0 &&
		       l->drained < LINGER_MAX_DRAIN)
			l->drained += (size_t)n;
		bool again = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
		if (again && now < l->deadline_ms && l->drained < LINGER_MAX_DRAIN) {
			p = &l->next;
			continue;
		}
		*p = l->next;
		close(l->fd);
		free(l);
	}
	if (!lingerers)
		uv_timer_stop(t);
}

static void linger_shutdown_hook(void *ud, int stage)
{
	(void)ud;
	if (stage != 0)
		return;
	while (lingerers) {
		struct lingerer *l = lingerers;
		lingerers = l->next;
		close(l->fd);
		free(l);
	}
	if (linger_timer_ready) {
		linger_timer_ready = false;
		uv_close((uv_handle_t *)&linger_timer, NULL);
	}
	hooked_rt = NULL;
}

void rt_http_sock_linger(int fd)
{
	struct sock_state *s = sock(fd, false);
	if (!loop || !linger_timer_ready || (s && s->lingering))
		return;
	struct lingerer *l = calloc(1, sizeof(*l));
	if (!l)
		return;
	l->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (l->fd < 0) {
		free(l);
		return;
	}
	if (s)
		s->lingering = true;
	l->deadline_ms = uv_now(loop) + LINGER_MS;
	l->next = lingerers;
	lingerers = l;
	if (!uv_is_active((uv_handle_t *)&linger_timer))
		uv_timer_start(&linger_timer, linger_tick, LINGER_TICK_MS, LINGER_TICK_MS);
}

void rt_http_sock_init(struct rt_runtime *rt)
{
	on_loop = true;
	loop = rt_loop(rt);
	if (hooked_rt == rt)
		return;
	hooked_rt = rt;
	uv_timer_init(loop, &linger_timer);
	uv_unref((uv_handle_t *)&linger_timer); // draining never keeps the process alive
	linger_timer_ready = true;
	rt_on_shutdown(rt, linger_shutdown_hook, NULL);
}
