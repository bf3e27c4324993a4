/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The simulated PKI, shaped like Intel's SGX/TDX one: a self-signed root CA, a PCK platform CA,
 * a PCK leaf carrying the SGX extensions (OID 1.2.840.113741.1.13.1) and a TCB-signing leaf;
 * CRLs; raw r||s ECDSA P-256 signatures. Every name says "moonstack TDX Simulation".
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "sim/sim_internal.h"

#define SIM_ORG	     "moonstack TDX Simulation (not Intel)"
#define ROOT_CRL_URI "https://sim.moonstack.invalid/sgx/certification/v4/rootcacrl"
#define PCK_CRL_URI  "https://sim.moonstack.invalid/sgx/certification/v4/pckcrl?ca=platform"
#define DAY	     (24L * 3600L)

/* ---- DER for the SGX extension ---- */

/* 1.2.840.113741.1.13.1 */
static const uint8_t sgx_oid[] = { 0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x01 };

enum { DER_BOOLEAN = 0x01, DER_INTEGER = 0x02, DER_OCTETS = 0x04, DER_OID = 0x06 };
enum { DER_ENUMERATED = 0x0A, DER_SEQUENCE = 0x30 };

static void der_tlv(struct sim_buf *out, uint8_t tag, const uint8_t *p, size_t n)
{
	uint8_t hdr[4] = { tag };
	size_t h = 1;
	if (n < 0x80) {
		hdr[h++] = (uint8_t)n;
	} else if (n < 0x100) {
		hdr[h++] = 0x81;
		hdr[h++] = (uint8_t)n;
	} else {
		hdr[h++] = 0x82;
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	}
	sim_buf_add(out, hdr, h);
	sim_buf_add(out, p, n);
}

/* Wrap the content of @p inner as a SEQUENCE appended to @p out, and free @p inner. */
static void der_seq(struct sim_buf *out, struct sim_buf *inner)
{
	if (inner->failed)
		out->failed = true;
	der_tlv(out, DER_SEQUENCE, inner->p, inner->len);
	sim_buf_free(inner);
}

/* SEQUENCE { OID sgx.<a>[.<b>], <tag> value } */
static void der_entry(struct sim_buf *out, int a, int b, uint8_t tag, const uint8_t *v, size_t n)
{
	uint8_t oid[sizeof(sgx_oid) + 2];
	size_t olen = sizeof(sgx_oid);
	memcpy(oid, sgx_oid, olen);
	oid[olen++] = (uint8_t)a;
	if (b > 0)
		oid[olen++] = (uint8_t)b;
	struct sim_buf e = { 0 };
	der_tlv(&e, DER_OID, oid, olen);
	der_tlv(&e, tag, v, n);
	der_seq(out, &e);
}

/* Minimal positive INTEGER content for @p v. */
static size_t der_uint(unsigned v, uint8_t out[3])
{
	if (v < 0x80) {
		out[0] = (uint8_t)v;
		return 1;
	}
	if (v < 0x100) {
		out[0] = 0;
		out[1] = (uint8_t)v;
		return 2;
	}
	if (v < 0x8000) {
		out[0] = (uint8_t)(v >> 8);
		out[1] = (uint8_t)v;
		return 2;
	}
	out[0] = 0;
	out[1] = (uint8_t)(v >> 8);
	out[2] = (uint8_t)v;
	return 3;
}

int sim_pki_sgx_extension(const struct sim_platform *plat, uint8_t **der, size_t *len)
{
	struct sim_buf top = { 0 }, tcb = { 0 }, conf = { 0 }, out = { 0 };
	uint8_t n[3];
	static const uint8_t scalable = 1, yes = 0xFF;

	der_entry(&top, 1, 0, DER_OCTETS, plat->ppid, sizeof(plat->ppid));
	/* TCB: the 16 SGX components, PCESVN, CPUSVN */
	for (int i = 0; i < 16; i++)
		der_entry(&tcb, 2, i + 1, DER_INTEGER, n, der_uint(plat->cpu_svn[i], n));
	der_entry(&tcb, 2, 17, DER_INTEGER, n, der_uint(plat->pce_svn, n));
	der_entry(&tcb, 2, 18, DER_OCTETS, plat->cpu_svn, sizeof(plat->cpu_svn));
	struct sim_buf e = { 0 };
	uint8_t tcb_oid[sizeof(sgx_oid) + 1];
	memcpy(tcb_oid, sgx_oid, sizeof(sgx_oid));
	tcb_oid[sizeof(sgx_oid)] = 2;
	der_tlv(&e, DER_OID, tcb_oid, sizeof(tcb_oid));
	der_seq(&e, &tcb);
	der_seq(&top, &e);

	der_entry(&top, 3, 0, DER_OCTETS, plat->pce_id, sizeof(plat->pce_id));
	der_entry(&top, 4, 0, DER_OCTETS, plat->fmspc, sizeof(plat->fmspc));
	der_entry(&top, 5, 0, DER_ENUMERATED, &scalable, 1); /* SGX type: Scalable */
	der_entry(&top, 6, 0, DER_OCTETS, plat->platform_instance_id,
		  sizeof(plat->platform_instance_id));
	/* Configuration: dynamicPlatform, cachedKeys, SMTEnabled */
	for (int i = 1; i <= 3; i++)
		der_entry(&conf, 7, i, DER_BOOLEAN, &yes, 1);
	uint8_t conf_oid[sizeof(sgx_oid) + 1];
	memcpy(conf_oid, sgx_oid, sizeof(sgx_oid));
	conf_oid[sizeof(sgx_oid)] = 7;
	der_tlv(&e, DER_OID, conf_oid, sizeof(conf_oid));
	der_seq(&e, &conf);
	der_seq(&top, &e);

	der_seq(&out, &top);
	return sim_buf_finish(&out, (char **)der, len);
}

