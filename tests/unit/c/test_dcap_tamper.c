/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Negative suite of the DCAP verifier on real Intel-signed quotes: a bit flip in every signed
 * region of a v4 TDX, a v5 TDX and a v3 SGX quote (header, body, quote signature, attestation
 * key, QE report, its signature, QE auth data), in each certificate of the PCK chain and of the
 * TCB-signing chains, in both CRLs and both collateral signatures, a tampered TCB info and QE
 * identity, swapped CRLs and chains, and a wrong root — each rejected with its code and reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "dcap_test.h"
#include "tdx/tdx_quote.h"

#define TDX_NOW 1752919234
#define SGX_NOW 1752919277
#define V5_NOW	1774003274

static const char *const none[] = { NULL };

/* Flip byte @p off (negative: from the end) of the DER of certificate @p index of the PEM text
 * @p pem (@p len bytes), in place; the base64 keeps its length and line breaks. */
static void pem_flip(char *pem, size_t len, size_t index, long off)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----", end[] = "-----END";
	char *p = pem;
	for (size_t i = 0; i <= index; i++) {
		p = strstr(p, begin);
		assert_non_null(p);
		p += sizeof(begin) - 1;
	}
	char *e = strstr(p, end);
	assert_non_null(e);
	assert_true(e <= pem + len);
	size_t n = 0, pads = 0;
	char *b64 = malloc((size_t)(e - p) + 1);
	for (char *c = p; c < e; c++)
		if (*c != '\n' && *c != '\r') {
			b64[n++] = *c;
			pads += *c == '=';
		}
	uint8_t *der = malloc(n);
	int dlen = EVP_DecodeBlock(der, (unsigned char *)b64, (int)n);
	assert_true(dlen > 0);
	dlen -= (int)pads;
	size_t at = off >= 0 ? (size_t)off : (size_t)(dlen + off);
	assert_true(at < (size_t)dlen);
	der[at] ^= 0x01;
	char *out = malloc(n + 4);
	assert_int_equal(EVP_EncodeBlock((unsigned char *)out, der, dlen), (int)n);
	size_t k = 0;
	for (char *c = p; c < e; c++)
		if (*c != '\n' && *c != '\r')
			*c = out[k++];
	free(out);
	free(der);
	free(b64);
}

/* ---- every signed region of the quote ---- */

struct quote_case {
	const char *quote, *collateral;
	int64_t now;
};

static void flip_expect(struct dcap_verifier *v, const uint8_t *q, size_t len,
			struct dcap_collateral *c, int64_t now, size_t off, const char *code,
			const char *frag)
{
	uint8_t *f = dt_flip(q, len, off);
	print_message("  flip byte %zu -> %s (%s)\n", off, code, frag);
	dt_expect_fail(v, f, len, c, now, code, frag);
	free(f);
}

