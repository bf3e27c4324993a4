/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cryptographic primitives for moonstack, as a plain C API (no Lua): SHA-2 and Ethereum's
 * Keccak-256, HMAC and HKDF, P-256 and secp256k1 ECDSA (recoverable signatures included),
 * X25519, Ed25519, AES-256-GCM, secure random and constant-time comparison.
 *
 * OpenSSL 3 (EVP) does the work except for Keccak-256 (OpenSSL 3.0 has none; see crypto_hash.c) and
 * secp256k1 (libsecp256k1, the reference implementation, for RFC 6979 low-S recoverable
 * signatures and public-key recovery).
 *
 * Conventions: every function returns CRYPTO_OK (0) or a negative enum crypto_err; outputs are
 * written only on success (partial outputs are wiped on failure). Keys and signatures are raw
 * big-endian byte strings: private scalars 32 bytes, EC public keys SEC1 (33 bytes compressed
 * or 65 bytes uncompressed), ECDSA signatures r||s (64 bytes), recoverable ones r||s||v with
 * v = recovery id 0..3 (65 bytes). Secret temporaries are wiped with OPENSSL_cleanse. All
 * functions are thread-safe.
 */
#ifndef MOONSTACK_CRYPTO_H
#define MOONSTACK_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Result codes. */
enum crypto_err {
	CRYPTO_OK = 0,
	CRYPTO_EINVAL = -1,	/**< malformed input: wrong length, bad encoding, bad option */
	CRYPTO_EKEY = -2,	/**< invalid key: scalar out of range, point not on the curve,
				     low-order X25519 peer (all-zero shared secret) */
	CRYPTO_ESIG = -3,	/**< signature malformed or nothing recoverable from it */
	CRYPTO_EVERIFY = -4,	/**< well-formed signature that does not verify */
	CRYPTO_EDECRYPT = -5,	/**< AEAD authentication failed (wrong key, tampered data) */
	CRYPTO_ETIMESTAMP = -6, /**< signed timestamp outside the accepted window */
	CRYPTO_ENOMEM = -7,	/**< out of memory */
	CRYPTO_EINTERNAL = -8,	/**< OpenSSL or libsecp256k1 failed unexpectedly */
};

/** Stable upper-case name of @p err ("EINVAL", "EKEY", ...), "EINTERNAL" if unknown. */
const char *crypto_err_code(int err);

/** Human-readable description of @p err. */
const char *crypto_strerror(int err);

/** One piece of a message made of several concatenated parts. */
struct crypto_iov {
	const void *data; /**< bytes (may be NULL when len is 0) */
	size_t len;	  /**< number of bytes */
};

/* ---- hashes (crypto_hash.c) ---- */

/** Digest sizes, in bytes. */
#define CRYPTO_SHA256_LEN    32
#define CRYPTO_SHA384_LEN    48
#define CRYPTO_SHA512_LEN    64
#define CRYPTO_KECCAK256_LEN 32
/** Largest digest size of any supported hash. */
#define CRYPTO_MAX_DIGEST_LEN 64

/** Hash algorithms. */
enum crypto_hash_alg {
	CRYPTO_SHA256 = 0,
	CRYPTO_SHA384,
	CRYPTO_SHA512,
	CRYPTO_KECCAK256, /**< Ethereum's Keccak-256 (pad 0x01), not NIST SHA3-256 (pad 0x06) */
	CRYPTO_SHA3_256,  /**< NIST SHA3-256 (OpenSSL) */
	CRYPTO_SHA3_384,  /**< NIST SHA3-384 */
	CRYPTO_SHA3_512,  /**< NIST SHA3-512 */
	CRYPTO_KECCAK384, /**< original Keccak (pad 0x01), rate 104 bytes */
	CRYPTO_KECCAK512, /**< original Keccak (pad 0x01), rate 72 bytes */
	CRYPTO_HASH_COUNT /**< number of algorithms */
};

/**
 * Parse "sha256", "sha384", "sha512", "keccak256", "sha3-256", "sha3-384", "sha3-512",
 * "keccak384", "keccak512"; returns -1 for anything else.
 */
int crypto_hash_alg_parse(const char *name);

/** Name of @p alg ("sha256", ...), or NULL if out of range. */
const char *crypto_hash_alg_name(int alg);

