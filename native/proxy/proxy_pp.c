/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_pp: PROXY protocol v1/v2 parser and builders (haproxy's proxy-protocol.txt). The v1
 * parser reads the line token by token up to the CR (or the end of what was peeked, where a
 * valid prefix means NEED_MORE); the v2 parser checks the fixed part before waiting for the
 * address block, then walks the TLVs. Only inet_pton/inet_ntop from libc: no I/O, no allocation.
 */
#include "proxy/proxy_pp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#define V1_MIN	      15 /* "PROXY UNKNOWN\r\n" */
#define V1_IP4_MAX    15
#define V1_IP6_MAX    45
#define V1_PORT_MAX   5
#define V2_CMD_LOCAL  0x0
#define V2_CMD_PROXY  0x1
#define V2_FAM_UNSPEC 0x0
#define V2_FAM_INET   0x1
#define V2_FAM_INET6  0x2
#define V2_TR_UNSPEC  0x0
#define V2_TR_STREAM  0x1
#define V2_INET_LEN   12
#define V2_INET6_LEN  36
#define V2_TLV_HDR    3

static const uint8_t v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
				    0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
static const char v1_sig[] = "PROXY ";

static enum proxy_pp_result fail(struct proxy_pp_header *out, const char *field)
{
	out->error = field;
	return PROXY_PP_MALFORMED;
}

static enum proxy_pp_result need_more(struct proxy_pp_header *out, size_t need)
{
	out->need = need;
	return PROXY_PP_NEED_MORE;
}

/* ---- v1 ---- */

enum v1_class { V1_IP4, V1_IP6, V1_PORT, V1_PROTO };

static bool v1_char_ok(enum v1_class cls, uint8_t ch)
{
	bool digit = ch >= '0' && ch <= '9';

	switch (cls) {
	case V1_IP4:
		return digit || ch == '.';
	case V1_IP6:
		return digit || ch == '.' || ch == ':' || (ch >= 'a' && ch <= 'f') ||
		       (ch >= 'A' && ch <= 'F');
	case V1_PORT:
		return digit;
	case V1_PROTO:
		return ch >= 'A' && ch <= 'Z' ? true : digit;
	}
	return false;
}

struct v1cur {
	const uint8_t *b;
	size_t pos, eol; /* eol: index of the CR, or of the end of the peeked bytes */
	bool complete;	 /* a CRLF was found at eol */
};

/*
 * One token of class @p cls, at most @p max bytes, ended by a single space (or by the CR when
 * @p last). Returns 1 with [*s, *e), 0 when the peeked bytes end inside a valid prefix, -1 when
 * malformed.
 */
static int v1_token(struct v1cur *c, enum v1_class cls, size_t max, bool last, size_t *s, size_t *e)
{
	size_t start = c->pos;

	while (c->pos < c->eol && c->b[c->pos] != ' ') {
		if (!v1_char_ok(cls, c->b[c->pos]) || c->pos - start >= max)
			return -1;
		c->pos++;
	}
	if (c->pos == c->eol) {
		if (!c->complete)
			return 0;
		if (!last)
			return -1;
	} else if (last) {
		return -1; /* a space after the last token */
	}
	if (c->pos == start)
		return -1;
	*s = start;
	*e = c->pos;
	if (!last)
		c->pos++;
	return 1;
}

/* Decimal 0..max without leading zeros (except "0"). */
static bool dec_strict(const uint8_t *p, size_t n, unsigned max, unsigned *v)
{
	unsigned x = 0;
	size_t i;

	if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
		return false;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		x = x * 10 + (unsigned)(p[i] - '0');
	}
	if (x > max)
		return false;
	*v = x;
	return true;
}

/* Four decimal octets 0..255 without leading zeros (no octal ambiguity). */
static bool ip4_strict(const uint8_t *p, size_t n, struct in_addr *a)
{
	uint8_t o[4];
	size_t i = 0, k;

	for (k = 0; k < 4; k++) {
		size_t start = i;
		unsigned v;

		while (i < n && p[i] != '.')
			i++;
		if (!dec_strict(p + start, i - start, 255, &v))
			return false;
		o[k] = (uint8_t)v;
		if (k < 3) {
			if (i == n)
				return false;
			i++;
		}
	}
	if (i != n)
		return false;
	memcpy(&a->s_addr, o, 4);
	return true;
}

static bool ip6_strict(const uint8_t *p, size_t n, struct in6_addr *a)
{
	char tmp[V1_IP6_MAX + 1];

	if (n > V1_IP6_MAX)
		return false;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, a) == 1;
}

