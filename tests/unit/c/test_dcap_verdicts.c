/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DCAP verdicts on real Intel-signed quotes (native/dcap): every sample of
 * vectors/README.md §1 at its stated time (status and exact advisory IDs, or the expected
 * error), the time-window cases of derived/dcap-qvl-js-verdicts.json — including the PCK CRL
 * past its nextUpdate, which the JS verifier wrongly accepts — the upstream "now" rule from
 * the collateral's own dates, trailing padding, and the roots a verifier accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dcap_test.h"

#define TDX_NOW	 1752919234 /* tdx_quote: min(nextUpdate) - 1 */
#define SGX_NOW	 1752919277 /* sgx_quote */
#define V5_NOW	 1774003274 /* tdx_quote_outdated */
#define NEAR_NOW 1759388630 /* near quote, upstream rule */

static const char *const none[] = { NULL };

struct sample {
	const char *quote, *collateral;
	int64_t now;
	const char *status;	 /* expected status, or NULL for an error */
	const char *const *ids;	 /* expected advisory IDs */
	const char *code, *frag; /* expected error */
};

static const char *const sgx_ids[] = { "INTEL-SA-00289", "INTEL-SA-00615", NULL };

static const struct sample samples[] = {
	/* vectors/README.md: expected verdicts at the upstream times */
	{ "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", SGX_NOW,
	  "ConfigurationAndSWHardeningNeeded", sgx_ids, NULL, NULL },
	{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW, "UpToDate", none,
	  NULL, NULL },
	{ "dcap-qvl/tdx_quote_outdated", "dcap-qvl/tdx_quote_outdated_collateral.json", V5_NOW,
	  NULL, NULL, "ETCB", "No matching TCB level found" },
	{ "dcap-qvl/near_quote_hex.txt", "dcap-qvl/near_quote_collateral.json", 1757462400,
	  "UpToDate", none, NULL, NULL },
	{ "dcap-qvl/near_quote_hex.txt", "dcap-qvl/near_quote_collateral.json", NEAR_NOW,
	  "UpToDate", none, NULL, NULL },
	{ "dcap-qvl/tdx-quote.hex", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW, NULL, NULL,
	  "ETCB", "No matching TCB level found for CPUSVN 02020202030100030000000000000000" },
	{ "dcap-qvl/quote-from-tappd.hex", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW, NULL,
	  NULL, "ETCB", "No matching TCB level found for CPUSVN 02020202030100030000000000000000" },
	/* mid-window times of the mobile tests */
	{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", 1751624655, "UpToDate", none,
	  NULL, NULL },
	{ "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", 1751624924,
	  "ConfigurationAndSWHardeningNeeded", sgx_ids, NULL, NULL },
	/* derived/dcap-qvl-js-verdicts.json: time windows */
	{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", 1752920164, NULL, NULL,
	  "EEXPIRED", "TCB info expired at its nextUpdate 2025-07-19T10:16:03Z" },
	/* at exactly tcbInfo.nextUpdate the JS port says UpToDate; the PCK CRL expired at 10:00:35
	 */
	{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", 1752920163, NULL, NULL,
	  "ECRL", "the PCK CRL expired at its nextUpdate 2025-07-19T10:00:35Z" },
	{ "dcap-qvl/near_quote_hex.txt", "dcap-qvl/near_quote_collateral.json", 1759389004, NULL,
	  NULL, "EEXPIRED", "QE identity expired at its nextUpdate 2025-10-02T07:10:03Z" },
	/* the JS verifier accepts this one: it checks neither CRL expiry nor CRL signatures */
	{ "dcap-qvl/near_quote_hex.txt", "dcap-qvl/near_quote_collateral.json", 1759388632, NULL,
	  NULL, "ECRL", "the PCK CRL expired at its nextUpdate 2025-10-02T07:03:51Z" },
	/* nextUpdate itself is still inside the window */
	{ "dcap-qvl/near_quote_hex.txt", "dcap-qvl/near_quote_collateral.json", 1759388631,
	  "UpToDate", none, NULL, NULL },
	{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", 1750320802, NULL, NULL,
	  "EEXPIRED", "TCB info is not valid before its issueDate 2025-06-19T10:16:03Z" },
	{ "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", 1750320802, NULL, NULL,
	  "EEXPIRED", "TCB info is not valid before its issueDate" },
	{ "dcap-qvl/tdx_quote_outdated", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW, NULL, NULL,
	  "EEXPIRED",
	  "PCK certificate chain: certificate CN=Intel SGX PCK Certificate is not valid before "
	  "2026-01-23" },
	/* the root CA CRL is checked first, so its expiry is reported even when all expired */
	{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", 1775215318, NULL, NULL,
	  "ECRL", "the root CA CRL expired at its nextUpdate 2026-04-03T11:21:57Z" },
	/* the v5 quote with the wrong platform's collateral */
	{ "dcap-qvl/tdx_quote_outdated", "dcap-qvl/near_quote_collateral.json", V5_NOW, NULL, NULL,
	  "EEXPIRED", "TCB info expired" },
};

