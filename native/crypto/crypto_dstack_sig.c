/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dstack's signed messages (spec guest-and-attestation.md §7, kms-vmm-gateway.md §2.2, §3.3):
 * GetKey and signature_chain[0], Sign/Verify, `dstack-kms-issued:`, the env-encrypt-pubkey
 * signatures with their timestamp window, the chain check, and the report_data formats.
 * Every k256 signature here is recoverable r||s||v over the Keccak-256 of the raw
 * concatenation (no EIP-191 prefix).
 */
#include <string.h>

#include "crypto/dstack.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define IOV_STR(s)                 \
	{                          \
		(s), sizeof(s) - 1 \
	}

static void to_hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
}

/* Keccak-256 of the concatenated parts (never fails on valid pointers). */
static int keccak_parts(const struct crypto_iov *parts, size_t n, uint8_t out[32])
{
	return crypto_hashv(CRYPTO_KECCAK256, parts, n, out);
}

/* keccak256(purpose ":" hex(pub)), the message of signature_chain[0]. */
static int getkey_digest(const void *purpose, size_t purpose_len, const uint8_t *pub,
			 size_t pub_len, uint8_t digest[32])
{
	char hex[2 * CRYPTO_EC_PUB_COMPRESSED];
	if ((!purpose && purpose_len) || !pub || pub_len > CRYPTO_EC_PUB_COMPRESSED)
		return CRYPTO_EINVAL;
	to_hex(pub, pub_len, hex);
	const struct crypto_iov parts[] = { { purpose, purpose_len },
					    IOV_STR(":"),
					    { hex, 2 * pub_len } };
	return keccak_parts(parts, ARRAY_SIZE(parts), digest);
}

/* keccak256("dstack-kms-issued:" || app_id || app_pub). */
static int kms_issued_digest(const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t app_pub[33],
			     uint8_t digest[32])
{
	const struct crypto_iov parts[] = { IOV_STR("dstack-kms-issued:"),
					    { app_id, DSTACK_APP_ID_LEN },
					    { app_pub, CRYPTO_EC_PUB_COMPRESSED } };
	return keccak_parts(parts, ARRAY_SIZE(parts), digest);
}

int dstack_key_alg_parse(const char *name)
{
	if (!name)
		return -1;
	if (!strcmp(name, "") || !strcmp(name, "secp256k1") || !strcmp(name, "k256"))
		return DSTACK_KEY_SECP256K1;
	if (!strcmp(name, "ed25519"))
		return DSTACK_KEY_ED25519;
	return -1;
}

int dstack_sign_alg_parse(const char *name)
{
	if (!name)
		return -1;
	if (!strcmp(name, "secp256k1") || !strcmp(name, "k256"))
		return DSTACK_SIGN_SECP256K1;
	if (!strcmp(name, "secp256k1_prehashed"))
		return DSTACK_SIGN_SECP256K1_PREHASHED;
	if (!strcmp(name, "ed25519"))
		return DSTACK_SIGN_ED25519;
	return -1;
}

int dstack_get_key(const uint8_t app_k256[32], const void *path, size_t path_len,
		   const void *purpose, size_t purpose_len, int alg, struct dstack_key *out)
{
	struct dstack_key k;
	uint8_t digest[32];
	const struct crypto_iov ctx = { path, path_len };
	int rc;

	if ((!path && path_len) || (!purpose && purpose_len))
		return CRYPTO_EINVAL;
	if (alg != DSTACK_KEY_SECP256K1 && alg != DSTACK_KEY_ED25519)
		return CRYPTO_EINVAL;
	if (!crypto_k256_priv_valid(app_k256))
		return CRYPTO_EKEY;
	memset(&k, 0, sizeof(k));
	rc = dstack_derive_key(app_k256, 32, &ctx, 1, k.key, sizeof(k.key));
	if (rc == CRYPTO_OK && alg == DSTACK_KEY_SECP256K1) {
		k.pub_len = CRYPTO_EC_PUB_COMPRESSED;
		rc = crypto_k256_pubkey(k.key, true, k.pub); /* EKEY if not a valid scalar */
	} else if (rc == CRYPTO_OK) {
		k.pub_len = CRYPTO_ED25519_PUB_LEN;
		rc = crypto_ed25519_pubkey(k.key, k.pub);
	}
	if (rc == CRYPTO_OK)
		rc = getkey_digest(purpose, purpose_len, k.pub, k.pub_len, digest);
	if (rc == CRYPTO_OK)
		rc = crypto_k256_sign_recoverable(app_k256, digest, k.chain0);
	if (rc == CRYPTO_OK)
		*out = k;
	crypto_wipe(&k, sizeof(k));
	return rc;
}

