/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/proxy ClientHello parser: real OpenSSL ClientHellos (TLS 1.3 with ALPN, TLS 1.2 only,
 * no SNI), truncation at every byte, re-fragmentation over records of every small size, each
 * length field corrupted with the precise refusal, DNS name rules, and a seeded mutation loop
 * (the stand-in for a libFuzzer target: the tree has no fuzz harness) asserting sane verdicts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy_sni.h"
#include "proxy_sni_fixtures.h"

#define BUF_MAX 20000

/* ---- a ClientHello builder with fixed offsets (see the layout in build_hello) ---- */

struct hb {
	uint8_t b[BUF_MAX];
	size_t n;
};

static void put8(struct hb *h, unsigned v)
{
	h->b[h->n++] = (uint8_t)v;
}

static void put16(struct hb *h, unsigned v)
{
	put8(h, v >> 8);
	put8(h, v & 0xff);
}

static void put(struct hb *h, const void *p, size_t n)
{
	memcpy(h->b + h->n, p, n);
	h->n += n;
}

static void patch16(struct hb *h, size_t at, unsigned v)
{
	h->b[at] = (uint8_t)(v >> 8);
	h->b[at + 1] = (uint8_t)v;
}

/*
 * Offsets: 0 record hdr, 5 hs hdr, 9 version, 11 random, 43 sid len (32), 76 cs len (4),
 * 82 comp len (1), 84 ext len, 86 server_name ext: 86 type, 88 len, 90 list len, 92 name type,
 * 93 name len, 95 name; then ALPN (h2, http/1.1), then supported_versions (1.3, 1.2).
 */
#define OFF_SNI_EXT 86
static void build_hello(struct hb *h, const char *host)
{
	static const uint8_t alpn[] = { 0,   12,  2,   'h', '2', 8,   'h',
					't', 't', 'p', '/', '1', '.', '1' };
	static const uint8_t sv[] = { 4, 0x03, 0x04, 0x03, 0x03 };
	size_t hl = strlen(host), ext_at;
	uint8_t rnd[32];

	memset(rnd, 0xab, sizeof(rnd));
	h->n = 0;
	put8(h, 22);
	put16(h, 0x0301);
	put16(h, 0);
	put8(h, 1);
	put8(h, 0);
	put16(h, 0);
	put16(h, 0x0303);
	put(h, rnd, 32);
	put8(h, 32);
	put(h, rnd, 32);
	put16(h, 4);
	put16(h, 0x1301);
	put16(h, 0xc02f);
	put8(h, 1);
	put8(h, 0);
	ext_at = h->n;
	put16(h, 0);
	put16(h, 0);
	put16(h, (unsigned)hl + 5);
	put16(h, (unsigned)hl + 3);
	put8(h, 0);
	put16(h, (unsigned)hl);
	put(h, host, hl);
	put16(h, 16);
	put16(h, sizeof(alpn));
	put(h, alpn, sizeof(alpn));
	put16(h, 43);
	put16(h, sizeof(sv));
	put(h, sv, sizeof(sv));
	patch16(h, ext_at, (unsigned)(h->n - ext_at - 2));
	patch16(h, 3, (unsigned)(h->n - 5));
	h->b[6] = 0;
	patch16(h, 7, (unsigned)(h->n - 9));
}

/* Append a padding extension (RFC 7685) of @p pad zero bytes and fix the lengths. */
static void add_padding(struct hb *h, size_t pad)
{
	put16(h, 21);
	put16(h, (unsigned)pad);
	memset(h->b + h->n, 0, pad);
	h->n += pad;
	patch16(h, 84, (unsigned)(h->n - 86));
	patch16(h, 3, (unsigned)(h->n - 5));
	patch16(h, 7, (unsigned)(h->n - 9));
}

