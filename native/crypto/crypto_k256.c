/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ECDSA over secp256k1 with libsecp256k1 (the reference implementation, with its recovery
 * module): RFC 6979 deterministic low-S signatures, recoverable r||s||v signatures and
 * public-key recovery, as Ethereum and dstack use them.
 */
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "crypto/crypto.h"

static secp256k1_context *k256_ctx;
static pthread_once_t k256_once = PTHREAD_ONCE_INIT;

/* One context for the process: created once, randomized (side-channel blinding), then only
 * used through const pointers, which libsecp256k1 documents as thread-safe. */
static void k256_init(void)
{
	unsigned char seed[32];
	secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);

	if (ctx && crypto_random(seed, sizeof(seed)) == CRYPTO_OK &&
	    secp256k1_context_randomize(ctx, seed))
		k256_ctx = ctx;
	else if (ctx)
		secp256k1_context_destroy(ctx);
	OPENSSL_cleanse(seed, sizeof(seed));
}

static const secp256k1_context *k256(void)
{
	pthread_once(&k256_once, k256_init);
	return k256_ctx;
}

static int k256_serialize(const secp256k1_context *ctx, const secp256k1_pubkey *pk, bool compressed,
			  uint8_t *out)
{
	size_t len = compressed ? CRYPTO_EC_PUB_COMPRESSED : CRYPTO_EC_PUB_UNCOMPRESSED;
	if (!secp256k1_ec_pubkey_serialize(ctx, out, &len, pk,
					   compressed ? SECP256K1_EC_COMPRESSED
						      : SECP256K1_EC_UNCOMPRESSED))
		return CRYPTO_EINTERNAL;
	return CRYPTO_OK;
}

static int k256_parse_pub(const secp256k1_context *ctx, const uint8_t *pub, size_t pub_len,
			  secp256k1_pubkey *pk)
{
	if (!pub || (pub_len != CRYPTO_EC_PUB_COMPRESSED && pub_len != CRYPTO_EC_PUB_UNCOMPRESSED))
		return CRYPTO_EINVAL;
	return secp256k1_ec_pubkey_parse(ctx, pk, pub, pub_len) ? CRYPTO_OK : CRYPTO_EKEY;
}

bool crypto_k256_priv_valid(const uint8_t priv[CRYPTO_EC_PRIV_LEN])
{
	const secp256k1_context *ctx = k256();
	return ctx && secp256k1_ec_seckey_verify(ctx, priv);
}

int crypto_k256_generate(uint8_t priv[CRYPTO_EC_PRIV_LEN])
{
	for (int tries = 0; tries < 64; tries++) {
		int rc = crypto_random(priv, CRYPTO_EC_PRIV_LEN);
		if (rc != CRYPTO_OK)
			return rc;
		if (crypto_k256_priv_valid(priv))
			return CRYPTO_OK;
	}
	OPENSSL_cleanse(priv, CRYPTO_EC_PRIV_LEN);
	return CRYPTO_EINTERNAL;
}

int crypto_k256_pubkey(const uint8_t priv[CRYPTO_EC_PRIV_LEN], bool compressed, uint8_t *pub)
{
	const secp256k1_context *ctx = k256();
	secp256k1_pubkey pk;

	if (!ctx)
		return CRYPTO_EINTERNAL;
	if (!secp256k1_ec_pubkey_create(ctx, &pk, priv))
		return CRYPTO_EKEY;
	return k256_serialize(ctx, &pk, compressed, pub);
}

int crypto_k256_pub_convert(const uint8_t *pub, size_t pub_len, bool compressed, uint8_t *out)
{
	const secp256k1_context *ctx = k256();
	secp256k1_pubkey pk;

	if (!ctx)
		return CRYPTO_EINTERNAL;
	int rc = k256_parse_pub(ctx, pub, pub_len, &pk);
	return rc == CRYPTO_OK ? k256_serialize(ctx, &pk, compressed, out) : rc;
}

int crypto_k256_sign(const uint8_t priv[CRYPTO_EC_PRIV_LEN], const uint8_t digest[32],
		     uint8_t sig[CRYPTO_ECDSA_SIG_LEN])
{
	const secp256k1_context *ctx = k256();
	secp256k1_ecdsa_signature s;

	if (!ctx)
		return CRYPTO_EINTERNAL;
	if (!secp256k1_ec_seckey_verify(ctx, priv))
		return CRYPTO_EKEY;
	/* NULL nonce function = RFC 6979 with HMAC-SHA256; the result is always low-S */
	if (!secp256k1_ecdsa_sign(ctx, &s, digest, priv, NULL, NULL) ||
	    !secp256k1_ecdsa_signature_serialize_compact(ctx, sig, &s))
		return CRYPTO_EINTERNAL;
	return CRYPTO_OK;
}

int crypto_k256_sign_recoverable(const uint8_t priv[CRYPTO_EC_PRIV_LEN], const uint8_t digest[32],
				 uint8_t sig[CRYPTO_ECDSA_RSIG_LEN])
{
	const secp256k1_context *ctx = k256();
	secp256k1_ecdsa_recoverable_signature s;
	int recid = -1;

	if (!ctx)
		return CRYPTO_EINTERNAL;
	if (!secp256k1_ec_seckey_verify(ctx, priv))
		return CRYPTO_EKEY;
	if (!secp256k1_ecdsa_sign_recoverable(ctx, &s, digest, priv, NULL, NULL) ||
	    !secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, sig, &recid, &s) ||
	    recid < 0 || recid > 3)
		return CRYPTO_EINTERNAL;
	sig[64] = (uint8_t)recid;
	return CRYPTO_OK;
}

int crypto_k256_recover(const uint8_t digest[32], const uint8_t sig[CRYPTO_ECDSA_RSIG_LEN],
			bool compressed, uint8_t *pub)
{
	const secp256k1_context *ctx = k256();
	secp256k1_ecdsa_recoverable_signature s;
	secp256k1_pubkey pk;
	int v = sig[64];

	if (!ctx)
		return CRYPTO_EINTERNAL;
	if (v >= 27 && v <= 30)
		v -= 27;
	if (v > 3)
		return CRYPTO_ESIG;
	if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &s, sig, v) ||
	    !secp256k1_ecdsa_recover(ctx, &pk, &s, digest))
		return CRYPTO_ESIG;
	return k256_serialize(ctx, &pk, compressed, pub);
}

int crypto_k256_verify(const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
		       const uint8_t sig[CRYPTO_ECDSA_SIG_LEN])
{
	const secp256k1_context *ctx = k256();
	secp256k1_ecdsa_signature s;
	secp256k1_pubkey pk;

	if (!ctx)
		return CRYPTO_EINTERNAL;
	int rc = k256_parse_pub(ctx, pub, pub_len, &pk);
	if (rc != CRYPTO_OK)
		return rc;
	if (!secp256k1_ecdsa_signature_parse_compact(ctx, &s, sig) ||
	    !secp256k1_ecdsa_verify(ctx, &s, digest, &pk))
		return CRYPTO_EVERIFY;
	return CRYPTO_OK;
}
