/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dstack's KDF primitives (upstream ra-tls/src/kdf.rs) and the key-derivation trees of the
 * KMS and of the non-KMS key providers (spec kms-vmm-gateway.md §3.2-3.3).
 */
#include <string.h>

#include "crypto/dstack.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* HKDF salt of every dstack derivation. */
static const char kdf_salt[] = "RATLS";

int dstack_derive_key(const void *ikm, size_t ikm_len, const struct crypto_iov *ctx, size_t nctx,
		      uint8_t *out, size_t out_len)
{
	return crypto_hkdf(CRYPTO_SHA256, ikm, ikm_len, kdf_salt, sizeof(kdf_salt) - 1, ctx, nctx,
			   out, out_len);
}

int dstack_derive_p256(const void *ikm, size_t ikm_len, const struct crypto_iov *ctx, size_t nctx,
		       uint8_t out[CRYPTO_EC_PRIV_LEN])
{
	uint8_t d[CRYPTO_EC_PRIV_LEN];
	int rc = dstack_derive_key(ikm, ikm_len, ctx, nctx, d, sizeof(d));

	/* upstream p256::SecretKey::from_slice: out-of-range bytes are an error, not reduced */
	if (rc == CRYPTO_OK && !crypto_p256_priv_valid(d))
		rc = CRYPTO_EKEY;
	if (rc == CRYPTO_OK)
		memcpy(out, d, sizeof(d));
	crypto_wipe(d, sizeof(d));
	return rc;
}

/* PKCS#8 PrivateKeyInfo { version 0, AlgorithmIdentifier { id-ecPublicKey, prime256v1 },
 * OCTET STRING { ECPrivateKey { version 1, d, [1] publicKey } } }: everything but the scalar
 * and the point is fixed. */
static const uint8_t pkcs8_head[] = {
	0x30, 0x81, 0x87,					    /* SEQUENCE, 135 bytes */
	0x02, 0x01, 0x00,					    /* version 0 */
	0x30, 0x13,						    /* AlgorithmIdentifier */
	0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,	    /* id-ecPublicKey */
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, /* prime256v1 */
	0x04, 0x6d,						    /* OCTET STRING, 109 bytes */
	0x30, 0x6b,						    /* ECPrivateKey */
	0x02, 0x01, 0x01,					    /* version 1 */
	0x04, 0x20,						    /* privateKey: 32 bytes */
};
static const uint8_t pkcs8_mid[] = {
	0xa1, 0x44,	  /* [1] publicKey */
	0x03, 0x42, 0x00, /* BIT STRING, 66 bytes, no unused bits */
};

int dstack_p256_pkcs8(const uint8_t scalar[CRYPTO_EC_PRIV_LEN], uint8_t der[DSTACK_P256_PKCS8_LEN])
{
	uint8_t pub[CRYPTO_EC_PUB_UNCOMPRESSED];
	int rc = crypto_p256_pubkey(scalar, false, pub);
	if (rc != CRYPTO_OK)
		return rc;

	uint8_t *p = der;
	memcpy(p, pkcs8_head, sizeof(pkcs8_head));
	p += sizeof(pkcs8_head);
	memcpy(p, scalar, CRYPTO_EC_PRIV_LEN);
	p += CRYPTO_EC_PRIV_LEN;
	memcpy(p, pkcs8_mid, sizeof(pkcs8_mid));
	p += sizeof(pkcs8_mid);
	memcpy(p, pub, sizeof(pub)); /* 0x04 || X || Y */
	p += sizeof(pub);
	_Static_assert(sizeof(pkcs8_head) + CRYPTO_EC_PRIV_LEN + sizeof(pkcs8_mid) +
				       CRYPTO_EC_PUB_UNCOMPRESSED ==
			       DSTACK_P256_PKCS8_LEN,
		       "PKCS#8 layout");
	return CRYPTO_OK;
}

int dstack_derive_dh_secret(const void *ikm, size_t ikm_len, const struct crypto_iov *ctx,
			    size_t nctx, uint8_t out[32])
{
	uint8_t d[CRYPTO_EC_PRIV_LEN], der[DSTACK_P256_PKCS8_LEN];
	int rc = dstack_derive_p256(ikm, ikm_len, ctx, nctx, d);

	if (rc == CRYPTO_OK)
		rc = dstack_p256_pkcs8(d, der);
	if (rc == CRYPTO_OK)
		rc = crypto_sha256(der, sizeof(der), out);
	crypto_wipe(d, sizeof(d));
	crypto_wipe(der, sizeof(der));
	return rc;
}

/* ---- the KMS tree ---- */

#define IOV_STR(s)                 \
	{                          \
		(s), sizeof(s) - 1 \
	}

