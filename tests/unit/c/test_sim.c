/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the simulated TDX (native/sim/sim.h): the state directory (0600 files, reused
 * on the next open), CVM state and RTMR extension (checked against an independent SHA-384
 * replay), and quotes and collateral checked with plain OpenSSL calls: the ISV signature over
 * header||body with the attestation key, the QE report signature with the PCK leaf key, the
 * QE report's attestation-key binding, the PEM chain up to the simulated root as the only
 * trust anchor, the collateral signatures and CRLs. The quote's layout is compared with a real
 * Intel quote from the shared vectors, parsed by native/tdx.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_vectors.h"
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sim/sim.h"
#include "tdx/tdx_quote.h"

/* v4 quote offsets (spec/guest-and-attestation.md §3.1-3.2) */
#define OFF_MRTD	 184
#define OFF_MR_CONFIG_ID 232
#define OFF_RTMR0	 376
#define OFF_REPORT_DATA	 568
#define OFF_AUTH_SIZE	 632
#define OFF_ISV_SIG	 636
#define OFF_ATT_KEY	 700
#define OFF_CERT_TYPE	 764
#define OFF_QE_REPORT	 770
#define OFF_QE_SIG	 1154
#define OFF_QE_AUTH_SIZE 1218
#define OFF_QE_AUTH	 1220

static const uint8_t intel_vendor[16] = { 0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9,
					  0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07 };

struct fixture {
	char dir[512];
	struct sim *s;
};

/* ---- helpers ---- */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char sub[1024];
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			rm_rf(sub);
		}
		closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

static void temp_dir(char *out, size_t size)
{
	const char *base = getenv("MOONSTACK_TEST_TMP");
	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0700);
	snprintf(out, size, "%s/sim-XXXXXX", base);
	assert_non_null(mkdtemp(out));
}

static struct sim *open_ok(const char *dir)
{
	struct sim *s = NULL;
	char err[300] = "";
	int rc = sim_open(dir, &s, err, sizeof(err));
	if (rc != 0)
		fail_msg("sim_open(%s): %s: %s", dir, sim_errcode(rc), err);
	return s;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	temp_dir(f->dir, sizeof(f->dir));
	strcat(f->dir, "/state"); /* sim_open creates it */
	f->s = open_ok(f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	sim_close(f->s);
	char *slash = strrchr(f->dir, '/');
	*slash = '\0';
	rm_rf(f->dir);
	free(f);
	return 0;
}

static EVP_PKEY *raw_p256_pubkey(const uint8_t xy[64])
{
	uint8_t point[65] = { 0x04 };
	memcpy(point + 1, xy, 64);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0),
		OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)),
		OSSL_PARAM_construct_end(),
	};
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *key = NULL;
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(ctx);
	return key;
}

/* Verify a raw r||s ECDSA P-256 / SHA-256 signature with plain OpenSSL. */
static bool verify_raw(EVP_PKEY *key, const void *msg, size_t len, const uint8_t sig[64])
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
	assert_int_equal(ECDSA_SIG_set0(es, r, s), 1);
	unsigned char *der = NULL;
	int dlen = i2d_ECDSA_SIG(es, &der);
	assert_true(dlen > 0);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
	int ok = EVP_DigestVerify(ctx, der, (size_t)dlen, msg, len);
	EVP_MD_CTX_free(ctx);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	return ok == 1;
}

/* Parse every certificate of a PEM text (up to @p max); returns how many. */
static int read_pem_certs(const char *pem, size_t len, X509 **out, int max)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	int n = 0;
	while (n < max && (out[n] = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
		n++;
	BIO_free(bio);
	return n;
}

/* X509_verify_cert of @p leaf with @p untrusted intermediates and @p anchor as the only
 * trust anchor. */
static bool chain_ok(X509 *leaf, X509 **untrusted, int n, X509 *anchor)
{
	X509_STORE *store = X509_STORE_new();
	STACK_OF(X509) *chain = sk_X509_new_null();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	assert_int_equal(X509_STORE_add_cert(store, anchor), 1);
	for (int i = 0; i < n; i++)
		sk_X509_push(chain, untrusted[i]);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, chain), 1);
	int ok = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	sk_X509_free(chain);
	X509_STORE_free(store);
	return ok == 1;
}

