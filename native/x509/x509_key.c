/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x509 keys: generate P-256 keys, import a raw P-256 scalar, load PEM/DER keys (private or
 * public), export PKCS#8 (DER, PEM), SubjectPublicKeyInfo (DER, PEM), the scalar and the point.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "x509/x509.h"

EVP_PKEY *x509_key_generate(struct x509_error *err)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (!key)
		x509_fail_ssl(err, "ECRYPTO", "cannot generate a P-256 key");
	return key;
}

/* The public point d·G of P-256 for scalar @p d, uncompressed, into @p pub (65 bytes). */
static int derive_point(const BIGNUM *d, uint8_t pub[65])
{
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	EC_POINT *p = group ? EC_POINT_new(group) : NULL;
	int ok = p && EC_POINT_mul(group, p, d, NULL, NULL, NULL) == 1 &&
		 EC_POINT_point2oct(group, p, POINT_CONVERSION_UNCOMPRESSED, pub, 65, NULL) == 65;
	EC_POINT_free(p);
	EC_GROUP_free(group);
	return ok ? 0 : -1;
}

EVP_PKEY *x509_key_from_scalar(const uint8_t d[32], struct x509_error *err)
{
	EVP_PKEY *key = NULL;
	BIGNUM *bn = BN_bin2bn(d, 32, NULL);
	EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	uint8_t pub[65];
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	if (!bn || !group) {
		x509_fail_ssl(err, "ENOMEM", "out of memory");
		goto out;
	}
	if (BN_is_zero(bn) || BN_cmp(bn, EC_GROUP_get0_order(group)) >= 0) {
		x509_fail(err, "EKEY", "scalar is not in [1, n-1] for P-256");
		goto out;
	}
	if (derive_point(bn, pub) != 0) {
		x509_fail_ssl(err, "ECRYPTO", "cannot compute the public point");
		goto out;
	}
	bld = OSSL_PARAM_BLD_new();
	if (!bld ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, bn) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)) ||
	    !(params = OSSL_PARAM_BLD_to_param(bld))) {
		x509_fail_ssl(err, "ENOMEM", "out of memory");
		goto out;
	}
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params) != 1) {
		key = NULL;
		x509_fail_ssl(err, "ECRYPTO", "cannot build the key");
	}
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EC_GROUP_free(group);
	BN_clear_free(bn);
	return key;
}

/* Try to decode @p data as @p input ("PEM"/"DER") with @p selection; NULL if it is not that. */
static EVP_PKEY *try_decode(const void *data, size_t len, const char *input, int selection)
{
	EVP_PKEY *key = NULL;
	OSSL_DECODER_CTX *dctx =
		OSSL_DECODER_CTX_new_for_pkey(&key, input, NULL, NULL, selection, NULL, NULL);
	if (!dctx)
		return NULL;
	const unsigned char *p = data;
	size_t left = len;
	if (OSSL_DECODER_from_data(dctx, &p, &left) != 1) {
		EVP_PKEY_free(key);
		key = NULL;
	}
	OSSL_DECODER_CTX_free(dctx);
	return key;
}

/* A passphrase callback that refuses: encrypted keys are not loaded. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

EVP_PKEY *x509_key_load(const void *data, size_t len, struct x509_error *err)
{
	if (!data || len == 0)
		return x509_fail(err, "EINVAL", "empty key"), NULL;
	EVP_PKEY *key = NULL;
	bool pem = len > 10 && memmem(data, len, "-----BEGIN", 10) != NULL;
	if (pem) {
		if (len > 0x7fffffff)
			return x509_fail(err, "EINVAL", "key text too large"), NULL;
		BIO *bio = BIO_new_mem_buf(data, (int)len);
		key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
		if (!key && bio) {
			BIO_free(bio);
			bio = BIO_new_mem_buf(data, (int)len);
			key = bio ? PEM_read_bio_PUBKEY(bio, NULL, no_passphrase, NULL) : NULL;
		}
		BIO_free(bio);
	} else {
		key = try_decode(data, len, "DER", EVP_PKEY_KEYPAIR);
		if (!key)
			key = try_decode(data, len, "DER", EVP_PKEY_PUBLIC_KEY);
	}
	if (!key)
		x509_fail_ssl(err, "EKEY", "not a usable %s key (PKCS#8, SEC1 or SPKI)",
			      pem ? "PEM" : "DER");
	else
		ERR_clear_error();
	return key;
}

bool x509_key_is_private(const EVP_PKEY *key)
{
	BIGNUM *d = NULL;
	if (!key)
		return false;
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1) {
		BN_clear_free(d);
		return true;
	}
	ERR_clear_error();
	// keys without a BN private part (Ed25519/X25519): ask for the raw private key
	size_t n = 0;
	bool has = EVP_PKEY_get_raw_private_key(key, NULL, &n) == 1 && n > 0;
	ERR_clear_error();
	return has;
}

/* Copy a memory BIO's contents into @p out (NUL-terminated). */
static int bio_to_buf(BIO *bio, struct x509_buf *out, struct x509_error *err)
{
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	return x509_buf_set(out, p, (size_t)n, err);
}