static void test_samples(void **state)
{
	(void)state;
	struct dcap_verifier *v = dt_verifier(NULL, 0, false);

	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		const struct sample *s = &samples[i];
		size_t len;
		uint8_t *q = dt_quote(s->quote, &len);
		struct dcap_collateral *c = dt_collateral(s->collateral);
		print_message("%s @ %lld -> %s\n", s->quote, (long long)s->now,
			      s->status ? s->status : s->code);
		if (s->status)
			dt_expect_ok(v, q, len, c, s->now, s->status, s->ids);
		else
			dt_expect_fail(v, q, len, c, s->now, s->code, s->frag);
		dcap_collateral_free(c);
		free(q);
	}
	dcap_verifier_free(v);
}

/* tests/verify_quote.rs's rule: now = min(nextUpdate of TCB info, QE identity, both CRLs) - 1,
 * and it must not be before any issue date. */
static void test_now_rule(void **state)
{
	(void)state;
	static const struct {
		const char *collateral;
		int64_t now;
	} cases[] = {
		{ "dcap-qvl/tdx_quote_collateral.json", TDX_NOW },
		{ "dcap-qvl/sgx_quote_collateral.json", SGX_NOW },
		{ "dcap-qvl/tdx_quote_outdated_collateral.json", V5_NOW },
		{ "dcap-qvl/near_quote_collateral.json", NEAR_NOW },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dcap_collateral *c = dt_collateral(cases[i].collateral);
		struct dcap_collateral_info info;
		dcap_collateral_get_info(c, &info);
		assert_int_equal(info.not_after - 1, cases[i].now);
		assert_true(info.not_before <= cases[i].now);
		dcap_collateral_free(c);
	}
	struct dcap_collateral *c = dt_collateral("dcap-qvl/tdx_quote_collateral.json");
	struct dcap_collateral_info info;
	dcap_collateral_get_info(c, &info);
	assert_string_equal(info.tee, "TDX");
	assert_string_equal(info.qe_identity_id, "TD_QE");
	assert_int_equal(info.tcb_info_version, 3);
	assert_int_equal(info.tcb_evaluation_data_number, 17);
	assert_memory_equal(info.fmspc, "\xb0\xc0\x6f\x00\x00\x00", 6);
	assert_int_equal(info.tcb_info_next_update, 1752920163); /* 2025-07-19T10:16:03Z */
	assert_int_equal(info.pck_crl_next_update, 1752919235);	 /* 2025-07-19T10:00:35Z */
	dcap_collateral_free(c);
}

