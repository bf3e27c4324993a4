/* SPDX-License-Identifier: Apache-2.0 */
/*
 * X25519 (RFC 7748) and Ed25519 (RFC 8032) with OpenSSL's raw-key EVP API.
 */
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"

/* The raw public key of the raw private key @p priv of type @p type. */
static int raw_pubkey(int type, const uint8_t priv[32], uint8_t pub[32])
{
	EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(type, NULL, priv, 32);
	size_t len = 32;
	int ok = pkey && EVP_PKEY_get_raw_public_key(pkey, pub, &len) && len == 32;
	EVP_PKEY_free(pkey);
	return ok ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

int crypto_x25519_pubkey(const uint8_t priv[CRYPTO_X25519_LEN], uint8_t pub[CRYPTO_X25519_LEN])
{
	return raw_pubkey(EVP_PKEY_X25519, priv, pub);
}

int crypto_x25519(const uint8_t priv[CRYPTO_X25519_LEN], const uint8_t peer[CRYPTO_X25519_LEN],
		  uint8_t shared[CRYPTO_X25519_LEN])
{
	static const uint8_t zero[CRYPTO_X25519_LEN];
	EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
	EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
	EVP_PKEY_CTX *ctx = key ? EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL) : NULL;
	size_t len = CRYPTO_X25519_LEN;
	int rc = CRYPTO_OK;

	if (!key || !pk || !ctx || EVP_PKEY_derive_init(ctx) <= 0 ||
	    EVP_PKEY_derive_set_peer(ctx, pk) <= 0)
		rc = CRYPTO_EINTERNAL;
	/* OpenSSL refuses an all-zero result (a low-order peer point): that is a bad key */
	else if (EVP_PKEY_derive(ctx, shared, &len) <= 0 || len != CRYPTO_X25519_LEN ||
		 CRYPTO_memcmp(shared, zero, CRYPTO_X25519_LEN) == 0)
		rc = CRYPTO_EKEY;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	EVP_PKEY_free(key);
	if (rc != CRYPTO_OK) {
		OPENSSL_cleanse(shared, CRYPTO_X25519_LEN);
		ERR_clear_error();
	}
	return rc;
}

int crypto_ed25519_pubkey(const uint8_t seed[CRYPTO_ED25519_SEED_LEN],
			  uint8_t pub[CRYPTO_ED25519_PUB_LEN])
{
	return raw_pubkey(EVP_PKEY_ED25519, seed, pub);
}

int crypto_ed25519_sign(const uint8_t seed[CRYPTO_ED25519_SEED_LEN], const void *msg, size_t len,
			uint8_t sig[CRYPTO_ED25519_SIG_LEN])
{
	static const uint8_t empty;
	size_t sig_len = CRYPTO_ED25519_SIG_LEN;

	if (!msg && len)
		return CRYPTO_EINVAL;
	EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = key && md && EVP_DigestSignInit_ex(md, NULL, NULL, NULL, NULL, key, NULL) &&
		 EVP_DigestSign(md, sig, &sig_len, msg ? msg : &empty, len) &&
		 sig_len == CRYPTO_ED25519_SIG_LEN;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	return ok ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

int crypto_ed25519_verify(const uint8_t pub[CRYPTO_ED25519_PUB_LEN], const void *msg, size_t len,
			  const uint8_t sig[CRYPTO_ED25519_SIG_LEN])
{
	static const uint8_t empty;
	if (!msg && len)
		return CRYPTO_EINVAL;
	EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int rc = CRYPTO_EINTERNAL;

	if (key && md && EVP_DigestVerifyInit_ex(md, NULL, NULL, NULL, NULL, key, NULL))
		rc = EVP_DigestVerify(md, sig, CRYPTO_ED25519_SIG_LEN, msg ? msg : &empty, len) == 1
			     ? CRYPTO_OK
			     : CRYPTO_EVERIFY;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	ERR_clear_error();
	return rc;
}