int dstack_kms_app_ca_key(const uint8_t root[CRYPTO_EC_PRIV_LEN],
			  const uint8_t app_id[DSTACK_APP_ID_LEN], uint8_t out[CRYPTO_EC_PRIV_LEN])
{
	const struct crypto_iov ctx[] = { { app_id, DSTACK_APP_ID_LEN }, IOV_STR("app-ca") };
	return dstack_derive_p256(root, CRYPTO_EC_PRIV_LEN, ctx, ARRAY_SIZE(ctx), out);
}

int dstack_kms_disk_key(const uint8_t root[CRYPTO_EC_PRIV_LEN],
			const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t *instance_id,
			size_t instance_id_len, uint8_t out[32])
{
	if (instance_id_len != 0 && (instance_id_len != DSTACK_INSTANCE_ID_LEN || !instance_id))
		return CRYPTO_EINVAL;
	const struct crypto_iov ctx[] = {
		{ app_id, DSTACK_APP_ID_LEN },
		{ instance_id, instance_id_len },
		IOV_STR("app-disk-crypt-key"),
	};
	return dstack_derive_dh_secret(root, CRYPTO_EC_PRIV_LEN, ctx, ARRAY_SIZE(ctx), out);
}

int dstack_kms_env_key(const uint8_t root[CRYPTO_EC_PRIV_LEN],
		       const uint8_t app_id[DSTACK_APP_ID_LEN], uint8_t *secret, uint8_t *pub)
{
	const struct crypto_iov ctx[] = { { app_id, DSTACK_APP_ID_LEN },
					  IOV_STR("env-encrypt-key") };
	uint8_t s[32], p[32];

	int rc = dstack_derive_dh_secret(root, CRYPTO_EC_PRIV_LEN, ctx, ARRAY_SIZE(ctx), s);
	if (rc == CRYPTO_OK && pub)
		rc = crypto_x25519_pubkey(s, p);
	if (rc == CRYPTO_OK) {
		if (secret)
			memcpy(secret, s, sizeof(s));
		if (pub)
			memcpy(pub, p, sizeof(p));
	}
	crypto_wipe(s, sizeof(s));
	return rc;
}

int dstack_kms_app_k256(const uint8_t root_k256[CRYPTO_EC_PRIV_LEN],
			const uint8_t app_id[DSTACK_APP_ID_LEN], uint8_t *key, uint8_t *pub,
			uint8_t *sig)
{
	const struct crypto_iov ctx[] = { { app_id, DSTACK_APP_ID_LEN }, IOV_STR("app-key") };
	uint8_t k[32], p[CRYPTO_EC_PUB_COMPRESSED], s[CRYPTO_ECDSA_RSIG_LEN];

	int rc = dstack_derive_key(root_k256, CRYPTO_EC_PRIV_LEN, ctx, ARRAY_SIZE(ctx), k,
				   sizeof(k));
	if (rc == CRYPTO_OK && !crypto_k256_priv_valid(k))
		rc = CRYPTO_EKEY;
	if (rc == CRYPTO_OK)
		rc = crypto_k256_pubkey(k, true, p);
	if (rc == CRYPTO_OK && sig)
		rc = dstack_kms_issued_sign(root_k256, app_id, p, s);
	if (rc == CRYPTO_OK) {
		if (key)
			memcpy(key, k, sizeof(k));
		if (pub)
			memcpy(pub, p, sizeof(p));
		if (sig)
			memcpy(sig, s, sizeof(s));
	}
	crypto_wipe(k, sizeof(k));
	return rc;
}

int dstack_local_app_keys(const uint8_t seed[32], uint8_t *ca_key, uint8_t *disk_key,
			  uint8_t *k256_key)
{
	const struct crypto_iov ca_ctx = IOV_STR("app-key");
	const struct crypto_iov disk_ctx = IOV_STR("app-disk-key");
	const struct crypto_iov k256_ctx = IOV_STR("app-k256-key");
	uint8_t ca[32], disk[32], k256[32];

	int rc = dstack_derive_p256(seed, 32, &ca_ctx, 1, ca);
	if (rc == CRYPTO_OK)
		rc = dstack_derive_dh_secret(seed, 32, &disk_ctx, 1, disk);
	if (rc == CRYPTO_OK)
		rc = dstack_derive_key(seed, 32, &k256_ctx, 1, k256, sizeof(k256));
	if (rc == CRYPTO_OK && !crypto_k256_priv_valid(k256))
		rc = CRYPTO_EKEY;
	if (rc == CRYPTO_OK) {
		if (ca_key)
			memcpy(ca_key, ca, 32);
		if (disk_key)
			memcpy(disk_key, disk, 32);
		if (k256_key)
			memcpy(k256_key, k256, 32);
	}
	crypto_wipe(ca, sizeof(ca));
	crypto_wipe(disk, sizeof(disk));
	crypto_wipe(k256, sizeof(k256));
	return rc;
}
