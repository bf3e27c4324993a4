/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DCAP verifier against the simulator (native/sim), whose PKI the test holds: simulated
 * quotes verify under the simulator root and only when asked; revocation of each certificate
 * (PCK leaf, PCK CA, TCB signing, root) by CRLs the test issues; CRL signature, issuer, window
 * and critical extensions; each collateral item and each certificate one second past its
 * window; re-issued PCK certificates (no SGX extension, another FMSPC or PCE ID, a foreign
 * issuer key); TD attributes (debug, reserved bits, SEPT_VE_DISABLE).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "dcap_sim_test.h"

static const char *const none[] = { NULL };

static void test_simulated_quote(void **state)
{
	(void)state;
	struct sim_td td;
	sim_td_defaults(&td);
	for (int i = 0; i < 48; i++) {
		td.mrtd[i] = (uint8_t)i;
		td.rtmr[3][i] = (uint8_t)(0x80 | i);
	}
	struct simfx f;
	sf_open(&f, &td);

	struct dcap_report r = sf_expect_ok(&f, f.now, "UpToDate", none);
	assert_true(r.simulated);
	assert_true(r.tdx);
	assert_int_equal(r.quote_version, 4);
	assert_memory_equal(r.mr_td, td.mrtd, 48);
	assert_memory_equal(r.rtmr[3], td.rtmr[3], 48);
	assert_memory_equal(r.td_attributes, td.td_attributes, 8);
	for (int i = 0; i < 64; i++)
		assert_int_equal(r.report_data[i], 0xa0 + i);
	const struct sim_platform *p = sim_platform(f.s);
	assert_memory_equal(r.fmspc, p->fmspc, 6);
	assert_memory_equal(r.ppid, p->ppid, 16);
	assert_memory_equal(r.tee_tcb_svn, p->tee_tcb_svn, 16);
	assert_int_equal(r.pce_svn, p->pce_svn);
	assert_int_equal(r.qe_isv_svn, p->qe_isv_svn);

	/* after an RTMR extension the next quote carries the new value */
	uint8_t digest[48], rtmr3[48];
	memset(digest, 0x5a, sizeof(digest));
	assert_int_equal(sim_extend_rtmr(f.s, "cvm", 3, digest, rtmr3), 0);
	free(f.quote);
	assert_int_equal(sim_quote(f.s, "cvm", NULL, 0, &f.quote, &f.quote_len), 0);
	r = sf_expect_ok(&f, f.now, "UpToDate", none);
	assert_memory_equal(r.rtmr[3], rtmr3, 48);

	/* the default verifier (Intel's root) rejects it: the chain ends in another root */
	struct dcap_verifier *intel = dt_verifier(NULL, 0, false);
	struct dcap_collateral *c = NULL;
	struct dcap_error err = { 0 };
	assert_int_equal(dcap_collateral_new(&f.in, &c, &err), 0);
	dt_expect_fail(intel, f.quote, f.quote_len, c, f.now, "ECHAIN",
		       "PCK certificate chain ends in a root (CN=moonstack TDX Simulation Root CA");
	/* ... also when its PCK chain comes without the root copy: the CA is not Intel's */
	BIO *pem = BIO_new(BIO_s_mem());
	char *store = NULL;
	sf_append(f.pck, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	dcap_collateral_free(c);
	assert_int_equal(dcap_collateral_new(&f.in, &c, &err), 0);
	dt_expect_fail(intel, f.quote, f.quote_len, c, f.now, "ECHAIN",
		       "certificate 1 (CN=moonstack TDX Simulation PCK Platform CA) is not issued "
		       "by the next certificate (CN=Intel SGX Root CA), the trusted root");
	/* the real Intel quote with the simulator verifier */
	size_t len;
	uint8_t *q = dt_quote("dcap-qvl/tdx_quote", &len);
	struct dcap_collateral *ic = dt_collateral("dcap-qvl/tdx_quote_collateral.json");
	dt_expect_fail(f.v, q, len, ic, 1752919234, "ECHAIN",
		       "ends in a root (CN=Intel SGX Root CA");
	/* Intel's collateral, verified under Intel's root, then refused under the simulator's
	 * (its TCB info issuer chain ends in Intel's root), still verifies under Intel's */
	dt_expect_ok(intel, q, len, ic, 1752919234, "UpToDate", none);
	dt_expect_fail(f.v, f.quote, f.quote_len, ic, 1752919234, "ECHAIN",
		       "TCB info issuer chain ends in a root (CN=Intel SGX Root CA");
	dt_expect_ok(intel, q, len, ic, 1752919234, "UpToDate", none);
	dcap_collateral_free(ic);
	free(q);
	free(store);
	BIO_free(pem);
	dcap_collateral_free(c);
	dcap_verifier_free(intel);

	/* the simulator root is not trusted without simulator = true */
	size_t root_len;
	const uint8_t *root = sim_root_ca_der(f.s, &root_len);
	struct dcap_verifier_opts o = { .root_ca = root, .root_ca_len = root_len };
	struct dcap_verifier *v = NULL;
	assert_int_equal(dcap_verifier_new(&o, &v, &err), -1);
	assert_string_equal(err.code, "ECHAIN");
	assert_non_null(strstr(err.msg, "is not the Intel SGX Root CA"));
	/* PEM works as well as DER */
	o.root_ca = (const uint8_t *)sim_root_ca_pem(f.s);
	o.root_ca_len = strlen(sim_root_ca_pem(f.s));
	o.simulator = true;
	assert_int_equal(dcap_verifier_new(&o, &v, &err), 0);
	dcap_verifier_free(v);
	sf_close(&f);
}

static void test_revocation(void **state)
{
	(void)state;
	struct simfx f;
	sf_open(&f, NULL);
	time_t t = f.now - 60, n = f.now + 86400;
	uint8_t *der = NULL;
	uint8_t *orig_pck = f.in.pck_crl, *orig_root = f.in.root_ca_crl;
	size_t orig_pck_len = f.in.pck_crl_len, orig_root_len = f.in.root_ca_crl_len;

	/* a PCK CRL that revokes other serials only: fine */
	X509 *others[] = { f.tcb, f.root };
	f.in.pck_crl_len = sf_crl(f.ca, f.ca_key, t, n, others, 2, false, &der);
	f.in.pck_crl = der;
	sf_expect_ok(&f, f.now, "UpToDate", none);
	OPENSSL_free(der);
	/* the PCK leaf revoked */
	X509 *leaf[] = { f.tcb, f.pck };
	f.in.pck_crl_len = sf_crl(f.ca, f.ca_key, t, n, leaf, 2, false, &der);
	f.in.pck_crl = der;
	sf_expect_fail(&f, f.now, "ECRL",
		       "PCK certificate chain: certificate CN=moonstack TDX Simulation PCK "
		       "Certificate (serial ");
	sf_expect_fail(&f, f.now, "ECRL", ") is revoked by the PCK CRL");
	OPENSSL_free(der);
	/* the PCK CRL signed by the root key, under the PCK CA's name */
	f.in.pck_crl_len = sf_crl(f.ca, f.root_key, t, n, NULL, 0, false, &der);
	f.in.pck_crl = der;
	sf_expect_fail(&f, f.now, "ECRL",
		       "the signature of the PCK CRL does not verify with the key of "
		       "CN=moonstack TDX Simulation PCK Platform CA");
	OPENSSL_free(der);
	/* a PCK CRL issued in the future, one past its nextUpdate, one with a critical extension */
	f.in.pck_crl_len = sf_crl(f.ca, f.ca_key, f.now + 10, n, NULL, 0, false, &der);
	f.in.pck_crl = der;
	sf_expect_fail(&f, f.now, "ECRL", "the PCK CRL is not valid before its thisUpdate");
	sf_expect_ok(&f, f.now + 10, "UpToDate", none);
	OPENSSL_free(der);
	f.in.pck_crl_len = sf_crl(f.ca, f.ca_key, t, f.now + 100, NULL, 0, false, &der);
	f.in.pck_crl = der;
	sf_expect_ok(&f, f.now + 100, "UpToDate", none);
	sf_expect_fail(&f, f.now + 101, "ECRL", "the PCK CRL expired at its nextUpdate");
	OPENSSL_free(der);
	f.in.pck_crl_len = sf_crl(f.ca, f.ca_key, t, n, NULL, 0, true, &der);
	f.in.pck_crl = der;
	sf_expect_fail(&f, f.now, "ECRL", "the PCK CRL has an unsupported critical extension");
	OPENSSL_free(der);
	f.in.pck_crl = orig_pck;
	f.in.pck_crl_len = orig_pck_len;

	/* the root CA CRL: the PCK CA, the TCB signing certificate, the root itself */
	struct {
		X509 *cert;
		const char *frag;
	} roots[] = {
		{ f.ca, "PCK certificate chain: certificate CN=moonstack TDX Simulation PCK "
			"Platform CA (serial " },
		{ f.tcb, "TCB info issuer chain: certificate CN=moonstack TDX Simulation TCB "
			 "Signing (serial " },
		{ f.root, "root CA: certificate CN=moonstack TDX Simulation Root CA (serial " },
	};
	for (size_t i = 0; i < 3; i++) {
		f.in.root_ca_crl_len =
			sf_crl(f.root, f.root_key, t, n, &roots[i].cert, 1, false, &der);
		f.in.root_ca_crl = der;
		sf_expect_fail(&f, f.now, "ECRL", roots[i].frag);
		sf_expect_fail(&f, f.now, "ECRL", "is revoked by the root CA CRL");
		OPENSSL_free(der);
	}
	f.in.root_ca_crl_len = sf_crl(f.root, f.root_key, t, f.now + 100, NULL, 0, false, &der);
	f.in.root_ca_crl = der;
	sf_expect_fail(&f, f.now + 101, "ECRL", "the root CA CRL expired at its nextUpdate");
	OPENSSL_free(der);
	f.in.root_ca_crl_len = sf_crl(f.root, f.tcb_key, t, n, NULL, 0, false, &der);
	f.in.root_ca_crl = der;
	sf_expect_fail(&f, f.now, "ECRL", "the signature of the root CA CRL does not verify");
	OPENSSL_free(der);
	f.in.root_ca_crl = orig_root;
	f.in.root_ca_crl_len = orig_root_len;
	sf_expect_ok(&f, f.now, "UpToDate", none);
	sf_close(&f);
}

/* Each collateral document one second past its window (the others still valid). */
static void test_document_windows(void **state)
{
	(void)state;
	struct simfx f;
	sf_open(&f, NULL);
	struct sf_doc ti = { 0 }, qe = { 0 };
	char issue[32], next[32], early[32];
	struct tm tm;
	time_t t_issue = f.now - 3600, t_next = f.now + 30 * 86400L, t_early = f.now + 100;
	strftime(issue, sizeof(issue), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t_issue, &tm));
	strftime(next, sizeof(next), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t_next, &tm));
	strftime(early, sizeof(early), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t_early, &tm));
	char *orig_ti = f.sc.tcb_info, *orig_qe = f.sc.qe_identity;

	/* TCB info: nextUpdate early */
	sf_set_tcb_info(&f, &ti, sf_replace(orig_ti, next, early), f.tcb_key);
	sf_expect_ok(&f, t_early, "UpToDate", none);
	sf_expect_fail(&f, t_early + 1, "EEXPIRED", "TCB info expired at its nextUpdate");
	/* TCB info: issued later */
	sf_set_tcb_info(&f, &ti, sf_replace(orig_ti, issue, early), f.tcb_key);
	sf_expect_fail(&f, t_early - 1, "EEXPIRED", "TCB info is not valid before its issueDate");
	sf_expect_ok(&f, t_early, "UpToDate", none);
	sf_input(&f); /* the original TCB info */
	/* QE identity */
	sf_set_qe_identity(&f, &qe, sf_replace(orig_qe, next, early), f.tcb_key);
	sf_expect_ok(&f, t_early, "UpToDate", none);
	sf_expect_fail(&f, t_early + 1, "EEXPIRED", "QE identity expired at its nextUpdate");
	sf_set_qe_identity(&f, &qe, sf_replace(orig_qe, issue, early), f.tcb_key);
	sf_expect_fail(&f, t_early - 1, "EEXPIRED",
		       "QE identity is not valid before its issueDate");
	/* a date that is not RFC 3339 is malformed collateral */
	sf_set_qe_identity(&f, &qe, sf_replace(orig_qe, next, "2025-13-01T00:00:00Z"), f.tcb_key);
	struct dcap_collateral *c = NULL;
	struct dcap_error err = { 0 };
	assert_int_equal(dcap_collateral_new(&f.in, &c, &err), -1);
	assert_string_equal(err.code, "ECOLLATERAL");
	assert_non_null(strstr(err.msg, "QE identity: nextUpdate is not an RFC 3339 date-time"));
	free(ti.json);
	free(qe.json);
	sf_close(&f);
}