/* Re-split the handshake bytes of a single-record hello into records of @p frag bytes. */
static size_t refragment(const uint8_t *in, size_t in_len, size_t frag, uint8_t *out)
{
	size_t hs = in_len - 5, o = 0, i;

	for (i = 0; i < hs; i += frag) {
		size_t n = hs - i < frag ? hs - i : frag;

		out[o++] = 22;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(n >> 8);
		out[o++] = (uint8_t)n;
		memcpy(out + o, in + 5 + i, n);
		o += n;
	}
	return o;
}

static void assert_sane(const uint8_t *buf, size_t len, enum proxy_sni_status st,
			const struct proxy_sni_hello *h)
{
	char tmp[PROXY_SNI_HOST_MAX + 1];

	switch (st) {
	case PROXY_SNI_OK:
		assert_true(h->record_bytes <= len);
		assert_int_equal(h->error, PROXY_SNI_E_NONE);
		assert_int_equal(strlen(h->host), h->host_len);
		if (h->has_sni)
			assert_true(proxy_sni_host_valid(h->host, h->host_len, tmp));
		assert_true(h->alpn_count <= PROXY_SNI_ALPN_MAX);
		break;
	case PROXY_SNI_NEED_MORE:
		assert_true(h->need > len);
		assert_true(h->need <= PROXY_SNI_MAX_BYTES);
		break;
	case PROXY_SNI_NOT_TLS:
		assert_true((len >= 1 && buf[0] != 22) || (len >= 2 && buf[1] != 3));
		break;
	case PROXY_SNI_MALFORMED:
		assert_int_not_equal(h->error, PROXY_SNI_E_NONE);
		break;
	default:
		fail_msg("status %d", st);
	}
}

/* ---- real ClientHellos ---- */

static void test_openssl_tls13_alpn(void **state)
{
	struct proxy_sni_hello h;

	(void)state;
	assert_int_equal(proxy_sni_parse(fx_tls13_h2, sizeof(fx_tls13_h2), &h), PROXY_SNI_OK);
	assert_true(h.has_sni);
	assert_string_equal(h.host, "app1-8080g.example.com");
	assert_int_equal(h.host_len, strlen("app1-8080g.example.com"));
	assert_true(h.has_alpn);
	assert_int_equal(h.alpn_count, 2);
	assert_string_equal(h.alpn[0].name, "h2");
	assert_string_equal(h.alpn[1].name, "http/1.1");
	assert_true(proxy_sni_offers_alpn(&h, "h2"));
	assert_false(proxy_sni_offers_alpn(&h, "h3"));
	assert_true(h.tls13);
	assert_int_equal(h.legacy_version, 0x0303);
	assert_int_equal(h.record_bytes, sizeof(fx_tls13_h2));
}

static void test_openssl_tls12_uppercase(void **state)
{
	struct proxy_sni_hello h;

	(void)state;
	assert_int_equal(proxy_sni_parse(fx_tls12_only, sizeof(fx_tls12_only), &h), PROXY_SNI_OK);
	assert_string_equal(h.host, "abc-443s.gateway.example.com");
	assert_false(h.tls13);
	assert_false(h.has_alpn);
	assert_int_equal(h.alpn_count, 0);
}

static void test_openssl_no_sni(void **state)
{
	struct proxy_sni_hello h;

	(void)state;
	assert_int_equal(proxy_sni_parse(fx_no_sni, sizeof(fx_no_sni), &h), PROXY_SNI_OK);
	assert_false(h.has_sni);
	assert_string_equal(h.host, "");
	assert_true(h.tls13);
}

static void test_openssl_passthrough_long_label(void **state)
{
	struct proxy_sni_hello h;

	(void)state;
	assert_int_equal(proxy_sni_parse(fx_tls13_passthrough, sizeof(fx_tls13_passthrough), &h),
			 PROXY_SNI_OK);
	assert_string_equal(h.host, "0123456789abcdef0123456789abcdef01234567-443s.dstack.example");
}