int dstack_sign(const uint8_t app_k256[32], int alg, const void *data, size_t len,
		struct dstack_signature *out)
{
	struct dstack_key k;
	struct dstack_signature s;
	uint8_t digest[32];
	int rc;

	if (!data && len)
		return CRYPTO_EINVAL;
	if (alg == DSTACK_SIGN_SECP256K1_PREHASHED && len != 32)
		return CRYPTO_EINVAL; /* upstream: "requires a 32-byte digest" */
	if (alg < DSTACK_SIGN_SECP256K1 || alg > DSTACK_SIGN_ED25519)
		return CRYPTO_EINVAL;

	int key_alg = alg == DSTACK_SIGN_ED25519 ? DSTACK_KEY_ED25519 : DSTACK_KEY_SECP256K1;
	rc = dstack_get_key(app_k256, "vms", 3, "signing", 7, key_alg, &k);
	if (rc != CRYPTO_OK)
		return rc;
	memset(&s, 0, sizeof(s));
	if (alg == DSTACK_SIGN_ED25519) {
		rc = crypto_ed25519_sign(k.key, data, len, s.sig);
	} else {
		if (alg == DSTACK_SIGN_SECP256K1)
			rc = crypto_sha256(data, len, digest);
		else
			memcpy(digest, data, 32);
		if (rc == CRYPTO_OK)
			rc = crypto_k256_sign(k.key, digest, s.sig);
	}
	memcpy(s.pub, k.pub, sizeof(s.pub));
	s.pub_len = k.pub_len;
	memcpy(s.chain0, k.chain0, sizeof(s.chain0));
	if (rc == CRYPTO_OK)
		*out = s;
	crypto_wipe(&k, sizeof(k));
	return rc;
}

int dstack_verify(int alg, const void *data, size_t len, const uint8_t *sig, size_t sig_len,
		  const uint8_t *pub, size_t pub_len)
{
	uint8_t digest[32];
	int rc;

	if ((!data && len) || !sig || !pub || sig_len != 64)
		return CRYPTO_EINVAL;
	switch (alg) {
	case DSTACK_SIGN_ED25519:
		if (pub_len != CRYPTO_ED25519_PUB_LEN)
			return CRYPTO_EINVAL;
		return crypto_ed25519_verify(pub, data, len, sig);
	case DSTACK_SIGN_SECP256K1:
		rc = crypto_sha256(data, len, digest);
		return rc == CRYPTO_OK ? crypto_k256_verify(pub, pub_len, digest, sig) : rc;
	case DSTACK_SIGN_SECP256K1_PREHASHED:
		if (len != 32)
			return CRYPTO_EINVAL;
		return crypto_k256_verify(pub, pub_len, data, sig);
	default:
		return CRYPTO_EINVAL;
	}
}