static void test_quote_regions(void **state)
{
	(void)state;
	static const struct quote_case cases[] = {
		{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW },
		{ "dcap-qvl/tdx_quote_outdated", "dcap-qvl/tdx_quote_outdated_collateral.json",
		  V5_NOW },
		{ "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", SGX_NOW },
	};
	static const char *sig = "the quote signature over the header and body";
	static const char *bind = "does not bind the attestation key";
	static const char *qe = "the QE report signature does not verify";
	struct dcap_verifier *v = dt_verifier(NULL, 0, false);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *q = dt_quote(cases[i].quote, &len);
		struct dcap_collateral *c = dt_collateral(cases[i].collateral);
		struct tdx_quote p;
		struct tdx_error terr;
		assert_int_equal(tdx_quote_parse(q, len, &p, &terr), 0);
		print_message("%s (v%u)\n", cases[i].quote, p.header.version);
		size_t sig_off = (size_t)(p.signature - q),
		       key_off = (size_t)(p.attestation_key - q);
		size_t qe_off = (size_t)(p.qe_report.raw - q);
		size_t qe_sig = (size_t)(p.qe_report_signature - q);
		size_t auth = (size_t)(p.qe_auth_data - q);
		/* header: reserved SVNs and user data are signed; the vendor ID is checked */
		size_t header_signed[] = { 8, 10, 28, 47 };
		for (size_t k = 0; k < 4; k++)
			flip_expect(v, q, len, c, cases[i].now, header_signed[k], "ESIG", sig);
		flip_expect(v, q, len, c, cases[i].now, 12, "EQUOTE", "unknown QE vendor ID");
		flip_expect(v, q, len, c, cases[i].now, 0, "EQUOTE", ""); /* version 2, 4 or 5 */
		flip_expect(v, q, len, c, cases[i].now, 2, "EQUOTE", "attestation key type");
		/* the body, start, middle (report_data for TDX) and end */
		size_t body[] = { p.body_offset, p.body_offset + 1,
				  (p.body_offset + p.signed_len) / 2, p.signed_len - 64,
				  p.signed_len - 1 };
		for (size_t k = 0; k < 5; k++)
			flip_expect(v, q, len, c, cases[i].now, body[k], "ESIG", sig);
		flip_expect(v, q, len, c, cases[i].now, sig_off, "ESIG", sig);
		flip_expect(v, q, len, c, cases[i].now, sig_off + 63, "ESIG", sig);
		flip_expect(v, q, len, c, cases[i].now, key_off, "ESIG", bind);
		flip_expect(v, q, len, c, cases[i].now, key_off + 63, "ESIG", bind);
		size_t qe_fields[] = { 0, 16, 48, 64, 128, 256, 258, 320, 383 };
		for (size_t k = 0; k < sizeof(qe_fields) / sizeof(qe_fields[0]); k++)
			flip_expect(v, q, len, c, cases[i].now, qe_off + qe_fields[k], "ESIG", qe);
		flip_expect(v, q, len, c, cases[i].now, qe_sig, "ESIG", qe);
		flip_expect(v, q, len, c, cases[i].now, qe_sig + 63, "ESIG", qe);
		flip_expect(v, q, len, c, cases[i].now, auth, "ESIG", bind);
		flip_expect(v, q, len, c, cases[i].now, auth + p.qe_auth_size - 1, "ESIG", bind);
		/* after all the flips the original still verifies (no cache kept a bad result) */
		struct dcap_report r;
		struct dcap_error err = { 0 };
		int rc = dcap_verify(v, q, len, c, cases[i].now, &r, &err);
		assert_true(rc == 0 || strcmp(err.code, "ETCB") == 0); /* the v5 sample is ETCB */
		dcap_collateral_free(c);
		free(q);
	}
	dcap_verifier_free(v);
}

/* ---- each certificate of the PCK chain in the quote ---- */

static void test_pck_chain(void **state)
{
	(void)state;
	static const struct quote_case cases[] = {
		{ "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json", TDX_NOW },
		{ "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json", SGX_NOW },
	};
	struct dcap_verifier *v = dt_verifier(NULL, 0, false);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *q = dt_quote(cases[i].quote, &len);
		struct dcap_collateral *c = dt_collateral(cases[i].collateral);
		struct tdx_quote p;
		struct tdx_error terr;
		assert_int_equal(tdx_quote_parse(q, len, &p, &terr), 0);
		size_t pem_off = (size_t)((const uint8_t *)p.pck_chain - q);
		static const long offsets[] = { 20,
						-3 }; /* in the serial (TBS); in the signature */
		for (size_t cert = 0; cert < 3; cert++) {
			for (size_t k = 0; k < 2; k++) {
				uint8_t *f = malloc(len);
				memcpy(f, q, len);
				pem_flip((char *)f + pem_off, p.pck_chain_len, cert, offsets[k]);
				char frag[80];
				if (cert < 2)
					snprintf(frag, sizeof(frag),
						 "PCK certificate chain: the signature of "
						 "certificate %zu",
						 cert);
				else
					snprintf(frag, sizeof(frag), "not the trusted root");
				print_message("%s: certificate %zu, DER offset %ld\n",
					      cases[i].quote, cert, offsets[k]);
				dt_expect_fail(v, f, len, c, cases[i].now, "ECHAIN", frag);
				free(f);
			}
		}
		dcap_collateral_free(c);
		free(q);
	}
	dcap_verifier_free(v);
}

/* ---- the collateral: chains, signatures, documents, CRLs ---- */

struct coll_fixture {
	struct dcap_collateral_input in;
	uint8_t *q;
	size_t len;
	struct dcap_verifier *v;
};

static void load_fixture(struct coll_fixture *f, const char *quote, const char *collateral)
{
	size_t n;
	char *json = read_vector(collateral, &n);
	struct dcap_error err = { 0 };
	assert_int_equal(dcap_collateral_input_from_json(json, n, &f->in, &err), 0);
	free(json);
	f->q = dt_quote(quote, &f->len);
	f->v = dt_verifier(NULL, 0, false);
}

static void free_fixture(struct coll_fixture *f)
{
	dcap_collateral_input_free(&f->in);
	free(f->q);
	dcap_verifier_free(f->v);
}

