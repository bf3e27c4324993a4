/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/proxy route snapshot: building (duplicates refused, bad addresses refused), the
 * lookups a connection makes (instance id first, else app id; route keys), the backend choice
 * of §6.4 (healthy = handshake younger than handshake_stale, most recent first, top N, one
 * random healthy instance with top_n 0), the port policy of §6.5 (none ⇒ deny, restrict ⇒
 * listed only, pp flag) and the map under many keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy_internal.h"

static char err[256];

static void add(struct proxy_snapshot *s, const char *id, const char *app, const char *ip,
		double hs)
{
	struct proxy_instance_spec in = { .id = id, .app_id = app, .ip = ip, .last_handshake = hs };
	assert_int_equal(proxy_snapshot_add_instance(s, &in, err, sizeof(err)), 0);
}

static void test_lookups(void **state)
{
	struct proxy_snapshot *s = proxy_snapshot_new(3);
	add(s, "i1", "a1", "10.0.0.2", 100);
	add(s, "i2", "a1", "10.0.0.3", 200);
	add(s, "a1", "a9", "10.0.0.4", 50); /* an instance named like an app: instance first */
	struct proxy_decision d = { .allow = true, .to_port = 8080, .pp = 1 };
	assert_int_equal(proxy_snapshot_add_route(s, "i1:80", &d, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_version(s), 3);

	struct px_instance *x = px_snapshot_instance(s, "i1");
	assert_non_null(x);
	assert_string_equal(x->app_id, "a1");
	assert_ptr_equal(x->app, px_snapshot_app(s, "a1"));
	assert_string_equal(px_snapshot_instance(s, "a1")->app_id, "a9");
	assert_null(px_snapshot_instance(s, "i3"));
	assert_null(px_snapshot_app(s, "i1"));
	assert_int_equal(px_snapshot_app(s, "a1")->nmembers, 2);
	const struct proxy_decision *r = px_snapshot_route(s, "i1:80");
	assert_non_null(r);
	assert_int_equal(r->to_port, 8080);
	assert_null(px_snapshot_route(s, "i1:81"));
	assert_null(px_snapshot_route(s, "i1:8"));
	/* refcount: two references, freed with the last */
	proxy_snapshot_ref(s);
	proxy_snapshot_unref(s);
	proxy_snapshot_unref(s);
}

static void test_build_errors(void **state)
{
	struct proxy_snapshot *s = proxy_snapshot_new(1);
	struct proxy_instance_spec bad = { .id = "x", .app_id = "a", .ip = "10.0.0.256" };
	assert_int_equal(proxy_snapshot_add_instance(s, &bad, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "numeric"));
	add(s, "dup", "a", "::1", 1);
	add(s, "dup", "a", "::1", 1);
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "duplicate instance dup"));
	proxy_snapshot_unref(s);

	s = proxy_snapshot_new(1);
	assert_int_equal(proxy_snapshot_add_domain(s, "a.example", NULL, NULL, err, sizeof(err)),
			 0);
	assert_int_equal(proxy_snapshot_add_domain(s, "A.EXAMPLE", NULL, NULL, err, sizeof(err)),
			 -1);
	assert_int_equal(proxy_snapshot_add_app(s, "a", true, 3, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_add_app(s, "a", true, 3, err, sizeof(err)), -1);
	assert_int_equal(proxy_snapshot_set(s, false, "nope", 80, 1, 1, err, sizeof(err)), -1);
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), -1);
	assert_int_equal(proxy_snapshot_add_app(s, "b", false, 0, err, sizeof(err)), -1);
	proxy_snapshot_unref(s);
}