static X509 *sim_root(struct sim *s)
{
	size_t len = 0;
	const uint8_t *der = sim_root_ca_der(s, &len);
	X509 *x = d2i_X509(NULL, &der, (long)len);
	assert_non_null(x);
	return x;
}

static void extend_replay(uint8_t mr[48], const uint8_t digest[48])
{
	uint8_t buf[96];
	unsigned int n = 0;
	memcpy(buf, mr, 48);
	memcpy(buf + 48, digest, 48);
	assert_int_equal(EVP_Digest(buf, sizeof(buf), mr, &n, EVP_sha384(), NULL), 1);
}

static uint8_t *quote_ok(struct sim *s, const char *cvm, const void *rd, size_t len, size_t *qlen)
{
	uint8_t *q = NULL;
	int rc = sim_quote(s, cvm, rd, len, &q, qlen);
	if (rc != 0)
		fail_msg("sim_quote: %s: %s", sim_errcode(rc), sim_error(s));
	return q;
}

/* ---- state directory ---- */

static void test_state_dir_created(void **state)
{
	struct fixture *f = *state;
	static const char *const files[] = {
		"root-ca.pem",
		"root-ca.key.pem",
		"pck-platform-ca.pem",
		"pck-platform-ca.key.pem",
		"pck.pem",
		"pck.key.pem",
		"tcb-signing.pem",
		"tcb-signing.key.pem",
		"attestation.key.pem",
		"platform.conf",
	};
	struct stat st;
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
		if (stat(path, &st) != 0)
			fail_msg("%s missing", path);
		assert_true(S_ISREG(st.st_mode));
		if ((st.st_mode & 0777) != 0600)
			fail_msg("%s has mode %o", path, st.st_mode & 0777);
	}
	/* no temporary file left behind by the atomic writes */
	DIR *d = opendir(f->dir);
	struct dirent *e;
	while ((e = readdir(d)))
		assert_null(strstr(e->d_name, ".tmp."));
	closedir(d);

	X509 *root = sim_root(f->s);
	char cn[256];
	X509_NAME_get_text_by_NID(X509_get_subject_name(root), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, "moonstack TDX Simulation Root CA");
	assert_int_equal(X509_check_issued(root, root), X509_V_OK);
	assert_int_equal(X509_check_ca(root), 1);
	X509_free(root);
	assert_non_null(strstr(sim_root_ca_pem(f->s), "-----BEGIN CERTIFICATE-----"));
}

static void test_state_dir_reused(void **state)
{
	struct fixture *f = *state;
	size_t len1 = 0, len2 = 0;
	const uint8_t *der1 = sim_root_ca_der(f->s, &len1);
	uint8_t key1[64], key2[64];
	sim_attestation_key(f->s, key1);
	assert_int_equal(sim_cvm_create(f->s, "kept", NULL, false), 0);
	uint8_t digest[48], rtmr[48];
	memset(digest, 0x5a, sizeof(digest));
	assert_int_equal(sim_extend_rtmr(f->s, "kept", 2, digest, rtmr), 0);

	struct sim *again = open_ok(f->dir);
	const uint8_t *der2 = sim_root_ca_der(again, &len2);
	assert_int_equal(len1, len2);
	assert_memory_equal(der1, der2, len1);
	sim_attestation_key(again, key2);
	assert_memory_equal(key1, key2, 64);
	assert_memory_equal(sim_platform(f->s), sim_platform(again), sizeof(struct sim_platform));
	assert_string_equal(sim_pck_chain_pem(f->s), sim_pck_chain_pem(again));
	struct sim_td td;
	assert_int_equal(sim_cvm_load(again, "kept", &td), 0);
	assert_memory_equal(td.rtmr[2], rtmr, 48);
	sim_close(again);

	/* a different directory gets a different root */
	char other[600];
	snprintf(other, sizeof(other), "%s-other", f->dir);
	struct sim *third = open_ok(other);
	size_t len3 = 0;
	const uint8_t *der3 = sim_root_ca_der(third, &len3);
	assert_false(len3 == len1 && memcmp(der1, der3, len1) == 0);
	sim_close(third);
	rm_rf(other);
}

