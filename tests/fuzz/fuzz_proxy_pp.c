/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: proxy_pp_parse on arbitrary peeked bytes. Invariants beyond ASan/UBSan:
 * NEED_MORE asks for more than it has, at most PROXY_PP_MAX_BYTES; MALFORMED names a field; OK
 * consumed no more than it had, gives the same answer on exactly those bytes (an exact-size copy),
 * and every shorter prefix of the header is NEED_MORE with a need no larger than the header (the
 * lower bound a reader relies on). Round trip: what was parsed goes through both builders and
 * parses back to the same addresses; a v1 TCP4 line and a v2 address block come back byte for byte.
 */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_pp.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static void same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	CHECK(a->ss_family == b->ss_family);
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		CHECK(!memcmp(&x->sin_addr, &y->sin_addr, 4) && x->sin_port == y->sin_port);
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		CHECK(!memcmp(&x->sin6_addr, &y->sin6_addr, 16) && x->sin6_port == y->sin6_port);
	}
}

static void same_header(const struct proxy_pp_header *a, const struct proxy_pp_header *b)
{
	CHECK(a->header_bytes == b->header_bytes && a->local == b->local &&
	      a->family == b->family && a->version == b->version);
	if (!a->local) {
		same_addr(&a->src, &b->src);
		same_addr(&a->dst, &b->dst);
	}
}

static void round_trip(const uint8_t *hdr, const struct proxy_pp_header *h)
{
	uint8_t out[PROXY_PP_BUILD_MAX];
	struct proxy_pp_header back;
	const struct sockaddr *s = h->local ? NULL : (const struct sockaddr *)&h->src;
	const struct sockaddr *d = h->local ? NULL : (const struct sockaddr *)&h->dst;
	int v;

	for (v = 1; v <= 2; v++) {
		ssize_t n = v == 1 ? proxy_pp_build_v1(s, d, out, sizeof(out))
				   : proxy_pp_build_v2(s, d, out, sizeof(out));

		CHECK(n > 0 && (size_t)n <= sizeof(out));
		CHECK(proxy_pp_parse(out, (size_t)n, &back) == PROXY_PP_OK);
		CHECK(back.version == v && back.header_bytes == (size_t)n);
		CHECK(back.local == h->local && back.family == h->family);
		if (!h->local) {
			same_addr(&back.src, &h->src);
			same_addr(&back.dst, &h->dst);
		}
		/* canonical forms come back byte for byte */
		if (v == 1 && h->version == 1 && h->family == AF_INET)
			CHECK((size_t)n == h->header_bytes && !memcmp(out, hdr, (size_t)n));
		if (v == 2 && h->version == 2 && !h->local)
			CHECK(out[12] == hdr[12] && out[13] == hdr[13] &&
			      !memcmp(out + 16, hdr + 16, (size_t)n - 16));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_pp_header h, again;
	enum proxy_pp_result r = proxy_pp_parse(data, size, &h);
	size_t k;

	CHECK(strcmp(proxy_pp_result_name(r), "unknown") != 0);
	switch (r) {
	case PROXY_PP_NEED_MORE:
		CHECK(h.need > size && h.need <= PROXY_PP_MAX_BYTES);
		return 0;
	case PROXY_PP_MALFORMED:
		CHECK(h.error != NULL && (h.version == 1 || h.version == 2));
		return 0;
	case PROXY_PP_NOT_PP:
		CHECK(size > 0);
		return 0;
	case PROXY_PP_OK:
		break;
	default:
		abort();
	}
	CHECK(h.header_bytes >= 15 && h.header_bytes <= size);
	CHECK(h.header_bytes <= (h.version == 1 ? PROXY_PP_V1_MAX : PROXY_PP_MAX_BYTES));
	CHECK(h.local ? h.family == AF_UNSPEC : (h.family == AF_INET || h.family == AF_INET6));

	uint8_t *copy = malloc(h.header_bytes);

	CHECK(copy);
	memcpy(copy, data, h.header_bytes);
	CHECK(proxy_pp_parse(copy, h.header_bytes, &again) == PROXY_PP_OK);
	same_header(&h, &again);
	/* every prefix (all of them for short headers, a sample of long ones) */
	for (k = 0; k < h.header_bytes; k += h.header_bytes <= 128 ? 1 : 61) {
		CHECK(proxy_pp_parse(copy, k, &again) == PROXY_PP_NEED_MORE);
		CHECK(again.need > k && again.need <= h.header_bytes);
	}
	CHECK(proxy_pp_parse(copy, h.header_bytes - 1, &again) == PROXY_PP_NEED_MORE);
	round_trip(copy, &h);
	free(copy);
	return 0;
}