static void test_trailing_bytes_after_records_ignored(void **state)
{
	static uint8_t buf[BUF_MAX];
	struct proxy_sni_hello h;

	(void)state;
	/* e.g. early data or a pipelined record: not part of the hello, left to the relay */
	memcpy(buf, fx_tls13_h2, sizeof(fx_tls13_h2));
	memcpy(buf + sizeof(fx_tls13_h2), "\x17\x03\x03\x00\x01X", 6);
	assert_int_equal(proxy_sni_parse(buf, sizeof(fx_tls13_h2) + 6, &h), PROXY_SNI_OK);
	assert_int_equal(h.record_bytes, sizeof(fx_tls13_h2));
}

/* ---- truncation and fragmentation ---- */

static void check_every_prefix(const uint8_t *buf, size_t len)
{
	struct proxy_sni_hello h;
	size_t i;

	for (i = 0; i < len; i++) {
		enum proxy_sni_status st = proxy_sni_parse(buf, i, &h);

		assert_int_equal(st, PROXY_SNI_NEED_MORE);
		assert_true(h.need > i && h.need <= len);
	}
	assert_int_equal(proxy_sni_parse(buf, len, &h), PROXY_SNI_OK);
}

static void test_truncation_every_byte(void **state)
{
	(void)state;
	check_every_prefix(fx_tls13_h2, sizeof(fx_tls13_h2));
	check_every_prefix(fx_tls12_only, sizeof(fx_tls12_only));
	check_every_prefix(fx_no_sni, sizeof(fx_no_sni));
	check_every_prefix(fx_tls13_passthrough, sizeof(fx_tls13_passthrough));
}

static void test_fragmented_records(void **state)
{
	static uint8_t frag[BUF_MAX];
	static const size_t sizes[] = { 1, 2, 3, 4, 5, 7, 31, 100, 200, 340 };
	struct proxy_sni_hello h;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		n = refragment(fx_tls13_h2, sizeof(fx_tls13_h2), sizes[i], frag);
		assert_int_equal(proxy_sni_parse(frag, n, &h), PROXY_SNI_OK);
		assert_string_equal(h.host, "app1-8080g.example.com");
		assert_true(proxy_sni_offers_alpn(&h, "http/1.1"));
		assert_true(h.tls13);
		assert_int_equal(h.record_bytes, n);
		if (sizes[i] >= 3)
			check_every_prefix(frag, n);
	}
}

static void test_fragment_then_other_record(void **state)
{
	static uint8_t frag[BUF_MAX];
	struct proxy_sni_hello h;
	size_t n = refragment(fx_tls13_h2, sizeof(fx_tls13_h2), 100, frag);

	(void)state;
	frag[105] = 21; /* second record becomes an alert */
	assert_int_equal(proxy_sni_parse(frag, n, &h), PROXY_SNI_MALFORMED);
	assert_int_equal(h.error, PROXY_SNI_E_RECORD_INTERLEAVED);
	/* judged from the first byte of the next header already */
	assert_int_equal(proxy_sni_parse(frag, 106, &h), PROXY_SNI_MALFORMED);
	frag[105] = 22;
	frag[106] = 2;
	assert_int_equal(proxy_sni_parse(frag, n, &h), PROXY_SNI_MALFORMED);
	assert_int_equal(h.error, PROXY_SNI_E_RECORD_VERSION);
}

static void test_too_large(void **state)
{
	static uint8_t frag[BUF_MAX];
	struct hb *h = malloc(sizeof(*h));
	struct proxy_sni_hello out;
	size_t n, i;

	(void)state;
	build_hello(h, "a.example.com");
	h->b[6] = 1; /* handshake length + 64 KiB */
	assert_int_equal(proxy_sni_parse(h->b, h->n, &out), PROXY_SNI_MALFORMED);
	assert_int_equal(out.error, PROXY_SNI_E_TOO_LARGE);
	/* 1-byte records of a 3000-byte hello would take 18 KB of records */
	build_hello(h, "a.example.com");
	add_padding(h, 3000);
	assert_int_equal(proxy_sni_parse(h->b, h->n, &out), PROXY_SNI_OK);
	n = refragment(h->b, h->n, 1, frag);
	assert_int_equal(proxy_sni_parse(frag, n, &out), PROXY_SNI_MALFORMED);
	assert_int_equal(out.error, PROXY_SNI_E_TOO_LARGE);
	for (i = 0; i <= n; i += 7)
		assert_sane(frag, i, proxy_sni_parse(frag, i, &out), &out);
	free(h);
}