static void test_candidates(void **state)
{
	struct proxy_snapshot *s = proxy_snapshot_new(1);
	double now = 10000;
	assert_int_equal(proxy_snapshot_set(s, false, NULL, 0, 1800, 30, err, sizeof(err)), 0);
	add(s, "old", "app", "10.0.0.1", now - 1000);
	add(s, "new", "app", "10.0.0.2", now - 5);
	add(s, "mid", "app", "10.0.0.3", now - 100);
	add(s, "stale", "app", "10.0.0.4", now - 1800); /* exactly stale: not healthy */
	add(s, "never", "app", "10.0.0.5", 0);
	add(s, "mid2", "app", "10.0.0.6", now - 100);
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), 0);
	struct px_app *a = px_snapshot_app(s, "app");
	struct px_instance *out[PROXY_MAX_TOP_N];

	size_t n = px_snapshot_candidates(s, a, now, 3, out, PROXY_MAX_TOP_N);
	assert_int_equal(n, 3);
	assert_string_equal(out[0]->id, "new");
	assert_string_equal(out[1]->id, "mid"); /* ties by id */
	assert_string_equal(out[2]->id, "mid2");
	n = px_snapshot_candidates(s, a, now, 8, out, PROXY_MAX_TOP_N);
	assert_int_equal(n, 4);
	assert_string_equal(out[3]->id, "old");
	/* later: fewer are healthy */
	n = px_snapshot_candidates(s, a, now + 1650, 8, out, PROXY_MAX_TOP_N);
	assert_int_equal(n, 3);
	n = px_snapshot_candidates(s, a, now + 5000, 8, out, PROXY_MAX_TOP_N);
	assert_int_equal(n, 0);
	/* top_n 0: one random healthy instance; over many draws, every healthy one comes up */
	bool seen[4] = { false };
	const char *healthy[4] = { "new", "mid", "mid2", "old" };
	for (int i = 0; i < 400; i++) {
		assert_int_equal(px_snapshot_candidates(s, a, now, 0, out, PROXY_MAX_TOP_N), 1);
		for (int k = 0; k < 4; k++)
			seen[k] = seen[k] || strcmp(out[0]->id, healthy[k]) == 0;
		assert_true(strcmp(out[0]->id, "stale") && strcmp(out[0]->id, "never"));
	}
	for (int k = 0; k < 4; k++)
		assert_true(seen[k]);
	proxy_snapshot_unref(s);
}

static void test_port_policy(void **state)
{
	struct proxy_snapshot *s = proxy_snapshot_new(1);
	uint16_t ports[] = { 80, 8443 };
	bool pp[] = { false, true };
	struct proxy_instance_spec none = { .id = "none", .app_id = "a", .ip = "10.0.0.1" };
	struct proxy_instance_spec open = { .id = "open",
					    .app_id = "a",
					    .ip = "10.0.0.1",
					    .has_ports = true,
					    .ports = ports,
					    .pp = pp,
					    .nports = 2 };
	struct proxy_instance_spec strict = open;
	strict.id = "strict";
	strict.restrict_ports = true;
	assert_int_equal(proxy_snapshot_add_instance(s, &none, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_add_instance(s, &open, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_add_instance(s, &strict, err, sizeof(err)), 0);
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), 0);
	bool flag = true;
	assert_false(px_port_allowed(px_snapshot_instance(s, "none"), 80, &flag));
	assert_false(flag);
	assert_true(px_port_allowed(px_snapshot_instance(s, "open"), 9999, &flag));
	assert_false(flag);
	assert_true(px_port_allowed(px_snapshot_instance(s, "open"), 8443, &flag));
	assert_true(flag);
	assert_true(px_port_allowed(px_snapshot_instance(s, "strict"), 80, &flag));
	assert_false(flag);
	assert_false(px_port_allowed(px_snapshot_instance(s, "strict"), 9999, &flag));
	proxy_snapshot_unref(s);
}

static void test_map_many(void **state)
{
	struct proxy_snapshot *s = proxy_snapshot_new(1);
	char id[32], ip[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof(id), "inst%d", i);
		snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
		add(s, id, i % 2 ? "odd" : "even", ip, i);
	}
	assert_int_equal(proxy_snapshot_finish(s, err, sizeof(err)), 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof(id), "inst%d", i);
		struct px_instance *x = px_snapshot_instance(s, id);
		assert_non_null(x);
		assert_string_equal(x->id, id);
	}
	assert_null(px_snapshot_instance(s, "inst5000"));
	assert_null(px_snapshot_instance(s, "inst"));
	assert_int_equal(px_snapshot_app(s, "odd")->nmembers, 2500);
	/* members sorted by handshake, most recent first */
	assert_string_equal(px_snapshot_app(s, "odd")->members[0]->id, "inst4999");
	proxy_snapshot_unref(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookups),	   cmocka_unit_test(test_build_errors),
		cmocka_unit_test(test_candidates), cmocka_unit_test(test_port_policy),
		cmocka_unit_test(test_map_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