static bool v1_addr(int family, const uint8_t *p, size_t n, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		return ip4_strict(p, n, &sin->sin_addr);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	return ip6_strict(p, n, &sin6->sin6_addr);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* Whether the @p n bytes at @p p start one of the v1 protocol names. */
static bool proto_prefix(const uint8_t *p, size_t n)
{
	static const char *const names[] = { "TCP4", "TCP6", "UNKNOWN" };
	size_t k;

	for (k = 0; k < 3; k++)
		if (n <= strlen(names[k]) && !memcmp(p, names[k], n))
			return true;
	return false;
}

/* The v1 header after "PROXY " (buf starts with a prefix of it; len >= 1). */
static enum proxy_pp_result parse_v1(const uint8_t *buf, size_t len, struct proxy_pp_header *out)
{
	size_t lim = len < PROXY_PP_V1_MAX ? len : PROXY_PP_V1_MAX;
	size_t more = len + 1 > V1_MIN ? len + 1 : V1_MIN;
	const uint8_t *cr;
	struct v1cur c = { .b = buf, .pos = sizeof(v1_sig) - 1 };
	size_t s, e, ps[4], pe[4];
	const char *field[4] = { "v1-source-address", "v1-destination-address", "v1-source-port",
				 "v1-destination-port" };
	enum v1_class cls;
	int family, r, k;
	unsigned sport, dport;

	out->version = 1;
	if (len < sizeof(v1_sig) - 1)
		return need_more(out, V1_MIN);
	cr = memchr(buf, '\r', lim);
	if (cr) {
		c.eol = (size_t)(cr - buf);
		if (c.eol + 1 >= PROXY_PP_V1_MAX)
			return fail(out, "v1-too-long");
		if (c.eol + 1 < len && buf[c.eol + 1] != '\n')
			return fail(out, "v1-crlf");
		c.complete = c.eol + 1 < len;
		if (!c.complete)
			more = c.eol + 2 > V1_MIN ? c.eol + 2 : V1_MIN;
	} else {
		if (len >= PROXY_PP_V1_MAX)
			return fail(out, "v1-too-long");
		c.eol = len;
	}

	/* the protocol: TCP4, TCP6 or UNKNOWN (while incomplete, a prefix of one of them) */
	s = c.pos;
	while (c.pos < c.eol && c.b[c.pos] != ' ') {
		if (!v1_char_ok(V1_PROTO, buf[c.pos]) || c.pos - s >= 7)
			return fail(out, "v1-protocol");
		c.pos++;
	}
	e = c.pos;
	if (e == c.eol && !c.complete) {
		if (!proto_prefix(buf + s, e - s))
			return fail(out, "v1-protocol");
		return need_more(out, more);
	}
	if (e - s == 7 && !memcmp(buf + s, "UNKNOWN", 7)) {
		/* "PROXY UNKNOWN[ <ignored>]\r\n": the rest is the sender's business, on one line
		 */
		if (memchr(buf + e, '\n', c.eol - e))
			return fail(out, "v1-unknown");
		if (!c.complete)
			return need_more(out, more);
		memset(&out->src, 0, sizeof(out->src));
		memset(&out->dst, 0, sizeof(out->dst));
		out->local = true;
		out->family = AF_UNSPEC;
		out->header_bytes = c.eol + 2;
		return PROXY_PP_OK;
	}
	if (e == c.eol) /* complete: only UNKNOWN may end the line */
		return fail(out, "v1-protocol");
	c.pos++; /* the space */
	if (e - s == 4 && !memcmp(buf + s, "TCP4", 4))
		family = AF_INET;
	else if (e - s == 4 && !memcmp(buf + s, "TCP6", 4))
		family = AF_INET6;
	else
		return fail(out, "v1-protocol");

	cls = family == AF_INET ? V1_IP4 : V1_IP6;
	for (k = 0; k < 4; k++) {
		r = v1_token(&c, k < 2 ? cls : V1_PORT,
			     k < 2 ? (family == AF_INET ? V1_IP4_MAX : V1_IP6_MAX) : V1_PORT_MAX,
			     k == 3, &ps[k], &pe[k]);
		if (r < 0)
			return fail(out, field[k]);
		if (r == 0)
			return need_more(out, more);
	}
	if (!v1_addr(family, buf + ps[0], pe[0] - ps[0], &out->src))
		return fail(out, field[0]);
	if (!v1_addr(family, buf + ps[1], pe[1] - ps[1], &out->dst))
		return fail(out, field[1]);
	if (!dec_strict(buf + ps[2], pe[2] - ps[2], 65535, &sport))
		return fail(out, field[2]);
	if (!dec_strict(buf + ps[3], pe[3] - ps[3], 65535, &dport))
		return fail(out, field[3]);
	set_port(&out->src, (uint16_t)sport);
	set_port(&out->dst, (uint16_t)dport);
	out->family = family;
	out->header_bytes = c.eol + 2;
	return PROXY_PP_OK;
}

/* ---- v2 ---- */

static enum proxy_pp_result parse_v2(const uint8_t *buf, size_t len, struct proxy_pp_header *out)
{
	unsigned cmd, fam, tr;
	size_t plen, total, off, need_addr = 0;

	out->version = 2;
	if (len >= 13) {
		if (buf[12] >> 4 != 2)
			return fail(out, "v2-version");
		cmd = buf[12] & 0xf;
		if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
			return fail(out, "v2-command");
	}
	if (len >= 14 && (buf[12] & 0xf) == V2_CMD_PROXY) {
		fam = buf[13] >> 4;
		tr = buf[13] & 0xf;
		if (fam != V2_FAM_UNSPEC && fam != V2_FAM_INET && fam != V2_FAM_INET6)
			return fail(out, "v2-family");
		if (tr != V2_TR_STREAM && !(fam == V2_FAM_UNSPEC && tr == V2_TR_UNSPEC))
			return fail(out, "v2-transport");
	}
	if (len < PROXY_PP_V2_HDR)
		return need_more(out, PROXY_PP_V2_HDR);
	plen = (size_t)buf[14] << 8 | buf[15];
	total = PROXY_PP_V2_HDR + plen;
	if (total > PROXY_PP_MAX_BYTES)
		return fail(out, "v2-length");
	cmd = buf[12] & 0xf;
	fam = buf[13] >> 4;
	if (cmd == V2_CMD_PROXY)
		need_addr = fam == V2_FAM_INET	  ? V2_INET_LEN
			    : fam == V2_FAM_INET6 ? V2_INET6_LEN
						  : 0;
	if (plen < need_addr)
		return fail(out, "v2-length");
	if (len < total)
		return need_more(out, total);

	if (cmd == V2_CMD_LOCAL || fam == V2_FAM_UNSPEC) {
		/* LOCAL: "discard the protocol block including the family"; UNSPEC: use the
		 * connection's own endpoints. Neither carries addresses we would read. */
		out->local = true;
		out->family = AF_UNSPEC;
		out->header_bytes = total;
		return PROXY_PP_OK;
	}

	const uint8_t *a = buf + PROXY_PP_V2_HDR;

	memset(&out->src, 0, sizeof(out->src));
	memset(&out->dst, 0, sizeof(out->dst));
	if (fam == V2_FAM_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&out->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&out->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);
		memcpy(&d->sin_port, a + 10, 2);
		out->family = AF_INET;
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
		out->family = AF_INET6;
	}
	/* TLVs: type, 16-bit length, value; each must end inside the block, and exactly at its end
	 */
	for (off = PROXY_PP_V2_HDR + need_addr; off < total;) {
		size_t vlen;

		if (total - off < V2_TLV_HDR)
			return fail(out, "v2-tlv");
		vlen = (size_t)buf[off + 1] << 8 | buf[off + 2];
		if (total - off - V2_TLV_HDR < vlen)
			return fail(out, "v2-tlv");
		off += V2_TLV_HDR + vlen;
	}
	out->header_bytes = total;
	return PROXY_PP_OK;
}

