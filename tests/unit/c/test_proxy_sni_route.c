/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/proxy SNI naming grammar: the rows of spec §6.2 and §9 row 14 (`abc` → 80 terminate,
 * `abc-8080`, `abc-s` → 443 passthrough, `abc-443s`, `abc-50051g` → h2; `abc-gs`, `abc-sg`,
 * `abc-1-2`, `-80`, `abc-99999` refused), special ids, base domain matching, custom domains.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy_route.h"

#define E(x) PROXY_ROUTE_E_##x
#define K(x) PROXY_ROUTE_##x

static const char *const bases[] = { "example.com", "*.dstack.example.org." };

struct row {
	const char *sni;
	bool insecure;
	enum proxy_route_error err;
	enum proxy_route_kind kind;
	enum proxy_route_mode mode;
	const char *id;
	uint16_t port;
	int base;
};

static const struct row rows[] = {
	/* §9 row 14 */
	{ "abc.example.com", false, E(NONE), K(APP), K(TERMINATE), "abc", 80, 0 },
	{ "abc-8080.example.com", false, E(NONE), K(APP), K(TERMINATE), "abc", 8080, 0 },
	{ "abc-s.example.com", false, E(NONE), K(APP), K(PASSTHROUGH), "abc", 443, 0 },
	{ "abc-443s.example.com", false, E(NONE), K(APP), K(PASSTHROUGH), "abc", 443, 0 },
	{ "abc-8443s.example.com", false, E(NONE), K(APP), K(PASSTHROUGH), "abc", 8443, 0 },
	{ "abc-50051g.example.com", false, E(NONE), K(APP), K(TERMINATE_H2), "abc", 50051, 0 },
	{ "abc-g.example.com", false, E(NONE), K(APP), K(TERMINATE_H2), "abc", 80, 0 },
	{ .sni = "abc-gs.example.com", .insecure = false, .err = E(PORT) },
	{ .sni = "abc-sg.example.com", .insecure = false, .err = E(BOTH_SG) },
	{ .sni = "abc-443sg.example.com", .insecure = false, .err = E(BOTH_SG) },
	{ .sni = "abc-1-2.example.com", .insecure = false, .err = E(TOO_MANY_DASHES) },
	{ .sni = "abc--1.example.com", .insecure = false, .err = E(TOO_MANY_DASHES) },
	{ .sni = "-80.example.com", .insecure = false, .err = E(EMPTY_ID) },
	{ .sni = "abc-99999.example.com", .insecure = false, .err = E(PORT) },
	{ .sni = "abc-65536.example.com", .insecure = false, .err = E(PORT) },
	{ "abc-65535.example.com", false, E(NONE), K(APP), K(TERMINATE), "abc", 65535, 0 },
	{ .sni = "abc-x80.example.com", .insecure = false, .err = E(PORT) },
	{ .sni = "abc-ss.example.com", .insecure = false, .err = E(PORT) },
	/* upstream: an empty tail is no port (default) */
	{ "abc-.example.com", false, E(NONE), K(APP), K(TERMINATE), "abc", 80, 0 },
	/* 40-hex app ids, second base domain given as a wildcard with a trailing dot */
	{ "0123456789abcdef0123456789abcdef01234567-443s.dstack.example.org", false, E(NONE),
	  K(APP), K(PASSTHROUGH), "0123456789abcdef0123456789abcdef01234567", 443, 1 },
	{ "ABC-80.EXAMPLE.COM", false, E(NONE), K(APP), K(TERMINATE), "abc", 80, 0 },
	/* special ids */
	{ "health.example.com", false, E(NONE), K(HEALTH), K(TERMINATE), "health", 80, 0 },
	{ "health-g.example.com", false, E(NONE), K(HEALTH), K(TERMINATE_H2), "health", 80, 0 },
	{ .sni = "health-8080.example.com", .insecure = false, .err = E(SPECIAL_PORT) },
	{ .sni = "health-s.example.com", .insecure = false, .err = E(SPECIAL_PASSTHROUGH) },
	{ "gateway.example.com", false, E(NONE), K(GATEWAY), K(TERMINATE), "gateway", 80, 0 },
	{ "gateway-80.example.com", false, E(NONE), K(GATEWAY), K(TERMINATE), "gateway", 80, 0 },
	{ .sni = "gateway-443s.example.com", .insecure = false, .err = E(SPECIAL_PASSTHROUGH) },
	{ .sni = "localhost-8080.example.com", .insecure = false, .err = E(LOCALHOST_DISABLED) },
	{ "localhost-8080.example.com", true, E(NONE), K(LOCALHOST), K(TERMINATE), "localhost",
	  8080, 0 },
	{ "localhost-s.example.com", true, E(NONE), K(LOCALHOST), K(PASSTHROUGH), "localhost", 443,
	  0 },
	/* not exactly a base domain: custom domain, passthrough, port from TXT */
	{ "app.mydomain.net", false, E(NONE), K(CUSTOM), K(PASSTHROUGH), "", 0, -1 },
	{ "a.b.example.com", false, E(NONE), K(CUSTOM), K(PASSTHROUGH), "", 0, -1 },
	{ "abc.notexample.com", false, E(NONE), K(CUSTOM), K(PASSTHROUGH), "", 0, -1 },
	{ "abc.dstack.example.org.evil", false, E(NONE), K(CUSTOM), K(PASSTHROUGH), "", 0, -1 },
	{ "example.com", false, E(NONE), K(CUSTOM), K(PASSTHROUGH), "", 0, -1 },
	{ .sni = "localhost", .insecure = true, .err = E(NO_DOT) },
	{ .sni = "", .insecure = false, .err = E(NO_SNI) },
};

