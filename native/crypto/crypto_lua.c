/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.crypto`: the primitives of crypto.h over Lua strings (raw bytes in,
 * raw bytes out), plus the dstack functions of crypto_lua_dstack.c and the password checks of
 * crypto_lua_password.c (bcrypt, optionally on the thread pool). Only lua/moonstack/
 * requires it; moonstack.crypto is the friendly layer.
 *
 *   local c = require('moonstack.native.crypto')
 *   c.sha256(s)  c.keccak256(s)  c.hkdf('sha256', ikm, salt, info, 42)
 *   local sig = c.k256_sign_recoverable(priv, digest32)   -- r||s||v
 *   local pub = c.k256_recover(digest32, sig)              -- 33-byte compressed
 *
 * Contract: wrong argument types raise (naming the function); bad lengths, invalid keys,
 * unrecoverable signatures, failed decryption return nil, "CODE: fn: message", CODE with CODE
 * one of EINVAL, EKEY, ESIG, EDECRYPT, ETIMESTAMP, ENOMEM, EINTERNAL. verify functions return
 * true or false (nil, msg, code only for malformed input). README.md has the full list.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "crypto/crypto_lua.h"
#include "rt_natives.h"

/* ---- shared helpers (crypto_lua.h) ---- */

int crypto_lua_argerror(lua_State *L, int idx, const char *expected)
{
	const char *fn = lua_tostring(L, lua_upvalueindex(1));
	return luaL_error(L, "%s: bad argument #%d (%s expected, got %s)", fn ? fn : "crypto", idx,
			  expected, luaL_typename(L, idx));
}

const uint8_t *crypto_lua_bytes(lua_State *L, int idx, size_t *len)
{
	if (lua_type(L, idx) != LUA_TSTRING) /* no number coercion: bytes are strings */
		crypto_lua_argerror(L, idx, "string");
	return (const uint8_t *)lua_tolstring(L, idx, len);
}

const char *crypto_lua_string(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TSTRING)
		crypto_lua_argerror(L, idx, "string");
	return lua_tostring(L, idx);
}

void crypto_lua_register(lua_State *L, const luaL_Reg *funcs)
{
	for (; funcs->name; funcs++) {
		lua_pushstring(L, funcs->name);
		lua_pushcclosure(L, funcs->func, 1);
		lua_setfield(L, -2, funcs->name);
	}
}

const uint8_t *crypto_lua_optbytes(lua_State *L, int idx, size_t *len)
{
	if (lua_isnoneornil(L, idx)) {
		*len = 0;
		return NULL;
	}
	return crypto_lua_bytes(L, idx, len);
}

int crypto_lua_bad_len(lua_State *L, const char *fn, const char *what, size_t want, size_t got)
{
	return rt_push_fail(L, "EINVAL", "%s: %s must be %zu bytes, got %zu", fn, what, want, got);
}

int crypto_lua_fail(lua_State *L, const char *fn, int rc)
{
	return rt_push_fail(L, crypto_err_code(rc), "%s: %s", fn, crypto_strerror(rc));
}

void crypto_lua_push_secret(lua_State *L, uint8_t *p, size_t len)
{
	lua_pushlstring(L, (const char *)p, len);
	crypto_wipe(p, len);
}

int crypto_lua_uint(lua_State *L, int idx, uint64_t *out)
{
	if (lua_type(L, idx) != LUA_TNUMBER)
		crypto_lua_argerror(L, idx, "number");
	lua_Number n = lua_tonumber(L, idx);
	if (!(n >= 0) || n > 9007199254740992.0 || floor(n) != n)
		return -1;
	*out = (uint64_t)n;
	return 0;
}

/* ---- hashes, MAC, KDF ---- */

static int hash_with(lua_State *L, int alg)
{
	size_t len;
	const uint8_t *data = crypto_lua_bytes(L, 1, &len);
	uint8_t out[CRYPTO_MAX_DIGEST_LEN];
	int rc = crypto_hash(alg, data, len, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, crypto_hash_alg_name(alg), rc);
	lua_pushlstring(L, (const char *)out, crypto_hash_len(alg));
	return 1;
}

static int l_sha256(lua_State *L)
{
	return hash_with(L, CRYPTO_SHA256);
}

static int l_sha384(lua_State *L)
{
	return hash_with(L, CRYPTO_SHA384);
}

static int l_sha512(lua_State *L)
{
	return hash_with(L, CRYPTO_SHA512);
}

static int l_keccak256(lua_State *L)
{
	return hash_with(L, CRYPTO_KECCAK256);
}

/* hash(alg, data) */
static int l_hash(lua_State *L)
{
	const char *name = crypto_lua_string(L, 1);
	int alg = crypto_hash_alg_parse(name);
	if (alg < 0)
		return rt_push_fail(L, "EINVAL", "hash: unknown algorithm '%s'", name);
	lua_remove(L, 1);
	return hash_with(L, alg);
}

/* Parse a SHA-2 name for HMAC/HKDF; -1 for anything else. */
static int sha2_arg(lua_State *L, int idx)
{
	int alg = crypto_hash_alg_parse(crypto_lua_string(L, idx));
	return alg >= CRYPTO_SHA256 && alg <= CRYPTO_SHA512 ? alg : -1;
}

/* hmac(alg, key, data) */
static int l_hmac(lua_State *L)
{
	size_t klen, dlen;
	int alg = sha2_arg(L, 1);
	const uint8_t *key = crypto_lua_bytes(L, 2, &klen);
	const uint8_t *data = crypto_lua_bytes(L, 3, &dlen);
	uint8_t out[CRYPTO_MAX_DIGEST_LEN];

	if (alg < 0)
		return rt_push_fail(L, "EINVAL",
				    "hmac: algorithm must be sha256, sha384 or sha512");
	int rc = crypto_hmac(alg, key, klen, data, dlen, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, "hmac", rc);
	crypto_lua_push_secret(L, out, crypto_hash_len(alg));
	return 1;
}

/* hkdf(alg, ikm, salt|nil, info|nil, length) */
static int l_hkdf(lua_State *L)
{
	size_t ikm_len, salt_len, info_len;
	uint64_t out_len;
	int alg = sha2_arg(L, 1);
	const uint8_t *ikm = crypto_lua_bytes(L, 2, &ikm_len);
	const uint8_t *salt = crypto_lua_optbytes(L, 3, &salt_len);
	const uint8_t *info = crypto_lua_optbytes(L, 4, &info_len);
	int bad = crypto_lua_uint(L, 5, &out_len);

	if (alg < 0)
		return rt_push_fail(L, "EINVAL",
				    "hkdf: algorithm must be sha256, sha384 or sha512");
	size_t max = CRYPTO_HKDF_MAX_BLOCKS * crypto_hash_len(alg);
	if (bad || out_len < 1 || out_len > max)
		return rt_push_fail(L, "EINVAL", "hkdf: length must be an integer in 1..%zu", max);
	if (info_len > CRYPTO_HKDF_MAX_INFO)
		return rt_push_fail(L, "EINVAL", "hkdf: info must be at most %d bytes, got %zu",
				    CRYPTO_HKDF_MAX_INFO, info_len);
	uint8_t *out = malloc(out_len);
	if (!out)
		return crypto_lua_fail(L, "hkdf", CRYPTO_ENOMEM);
	struct crypto_iov part = { info, info_len };
	int rc = crypto_hkdf(alg, ikm, ikm_len, salt, salt_len, &part, 1, out, out_len);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)out, out_len);
	crypto_wipe(out, out_len);
	free(out);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, "hkdf", rc);
}

/* random(n) */
static int l_random(lua_State *L)
{
	uint64_t n;
	if (crypto_lua_uint(L, 1, &n) || n > (1u << 20))
		return rt_push_fail(L, "EINVAL", "random: length must be an integer in 0..1048576");
	uint8_t *buf = malloc(n ? n : 1);
	if (!buf)
		return crypto_lua_fail(L, "random", CRYPTO_ENOMEM);
	int rc = crypto_random(buf, n);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)buf, n);
	crypto_wipe(buf, n);
	free(buf);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, "random", rc);
}

/* equal(a, b): constant time for equal lengths; different lengths are simply unequal */
static int l_equal(lua_State *L)
{
	size_t alen, blen;
	const uint8_t *a = crypto_lua_bytes(L, 1, &alen);
	const uint8_t *b = crypto_lua_bytes(L, 2, &blen);
	lua_pushboolean(L, alen == blen && crypto_equal(a, b, alen));
	return 1;
}

/* ---- ECDSA ---- */

typedef bool (*priv_valid_fn)(const uint8_t *);
typedef int (*pub_fn)(const uint8_t *, bool, uint8_t *);
typedef int (*convert_fn)(const uint8_t *, size_t, bool, uint8_t *);
typedef int (*sign_fn)(const uint8_t *, const uint8_t *, uint8_t *);
typedef int (*verify_fn)(const uint8_t *, size_t, const uint8_t *, const uint8_t *);

static int ec_generate(lua_State *L, const char *fn, int (*gen)(uint8_t *))
{
	uint8_t priv[CRYPTO_EC_PRIV_LEN];
	int rc = gen(priv);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, priv, sizeof(priv));
	return 1;
}

/* X_pubkey(priv, compressed = true) */
static int ec_pubkey(lua_State *L, const char *fn, pub_fn pubkey)
{
	NEED(priv, 1, CRYPTO_EC_PRIV_LEN, "private key");
	bool compressed = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
	uint8_t pub[CRYPTO_EC_PUB_UNCOMPRESSED];
	int rc = pubkey(priv, compressed, pub);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)pub,
			compressed ? CRYPTO_EC_PUB_COMPRESSED : CRYPTO_EC_PUB_UNCOMPRESSED);
	return 1;
}

/* X_convert(pub, compressed) */
static int ec_convert(lua_State *L, const char *fn, convert_fn convert)
{
	NEED_PUB(pub, 1);
	bool compressed = lua_toboolean(L, 2);
	uint8_t out[CRYPTO_EC_PUB_UNCOMPRESSED];
	int rc = convert(pub, pub_len, compressed, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)out,
			compressed ? CRYPTO_EC_PUB_COMPRESSED : CRYPTO_EC_PUB_UNCOMPRESSED);
	return 1;
}

/* X_sign(priv, digest32) */
static int ec_sign(lua_State *L, const char *fn, sign_fn sign, size_t sig_len)
{
	NEED(priv, 1, CRYPTO_EC_PRIV_LEN, "private key");
	NEED(digest, 2, 32, "digest");
	uint8_t sig[CRYPTO_ECDSA_RSIG_LEN];
	int rc = sign(priv, digest, sig);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)sig, sig_len);
	return 1;
}

/* X_verify(pub, digest32, sig64) -> boolean */
static int ec_verify(lua_State *L, const char *fn, verify_fn verify)
{
	NEED_PUB(pub, 1);
	NEED(digest, 2, 32, "digest");
	NEED(sig, 3, CRYPTO_ECDSA_SIG_LEN, "signature");
	int rc = verify(pub, pub_len, digest, sig);
	if (rc != CRYPTO_OK && rc != CRYPTO_EVERIFY)
		return crypto_lua_fail(L, fn, rc);
	lua_pushboolean(L, rc == CRYPTO_OK);
	return 1;
}

static int l_p256_generate(lua_State *L)
{
	return ec_generate(L, "p256_generate", crypto_p256_generate);
}

static int l_p256_pubkey(lua_State *L)
{
	return ec_pubkey(L, "p256_pubkey", crypto_p256_pubkey);
}

static int l_p256_convert(lua_State *L)
{
	return ec_convert(L, "p256_convert", crypto_p256_pub_convert);
}

static int l_p256_sign(lua_State *L)
{
	return ec_sign(L, "p256_sign", crypto_p256_sign, CRYPTO_ECDSA_SIG_LEN);
}

static int l_p256_verify(lua_State *L)
{
	return ec_verify(L, "p256_verify", crypto_p256_verify);
}

static int l_k256_generate(lua_State *L)
{
	return ec_generate(L, "k256_generate", crypto_k256_generate);
}

static int l_k256_pubkey(lua_State *L)
{
	return ec_pubkey(L, "k256_pubkey", crypto_k256_pubkey);
}

static int l_k256_convert(lua_State *L)
{
	return ec_convert(L, "k256_convert", crypto_k256_pub_convert);
}

static int l_k256_sign(lua_State *L)
{
	return ec_sign(L, "k256_sign", crypto_k256_sign, CRYPTO_ECDSA_SIG_LEN);
}

static int l_k256_sign_recoverable(lua_State *L)
{
	return ec_sign(L, "k256_sign_recoverable", crypto_k256_sign_recoverable,
		       CRYPTO_ECDSA_RSIG_LEN);
}

static int l_k256_verify(lua_State *L)
{
	return ec_verify(L, "k256_verify", crypto_k256_verify);
}

/* k256_recover(digest32, sig65, compressed = true) */
static int l_k256_recover(lua_State *L)
{
	const char *fn = "k256_recover";
	NEED(digest, 1, 32, "digest");
	NEED(sig, 2, CRYPTO_ECDSA_RSIG_LEN, "signature");
	bool compressed = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);
	uint8_t pub[CRYPTO_EC_PUB_UNCOMPRESSED];
	int rc = crypto_k256_recover(digest, sig, compressed, pub);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)pub,
			compressed ? CRYPTO_EC_PUB_COMPRESSED : CRYPTO_EC_PUB_UNCOMPRESSED);
	return 1;
}

/* ---- X25519, Ed25519 ---- */

static int l_x25519_pubkey(lua_State *L)
{
	const char *fn = "x25519_pubkey";
	NEED(priv, 1, CRYPTO_X25519_LEN, "private key");
	uint8_t pub[CRYPTO_X25519_LEN];
	int rc = crypto_x25519_pubkey(priv, pub);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)pub, sizeof(pub));
	return 1;
}

/* x25519(priv, peer_pub) -> shared secret */
static int l_x25519(lua_State *L)
{
	const char *fn = "x25519";
	NEED(priv, 1, CRYPTO_X25519_LEN, "private key");
	NEED(peer, 2, CRYPTO_X25519_LEN, "peer public key");
	uint8_t shared[CRYPTO_X25519_LEN];
	int rc = crypto_x25519(priv, peer, shared);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, shared, sizeof(shared));
	return 1;
}

static int l_ed25519_pubkey(lua_State *L)
{
	const char *fn = "ed25519_pubkey";
	NEED(seed, 1, CRYPTO_ED25519_SEED_LEN, "seed");
	uint8_t pub[CRYPTO_ED25519_PUB_LEN];
	int rc = crypto_ed25519_pubkey(seed, pub);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)pub, sizeof(pub));
	return 1;
}

/* ed25519_sign(seed, msg) */
static int l_ed25519_sign(lua_State *L)
{
	const char *fn = "ed25519_sign";
	size_t len;
	NEED(seed, 1, CRYPTO_ED25519_SEED_LEN, "seed");
	const uint8_t *msg = crypto_lua_bytes(L, 2, &len);
	uint8_t sig[CRYPTO_ED25519_SIG_LEN];
	int rc = crypto_ed25519_sign(seed, msg, len, sig);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)sig, sizeof(sig));
	return 1;
}

/* ed25519_verify(pub, msg, sig) -> boolean */
static int l_ed25519_verify(lua_State *L)
{
	const char *fn = "ed25519_verify";
	size_t len;
	NEED(pub, 1, CRYPTO_ED25519_PUB_LEN, "public key");
	const uint8_t *msg = crypto_lua_bytes(L, 2, &len);
	NEED(sig, 3, CRYPTO_ED25519_SIG_LEN, "signature");
	int rc = crypto_ed25519_verify(pub, msg, len, sig);
	if (rc != CRYPTO_OK && rc != CRYPTO_EVERIFY)
		return crypto_lua_fail(L, fn, rc);
	lua_pushboolean(L, rc == CRYPTO_OK);
	return 1;
}

/* ---- AES-256-GCM ---- */

/* aes256gcm_encrypt(key, iv, plaintext, aad) -> ciphertext || tag */
static int l_aes256gcm_encrypt(lua_State *L)
{
	const char *fn = "aes256gcm_encrypt";
	size_t len, aad_len;
	NEED(key, 1, CRYPTO_AES256_KEY_LEN, "key");
	NEED(iv, 2, CRYPTO_GCM_IV_LEN, "iv");
	const uint8_t *pt = crypto_lua_bytes(L, 3, &len);
	const uint8_t *aad = crypto_lua_optbytes(L, 4, &aad_len);
	uint8_t *out = malloc(len + CRYPTO_GCM_TAG_LEN);
	if (!out)
		return crypto_lua_fail(L, fn, CRYPTO_ENOMEM);
	int rc = crypto_aes256gcm_encrypt(key, iv, aad, aad_len, pt, len, out);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)out, len + CRYPTO_GCM_TAG_LEN);
	free(out);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, fn, rc);
}

/* aes256gcm_decrypt(key, iv, ciphertext || tag, aad) -> plaintext */
static int l_aes256gcm_decrypt(lua_State *L)
{
	const char *fn = "aes256gcm_decrypt";
	size_t len, aad_len;
	NEED(key, 1, CRYPTO_AES256_KEY_LEN, "key");
	NEED(iv, 2, CRYPTO_GCM_IV_LEN, "iv");
	const uint8_t *in = crypto_lua_bytes(L, 3, &len);
	const uint8_t *aad = crypto_lua_optbytes(L, 4, &aad_len);
	if (len < CRYPTO_GCM_TAG_LEN)
		return rt_push_fail(L, "EINVAL",
				    "%s: ciphertext must be at least %d bytes, got %zu", fn,
				    CRYPTO_GCM_TAG_LEN, len);
	size_t n = len - CRYPTO_GCM_TAG_LEN;
	uint8_t *out = malloc(n ? n : 1);
	if (!out)
		return crypto_lua_fail(L, fn, CRYPTO_ENOMEM);
	int rc = crypto_aes256gcm_decrypt(key, iv, aad, aad_len, in, len, out);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)out, n);
	crypto_wipe(out, n);
	free(out);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, fn, rc);
}

static const luaL_Reg crypto_funcs[] = {
	{ "sha256", l_sha256 },
	{ "sha384", l_sha384 },
	{ "sha512", l_sha512 },
	{ "keccak256", l_keccak256 },
	{ "hash", l_hash },
	{ "hmac", l_hmac },
	{ "hkdf", l_hkdf },
	{ "random", l_random },
	{ "equal", l_equal },
	{ "p256_generate", l_p256_generate },
	{ "p256_pubkey", l_p256_pubkey },
	{ "p256_convert", l_p256_convert },
	{ "p256_sign", l_p256_sign },
	{ "p256_verify", l_p256_verify },
	{ "k256_generate", l_k256_generate },
	{ "k256_pubkey", l_k256_pubkey },
	{ "k256_convert", l_k256_convert },
	{ "k256_sign", l_k256_sign },
	{ "k256_sign_recoverable", l_k256_sign_recoverable },
	{ "k256_recover", l_k256_recover },
	{ "k256_verify", l_k256_verify },
	{ "x25519_pubkey", l_x25519_pubkey },
	{ "x25519", l_x25519 },
	{ "ed25519_pubkey", l_ed25519_pubkey },
	{ "ed25519_sign", l_ed25519_sign },
	{ "ed25519_verify", l_ed25519_verify },
	{ "aes256gcm_encrypt", l_aes256gcm_encrypt },
	{ "aes256gcm_decrypt", l_aes256gcm_decrypt },
	{ NULL, NULL },
};

int luaopen_moonstack_native_crypto(lua_State *L)
{
	lua_newtable(L);
	crypto_lua_register(L, crypto_funcs);
	crypto_lua_register_dstack(L);
	crypto_lua_register_password(L);
	return 1;
}