/* ---- not TLS and record layer ---- */

static void test_not_tls(void **state)
{
	struct proxy_sni_hello h;

	(void)state;
	assert_int_equal(proxy_sni_parse("GET / HTTP/1.1\r\n", 16, &h), PROXY_SNI_NOT_TLS);
	assert_int_equal(h.error, PROXY_SNI_E_NOT_HANDSHAKE);
	assert_int_equal(proxy_sni_parse("\x80\x2e\x01\x00\x02", 5, &h), PROXY_SNI_NOT_TLS);
	assert_int_equal(proxy_sni_parse("\x16\x02", 2, &h), PROXY_SNI_NOT_TLS);
	assert_int_equal(proxy_sni_parse("G", 1, &h), PROXY_SNI_NOT_TLS);
	assert_int_equal(proxy_sni_parse("", 0, &h), PROXY_SNI_NEED_MORE);
	assert_int_equal(h.need, 5);
	assert_int_equal(proxy_sni_parse("\x16", 1, &h), PROXY_SNI_NEED_MORE);
	assert_int_equal(proxy_sni_parse("\x16\x03\x05", 3, &h), PROXY_SNI_MALFORMED);
	assert_int_equal(h.error, PROXY_SNI_E_RECORD_VERSION);
}

/* ---- every length field ---- */

static enum proxy_sni_error parse_err(struct hb *h)
{
	struct proxy_sni_hello out;
	enum proxy_sni_status st = proxy_sni_parse(h->b, h->n, &out);

	assert_sane(h->b, h->n, st, &out);
	if (st == PROXY_SNI_NEED_MORE)
		return (enum proxy_sni_error) - 1;
	return out.error;
}

