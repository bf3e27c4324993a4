/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the DCAP verifier's simulator tests: a native/sim state directory whose keys the
 * tests hold, so they can issue what a real PKI would — re-signed TCB info and QE identity
 * documents, CRLs that revoke chosen serials or have chosen windows, re-issued certificates —
 * and feed it to the verifier as collateral fields.
 */
#ifndef MOONSTACK_DCAP_SIM_TEST_H
#define MOONSTACK_DCAP_SIM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "dcap_test.h"
#include "sim/sim.h"

/* The simulator, its keys and certificates, and collateral fields the tests may replace. */
struct simfx {
	char dir[512];
	struct sim *s;
	time_t now;
	uint8_t *quote;
	size_t quote_len;
	struct sim_collateral sc;
	struct dcap_collateral_input in;
	struct dcap_verifier *v;
	X509 *root, *ca, *pck, *tcb;
	EVP_PKEY *root_key, *ca_key, *pck_key, *tcb_key;
};

static inline X509 *sf_cert(const struct simfx *f, const char *name)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(x);
	return x;
}

static inline EVP_PKEY *sf_key(const struct simfx *f, const char *name)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	EVP_PKEY *k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(k);
	return k;
}

/* Point the collateral input at the simulator's current collateral. */
static inline void sf_input(struct simfx *f)
{
	struct sim_collateral *c = &f->sc;
	struct dcap_collateral_input *in = &f->in;
	memset(in, 0, sizeof(*in));
	in->pck_crl_issuer_chain = c->pck_crl_issuer_chain;
	in->pck_crl_issuer_chain_len = strlen(c->pck_crl_issuer_chain);
	in->root_ca_crl = c->root_ca_crl;
	in->root_ca_crl_len = c->root_ca_crl_len;
	in->pck_crl = c->pck_crl;
	in->pck_crl_len = c->pck_crl_len;
	in->tcb_info_issuer_chain = c->tcb_info_issuer_chain;
	in->tcb_info_issuer_chain_len = strlen(c->tcb_info_issuer_chain);
	in->tcb_info = c->tcb_info;
	in->tcb_info_len = strlen(c->tcb_info);
	in->tcb_info_signature = c->tcb_info_signature;
	in->tcb_info_signature_len = 64;
	in->qe_identity_issuer_chain = c->qe_identity_issuer_chain;
	in->qe_identity_issuer_chain_len = strlen(c->qe_identity_issuer_chain);
	in->qe_identity = c->qe_identity;
	in->qe_identity_len = strlen(c->qe_identity);
	in->qe_identity_signature = c->qe_identity_signature;
	in->qe_identity_signature_len = 64;
}

/* Fresh collateral valid around @p now. */
static inline void sf_collateral_at(struct simfx *f, time_t now)
{
	sim_collateral_free(&f->sc);
	assert_int_equal(sim_collateral(f->s, now, &f->sc), 0);
	sf_input(f);
}

/* Open a new simulator (CVM "cvm" with @p td or the defaults), quote, collateral, verifier. */
static inline void sf_open(struct simfx *f, const struct sim_td *td)
{
	const char *base = getenv("MOONSTACK_TEST_TMP");
	char err[300];
	memset(f, 0, sizeof(*f));
	if (!base || !*base)
		base = "/tmp";
	snprintf(f->dir, sizeof(f->dir), "%s", base);
	mkdir(f->dir, 0700);
	snprintf(f->dir, sizeof(f->dir), "%s/dcap-sim-XXXXXX", base);
	assert_non_null(mkdtemp(f->dir));
	strcat(f->dir, "/state");
	if (sim_open(f->dir, &f->s, err, sizeof(err)) != 0)
		fail_msg("sim_open: %s", err);
	assert_int_equal(sim_cvm_create(f->s, "cvm", td, false), 0);
	uint8_t rd[64];
	for (int i = 0; i < 64; i++)
		rd[i] = (uint8_t)(0xa0 + i);
	assert_int_equal(sim_quote(f->s, "cvm", rd, sizeof(rd), &f->quote, &f->quote_len), 0);
	f->now = time(NULL);
	sf_collateral_at(f, f->now);
	size_t root_len;
	const uint8_t *root = sim_root_ca_der(f->s, &root_len);
	f->v = dt_verifier(root, root_len, true);
	f->root = sf_cert(f, "root-ca.pem");
	f->ca = sf_cert(f, "pck-platform-ca.pem");
	f->pck = sf_cert(f, "pck.pem");
	f->tcb = sf_cert(f, "tcb-signing.pem");
	f->root_key = sf_key(f, "root-ca.key.pem");
	f->ca_key = sf_key(f, "pck-platform-ca.key.pem");
	f->pck_key = sf_key(f, "pck.key.pem");
	f->tcb_key = sf_key(f, "tcb-signing.key.pem");
}

