/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dstack's encrypted-env blob (spec kms-vmm-gateway.md §2.1): ephemeral X25519 public key (32)
 * || AES-GCM IV (12) || AES-256-GCM ciphertext || tag (16). The raw X25519 shared secret is
 * the AES key (no KDF, no AAD); an all-zero shared secret is refused.
 */
#include <string.h>

#include "crypto/dstack.h"

int dstack_env_encrypt(const uint8_t pub[32], const void *pt, size_t len, const uint8_t *eph_secret,
		       const uint8_t *iv, uint8_t *out)
{
	uint8_t eph[CRYPTO_X25519_LEN], key[CRYPTO_AES256_KEY_LEN];
	uint8_t eph_pub[CRYPTO_X25519_LEN], nonce[CRYPTO_GCM_IV_LEN];
	int rc = CRYPTO_OK;

	if ((!pt && len) || !out)
		return CRYPTO_EINVAL;
	if (eph_secret)
		memcpy(eph, eph_secret, sizeof(eph));
	else
		rc = crypto_random(eph, sizeof(eph));
	if (rc == CRYPTO_OK) {
		if (iv)
			memcpy(nonce, iv, sizeof(nonce));
		else
			rc = crypto_random(nonce, sizeof(nonce));
	}
	if (rc == CRYPTO_OK)
		rc = crypto_x25519_pubkey(eph, eph_pub);
	if (rc == CRYPTO_OK)
		rc = crypto_x25519(eph, pub, key);
	if (rc == CRYPTO_OK) {
		/* @p out must not overlap @p pt (the ciphertext starts 44 bytes in) */
		rc = crypto_aes256gcm_encrypt(key, nonce, NULL, 0, pt, len,
					      out + CRYPTO_X25519_LEN + CRYPTO_GCM_IV_LEN);
	}
	if (rc == CRYPTO_OK) {
		memcpy(out, eph_pub, CRYPTO_X25519_LEN);
		memcpy(out + CRYPTO_X25519_LEN, nonce, CRYPTO_GCM_IV_LEN);
	}
	crypto_wipe(eph, sizeof(eph));
	crypto_wipe(key, sizeof(key));
	return rc;
}

int dstack_env_decrypt(const uint8_t secret[32], const uint8_t *blob, size_t blob_len, uint8_t *out)
{
	uint8_t key[CRYPTO_AES256_KEY_LEN];

	if (!blob || blob_len < DSTACK_ENV_OVERHEAD || !out)
		return CRYPTO_EINVAL;
	int rc = crypto_x25519(secret, blob, key);
	if (rc == CRYPTO_OK)
		rc = crypto_aes256gcm_decrypt(key, blob + CRYPTO_X25519_LEN, NULL, 0,
					      blob + CRYPTO_X25519_LEN + CRYPTO_GCM_IV_LEN,
					      blob_len - CRYPTO_X25519_LEN - CRYPTO_GCM_IV_LEN,
					      out);
	crypto_wipe(key, sizeof(key));
	return rc;
}