static void test_corrupt_state(void **state)
{
	struct fixture *f = *state;
	char path[1024], err[300];
	struct sim *s = NULL;
	snprintf(path, sizeof(path), "%s/pck.pem", f->dir);
	FILE *fp = fopen(path, "w");
	fputs("not a certificate\n", fp);
	fclose(fp);
	assert_int_equal(sim_open(f->dir, &s, err, sizeof(err)), SIM_ESTATE);
	assert_null(s);
	assert_non_null(strstr(err, "pck.pem"));

	assert_int_equal(sim_cvm_create(f->s, "bad", NULL, false), 0);
	snprintf(path, sizeof(path), "%s/cvms/bad.state", f->dir);
	fp = fopen(path, "w");
	fputs("version=1\nmrtd=00\n", fp);
	fclose(fp);
	struct sim_td td;
	assert_int_equal(sim_cvm_load(f->s, "bad", &td), SIM_ESTATE);
	assert_int_equal(sim_open("", &s, err, sizeof(err)), SIM_EINVAL);
}

/* ---- CVMs ---- */

static void test_cvm_errors(void **state)
{
	struct fixture *f = *state;
	struct sim_td td;
	uint8_t digest[48] = { 0 }, *q = NULL, rd[65] = { 0 };
	size_t qlen = 0;
	char long_name[SIM_CVM_NAME_MAX + 2];
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';

	assert_false(sim_cvm_name_valid("../etc"));
	assert_false(sim_cvm_name_valid(".hidden"));
	assert_false(sim_cvm_name_valid("a/b"));
	assert_false(sim_cvm_name_valid(""));
	assert_false(sim_cvm_name_valid(long_name));
	long_name[SIM_CVM_NAME_MAX] = '\0';
	assert_true(sim_cvm_name_valid(long_name));
	assert_true(sim_cvm_name_valid("app-1.vm_2"));

	assert_int_equal(sim_cvm_create(f->s, "../x", NULL, false), SIM_EINVAL);
	assert_int_equal(sim_cvm_load(f->s, "missing", &td), SIM_ENOENT);
	assert_non_null(strstr(sim_error(f->s), "missing"));
	assert_int_equal(sim_quote(f->s, "missing", NULL, 0, &q, &qlen), SIM_ENOENT);
	assert_null(q);
	assert_int_equal(sim_extend_rtmr(f->s, "missing", 3, digest, NULL), SIM_ENOENT);
	assert_int_equal(sim_cvm_remove(f->s, "missing"), SIM_ENOENT);

	assert_int_equal(sim_cvm_create(f->s, "vm", NULL, false), 0);
	assert_int_equal(sim_cvm_create(f->s, "vm", NULL, false), SIM_EEXIST);
	assert_int_equal(sim_extend_rtmr(f->s, "vm", 4, digest, NULL), SIM_EINVAL);
	assert_int_equal(sim_quote(f->s, "vm", rd, 65, &q, &qlen), SIM_EINVAL);
	assert_null(q);
	assert_int_equal(sim_extend_rtmr(f->s, "vm", 1, digest, NULL), 0);
	assert_int_equal(sim_cvm_create(f->s, "vm", NULL, true), 0); /* replace resets */
	assert_int_equal(sim_cvm_load(f->s, "vm", &td), 0);
	struct sim_td defaults;
	sim_td_defaults(&defaults);
	assert_memory_equal(&td, &defaults, sizeof(td));
	assert_int_equal(sim_cvm_remove(f->s, "vm"), 0);
	assert_int_equal(sim_cvm_load(f->s, "vm", &td), SIM_ENOENT);
	assert_string_equal(sim_errcode(SIM_ENOENT), "ENOENT");
}

