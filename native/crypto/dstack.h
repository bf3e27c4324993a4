/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dstack's key derivations and signature formats, byte-compatible with upstream
 * (spec kms-vmm-gateway.md §2-3, guest-and-attestation.md §7):
 *
 *   crypto_dstack_kdf.c  derive_key (HKDF-SHA256, salt "RATLS"), derive_p256, the 138-byte PKCS#8
 *                 encoding and derive_dh_secret; the KMS derivation tree and the non-KMS one
 *   crypto_dstack_sig.c  GetKey and its signature_chain[0], Sign/Verify, the `dstack-kms-issued:`
 *                 signature, the env-encrypt-pubkey signatures (legacy and timestamped), the
 *                 chain check, report_data formats
 *   crypto_dstack_env.c  the encrypted-env blob (X25519 + AES-256-GCM)
 *
 * Same conventions as crypto.h: CRYPTO_OK or a negative enum crypto_err, outputs written only
 * on success, secrets wiped. app_id is always 20 bytes; instance_id is 20 bytes or empty.
 */
#ifndef MOONSTACK_DSTACK_H
#define MOONSTACK_DSTACK_H

#include "crypto/crypto.h"

/** Sizes of an app_id and of a (non-empty) instance_id. */
#define DSTACK_APP_ID_LEN      20
#define DSTACK_INSTANCE_ID_LEN 20
/** Size of the fixed PKCS#8 DER encoding of a P-256 key that derive_dh_secret hashes. */
#define DSTACK_P256_PKCS8_LEN 138
/** Size of a TDX report_data field. */
#define DSTACK_REPORT_DATA_LEN 64

/* ---- crypto_dstack_kdf.c ---- */

/**
 * derive_key: HKDF-SHA256 with salt "RATLS", @p ikm, info = the @p nctx parts concatenated,
 * @p out_len bytes (1..8160).
 */
int dstack_derive_key(const void *ikm, size_t ikm_len, const struct crypto_iov *ctx, size_t nctx,
		      uint8_t *out, size_t out_len);

/**
 * derive_p256: the P-256 private scalar derive_key(@p ikm, ctx, 32), which must lie in
 * [1, n-1] (no reduction; CRYPTO_EKEY otherwise). @p ikm is the parent scalar (or any seed).
 */
int dstack_derive_p256(const void *ikm, size_t ikm_len, const struct crypto_iov *ctx, size_t nctx,
		       uint8_t out[CRYPTO_EC_PRIV_LEN]);

/**
 * The exact 138-byte PKCS#8 DER of the P-256 key @p scalar (ECPrivateKey version 1 with the
 * uncompressed public key and no curve parameters inside), as rcgen/ring encode it.
 */
int dstack_p256_pkcs8(const uint8_t scalar[CRYPTO_EC_PRIV_LEN], uint8_t der[DSTACK_P256_PKCS8_LEN]);

/** derive_dh_secret: SHA-256 of dstack_p256_pkcs8(dstack_derive_p256(@p ikm, ctx)). */
int dstack_derive_dh_secret(const void *ikm, size_t ikm_len, const struct crypto_iov *ctx,
			    size_t nctx, uint8_t out[32]);

/** KMS app CA key: derive_p256(root, app_id || "app-ca"). */
int dstack_kms_app_ca_key(const uint8_t root[CRYPTO_EC_PRIV_LEN],
			  const uint8_t app_id[DSTACK_APP_ID_LEN], uint8_t out[CRYPTO_EC_PRIV_LEN]);

/**
 * KMS disk_crypt_key: derive_dh_secret(root, app_id || instance_id || "app-disk-crypt-key");
 * @p instance_id_len is 20 or 0.
 */
int dstack_kms_disk_key(const uint8_t root[CRYPTO_EC_PRIV_LEN],
			const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t *instance_id,
			size_t instance_id_len, uint8_t out[32]);

/**
 * KMS env_crypt_key: derive_dh_secret(root, app_id || "env-encrypt-key") into @p secret and
 * its X25519 public key into @p pub (either may be NULL).
 */
int dstack_kms_env_key(const uint8_t root[CRYPTO_EC_PRIV_LEN],
		       const uint8_t app_id[DSTACK_APP_ID_LEN], uint8_t *secret, uint8_t *pub);

