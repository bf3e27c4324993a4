/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the DCAP verifier's C tests: reading quotes (binary or hex text) and collateral
 * from the shared vectors, verifying with assertions on the verdict (status and advisory IDs,
 * or the error code and a fragment of the reason), and byte-level quote surgery.
 */
#ifndef MOONSTACK_DCAP_TEST_H
#define MOONSTACK_DCAP_TEST_H

#include <ctype.h>
#include <string.h>

#include "test_vectors.h"

#include "dcap/dcap.h"

/* A quote vector: binary, or hex text with an optional 0x prefix and whitespace. */
static inline uint8_t *dt_quote(const char *rel, size_t *len)
{
	size_t n;
	char *raw = read_vector(rel, &n);
	if (!strstr(rel, ".hex") && !strstr(rel, "hex.txt")) {
		*len = n;
		return (uint8_t *)raw;
	}
	uint8_t *out = malloc(n / 2 + 1);
	assert_non_null(out);
	size_t i = 0, k = 0;
	if (n >= 2 && raw[0] == '0' && (raw[1] == 'x' || raw[1] == 'X'))
		i = 2;
	while (i < n) {
		if (isspace((unsigned char)raw[i])) {
			i++;
			continue;
		}
		assert_true(i + 1 < n && isxdigit((unsigned char)raw[i]) &&
			    isxdigit((unsigned char)raw[i + 1]));
		char byte[3] = { raw[i], raw[i + 1], 0 };
		out[k++] = (uint8_t)strtoul(byte, NULL, 16);
		i += 2;
	}
	free(raw);
	*len = k;
	return out;
}

/* Collateral from a JSON vector. */
static inline struct dcap_collateral *dt_collateral(const char *rel)
{
	size_t n;
	char *json = read_vector(rel, &n);
	struct dcap_collateral *c = NULL;
	struct dcap_error err = { 0 };
	int rc = dcap_collateral_from_json(json, n, &c, &err);
	free(json);
	if (rc)
		fail_msg("collateral %s: %s: %s", rel, err.code, err.msg);
	return c;
}

/* A verifier trusting the Intel root (or @p root with @p simulator). */
static inline struct dcap_verifier *dt_verifier(const uint8_t *root, size_t root_len,
						bool simulator)
{
	struct dcap_verifier_opts o = { .root_ca = root,
					.root_ca_len = root_len,
					.simulator = simulator };
	struct dcap_verifier *v = NULL;
	struct dcap_error err = { 0 };
	if (dcap_verifier_new(&o, &v, &err))
		fail_msg("verifier: %s: %s", err.code, err.msg);
	return v;
}

/* Verify and expect success with @p status and exactly the advisory IDs in @p ids
 * (NULL-terminated). Returns the report for further checks. */
static inline struct dcap_report dt_expect_ok(struct dcap_verifier *v, const uint8_t *q, size_t len,
					      struct dcap_collateral *c, int64_t now,
					      const char *status, const char *const *ids)
{
	struct dcap_report r;
	struct dcap_error err = { 0 };
	if (dcap_verify(v, q, len, c, now, &r, &err))
		fail_msg("expected %s at %lld, got %s: %s", status, (long long)now, err.code,
			 err.msg);
	assert_string_equal(dcap_tcb_status_name(r.status), status);
	size_t n = 0;
	while (ids && ids[n])
		n++;
	if (r.n_advisory_ids != n)
		fail_msg("expected %zu advisory IDs, got %zu", n, r.n_advisory_ids);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(r.advisory_ids[i], ids[i]);
	return r;
}

/* Verify and expect failure with @p code and a reason containing @p fragment. */
static inline void dt_expect_fail(struct dcap_verifier *v, const uint8_t *q, size_t len,
				  struct dcap_collateral *c, int64_t now, const char *code,
				  const char *fragment)
{
	struct dcap_report r;
	struct dcap_error err = { 0 };
	if (dcap_verify(v, q, len, c, now, &r, &err) == 0)
		fail_msg("expected %s (%s) at %lld, got %s", code, fragment, (long long)now,
			 dcap_tcb_status_name(r.status));
	if (strcmp(err.code, code) != 0 || !strstr(err.msg, fragment))
		fail_msg("expected %s containing \"%s\", got %s: %s", code, fragment, err.code,
			 err.msg);
}

/* A copy of @p q with bit 0 of byte @p off flipped. */
static inline uint8_t *dt_flip(const uint8_t *q, size_t len, size_t off)
{
	uint8_t *c = malloc(len);
	assert_non_null(c);
	assert_true(off < len);
	memcpy(c, q, len);
	c[off] ^= 0x01;
	return c;
}

#endif
