/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/proxy PROXY protocol v1/v2: the examples of haproxy's proxy-protocol.txt, truncation at
 * every byte (NEED_MORE with a need that is a lower bound of the real length), each field
 * corrupted with its refusal, TLV bounds, what is not a PROXY header, and build -> parse round
 * trips over seeded random addresses for both versions (the real-peer check is
 * test_proxy_pp_haproxy.c).
 */
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
#include <netinet/in.h>

#include <cmocka.h>

#include "proxy/proxy_pp.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"

/* ---- helpers ---- */

static enum proxy_pp_result parse_str(const char *s, struct proxy_pp_header *h)
{
	return proxy_pp_parse((const uint8_t *)s, strlen(s), h);
}

static void check_in4(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	struct in_addr want;

	assert_int_equal(ss->ss_family, AF_INET);
	assert_int_equal(inet_pton(AF_INET, ip, &want), 1);
	assert_memory_equal(&sin->sin_addr, &want, 4);
	assert_int_equal(ntohs(sin->sin_port), port);
}

static void check_in6(const struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
	struct in6_addr want;

	assert_int_equal(ss->ss_family, AF_INET6);
	assert_int_equal(inet_pton(AF_INET6, ip, &want), 1);
	assert_memory_equal(&sin6->sin6_addr, &want, 16);
	assert_int_equal(ntohs(sin6->sin6_port), port);
}

/* Every proper prefix of a valid header asks for more, never past the real end. */
static void check_truncations(const uint8_t *hdr, size_t n)
{
	struct proxy_pp_header h;
	size_t k;

	for (k = 0; k < n; k++) {
		enum proxy_pp_result r = proxy_pp_parse(hdr, k, &h);

		if (r != PROXY_PP_NEED_MORE)
			fail_msg("prefix %zu/%zu: %s (%s)", k, n, proxy_pp_result_name(r),
				 h.error ? h.error : "");
		assert_true(h.need > k);
		assert_true(h.need <= n);
	}
}

/* The header followed by a ClientHello's first bytes: the header alone is consumed. */
static void check_with_payload(const uint8_t *hdr, size_t n)
{
	uint8_t buf[PROXY_PP_MAX_BYTES + 16];
	struct proxy_pp_header h;

	memcpy(buf, hdr, n);
	memcpy(buf + n, "\x16\x03\x01\x00\x10", 5);
	assert_int_equal(proxy_pp_parse(buf, n + 5, &h), PROXY_PP_OK);
	assert_int_equal(h.header_bytes, n);
	check_truncations(hdr, n);
}

/* ---- v1: the spec's examples ---- */

static void test_v1_tcp4(void **state)
{
	const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	struct proxy_pp_header h;

	assert_int_equal(parse_str(s, &h), PROXY_PP_OK);
	assert_int_equal(h.version, 1);
	assert_false(h.local);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.header_bytes, strlen(s));
	check_in4(&h.src, "192.168.0.1", 56324);
	check_in4(&h.dst, "192.168.0.11", 443);
	check_with_payload((const uint8_t *)s, strlen(s));
}

static void test_v1_tcp6(void **state)
{
	const char *s = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 0 65535\r\n";
	struct proxy_pp_header h;

	assert_int_equal(parse_str(s, &h), PROXY_PP_OK);
	assert_int_equal(h.family, AF_INET6);
	check_in6(&h.src, "2001:db8::1", 0);
	check_in6(&h.dst, "::ffff:10.0.0.2", 65535);
	check_with_payload((const uint8_t *)s, strlen(s));
}