static void test_length_fields(void **state)
{
	struct hb *h = malloc(sizeof(*h));
	size_t base;

	(void)state;
	build_hello(h, "app.example.com");
	assert_int_equal(parse_err(h), PROXY_SNI_E_NONE);
	base = h->n;

#define CASE(stmt, expect)                                \
	do {                                              \
		build_hello(h, "app.example.com");        \
		stmt;                                     \
		assert_int_equal(parse_err(h), (expect)); \
	} while (0)

	CASE(patch16(h, 3, 0), PROXY_SNI_E_RECORD_EMPTY);
	CASE(patch16(h, 3, 16385), PROXY_SNI_E_RECORD_LENGTH);
	CASE(patch16(h, 3, base - 5 + 1), (enum proxy_sni_error) - 1);
	CASE(patch16(h, 3, base - 5 - 1), PROXY_SNI_E_RECORD_INTERLEAVED);
	CASE(h->b[5] = 2, PROXY_SNI_E_HANDSHAKE_TYPE);
	CASE(patch16(h, 7, base - 9 + 1), (enum proxy_sni_error) - 1);
	CASE(patch16(h, 7, base - 9 - 1), PROXY_SNI_E_HANDSHAKE_TRAILING);
	CASE(patch16(h, 7, 30), PROXY_SNI_E_HANDSHAKE_TRAILING);
	CASE((patch16(h, 7, 30), patch16(h, 3, 34)), PROXY_SNI_E_HELLO_TRUNCATED);
	CASE(patch16(h, 9, 0x0203), PROXY_SNI_E_HELLO_VERSION);
	CASE(patch16(h, 9, 0x0304), PROXY_SNI_E_HELLO_VERSION);
	CASE(h->b[43] = 33, PROXY_SNI_E_SESSION_ID);
	CASE(h->b[43] = 255, PROXY_SNI_E_SESSION_ID);
	CASE(patch16(h, 76, 3), PROXY_SNI_E_CIPHER_SUITES);
	CASE(patch16(h, 76, 0), PROXY_SNI_E_CIPHER_SUITES);
	CASE(patch16(h, 76, 0xfffe), PROXY_SNI_E_HELLO_TRUNCATED);
	CASE(h->b[82] = 0, PROXY_SNI_E_COMPRESSION);
	CASE(h->b[82] = 200, PROXY_SNI_E_HELLO_TRUNCATED);
	CASE(patch16(h, 84, base - 86 + 1), PROXY_SNI_E_EXTENSIONS_LENGTH);
	CASE(patch16(h, 84, base - 86 - 1), PROXY_SNI_E_EXTENSIONS_LENGTH);
	CASE(patch16(h, 88, 0xffff), PROXY_SNI_E_EXTENSION_LENGTH);
	CASE(patch16(h, 88, 20 + 1), PROXY_SNI_E_SERVER_NAME);
	CASE(patch16(h, 88, 1), PROXY_SNI_E_SERVER_NAME);
	CASE(patch16(h, 90, 18 + 1), PROXY_SNI_E_SERVER_NAME);
	CASE(patch16(h, 90, 0), PROXY_SNI_E_SERVER_NAME);
	CASE(patch16(h, 93, 15 + 1), PROXY_SNI_E_SERVER_NAME);
	CASE(patch16(h, 93, 0), PROXY_SNI_E_SERVER_NAME);
	CASE(patch16(h, 93, 14), PROXY_SNI_E_SERVER_NAME);
	/* ALPN ext at 110: type, len, list len at 114, first proto len at 116 */
	CASE(patch16(h, 114, 13), PROXY_SNI_E_ALPN);
	CASE(h->b[116] = 0, PROXY_SNI_E_ALPN);
	CASE(h->b[116] = 3, PROXY_SNI_E_ALPN);
	CASE(patch16(h, 112, 0), PROXY_SNI_E_ALPN);
	/* supported_versions at 128: type, len, list len at 132 */
	CASE(h->b[132] = 3, PROXY_SNI_E_SUPPORTED_VERSIONS);
	CASE(h->b[132] = 0, PROXY_SNI_E_SUPPORTED_VERSIONS);
	CASE(h->b[132] = 6, PROXY_SNI_E_SUPPORTED_VERSIONS);
	/* the same extension type twice: ALPN renamed to server_name */
	CASE(patch16(h, 110, 0), PROXY_SNI_E_EXTENSION_DUPLICATE);
	CASE(patch16(h, 128, 16), PROXY_SNI_E_EXTENSION_DUPLICATE);
#undef CASE
	free(h);
}

static void test_supported_versions_tls12_only(void **state)
{
	struct hb *h = malloc(sizeof(*h));
	struct proxy_sni_hello out;

	(void)state;
	build_hello(h, "app.example.com");
	patch16(h, 133, 0x0303);
	assert_int_equal(proxy_sni_parse(h->b, h->n, &out), PROXY_SNI_OK);
	assert_true(out.has_supported_versions);
	assert_false(out.tls13);
	free(h);
}

