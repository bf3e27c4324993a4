/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ECDSA over NIST P-256 with OpenSSL 3 (EC_POINT for key arithmetic, EVP_PKEY for signing).
 * Private keys are raw 32-byte scalars, signatures raw r||s.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "crypto/crypto.h"

/* Everything one operation needs; released by p256_done(). */
struct p256 {
	const EC_GROUP *group;
	BN_CTX *bn;
	BIGNUM *d; /* the private scalar, or NULL */
};

/* The curve, built once (about 20 us each time, and several P-256 operations per request):
 * immutable once built, kept for the process's life. */
static EC_GROUP *p256_curve;

static void p256_curve_init(void)
{
	p256_curve = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
}

static const EC_GROUP *p256_group(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, p256_curve_init);
	return p256_curve;
}

static int p256_begin(struct p256 *c)
{
	memset(c, 0, sizeof(*c));
	c->group = p256_group();
	c->bn = BN_CTX_new();
	return c->group && c->bn ? CRYPTO_OK : CRYPTO_ENOMEM;
}

/* Release @p c; after a failure, drop what OpenSSL queued (TLS code reads that queue). */
static int p256_done(struct p256 *c, int rc)
{
	BN_clear_free(c->d);
	BN_CTX_free(c->bn);
	if (rc != CRYPTO_OK)
		ERR_clear_error();
	return rc;
}

/* Load @p priv into c->d; CRYPTO_EKEY unless 1 <= d <= n-1 (no reduction). */
static int p256_load_priv(struct p256 *c, const uint8_t priv[CRYPTO_EC_PRIV_LEN])
{
	c->d = BN_secure_new();
	if (!c->d || !BN_bin2bn(priv, CRYPTO_EC_PRIV_LEN, c->d))
		return CRYPTO_ENOMEM;
	BN_set_flags(c->d, BN_FLG_CONSTTIME);
	if (BN_is_zero(c->d) || BN_cmp(c->d, EC_GROUP_get0_order(c->group)) >= 0)
		return CRYPTO_EKEY;
	return CRYPTO_OK;
}

/* Public point of c->d, encoded (33 or 65 bytes) into @p pub. */
static int p256_pub_of(struct p256 *c, bool compressed, uint8_t *pub)
{
	size_t want = compressed ? CRYPTO_EC_PUB_COMPRESSED : CRYPTO_EC_PUB_UNCOMPRESSED;
	EC_POINT *p = EC_POINT_new(c->group);
	int ok = p && EC_POINT_mul(c->group, p, c->d, NULL, NULL, c->bn) &&
		 EC_POINT_point2oct(c->group, p,
				    compressed ? POINT_CONVERSION_COMPRESSED
					       : POINT_CONVERSION_UNCOMPRESSED,
				    pub, want, c->bn) == want;
	EC_POINT_free(p);
	return ok ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

/* Decode SEC1 @p pub (checked on the curve) and re-encode it into @p out. */
static int p256_reencode(struct p256 *c, const uint8_t *pub, size_t pub_len, bool compressed,
			 uint8_t *out)
{
	size_t want = compressed ? CRYPTO_EC_PUB_COMPRESSED : CRYPTO_EC_PUB_UNCOMPRESSED;

	if (!pub || (pub_len != CRYPTO_EC_PUB_COMPRESSED && pub_len != CRYPTO_EC_PUB_UNCOMPRESSED))
		return CRYPTO_EINVAL;
	EC_POINT *p = EC_POINT_new(c->group);
	if (!p)
		return CRYPTO_ENOMEM;
	int rc = CRYPTO_OK;
	if (!EC_POINT_oct2point(c->group, p, pub, pub_len, c->bn))
		rc = CRYPTO_EKEY;
	else if (EC_POINT_point2oct(c->group, p,
				    compressed ? POINT_CONVERSION_COMPRESSED
					       : POINT_CONVERSION_UNCOMPRESSED,
				    out, want, c->bn) != want)
		rc = CRYPTO_EINTERNAL;
	EC_POINT_free(p);
	return rc;
}

/* An EVP_PKEY holding the uncompressed public key @p pub65 and, if set, c->d. */
static EVP_PKEY *p256_pkey(struct p256 *c, const uint8_t pub65[CRYPTO_EC_PUB_UNCOMPRESSED])
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pkey = NULL;

	if (bld && ctx &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub65,
					     CRYPTO_EC_PUB_UNCOMPRESSED) &&
	    (!c->d || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, c->d)) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) > 0) {
		if (EVP_PKEY_fromdata(ctx, &pkey, c->d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
				      params) <= 0)
			pkey = NULL;
	}
	OSSL_PARAM_free(params); /* OSSL_PARAM_BLD_to_param uses secure memory for the BN */
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