/**
 * KMS app k256 key: derive_key(root_k256, app_id || "app-key", 32) into @p key (a valid
 * secp256k1 scalar, CRYPTO_EKEY otherwise), its compressed public key into @p pub and the
 * root's `dstack-kms-issued:` recoverable signature over it into @p sig (any may be NULL).
 */
int dstack_kms_app_k256(const uint8_t root_k256[CRYPTO_EC_PRIV_LEN],
			const uint8_t app_id[DSTACK_APP_ID_LEN], uint8_t *key, uint8_t *pub,
			uint8_t *sig);

/**
 * Keys of the non-KMS providers (none/local/tpm) from a 32-byte @p seed: app CA =
 * derive_p256(seed, "app-key"), disk = derive_dh_secret(seed, "app-disk-key"), k256 =
 * derive_key(seed, "app-k256-key", 32). Outputs may be NULL.
 */
int dstack_local_app_keys(const uint8_t seed[32], uint8_t *ca_key, uint8_t *disk_key,
			  uint8_t *k256_key);

/* ---- crypto_dstack_sig.c ---- */

/** GetKey algorithms. */
enum dstack_key_alg {
	DSTACK_KEY_SECP256K1 = 0, /**< "secp256k1", "k256" or "" */
	DSTACK_KEY_ED25519,	  /**< "ed25519" */
};

/** Parse a GetKey algorithm name; -1 if unsupported. */
int dstack_key_alg_parse(const char *name);

/** Result of dstack_get_key(); wipe it with crypto_wipe() when done. */
struct dstack_key {
	uint8_t key[32];    /**< secp256k1 scalar or Ed25519 seed */
	uint8_t pub[33];    /**< compressed secp256k1 (33) or Ed25519 (32) public key */
	size_t pub_len;	    /**< 33 or 32 */
	uint8_t chain0[65]; /**< app key's signature over keccak256(purpose ":" hex(pub)) */
};

/**
 * GetKey(path, purpose, alg) with the app's k256 key @p app_k256: key =
 * derive_key(app_k256, path, 32) (a valid secp256k1 scalar for DSTACK_KEY_SECP256K1,
 * CRYPTO_EKEY otherwise), its public key, and signature_chain[0]. signature_chain[1] is the
 * KMS-issued k256_signature the caller already holds.
 */
int dstack_get_key(const uint8_t app_k256[32], const void *path, size_t path_len,
		   const void *purpose, size_t purpose_len, int alg, struct dstack_key *out);

/** Sign algorithms. */
enum dstack_sign_alg {
	DSTACK_SIGN_SECP256K1 = 0, /**< ECDSA over SHA-256(data), r||s ("secp256k1", "k256") */
	DSTACK_SIGN_SECP256K1_PREHASHED, /**< ECDSA over a 32-byte digest ("secp256k1_prehashed") */
	DSTACK_SIGN_ED25519,		 /**< Ed25519 over data ("ed25519") */
};

/** Parse a Sign/Verify algorithm name; -1 if unsupported. */
int dstack_sign_alg_parse(const char *name);

/** Result of dstack_sign(). */
struct dstack_signature {
	uint8_t sig[64];    /**< r||s or the Ed25519 signature */
	uint8_t pub[33];    /**< the signing key's public key */
	size_t pub_len;	    /**< 33 or 32 */
	uint8_t chain0[65]; /**< signature_chain[1] of the response: GetKey("vms","signing") */
};

/**
 * Sign(alg, data) with the key GetKey("vms", "signing", alg's key type). The response's
 * signature_chain is [sig, chain0, the KMS k256_signature]. CRYPTO_EINVAL if a prehashed
 * digest is not 32 bytes.
 */
int dstack_sign(const uint8_t app_k256[32], int alg, const void *data, size_t len,
		struct dstack_signature *out);

/** Verify(alg, data, sig, pub): CRYPTO_OK, CRYPTO_EVERIFY, or CRYPTO_EINVAL/EKEY if malformed. */
int dstack_verify(int alg, const void *data, size_t len, const uint8_t *sig, size_t sig_len,
		  const uint8_t *pub, size_t pub_len);

/**
 * Check a GetKey result: recover the app key from @p chain0 over keccak256(purpose ":"
 * hex(pub)) into @p app_pub (33 bytes), then the KMS root key from @p chain1 over
 * keccak256("dstack-kms-issued:" || app_id || app_pub) into @p kms_pub (33 bytes). The caller
 * compares @p kms_pub with the trusted KMS key. CRYPTO_ESIG if a signature is unusable.
 */