static void test_quote_carries_report_data_and_rtmrs(void **state)
{
	struct fixture *f = *state;
	struct sim_td td;
	sim_td_defaults(&td);
	memset(td.mrtd, 0x11, sizeof(td.mrtd));
	td.mr_config_id[0] = 0x01;
	memset(td.mr_config_id + 1, 0xc1, 32);
	assert_int_equal(sim_cvm_create(f->s, "app", &td, false), 0);

	/* extend every RTMR a few times and replay independently from zero */
	uint8_t replay[4][48] = { { 0 } }, digest[48], got[48];
	for (int round = 0; round < 3; round++) {
		for (unsigned i = 0; i < 4; i++) {
			for (int k = 0; k < 48; k++)
				digest[k] = (uint8_t)(round * 31 + i * 7 + k);
			assert_int_equal(sim_extend_rtmr(f->s, "app", i, digest, got), 0);
			extend_replay(replay[i], digest);
			assert_memory_equal(got, replay[i], 48);
		}
	}
	struct sim_td now;
	assert_int_equal(sim_cvm_load(f->s, "app", &now), 0);
	for (int i = 0; i < 4; i++)
		assert_memory_equal(now.rtmr[i], replay[i], 48);

	static const size_t lengths[] = { 0, 1, 32, 63, 64 };
	for (size_t t = 0; t < sizeof(lengths) / sizeof(lengths[0]); t++) {
		uint8_t rd[64], padded[64] = { 0 };
		for (size_t k = 0; k < sizeof(rd); k++)
			rd[k] = (uint8_t)(0xA0 ^ k);
		memcpy(padded, rd, lengths[t]);
		size_t qlen = 0;
		uint8_t *q = quote_ok(f->s, "app", rd, lengths[t], &qlen);
		assert_int_equal(le16(q), 4);
		assert_int_equal(le16(q + 2), 2);
		assert_int_equal(le32(q + 4), 0x81);
		assert_memory_equal(q + 12, intel_vendor, 16);
		assert_memory_equal(q + 28, sim_platform(f->s)->qe_id, 16);
		assert_memory_equal(q + OFF_MRTD, td.mrtd, 48);
		assert_memory_equal(q + OFF_MR_CONFIG_ID, td.mr_config_id, 48);
		for (int i = 0; i < 4; i++)
			assert_memory_equal(q + OFF_RTMR0 + 48 * i, replay[i], 48);
		assert_memory_equal(q + OFF_REPORT_DATA, padded, 64);
		assert_int_equal(OFF_ISV_SIG + le32(q + OFF_AUTH_SIZE), qlen);
		free(q);
	}
}

/* ---- signatures and chain, with plain OpenSSL ---- */

static void test_quote_signatures(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(sim_cvm_create(f->s, "sig", NULL, false), 0);
	size_t qlen = 0;
	uint8_t *q = quote_ok(f->s, "sig", "nonce", 5, &qlen);

	/* ISV signature: attestation key over header||body */
	uint8_t att[64];
	sim_attestation_key(f->s, att);
	assert_memory_equal(q + OFF_ATT_KEY, att, 64);
	EVP_PKEY *att_key = raw_p256_pubkey(q + OFF_ATT_KEY);
	assert_true(verify_raw(att_key, q, OFF_AUTH_SIZE, q + OFF_ISV_SIG));
	q[OFF_REPORT_DATA + 3] ^= 0x01; /* negative: one flipped body byte */
	assert_false(verify_raw(att_key, q, OFF_AUTH_SIZE, q + OFF_ISV_SIG));
	q[OFF_REPORT_DATA + 3] ^= 0x01;
	q[100] ^= 0x80;
	assert_false(verify_raw(att_key, q, OFF_AUTH_SIZE, q + OFF_ISV_SIG));
	q[100] ^= 0x80;

	/* certification data type 6 wrapping type 5 */
	assert_int_equal(le16(q + OFF_CERT_TYPE), 6);
	uint32_t cert6 = le32(q + OFF_CERT_TYPE + 2);
	assert_int_equal(OFF_QE_REPORT + cert6, qlen);
	uint16_t auth_n = le16(q + OFF_QE_AUTH_SIZE);
	assert_int_equal(auth_n, 32);
	size_t inner = OFF_QE_AUTH + auth_n;
	assert_int_equal(le16(q + inner), 5);
	uint32_t chain_len = le32(q + inner + 2);
	assert_int_equal(inner + 6 + chain_len, qlen);
	const char *pem = (const char *)q + inner + 6;
	assert_int_equal(pem[chain_len - 1], '\0'); /* NUL-terminated like real quotes */
	assert_string_equal(pem, sim_pck_chain_pem(f->s));

	/* QE report: report_data = SHA-256(attestation key || QE auth data) || zeros */
	uint8_t hashed[96], expect[64] = { 0 };
	unsigned int n = 0;
	memcpy(hashed, q + OFF_ATT_KEY, 64);
	memcpy(hashed + 64, q + OFF_QE_AUTH, 32);
	EVP_Digest(hashed, sizeof(hashed), expect, &n, EVP_sha256(), NULL);
	assert_memory_equal(q + OFF_QE_REPORT + 320, expect, 64);

	/* QE report signature by the PCK leaf's key */
	X509 *certs[3] = { 0 };
	assert_int_equal(read_pem_certs(pem, chain_len - 1, certs, 3), 3);
	EVP_PKEY *pck = X509_get0_pubkey(certs[0]);
	assert_true(verify_raw(pck, q + OFF_QE_REPORT, 384, q + OFF_QE_SIG));
	q[OFF_QE_REPORT + 256] ^= 1; /* ISVPRODID */
	assert_false(verify_raw(pck, q + OFF_QE_REPORT, 384, q + OFF_QE_SIG));
	q[OFF_QE_REPORT + 256] ^= 1;
	assert_false(verify_raw(att_key, q + OFF_QE_REPORT, 384, q + OFF_QE_SIG));

	/* chain leaf -> intermediate -> root, with the sim root as the only trust anchor */
	X509 *root = sim_root(f->s);
	assert_int_equal(X509_cmp(root, certs[2]), 0);
	assert_true(chain_ok(certs[0], &certs[1], 1, root));
	assert_false(chain_ok(certs[0], NULL, 0, root)); /* the intermediate is needed */
	size_t intel_len = 0;
	char *intel_der = read_vector("dcap-qvl/TrustedRootCA.der", &intel_len);
	const unsigned char *p = (const unsigned char *)intel_der;
	X509 *intel = d2i_X509(NULL, &p, (long)intel_len);
	assert_non_null(intel);
	assert_false(chain_ok(certs[0], &certs[1], 1, intel)); /* never Intel's */
	assert_int_equal(X509_check_ca(certs[1]), 1);
	assert_int_equal(X509_check_ca(certs[0]), 0);

	X509_free(intel);
	free(intel_der);
	X509_free(root);
	for (int i = 0; i < 3; i++)
		X509_free(certs[i]);
	EVP_PKEY_free(att_key);
	free(q);
}

