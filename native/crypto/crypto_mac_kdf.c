/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HMAC (EVP_MAC "HMAC") and HKDF (EVP_KDF "HKDF", RFC 5869) over SHA-256/384/512.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "crypto/crypto.h"

/* OpenSSL digest name of a SHA-2 algorithm, NULL for anything else (Keccak included). */
static const char *sha2_name(int alg)
{
	switch (alg) {
	case CRYPTO_SHA256:
		return "SHA256";
	case CRYPTO_SHA384:
		return "SHA384";
	case CRYPTO_SHA512:
		return "SHA512";
	default:
		return NULL;
	}
}

/* OpenSSL wants non-NULL pointers for octet-string params, even empty ones. */
static void *nonnull(const void *p)
{
	static unsigned char empty;
	return p ? (void *)p : &empty;
}

int crypto_hmac(int alg, const void *key, size_t key_len, const void *data, size_t len,
		uint8_t *out)
{
	const char *md = sha2_name(alg);
	if (!md || (!key && key_len) || (!data && len))
		return CRYPTO_EINVAL;

	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0),
		OSSL_PARAM_construct_end(),
	};
	size_t out_len = 0;
	int ok = ctx && EVP_MAC_init(ctx, nonnull(key), key_len, params) &&
		 EVP_MAC_update(ctx, nonnull(data), len) &&
		 EVP_MAC_final(ctx, out, &out_len, crypto_hash_len(alg));
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return ok && out_len == crypto_hash_len(alg) ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

/* Run EVP_KDF "HKDF" in @p mode with the given inputs (NULL salt/info = not set). */
static int hkdf_run(int alg, int mode, const void *key, size_t key_len, const void *salt,
		    size_t salt_len, const void *info, size_t info_len, uint8_t *out,
		    size_t out_len)
{
	const char *md = sha2_name(alg);
	if (!md)
		return CRYPTO_EINVAL;

	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[6], *p = params;
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, nonnull(key), key_len);
	if (salt)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, nonnull(salt),
							 salt_len);
	if (info)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, nonnull(info),
							 info_len);
	*p = OSSL_PARAM_construct_end();
	int ok = ctx && EVP_KDF_derive(ctx, out, out_len, params) > 0;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	if (!ok) {
		OPENSSL_cleanse(out, out_len);
		ERR_clear_error();
	}
	return ok ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

int crypto_hkdf(int alg, const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
		const struct crypto_iov *info, size_t ninfo, uint8_t *out, size_t out_len)
{
	size_t hlen = sha2_name(alg) ? crypto_hash_len(alg) : 0;
	size_t info_len = 0;

	if (!hlen || out_len == 0 || out_len > CRYPTO_HKDF_MAX_BLOCKS * hlen)
		return CRYPTO_EINVAL;
	if ((!ikm && ikm_len) || (!salt && salt_len))
		return CRYPTO_EINVAL;
	for (size_t i = 0; i < ninfo; i++) {
		if (!info[i].data && info[i].len)
			return CRYPTO_EINVAL;
		if (info[i].len > CRYPTO_HKDF_MAX_INFO - info_len)
			return CRYPTO_EINVAL;
		info_len += info[i].len;
	}

	/* The context parts are concatenated into one info string (it is not secret). */
	uint8_t buf[CRYPTO_HKDF_MAX_INFO];
	size_t off = 0;
	for (size_t i = 0; i < ninfo; i++) {
		if (info[i].len)
			memcpy(buf + off, info[i].data, info[i].len);
		off += info[i].len;
	}
	int rc = hkdf_run(alg, EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND, ikm, ikm_len, salt ? salt : "",
			  salt_len, buf, info_len, out, out_len);
	return rc;
}

int crypto_hkdf_extract(int alg, const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
			uint8_t *prk)
{
	if (!sha2_name(alg) || (!ikm && ikm_len) || (!salt && salt_len))
		return CRYPTO_EINVAL;
	return hkdf_run(alg, EVP_KDF_HKDF_MODE_EXTRACT_ONLY, ikm, ikm_len, salt ? salt : "",
			salt_len, NULL, 0, prk, crypto_hash_len(alg));
}

int crypto_hkdf_expand(int alg, const void *prk, size_t prk_len, const void *info, size_t info_len,
		       uint8_t *out, size_t out_len)
{
	size_t hlen = sha2_name(alg) ? crypto_hash_len(alg) : 0;

	if (!hlen || !prk || prk_len < hlen || (!info && info_len) ||
	    info_len > CRYPTO_HKDF_MAX_INFO)
		return CRYPTO_EINVAL;
	if (out_len == 0 || out_len > CRYPTO_HKDF_MAX_BLOCKS * hlen)
		return CRYPTO_EINVAL;
	return hkdf_run(alg, EVP_KDF_HKDF_MODE_EXPAND_ONLY, prk, prk_len, NULL, 0, info ? info : "",
			info_len, out, out_len);
}