/** Digest size of @p alg in bytes, 0 if out of range. */
size_t crypto_hash_len(int alg);

/** Hash the concatenation of @p n parts into @p out (crypto_hash_len(alg) bytes). */
int crypto_hashv(int alg, const struct crypto_iov *parts, size_t n, uint8_t *out);

/** Hash @p len bytes of @p data into @p out (crypto_hash_len(alg) bytes). */
int crypto_hash(int alg, const void *data, size_t len, uint8_t *out);

/** SHA-256 of @p data. */
int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN]);

/** SHA-384 of @p data. */
int crypto_sha384(const void *data, size_t len, uint8_t out[CRYPTO_SHA384_LEN]);

/** SHA-512 of @p data. */
int crypto_sha512(const void *data, size_t len, uint8_t out[CRYPTO_SHA512_LEN]);

/** Incremental Keccak state (the Keccak-f[1600] sponge; rate 136 bytes for Keccak-256). */
struct crypto_keccak {
	uint64_t st[25]; /**< the 5x5 lanes */
	size_t pos;	 /**< bytes absorbed into the current block */
	size_t rate;	 /**< block size in bytes: 200 - 2 * digest size */
};

/** Start a Keccak-256 computation. */
void crypto_keccak256_init(struct crypto_keccak *k);

/** Absorb @p len bytes. */
void crypto_keccak256_update(struct crypto_keccak *k, const void *data, size_t len);

/** Pad (0x01 ... 0x80), squeeze the 32-byte digest into @p out and wipe the state. */
void crypto_keccak256_final(struct crypto_keccak *k, uint8_t out[CRYPTO_KECCAK256_LEN]);

/** Keccak-256 of @p data (Ethereum's; `keccak256("")` = c5d24601...). */
int crypto_keccak256(const void *data, size_t len, uint8_t out[CRYPTO_KECCAK256_LEN]);

/* ---- MAC and KDF (crypto_mac_kdf.c); alg is CRYPTO_SHA256/384/512 (not Keccak) ---- */

/** HMAC-@p alg of @p data under @p key into @p out (crypto_hash_len(alg) bytes). */
int crypto_hmac(int alg, const void *key, size_t key_len, const void *data, size_t len,
		uint8_t *out);

/** Largest HKDF output: 255 blocks of the hash. */
#define CRYPTO_HKDF_MAX_BLOCKS 255
/** Longest HKDF info (all parts together), in bytes: OpenSSL 3.0's own limit. */
#define CRYPTO_HKDF_MAX_INFO 1024

/**
 * HKDF (RFC 5869) extract-then-expand with hash @p alg: @p out_len bytes (1 .. 255 * hash
 * length) from @p ikm, @p salt (may be empty) and the concatenated @p info parts (at most
 * CRYPTO_HKDF_MAX_INFO bytes together).
 */
int crypto_hkdf(int alg, const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
		const struct crypto_iov *info, size_t ninfo, uint8_t *out, size_t out_len);

/** HKDF-Extract: PRK (crypto_hash_len(alg) bytes) from @p ikm and @p salt. */
int crypto_hkdf_extract(int alg, const void *ikm, size_t ikm_len, const void *salt, size_t salt_len,
			uint8_t *prk);

/** HKDF-Expand: @p out_len bytes from @p prk (at least one hash length) and @p info. */
int crypto_hkdf_expand(int alg, const void *prk, size_t prk_len, const void *info, size_t info_len,
		       uint8_t *out, size_t out_len);

/* ---- random and comparison (crypto_util.c) ---- */

/** Fill @p out with @p len bytes from OpenSSL's CSPRNG (the private instance). */
int crypto_random(void *out, size_t len);

/** Constant-time equality of two @p len byte buffers (time depends on len only). */
bool crypto_equal(const void *a, const void *b, size_t len);

/** Wipe @p len bytes at @p p in a way the compiler cannot drop. */
void crypto_wipe(void *p, size_t len);

/* ---- ECDSA over P-256 (crypto_p256.c) ---- */

/** Sizes of EC private keys, SEC1 public keys and (recoverable) ECDSA signatures. */
#define CRYPTO_EC_PRIV_LEN	   32
#define CRYPTO_EC_PUB_COMPRESSED   33
#define CRYPTO_EC_PUB_UNCOMPRESSED 65
#define CRYPTO_ECDSA_SIG_LEN	   64
#define CRYPTO_ECDSA_RSIG_LEN	   65