/* The report's fields: README's measurement table, the PCK extension, the statuses. */
static void test_report_fields(void **state)
{
	(void)state;
	struct dcap_verifier *v = dt_verifier(NULL, 0, false);
	size_t len;
	uint8_t *q = dt_quote("dcap-qvl/tdx_quote", &len);
	struct dcap_collateral *c = dt_collateral("dcap-qvl/tdx_quote_collateral.json");
	struct dcap_report r = dt_expect_ok(v, q, len, c, TDX_NOW, "UpToDate", none);
	char hex[129];

	assert_true(r.tdx);
	assert_false(r.td15);
	assert_false(r.simulated);
	assert_int_equal(r.quote_version, 4);
	static const char digits[] = "0123456789abcdef";
#define HEX(p, n)                                               \
	do {                                                    \
		for (size_t k_ = 0; k_ < (n); k_++) {           \
			hex[2 * k_] = digits[(p)[k_] >> 4];     \
			hex[2 * k_ + 1] = digits[(p)[k_] & 15]; \
		}                                               \
		hex[2 * (n)] = '\0';                            \
	} while (0)
	HEX(r.mr_td, 48);
	assert_string_equal(hex, "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
				 "de03ae6dc5f87f27428b2538873118b7");
	HEX(r.rtmr[2], 48);
	assert_string_equal(hex, "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3"
				 "ba80b70870d7330733642e01d48c3132");
	HEX(r.fmspc, 6);
	assert_string_equal(hex, "b0c06f000000");
	HEX(r.cpu_svn, 16);
	assert_string_equal(hex, "03030202040100050000000000000000");
	assert_int_equal(r.pce_svn, 11);
	HEX(r.tee_tcb_svn, 2);
	assert_string_equal(hex, "0601");
	assert_int_equal(r.qe_isv_svn, 6);
	assert_int_equal(r.platform_status, DCAP_UP_TO_DATE);
	assert_int_equal(r.qe_status, DCAP_UP_TO_DATE);
	assert_string_equal(r.tcb_date, "2024-03-13T00:00:00Z");
	dcap_collateral_free(c);
	free(q);

	/* the v5 quote: TD report 1.5 fields are reported */
	q = dt_quote("dcap-qvl/tdx_quote_outdated", &len);
	c = dt_collateral("dcap-qvl/tdx_quote_outdated_collateral.json");
	dt_expect_fail(v, q, len, c, V5_NOW, "ETCB", "TEE_TCB_SVN 07010300");
	dcap_collateral_free(c);
	free(q);

	/* SGX: the enclave's identity */
	q = dt_quote("dcap-qvl/sgx_quote", &len);
	c = dt_collateral("dcap-qvl/sgx_quote_collateral.json");
	r = dt_expect_ok(v, q, len, c, SGX_NOW, "ConfigurationAndSWHardeningNeeded", sgx_ids);
	assert_false(r.tdx);
	assert_int_equal(r.quote_version, 3);
	HEX(r.mr_enclave, 32);
	assert_string_equal(hex,
			    "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
	HEX(r.mr_signer, 32);
	assert_string_equal(hex,
			    "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6");
	assert_memory_equal(r.report_data, "Hello, world!\0\0", 15);
	HEX(r.fmspc, 6);
	assert_string_equal(hex, "00a067110000");
#undef HEX
	dcap_collateral_free(c);
	free(q);
	dcap_verifier_free(v);
}

/* Trailing bytes after the signature data are ignored: drop the 70 zero bytes, or add more. */
static void test_trailing(void **state)
{
	(void)state;
	struct dcap_verifier *v = dt_verifier(NULL, 0, false);
	struct dcap_collateral *c = dt_collateral("dcap-qvl/tdx_quote_collateral.json");
	size_t len;
	uint8_t *q = dt_quote("dcap-qvl/tdx_quote", &len);

	assert_int_equal(len, 5006);
	for (size_t i = len - 70; i < len; i++)
		assert_int_equal(q[i], 0);
	dt_expect_ok(v, q, len - 70, c, TDX_NOW, "UpToDate", none);
	uint8_t *longer = calloc(1, len + 100);
	memcpy(longer, q, len);
	dt_expect_ok(v, longer, len + 100, c, TDX_NOW, "UpToDate", none);
	/* one byte short of the signature data is malformed */
	dt_expect_fail(v, q, len - 71, c, TDX_NOW, "EQUOTE", "truncated");
	free(longer);
	free(q);
	dcap_collateral_free(c);
	dcap_verifier_free(v);
}

/* The Intel root given explicitly (DER or PEM) is the same verifier; another root is refused
 * unless the caller asks for a simulator root; a simulator verifier never takes Intel's. */
static void test_roots(void **state)
{
	(void)state;
	size_t der_len, len;
	uint8_t *der = read_vector("dcap-qvl/TrustedRootCA.der", &der_len);
	size_t emb_len;
	const uint8_t *emb = dcap_intel_root_ca(&emb_len);
	assert_int_equal(der_len, emb_len);
	assert_memory_equal(der, emb, der_len);

	struct dcap_collateral *c = dt_collateral("dcap-qvl/tdx_quote_collateral.json");
	uint8_t *q = dt_quote("dcap-qvl/tdx_quote", &len);
	struct dcap_verifier *v = dt_verifier(der, der_len, false);
	dt_expect_ok(v, q, len, c, TDX_NOW, "UpToDate", none);
	size_t root_len;
	const uint8_t *root = dcap_verifier_root(v, &root_len);
	assert_int_equal(root_len, der_len);
	assert_memory_equal(root, der, der_len);
	dcap_verifier_free(v);

	/* simulator = true needs a root; garbage is not a root */
	struct dcap_verifier_opts o = { 0 };
	struct dcap_error err = { 0 };
	o.simulator = true;
	assert_int_equal(dcap_verifier_new(&o, &v, &err), -1);
	assert_string_equal(err.code, "EINVAL");
	/* Intel's root with simulator = true is still Intel's: reports are not simulated */
	o.root_ca = der;
	o.root_ca_len = der_len;
	assert_int_equal(dcap_verifier_new(&o, &v, &err), 0);
	assert_false(dcap_verifier_simulated(v));
	assert_false(dt_expect_ok(v, q, len, c, TDX_NOW, "UpToDate", none).simulated);
	dcap_verifier_free(v);
	o.simulator = false;
	o.root_ca = (const uint8_t *)"not a certificate";
	o.root_ca_len = 17;
	assert_int_equal(dcap_verifier_new(&o, &v, &err), -1);
	assert_string_equal(err.code, "ECHAIN");
	free(q);
	free(der);
	dcap_collateral_free(c);
}

/* The collateral's own structure: missing members, bad hex, a bad signature size. */
static void test_collateral_errors(void **state)
{
	(void)state;
	static const struct {
		const char *json, *frag;
	} cases[] = {
		{ "", "invalid JSON" },
		{ "[]", "not a JSON object" },
		{ "{\"root_ca_crl\": \"00\"}", "pck_crl is missing" },
		{ "{\"a\":1,\"a\":2}", "duplicate key" },
		{ "{} x", "trailing characters" },
	};
	struct dcap_collateral *c;
	struct dcap_error err = { 0 };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
			dcap_collateral_from_json(cases[i].json, strlen(cases[i].json), &c, &err),
			-1);
		assert_string_equal(err.code, "ECOLLATERAL");
		if (!strstr(err.msg, cases[i].frag))
			fail_msg("%s: expected \"%s\", got %s", cases[i].json, cases[i].frag,
				 err.msg);
	}
	/* a real collateral with one member changed */
	size_t n;
	char *json = read_vector("dcap-qvl/tdx_quote_collateral.json", &n);
	struct dcap_collateral_input in;
	assert_int_equal(dcap_collateral_input_from_json(json, n, &in, &err), 0);
	assert_int_equal(in.tcb_info_signature_len, 64);
	in.tcb_info_signature_len = 63;
	assert_int_equal(dcap_collateral_new(&in, &c, &err), -1);
	assert_non_null(strstr(err.msg, "tcb_info_signature must be 64 bytes"));
	in.tcb_info_signature_len = 64;
	in.pck_crl[10] ^= 0xff; /* inside the DER lengths */
	in.pck_crl_len = 20;
	assert_int_equal(dcap_collateral_new(&in, &c, &err), -1);
	assert_string_equal(err.code, "ECOLLATERAL");
	assert_non_null(strstr(err.msg, "PCK CRL: not a DER CRL"));
	dcap_collateral_input_free(&in);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),	      cmocka_unit_test(test_now_rule),
		cmocka_unit_test(test_report_fields), cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_roots),	      cmocka_unit_test(test_collateral_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