static inline void sf_close(struct simfx *f)
{
	char cmd[700];
	dcap_verifier_free(f->v);
	sim_collateral_free(&f->sc);
	free(f->quote);
	sim_close(f->s);
	X509_free(f->root);
	X509_free(f->ca);
	X509_free(f->pck);
	X509_free(f->tcb);
	EVP_PKEY_free(f->root_key);
	EVP_PKEY_free(f->ca_key);
	EVP_PKEY_free(f->pck_key);
	EVP_PKEY_free(f->tcb_key);
	char *slash = strrchr(f->dir, '/');
	*slash = '\0';
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
}

/* Verify the fixture's quote against its (possibly modified) collateral input. The collateral
 * is freed before returning: the report's advisory_ids and tcb_date are not usable. */
static inline struct dcap_report sf_expect_ok(struct simfx *f, int64_t now, const char *status,
					      const char *const *ids)
{
	struct dcap_collateral *c = NULL;
	struct dcap_error err = { 0 };
	if (dcap_collateral_new(&f->in, &c, &err))
		fail_msg("collateral: %s: %s", err.code, err.msg);
	struct dcap_report r = dt_expect_ok(f->v, f->quote, f->quote_len, c, now, status, ids);
	dcap_collateral_free(c);
	return r;
}

static inline void sf_expect_fail(struct simfx *f, int64_t now, const char *code, const char *frag)
{
	struct dcap_collateral *c = NULL;
	struct dcap_error err = { 0 };
	if (dcap_collateral_new(&f->in, &c, &err))
		fail_msg("collateral: %s: %s", err.code, err.msg);
	print_message("  expect %s: %s\n", code, frag);
	dt_expect_fail(f->v, f->quote, f->quote_len, c, now, code, frag);
	dcap_collateral_free(c);
}

/* Raw r||s ECDSA-SHA256 signature of @p len bytes by @p key. */
static inline void sf_sign(EVP_PKEY *key, const void *msg, size_t len, uint8_t out[64])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[80];
	size_t der_len = sizeof(der);
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &der_len, msg, len), 1);
	EVP_MD_CTX_free(ctx);
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	assert_non_null(sig);
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(sig, &r, &s);
	assert_int_equal(BN_bn2binpad(r, out, 32), 32);
	assert_int_equal(BN_bn2binpad(s, out + 32, 32), 32);
	ECDSA_SIG_free(sig);
}

/* Replace the TCB info (and its signature) with @p json, signed by @p key. The buffers live in
 * @p store (64 + strlen + 1 bytes). */
struct sf_doc {
	char *json;
	uint8_t sig[64];
};

static inline void sf_set_tcb_info(struct simfx *f, struct sf_doc *d, char *json, EVP_PKEY *key)
{
	free(d->json);
	d->json = json;
	sf_sign(key, json, strlen(json), d->sig);
	f->in.tcb_info = json;
	f->in.tcb_info_len = strlen(json);
	f->in.tcb_info_signature = d->sig;
}

static inline void sf_set_qe_identity(struct simfx *f, struct sf_doc *d, char *json, EVP_PKEY *key)
{
	free(d->json);
	d->json = json;
	sf_sign(key, json, strlen(json), d->sig);
	f->in.qe_identity = json;
	f->in.qe_identity_len = strlen(json);
	f->in.qe_identity_signature = d->sig;
}