enum proxy_pp_result proxy_pp_parse(const uint8_t *buf, size_t len, struct proxy_pp_header *out)
{
	size_t n;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return need_more(out, V1_MIN);
	n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
	if (!memcmp(buf, v2_sig, n))
		return parse_v2(buf, len, out);
	n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
	if (!memcmp(buf, v1_sig, n))
		return parse_v1(buf, len, out);
	return PROXY_PP_NOT_PP;
}

/* ---- builders ---- */

/* The pair as one family: both IPv4, or both IPv6 (an IPv4 side v4-mapped). */
static int pair(const struct sockaddr *src, const struct sockaddr *dst, struct sockaddr_in6 *s6,
		struct sockaddr_in6 *d6)
{
	const struct sockaddr *in[2] = { src, dst };
	struct sockaddr_in6 *o[2] = { s6, d6 };
	int k;

	if ((src->sa_family != AF_INET && src->sa_family != AF_INET6) ||
	    (dst->sa_family != AF_INET && dst->sa_family != AF_INET6))
		return -1;
	if (src->sa_family == AF_INET && dst->sa_family == AF_INET)
		return AF_INET;
	for (k = 0; k < 2; k++) {
		memset(o[k], 0, sizeof(*o[k]));
		o[k]->sin6_family = AF_INET6;
		if (in[k]->sa_family == AF_INET6) {
			const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)in[k];

			o[k]->sin6_addr = x->sin6_addr;
			o[k]->sin6_port = x->sin6_port;
		} else {
			const struct sockaddr_in *x = (const struct sockaddr_in *)in[k];

			o[k]->sin6_addr.s6_addr[10] = 0xff;
			o[k]->sin6_addr.s6_addr[11] = 0xff;
			memcpy(&o[k]->sin6_addr.s6_addr[12], &x->sin_addr, 4);
			o[k]->sin6_port = x->sin_port;
		}
	}
	return AF_INET6;
}

