/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wg UAPI: the strict `get` answer parser, the validating `set` request builder, value
 * parsers (allowed IPs, endpoints, interface names) and the blocking socket exchange.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "wg/wg_internal.h"

const char *wg_code_of(int e)
{
	switch (e) {
	case EINVAL:
		return "EINVAL";
	case EPROTO:
		return "EPROTO";
	case E2BIG:
		return "E2BIG";
	case ENOENT:
		return "ENOENT";
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case EACCES:
	case EPERM:
		return "EPERM";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case ENOMEM:
		return "ENOMEM";
	case EADDRINUSE:
		return "EADDRINUSE";
	case ENOANO:
		return "EUNKNOWN";
	default:
		return "EIO";
	}
}

int wg_fail(struct wg_error *err, int e, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		snprintf(err->code, sizeof(err->code), "%s", wg_code_of(e));
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return -e;
}

/* ---- values ---- */

/* Strict unsigned decimal: 1..20 digits, no sign, no spaces, <= @max. */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int wg_allowed_ip_parse(const char *s, size_t len, struct wg_allowed_ip *out)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = s ? memchr(s, '/', len) : NULL;
	struct wg_allowed_ip ip = { 0 };
	uint64_t cidr;

	if (!slash || slash == s || (size_t)(slash - s) >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	if (inet_pton(AF_INET, addr, ip.addr) == 1)
		ip.family = AF_INET;
	else if (inet_pton(AF_INET6, addr, ip.addr) == 1)
		ip.family = AF_INET6;
	else
		return -EINVAL;
	if (parse_u64(slash + 1, len - (size_t)(slash + 1 - s), ip.family == AF_INET ? 32 : 128,
		      &cidr))
		return -EINVAL;
	ip.cidr = (uint8_t)cidr;
	*out = ip;
	return 0;
}

int wg_allowed_ip_format(const struct wg_allowed_ip *ip, char *buf, size_t n)
{
	char addr[INET6_ADDRSTRLEN];

	if (ip->family != AF_INET && ip->family != AF_INET6)
		return -EINVAL;
	if (ip->cidr > (ip->family == AF_INET ? 32 : 128))
		return -EINVAL;
	if (!inet_ntop(ip->family, ip->addr, addr, sizeof(addr)))
		return -EINVAL;
	int w = snprintf(buf, n, "%s/%u", addr, ip->cidr);
	return w < 0 || (size_t)w >= n ? -EINVAL : 0;
}

int wg_endpoint_check(const char *s, size_t len)
{
	char addr[INET6_ADDRSTRLEN];
	uint8_t bin[16];
	const char *colon;
	uint64_t port;
	int family = AF_INET;

	if (!s || len == 0 || len >= WG_ENDPOINT_MAX)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (!close || close + 1 >= s + len || close[1] != ':')
			return -EINVAL;
		colon = close + 1;
		s++;
		len--;
		family = AF_INET6;
		if ((size_t)(close - s) >= sizeof(addr))
			return -EINVAL;
		memcpy(addr, s, (size_t)(close - s));
		addr[close - s] = '\0';
	} else {
		colon = memchr(s, ':', len);
		if (!colon || (size_t)(colon - s) >= sizeof(addr))
			return -EINVAL;
		memcpy(addr, s, (size_t)(colon - s));
		addr[colon - s] = '\0';
	}
	if (inet_pton(family, addr, bin) != 1)
		return -EINVAL;
	if (parse_u64(colon + 1, (size_t)(s + len - colon - 1), 65535, &port) || port == 0)
		return -EINVAL;
	return 0;
}

int wg_socket_path(const char *dir, const char *ifname, char *buf, size_t n, struct wg_error *err)
{
	size_t len = ifname ? strlen(ifname) : 0;

	if (len == 0 || len > 15 || !strcmp(ifname, ".") || !strcmp(ifname, ".."))
		return wg_fail(err, EINVAL, "bad interface name");
	for (size_t i = 0; i < len; i++) {
		char c = ifname[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("_.=+-", c)))
			return wg_fail(err, EINVAL, "bad interface name");
	}
	int w = snprintf(buf, n, "%s/%s.sock", dir ? dir : WG_SOCKET_DIR, ifname);
	if (w < 0 || (size_t)w >= n)
		return wg_fail(err, EINVAL, "socket path too long");
	return 0;
}