/* A printf'd string (free() it). */
static inline char *sf_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *sf_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *out = malloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(out, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return out;
}

/* @p s with every occurrence of @p from replaced by @p to (free() it). */
static inline char *sf_replace(const char *s, const char *from, const char *to)
{
	size_t nf = strlen(from), nt = strlen(to), count = 0;
	for (const char *p = strstr(s, from); p; p = strstr(p + nf, from))
		count++;
	char *out = malloc(strlen(s) + count * nt + 1), *o = out;
	for (const char *p = s;;) {
		const char *hit = strstr(p, from);
		if (!hit) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(hit - p));
		o += hit - p;
		memcpy(o, to, nt);
		o += nt;
		p = hit + nf;
	}
	return out;
}

/* A v2 CRL by @p issuer (@p key) with window [@p this_update, @p next_update] revoking the
 * @p n serials of @p revoked; @p critical adds a critical extension. DER into @p der. */
static inline size_t sf_crl(X509 *issuer, EVP_PKEY *key, time_t this_update, time_t next_update,
			    X509 *const *revoked, size_t n, bool critical, uint8_t **der)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *t = ASN1_TIME_set(NULL, this_update), *nt = ASN1_TIME_set(NULL, next_update);
	assert_int_equal(X509_CRL_set_version(crl, 1), 1);
	assert_int_equal(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)), 1);
	assert_int_equal(X509_CRL_set1_lastUpdate(crl, t), 1);
	assert_int_equal(X509_CRL_set1_nextUpdate(crl, nt), 1);
	for (size_t i = 0; i < n; i++) {
		X509_REVOKED *r = X509_REVOKED_new();
		X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoked[i]));
		X509_REVOKED_set_revocationDate(r, t);
		X509_CRL_add0_revoked(crl, r);
	}
	if (critical) {
		ASN1_INTEGER *num = ASN1_INTEGER_new();
		ASN1_INTEGER_set(num, 1);
		X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 1, 0);
		ASN1_INTEGER_free(num);
	}
	X509_CRL_sort(crl);
	assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
	*der = NULL;
	int len = i2d_X509_CRL(crl, der);
	assert_true(len > 0);
	ASN1_TIME_free(t);
	ASN1_TIME_free(nt);
	X509_CRL_free(crl);
	return (size_t)len;
}

/* A copy of @p x with a new window (0 = keep), optionally without the extension of OID
 * @p drop_oid, signed by @p key; appended to @p pem (PEM text). */
static inline void sf_reissue(X509 *x, time_t not_before, time_t not_after, const char *drop_oid,
			      EVP_PKEY *key, BIO *pem)
{
	X509 *c = X509_dup(x);
	if (not_before)
		ASN1_TIME_set(X509_getm_notBefore(c), not_before);
	if (not_after)
		ASN1_TIME_set(X509_getm_notAfter(c), not_after);
	if (drop_oid) {
		ASN1_OBJECT *obj = OBJ_txt2obj(drop_oid, 1);
		int idx = X509_get_ext_by_OBJ(c, obj, -1);
		ASN1_OBJECT_free(obj);
		assert_true(idx >= 0);
		X509_EXTENSION_free(X509_delete_ext(c, idx));
	}
	assert_true(X509_sign(c, key, EVP_sha256()) > 0);
	assert_int_equal(PEM_write_bio_X509(pem, c), 1);
	X509_free(c);
}

/* Append @p x unchanged. */
static inline void sf_append(X509 *x, BIO *pem)
{
	assert_int_equal(PEM_write_bio_X509(pem, x), 1);
}

/* Use the PEM in @p pem as the collateral's PCK certificate chain (kept in @p store). */
static inline void sf_set_pck_chain(struct simfx *f, BIO *pem, char **store)
{
	char *data;
	long n = BIO_get_mem_data(pem, &data);
	free(*store);
	*store = malloc((size_t)n + 1);
	memcpy(*store, data, (size_t)n);
	(*store)[n] = '\0';
	f->in.pck_certificate_chain = *store;
	f->in.pck_certificate_chain_len = (size_t)n;
}

#endif