bool crypto_p256_priv_valid(const uint8_t priv[CRYPTO_EC_PRIV_LEN])
{
	struct p256 c;
	int rc = p256_begin(&c);
	if (rc == CRYPTO_OK)
		rc = p256_load_priv(&c, priv);
	return p256_done(&c, rc) == CRYPTO_OK;
}

int crypto_p256_generate(uint8_t priv[CRYPTO_EC_PRIV_LEN])
{
	/* rejection sampling: a random 256-bit string is >= n with probability ~2^-32 */
	for (int tries = 0; tries < 64; tries++) {
		int rc = crypto_random(priv, CRYPTO_EC_PRIV_LEN);
		if (rc != CRYPTO_OK)
			return rc;
		if (crypto_p256_priv_valid(priv))
			return CRYPTO_OK;
	}
	OPENSSL_cleanse(priv, CRYPTO_EC_PRIV_LEN);
	return CRYPTO_EINTERNAL;
}

int crypto_p256_pubkey(const uint8_t priv[CRYPTO_EC_PRIV_LEN], bool compressed, uint8_t *pub)
{
	struct p256 c;
	int rc = p256_begin(&c);
	if (rc == CRYPTO_OK)
		rc = p256_load_priv(&c, priv);
	if (rc == CRYPTO_OK)
		rc = p256_pub_of(&c, compressed, pub);
	return p256_done(&c, rc);
}

int crypto_p256_pub_convert(const uint8_t *pub, size_t pub_len, bool compressed, uint8_t *out)
{
	struct p256 c;
	int rc = p256_begin(&c);
	if (rc == CRYPTO_OK)
		rc = p256_reencode(&c, pub, pub_len, compressed, out);
	return p256_done(&c, rc);
}

int crypto_p256_sign(const uint8_t priv[CRYPTO_EC_PRIV_LEN], const uint8_t digest[32],
		     uint8_t sig[CRYPTO_ECDSA_SIG_LEN])
{
	uint8_t pub[CRYPTO_EC_PUB_UNCOMPRESSED];
	uint8_t der[80];
	size_t der_len = sizeof(der);
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	ECDSA_SIG *es = NULL;
	struct p256 c;

	int rc = p256_begin(&c);
	if (rc == CRYPTO_OK)
		rc = p256_load_priv(&c, priv);
	if (rc == CRYPTO_OK)
		rc = p256_pub_of(&c, false, pub);
	if (rc == CRYPTO_OK) {
		const unsigned char *p = der;
		pkey = p256_pkey(&c, pub);
		ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
		if (!ctx || EVP_PKEY_sign_init(ctx) <= 0 ||
		    EVP_PKEY_sign(ctx, der, &der_len, digest, 32) <= 0 ||
		    !(es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) ||
		    BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32) != 32 ||
		    BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32) != 32)
			rc = CRYPTO_EINTERNAL;
	}
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	if (rc != CRYPTO_OK)
		OPENSSL_cleanse(sig, CRYPTO_ECDSA_SIG_LEN);
	return p256_done(&c, rc);
}

EVP_PKEY *crypto_p256_public_key(const uint8_t pub65[CRYPTO_EC_PUB_UNCOMPRESSED])
{
	struct p256 c = { 0 };
	EVP_PKEY *key = pub65[0] == 0x04 ? p256_pkey(&c, pub65) : NULL;
	if (!key)
		ERR_clear_error();
	return key;
}

int crypto_p256_verify(const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
		       const uint8_t sig[CRYPTO_ECDSA_SIG_LEN])
{
	uint8_t pub65[CRYPTO_EC_PUB_UNCOMPRESSED];
	unsigned char *der = NULL;
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	ECDSA_SIG *es = NULL;
	struct p256 c;

	int rc = p256_begin(&c);
	if (rc == CRYPTO_OK)
		rc = p256_reencode(&c, pub, pub_len, false, pub65);
	if (rc == CRYPTO_OK) {
		BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
		es = ECDSA_SIG_new();
		if (!r || !s || !es || !ECDSA_SIG_set0(es, r, s)) {
			BN_free(r);
			BN_free(s);
			rc = CRYPTO_ENOMEM;
		}
	}
	int der_len = rc == CRYPTO_OK ? i2d_ECDSA_SIG(es, &der) : -1;
	if (rc == CRYPTO_OK && der_len <= 0)
		rc = CRYPTO_EINTERNAL;
	if (rc == CRYPTO_OK) {
		pkey = p256_pkey(&c, pub65);
		ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
		if (!ctx || EVP_PKEY_verify_init(ctx) <= 0)
			rc = CRYPTO_EINTERNAL;
		else if (EVP_PKEY_verify(ctx, der, (size_t)der_len, digest, 32) != 1)
			rc = CRYPTO_EVERIFY; /* 0 = mismatch, <0 = r or s out of range */
	}
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return p256_done(&c, rc);
}