/* ---- device errno ---- */

/* The error an answered errno=N maps to (N is usually negative: -EINVAL). */
static int device_errno(const char *v, size_t len, struct wg_error *err)
{
	bool neg = len > 0 && v[0] == '-';
	uint64_t n;

	if (parse_u64(v + neg, len - neg, 4095, &n))
		return wg_fail(err, EPROTO, "malformed answer: bad errno value");
	if (n == 0)
		return 0;
	switch (n) {
	case EINVAL:
	case EIO:
	case EPROTO:
	case EADDRINUSE:
	case ENOANO:
		return wg_fail(err, (int)n, "device: errno=%s%u", neg ? "-" : "", (unsigned)n);
	default:
		/* an errno we do not know: reported, never mistaken for success */
		if (err) {
			snprintf(err->code, sizeof(err->code), "EREMOTEIO");
			snprintf(err->msg, sizeof(err->msg), "device: unknown errno=%s%u",
				 neg ? "-" : "", (unsigned)n);
		}
		return -EREMOTEIO;
	}
}

/* ---- the get parser ---- */

void wg_device_free(struct wg_device *dev)
{
	if (!dev)
		return;
	for (size_t i = 0; i < dev->n_peers; i++)
		free(dev->peers[i].allowed_ips);
	free(dev->peers);
	memset(dev, 0, sizeof(*dev));
}

enum seen {
	SEEN_PRIVATE_KEY = 1 << 0,
	SEEN_LISTEN_PORT = 1 << 1,
	SEEN_FWMARK = 1 << 2,
	/* per peer */
	SEEN_PSK = 1 << 3,
	SEEN_PROTO = 1 << 4,
	SEEN_ENDPOINT = 1 << 5,
	SEEN_HS_SEC = 1 << 6,
	SEEN_HS_NSEC = 1 << 7,
	SEEN_RX = 1 << 8,
	SEEN_TX = 1 << 9,
	SEEN_KEEPALIVE = 1 << 10,
};

static bool key_is(const char *k, size_t klen, const char *name)
{
	return strlen(name) == klen && !memcmp(k, name, klen);
}

static int once(unsigned *seen, unsigned bit, const char *k, struct wg_error *err)
{
	if (*seen & bit)
		return wg_fail(err, EPROTO, "malformed answer: duplicate %s", k);
	*seen |= bit;
	return 0;
}

static int add_peer(struct wg_device *dev, const uint8_t key[WG_KEY_LEN], struct wg_error *err)
{
	if (dev->n_peers >= WG_MAX_PEERS)
		return wg_fail(err, E2BIG, "answer has more than %d peers", WG_MAX_PEERS);
	struct wg_peer *p = realloc(dev->peers, (dev->n_peers + 1) * sizeof(*p));
	if (!p)
		return wg_fail(err, ENOMEM, "out of memory");
	dev->peers = p;
	p = &dev->peers[dev->n_peers++];
	memset(p, 0, sizeof(*p));
	memcpy(p->public_key, key, WG_KEY_LEN);
	return 0;
}

static int add_allowed_ip(struct wg_peer *p, const struct wg_allowed_ip *ip, struct wg_error *err)
{
	if (p->n_allowed_ips >= WG_MAX_ALLOWED_IPS)
		return wg_fail(err, E2BIG, "a peer has more than %d allowed IPs",
			       WG_MAX_ALLOWED_IPS);
	/* grow geometrically: capacity is the next power of two */
	size_t n = p->n_allowed_ips;
	if ((n & (n - 1)) == 0) {
		struct wg_allowed_ip *a = realloc(p->allowed_ips, (n ? 2 * n : 1) * sizeof(*a));
		if (!a)
			return wg_fail(err, ENOMEM, "out of memory");
		p->allowed_ips = a;
	}
	p->allowed_ips[p->n_allowed_ips++] = *ip;
	return 0;
}