static void test_grammar_rows(void **state)
{
	struct proxy_route_config cfg = { bases, 2, false };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct row *r = &rows[i];
		struct proxy_route out;
		enum proxy_route_error e;

		cfg.insecure_localhost = r->insecure;
		e = proxy_route_parse(&cfg, r->sni, strlen(r->sni), &out);
		if (e != r->err)
			fail_msg("%s: got %s, want %s", r->sni, proxy_route_error_name(e),
				 proxy_route_error_name(r->err));
		if (e != E(NONE))
			continue;
		assert_int_equal(out.kind, r->kind);
		assert_int_equal(out.mode, r->mode);
		assert_string_equal(out.id, r->id);
		assert_int_equal(out.port, r->port);
		assert_int_equal(out.base_index, r->base);
	}
}

static void test_port_explicit_and_limits(void **state)
{
	static const char *const one[] = { "example.com" };
	struct proxy_route_config cfg = { one, 1, false };
	struct proxy_route out;
	char name[300];

	(void)state;
	assert_int_equal(proxy_route_parse(&cfg, "abc-80.example.com", 18, &out), E(NONE));
	assert_true(out.port_explicit);
	assert_int_equal(proxy_route_parse(&cfg, "abc.example.com", 15, &out), E(NONE));
	assert_false(out.port_explicit);
	/* the length bounds the read: "abc.example.com" cut to "abc.example.co" */
	assert_int_equal(proxy_route_parse(&cfg, "abc.example.com", 14, &out), E(NONE));
	assert_int_equal(out.kind, K(CUSTOM));
	memset(name, 'a', 64);
	strcpy(name + 64, ".example.com");
	assert_int_equal(proxy_route_parse(&cfg, name, strlen(name), &out), E(ID_TOO_LONG));
	memset(name, 'a', 254);
	assert_int_equal(proxy_route_parse(&cfg, name, 254, &out), E(NAME_TOO_LONG));
	/* no base domains configured: everything with a dot is a custom domain */
	cfg.n_base_domains = 0;
	assert_int_equal(proxy_route_parse(&cfg, "abc-s.example.com", 17, &out), E(NONE));
	assert_int_equal(out.kind, K(CUSTOM));
	assert_string_equal(proxy_route_error_name(E(BOTH_SG)), "both-s-and-g");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grammar_rows),
		cmocka_unit_test(test_port_explicit_and_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
