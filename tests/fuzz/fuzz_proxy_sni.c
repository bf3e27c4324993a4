/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: proxy_sni_parse on arbitrary peeked bytes, then proxy_route_parse on any host
 * name it yields (with and without insecure_localhost). Invariants beyond "no crash, no read past
 * the buffer" (ASan/UBSan): NEED_MORE asks for more than it has and at most 16 KiB; OK consumed no
 * more than it had and gives the same answer on exactly those bytes; a host name is valid,
 * lowercase, NUL-terminated and of host_len bytes; ALPN ids are within their bounds; every
 * refusal has a name; a route's fields agree with its verdict.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy_route.h"
#include "proxy/proxy_sni.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static const char *const bases[] = { "example.com", "*.dstack.example.org." };

static void check_route(const char *host, size_t len, bool insecure)
{
	struct proxy_route_config cfg = { bases, 2, insecure };
	struct proxy_route r;
	enum proxy_route_error e = proxy_route_parse(&cfg, host, len, &r);

	CHECK(strcmp(proxy_route_error_name(e), "unknown") != 0);
	if (e != PROXY_ROUTE_E_NONE)
		return;
	if (r.kind == PROXY_ROUTE_CUSTOM) {
		CHECK(r.base_index == -1 && r.mode == PROXY_ROUTE_PASSTHROUGH && r.id[0] == '\0');
		return;
	}
	CHECK(r.base_index >= 0 && r.base_index < 2);
	CHECK(r.id[0] != '\0' && strlen(r.id) <= PROXY_ROUTE_ID_MAX);
	CHECK(strchr(r.id, '.') == NULL && strchr(r.id, '-') == NULL);
	CHECK(r.port_explicit || r.port == (r.mode == PROXY_ROUTE_PASSTHROUGH ? 443 : 80));
	if (r.kind == PROXY_ROUTE_HEALTH || r.kind == PROXY_ROUTE_GATEWAY)
		CHECK(r.port == 80 && r.mode != PROXY_ROUTE_PASSTHROUGH);
	if (r.kind == PROXY_ROUTE_LOCALHOST)
		CHECK(insecure);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_sni_hello h, again;
	enum proxy_sni_status st = proxy_sni_parse(data, size, &h);
	char tmp[PROXY_SNI_HOST_MAX + 1];
	unsigned i;

	CHECK(strcmp(proxy_sni_status_name(st), "unknown") != 0);
	switch (st) {
	case PROXY_SNI_NEED_MORE:
		CHECK(h.need > size && h.need <= PROXY_SNI_MAX_BYTES);
		return 0;
	case PROXY_SNI_NOT_TLS:
	case PROXY_SNI_MALFORMED:
		CHECK(h.error != PROXY_SNI_E_NONE);
		CHECK(strcmp(proxy_sni_error_name(h.error), "unknown") != 0);
		return 0;
	case PROXY_SNI_OK:
		break;
	default:
		abort();
	}
	CHECK(h.record_bytes > 0 && h.record_bytes <= size);
	CHECK(h.alpn_count <= PROXY_SNI_ALPN_MAX);
	for (i = 0; i < h.alpn_count; i++)
		CHECK(h.alpn[i].len > 0 && h.alpn[i].len <= PROXY_SNI_ALPN_NAME_MAX &&
		      h.alpn[i].name[h.alpn[i].len] == '\0');
	CHECK(h.has_alpn || h.alpn_count == 0);
	CHECK(h.has_supported_versions || !h.tls13);
	CHECK(strlen(h.host) == h.host_len);
	if (h.has_sni) {
		CHECK(h.host_len > 0 && h.host_len <= PROXY_SNI_HOST_MAX);
		CHECK(proxy_sni_host_valid(h.host, h.host_len, tmp));
		CHECK(memcmp(tmp, h.host, h.host_len) == 0); /* already lowercase */
	} else {
		CHECK(h.host_len == 0);
	}

	/* exactly the hello's bytes (an exact-size copy, so ASan sees any overread) */
	uint8_t *copy = malloc(h.record_bytes);

	CHECK(copy);
	memcpy(copy, data, h.record_bytes);
	CHECK(proxy_sni_parse(copy, h.record_bytes, &again) == PROXY_SNI_OK);
	CHECK(again.record_bytes == h.record_bytes && again.has_sni == h.has_sni);
	CHECK(strcmp(again.host, h.host) == 0 && again.alpn_count == h.alpn_count);
	/* one byte less is never OK */
	CHECK(proxy_sni_parse(copy, h.record_bytes - 1, &again) != PROXY_SNI_OK);
	free(copy);

	if (h.has_sni) {
		char *host = malloc(h.host_len);

		CHECK(host);
		memcpy(host, h.host, h.host_len);
		check_route(host, h.host_len, false);
		check_route(host, h.host_len, true);
		free(host);
	}
	return 0;
}