#define BAD(what) wg_fail(err, EPROTO, "malformed answer: bad %s", what)

/* One key=value line of a get answer (not errno). */
static int get_line(struct wg_device *dev, unsigned *dseen, unsigned *pseen, const char *k,
		    size_t klen, const char *v, size_t vlen, struct wg_error *err)
{
	struct wg_peer *p = dev->n_peers ? &dev->peers[dev->n_peers - 1] : NULL;
	uint8_t key[WG_KEY_LEN];
	uint64_t n;
	int rc;

	if (key_is(k, klen, "public_key")) {
		if (wg_key_from_hex(v, vlen, key))
			return BAD("public_key");
		*pseen = 0;
		return add_peer(dev, key, err);
	}
	if (!p) { /* device section */
		if (key_is(k, klen, "private_key")) {
			if ((rc = once(dseen, SEEN_PRIVATE_KEY, "private_key", err)))
				return rc;
			if (wg_key_from_hex(v, vlen, dev->private_key))
				return BAD("private_key");
			dev->has_private_key = true;
			return 0;
		}
		if (key_is(k, klen, "listen_port")) {
			if ((rc = once(dseen, SEEN_LISTEN_PORT, "listen_port", err)))
				return rc;
			if (parse_u64(v, vlen, 65535, &n))
				return BAD("listen_port");
			dev->listen_port = (uint16_t)n;
			return 0;
		}
		if (key_is(k, klen, "fwmark")) {
			if ((rc = once(dseen, SEEN_FWMARK, "fwmark", err)))
				return rc;
			if (parse_u64(v, vlen, UINT32_MAX, &n))
				return BAD("fwmark");
			dev->fwmark = (uint32_t)n;
			return 0;
		}
		return wg_fail(err, EPROTO, "malformed answer: unknown device key '%.*s'",
			       (int)(klen > 32 ? 32 : klen), k);
	}
	if (key_is(k, klen, "preshared_key")) {
		if ((rc = once(pseen, SEEN_PSK, "preshared_key", err)))
			return rc;
		if (wg_key_from_hex(v, vlen, p->preshared_key))
			return BAD("preshared_key");
		static const uint8_t zero[WG_KEY_LEN];
		p->has_preshared_key = memcmp(p->preshared_key, zero, WG_KEY_LEN) != 0;
		return 0;
	}
	if (key_is(k, klen, "protocol_version")) {
		if ((rc = once(pseen, SEEN_PROTO, "protocol_version", err)))
			return rc;
		if (parse_u64(v, vlen, 1, &n) || n != 1)
			return BAD("protocol_version");
		p->protocol_version = 1;
		return 0;
	}
	if (key_is(k, klen, "endpoint")) {
		if ((rc = once(pseen, SEEN_ENDPOINT, "endpoint", err)))
			return rc;
		if (wg_endpoint_check(v, vlen))
			return BAD("endpoint");
		memcpy(p->endpoint, v, vlen);
		p->endpoint[vlen] = '\0';
		return 0;
	}
	if (key_is(k, klen, "last_handshake_time_sec")) {
		if ((rc = once(pseen, SEEN_HS_SEC, "last_handshake_time_sec", err)))
			return rc;
		if (parse_u64(v, vlen, INT64_MAX, &p->last_handshake_time_sec))
			return BAD("last_handshake_time_sec");
		return 0;
	}
	if (key_is(k, klen, "last_handshake_time_nsec")) {
		if ((rc = once(pseen, SEEN_HS_NSEC, "last_handshake_time_nsec", err)))
			return rc;
		if (parse_u64(v, vlen, 999999999, &n))
			return BAD("last_handshake_time_nsec");
		p->last_handshake_time_nsec = (uint32_t)n;
		return 0;
	}
	if (key_is(k, klen, "rx_bytes")) {
		if ((rc = once(pseen, SEEN_RX, "rx_bytes", err)))
			return rc;
		return parse_u64(v, vlen, UINT64_MAX, &p->rx_bytes) ? BAD("rx_bytes") : 0;
	}
	if (key_is(k, klen, "tx_bytes")) {
		if ((rc = once(pseen, SEEN_TX, "tx_bytes", err)))
			return rc;
		return parse_u64(v, vlen, UINT64_MAX, &p->tx_bytes) ? BAD("tx_bytes") : 0;
	}
	if (key_is(k, klen, "persistent_keepalive_interval")) {
		if ((rc = once(pseen, SEEN_KEEPALIVE, "persistent_keepalive_interval", err)))
			return rc;
		if (parse_u64(v, vlen, 65535, &n))
			return BAD("persistent_keepalive_interval");
		p->persistent_keepalive_interval = (uint16_t)n;
		return 0;
	}
	if (key_is(k, klen, "allowed_ip")) {
		struct wg_allowed_ip ip;
		if (wg_allowed_ip_parse(v, vlen, &ip))
			return BAD("allowed_ip");
		return add_allowed_ip(p, &ip, err);
	}
	if (key_is(k, klen, "private_key") || key_is(k, klen, "listen_port") ||
	    key_is(k, klen, "fwmark"))
		return wg_fail(err, EPROTO, "malformed answer: device key after a peer");
	return wg_fail(err, EPROTO, "malformed answer: unknown peer key '%.*s'",
		       (int)(klen > 32 ? 32 : klen), k);
}