/* The spec's worst case, exactly 107 bytes, and UNKNOWN's forms. */
static void test_v1_unknown_and_max(void **state)
{
	const char *worst = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
	char big[160];
	struct proxy_pp_header h;

	assert_int_equal(parse_str("PROXY UNKNOWN\r\n", &h), PROXY_PP_OK);
	assert_true(h.local);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.header_bytes, 15);
	check_with_payload((const uint8_t *)"PROXY UNKNOWN\r\n", 15);

	assert_int_equal(parse_str(worst, &h), PROXY_PP_OK);
	assert_true(h.local);
	check_with_payload((const uint8_t *)worst, strlen(worst));

	/* TCP6 with two full-length literals: 104 bytes */
	snprintf(big, sizeof(big), "PROXY TCP6 %s %s 65535 65535\r\n",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	assert_int_equal(parse_str(big, &h), PROXY_PP_OK);
	check_in6(&h.dst, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	check_with_payload((const uint8_t *)big, strlen(big));

	/* UNKNOWN padded to exactly 107, then 108 */
	memset(big, 'x', sizeof(big));
	memcpy(big, "PROXY UNKNOWN ", 14);
	memcpy(big + 105, "\r\n", 3);
	assert_int_equal(parse_str(big, &h), PROXY_PP_OK);
	assert_int_equal(h.header_bytes, 107);
	check_truncations((const uint8_t *)big, 107);
	memset(big, 'x', sizeof(big));
	memcpy(big, "PROXY UNKNOWN ", 14);
	memcpy(big + 106, "\r\n", 3);
	assert_int_equal(parse_str(big, &h), PROXY_PP_MALFORMED);
	assert_string_equal(h.error, "v1-too-long");
	/* no CR within 107 bytes */
	big[106] = 'x';
	assert_int_equal(proxy_pp_parse((const uint8_t *)big, 107, &h), PROXY_PP_MALFORMED);
	assert_string_equal(h.error, "v1-too-long");
	assert_int_equal(proxy_pp_parse((const uint8_t *)big, 106, &h), PROXY_PP_NEED_MORE);
	assert_int_equal(h.need, 107);
}

struct bad {
	const char *in;
	const char *error;
};

static const struct bad v1_bad[] = {
	{ "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1-protocol" },
	{ "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1-protocol" },
	{ "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "v1-protocol" },
	{ "PROXY TCP4\r\n", "v1-protocol" },
	{ "PROXY \r\n", "v1-protocol" },
	{ "PROXY UNKNOWNX\r\n", "v1-protocol" },
	{ "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1-protocol" },
	{ "PROXY UNKNOWN a\nb\r\n", "v1-unknown" },
	{ "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 .1.2.3 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 1.2.3.4. 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 1111.2.3.4 5.6.7.8 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 ::1 ::1 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.08 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP4 1.2.3.4 5.6.7 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1-source-address" },
	{ "PROXY TCP6 ::1 ::g 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP6 ::1 1:::2 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP6 ::1 fe80::1%eth0 1 2\r\n", "v1-destination-address" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1-source-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "v1-source-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1-source-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n", "v1-source-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1-source-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", "v1-source-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 0443\r\n", "v1-destination-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1-destination-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1-destination-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "v1-destination-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1-destination-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "v1-destination-port" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "v1-crlf" },
	{ "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "v1-crlf" },
};

static void test_v1_corrupt(void **state)
{
	struct proxy_pp_header h;
	size_t i;

	for (i = 0; i < sizeof(v1_bad) / sizeof(v1_bad[0]); i++) {
		enum proxy_pp_result r = parse_str(v1_bad[i].in, &h);

		if (r != PROXY_PP_MALFORMED || strcmp(h.error, v1_bad[i].error) != 0)
			fail_msg("%zu %s: %s %s, want %s", i, v1_bad[i].in, proxy_pp_result_name(r),
				 h.error ? h.error : "-", v1_bad[i].error);
		assert_int_equal(h.version, 1);
	}
}

/* Refused as soon as the prefix is impossible, before the CRLF arrives. */
static void test_v1_early_refusal(void **state)
{
	struct proxy_pp_header h;

	assert_int_equal(parse_str("PROXY TCPX", &h), PROXY_PP_MALFORMED);
	assert_int_equal(parse_str("PROXY TCP4 1.2.x", &h), PROXY_PP_MALFORMED);
	assert_string_equal(h.error, "v1-source-address");
	assert_int_equal(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 8o", &h), PROXY_PP_MALFORMED);
	assert_string_equal(h.error, "v1-source-port");
	assert_int_equal(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 123456", &h), PROXY_PP_MALFORMED);
	assert_int_equal(parse_str("PROXY TCP4 1.2.3.4", &h), PROXY_PP_NEED_MORE);
	assert_int_equal(h.need, strlen("PROXY TCP4 1.2.3.4") + 1);
	assert_int_equal(parse_str("PROXY", &h), PROXY_PP_NEED_MORE);
	assert_int_equal(h.need, 15);
	assert_int_equal(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", &h), PROXY_PP_NEED_MORE);
	assert_int_equal(h.need, strlen("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r") + 1);
}

static void test_not_pp(void **state)
{
	static const char *const in[] = {
		"GET / HTTP/1.1\r\n", "\x16\x03\x01\x02\x00", "PROXX", "proxy TCP4", "PROXY\t",
		"\r\n\r\nX",	      "\r\n\r\n\0\r\nQUIX"
	};
	static const size_t n[] = { 16, 5, 5, 10, 6, 5, 12 };
	struct proxy_pp_header h;
	size_t i;

	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		assert_int_equal(proxy_pp_parse((const uint8_t *)in[i], n[i], &h), PROXY_PP_NOT_PP);
	/* a first byte is enough to tell */
	assert_int_equal(proxy_pp_parse((const uint8_t *)"\x16", 1, &h), PROXY_PP_NOT_PP);
	assert_int_equal(proxy_pp_parse((const uint8_t *)"", 0, &h), PROXY_PP_NEED_MORE);
	assert_int_equal(h.need, 15);
	assert_int_equal(proxy_pp_parse((const uint8_t *)"\r", 1, &h), PROXY_PP_NEED_MORE);
	assert_int_equal(proxy_pp_parse((const uint8_t *)"P", 1, &h), PROXY_PP_NEED_MORE);
}

/* ---- v2 ---- */

static const uint8_t v2_tcp4[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
	0x21, 0x11, 0x00, 0x0c,			     /* PROXY, TCP4, 12 */
	192,  168,  0,	  1,	10,   0,    0,	  2, /* src, dst */
	0xdc, 0x04, 0x01, 0xbb,			     /* 56324, 443 */
};

static const uint8_t v2_tcp6_tlv[] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
	0x55, 0x49, 0x54, 0x0a, 0x21, 0x21, 0x00, 36 + 7 + 3 + 9,
	0x20, 0x01, 0x0d, 0xb8, 0,    0,    0,	  0,
	0,    0,    0,	  0,	0,    0,    0,	  0x01, /* 2001:db8::1 */
	0,    0,    0,	  0,	0,    0,    0,	  0,
	0,    0,    0,	  0,	0,    0,    0,	  0x01, /* ::1 */
	0x00, 0x50, 0x1f, 0x90,				/* 80, 8080 */
	0x03, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef,	/* PP2_TYPE_CRC32C (not checked) */
	0x04, 0x00, 0x00,				/* PP2_TYPE_NOOP, empty */
	0x02, 0x00, 0x06, 'a',	'.',  'b',  '.',  'c',
	'd', /* PP2_TYPE_AUTHORITY */
};

static void test_v2_examples(void **state)
{
	uint8_t local[16] = SIG "\x20\x00\x00\x00";
	uint8_t unspec[20] = SIG "\x21\x00\x00\x04"
				 "abcd";
	struct proxy_pp_header h;

	assert_int_equal(proxy_pp_parse(v2_tcp4, sizeof(v2_tcp4), &h), PROXY_PP_OK);
	assert_int_equal(h.version, 2);
	assert_int_equal(h.family, AF_INET);
	assert_int_equal(h.header_bytes, 28);
	check_in4(&h.src, "192.168.0.1", 56324);
	check_in4(&h.dst, "10.0.0.2", 443);
	check_with_payload(v2_tcp4, sizeof(v2_tcp4));

	assert_int_equal(proxy_pp_parse(v2_tcp6_tlv, sizeof(v2_tcp6_tlv), &h), PROXY_PP_OK);
	assert_int_equal(h.family, AF_INET6);
	assert_int_equal(h.header_bytes, sizeof(v2_tcp6_tlv));
	check_in6(&h.src, "2001:db8::1", 80);
	check_in6(&h.dst, "::1", 8080);
	check_with_payload(v2_tcp6_tlv, sizeof(v2_tcp6_tlv));

	/* LOCAL (health checks): no addresses, whatever the family byte says */
	assert_int_equal(proxy_pp_parse(local, 16, &h), PROXY_PP_OK);
	assert_true(h.local);
	assert_int_equal(h.family, AF_UNSPEC);
	assert_int_equal(h.header_bytes, 16);
	check_with_payload(local, 16);
	local[13] = 0x31; /* AF_UNIX: ignored with LOCAL */
	assert_int_equal(proxy_pp_parse(local, 16, &h), PROXY_PP_OK);
	assert_true(h.local);
	/* PROXY over UNSPEC: treated as local, block skipped */
	assert_int_equal(proxy_pp_parse(unspec, 20, &h), PROXY_PP_OK);
	assert_true(h.local);
	assert_int_equal(h.header_bytes, 20);
	unspec[13] = 0x01; /* UNSPEC over STREAM */
	assert_int_equal(proxy_pp_parse(unspec, 20, &h), PROXY_PP_OK);
}

static void expect_v2(const uint8_t *b, size_t n, const char *error)
{
	struct proxy_pp_header h;
	enum proxy_pp_result r = proxy_pp_parse(b, n, &h);

	if (r != PROXY_PP_MALFORMED || strcmp(h.error, error) != 0)
		fail_msg("want %s, got %s %s", error, proxy_pp_result_name(r),
			 h.error ? h.error : "-");
	assert_int_equal(h.version, 2);
}

static void test_v2_corrupt(void **state)
{
	uint8_t b[PROXY_PP_MAX_BYTES + 64];
	struct proxy_pp_header h;
	size_t i;

	/* each signature byte: then it is no PROXY header at all */
	for (i = 0; i < 12; i++) {
		memcpy(b, v2_tcp4, sizeof(v2_tcp4));
		b[i] ^= 0x40;
		assert_int_equal(proxy_pp_parse(b, sizeof(v2_tcp4), &h), PROXY_PP_NOT_PP);
	}
#define MUT(off, val, err)                                                       \
	do {                                                                     \
		memcpy(b, v2_tcp4, sizeof(v2_tcp4));                             \
		b[off] = (val);                                                  \
		expect_v2(b, sizeof(v2_tcp4), err);                              \
		/* judged from the fixed part alone, before the block arrives */ \
		expect_v2(b, (off) + 1 > 16 ? (off) + 1 : 16, err);              \
	} while (0)
	MUT(12, 0x11, "v2-version");
	MUT(12, 0x31, "v2-version");
	MUT(12, 0x01, "v2-version");
	MUT(12, 0x22, "v2-command");
	MUT(12, 0x2f, "v2-command");
	MUT(13, 0x31, "v2-family"); /* AF_UNIX refused */
	MUT(13, 0x41, "v2-family");
	MUT(13, 0xf1, "v2-family");
	MUT(13, 0x12, "v2-transport"); /* DGRAM */
	MUT(13, 0x10, "v2-transport");
	MUT(13, 0x13, "v2-transport");
	MUT(13, 0x02, "v2-transport"); /* UNSPEC over DGRAM */
	MUT(15, 11, "v2-length");      /* shorter than two IPv4 addresses and ports */
	MUT(13, 0x21, "v2-length");    /* IPv6 in 12 bytes */
	MUT(14, 0x10, "v2-length");    /* 16 + 4108 > 4096 */
	MUT(14, 0xff, "v2-length");
#undef MUT
	/* the bound itself: 16 + 4080 is accepted (one big TLV), 4081 is not */
	memset(b, 0, sizeof(b));
	memcpy(b, v2_tcp4, 16);
	b[14] = (4080 >> 8);
	b[15] = 4080 & 0xff;
	b[28] = 0xee;
	b[29] = (4080 - 12 - 3) >> 8;
	b[30] = (4080 - 12 - 3) & 0xff;
	assert_int_equal(proxy_pp_parse(b, 4096, &h), PROXY_PP_OK);
	assert_int_equal(h.header_bytes, 4096);
	assert_int_equal(proxy_pp_parse(b, 4095, &h), PROXY_PP_NEED_MORE);
	assert_int_equal(h.need, 4096);
	b[15]++;
	expect_v2(b, 4097, "v2-length");

	/* TLVs: a partial TLV header, a value running past the block (by 1 and by a lot) */
	memcpy(b, v2_tcp6_tlv, sizeof(v2_tcp6_tlv));
	b[15] -= 1; /* the AUTHORITY value now runs 1 past the end */
	expect_v2(b, sizeof(v2_tcp6_tlv), "v2-tlv");
	memcpy(b, v2_tcp6_tlv, sizeof(v2_tcp6_tlv));
	b[15] = 36 + 7 + 2; /* the NOOP TLV header cut after 2 bytes */
	expect_v2(b, sizeof(v2_tcp6_tlv), "v2-tlv");
	memcpy(b, v2_tcp6_tlv, sizeof(v2_tcp6_tlv));
	b[16 + 36 + 1] = 0xff; /* CRC32C length 0xff04 */
	expect_v2(b, sizeof(v2_tcp6_tlv), "v2-tlv");
	memcpy(b, v2_tcp6_tlv, sizeof(v2_tcp6_tlv));
	b[16 + 36 + 2] = 5; /* CRC32C one byte longer: the next TLVs misalign and overrun */
	expect_v2(b, sizeof(v2_tcp6_tlv), "v2-tlv");
}

/* ---- builders and round trips ---- */

static void fill_addr(struct sockaddr_storage *ss, int fam, unsigned *seed)
{
	memset(ss, 0, sizeof(*ss));
	if (fam == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		uint32_t a = (uint32_t)rand_r(seed) ^ ((uint32_t)rand_r(seed) << 16);

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, &a, 4);
		sin->sin_port = (uint16_t)rand_r(seed);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		size_t i;

		sin6->sin6_family = AF_INET6;
		for (i = 0; i < 16; i++)
			sin6->sin6_addr.s6_addr[i] = (uint8_t)(rand_r(seed) % 3 ? rand_r(seed) : 0);
		sin6->sin6_port = (uint16_t)rand_r(seed);
	}
}

/* @p in as the parser reports it: IPv6 when the pair is mixed (v4-mapped). */
static void check_same(const struct sockaddr_storage *got, const struct sockaddr_storage *in,
		       int fam)
{
	if (fam == AF_INET) {
		const struct sockaddr_in *a = (const void *)got, *b = (const void *)in;

		assert_int_equal(got->ss_family, AF_INET);
		assert_memory_equal(&a->sin_addr, &b->sin_addr, 4);
		assert_int_equal(a->sin_port, b->sin_port);
		return;
	}
	const struct sockaddr_in6 *a = (const void *)got;

	assert_int_equal(got->ss_family, AF_INET6);
	if (in->ss_family == AF_INET6) {
		const struct sockaddr_in6 *b = (const void *)in;

		assert_memory_equal(&a->sin6_addr, &b->sin6_addr, 16);
		assert_int_equal(a->sin6_port, b->sin6_port);
	} else {
		const struct sockaddr_in *b = (const void *)in;
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		assert_memory_equal(a->sin6_addr.s6_addr, mapped, 12);
		assert_memory_equal(a->sin6_addr.s6_addr + 12, &b->sin_addr, 4);
		assert_int_equal(a->sin6_port, b->sin_port);
	}
}

static void test_round_trip(void **state)
{
	static const int fams[4][2] = { { AF_INET, AF_INET },
					{ AF_INET6, AF_INET6 },
					{ AF_INET, AF_INET6 },
					{ AF_INET6, AF_INET } };
	unsigned seed = 20240610;
	int i, v;

	for (i = 0; i < 4000; i++) {
		struct sockaddr_storage s, d;
		const int *f = fams[i % 4];
		int want = f[0] == AF_INET && f[1] == AF_INET ? AF_INET : AF_INET6;

		fill_addr(&s, f[0], &seed);
		fill_addr(&d, f[1], &seed);
		for (v = 1; v <= 2; v++) {
			uint8_t out[PROXY_PP_BUILD_MAX];
			struct proxy_pp_header h;
			ssize_t n =
				v == 1 ? proxy_pp_build_v1((struct sockaddr *)&s,
							   (struct sockaddr *)&d, out, sizeof(out))
				       : proxy_pp_build_v2((struct sockaddr *)&s,
							   (struct sockaddr *)&d, out, sizeof(out));

			assert_true(n > 0);
			assert_true(v == 1 ? n <= PROXY_PP_V1_MAX : n <= 52);
			if (proxy_pp_parse(out, (size_t)n, &h) != PROXY_PP_OK)
				fail_msg("v%d %.*s: %s", v, (int)n, out, h.error ? h.error : "-");
			assert_int_equal(h.version, v);
			assert_int_equal((ssize_t)h.header_bytes, n);
			assert_int_equal(h.family, want);
			check_same(&h.src, &s, want);
			check_same(&h.dst, &d, want);
			if (i < 40) {
				check_truncations(out, (size_t)n);
				/* too small a buffer, at every size */
				for (size_t cap = 0; cap < (size_t)n; cap++) {
					errno = 0;
					assert_int_equal(
						v == 1 ? proxy_pp_build_v1((struct sockaddr *)&s,
									   (struct sockaddr *)&d,
									   out, cap)
						       : proxy_pp_build_v2((struct sockaddr *)&s,
									   (struct sockaddr *)&d,
									   out, cap),
						-1);
					assert_int_equal(errno, ENOSPC);
				}
			}
		}
	}
}

static void test_build_local_and_errors(void **state)
{
	uint8_t out[PROXY_PP_BUILD_MAX];
	struct sockaddr_storage un = { .ss_family = AF_UNIX }, in;
	struct proxy_pp_header h;
	unsigned seed = 7;

	assert_int_equal(proxy_pp_build_v2(NULL, NULL, out, sizeof(out)), 16);
	assert_memory_equal(out, SIG "\x20\x00\x00\x00", 16);
	assert_int_equal(proxy_pp_parse(out, 16, &h), PROXY_PP_OK);
	assert_true(h.local);
	assert_int_equal(proxy_pp_build_v1(NULL, NULL, out, sizeof(out)), 15);
	assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
	assert_int_equal(proxy_pp_build_v1(NULL, NULL, out, 14), -1);

	fill_addr(&in, AF_INET, &seed);
	errno = 0;
	assert_int_equal(
		proxy_pp_build_v2((struct sockaddr *)&un, (struct sockaddr *)&in, out, sizeof(out)),
		-1);
	assert_int_equal(errno, EAFNOSUPPORT);
	errno = 0;
	assert_int_equal(
		proxy_pp_build_v1((struct sockaddr *)&in, (struct sockaddr *)&un, out, sizeof(out)),
		-1);
	assert_int_equal(errno, EAFNOSUPPORT);

	/* exact text of a v1 line */
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(56324) };
	struct sockaddr_in b = { .sin_family = AF_INET, .sin_port = htons(443) };
	const char *want = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";

	inet_pton(AF_INET, "192.168.0.1", &a.sin_addr);
	inet_pton(AF_INET, "192.168.0.11", &b.sin_addr);
	assert_int_equal(
		proxy_pp_build_v1((struct sockaddr *)&a, (struct sockaddr *)&b, out, sizeof(out)),
		strlen(want));
	assert_memory_equal(out, want, strlen(want));
	assert_int_equal(
		proxy_pp_build_v2((struct sockaddr *)&a, (struct sockaddr *)&b, out, sizeof(out)),
		28);
	b.sin_addr.s_addr = htonl(0x0a000002);
	proxy_pp_build_v2((struct sockaddr *)&a, (struct sockaddr *)&b, out, sizeof(out));
	assert_memory_equal(out, v2_tcp4, sizeof(v2_tcp4));
}

/* Every single-byte change of valid headers: a sane verdict, never a read past the end (ASan). */
static void test_mutations(void **state)
{
	const char *v1 = "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 0 65535\r\n";
	const uint8_t *src[3] = { v2_tcp4, v2_tcp6_tlv, (const uint8_t *)v1 };
	size_t n[3] = { sizeof(v2_tcp4), sizeof(v2_tcp6_tlv), strlen(v1) };
	static const uint8_t vals[] = { 0, 1, ' ', '\r', '\n', '0', ':', '.', 'f', 0x7f, 0xff };
	uint8_t b[128];
	size_t k, i, j;
	unsigned counts[4] = { 0 };

	for (k = 0; k < 3; k++)
		for (i = 0; i < n[k]; i++)
			for (j = 0; j < sizeof(vals); j++) {
				struct proxy_pp_header h;
				uint8_t *heap = malloc(n[k]);
				enum proxy_pp_result r;

				memcpy(b, src[k], n[k]);
				b[i] = vals[j];
				memcpy(heap, b, n[k]);
				r = proxy_pp_parse(heap, n[k], &h);
				counts[r]++;
				if (r == PROXY_PP_OK)
					assert_true(h.header_bytes <= n[k]);
				if (r == PROXY_PP_NEED_MORE)
					assert_true(h.need > n[k] && h.need <= PROXY_PP_MAX_BYTES);
				if (r == PROXY_PP_MALFORMED)
					assert_non_null(h.error);
				free(heap);
			}
	/* the verdicts are not all the same */
	assert_true(counts[PROXY_PP_OK] > 0 && counts[PROXY_PP_MALFORMED] > 0 &&
		    counts[PROXY_PP_NOT_PP] > 0 && counts[PROXY_PP_NEED_MORE] > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_unknown_and_max),
		cmocka_unit_test(test_v1_corrupt),
		cmocka_unit_test(test_v1_early_refusal),
		cmocka_unit_test(test_not_pp),
		cmocka_unit_test(test_v2_examples),
		cmocka_unit_test(test_v2_corrupt),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_build_local_and_errors),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