int dstack_verify_key_chain(const uint8_t *pub, size_t pub_len, const void *purpose,
			    size_t purpose_len, const uint8_t chain0[65],
			    const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t chain1[65],
			    uint8_t app_pub[33], uint8_t kms_pub[33]);

/** The `dstack-kms-issued:` signature by @p root_k256 over @p app_pub (33 bytes). */
int dstack_kms_issued_sign(const uint8_t root_k256[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			   const uint8_t app_pub[33], uint8_t sig[65]);

/** Recover the KMS root key (33 bytes) from a `dstack-kms-issued:` signature. */
int dstack_kms_issued_recover(const uint8_t app_id[DSTACK_APP_ID_LEN], const uint8_t app_pub[33],
			      const uint8_t sig[65], uint8_t kms_pub[33]);

/** Default accepted age of a timestamped env-encrypt-pubkey signature, in seconds. */
#define DSTACK_ENV_SIG_MAX_AGE 300
/** How far in the future a signed timestamp may be (clock skew, s). */
#define DSTACK_ENV_SIG_MAX_FUTURE 60

/**
 * Sign an env-encrypt public key with the KMS root k256 key: over keccak256(
 * "dstack-env-encrypt-pubkey:" || app_id || [u64be(timestamp)] || pub). The legacy form
 * (@p with_timestamp false) has no timestamp.
 */
int dstack_env_pubkey_sign(const uint8_t root_k256[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			   const uint8_t pub[32], bool with_timestamp, uint64_t timestamp,
			   uint8_t sig[65]);

/**
 * Recover the signer (33 bytes compressed) of an env-encrypt-pubkey signature @p sig
 * (@p sig_len must be 65). With @p with_timestamp, first check the window as the SDKs do:
 * age = now - timestamp must satisfy -DSTACK_ENV_SIG_MAX_FUTURE <= age <= @p max_age
 * (CRYPTO_ETIMESTAMP otherwise). The caller compares the signer with the trusted KMS key.
 */
int dstack_env_pubkey_recover(const uint8_t pub[32], const uint8_t app_id[DSTACK_APP_ID_LEN],
			      const uint8_t *sig, size_t sig_len, bool with_timestamp,
			      uint64_t timestamp, uint64_t now, uint64_t max_age,
			      uint8_t signer[33]);

/** report_data = SHA-512(@p tag || ":" || @p content) (64 bytes), e.g. tag "ratls-cert". */
int dstack_report_data(const char *tag, const void *content, size_t len,
		       uint8_t out[DSTACK_REPORT_DATA_LEN]);

/**
 * GetAttestationForAppKey report_data: "dip1::secp256k1c-pk:" + base64url(33-byte pub) or
 * "dip1::ed25519-pk:" + base64url(32-byte pub), zero-padded to 64 bytes.
 */
int dstack_app_key_report_data(int key_alg, const uint8_t *pub, size_t pub_len,
			       uint8_t out[DSTACK_REPORT_DATA_LEN]);

/* ---- crypto_dstack_env.c ---- */

/** Smallest encrypted-env blob: ephemeral key, IV and tag around an empty plaintext. */
#define DSTACK_ENV_OVERHEAD (CRYPTO_X25519_LEN + CRYPTO_GCM_IV_LEN + CRYPTO_GCM_TAG_LEN)

/**
 * Encrypt @p pt for the app env public key @p pub: blob = ephemeral X25519 pub (32) || IV
 * (12) || AES-256-GCM(key = X25519 shared secret, no AAD)(pt) || tag (16), written to @p out
 * (len + DSTACK_ENV_OVERHEAD bytes). @p eph_secret and @p iv are random when NULL (fixed
 * values are for tests).
 */
int dstack_env_encrypt(const uint8_t pub[32], const void *pt, size_t len, const uint8_t *eph_secret,
		       const uint8_t *iv, uint8_t *out);

/**
 * Decrypt an encrypted-env @p blob with the app's env_crypt_key @p secret into @p out
 * (blob_len - DSTACK_ENV_OVERHEAD bytes). CRYPTO_EINVAL if the blob is too short,
 * CRYPTO_EKEY for an all-zero shared secret, CRYPTO_EDECRYPT if authentication fails.
 */
int dstack_env_decrypt(const uint8_t secret[32], const uint8_t *blob, size_t blob_len,
		       uint8_t *out);

#endif