/** Whether @p priv is a valid P-256 private scalar (1 <= d <= n-1). */
bool crypto_p256_priv_valid(const uint8_t priv[CRYPTO_EC_PRIV_LEN]);

/** A fresh random P-256 private scalar. */
int crypto_p256_generate(uint8_t priv[CRYPTO_EC_PRIV_LEN]);

/**
 * Public key of @p priv, SEC1 encoded into @p pub: 33 bytes if @p compressed, else 65.
 * CRYPTO_EKEY if the scalar is out of range.
 */
int crypto_p256_pubkey(const uint8_t priv[CRYPTO_EC_PRIV_LEN], bool compressed, uint8_t *pub);

/** Re-encode the SEC1 public key @p pub (33 or 65 bytes, checked on the curve). */
int crypto_p256_pub_convert(const uint8_t *pub, size_t pub_len, bool compressed, uint8_t *out);

/** ECDSA-sign the 32-byte @p digest (random nonce); @p sig = r||s (64 bytes). */
int crypto_p256_sign(const uint8_t priv[CRYPTO_EC_PRIV_LEN], const uint8_t digest[32],
		     uint8_t sig[CRYPTO_ECDSA_SIG_LEN]);

/**
 * An OpenSSL key holding the uncompressed P-256 public key @p pub65 (0x04 || x || y, checked on
 * the curve), built from its parameters: no trip through OpenSSL 3.0's DER decoders, which cost
 * about four times as much. Returns NULL if it is not a curve point. Free with EVP_PKEY_free().
 */
struct evp_pkey_st *crypto_p256_public_key(const uint8_t pub65[CRYPTO_EC_PUB_UNCOMPRESSED]);

/**
 * Verify r||s @p sig over the 32-byte @p digest with SEC1 @p pub. CRYPTO_OK if valid,
 * CRYPTO_EVERIFY if not, CRYPTO_EINVAL/CRYPTO_EKEY for a malformed key.
 */
int crypto_p256_verify(const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
		       const uint8_t sig[CRYPTO_ECDSA_SIG_LEN]);

/* ---- password hashes (crypto_password.c) ---- */

/** Whether @p hash is a bcrypt hash ($2a$/$2b$/$2y$, cost 4..31, 60 characters). */
bool crypto_bcrypt_hash_valid(const char *hash);

/**
 * Check @p password (@p password_len bytes, no NUL, at most 72: bcrypt's limit) against the
 * bcrypt @p hash, in constant time. CRYPTO_OK if it matches, CRYPTO_EVERIFY if not,
 * CRYPTO_EINVAL if @p hash is not bcrypt.
 */
int crypto_bcrypt_check(const char *password, size_t password_len, const char *hash);

/* ---- ECDSA over secp256k1 (crypto_k256.c) ---- */

/** Whether @p priv is a valid secp256k1 private scalar (1 <= d <= n-1). */
bool crypto_k256_priv_valid(const uint8_t priv[CRYPTO_EC_PRIV_LEN]);

/** A fresh random secp256k1 private scalar. */
int crypto_k256_generate(uint8_t priv[CRYPTO_EC_PRIV_LEN]);

/** Public key of @p priv (SEC1, 33 bytes if @p compressed, else 65). */
int crypto_k256_pubkey(const uint8_t priv[CRYPTO_EC_PRIV_LEN], bool compressed, uint8_t *pub);

/** Re-encode the SEC1 public key @p pub (33 or 65 bytes, checked on the curve). */
int crypto_k256_pub_convert(const uint8_t *pub, size_t pub_len, bool compressed, uint8_t *out);

/** Deterministic (RFC 6979) low-S ECDSA over the 32-byte @p digest; @p sig = r||s. */
int crypto_k256_sign(const uint8_t priv[CRYPTO_EC_PRIV_LEN], const uint8_t digest[32],
		     uint8_t sig[CRYPTO_ECDSA_SIG_LEN]);

/** As crypto_k256_sign(), with the recovery id appended: @p sig = r||s||v, v in {0,1}. */
int crypto_k256_sign_recoverable(const uint8_t priv[CRYPTO_EC_PRIV_LEN], const uint8_t digest[32],
				 uint8_t sig[CRYPTO_ECDSA_RSIG_LEN]);