static void test_host_names(void **state)
{
	static const struct {
		const char *name;
		bool ok;
	} rows[] = {
		{ "a.example.com", true },     { "A-B.Example.COM", true },
		{ "localhost", true },	       { "xn--bcher-kva.example", true },
		{ "abc-.example.com", true }, /* [a-z0-9-] per label; grammar decides */
		{ "example.com.", false },     { ".example.com", false },
		{ "a..example.com", false },   { "a_b.example.com", false },
		{ "a b.example.com", false },  { "10.0.0.1", false },
		{ "app.123", false },	       { "caf\xc3\xa9.example", false },
		{ "a\0b.example.com", false },
	};
	struct hb *h = malloc(sizeof(*h));
	char label64[80], big[300];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct proxy_sni_hello out;
		enum proxy_sni_status st;

		build_hello(h, rows[i].name);
		if (i == sizeof(rows) / sizeof(rows[0]) - 1) {
			/* the embedded NUL: rebuild with a same-length name, then plant it */
			build_hello(h, "axb.example.com");
			h->b[96] = 0;
		}
		st = proxy_sni_parse(h->b, h->n, &out);
		if (rows[i].ok) {
			assert_int_equal(st, PROXY_SNI_OK);
		} else {
			assert_int_equal(st, PROXY_SNI_MALFORMED);
			assert_int_equal(out.error, PROXY_SNI_E_HOST_NAME);
		}
	}
	memset(label64, 'a', 64);
	strcpy(label64 + 64, ".example.com");
	build_hello(h, label64);
	assert_int_equal(parse_err(h), PROXY_SNI_E_HOST_NAME);
	strcpy(label64 + 63, ".example.com");
	build_hello(h, label64);
	assert_int_equal(parse_err(h), PROXY_SNI_E_NONE);
	/* 253 is the limit, 254 is not */
	for (i = 0; i < 254; i++)
		big[i] = (i % 50 == 49) ? '.' : 'a';
	big[253] = '\0';
	build_hello(h, big);
	assert_int_equal(parse_err(h), PROXY_SNI_E_NONE);
	big[253] = 'a';
	big[254] = '\0';
	build_hello(h, big);
	assert_int_equal(parse_err(h), PROXY_SNI_E_HOST_NAME);
	free(h);
}

/* ---- seeded mutations (stand-in for a libFuzzer target) ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_mutations(void **state)
{
	static const struct {
		const uint8_t *p;
		size_t n;
	} seeds[] = {
		{ fx_tls13_h2, sizeof(fx_tls13_h2) },
		{ fx_tls12_only, sizeof(fx_tls12_only) },
		{ fx_no_sni, sizeof(fx_no_sni) },
		{ fx_tls13_passthrough, sizeof(fx_tls13_passthrough) },
	};
	static uint8_t base[BUF_MAX], buf[BUF_MAX];
	unsigned iter, ok = 0, malformed = 0;

	(void)state;
	for (iter = 0; iter < 20000; iter++) {
		size_t s = rng() % 4, n = seeds[s].n, len, k, muts;
		struct proxy_sni_hello h;
		enum proxy_sni_status st;

		memcpy(base, seeds[s].p, n);
		if (rng() % 3 == 0)
			n = refragment(seeds[s].p, seeds[s].n, 1 + rng() % 64, base);
		/* exact-size heap copy so ASan sees any read past the end */
		memcpy(buf, base, n);
		muts = 1 + rng() % 4;
		for (k = 0; k < muts; k++) {
			size_t at = rng() % n;

			switch (rng() % 3) {
			case 0:
				buf[at] ^= (uint8_t)(1u << (rng() % 8));
				break;
			case 1:
				buf[at] = (uint8_t)rng();
				break;
			default:
				buf[at] = (uint8_t)(rng() % 2 ? 0xff : 0x00);
				break;
			}
		}
		len = rng() % 4 == 0 ? rng() % (n + 1) : n;
		{
			uint8_t *exact = malloc(len ? len : 1);

			memcpy(exact, buf, len);
			st = proxy_sni_parse(exact, len, &h);
			assert_sane(exact, len, st, &h);
			free(exact);
		}
		ok += st == PROXY_SNI_OK;
		malformed += st == PROXY_SNI_MALFORMED;
	}
	/* the loop exercised both sides */
	assert_true(ok > 100);
	assert_true(malformed > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openssl_tls13_alpn),
		cmocka_unit_test(test_openssl_tls12_uppercase),
		cmocka_unit_test(test_openssl_no_sni),
		cmocka_unit_test(test_openssl_passthrough_long_label),
		cmocka_unit_test(test_trailing_bytes_after_records_ignored),
		cmocka_unit_test(test_truncation_every_byte),
		cmocka_unit_test(test_fragmented_records),
		cmocka_unit_test(test_fragment_then_other_record),
		cmocka_unit_test(test_too_large),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_length_fields),
		cmocka_unit_test(test_supported_versions_tls12_only),
		cmocka_unit_test(test_host_names),
		cmocka_unit_test(test_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