int x509_key_pkcs8_der(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	if (!x509_key_is_private(key))
		return x509_fail(err, "EKEY", "not a private key");
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
	unsigned char *der = NULL;
	int n = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, &der) : -1;
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (n <= 0)
		return x509_fail_ssl(err, "ECRYPTO", "cannot encode PKCS#8");
	int rc = x509_buf_set(out, der, (size_t)n, err);
	OPENSSL_clear_free(der, (size_t)n);
	return rc;
}

int x509_key_pkcs8_pem(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	if (!x509_key_is_private(key))
		return x509_fail(err, "EKEY", "not a private key");
	BIO *bio = BIO_new(BIO_s_mem());
	int rc;
	if (!bio || PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		rc = x509_fail_ssl(err, "ECRYPTO", "cannot write the PKCS#8 PEM");
	else
		rc = bio_to_buf(bio, out, err);
	if (bio) {
		// the memory BIO held the key: wipe it before freeing
		char *p = NULL;
		long n = BIO_get_mem_data(bio, &p);
		if (p && n > 0)
			OPENSSL_cleanse(p, (size_t)n);
	}
	BIO_free(bio);
	return rc;
}

/* The SubjectPublicKeyInfo of a P-256 key written from its point into @p der (91 bytes);
 * false for other keys. i2d_PUBKEY goes through OpenSSL 3.0's encoder framework (0.13 ms). */
static bool p256_spki(EVP_PKEY *key, unsigned char der[91])
{
	static const unsigned char prefix[26] = { 0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a,
						  0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
						  0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
						  0x01, 0x07, 0x03, 0x42, 0x00 };
	char group[32];
	size_t len = 0;
	if (!EVP_PKEY_is_a(key, "EC") ||
	    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					   NULL) != 1 ||
	    strcmp(group, "prime256v1") != 0 ||
	    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
					    der + sizeof(prefix), 65, &len) != 1 ||
	    len != 65 || der[sizeof(prefix)] != 0x04) {
		ERR_clear_error();
		return false;
	}
	memcpy(der, prefix, sizeof(prefix));
	return true;
}

int x509_key_spki_der(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	unsigned char p256[91];
	if (key && p256_spki(key, p256))
		return x509_buf_set(out, p256, sizeof(p256), err);
	unsigned char *der = NULL;
	int n = key ? i2d_PUBKEY(key, &der) : -1;
	if (n <= 0)
		return x509_fail_ssl(err, "EKEY", "cannot encode the SubjectPublicKeyInfo");
	int rc = x509_buf_set(out, der, (size_t)n, err);
	OPENSSL_free(der);
	return rc;
}

int x509_key_public_pem(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	BIO *bio = BIO_new(BIO_s_mem());
	int rc;
	if (!bio || !key || PEM_write_bio_PUBKEY(bio, key) != 1)
		rc = x509_fail_ssl(err, "EKEY", "cannot write the public key PEM");
	else
		rc = bio_to_buf(bio, out, err);
	BIO_free(bio);
	return rc;
}

/* Fail unless @p key is a P-256 key. */
static int check_p256(EVP_PKEY *key, struct x509_error *err)
{
	char group[32] = "";
	if (!key || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
	    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					   NULL) != 1 ||
	    (strcmp(group, "prime256v1") != 0 && strcmp(group, "P-256") != 0)) {
		ERR_clear_error();
		return x509_fail(err, "EKEY", "not a P-256 key");
	}
	return 0;
}

int x509_key_scalar(EVP_PKEY *key, uint8_t out[32], struct x509_error *err)
{
	if (check_p256(key, err) != 0)
		return -1;
	BIGNUM *d = NULL;
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1) {
		ERR_clear_error();
		return x509_fail(err, "EKEY", "not a private key");
	}
	int ok = BN_bn2binpad(d, out, 32) == 32;
	BN_clear_free(d);
	return ok ? 0 : x509_fail(err, "EKEY", "scalar does not fit 32 bytes");
}

int x509_key_public_point(EVP_PKEY *key, uint8_t out[65], struct x509_error *err)
{
	if (check_p256(key, err) != 0)
		return -1;
	size_t n = 0;
	if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, out, 65, &n) != 1 ||
	    n != 65 || out[0] != 0x04) {
		// some keys keep the point compressed: convert through the encoded-point param
		if (EVP_PKEY_set_utf8_string_param(key, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
						   "uncompressed") != 1 ||
		    EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, out,
						    65, &n) != 1 ||
		    n != 65)
			return x509_fail_ssl(err, "EKEY", "cannot read the public point");
	}
	return 0;
}