/* Build collateral from @p in and expect @p code / @p frag (or UpToDate if code is NULL). */
static void coll_expect(struct coll_fixture *f, int64_t now, const char *code, const char *frag)
{
	struct dcap_collateral *c = NULL;
	struct dcap_error err = { 0 };
	if (dcap_collateral_new(&f->in, &c, &err))
		fail_msg("collateral: %s: %s", err.code, err.msg);
	print_message("  -> %s (%s)\n", code ? code : "UpToDate", frag ? frag : "");
	if (code)
		dt_expect_fail(f->v, f->q, f->len, c, now, code, frag);
	else
		dt_expect_ok(f->v, f->q, f->len, c, now, "UpToDate", none);
	dcap_collateral_free(c);
}

static void swap_str(char **p, size_t *len, char *with, size_t with_len, char **saved,
		     size_t *saved_len)
{
	*saved = *p;
	*saved_len = *len;
	*p = with;
	*len = with_len;
}

static void test_collateral_chains(void **state)
{
	(void)state;
	struct coll_fixture f;
	load_fixture(&f, "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json");
	coll_expect(&f, TDX_NOW, NULL, NULL);

	struct {
		char **pem;
		size_t *len;
		const char *what;
	} chains[] = {
		{ &f.in.tcb_info_issuer_chain, &f.in.tcb_info_issuer_chain_len,
		  "TCB info issuer chain" },
		{ &f.in.qe_identity_issuer_chain, &f.in.qe_identity_issuer_chain_len,
		  "QE identity issuer chain" },
	};
	for (size_t i = 0; i < 2; i++) {
		char *orig = malloc(*chains[i].len + 1);
		memcpy(orig, *chains[i].pem, *chains[i].len + 1);
		static const long offsets[] = { 20, -3 };
		char frag[120];
		for (size_t k = 0; k < 2; k++) {
			pem_flip(*chains[i].pem, *chains[i].len, 0, offsets[k]);
			snprintf(frag, sizeof(frag), "%s: the signature of certificate 0",
				 chains[i].what);
			print_message("%s: the TCB signing certificate\n", chains[i].what);
			coll_expect(&f, TDX_NOW, "ECHAIN", frag);
			memcpy(*chains[i].pem, orig, *chains[i].len);
			pem_flip(*chains[i].pem, *chains[i].len, 1, offsets[k]);
			snprintf(frag, sizeof(frag), "%s ends in a root", chains[i].what);
			print_message("%s: the root copy\n", chains[i].what);
			coll_expect(&f, TDX_NOW, "ECHAIN", frag);
			memcpy(*chains[i].pem, orig, *chains[i].len);
		}
		/* a valid chain to the root whose leaf did not sign the document */
		char *saved;
		size_t saved_len;
		swap_str(chains[i].pem, chains[i].len, f.in.pck_crl_issuer_chain,
			 f.in.pck_crl_issuer_chain_len, &saved, &saved_len);
		print_message("%s replaced by the PCK CA chain\n", chains[i].what);
		coll_expect(&f, TDX_NOW, "ESIG",
			    i == 0 ? "the TCB info signature does not verify with the key of "
				     "CN=Intel SGX PCK Platform CA"
				   : "the QE identity signature does not verify");
		*chains[i].pem = saved;
		*chains[i].len = saved_len;
		free(orig);
	}
	coll_expect(&f, TDX_NOW, NULL, NULL);
	free_fixture(&f);
}