/**
 * Recover the signer of the 65-byte r||s||v @p sig over @p digest into @p pub (33 or 65
 * bytes). v is 0..3, or 27..30 (Ethereum style, 27 subtracted). CRYPTO_ESIG if the signature
 * is malformed or no key recovers from it.
 */
int crypto_k256_recover(const uint8_t digest[32], const uint8_t sig[CRYPTO_ECDSA_RSIG_LEN],
			bool compressed, uint8_t *pub);

/**
 * Verify r||s @p sig over @p digest with SEC1 @p pub. Only low-S signatures verify (as
 * libsecp256k1 and the Rust k256 crate require). CRYPTO_OK or CRYPTO_EVERIFY.
 */
int crypto_k256_verify(const uint8_t *pub, size_t pub_len, const uint8_t digest[32],
		       const uint8_t sig[CRYPTO_ECDSA_SIG_LEN]);

/* ---- X25519 and Ed25519 (crypto_curve25519.c) ---- */

/** Sizes of X25519 keys and of Ed25519 seeds, public keys and signatures. */
#define CRYPTO_X25519_LEN	32
#define CRYPTO_ED25519_SEED_LEN 32
#define CRYPTO_ED25519_PUB_LEN	32
#define CRYPTO_ED25519_SIG_LEN	64

/** X25519 public key of the 32-byte secret @p priv (clamped inside the scalar multiply). */
int crypto_x25519_pubkey(const uint8_t priv[CRYPTO_X25519_LEN], uint8_t pub[CRYPTO_X25519_LEN]);

/** X25519(@p priv, @p peer); CRYPTO_EKEY if the result is all zero (low-order peer). */
int crypto_x25519(const uint8_t priv[CRYPTO_X25519_LEN], const uint8_t peer[CRYPTO_X25519_LEN],
		  uint8_t shared[CRYPTO_X25519_LEN]);

/** Ed25519 public key of the 32-byte @p seed. */
int crypto_ed25519_pubkey(const uint8_t seed[CRYPTO_ED25519_SEED_LEN],
			  uint8_t pub[CRYPTO_ED25519_PUB_LEN]);

/** Ed25519 (RFC 8032, pure) signature of @p msg under @p seed. */
int crypto_ed25519_sign(const uint8_t seed[CRYPTO_ED25519_SEED_LEN], const void *msg, size_t len,
			uint8_t sig[CRYPTO_ED25519_SIG_LEN]);

/** Verify an Ed25519 signature: CRYPTO_OK or CRYPTO_EVERIFY. */
int crypto_ed25519_verify(const uint8_t pub[CRYPTO_ED25519_PUB_LEN], const void *msg, size_t len,
			  const uint8_t sig[CRYPTO_ED25519_SIG_LEN]);

/* ---- AES-256-GCM (crypto_aead.c) ---- */

/** AES-256-GCM key, IV and tag sizes. */
#define CRYPTO_AES256_KEY_LEN 32
#define CRYPTO_GCM_IV_LEN     12
#define CRYPTO_GCM_TAG_LEN    16

/**
 * AES-256-GCM encryption with a 12-byte @p iv and optional @p aad: writes @p len bytes of
 * ciphertext followed by the 16-byte tag to @p out (len + 16 bytes, never NULL;
 * may equal @p pt).
 */
int crypto_aes256gcm_encrypt(const uint8_t key[CRYPTO_AES256_KEY_LEN],
			     const uint8_t iv[CRYPTO_GCM_IV_LEN], const void *aad, size_t aad_len,
			     const void *pt, size_t len, uint8_t *out);

/**
 * AES-256-GCM decryption of @p in = ciphertext||tag (@p in_len >= 16): writes in_len - 16
 * plaintext bytes to @p out. CRYPTO_EDECRYPT (and @p out wiped) if the tag does not match.
 */
int crypto_aes256gcm_decrypt(const uint8_t key[CRYPTO_AES256_KEY_LEN],
			     const uint8_t iv[CRYPTO_GCM_IV_LEN], const void *aad, size_t aad_len,
			     const uint8_t *in, size_t in_len, uint8_t *out);

#endif