/* ---- keys and signatures ---- */

EVP_PKEY *sim_pki_keygen(void)
{
	return EVP_EC_gen("P-256");
}

int sim_sign_raw(EVP_PKEY *key, const void *msg, size_t len, uint8_t sig[64])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[80];
	size_t dlen = sizeof(der);
	int rc = SIM_ECRYPTO;
	if (ctx && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
	    EVP_DigestSign(ctx, der, &dlen, msg, len) == 1) {
		const unsigned char *p = der;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dlen);
		const BIGNUM *r, *s;
		if (es) {
			ECDSA_SIG_get0(es, &r, &s);
			if (BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32)
				rc = 0;
			ECDSA_SIG_free(es);
		}
	}
	EVP_MD_CTX_free(ctx);
	return rc;
}

int sim_pubkey_raw(EVP_PKEY *key, uint8_t out[64])
{
	uint8_t buf[65];
	size_t n = 0;
	if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf,
					    sizeof(buf), &n) != 1 ||
	    n != 65 || buf[0] != 0x04)
		return SIM_ECRYPTO;
	memcpy(out, buf + 1, 64);
	return 0;
}

static char *bio_text(BIO *bio)
{
	char *data = NULL, *out = NULL;
	long n = BIO_get_mem_data(bio, &data);
	if (n >= 0 && (out = malloc((size_t)n + 1))) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
	}
	return out;
}

char *sim_pem_cert(X509 *x)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = bio && PEM_write_bio_X509(bio, x) == 1 ? bio_text(bio) : NULL;
	BIO_free(bio);
	return out;
}

char *sim_pem_key(EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1
			    ? bio_text(bio)
			    : NULL;
	BIO_free(bio);
	return out;
}

/* ---- certificates ---- */

static const char *const subject_cn[] = {
	[SIM_CERT_ROOT] = SIM_ROOT_CA_CN,
	[SIM_CERT_PCK_CA] = "moonstack TDX Simulation PCK Platform CA",
	[SIM_CERT_PCK] = "moonstack TDX Simulation PCK Certificate",
	[SIM_CERT_TCB] = "moonstack TDX Simulation TCB Signing",
};

static bool set_name(X509 *x, const char *cn)
{
	X509_NAME *name = X509_get_subject_name(x);
	return X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
					  -1, 0) == 1 &&
	       X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)SIM_ORG,
					  -1, -1, 0) == 1;
}

/* SHA-1 of the public key bits (the usual key identifier). */
static ASN1_OCTET_STRING *key_id(X509 *x)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
	if (!id || X509_pubkey_digest(x, EVP_sha1(), md, &n) != 1 ||
	    ASN1_OCTET_STRING_set(id, md, (int)n) != 1) {
		ASN1_OCTET_STRING_free(id);
		return NULL;
	}
	return id;
}

static AUTHORITY_KEYID *authority_key_id(X509 *issuer)
{
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	if (akid && !(akid->keyid = key_id(issuer))) {
		AUTHORITY_KEYID_free(akid);
		return NULL;
	}
	return akid;
}

static bool add_conf_ext(X509 *x, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, nid, value);
	bool ok = ext && X509_add_ext(x, ext, -1) == 1;
	X509_EXTENSION_free(ext);
	return ok;
}

static bool add_sgx_ext(X509 *x, const struct sim_platform *plat)
{
	uint8_t *der = NULL;
	size_t len = 0;
	bool ok = false;
	ASN1_OBJECT *obj = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
	ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
	if (obj && val && sim_pki_sgx_extension(plat, &der, &len) == 0 &&
	    ASN1_OCTET_STRING_set(val, der, (int)len) == 1) {
		X509_EXTENSION *ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, val);
		ok = ext && X509_add_ext(x, ext, -1) == 1;
		X509_EXTENSION_free(ext);
	}
	free(der);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(val);
	return ok;
}

