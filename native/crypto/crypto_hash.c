/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hashes: SHA-256/384/512 and SHA3-256/384/512 through OpenSSL's EVP, and the original
 * Keccak-256/384/512 (Ethereum's Keccak-256) as a small Keccak-f[1600] sponge (OpenSSL 3.0
 * has no Keccak with the original 0x01 padding; its SHA3 uses 0x06 and gives different
 * digests).
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"

static const char *const hash_names[CRYPTO_HASH_COUNT] = {
	"sha256",   "sha384",	"sha512",    "keccak256", "sha3-256",
	"sha3-384", "sha3-512", "keccak384", "keccak512",
};
static const size_t hash_lens[CRYPTO_HASH_COUNT] = { 32, 48, 64, 32, 32, 48, 64, 48, 64 };

int crypto_hash_alg_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof(hash_names) / sizeof(hash_names[0]); i++) {
		if (strcmp(name, hash_names[i]) == 0)
			return (int)i;
	}
	return -1;
}

const char *crypto_hash_alg_name(int alg)
{
	return alg >= CRYPTO_SHA256 && alg < CRYPTO_HASH_COUNT ? hash_names[alg] : NULL;
}

size_t crypto_hash_len(int alg)
{
	return alg >= CRYPTO_SHA256 && alg < CRYPTO_HASH_COUNT ? hash_lens[alg] : 0;
}

/* ---- Keccak-f[1600] ---- */

#define KECCAK_ROUNDS 24

/* iota: the round constants. */
static const uint64_t keccak_rc[KECCAK_ROUNDS] = {
	0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
	0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
	0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
	0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
	0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
	0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/*
 * rho and pi together: walking lane 1 along the pi permutation visits these 24 lanes in
 * order (lane index x + 5y); each lane moved there is rotated by the rho offset listed next.
 */
static const uint8_t keccak_pi_lane[KECCAK_ROUNDS] = {
	10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
};
static const uint8_t keccak_rho[KECCAK_ROUNDS] = {
	1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
};

static inline uint64_t rotl64(uint64_t v, unsigned n)
{
	return (v << n) | (v >> (64 - n));
}

static void keccak_f1600(uint64_t st[25])
{
	uint64_t c[5], t;

	for (int round = 0; round < KECCAK_ROUNDS; round++) {
		/* theta: xor each column's parity into its neighbours */
		for (int x = 0; x < 5; x++)
			c[x] = st[x] ^ st[x + 5] ^ st[x + 10] ^ st[x + 15] ^ st[x + 20];
		for (int x = 0; x < 5; x++) {
			t = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
			for (int y = 0; y < 25; y += 5)
				st[y + x] ^= t;
		}
		/* rho + pi: rotate each lane and move it to its new position */
		t = st[1];
		for (int i = 0; i < KECCAK_ROUNDS; i++) {
			int j = keccak_pi_lane[i];
			uint64_t next = st[j];
			st[j] = rotl64(t, keccak_rho[i]);
			t = next;
		}
		/* chi: the only non-linear step, row by row */
		for (int y = 0; y < 25; y += 5) {
			for (int x = 0; x < 5; x++)
				c[x] = st[y + x];
			for (int x = 0; x < 5; x++)
				st[y + x] = c[x] ^ (~c[(x + 1) % 5] & c[(x + 2) % 5]);
		}
		/* iota */
		st[0] ^= keccak_rc[round];
	}
}

/* XOR one byte into the state at byte offset @p i (lanes are little-endian). */
static inline void keccak_xor_byte(struct crypto_keccak *k, size_t i, uint8_t b)
{
	k->st[i / 8] ^= (uint64_t)b << (8 * (i % 8));
}

/* Start a sponge whose capacity is twice @p digest_len (rate = 200 - 2 * digest_len). */
static void keccak_init(struct crypto_keccak *k, size_t digest_len)
{
	memset(k, 0, sizeof(*k));
	k->rate = 200 - 2 * digest_len;
}

void crypto_keccak256_init(struct crypto_keccak *k)
{
	keccak_init(k, CRYPTO_KECCAK256_LEN);
}

void crypto_keccak256_update(struct crypto_keccak *k, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		keccak_xor_byte(k, k->pos++, p[i]);
		if (k->pos == k->rate) {
			keccak_f1600(k->st);
			k->pos = 0;
		}
	}
}

