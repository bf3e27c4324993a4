/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of x509_verify(): a root -> intermediate -> leaf chain made with x509_cert_create()
 * verifies, and fails for the right reason when the root is wrong, the intermediate is missing,
 * the leaf is expired or not yet valid, the purpose or host name does not match, or a CA's path
 * length constraint is exceeded; partial chains need the flag.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509_vfy.h>

#include "x509/x509.h"

#define T0  1700000000 /* validity windows start here */
#define DAY 86400

struct pki {
	EVP_PKEY *root_key, *mid_key, *leaf_key, *rogue_key;
	X509 *root, *mid, *leaf, *rogue;
};

static X509 *make(const struct x509_cert_opts *o, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
	struct x509_error err = { 0 };
	X509 *x = x509_cert_create(o, key, issuer, ikey, &err);
	if (!x)
		fail_msg("x509_cert_create: %s: %s", err.code, err.msg);
	return x;
}

static struct x509_cert_opts ca_opts(const char *cn, int pathlen)
{
	struct x509_cert_opts o = {
		.cn = cn,
		.org = "Test",
		.ca = true,
		.pathlen = pathlen,
		.key_usage = X509_KU_DIGITAL_SIGNATURE | X509_KU_KEY_CERT_SIGN | X509_KU_CRL_SIGN,
		.not_before = T0,
		.not_after = T0 + 3650 * DAY,
	};
	return o;
}

static const char *leaf_sans[] = { "svc.example.com", "127.0.0.1" };

static struct x509_cert_opts leaf_opts(unsigned eku)
{
	struct x509_cert_opts o = {
		.cn = "svc.example.com",
		.sans = leaf_sans,
		.n_sans = 2,
		.pathlen = -1,
		.key_usage = X509_KU_DIGITAL_SIGNATURE,
		.eku = eku,
		.not_before = T0 + DAY,
		.not_after = T0 + 30 * DAY,
	};
	return o;
}

static int setup(void **state)
{
	struct pki *p = calloc(1, sizeof(*p));
	p->root_key = x509_key_generate(NULL);
	p->mid_key = x509_key_generate(NULL);
	p->leaf_key = x509_key_generate(NULL);
	p->rogue_key = x509_key_generate(NULL);
	struct x509_cert_opts o = ca_opts("Root", 1);
	p->root = make(&o, p->root_key, NULL, NULL);
	o = ca_opts("Intermediate", 0);
	p->mid = make(&o, p->mid_key, p->root, p->root_key);
	o = leaf_opts(X509_EKU_SERVER_AUTH);
	p->leaf = make(&o, p->leaf_key, p->mid, p->mid_key);
	// a root with the same name as the real one, but another key
	o = ca_opts("Root", 1);
	p->rogue = make(&o, p->rogue_key, NULL, NULL);
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct pki *p = *state;
	X509_free(p->root);
	X509_free(p->mid);
	X509_free(p->leaf);
	X509_free(p->rogue);
	EVP_PKEY_free(p->root_key);
	EVP_PKEY_free(p->mid_key);
	EVP_PKEY_free(p->leaf_key);
	EVP_PKEY_free(p->rogue_key);
	free(p);
	return 0;
}

/* Verify and return the X509_V_ERR_* (X509_V_OK on success). */
static int check(X509 *leaf, X509 *mid, X509 *root, const struct x509_verify_opts *o)
{
	struct x509_error err = { 0 };
	X509 *chain[] = { mid };
	int rc = x509_verify(leaf, chain, mid ? 1 : 0, &root, 1, o, &err);
	if (rc == 0)
		return X509_V_OK;
	assert_string_equal(err.code, "EVERIFY");
	assert_true(err.verify_error != X509_V_OK);
	assert_non_null(strstr(err.msg, "depth"));
	return err.verify_error;
}

static void test_valid_chain(void **state)
{
	struct pki *p = *state;
	struct x509_verify_opts o = { .time = T0 + 2 * DAY };
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_OK);
	o.purpose = X509_FOR_SERVER;
	o.hostname = "svc.example.com";
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_OK);
	o.hostname = "127.0.0.1";
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_OK);
	// the intermediate itself verifies against the root
	o.hostname = NULL;
	o.purpose = X509_FOR_ANY;
	assert_int_equal(check(p->mid, NULL, p->root, &o), X509_V_OK);
}