int wg_parse_get(const char *buf, size_t len, struct wg_device *dev, struct wg_error *err)
{
	unsigned dseen = 0, pseen = 0;
	size_t pos = 0;
	int rc;

	memset(dev, 0, sizeof(*dev));
	if (len > WG_MAX_ANSWER)
		return wg_fail(err, E2BIG, "answer over %u bytes", WG_MAX_ANSWER);
	for (;;) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', len - pos);
		if (!nl) {
			rc = wg_fail(err, EPROTO, "malformed answer: truncated");
			goto fail;
		}
		size_t llen = (size_t)(nl - line);
		pos += llen + 1;
		if (llen > WG_MAX_LINE) {
			rc = wg_fail(err, EPROTO, "malformed answer: line over %d bytes",
				     WG_MAX_LINE);
			goto fail;
		}
		if (llen == 0) {
			rc = wg_fail(err, EPROTO, "malformed answer: no errno");
			goto fail;
		}
		const char *eq = memchr(line, '=', llen);
		if (!eq || eq == line || memchr(line, '\0', llen)) {
			rc = wg_fail(err, EPROTO, "malformed answer: not a key=value line");
			goto fail;
		}
		size_t klen = (size_t)(eq - line), vlen = llen - klen - 1;
		if (key_is(line, klen, "errno")) {
			/* the last line: exactly one blank line may follow, then nothing */
			if (len - pos != 1 || buf[pos] != '\n') {
				rc = wg_fail(err, EPROTO,
					     len - pos == 0 ? "malformed answer: truncated"
							    : "malformed answer: data after errno");
				goto fail;
			}
			rc = device_errno(eq + 1, vlen, err);
			if (rc)
				goto fail;
			break;
		}
		rc = get_line(dev, &dseen, &pseen, line, klen, eq + 1, vlen, err);
		if (rc)
			goto fail;
	}
	if (dev->has_private_key) {
		rc = wg_key_public(dev->private_key, dev->public_key, err);
		if (rc)
			goto fail;
	}
	return 0;
fail:
	wg_device_free(dev);
	return rc;
}

int wg_parse_set_answer(const char *buf, size_t len, struct wg_error *err)
{
	if (len < 9 || memcmp(buf, "errno=", 6) || buf[len - 1] != '\n' || buf[len - 2] != '\n')
		return wg_fail(err, EPROTO, "malformed answer: expected errno=N and a blank line");
	return device_errno(buf + 6, len - 8, err);
}

