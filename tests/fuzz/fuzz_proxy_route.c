/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: proxy_route_parse on arbitrary names and base domains. Input: one flag byte
 * (bit 0 insecure_localhost, bits 1-2 the number of base domains, 0..3), then the base domains and
 * the name separated by '\n' (the name is the rest, raw bytes, not NUL-terminated). Invariants: no
 * crash or overread; a route's fields agree with its verdict; for a name proxy_sni would accept,
 * the verdict does not depend on letter case.
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

#define NAME_CAP 300

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char base_buf[3][NAME_CAP];
	const char *bases[3];
	struct proxy_route_config cfg;
	struct proxy_route r, r2;
	enum proxy_route_error e, e2;
	size_t nb, i, off = 1, len;
	char *name, lowered[PROXY_SNI_HOST_MAX + 1];

	if (size < 1)
		return 0;
	cfg.insecure_localhost = data[0] & 1;
	nb = (data[0] >> 1) & 3;
	for (i = 0; i < nb; i++) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl ? (size_t)(nl - (data + off)) : size - off;

		if (n >= NAME_CAP)
			n = NAME_CAP - 1;
		memcpy(base_buf[i], data + off, n);
		base_buf[i][n] = '\0'; /* an embedded NUL just shortens it */
		bases[i] = base_buf[i];
		off = nl ? (size_t)(nl - data) + 1 : size;
	}
	cfg.base_domains = bases;
	cfg.n_base_domains = nb;
	len = size - off;
	name = malloc(len ? len : 1);
	CHECK(name);
	memcpy(name, data + off, len);

	e = proxy_route_parse(&cfg, name, len, &r);
	CHECK(strcmp(proxy_route_error_name(e), "unknown") != 0);
	CHECK(r.id[PROXY_ROUTE_ID_MAX] == '\0');
	if (e == PROXY_ROUTE_E_NONE) {
		CHECK(len > 0 && len <= 253 && memchr(name, '.', len));
		if (r.kind == PROXY_ROUTE_CUSTOM) {
			CHECK(r.base_index == -1 && r.mode == PROXY_ROUTE_PASSTHROUGH);
			CHECK(r.id[0] == '\0' && r.port == 0);
		} else {
			CHECK(r.base_index >= 0 && (size_t)r.base_index < nb);
			CHECK(r.id[0] != '\0' || memchr(name, '\0', len)); /* raw NULs aside */
			CHECK(r.port_explicit ||
			      r.port == (r.mode == PROXY_ROUTE_PASSTHROUGH ? 443 : 80));
			if (r.kind == PROXY_ROUTE_HEALTH || r.kind == PROXY_ROUTE_GATEWAY)
				CHECK(r.port == 80 && r.mode != PROXY_ROUTE_PASSTHROUGH);
			if (r.kind == PROXY_ROUTE_LOCALHOST)
				CHECK(cfg.insecure_localhost);
		}
	}

	/* a valid host name: same verdict in lower case */
	if (len > 0 && len <= PROXY_SNI_HOST_MAX && proxy_sni_host_valid(name, len, lowered)) {
		e2 = proxy_route_parse(&cfg, lowered, len, &r2);
		CHECK(e2 == e);
		if (e == PROXY_ROUTE_E_NONE)
			CHECK(r2.kind == r.kind && r2.mode == r.mode && r2.port == r.port &&
			      r2.base_index == r.base_index && strcmp(r2.id, r.id) == 0);
	}
	free(name);
	return 0;
}