static void test_wrong_root(void **state)
{
	struct pki *p = *state;
	struct x509_verify_opts o = { .time = T0 + 2 * DAY };
	int e = check(p->leaf, p->mid, p->rogue, &o);
	assert_true(e == X509_V_ERR_CERT_SIGNATURE_FAILURE ||
		    e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
		    e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT);
	// the leaf alone (no intermediate) does not reach the root
	assert_int_equal(check(p->leaf, NULL, p->root, &o),
			 X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	// a self-signed leaf trusted by nobody
	assert_int_equal(check(p->rogue, NULL, p->root, &o),
			 X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
}

static void test_validity(void **state)
{
	struct pki *p = *state;
	struct x509_verify_opts o = { .time = T0 + 31 * DAY };
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_ERR_CERT_HAS_EXPIRED);
	o.time = T0 + DAY / 2; // the CAs are valid, the leaf not yet
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_ERR_CERT_NOT_YET_VALID);
	// now (default time): the leaf expired years ago
	assert_int_equal(check(p->leaf, p->mid, p->root, NULL), X509_V_ERR_CERT_HAS_EXPIRED);
}

static void test_purpose_and_host(void **state)
{
	struct pki *p = *state;
	struct x509_cert_opts lo = leaf_opts(X509_EKU_CLIENT_AUTH);
	X509 *client = make(&lo, p->leaf_key, p->mid, p->mid_key);
	struct x509_verify_opts o = { .time = T0 + 2 * DAY, .purpose = X509_FOR_CLIENT };
	assert_int_equal(check(client, p->mid, p->root, &o), X509_V_OK);
	o.purpose = X509_FOR_SERVER;
	assert_int_equal(check(client, p->mid, p->root, &o), X509_V_ERR_INVALID_PURPOSE);
	o.purpose = X509_FOR_CLIENT;
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_ERR_INVALID_PURPOSE);
	X509_free(client);
	o.purpose = X509_FOR_ANY;
	o.hostname = "other.example.com";
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_ERR_HOSTNAME_MISMATCH);
	o.hostname = "10.0.0.1";
	assert_int_equal(check(p->leaf, p->mid, p->root, &o), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

static void test_pathlen(void **state)
{
	struct pki *p = *state;
	// root with pathlen 0 -> intermediate CA -> leaf: one CA too many below the root
	EVP_PKEY *rk = x509_key_generate(NULL);
	struct x509_cert_opts o = ca_opts("Strict Root", 0);
	X509 *strict = make(&o, rk, NULL, NULL);
	o = ca_opts("Sub CA", -1);
	X509 *sub = make(&o, p->mid_key, strict, rk);
	o = leaf_opts(X509_EKU_SERVER_AUTH);
	X509 *leaf = make(&o, p->leaf_key, sub, p->mid_key);
	struct x509_verify_opts vo = { .time = T0 + 2 * DAY };
	assert_int_equal(check(leaf, sub, strict, &vo), X509_V_ERR_PATH_LENGTH_EXCEEDED);
	// the same leaf issued directly by the strict root is fine
	X509 *direct = make(&o, p->leaf_key, strict, rk);
	assert_int_equal(check(direct, NULL, strict, &vo), X509_V_OK);
	// a leaf "issued" by a non-CA certificate is refused
	X509 *by_leaf = make(&o, p->rogue_key, p->leaf, p->leaf_key);
	assert_int_equal(check(by_leaf, p->leaf, p->mid,
			       &(struct x509_verify_opts){ .time = T0 + 2 * DAY, .partial = true }),
			 X509_V_ERR_INVALID_CA);
	X509_free(by_leaf);
	X509_free(direct);
	X509_free(leaf);
	X509_free(sub);
	X509_free(strict);
	EVP_PKEY_free(rk);
}

static void test_partial(void **state)
{
	struct pki *p = *state;
	// trusting only the intermediate: refused unless partial chains are allowed
	struct x509_verify_opts o = { .time = T0 + 2 * DAY };
	// (the anchor is found, but not its own issuer)
	assert_int_equal(check(p->leaf, NULL, p->mid, &o), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT);
	o.partial = true;
	assert_int_equal(check(p->leaf, NULL, p->mid, &o), X509_V_OK);
}

static void test_bad_input(void **state)
{
	struct pki *p = *state;
	struct x509_error err;
	assert_int_equal(x509_verify(p->leaf, NULL, 0, NULL, 0, NULL, &err), -1);
	assert_string_equal(err.code, "EINVAL");
	assert_int_equal(x509_verify(NULL, NULL, 0, &p->root, 1, NULL, &err), -1);
	assert_string_equal(err.code, "EINVAL");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_valid_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_root, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purpose_and_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pathlen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