/* ---- the set builder ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;

	if (b->oom)
		return;
	for (;;) {
		va_start(ap, fmt);
		int w = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (w < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)w < b->cap - b->len) {
			b->len += (size_t)w;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)w + 1;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

static int check_peer(const struct wg_peer_op *op, size_t i, struct wg_error *err)
{
	char tmp[64];

	if (op->remove && (op->update_only || op->set_preshared_key || op->endpoint ||
			   op->persistent_keepalive_interval >= 0 || op->replace_allowed_ips ||
			   op->n_allowed_ips))
		return wg_fail(err, EINVAL, "peer %zu: remove takes no other setting", i);
	if (op->endpoint && wg_endpoint_check(op->endpoint, strlen(op->endpoint)))
		return wg_fail(err, EINVAL, "peer %zu: bad endpoint (numeric ip:port)", i);
	if (op->persistent_keepalive_interval < -1 || op->persistent_keepalive_interval > 65535)
		return wg_fail(err, EINVAL, "peer %zu: bad persistent_keepalive_interval", i);
	if (op->n_allowed_ips > WG_MAX_ALLOWED_IPS || (op->n_allowed_ips && !op->allowed_ips))
		return wg_fail(err, EINVAL, "peer %zu: bad allowed IP list", i);
	for (size_t j = 0; j < op->n_allowed_ips; j++)
		if (wg_allowed_ip_format(&op->allowed_ips[j], tmp, sizeof(tmp)))
			return wg_fail(err, EINVAL, "peer %zu: bad allowed IP %zu", i, j);
	return 0;
}

int wg_build_set(const struct wg_set_req *req, char **out, size_t *out_len, struct wg_error *err)
{
	char hex[WG_KEY_HEX_LEN + 1], ip[64];
	struct sbuf b = { 0 };
	int rc;

	*out = NULL;
	*out_len = 0;
	if (req->listen_port < -1 || req->listen_port > 65535)
		return wg_fail(err, EINVAL, "bad listen_port");
	if (req->fwmark < -1 || req->fwmark > (int64_t)UINT32_MAX)
		return wg_fail(err, EINVAL, "bad fwmark");
	if (req->n_peers > WG_MAX_PEERS || (req->n_peers && !req->peers))
		return wg_fail(err, EINVAL, "bad peer list");
	for (size_t i = 0; i < req->n_peers; i++)
		if ((rc = check_peer(&req->peers[i], i, err)))
			return rc;

	b.cap = 256;
	b.p = malloc(b.cap);
	if (!b.p)
		return wg_fail(err, ENOMEM, "out of memory");
	sb_add(&b, "set=1\n");
	if (req->set_private_key) {
		wg_key_to_hex(req->private_key, hex);
		sb_add(&b, "private_key=%s\n", hex);
	}
	if (req->listen_port >= 0)
		sb_add(&b, "listen_port=%d\n", req->listen_port);
	if (req->fwmark >= 0)
		sb_add(&b, "fwmark=%lld\n", (long long)req->fwmark);
	if (req->replace_peers)
		sb_add(&b, "replace_peers=true\n");
	for (size_t i = 0; i < req->n_peers; i++) {
		const struct wg_peer_op *op = &req->peers[i];
		wg_key_to_hex(op->public_key, hex);
		sb_add(&b, "public_key=%s\n", hex);
		if (op->remove) {
			sb_add(&b, "remove=true\n");
			continue;
		}
		if (op->update_only)
			sb_add(&b, "update_only=true\n");
		if (op->set_preshared_key) {
			wg_key_to_hex(op->preshared_key, hex);
			sb_add(&b, "preshared_key=%s\n", hex);
		}
		if (op->endpoint)
			sb_add(&b, "endpoint=%s\n", op->endpoint);
		if (op->persistent_keepalive_interval >= 0)
			sb_add(&b, "persistent_keepalive_interval=%d\n",
			       op->persistent_keepalive_interval);
		if (op->replace_allowed_ips)
			sb_add(&b, "replace_allowed_ips=true\n");
		for (size_t j = 0; j < op->n_allowed_ips; j++) {
			wg_allowed_ip_format(&op->allowed_ips[j], ip, sizeof(ip));
			sb_add(&b, "allowed_ip=%s\n", ip);
		}
	}
	sb_add(&b, "\n");
	if (b.oom) {
		free(b.p);
		return wg_fail(err, ENOMEM, "out of memory");
	}
	*out = b.p;
	*out_len = b.len;
	return 0;
}

/* ---- socket I/O ---- */