int dstack_kms_issued_sign(const uint8_t root_k256[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			   const uint8_t app_pub[33], uint8_t sig[65])
{
	uint8_t digest[32];
	int rc = kms_issued_digest(app_id, app_pub, digest);
	return rc == CRYPTO_OK ? crypto_k256_sign_recoverable(root_k256, digest, sig) : rc;
}

int dstack_kms_issued_recover(const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t app_pub[33],
			      const uint8_t sig[65], uint8_t kms_pub[33])
{
	uint8_t digest[32];
	int rc = kms_issued_digest(app_id, app_pub, digest);
	return rc == CRYPTO_OK ? crypto_k256_recover(digest, sig, true, kms_pub) : rc;
}

int dstack_verify_key_chain(const uint8_t *pub, size_t pub_len, const void *purpose,
			    size_t purpose_len, const uint8_t chain0[65],
			    const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t chain1[65],
			    uint8_t app_pub[33], uint8_t kms_pub[33])
{
	uint8_t digest[32], app[33], kms[33];

	if (pub_len != CRYPTO_EC_PUB_COMPRESSED && pub_len != CRYPTO_ED25519_PUB_LEN)
		return CRYPTO_EINVAL;
	int rc = getkey_digest(purpose, purpose_len, pub, pub_len, digest);
	if (rc == CRYPTO_OK)
		rc = crypto_k256_recover(digest, chain0, true, app);
	if (rc == CRYPTO_OK)
		rc = dstack_kms_issued_recover(app_id, app, chain1, kms);
	if (rc == CRYPTO_OK) {
		memcpy(app_pub, app, sizeof(app));
		memcpy(kms_pub, kms, sizeof(kms));
	}
	return rc;
}

/* keccak256("dstack-env-encrypt-pubkey:" || app_id || [u64be(ts)] || pub). */
static int env_pubkey_digest(const uint8_t pub[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			     bool with_timestamp, uint64_t ts, uint8_t digest[32])
{
	uint8_t be[8];
	for (int i = 0; i < 8; i++)
		be[i] = (uint8_t)(ts >> (56 - 8 * i));
	const struct crypto_iov parts[] = {
		IOV_STR("dstack-env-encrypt-pubkey:"),
		{ app_id, DSTACK_APP_ID_LEN },
		{ be, with_timestamp ? sizeof(be) : 0 },
		{ pub, 32 },
	};
	return keccak_parts(parts, ARRAY_SIZE(parts), digest);
}

int dstack_env_pubkey_sign(const uint8_t root_k256[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			   const uint8_t pub[32], bool with_timestamp, uint64_t timestamp,
			   uint8_t sig[65])
{
	uint8_t digest[32];
	int rc = env_pubkey_digest(pub, app_id, with_timestamp, timestamp, digest);
	return rc == CRYPTO_OK ? crypto_k256_sign_recoverable(root_k256, digest, sig) : rc;
}

int dstack_env_pubkey_recover(const uint8_t pub[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			      const uint8_t *sig, size_t sig_len, bool with_timestamp,
			      uint64_t timestamp, uint64_t now, uint64_t max_age,
			      uint8_t signer[33])
{
	uint8_t digest[32];

	if (!sig || sig_len != CRYPTO_ECDSA_RSIG_LEN)
		return CRYPTO_EINVAL;
	if (with_timestamp) {
		/* age = now - timestamp, in [-MAX_FUTURE, max_age]; no signed overflow */
		if (timestamp > now && timestamp - now > DSTACK_ENV_SIG_MAX_FUTURE)
			return CRYPTO_ETIMESTAMP;
		if (now > timestamp && now - timestamp > max_age)
			return CRYPTO_ETIMESTAMP;
	}
	int rc = env_pubkey_digest(pub, app_id, with_timestamp, timestamp, digest);
	return rc == CRYPTO_OK ? crypto_k256_recover(digest, sig, true, signer) : rc;
}

int dstack_report_data(const char *tag, const void *content, size_t len,
		       uint8_t out[DSTACK_REPORT_DATA_LEN])
{
	if (!tag || (!content && len))
		return CRYPTO_EINVAL;
	const struct crypto_iov parts[] = { { tag, strlen(tag) }, IOV_STR(":"), { content, len } };
	return crypto_hashv(CRYPTO_SHA512, parts, ARRAY_SIZE(parts), out);
}

/* base64url without padding of @p n bytes into @p out; returns the number of characters. */
static size_t b64url(const uint8_t *p, size_t n, char *out)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t rem = n - i;
		if (rem > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (rem > 2)
			v |= p[i + 2];
		out[o++] = tbl[(v >> 18) & 63];
		out[o++] = tbl[(v >> 12) & 63];
		if (rem > 1)
			out[o++] = tbl[(v >> 6) & 63];
		if (rem > 2)
			out[o++] = tbl[v & 63];
	}
	return o;
}

int dstack_app_key_report_data(int key_alg, const uint8_t *pub, size_t pub_len,
			       uint8_t out[DSTACK_REPORT_DATA_LEN])
{
	static const char k256_prefix[] = "dip1::secp256k1c-pk:";
	static const char ed_prefix[] = "dip1::ed25519-pk:";
	char buf[DSTACK_REPORT_DATA_LEN];
	const char *prefix;
	size_t plen;

	if (key_alg == DSTACK_KEY_SECP256K1 && pub_len == CRYPTO_EC_PUB_COMPRESSED) {
		prefix = k256_prefix;
		plen = sizeof(k256_prefix) - 1;
	} else if (key_alg == DSTACK_KEY_ED25519 && pub_len == CRYPTO_ED25519_PUB_LEN) {
		prefix = ed_prefix;
		plen = sizeof(ed_prefix) - 1;
	} else {
		return CRYPTO_EINVAL;
	}
	if (!pub)
		return CRYPTO_EINVAL;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, prefix, plen);
	b64url(pub, pub_len, buf + plen); /* 20 + 44 = 64 and 17 + 43 = 60: both fit */
	memcpy(out, buf, sizeof(buf));
	return CRYPTO_OK;
}