/* Pad, squeeze @p len bytes (len < rate: one block) into @p out and wipe the state. */
static void keccak_final(struct crypto_keccak *k, uint8_t *out, size_t len)
{
	/* original Keccak multi-rate padding: 0x01 ... 0x80 (both in one byte if pos == rate-1) */
	keccak_xor_byte(k, k->pos, 0x01);
	keccak_xor_byte(k, k->rate - 1, 0x80);
	keccak_f1600(k->st);
	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(k->st[i / 8] >> (8 * (i % 8)));
	OPENSSL_cleanse(k, sizeof(*k));
}

void crypto_keccak256_final(struct crypto_keccak *k, uint8_t out[CRYPTO_KECCAK256_LEN])
{
	keccak_final(k, out, CRYPTO_KECCAK256_LEN);
}

int crypto_keccak256(const void *data, size_t len, uint8_t out[CRYPTO_KECCAK256_LEN])
{
	struct crypto_keccak k;

	if (!data && len)
		return CRYPTO_EINVAL;
	crypto_keccak256_init(&k);
	crypto_keccak256_update(&k, data, len);
	crypto_keccak256_final(&k, out);
	return CRYPTO_OK;
}

/* ---- SHA-2, SHA-3 ---- */

static const EVP_MD *evp_md(int alg)
{
	switch (alg) {
	case CRYPTO_SHA256:
		return EVP_sha256();
	case CRYPTO_SHA384:
		return EVP_sha384();
	case CRYPTO_SHA512:
		return EVP_sha512();
	case CRYPTO_SHA3_256:
		return EVP_sha3_256();
	case CRYPTO_SHA3_384:
		return EVP_sha3_384();
	case CRYPTO_SHA3_512:
		return EVP_sha3_512();
	default:
		return NULL;
	}
}

int crypto_hashv(int alg, const struct crypto_iov *parts, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		if (!parts[i].data && parts[i].len)
			return CRYPTO_EINVAL;
	}
	if (alg == CRYPTO_KECCAK256 || alg == CRYPTO_KECCAK384 || alg == CRYPTO_KECCAK512) {
		struct crypto_keccak k;
		keccak_init(&k, hash_lens[alg]);
		for (size_t i = 0; i < n; i++)
			crypto_keccak256_update(&k, parts[i].data, parts[i].len);
		keccak_final(&k, out, hash_lens[alg]);
		return CRYPTO_OK;
	}

	const EVP_MD *md = evp_md(alg);
	if (!md)
		return CRYPTO_EINVAL;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return CRYPTO_ENOMEM;
	int ok = EVP_DigestInit_ex(ctx, md, NULL);
	for (size_t i = 0; ok && i < n; i++)
		ok = EVP_DigestUpdate(ctx, parts[i].data, parts[i].len);
	ok = ok && EVP_DigestFinal_ex(ctx, out, NULL);
	EVP_MD_CTX_free(ctx);
	return ok ? CRYPTO_OK : CRYPTO_EINTERNAL;
}

int crypto_hash(int alg, const void *data, size_t len, uint8_t *out)
{
	struct crypto_iov part = { data, len };
	return crypto_hashv(alg, &part, 1, out);
}

int crypto_sha256(const void *data, size_t len, uint8_t out[CRYPTO_SHA256_LEN])
{
	return crypto_hash(CRYPTO_SHA256, data, len, out);
}

int crypto_sha384(const void *data, size_t len, uint8_t out[CRYPTO_SHA384_LEN])
{
	return crypto_hash(CRYPTO_SHA384, data, len, out);
}

int crypto_sha512(const void *data, size_t len, uint8_t out[CRYPTO_SHA512_LEN])
{
	return crypto_hash(CRYPTO_SHA512, data, len, out);
}
