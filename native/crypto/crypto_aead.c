/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AES-256-GCM with a 12-byte IV and a 16-byte tag appended to the ciphertext (the layout of
 * dstack's encrypted-env blob and of most wire formats).
 */
#include <limits.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"

/* EVP_*Update takes int lengths: feed @p len bytes in chunks. */
static int gcm_update(EVP_CIPHER_CTX *ctx, bool enc, uint8_t *out, const uint8_t *in, size_t len)
{
	while (len > 0) {
		int chunk = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len, n = 0;
		int ok = enc ? EVP_EncryptUpdate(ctx, out, &n, in, chunk)
			     : EVP_DecryptUpdate(ctx, out, &n, in, chunk);
		if (!ok || n != chunk)
			return 0;
		out += chunk;
		in += chunk;
		len -= (size_t)chunk;
	}
	return 1;
}

static int gcm_aad(EVP_CIPHER_CTX *ctx, bool enc, const uint8_t *aad, size_t len)
{
	while (len > 0) {
		int chunk = len > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)len, n = 0;
		int ok = enc ? EVP_EncryptUpdate(ctx, NULL, &n, aad, chunk)
			     : EVP_DecryptUpdate(ctx, NULL, &n, aad, chunk);
		if (!ok)
			return 0;
		aad += chunk;
		len -= (size_t)chunk;
	}
	return 1;
}

int crypto_aes256gcm_encrypt(const uint8_t key[CRYPTO_AES256_KEY_LEN],
			     const uint8_t iv[CRYPTO_GCM_IV_LEN], const void *aad, size_t aad_len,
			     const void *pt, size_t len, uint8_t *out)
{
	if ((!aad && aad_len) || (!pt && len))
		return CRYPTO_EINVAL;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0;
	int ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) &&
		 gcm_aad(ctx, true, aad, aad_len) && gcm_update(ctx, true, out, pt, len) &&
		 EVP_EncryptFinal_ex(ctx, out + len, &n) && n == 0 &&
		 EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CRYPTO_GCM_TAG_LEN, out + len);
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		OPENSSL_cleanse(out, len + CRYPTO_GCM_TAG_LEN);
	return ok ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

int crypto_aes256gcm_decrypt(const uint8_t key[CRYPTO_AES256_KEY_LEN],
			     const uint8_t iv[CRYPTO_GCM_IV_LEN], const void *aad, size_t aad_len,
			     const uint8_t *in, size_t in_len, uint8_t *out)
{
	if ((!aad && aad_len) || !in || in_len < CRYPTO_GCM_TAG_LEN)
		return CRYPTO_EINVAL;
	size_t len = in_len - CRYPTO_GCM_TAG_LEN;
	uint8_t tag[CRYPTO_GCM_TAG_LEN];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, rc = CRYPTO_EINTERNAL;

	for (int i = 0; i < CRYPTO_GCM_TAG_LEN; i++)
		tag[i] = in[len + i]; /* @p out may overlap @p in */
	if (ctx && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv) &&
	    gcm_aad(ctx, false, aad, aad_len) && gcm_update(ctx, false, out, in, len) &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CRYPTO_GCM_TAG_LEN, tag))
		rc = EVP_DecryptFinal_ex(ctx, out + len, &n) > 0 ? CRYPTO_OK : CRYPTO_EDECRYPT;
	EVP_CIPHER_CTX_free(ctx);
	if (rc != CRYPTO_OK) {
		OPENSSL_cleanse(out, len);
		ERR_clear_error();
	}
	return rc;
}
