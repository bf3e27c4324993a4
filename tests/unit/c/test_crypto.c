/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the crypto primitives (native/crypto/crypto.h) against published vectors:
 * FIPS 180 SHA-2, Keccak-256, RFC 4231 HMAC, RFC 5869 HKDF, RFC 7748 X25519, RFC 8032
 * Ed25519, the GCM specification's AES-256 cases, RFC 6979 P-256, plus secp256k1 round trips,
 * low-S and recovery, and the error paths (bad lengths, bad keys, tampering).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "crypto_test_util.h"

static void test_sha2(void **state)
{
	uint8_t out[64];

	assert_int_equal(crypto_sha256("abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(crypto_sha256(NULL, 0, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_int_equal(crypto_sha384("abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 48,
			 "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
			 "8086072ba1e7cc2358baeca134c825a7");
	assert_int_equal(crypto_sha512("abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 64,
			 "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
			 "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");

	/* several parts hash like their concatenation */
	struct crypto_iov parts[] = { { "a", 1 }, { NULL, 0 }, { "bc", 2 } };
	assert_int_equal(crypto_hashv(CRYPTO_SHA256, parts, 3, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	assert_int_equal(crypto_hash(99, "abc", 3, out), CRYPTO_EINVAL);
	assert_int_equal(crypto_hash(CRYPTO_SHA256, NULL, 3, out), CRYPTO_EINVAL);
	assert_int_equal(crypto_hash_alg_parse("sha384"), CRYPTO_SHA384);
	assert_int_equal(crypto_hash_alg_parse("keccak256"), CRYPTO_KECCAK256);
	assert_int_equal(crypto_hash_alg_parse("sha3-256"), CRYPTO_SHA3_256);
	assert_int_equal(crypto_hash_alg_parse("sha3-999"), -1);
	assert_int_equal(crypto_hash_len(CRYPTO_KECCAK384), 48);
	assert_int_equal(crypto_hash_len(CRYPTO_HASH_COUNT), 0);
	assert_int_equal(crypto_hash_len(CRYPTO_SHA512), 64);
	assert_int_equal(crypto_hash_len(-1), 0);
	assert_string_equal(crypto_hash_alg_name(CRYPTO_KECCAK256), "keccak256");
}

static void test_sha3_keccak_wide(void **state)
{
	uint8_t out[64], data[200];

	(void)state;
	assert_int_equal(crypto_hash(CRYPTO_SHA3_256, "abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532");
	assert_int_equal(crypto_hash(CRYPTO_SHA3_384, "abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 48,
			 "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b2"
			 "98d88cea927ac7f539f1edf228376d25");
	assert_int_equal(crypto_hash(CRYPTO_SHA3_512, "abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 64,
			 "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e"
			 "10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0");
	assert_int_equal(crypto_hash(CRYPTO_KECCAK384, "", 0, out), CRYPTO_OK);
	assert_hex_equal(out, 48,
			 "2c23146a63a29acf99e73b88f8c24eaa7dc60aa771780ccc006afbfa8fe2479b"
			 "2dd2b21362337441ac12b515911957ff");
	assert_int_equal(crypto_hash(CRYPTO_KECCAK512, "", 0, out), CRYPTO_OK);
	assert_hex_equal(out, 64,
			 "0eab42de4c3ceb9235fc91acffe746b29c29a8c366b7c60e4e67c466f36a4304"
			 "c00fa9caf9d87976ba469bcbe06713b435f091ef2769fb160cdab33d3670680e");
	// 200 bytes: more than one block at both rates (104 and 72)
	memset(data, 'a', sizeof(data));
	assert_int_equal(crypto_hash(CRYPTO_KECCAK384, data, sizeof(data), out), CRYPTO_OK);
	assert_hex_equal(out, 48,
			 "d3b9da96736dcf2621947594a52f13b2ddd8547c4822ab7868c027e170f65b4b"
			 "ee133eed902c34f733227cbe5c947804");
	assert_int_equal(crypto_hash(CRYPTO_KECCAK512, data, sizeof(data), out), CRYPTO_OK);
	assert_hex_equal(out, 64,
			 "644ca4058aa3e4c5e5d045f65f073c75ad6d2a82c751f63f7b23793293a84b62"
			 "d4005a346ef6e708866f86644515cd46aae134437e6c6ef7da8da7d5878c37d6");
}

static void test_keccak256(void **state)
{
	uint8_t out[32], data[272];

	assert_int_equal(crypto_keccak256("", 0, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
	assert_int_equal(crypto_keccak256("abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");

	/* Around the 136-byte rate: padding in one byte (135), a full block (136), two blocks
	 * (200, 272). Expected values from @noble/hashes keccak_256 (an independent
	 * implementation), computed with Node when these tests were written. */
	memset(data, 0xa3, sizeof(data));
	assert_int_equal(crypto_keccak256(data, 135, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "3d28d08c3dacab77392064a939f3e7f8d03f2e02e2c664ac08a05f63ac652626");
	assert_int_equal(crypto_keccak256(data, 136, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "b82d89d96e5575d11a9e1f4cabb2a45e60899e69a19a724cd796bdcf13511018");
	assert_int_equal(crypto_keccak256(data, 200, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a");
	assert_int_equal(crypto_keccak256(data, 272, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "a657381e5615f539cac71f13c74473a5e77eaa2bd8348422dcac221c8f13da94");

	/* incremental updates in odd pieces give the same digest */
	struct crypto_keccak k;
	crypto_keccak256_init(&k);
	for (size_t off = 0, step = 1; off < 200; off += step, step = step * 2 + 1)
		crypto_keccak256_update(&k, data + off, off + step > 200 ? 200 - off : step);
	crypto_keccak256_final(&k, out);
	assert_hex_equal(out, 32,
			 "3a57666b048777f2c953dc4456f45a2588e1cb6f2da760122d530ac2ce607d4a");

	/* and through the generic interface */
	assert_int_equal(crypto_hash(CRYPTO_KECCAK256, "abc", 3, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
}

static void test_hmac(void **state)
{
	uint8_t out[64];

	/* RFC 4231 test case 2 */
	const char *data = "what do ya want for nothing?";
	assert_int_equal(crypto_hmac(CRYPTO_SHA256, "Jefe", 4, data, strlen(data), out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	assert_int_equal(crypto_hmac(CRYPTO_SHA512, "Jefe", 4, data, strlen(data), out), CRYPTO_OK);
	assert_hex_equal(out, 64,
			 "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
			 "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
	assert_int_equal(crypto_hmac(CRYPTO_KECCAK256, "k", 1, "d", 1, out), CRYPTO_EINVAL);
}

struct hkdf_case {
	const char *ikm, *salt, *info, *prk, *okm;
};

/* RFC 5869 appendix A, test cases 1-3 (SHA-256). */
static const struct hkdf_case hkdf_cases[] = {
	{ "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c",
	  "f0f1f2f3f4f5f6f7f8f9",
	  "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
	  "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865" },
	{ "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	  "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
	  "404142434445464748494a4b4c4d4e4f",
	  "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
	  "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
	  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
	  "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
	  "d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
	  "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
	  "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
	  "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
	  "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
	  "cc30c58179ec3e87c14c01d5c1f3434f1d87" },
	{ "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
	  "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
	  "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8" },
};

static void test_hkdf_rfc5869(void **state)
{
	for (size_t i = 0; i < sizeof(hkdf_cases) / sizeof(hkdf_cases[0]); i++) {
		const struct hkdf_case *c = &hkdf_cases[i];
		uint8_t ikm[80], salt[80], info[80], prk[32], okm[82], okm2[82];
		size_t ikm_len = unhex(c->ikm, ikm, sizeof(ikm));
		size_t salt_len = unhex(c->salt, salt, sizeof(salt));
		size_t info_len = unhex(c->info, info, sizeof(info));
		size_t okm_len = strlen(c->okm) / 2;

		assert_int_equal(
			crypto_hkdf_extract(CRYPTO_SHA256, ikm, ikm_len, salt, salt_len, prk),
			CRYPTO_OK);
		assert_hex_equal(prk, 32, c->prk);
		assert_int_equal(
			crypto_hkdf_expand(CRYPTO_SHA256, prk, 32, info, info_len, okm, okm_len),
			CRYPTO_OK);
		assert_hex_equal(okm, okm_len, c->okm);

		/* one-shot, with info split in two parts */
		struct crypto_iov parts[] = { { info, info_len / 2 },
					      { info + info_len / 2, info_len - info_len / 2 } };
		assert_int_equal(crypto_hkdf(CRYPTO_SHA256, ikm, ikm_len, salt, salt_len, parts, 2,
					     okm2, okm_len),
				 CRYPTO_OK);
		assert_hex_equal(okm2, okm_len, c->okm);
	}
}

static void test_hkdf_limits(void **state)
{
	static uint8_t out[255 * 32 + 1];
	uint8_t big_info[CRYPTO_HKDF_MAX_INFO + 1];
	memset(big_info, 'i', sizeof(big_info));

	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, "k", 1, NULL, 0, NULL, 0, out, 255 * 32),
			 CRYPTO_OK);
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, "k", 1, NULL, 0, NULL, 0, out, 255 * 32 + 1),
			 CRYPTO_EINVAL);
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, "k", 1, NULL, 0, NULL, 0, out, 0),
			 CRYPTO_EINVAL);
	assert_int_equal(crypto_hkdf(CRYPTO_KECCAK256, "k", 1, NULL, 0, NULL, 0, out, 32),
			 CRYPTO_EINVAL);
	/* empty input keying material is allowed (HMAC with an empty key) */
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, NULL, 0, NULL, 0, NULL, 0, out, 32), CRYPTO_OK);

	struct crypto_iov ok = { big_info, CRYPTO_HKDF_MAX_INFO };
	struct crypto_iov too_big = { big_info, CRYPTO_HKDF_MAX_INFO + 1 };
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, "k", 1, NULL, 0, &ok, 1, out, 32), CRYPTO_OK);
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, "k", 1, NULL, 0, &too_big, 1, out, 32),
			 CRYPTO_EINVAL);

	/* SHA-384 and SHA-512 work too, and give different output than SHA-256 */
	uint8_t a[32], b[32];
	assert_int_equal(crypto_hkdf(CRYPTO_SHA384, "k", 1, NULL, 0, NULL, 0, a, 32), CRYPTO_OK);
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, "k", 1, NULL, 0, NULL, 0, b, 32), CRYPTO_OK);
	assert_false(crypto_equal(a, b, 32));
}

static void test_x25519_rfc7748(void **state)
{
	uint8_t k[32], u[32], out[32];

	/* §5.2 */
	unhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4", k, 32);
	unhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c", u, 32);
	assert_int_equal(crypto_x25519(k, u, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
	unhex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d", k, 32);
	unhex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493", u, 32);
	assert_int_equal(crypto_x25519(k, u, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957");

	/* §5.2 iterations: k = u = 9; k' = X25519(k, u), u' = k */
	memset(k, 0, 32);
	k[0] = 9;
	memcpy(u, k, 32);
	for (int i = 1; i <= 1000; i++) {
		assert_int_equal(crypto_x25519(k, u, out), CRYPTO_OK);
		memcpy(u, k, 32);
		memcpy(k, out, 32);
		if (i == 1)
			assert_hex_equal(
				k, 32,
				"422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079");
	}
	assert_hex_equal(k, 32, "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51");
}

static void test_x25519_dh_rfc7748(void **state)
{
	uint8_t a[32], b[32], apub[32], bpub[32], s1[32], s2[32];

	/* §6.1 */
	unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", a, 32);
	unhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", b, 32);
	assert_int_equal(crypto_x25519_pubkey(a, apub), CRYPTO_OK);
	assert_hex_equal(apub, 32,
			 "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
	assert_int_equal(crypto_x25519_pubkey(b, bpub), CRYPTO_OK);
	assert_hex_equal(bpub, 32,
			 "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
	assert_int_equal(crypto_x25519(a, bpub, s1), CRYPTO_OK);
	assert_int_equal(crypto_x25519(b, apub, s2), CRYPTO_OK);
	assert_hex_equal(s1, 32,
			 "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
	assert_memory_equal(s1, s2, 32);

	/* a low-order peer (u = 0) gives an all-zero secret: refused */
	uint8_t zero[32] = { 0 };
	memset(s1, 0x55, 32);
	assert_int_equal(crypto_x25519(a, zero, s1), CRYPTO_EKEY);
	assert_memory_equal(s1, zero, 32); /* wiped */
	assert_int_equal(ERR_peek_error(), 0);
}

static void test_ed25519_rfc8032(void **state)
{
	uint8_t seed[32], pub[32], sig[64];

	/* RFC 8032 §7.1 TEST 1 (empty message) */
	unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", seed, 32);
	assert_int_equal(crypto_ed25519_pubkey(seed, pub), CRYPTO_OK);
	assert_hex_equal(pub, 32,
			 "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
	assert_int_equal(crypto_ed25519_sign(seed, NULL, 0, sig), CRYPTO_OK);
	assert_hex_equal(sig, 64,
			 "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
			 "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
	assert_int_equal(crypto_ed25519_verify(pub, "", 0, sig), CRYPTO_OK);
	assert_int_equal(crypto_ed25519_verify(pub, "x", 1, sig), CRYPTO_EVERIFY);
	sig[0] ^= 1;
	assert_int_equal(crypto_ed25519_verify(pub, "", 0, sig), CRYPTO_EVERIFY);
}

static void test_aes256gcm(void **state)
{
	uint8_t key[32], iv[12], pt[64], aad[20], out[80], back[64];

	/* "The Galois/Counter Mode of Operation" (McGrew, Viega), test case 16 */
	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key, 32);
	unhex("cafebabefacedbaddecaf888", iv, 12);
	size_t n = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
			 "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
			 pt, sizeof(pt));
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad, 20);
	assert_int_equal(crypto_aes256gcm_encrypt(key, iv, aad, 20, pt, n, out), CRYPTO_OK);
	assert_hex_equal(out, n,
			 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
			 "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662");
	assert_hex_equal(out + n, 16, "76fc6ece0f4e1768cddf8853bb2d551b");
	assert_int_equal(crypto_aes256gcm_decrypt(key, iv, aad, 20, out, n + 16, back), CRYPTO_OK);
	assert_memory_equal(back, pt, n);

	/* tampering with the AAD, the ciphertext or the tag fails and wipes the output */
	aad[0] ^= 1;
	assert_int_equal(crypto_aes256gcm_decrypt(key, iv, aad, 20, out, n + 16, back),
			 CRYPTO_EDECRYPT);
	aad[0] ^= 1;
	out[n + 15] ^= 1;
	assert_int_equal(crypto_aes256gcm_decrypt(key, iv, aad, 20, out, n + 16, back),
			 CRYPTO_EDECRYPT);
	uint8_t zero[64] = { 0 };
	assert_memory_equal(back, zero, n);
	assert_int_equal(crypto_aes256gcm_decrypt(key, iv, NULL, 0, out, 15, back), CRYPTO_EINVAL);
	assert_int_equal(ERR_peek_error(), 0);

	/* test cases 13 and 14: zero key and IV, empty and one zero block */
	memset(key, 0, 32);
	memset(iv, 0, 12);
	memset(pt, 0, 16);
	assert_int_equal(crypto_aes256gcm_encrypt(key, iv, NULL, 0, NULL, 0, out), CRYPTO_OK);
	assert_hex_equal(out, 16, "530f8afbc74536b9a963b4f1c4cb738b");
	assert_int_equal(crypto_aes256gcm_encrypt(key, iv, NULL, 0, pt, 16, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
}

/* secp256k1 group order n and n/2, big-endian. */
static const char K256_N[] = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
static const char K256_HALF_N[] = "7fffffffffffffffffffffffffffffff5d576e73"
				  "57a4501ddfe92f46681b20a0";

/* a - b for 32-byte big-endian numbers (a >= b). */
static void sub256(const uint8_t *a, const uint8_t *b, uint8_t *out)
{
	int borrow = 0;
	for (int i = 31; i >= 0; i--) {
		int d = a[i] - b[i] - borrow;
		borrow = d < 0;
		out[i] = (uint8_t)(d + (borrow ? 256 : 0));
	}
}

static void test_k256(void **state)
{
	uint8_t priv[32], pub[33], pub65[65], conv[65], rec[65], digest[32], sig[65], sig64[64];
	uint8_t n[32], half[32], hi[64];
	unhex(K256_N, n, 32);
	unhex(K256_HALF_N, half, 32);

	/* a known key: d = 1 gives the generator G */
	memset(priv, 0, 32);
	priv[31] = 1;
	assert_int_equal(crypto_k256_pubkey(priv, true, pub), CRYPTO_OK);
	assert_hex_equal(pub, 33,
			 "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798");

	/* range checks: 0 and n are invalid, n-1 is valid */
	memset(priv, 0, 32);
	assert_false(crypto_k256_priv_valid(priv));
	assert_int_equal(crypto_k256_pubkey(priv, true, pub), CRYPTO_EKEY);
	assert_false(crypto_k256_priv_valid(n));
	memcpy(priv, n, 32);
	priv[31] -= 1;
	assert_true(crypto_k256_priv_valid(priv));

	for (int round = 0; round < 16; round++) {
		assert_int_equal(crypto_k256_generate(priv), CRYPTO_OK);
		assert_int_equal(crypto_random(digest, 32), CRYPTO_OK);
		assert_int_equal(crypto_k256_pubkey(priv, true, pub), CRYPTO_OK);
		assert_int_equal(crypto_k256_pubkey(priv, false, pub65), CRYPTO_OK);
		assert_int_equal(crypto_k256_pub_convert(pub65, 65, true, conv), CRYPTO_OK);
		assert_memory_equal(conv, pub, 33);
		assert_int_equal(crypto_k256_pub_convert(pub, 33, false, conv), CRYPTO_OK);
		assert_memory_equal(conv, pub65, 65);

		/* recoverable: deterministic, low-S, v in {0,1}, recovers the signer */
		assert_int_equal(crypto_k256_sign_recoverable(priv, digest, sig), CRYPTO_OK);
		assert_true(sig[64] <= 1);
		assert_true(memcmp(sig + 32, half, 32) <= 0);
		uint8_t again[65];
		assert_int_equal(crypto_k256_sign_recoverable(priv, digest, again), CRYPTO_OK);
		assert_memory_equal(again, sig, 65);
		assert_int_equal(crypto_k256_recover(digest, sig, true, rec), CRYPTO_OK);
		assert_memory_equal(rec, pub, 33);
		assert_int_equal(crypto_k256_recover(digest, sig, false, rec), CRYPTO_OK);
		assert_memory_equal(rec, pub65, 65);

		/* Ethereum-style v = 27/28 recovers the same key */
		sig[64] += 27;
		assert_int_equal(crypto_k256_recover(digest, sig, true, rec), CRYPTO_OK);
		assert_memory_equal(rec, pub, 33);
		sig[64] -= 27;

		/* a different digest recovers a different key */
		digest[0] ^= 1;
		assert_int_equal(crypto_k256_recover(digest, sig, true, rec), CRYPTO_OK);
		assert_memory_not_equal(rec, pub, 33);
		digest[0] ^= 1;

		/* plain r||s verifies with either encoding of the key, and matches r||s above */
		assert_int_equal(crypto_k256_sign(priv, digest, sig64), CRYPTO_OK);
		assert_memory_equal(sig64, sig, 64);
		assert_int_equal(crypto_k256_verify(pub, 33, digest, sig64), CRYPTO_OK);
		assert_int_equal(crypto_k256_verify(pub65, 65, digest, sig64), CRYPTO_OK);
		digest[31] ^= 0x80;
		assert_int_equal(crypto_k256_verify(pub, 33, digest, sig64), CRYPTO_EVERIFY);
		digest[31] ^= 0x80;

		/* the high-S twin (r, n - s) is the same signature mathematically but refused */
		memcpy(hi, sig64, 32);
		sub256(n, sig64 + 32, hi + 32);
		assert_int_equal(crypto_k256_verify(pub, 33, digest, hi), CRYPTO_EVERIFY);
	}

	/* malformed inputs */
	memset(sig, 0, sizeof(sig));
	assert_int_equal(crypto_k256_recover(digest, sig, true, rec), CRYPTO_ESIG);
	sig[0] = sig[32] = 1;
	sig[64] = 4;
	assert_int_equal(crypto_k256_recover(digest, sig, true, rec), CRYPTO_ESIG);
	memset(sig, 0xff, 64); /* r, s >= n */
	sig[64] = 0;
	assert_int_equal(crypto_k256_recover(digest, sig, true, rec), CRYPTO_ESIG);
	assert_int_equal(crypto_k256_verify(pub, 32, digest, sig64), CRYPTO_EINVAL);
	memset(conv, 0, sizeof(conv));
	conv[0] = 0x02; /* x = 0 is not on the curve */
	assert_int_equal(crypto_k256_verify(conv, 33, digest, sig64), CRYPTO_EKEY);
	assert_int_equal(crypto_k256_pub_convert(conv, 33, true, rec), CRYPTO_EKEY);
}

static void test_p256(void **state)
{
	uint8_t priv[32], pub[65], pub33[33], conv[65], digest[32], sig[64];

	/* RFC 6979 A.2.5: the key, and its deterministic signature of "sample" with SHA-256 */
	unhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721", priv, 32);
	assert_int_equal(crypto_p256_pubkey(priv, false, pub), CRYPTO_OK);
	assert_hex_equal(pub, 65,
			 "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6"
			 "7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299");
	assert_int_equal(crypto_p256_pubkey(priv, true, pub33), CRYPTO_OK);
	assert_hex_equal(pub33, 33,
			 "0360fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6");
	assert_int_equal(crypto_p256_pub_convert(pub33, 33, false, conv), CRYPTO_OK);
	assert_memory_equal(conv, pub, 65);

	crypto_sha256("sample", 6, digest);
	unhex("efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716"
	      "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
	      sig, 64);
	assert_int_equal(crypto_p256_verify(pub, 65, digest, sig), CRYPTO_OK);
	assert_int_equal(crypto_p256_verify(pub33, 33, digest, sig), CRYPTO_OK);
	sig[10] ^= 4;
	assert_int_equal(crypto_p256_verify(pub, 65, digest, sig), CRYPTO_EVERIFY);

	/* sign (random nonce) then verify, and the signature does not verify another digest */
	assert_int_equal(crypto_p256_sign(priv, digest, sig), CRYPTO_OK);
	assert_int_equal(crypto_p256_verify(pub, 65, digest, sig), CRYPTO_OK);
	digest[0] ^= 1;
	assert_int_equal(crypto_p256_verify(pub, 65, digest, sig), CRYPTO_EVERIFY);

	/* a fresh key round trip */
	assert_int_equal(crypto_p256_generate(priv), CRYPTO_OK);
	assert_int_equal(crypto_p256_pubkey(priv, true, pub33), CRYPTO_OK);
	assert_int_equal(crypto_p256_sign(priv, digest, sig), CRYPTO_OK);
	assert_int_equal(crypto_p256_verify(pub33, 33, digest, sig), CRYPTO_OK);

	/* scalar range: 0 and n are refused, n - 1 accepted */
	uint8_t n[32];
	unhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", n, 32);
	assert_false(crypto_p256_priv_valid(n));
	assert_int_equal(crypto_p256_pubkey(n, true, pub33), CRYPTO_EKEY);
	assert_int_equal(crypto_p256_sign(n, digest, sig), CRYPTO_EKEY);
	n[31] -= 1;
	assert_true(crypto_p256_priv_valid(n));
	memset(priv, 0, 32);
	assert_false(crypto_p256_priv_valid(priv));

	/* malformed public keys and zero signatures */
	assert_int_equal(crypto_p256_verify(pub, 64, digest, sig), CRYPTO_EINVAL);
	memset(conv, 0, sizeof(conv));
	conv[0] = 0x04;
	assert_int_equal(crypto_p256_verify(conv, 65, digest, sig), CRYPTO_EKEY);
	memset(sig, 0, sizeof(sig));
	assert_int_equal(crypto_p256_verify(pub33, 33, digest, sig), CRYPTO_EVERIFY);

	/* an EVP_PKEY from the raw point: the same public key back; off-curve and non-0x04 refused
	 */
	EVP_PKEY *key = crypto_p256_public_key(pub);
	assert_non_null(key);
	uint8_t back[65];
	size_t back_len = 0;
	assert_int_equal(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, back,
							 sizeof(back), &back_len),
			 1);
	assert_int_equal(back_len, 65);
	assert_memory_equal(back, pub, 65);
	EVP_PKEY_free(key);
	assert_null(crypto_p256_public_key(conv)); /* 0x04 || zeros: not on the curve */
	memcpy(conv, pub, 65);
	conv[64] ^= 1;
	assert_null(crypto_p256_public_key(conv));
	conv[64] ^= 1;
	conv[0] = 0x03;
	assert_null(crypto_p256_public_key(conv));
	/* failures leave nothing on OpenSSL's error queue (the TLS layer reads it) */
	assert_int_equal(ERR_peek_error(), 0);
}

/* bcrypt: the classic $2a$ vector (Openwall's crypt_blowfish tests), refusals */
static void test_bcrypt(void **state)
{
	(void)state;
	const char *h = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
	assert_true(crypto_bcrypt_hash_valid(h));
	assert_int_equal(crypto_bcrypt_check("U*U", 3, h), CRYPTO_OK);
	assert_int_equal(crypto_bcrypt_check("U*V", 3, h), CRYPTO_EVERIFY);
	assert_int_equal(crypto_bcrypt_check("U*U\0x", 5, h), CRYPTO_EVERIFY); /* embedded NUL */
	char long_pw[80];
	memset(long_pw, 'a', sizeof(long_pw));
	assert_int_equal(crypto_bcrypt_check(long_pw, 73, h), CRYPTO_EVERIFY);
	/* not bcrypt: MD5-crypt, SHA-512-crypt, a cost out of range, a short hash */
	assert_int_equal(crypto_bcrypt_check("x", 1, "$1$salt$qJH7.N4xYta3aEG/dfqo/0"),
			 CRYPTO_EINVAL);
	assert_int_equal(crypto_bcrypt_check("x", 1, "$6$salt$abc"), CRYPTO_EINVAL);
	assert_false(crypto_bcrypt_hash_valid(
		"$2a$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"));
	assert_false(crypto_bcrypt_hash_valid("$2a$05$short"));
	assert_false(crypto_bcrypt_hash_valid(NULL));
}

static void test_util(void **state)
{
	uint8_t a[64] = { 0 }, b[64] = { 0 };

	assert_true(crypto_equal(a, b, 64));
	b[63] = 1;
	assert_false(crypto_equal(a, b, 64));
	assert_true(crypto_equal(a, b, 63));
	assert_true(crypto_equal(NULL, NULL, 0));

	assert_int_equal(crypto_random(a, sizeof(a)), CRYPTO_OK);
	assert_int_equal(crypto_random(b, sizeof(b)), CRYPTO_OK);
	assert_false(crypto_equal(a, b, 64));
	crypto_wipe(a, sizeof(a));
	memset(b, 0, sizeof(b));
	assert_memory_equal(a, b, 64);

	assert_string_equal(crypto_err_code(CRYPTO_EDECRYPT), "EDECRYPT");
	assert_string_equal(crypto_err_code(CRYPTO_ETIMESTAMP), "ETIMESTAMP");
	assert_string_equal(crypto_err_code(12345), "EINTERNAL");
	assert_string_equal(crypto_strerror(CRYPTO_EKEY), "invalid key");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha2),
		cmocka_unit_test(test_keccak256),
		cmocka_unit_test(test_sha3_keccak_wide),
		cmocka_unit_test(test_hmac),
		cmocka_unit_test(test_hkdf_rfc5869),
		cmocka_unit_test(test_hkdf_limits),
		cmocka_unit_test(test_x25519_rfc7748),
		cmocka_unit_test(test_x25519_dh_rfc7748),
		cmocka_unit_test(test_ed25519_rfc8032),
		cmocka_unit_test(test_aes256gcm),
		cmocka_unit_test(test_k256),
		cmocka_unit_test(test_p256),
		cmocka_unit_test(test_bcrypt),
		cmocka_unit_test(test_util),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