/* Each certificate one second outside its validity window. */
static void test_certificate_windows(void **state)
{
	(void)state;
	struct simfx f;
	sf_open(&f, NULL);
	time_t early = f.now + 100;
	char *store = NULL;
	BIO *pem;

	/* the PCK leaf re-issued to expire early */
	pem = BIO_new(BIO_s_mem());
	sf_reissue(f.pck, 0, early, NULL, f.ca_key, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_ok(&f, early, "UpToDate", none);
	sf_expect_fail(&f, early + 1, "EEXPIRED",
		       "PCK certificate chain: certificate CN=moonstack TDX Simulation PCK "
		       "Certificate expired at");
	/* ... and to start late */
	pem = BIO_new(BIO_s_mem());
	sf_reissue(f.pck, early, 0, NULL, f.ca_key, pem);
	sf_append(f.ca, pem);
	sf_append(f.root, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, early - 1, "EEXPIRED",
		       "certificate CN=moonstack TDX Simulation PCK Certificate is not valid "
		       "before");
	sf_expect_ok(&f, early, "UpToDate", none);
	/* the PCK CA */
	pem = BIO_new(BIO_s_mem());
	sf_append(f.pck, pem);
	sf_reissue(f.ca, 0, early, NULL, f.root_key, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_ok(&f, early, "UpToDate", none);
	sf_expect_fail(&f, early + 1, "EEXPIRED",
		       "certificate CN=moonstack TDX Simulation PCK Platform CA expired at");
	f.in.pck_certificate_chain = NULL;
	f.in.pck_certificate_chain_len = 0;
	/* the TCB signing certificate (both collateral chains) */
	pem = BIO_new(BIO_s_mem());
	sf_reissue(f.tcb, 0, early, NULL, f.root_key, pem);
	sf_append(f.root, pem);
	sf_set_pck_chain(&f, pem, &store);
	f.in.tcb_info_issuer_chain = f.in.pck_certificate_chain;
	f.in.tcb_info_issuer_chain_len = f.in.pck_certificate_chain_len;
	f.in.pck_certificate_chain = NULL;
	f.in.pck_certificate_chain_len = 0;
	BIO_free(pem);
	sf_expect_ok(&f, early, "UpToDate", none);
	sf_expect_fail(&f, early + 1, "EEXPIRED",
		       "TCB info issuer chain: certificate CN=moonstack TDX Simulation TCB "
		       "Signing expired at");
	f.in.qe_identity_issuer_chain = f.in.tcb_info_issuer_chain;
	f.in.qe_identity_issuer_chain_len = f.in.tcb_info_issuer_chain_len;
	f.in.tcb_info_issuer_chain = f.sc.tcb_info_issuer_chain;
	f.in.tcb_info_issuer_chain_len = strlen(f.sc.tcb_info_issuer_chain);
	sf_expect_fail(&f, early + 1, "EEXPIRED", "QE identity issuer chain: certificate");
	sf_input(&f);
	/* the root itself: valid until 2049-12-31T23:59:59Z */
	sf_collateral_at(&f, 2524607999 - 86400);
	sf_expect_fail(&f, 2524608000, "EEXPIRED",
		       "root CA: certificate CN=moonstack TDX Simulation Root CA expired at "
		       "2049-12-31T23:59:59Z");
	free(store);
	sf_close(&f);
}

/* Find the 2-byte (PCE ID) or 6-byte (FMSPC) value that follows @p oid_last in the SGX
 * extension of @p x and replace it; the certificate is re-signed by @p key. */
static void reissue_sgx_value(X509 *x, uint8_t oid_last, const uint8_t *value, size_t n,
			      EVP_PKEY *key, BIO *pem)
{
	/* 06 0a 2a864886f84d010d01 <oid_last> 04 <n> <value> */
	static const uint8_t oid[] = { 0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86,
				       0xf8, 0x4d, 0x01, 0x0d, 0x01 };
	X509 *c = X509_dup(x);
	ASN1_OBJECT *obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
	int idx = X509_get_ext_by_OBJ(c, obj, -1);
	ASN1_OBJECT_free(obj);
	assert_true(idx >= 0);
	X509_EXTENSION *ext = X509_get_ext(c, idx);
	ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(ext);
	uint8_t *d = OPENSSL_memdup(ASN1_STRING_get0_data(data), (size_t)ASN1_STRING_length(data));
	size_t len = (size_t)ASN1_STRING_length(data), at = 0;
	for (; at + sizeof(oid) + 3 + n <= len; at++)
		if (memcmp(d + at, oid, sizeof(oid)) == 0 && d[at + sizeof(oid)] == oid_last &&
		    d[at + sizeof(oid) + 1] == 0x04 && d[at + sizeof(oid) + 2] == n)
			break;
	assert_true(at + sizeof(oid) + 3 + n <= len);
	memcpy(d + at + sizeof(oid) + 3, value, n);
	ASN1_OCTET_STRING_set(data, d, (int)len); /* the extension's own value */
	OPENSSL_free(d);
	assert_true(X509_sign(c, key, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509(pem, c), 1);
	X509_free(c);
}

static void test_pck_certificate(void **state)
{
	(void)state;
	struct simfx f;
	sf_open(&f, NULL);
	char *store = NULL;
	BIO *pem;

	/* no SGX extension */
	pem = BIO_new(BIO_s_mem());
	sf_reissue(f.pck, 0, 0, "1.2.840.113741.1.13.1", f.ca_key, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, f.now, "ECHAIN",
		       "the PCK certificate (CN=moonstack TDX Simulation PCK Certificate) has no "
		       "SGX extension");
	/* another FMSPC, another PCE ID */
	static const uint8_t fmspc[6] = { 0x90, 0xc0, 0x6f, 0, 0, 0 }, pceid[2] = { 0, 1 };
	pem = BIO_new(BIO_s_mem());
	reissue_sgx_value(f.pck, 4, fmspc, 6, f.ca_key, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, f.now, "ETCB",
		       "FMSPC mismatch: the PCK certificate has 90c06f000000, the TCB info "
		       "b0c06f000000");
	pem = BIO_new(BIO_s_mem());
	reissue_sgx_value(f.pck, 3, pceid, 2, f.ca_key, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, f.now, "ETCB",
		       "PCE ID mismatch: the PCK certificate has 0001, the TCB info 0000");
	/* the PCK leaf signed by a key that is not its issuer's */
	pem = BIO_new(BIO_s_mem());
	sf_reissue(f.pck, 0, 0, NULL, f.tcb_key, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, f.now, "ECHAIN",
		       "the signature of certificate 0 (CN=moonstack TDX Simulation PCK "
		       "Certificate) does not verify with the key of CN=moonstack TDX Simulation "
		       "PCK Platform CA");
	/* a chain whose second certificate did not issue the leaf */
	pem = BIO_new(BIO_s_mem());
	sf_append(f.pck, pem);
	sf_append(f.tcb, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, f.now, "ECHAIN", "is not issued by the next certificate");
	/* a PCK leaf with another key: the QE report signature no longer verifies */
	EVP_PKEY *other = EVP_EC_gen("P-256");
	X509 *c = X509_dup(f.pck);
	X509_set_pubkey(c, other);
	assert_true(X509_sign(c, f.ca_key, EVP_sha256()) > 0);
	pem = BIO_new(BIO_s_mem());
	sf_append(c, pem);
	sf_append(f.ca, pem);
	sf_set_pck_chain(&f, pem, &store);
	BIO_free(pem);
	sf_expect_fail(&f, f.now, "ESIG",
		       "the QE report signature does not verify with the PCK certificate's key");
	X509_free(c);
	EVP_PKEY_free(other);
	free(store);
	sf_close(&f);
}

static void test_td_attributes(void **state)
{
	(void)state;
	static const struct {
		uint8_t byte, value;
		const char *frag;
	} cases[] = {
		{ 0, 0x01, "the TD runs in debug mode" },
		{ 0, 0x02, "reserved TUD bits" },
		{ 1, 0x01, "reserved bits of TD attributes" },
		{ 3, 0x20, "reserved bits of TD attributes" },
		{ 5, 0x01, "reserved bits of TD attributes" },
		{ 3, 0x00, "SEPT_VE_DISABLE is not set" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim_td td;
		sim_td_defaults(&td);
		if (cases[i].byte == 3)
			td.td_attributes[3] =
				(uint8_t)(cases[i].value | (cases[i].value ? 0x10 : 0));
		else
			td.td_attributes[cases[i].byte] |= cases[i].value;
		struct simfx f;
		sf_open(&f, &td);
		print_message("td_attributes byte %u = %02x\n", cases[i].byte,
			      td.td_attributes[cases[i].byte]);
		sf_expect_fail(&f, f.now, "EATTR", cases[i].frag);
		if (i == 0) { /* allow_debug accepts a debug TD */
			size_t root_len;
			const uint8_t *root = sim_root_ca_der(f.s, &root_len);
			struct dcap_verifier_opts o = { .root_ca = root,
							.root_ca_len = root_len,
							.simulator = true,
							.allow_debug = true };
			struct dcap_error err = { 0 };
			dcap_verifier_free(f.v);
			assert_int_equal(dcap_verifier_new(&o, &f.v, &err), 0);
			sf_expect_ok(&f, f.now, "UpToDate", none);
		}
		sf_close(&f);
	}
	/* PERFMON (bit 63) is not reserved */
	struct sim_td td;
	sim_td_defaults(&td);
	td.td_attributes[7] = 0x80;
	struct simfx f;
	sf_open(&f, &td);
	sf_expect_ok(&f, f.now, "UpToDate", none);
	sf_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simulated_quote),	 cmocka_unit_test(test_revocation),
		cmocka_unit_test(test_document_windows), cmocka_unit_test(test_certificate_windows),
		cmocka_unit_test(test_pck_certificate),	 cmocka_unit_test(test_td_attributes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
