/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small shared pieces: result codes and their names, secure random, constant-time compare
 * and wiping.
 */
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "crypto/crypto.h"

static const struct {
	int err;
	const char *code;
	const char *msg;
} errors[] = {
	{ CRYPTO_OK, "OK", "success" },
	{ CRYPTO_EINVAL, "EINVAL", "invalid argument" },
	{ CRYPTO_EKEY, "EKEY", "invalid key" },
	{ CRYPTO_ESIG, "ESIG", "malformed or unrecoverable signature" },
	{ CRYPTO_EVERIFY, "EVERIFY", "signature does not verify" },
	{ CRYPTO_EDECRYPT, "EDECRYPT", "decryption failed (authentication tag mismatch)" },
	{ CRYPTO_ETIMESTAMP, "ETIMESTAMP", "timestamp outside the accepted window" },
	{ CRYPTO_ENOMEM, "ENOMEM", "out of memory" },
	{ CRYPTO_EINTERNAL, "EINTERNAL", "internal cryptographic library failure" },
};

const char *crypto_err_code(int err)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		if (errors[i].err == err)
			return errors[i].code;
	}
	return "EINTERNAL";
}

const char *crypto_strerror(int err)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		if (errors[i].err == err)
			return errors[i].msg;
	}
	return "unknown error";
}

int crypto_random(void *out, size_t len)
{
	if (!out && len)
		return CRYPTO_EINVAL;
	while (len > 0) {
		int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
		if (RAND_priv_bytes(out, chunk) != 1)
			return CRYPTO_EINTERNAL;
		out = (unsigned char *)out + chunk;
		len -= (size_t)chunk;
	}
	return CRYPTO_OK;
}

bool crypto_equal(const void *a, const void *b, size_t len)
{
	return len == 0 || CRYPTO_memcmp(a, b, len) == 0;
}

void crypto_wipe(void *p, size_t len)
{
	if (p && len)
		OPENSSL_cleanse(p, len);
}