static bool set_serial(X509 *x)
{
	BIGNUM *bn = BN_new();
	/* 159 random bits with the top one set: 20 bytes, positive, like Intel's serials */
	bool ok = bn && BN_rand(bn, 159, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
		  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok;
}

static bool set_validity(X509 *x, enum sim_cert_kind kind, time_t now)
{
	if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -DAY, &now))
		return false;
	if (kind == SIM_CERT_ROOT || kind == SIM_CERT_PCK_CA)
		return ASN1_TIME_set_string_X509(X509_getm_notAfter(x), "20491231235959Z") == 1;
	return X509_time_adj_ex(X509_getm_notAfter(x), 7 * 365, 0, &now) != NULL;
}

static bool add_extensions(X509 *x, enum sim_cert_kind kind, X509 *issuer,
			   const struct sim_platform *plat)
{
	AUTHORITY_KEYID *akid = authority_key_id(issuer);
	ASN1_OCTET_STRING *skid = key_id(x);
	bool ca = kind == SIM_CERT_ROOT || kind == SIM_CERT_PCK_CA;
	bool ok = akid && skid &&
		  X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0) == 1 &&
		  add_conf_ext(x, NID_crl_distribution_points,
			       kind == SIM_CERT_PCK ? "URI:" PCK_CRL_URI : "URI:" ROOT_CRL_URI) &&
		  X509_add1_ext_i2d(x, NID_subject_key_identifier, skid, 0, 0) == 1 &&
		  add_conf_ext(x, NID_key_usage,
			       ca ? "critical,keyCertSign,cRLSign"
				  : "critical,digitalSignature,nonRepudiation") &&
		  add_conf_ext(x, NID_basic_constraints,
			       kind == SIM_CERT_ROOT	 ? "critical,CA:TRUE,pathlen:1"
			       : kind == SIM_CERT_PCK_CA ? "critical,CA:TRUE,pathlen:0"
							 : "critical,CA:FALSE");
	if (ok && kind == SIM_CERT_PCK)
		ok = add_sgx_ext(x, plat);
	AUTHORITY_KEYID_free(akid);
	ASN1_OCTET_STRING_free(skid);
	return ok;
}

X509 *sim_pki_issue(enum sim_cert_kind kind, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
		    time_t now, const struct sim_platform *plat)
{
	X509 *x = X509_new();
	if (!x)
		return NULL;
	if (!issuer)
		issuer = x; /* self-signed root */
	bool ok = X509_set_version(x, 2) == 1 && set_serial(x) && set_validity(x, kind, now) &&
		  set_name(x, subject_cn[kind]) &&
		  X509_set_issuer_name(x, X509_get_subject_name(issuer)) == 1 &&
		  X509_set_pubkey(x, key) == 1 && add_extensions(x, kind, issuer, plat) &&
		  X509_sign(x, issuer_key, EVP_sha256()) > 0;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* ---- CRLs ---- */

int sim_pki_crl(X509 *issuer, EVP_PKEY *issuer_key, time_t now, uint8_t **der, size_t *len)
{
	X509_CRL *crl = X509_CRL_new();
	ASN1_TIME *last = X509_time_adj_ex(NULL, 0, -3600, &now);
	ASN1_TIME *next = X509_time_adj_ex(NULL, 30, 0, &now);
	ASN1_INTEGER *number = ASN1_INTEGER_new();
	AUTHORITY_KEYID *akid = authority_key_id(issuer);
	*der = NULL;
	*len = 0;
	bool ok = crl && last && next && number && akid && X509_CRL_set_version(crl, 1) == 1 &&
		  X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) == 1 &&
		  X509_CRL_set1_lastUpdate(crl, last) == 1 &&
		  X509_CRL_set1_nextUpdate(crl, next) == 1 &&
		  ASN1_INTEGER_set_int64(number, (int64_t)now) == 1 &&
		  X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0) == 1 &&
		  X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid, 0, 0) == 1 &&
		  X509_CRL_sign(crl, issuer_key, EVP_sha256()) > 0;
	if (ok) {
		unsigned char *p = NULL;
		int n = i2d_X509_CRL(crl, &p);
		if (n > 0) {
			*der = malloc((size_t)n);
			if (*der) {
				memcpy(*der, p, (size_t)n);
				*len = (size_t)n;
			}
		}
		OPENSSL_free(p);
		ok = *der != NULL;
	}
	X509_CRL_free(crl);
	ASN1_TIME_free(last);
	ASN1_TIME_free(next);
	ASN1_INTEGER_free(number);
	AUTHORITY_KEYID_free(akid);
	return ok ? 0 : SIM_ECRYPTO;
}