int wg_connect(const char *path, int timeout_ms, struct wg_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv;
	int fd, e;

	if (timeout_ms <= 0)
		timeout_ms = 5000;
	if (!path || strlen(path) >= sizeof(sa.sun_path))
		return wg_fail(err, EINVAL, "bad socket path");
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return wg_fail(err, errno, "socket: %s", strerror(errno));
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))) {
		e = errno;
		close(fd);
		return wg_fail(err, e, "setsockopt: %s", strerror(e));
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return wg_fail(err, e, "connect %s: %s", path, strerror(e));
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t n, struct wg_error *err)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return wg_fail(err, errno == EAGAIN ? ETIMEDOUT : errno, "send: %s",
				       errno == EAGAIN ? "timed out" : strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read until the answer's blank line ("\n\n"), at most WG_MAX_ANSWER bytes. */
static int recv_answer(int fd, char **out, size_t *out_len, struct wg_error *err)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);

	if (!buf)
		return wg_fail(err, ENOMEM, "out of memory");
	for (;;) {
		if (len == cap) {
			if (cap >= WG_MAX_ANSWER) {
				free(buf);
				return wg_fail(err, E2BIG, "answer over %u bytes", WG_MAX_ANSWER);
			}
			char *p = realloc(buf, cap * 2);
			if (!p) {
				free(buf);
				return wg_fail(err, ENOMEM, "out of memory");
			}
			buf = p;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + len, cap - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			return wg_fail(err, e == EAGAIN ? ETIMEDOUT : e, "recv: %s",
				       e == EAGAIN ? "timed out" : strerror(e));
		}
		if (r == 0) {
			free(buf);
			return wg_fail(err, EPROTO, "malformed answer: truncated (%zu bytes)", len);
		}
		size_t from = len ? len - 1 : 0;
		len += (size_t)r;
		/* the first blank line ends the answer: a line start followed by '\n' */
		for (size_t i = from; i < len; i++) {
			if (buf[i] == '\n' && (i == 0 || buf[i - 1] == '\n')) {
				if (i + 1 != len) {
					free(buf);
					return wg_fail(err, EPROTO,
						       "malformed answer: data after the end");
				}
				*out = buf;
				*out_len = len;
				return 0;
			}
		}
	}
}

static int exchange(const char *path, int timeout_ms, const char *req, size_t req_len, char **ans,
		    size_t *ans_len, struct wg_error *err)
{
	int fd = wg_connect(path, timeout_ms, err);
	int rc;

	if (fd < 0)
		return fd;
	rc = send_all(fd, req, req_len, err);
	if (!rc)
		rc = recv_answer(fd, ans, ans_len, err);
	close(fd);
	return rc;
}

int wg_get(const char *path, int timeout_ms, struct wg_device *dev, struct wg_error *err)
{
	char *ans;
	size_t len;
	int rc;

	memset(dev, 0, sizeof(*dev));
	rc = exchange(path, timeout_ms, "get=1\n\n", 7, &ans, &len, err);
	if (rc)
		return rc;
	rc = wg_parse_get(ans, len, dev, err);
	free(ans);
	return rc;
}

int wg_set(const char *path, int timeout_ms, const struct wg_set_req *req, struct wg_error *err)
{
	char *msg, *ans;
	size_t msg_len, len;
	int rc;

	rc = wg_build_set(req, &msg, &msg_len, err);
	if (rc)
		return rc;
	rc = exchange(path, timeout_ms, msg, msg_len, &ans, &len, err);
	/* the request may carry a private key */
	explicit_bzero(msg, msg_len);
	free(msg);
	if (rc)
		return rc;
	rc = wg_parse_set_answer(ans, len, err);
	free(ans);
	return rc;
}
