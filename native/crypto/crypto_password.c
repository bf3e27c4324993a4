/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Password hashes of htpasswd files (the admin listeners' Basic credentials): bcrypt only
 * ($2y$/$2b$/$2a$, as `htpasswd -B` writes and upstream accepts), checked with libxcrypt's
 * crypt_rn and compared in constant time. The password never leaves this function: the
 * crypt_data scratch (which holds it) is wiped before returning.
 */
#include <crypt.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto/crypto.h"

bool crypto_bcrypt_hash_valid(const char *hash)
{
	size_t n = hash ? strlen(hash) : 0;
	/* $2?$NN$ + 53 characters (22 of salt, 31 of hash) */
	if (n != 60 || hash[0] != '$' || hash[1] != '2' || hash[3] != '$' || hash[6] != '$')
		return false;
	if (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y')
		return false;
	if (hash[4] < '0' || hash[4] > '3' || hash[5] < '0' || hash[5] > '9')
		return false;
	int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
	return cost >= 4 && cost <= 31;
}

int crypto_bcrypt_check(const char *password, size_t password_len, const char *hash)
{
	if (!crypto_bcrypt_hash_valid(hash))
		return CRYPTO_EINVAL;
	if (!password || memchr(password, '\0', password_len) || password_len > 72)
		return CRYPTO_EVERIFY; /* bcrypt reads at most 72 bytes: longer ones are refused */
	struct crypt_data data;
	memset(&data, 0, sizeof(data));
	const char *out = crypt_rn(password, hash, &data, (int)sizeof(data));
	int rc = out && strlen(out) == 60 && CRYPTO_memcmp(out, hash, 60) == 0 ? CRYPTO_OK
									       : CRYPTO_EVERIFY;
	OPENSSL_cleanse(&data, sizeof(data));
	return rc;
}