static void test_pck_extension(void **state)
{
	struct fixture *f = *state;
	const struct sim_platform *plat = sim_platform(f->s);
	const char *chain = sim_pck_chain_pem(f->s);
	X509 *certs[3] = { 0 };
	assert_int_equal(read_pem_certs(chain, strlen(chain), certs, 3), 3);

	/* the SGX extension is there, non-critical, and parses as DER */
	ASN1_OBJECT *oid = OBJ_txt2obj("1.2.840.113741.1.13.1", 1);
	int idx = X509_get_ext_by_OBJ(certs[0], oid, -1);
	assert_true(idx >= 0);
	X509_EXTENSION *ext = X509_get_ext(certs[0], idx);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 0);
	const ASN1_OCTET_STRING *val = X509_EXTENSION_get_data(ext);
	const unsigned char *p = ASN1_STRING_get0_data(val);
	ASN1_SEQUENCE_ANY *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(val));
	assert_non_null(seq);
	assert_int_equal(sk_ASN1_TYPE_num(seq), 7); /* PPID TCB PCEID FMSPC type instance config */
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	ASN1_OBJECT_free(oid);

	/* ... and native/tdx's PCK parser reads the platform's values from it */
	struct tdx_cert_info *info = NULL;
	size_t n = 0;
	struct tdx_error err;
	assert_int_equal(tdx_pem_chain_parse(chain, strlen(chain), &info, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_true(info[0].has_sgx_ext);
	assert_memory_equal(info[0].sgx.fmspc, plat->fmspc, 6);
	assert_memory_equal(info[0].sgx.pceid, plat->pce_id, 2);
	assert_memory_equal(info[0].sgx.cpusvn, plat->cpu_svn, 16);
	assert_memory_equal(info[0].sgx.tcb_comp, plat->cpu_svn, 16);
	assert_memory_equal(info[0].sgx.ppid, plat->ppid, 16);
	assert_int_equal(info[0].sgx.pcesvn, plat->pce_svn);
	assert_int_equal(info[0].sgx.sgx_type, 1);
	assert_non_null(strstr(info[0].subject, "moonstack TDX Simulation PCK Certificate"));
	assert_non_null(strstr(info[2].subject, "moonstack TDX Simulation Root CA"));
	free(info);
	for (int i = 0; i < 3; i++)
		X509_free(certs[i]);
}

/* ---- layout against a real quote ---- */

static void check_layout(const struct tdx_quote *q)
{
	assert_int_equal(q->header.version, 4);
	assert_int_equal(q->header.tee_type, TDX_TEE_TYPE_TDX);
	assert_int_equal(q->body_type, TDX_BODY_TD10);
	assert_int_equal(q->body_offset, 48);
	assert_int_equal(q->body_size, 584);
	assert_int_equal(q->signed_len, 632);
	assert_int_equal(q->sig_data_offset, 636);
	assert_int_equal(q->td.rtmr[0] - q->data, OFF_RTMR0);
	assert_int_equal(q->td.report_data - q->data, OFF_REPORT_DATA);
	assert_int_equal(q->attestation_key - q->data, OFF_ATT_KEY);
	assert_int_equal(q->cert_type, 6);
	assert_true(q->has_qe_report);
	assert_int_equal(q->qe_report.raw - q->data, OFF_QE_REPORT);
	assert_int_equal(q->qe_report_signature - q->data, OFF_QE_SIG);
	assert_int_equal(q->qe_auth_size, 32);
	assert_int_equal(q->inner_cert_type, 5);
	assert_true(tdx_quote_qe_hash_ok(q));
	assert_memory_equal(q->header.qe_vendor_id, intel_vendor, 16);
}

static void test_layout_matches_real_quote(void **state)
{
	struct fixture *f = *state;
	size_t rlen = 0, slen = 0;
	char *real = read_vector("dcap-qvl/tdx_quote", &rlen);
	struct tdx_quote rq, sq;
	struct tdx_error err;
	if (tdx_quote_parse((const uint8_t *)real, rlen, &rq, &err) != 0)
		fail_msg("real quote: %s", err.msg);
	check_layout(&rq);

	assert_int_equal(sim_cvm_create(f->s, "layout", NULL, false), 0);
	uint8_t *sim = quote_ok(f->s, "layout", "x", 1, &slen);
	if (tdx_quote_parse(sim, slen, &sq, &err) != 0)
		fail_msg("simulated quote: %s", err.msg);
	check_layout(&sq);
	assert_int_equal(sq.trailing, 0);
	assert_int_equal(sq.end, slen);
	assert_int_equal(sq.qe_report.isv_prod_id, rq.qe_report.isv_prod_id); /* TD QE */
	assert_memory_equal(sq.qe_auth_data, rq.qe_auth_data, 32);
	assert_memory_equal(sq.td.td_attributes, rq.td.td_attributes, 8);
	assert_memory_equal(sq.td.xfam, rq.td.xfam, 8);
	/* same PEM chain shape: three certificates, NUL-terminated */
	struct tdx_cert_info *rc = NULL, *sc = NULL;
	size_t rn = 0, sn = 0;
	assert_int_equal(tdx_pem_chain_parse(rq.pck_chain, rq.pck_chain_len, &rc, &rn, &err), 0);
	assert_int_equal(tdx_pem_chain_parse(sq.pck_chain, sq.pck_chain_len, &sc, &sn, &err), 0);
	assert_int_equal(rn, sn);
	assert_true(rc[0].has_sgx_ext && sc[0].has_sgx_ext);
	assert_int_equal(rc[0].sgx.sgx_type, sc[0].sgx.sgx_type);
	assert_int_equal(sim[slen - 1], 0);
	free(rc);
	free(sc);
	free(sim);
	free(real);
}

/* ---- collateral ---- */

static void test_collateral(void **state)
{
	struct fixture *f = *state;
	struct sim_collateral c;
	time_t now = time(NULL);
	assert_int_equal(sim_collateral(f->s, now, &c), 0);
	X509 *root = sim_root(f->s);

	/* TCB info and QE identity: signed by the TCB signing cert, which chains to the root */
	X509 *tcb[2] = { 0 };
	assert_int_equal(
		read_pem_certs(c.tcb_info_issuer_chain, strlen(c.tcb_info_issuer_chain), tcb, 2),
		2);
	assert_int_equal(X509_cmp(tcb[1], root), 0);
	assert_true(chain_ok(tcb[0], NULL, 0, root));
	EVP_PKEY *tk = X509_get0_pubkey(tcb[0]);
	assert_true(verify_raw(tk, c.tcb_info, strlen(c.tcb_info), c.tcb_info_signature));
	assert_true(verify_raw(tk, c.qe_identity, strlen(c.qe_identity), c.qe_identity_signature));
	char *tampered = strdup(c.tcb_info);
	char *status = strstr(tampered, "UpToDate");
	assert_non_null(status);
	memcpy(status, "OutOfDat", 8);
	assert_false(verify_raw(tk, tampered, strlen(tampered), c.tcb_info_signature));
	free(tampered);
	assert_string_equal(c.qe_identity_issuer_chain, c.tcb_info_issuer_chain);

	/* the documents describe the platform */
	assert_non_null(strstr(c.tcb_info, "\"id\":\"TDX\",\"version\":3,"));
	assert_non_null(strstr(c.tcb_info, "\"fmspc\":\"B0C06F000000\""));
	assert_non_null(strstr(c.tcb_info, "\"pcesvn\":11,"));
	assert_non_null(strstr(c.tcb_info, "\"tdxModuleIdentities\":[{\"id\":\"TDX_01\""));
	assert_non_null(strstr(c.qe_identity, "\"id\":\"TD_QE\",\"version\":2,"));
	assert_non_null(strstr(c.qe_identity, "\"isvprodid\":2,"));
	char mrsigner[65];
	for (int i = 0; i < 32; i++)
		snprintf(mrsigner + 2 * i, 3, "%02X", sim_platform(f->s)->qe_mr_signer[i]);
	assert_non_null(strstr(c.qe_identity, mrsigner));

	/* CRLs: DER, signed by their issuers, valid around now */
	X509 *pca[2] = { 0 };
	assert_int_equal(
		read_pem_certs(c.pck_crl_issuer_chain, strlen(c.pck_crl_issuer_chain), pca, 2), 2);
	const unsigned char *p = c.root_ca_crl;
	X509_CRL *root_crl = d2i_X509_CRL(NULL, &p, (long)c.root_ca_crl_len);
	p = c.pck_crl;
	X509_CRL *pck_crl = d2i_X509_CRL(NULL, &p, (long)c.pck_crl_len);
	assert_non_null(root_crl);
	assert_non_null(pck_crl);
	assert_int_equal(X509_CRL_verify(root_crl, X509_get0_pubkey(root)), 1);
	assert_int_equal(X509_CRL_verify(pck_crl, X509_get0_pubkey(pca[0])), 1);
	assert_int_equal(X509_CRL_verify(pck_crl, X509_get0_pubkey(root)), 0);
	assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(pck_crl), X509_get_subject_name(pca[0])),
			 0);
	assert_true(X509_cmp_time(X509_CRL_get0_lastUpdate(root_crl), &now) < 0);
	assert_true(X509_cmp_time(X509_CRL_get0_nextUpdate(root_crl), &now) > 0);
	STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(pck_crl);
	assert_true(revoked == NULL || sk_X509_REVOKED_num(revoked) == 0);

	/* JSON: the dcap-qvl collateral shape */
	char *json = NULL;
	size_t jlen = 0;
	assert_int_equal(sim_collateral_json(&c, &json, &jlen), 0);
	assert_int_equal(strlen(json), jlen);
	assert_true(strncmp(json, "{\"pck_crl_issuer_chain\":\"-----BEGIN CERTIFICATE-----\\n",
			    52) == 0);
	assert_non_null(strstr(json, "\"tcb_info\":\"{\\\"id\\\":\\\"TDX\\\""));
	char sig_hex[129];
	for (int i = 0; i < 64; i++)
		snprintf(sig_hex + 2 * i, 3, "%02x", c.tcb_info_signature[i]);
	assert_non_null(strstr(json, sig_hex));
	free(json);

	X509_CRL_free(root_crl);
	X509_CRL_free(pck_crl);
	for (int i = 0; i < 2; i++) {
		X509_free(tcb[i]);
		X509_free(pca[i]);
	}
	X509_free(root);
	sim_collateral_free(&c);
	assert_null(c.tcb_info);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_state_dir_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cvm_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quote_carries_report_data_and_rtmrs, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_quote_signatures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pck_extension, setup, teardown),
		cmocka_unit_test_setup_teardown(test_layout_matches_real_quote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_collateral, setup, teardown),
	};
	return cmocka_run_group_tests_name("sim", tests, NULL, NULL);
}