static void test_collateral_signatures(void **state)
{
	(void)state;
	struct coll_fixture f;
	load_fixture(&f, "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json");

	f.in.tcb_info_signature[5] ^= 1;
	coll_expect(&f, TDX_NOW, "ESIG", "the TCB info signature does not verify");
	f.in.tcb_info_signature[5] ^= 1;
	f.in.qe_identity_signature[40] ^= 1;
	coll_expect(&f, TDX_NOW, "ESIG", "the QE identity signature does not verify");
	f.in.qe_identity_signature[40] ^= 1;

	/* the JS verdicts' tampered TCB info: the first "UpToDate" becomes "OutOfDate" */
	char *ti = f.in.tcb_info;
	size_t ti_len = f.in.tcb_info_len;
	char *p = strstr(ti, "\"tcbStatus\":\"UpToDate\"");
	assert_non_null(p);
	size_t at = (size_t)(p - ti) + strlen("\"tcbStatus\":\"");
	char *tampered = malloc(ti_len + 2);
	memcpy(tampered, ti, at);
	memcpy(tampered + at, "OutOfDate", 9);
	memcpy(tampered + at + 9, ti + at + 8, ti_len - at - 8 + 1);
	f.in.tcb_info = tampered;
	f.in.tcb_info_len = ti_len + 1;
	coll_expect(&f, TDX_NOW, "ESIG", "the TCB info signature does not verify");
	/* one whitespace byte more: still the exact bytes that count */
	memcpy(tampered, ti, ti_len);
	tampered[ti_len] = ' ';
	tampered[ti_len + 1] = '\0';
	coll_expect(&f, TDX_NOW, "ESIG", "the TCB info signature does not verify");
	f.in.tcb_info = ti;
	f.in.tcb_info_len = ti_len;
	free(tampered);

	/* a tampered QE identity: isvprodid 2 -> 3 */
	p = strstr(f.in.qe_identity, "\"isvprodid\":2");
	assert_non_null(p);
	p[strlen("\"isvprodid\":")] = '3';
	coll_expect(&f, TDX_NOW, "ESIG", "the QE identity signature does not verify");
	p[strlen("\"isvprodid\":")] = '2';
	coll_expect(&f, TDX_NOW, NULL, NULL);
	free_fixture(&f);
}

static void test_crls(void **state)
{
	(void)state;
	struct coll_fixture f, sgx;
	load_fixture(&f, "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json");
	load_fixture(&sgx, "dcap-qvl/sgx_quote", "dcap-qvl/sgx_quote_collateral.json");

	f.in.root_ca_crl[f.in.root_ca_crl_len - 3] ^= 1;
	coll_expect(&f, TDX_NOW, "ECRL",
		    "the signature of the root CA CRL does not verify with the key of CN=Intel "
		    "SGX Root CA");
	f.in.root_ca_crl[f.in.root_ca_crl_len - 3] ^= 1;
	f.in.pck_crl[f.in.pck_crl_len - 3] ^= 1;
	coll_expect(&f, TDX_NOW, "ECRL",
		    "the signature of the PCK CRL does not verify with the key of CN=Intel SGX "
		    "PCK Platform CA");
	f.in.pck_crl[f.in.pck_crl_len - 3] ^= 1;
	/* a signed byte in the TBS of the PCK CRL: inside its first revoked serial */
	static const uint8_t serial[] = { 0x6f, 0xc3, 0x4e, 0x50, 0x23, 0xe7, 0x28, 0x92 };
	size_t at = 0;
	while (at + sizeof(serial) <= f.in.pck_crl_len &&
	       memcmp(f.in.pck_crl + at, serial, sizeof(serial)) != 0)
		at++;
	assert_true(at + sizeof(serial) <= f.in.pck_crl_len);
	f.in.pck_crl[at + 4] ^= 1;
	coll_expect(&f, TDX_NOW, "ECRL", "the signature of the PCK CRL does not verify");
	f.in.pck_crl[at + 4] ^= 1;

	/* the Processor CA's CRL for a Platform CA chain */
	uint8_t *saved = f.in.pck_crl;
	size_t saved_len = f.in.pck_crl_len;
	f.in.pck_crl = sgx.in.pck_crl;
	f.in.pck_crl_len = sgx.in.pck_crl_len;
	coll_expect(&f, TDX_NOW, "ECRL",
		    "the PCK CRL is issued by CN=Intel SGX PCK Processor CA, not by CN=Intel SGX "
		    "PCK Platform CA");
	/* the PCK CRL given as the root CA CRL */
	f.in.pck_crl = saved;
	f.in.pck_crl_len = saved_len;
	uint8_t *root_saved = f.in.root_ca_crl;
	size_t root_len = f.in.root_ca_crl_len;
	f.in.root_ca_crl = saved;
	f.in.root_ca_crl_len = saved_len;
	coll_expect(&f, TDX_NOW, "ECRL",
		    "the root CA CRL is issued by CN=Intel SGX PCK Platform CA, not by CN=Intel "
		    "SGX Root CA");
	f.in.root_ca_crl = root_saved;
	f.in.root_ca_crl_len = root_len;
	coll_expect(&f, TDX_NOW, NULL, NULL);
	free_fixture(&sgx);
	free_fixture(&f);
}

/* A PCK chain from the collateral (pck_certificate_chain) is used instead of the quote's: in
 * order without the root, it verifies; out of order or cut, it does not. */