static ssize_t too_small(void)
{
	errno = ENOSPC;
	return -1;
}

static ssize_t bad_family(void)
{
	errno = EAFNOSUPPORT;
	return -1;
}

ssize_t proxy_pp_build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
			  size_t cap)
{
	struct sockaddr_in6 s6, d6;
	size_t plen = 0;
	int fam = AF_UNSPEC;

	if (src && dst) {
		fam = pair(src, dst, &s6, &d6);
		if (fam < 0)
			return bad_family();
		plen = fam == AF_INET ? V2_INET_LEN : V2_INET6_LEN;
	}
	if (cap < PROXY_PP_V2_HDR + plen)
		return too_small();
	memcpy(out, v2_sig, sizeof(v2_sig));
	out[12] = (uint8_t)(0x20 | (fam == AF_UNSPEC ? V2_CMD_LOCAL : V2_CMD_PROXY));
	out[13] = fam == AF_INET    ? (V2_FAM_INET << 4 | V2_TR_STREAM)
		  : fam == AF_INET6 ? (V2_FAM_INET6 << 4 | V2_TR_STREAM)
				    : 0;
	out[14] = (uint8_t)(plen >> 8);
	out[15] = (uint8_t)plen;
	if (fam == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)src;
		const struct sockaddr_in *d = (const struct sockaddr_in *)dst;

		memcpy(out + 16, &s->sin_addr, 4);
		memcpy(out + 20, &d->sin_addr, 4);
		memcpy(out + 24, &s->sin_port, 2);
		memcpy(out + 26, &d->sin_port, 2);
	} else if (fam == AF_INET6) {
		memcpy(out + 16, &s6.sin6_addr, 16);
		memcpy(out + 32, &d6.sin6_addr, 16);
		memcpy(out + 48, &s6.sin6_port, 2);
		memcpy(out + 50, &d6.sin6_port, 2);
	}
	return (ssize_t)(PROXY_PP_V2_HDR + plen);
}

static size_t put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return n;
}

static size_t put_port(char *p, uint16_t port)
{
	char tmp[5];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + port % 10);
		port /= 10;
	} while (port);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

ssize_t proxy_pp_build_v1(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
			  size_t cap)
{
	char line[PROXY_PP_BUILD_MAX], sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	struct sockaddr_in6 s6, d6;
	uint16_t sp, dp;
	size_t n = 0;
	int fam;

	if (!src || !dst) {
		n = put_str(line, "PROXY UNKNOWN\r\n");
	} else {
		fam = pair(src, dst, &s6, &d6);
		if (fam < 0)
			return bad_family();
		if (fam == AF_INET) {
			const struct sockaddr_in *s = (const struct sockaddr_in *)src;
			const struct sockaddr_in *d = (const struct sockaddr_in *)dst;

			inet_ntop(AF_INET, &s->sin_addr, sa, sizeof(sa));
			inet_ntop(AF_INET, &d->sin_addr, da, sizeof(da));
			sp = ntohs(s->sin_port);
			dp = ntohs(d->sin_port);
			n = put_str(line, "PROXY TCP4 ");
		} else {
			inet_ntop(AF_INET6, &s6.sin6_addr, sa, sizeof(sa));
			inet_ntop(AF_INET6, &d6.sin6_addr, da, sizeof(da));
			sp = ntohs(s6.sin6_port);
			dp = ntohs(d6.sin6_port);
			n = put_str(line, "PROXY TCP6 ");
		}
		n += put_str(line + n, sa);
		line[n++] = ' ';
		n += put_str(line + n, da);
		line[n++] = ' ';
		n += put_port(line + n, sp);
		line[n++] = ' ';
		n += put_port(line + n, dp);
		line[n++] = '\r';
		line[n++] = '\n';
	}
	if (cap < n)
		return too_small();
	memcpy(out, line, n);
	return (ssize_t)n;
}

const char *proxy_pp_result_name(enum proxy_pp_result r)
{
	switch (r) {
	case PROXY_PP_OK:
		return "ok";
	case PROXY_PP_NEED_MORE:
		return "need-more";
	case PROXY_PP_MALFORMED:
		return "malformed";
	case PROXY_PP_NOT_PP:
		return "not-pp";
	}
	return "unknown";
}