static void test_chain_shapes(void **state)
{
	(void)state;
	struct coll_fixture f;
	load_fixture(&f, "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_collateral.json");
	struct tdx_quote p;
	struct tdx_error terr;
	assert_int_equal(tdx_quote_parse(f.q, f.len, &p, &terr), 0);
	const char *pem = p.pck_chain;
	const char *second = strstr(pem + 1, "-----BEGIN CERTIFICATE-----");
	const char *third = strstr(second + 1, "-----BEGIN CERTIFICATE-----");
	assert_non_null(third);
	size_t leaf_len = (size_t)(second - pem), ca_len = (size_t)(third - second);
	char buf[8192];

	/* leaf + PCK CA, no root */
	memcpy(buf, pem, leaf_len + ca_len);
	f.in.pck_certificate_chain = buf;
	f.in.pck_certificate_chain_len = leaf_len + ca_len;
	coll_expect(&f, TDX_NOW, NULL, NULL);
	/* PCK CA first */
	memcpy(buf, second, ca_len);
	memcpy(buf + ca_len, pem, leaf_len);
	coll_expect(&f, TDX_NOW, "ECHAIN", "certificate 0 (CN=Intel SGX PCK Platform CA)");
	/* the leaf alone */
	memcpy(buf, pem, leaf_len);
	f.in.pck_certificate_chain_len = leaf_len;
	coll_expect(&f, TDX_NOW, "ECHAIN",
		    "certificate 0 (CN=Intel SGX PCK Certificate) is not issued by the next "
		    "certificate (CN=Intel SGX Root CA), the trusted root");
	/* the root alone */
	memcpy(buf, third, p.pck_chain_len - leaf_len - ca_len);
	f.in.pck_certificate_chain_len = p.pck_chain_len - leaf_len - ca_len;
	coll_expect(&f, TDX_NOW, "ECHAIN", "has no certificate below the root");
	/* not PEM */
	memcpy(buf, "garbage", 7);
	f.in.pck_certificate_chain_len = 7;
	coll_expect(&f, TDX_NOW, "EQUOTE", "PCK certificate chain: certificate 0 is not a valid");
	f.in.pck_certificate_chain = NULL;
	f.in.pck_certificate_chain_len = 0;
	free_fixture(&f);
}

/* A root that is not Intel's: refused without simulator; with it, Intel quotes are ECHAIN. */
static void test_wrong_root(void **state)
{
	(void)state;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	assert_non_null(key);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"Not Intel", -1,
				   -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400L * 3650);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650);
	X509_set_pubkey(x, key);
	X509V3_CTX ctx;
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *bc =
		X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
	X509_add_ext(x, bc, -1);
	X509_EXTENSION_free(bc);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	unsigned char *der = NULL;
	int der_len = i2d_X509(x, &der);
	assert_true(der_len > 0);

	struct dcap_verifier_opts o = { .root_ca = der, .root_ca_len = (size_t)der_len };
	struct dcap_verifier *v = NULL;
	struct dcap_error err = { 0 };
	assert_int_equal(dcap_verifier_new(&o, &v, &err), -1);
	assert_string_equal(err.code, "ECHAIN");
	assert_non_null(strstr(err.msg, "is not the Intel SGX Root CA"));

	v = dt_verifier(der, (size_t)der_len, true);
	assert_true(dcap_verifier_simulated(v));
	size_t len;
	uint8_t *q = dt_quote("dcap-qvl/tdx_quote", &len);
	struct dcap_collateral *c = dt_collateral("dcap-qvl/tdx_quote_collateral.json");
	struct dcap_verifier *intel = dt_verifier(NULL, 0, false);
	dt_expect_ok(intel, q, len, c, TDX_NOW, "UpToDate", none);
	dt_expect_fail(v, q, len, c, TDX_NOW, "ECHAIN",
		       "PCK certificate chain ends in a root (CN=Intel SGX Root CA, SHA-256 "
		       "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3) that is "
		       "not the trusted root (CN=Not Intel)");
	dt_expect_ok(intel, q, len, c, TDX_NOW, "UpToDate", none);
	dcap_verifier_free(intel);
	dcap_collateral_free(c);
	free(q);
	dcap_verifier_free(v);
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quote_regions),
		cmocka_unit_test(test_pck_chain),
		cmocka_unit_test(test_collateral_chains),
		cmocka_unit_test(test_collateral_signatures),
		cmocka_unit_test(test_crls),
		cmocka_unit_test(test_chain_shapes),
		cmocka_unit_test(test_wrong_root),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
