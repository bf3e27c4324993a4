/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The dstack_* functions of `moonstack.native.crypto` (dstack.h over Lua strings). Same
 * contract as crypto_lua.c: wrong types raise; bad lengths, invalid keys, unrecoverable
 * signatures, stale timestamps and failed decryption return nil, "CODE: fn: message", CODE.
 */
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto_lua.h"
#include "crypto/dstack.h"

#define APP_ID_WHAT "app_id"

/* Context argument @p idx: a string (the concatenated info). */
static int info_arg(lua_State *L, const char *fn, int idx, struct crypto_iov *iov)
{
	iov->data = crypto_lua_bytes(L, idx, &iov->len);
	if (iov->len > CRYPTO_HKDF_MAX_INFO) {
		rt_push_fail(L, "EINVAL", "%s: context must be at most %d bytes, got %zu", fn,
			     CRYPTO_HKDF_MAX_INFO, iov->len);
		return -1;
	}
	return 0;
}

/* dstack_derive_key(ikm, info, length) */
static int l_derive_key(lua_State *L)
{
	const char *fn = "dstack_derive_key";
	size_t ikm_len;
	uint64_t len;
	struct crypto_iov info;
	const uint8_t *ikm = crypto_lua_bytes(L, 1, &ikm_len);
	if (info_arg(L, fn, 2, &info))
		return 3;
	if (crypto_lua_uint(L, 3, &len) || len < 1 || len > CRYPTO_HKDF_MAX_BLOCKS * 32)
		return rt_push_fail(L, "EINVAL", "%s: length must be an integer in 1..%d", fn,
				    CRYPTO_HKDF_MAX_BLOCKS * 32);
	uint8_t *out = malloc(len);
	if (!out)
		return crypto_lua_fail(L, fn, CRYPTO_ENOMEM);
	int rc = dstack_derive_key(ikm, ikm_len, &info, 1, out, len);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)out, len);
	crypto_wipe(out, len);
	free(out);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, fn, rc);
}

/* dstack_derive_p256(ikm, info) / dstack_derive_dh_secret(ikm, info) */
static int derive32(lua_State *L, const char *fn,
		    int (*derive)(const void *, size_t, const struct crypto_iov *, size_t,
				  uint8_t *))
{
	size_t ikm_len;
	struct crypto_iov info;
	uint8_t out[32];
	const uint8_t *ikm = crypto_lua_bytes(L, 1, &ikm_len);
	if (info_arg(L, fn, 2, &info))
		return 3;
	int rc = derive(ikm, ikm_len, &info, 1, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, out, sizeof(out));
	return 1;
}

static int l_derive_p256(lua_State *L)
{
	return derive32(L, "dstack_derive_p256", dstack_derive_p256);
}

static int l_derive_dh_secret(lua_State *L)
{
	return derive32(L, "dstack_derive_dh_secret", dstack_derive_dh_secret);
}

/* dstack_p256_pkcs8(scalar) -> 138-byte DER */
static int l_p256_pkcs8(lua_State *L)
{
	const char *fn = "dstack_p256_pkcs8";
	NEED(scalar, 1, CRYPTO_EC_PRIV_LEN, "private key");
	uint8_t der[DSTACK_P256_PKCS8_LEN];
	int rc = dstack_p256_pkcs8(scalar, der);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, der, sizeof(der));
	return 1;
}

/* dstack_kms_app_ca_key(root, app_id) */
static int l_kms_app_ca_key(lua_State *L)
{
	const char *fn = "dstack_kms_app_ca_key";
	NEED(root, 1, CRYPTO_EC_PRIV_LEN, "root key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	uint8_t out[32];
	int rc = dstack_kms_app_ca_key(root, app_id, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, out, sizeof(out));
	return 1;
}

/* dstack_kms_disk_key(root, app_id, instance_id or nil/"") */
static int l_kms_disk_key(lua_State *L)
{
	const char *fn = "dstack_kms_disk_key";
	size_t inst_len;
	NEED(root, 1, CRYPTO_EC_PRIV_LEN, "root key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	const uint8_t *inst = crypto_lua_optbytes(L, 3, &inst_len);
	if (inst_len != 0 && inst_len != DSTACK_INSTANCE_ID_LEN)
		return rt_push_fail(L, "EINVAL",
				    "%s: instance_id must be 20 bytes or empty, got %zu", fn,
				    inst_len);
	uint8_t out[32];
	int rc = dstack_kms_disk_key(root, app_id, inst, inst_len, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, out, sizeof(out));
	return 1;
}

/* dstack_kms_env_key(root, app_id) -> secret, X25519 public key */
static int l_kms_env_key(lua_State *L)
{
	const char *fn = "dstack_kms_env_key";
	NEED(root, 1, CRYPTO_EC_PRIV_LEN, "root key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	uint8_t secret[32], pub[32];
	int rc = dstack_kms_env_key(root, app_id, secret, pub);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, secret, sizeof(secret));
	lua_pushlstring(L, (const char *)pub, sizeof(pub));
	return 2;
}

/* dstack_kms_app_k256(root_k256, app_id) -> key, compressed pub, k256_signature */
static int l_kms_app_k256(lua_State *L)
{
	const char *fn = "dstack_kms_app_k256";
	NEED(root, 1, CRYPTO_EC_PRIV_LEN, "root key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	uint8_t key[32], pub[33], sig[65];
	int rc = dstack_kms_app_k256(root, app_id, key, pub, sig);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, key, sizeof(key));
	lua_pushlstring(L, (const char *)pub, sizeof(pub));
	lua_pushlstring(L, (const char *)sig, sizeof(sig));
	return 3;
}

/* dstack_local_app_keys(seed) -> ca_key, disk_key, k256_key */
static int l_local_app_keys(lua_State *L)
{
	const char *fn = "dstack_local_app_keys";
	NEED(seed, 1, 32, "seed");
	uint8_t ca[32], disk[32], k256[32];
	int rc = dstack_local_app_keys(seed, ca, disk, k256);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	crypto_lua_push_secret(L, ca, 32);
	crypto_lua_push_secret(L, disk, 32);
	crypto_lua_push_secret(L, k256, 32);
	return 3;
}

/* dstack_get_key(app_k256, path, purpose, algorithm) -> key, pub, signature_chain[0] */
static int l_get_key(lua_State *L)
{
	const char *fn = "dstack_get_key";
	size_t path_len, purpose_len;
	NEED(app_key, 1, 32, "app k256 key");
	const uint8_t *path = crypto_lua_bytes(L, 2, &path_len);
	const uint8_t *purpose = crypto_lua_bytes(L, 3, &purpose_len);
	const char *alg_name = lua_isnoneornil(L, 4) ? "" : crypto_lua_string(L, 4);
	int alg = dstack_key_alg_parse(alg_name);
	if (alg < 0)
		return rt_push_fail(L, "EINVAL", "%s: unsupported algorithm '%s'", fn, alg_name);
	if (path_len > CRYPTO_HKDF_MAX_INFO)
		return rt_push_fail(L, "EINVAL", "%s: path must be at most %d bytes", fn,
				    CRYPTO_HKDF_MAX_INFO);
	struct dstack_key k;
	int rc = dstack_get_key(app_key, path, path_len, purpose, purpose_len, alg, &k);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)k.key, sizeof(k.key));
	lua_pushlstring(L, (const char *)k.pub, k.pub_len);
	lua_pushlstring(L, (const char *)k.chain0, sizeof(k.chain0));
	crypto_wipe(&k, sizeof(k));
	return 3;
}

static int sign_alg_arg(lua_State *L, const char *fn, int idx, int *alg)
{
	const char *name = crypto_lua_string(L, idx);
	*alg = dstack_sign_alg_parse(name);
	if (*alg < 0) {
		rt_push_fail(L, "EINVAL", "%s: unsupported algorithm '%s'", fn, name);
		return -1;
	}
	return 0;
}

/* dstack_sign(app_k256, algorithm, data) -> signature, public key, chain0 */
static int l_sign(lua_State *L)
{
	const char *fn = "dstack_sign";
	size_t len;
	int alg;
	NEED(app_key, 1, 32, "app k256 key");
	if (sign_alg_arg(L, fn, 2, &alg))
		return 3;
	const uint8_t *data = crypto_lua_bytes(L, 3, &len);
	if (alg == DSTACK_SIGN_SECP256K1_PREHASHED && len != 32)
		return rt_push_fail(L, "EINVAL",
				    "%s: secp256k1_prehashed requires a 32-byte digest, got %zu",
				    fn, len);
	struct dstack_signature s;
	int rc = dstack_sign(app_key, alg, data, len, &s);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)s.sig, sizeof(s.sig));
	lua_pushlstring(L, (const char *)s.pub, s.pub_len);
	lua_pushlstring(L, (const char *)s.chain0, sizeof(s.chain0));
	return 3;
}

/* dstack_verify(algorithm, data, signature, public_key) -> boolean */
static int l_verify(lua_State *L)
{
	const char *fn = "dstack_verify";
	size_t len, sig_len, pub_len;
	int alg;
	if (sign_alg_arg(L, fn, 1, &alg))
		return 3;
	const uint8_t *data = crypto_lua_bytes(L, 2, &len);
	const uint8_t *sig = crypto_lua_bytes(L, 3, &sig_len);
	const uint8_t *pub = crypto_lua_bytes(L, 4, &pub_len);
	int rc = dstack_verify(alg, data, len, sig, sig_len, pub, pub_len);
	if (rc == CRYPTO_EINVAL)
		return rt_push_fail(L, "EINVAL",
				    "%s: bad lengths (signature %zu, public key %zu, data %zu)", fn,
				    sig_len, pub_len, len);
	if (rc != CRYPTO_OK && rc != CRYPTO_EVERIFY)
		return crypto_lua_fail(L, fn, rc);
	lua_pushboolean(L, rc == CRYPTO_OK);
	return 1;
}

/* dstack_verify_key_chain(pub, purpose, chain0, app_id, chain1) -> app_pub, kms_pub */
static int l_verify_key_chain(lua_State *L)
{
	const char *fn = "dstack_verify_key_chain";
	size_t pub_len, purpose_len;
	const uint8_t *pub = crypto_lua_bytes(L, 1, &pub_len);
	const uint8_t *purpose = crypto_lua_bytes(L, 2, &purpose_len);
	NEED(chain0, 3, CRYPTO_ECDSA_RSIG_LEN, "signature_chain[1]");
	NEED(app_id, 4, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	NEED(chain1, 5, CRYPTO_ECDSA_RSIG_LEN, "signature_chain[2]");
	if (pub_len != CRYPTO_EC_PUB_COMPRESSED && pub_len != CRYPTO_ED25519_PUB_LEN)
		return rt_push_fail(L, "EINVAL", "%s: public key must be 33 or 32 bytes, got %zu",
				    fn, pub_len);
	uint8_t app[33], kms[33];
	int rc = dstack_verify_key_chain(pub, pub_len, purpose, purpose_len, chain0, app_id, chain1,
					 app, kms);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)app, sizeof(app));
	lua_pushlstring(L, (const char *)kms, sizeof(kms));
	return 2;
}

/* dstack_kms_issued_sign(root_k256, app_id, app_pub33) -> signature */
static int l_kms_issued_sign(lua_State *L)
{
	const char *fn = "dstack_kms_issued_sign";
	NEED(root, 1, 32, "root key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	NEED(app_pub, 3, CRYPTO_EC_PUB_COMPRESSED, "app public key");
	uint8_t sig[65];
	int rc = dstack_kms_issued_sign(root, app_id, app_pub, sig);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)sig, sizeof(sig));
	return 1;
}

/* dstack_kms_issued_recover(app_id, app_pub33, signature) -> KMS root public key */
static int l_kms_issued_recover(lua_State *L)
{
	const char *fn = "dstack_kms_issued_recover";
	NEED(app_id, 1, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	NEED(app_pub, 2, CRYPTO_EC_PUB_COMPRESSED, "app public key");
	NEED(sig, 3, CRYPTO_ECDSA_RSIG_LEN, "signature");
	uint8_t kms[33];
	int rc = dstack_kms_issued_recover(app_id, app_pub, sig, kms);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)kms, sizeof(kms));
	return 1;
}

/* dstack_env_pubkey_sign(root_k256, app_id, pub32, timestamp or nil) -> signature */
static int l_env_pubkey_sign(lua_State *L)
{
	const char *fn = "dstack_env_pubkey_sign";
	uint64_t ts = 0;
	NEED(root, 1, 32, "root key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	NEED(pub, 3, CRYPTO_X25519_LEN, "public key");
	bool with_ts = !lua_isnoneornil(L, 4);
	if (with_ts && crypto_lua_uint(L, 4, &ts))
		return rt_push_fail(L, "EINVAL", "%s: timestamp must be a non-negative integer",
				    fn);
	uint8_t sig[65];
	int rc = dstack_env_pubkey_sign(root, app_id, pub, with_ts, ts, sig);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)sig, sizeof(sig));
	return 1;
}

/*
 * dstack_env_pubkey_recover(pub32, app_id, signature, timestamp or nil, now, max_age)
 * -> signer (33-byte compressed). With a timestamp, now (seconds) is required and max_age
 * defaults to 300.
 */
static int l_env_pubkey_recover(lua_State *L)
{
	const char *fn = "dstack_env_pubkey_recover";
	size_t sig_len;
	uint64_t ts = 0, now = 0, max_age = DSTACK_ENV_SIG_MAX_AGE;
	NEED(pub, 1, CRYPTO_X25519_LEN, "public key");
	NEED(app_id, 2, DSTACK_APP_ID_LEN, APP_ID_WHAT);
	const uint8_t *sig = crypto_lua_bytes(L, 3, &sig_len);
	bool with_ts = !lua_isnoneornil(L, 4);
	if (with_ts) {
		if (crypto_lua_uint(L, 4, &ts) || crypto_lua_uint(L, 5, &now) ||
		    (!lua_isnoneornil(L, 6) && crypto_lua_uint(L, 6, &max_age)))
			return rt_push_fail(L, "EINVAL",
					    "%s: timestamp, now and max_age must be non-negative "
					    "integers",
					    fn);
	}
	if (sig_len != CRYPTO_ECDSA_RSIG_LEN)
		return crypto_lua_bad_len(L, fn, "signature", CRYPTO_ECDSA_RSIG_LEN, sig_len);
	uint8_t signer[33];
	int rc = dstack_env_pubkey_recover(pub, app_id, sig, sig_len, with_ts, ts, now, max_age,
					   signer);
	if (rc == CRYPTO_ETIMESTAMP)
		return rt_push_fail(
			L, "ETIMESTAMP",
			"%s: timestamp %llu is %s (now %llu, max age %llu s, %d s skew)", fn,
			(unsigned long long)ts, ts > now ? "in the future" : "too old",
			(unsigned long long)now, (unsigned long long)max_age,
			DSTACK_ENV_SIG_MAX_FUTURE);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)signer, sizeof(signer));
	return 1;
}

/* dstack_report_data(tag, content) -> 64 bytes */
static int l_report_data(lua_State *L)
{
	const char *fn = "dstack_report_data";
	size_t len;
	const char *tag = crypto_lua_string(L, 1);
	const uint8_t *content = crypto_lua_bytes(L, 2, &len);
	uint8_t out[DSTACK_REPORT_DATA_LEN];
	int rc = dstack_report_data(tag, content, len, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

/* dstack_app_key_report_data(algorithm, pub) -> 64 bytes ("dip1::..." zero-padded) */
static int l_app_key_report_data(lua_State *L)
{
	const char *fn = "dstack_app_key_report_data";
	size_t len;
	const char *alg_name = crypto_lua_string(L, 1);
	const uint8_t *pub = crypto_lua_bytes(L, 2, &len);
	int alg = dstack_sign_alg_parse(alg_name);
	if (alg < 0)
		return rt_push_fail(L, "EINVAL", "%s: unsupported algorithm '%s'", fn, alg_name);
	int key_alg = alg == DSTACK_SIGN_ED25519 ? DSTACK_KEY_ED25519 : DSTACK_KEY_SECP256K1;
	size_t want = key_alg == DSTACK_KEY_ED25519 ? 32 : 33;
	if (len != want)
		return crypto_lua_bad_len(L, fn, "public key", want, len);
	uint8_t out[DSTACK_REPORT_DATA_LEN];
	int rc = dstack_app_key_report_data(key_alg, pub, len, out);
	if (rc != CRYPTO_OK)
		return crypto_lua_fail(L, fn, rc);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

/* dstack_env_encrypt(pub32, plaintext, ephemeral_secret or nil, iv or nil) -> blob */
static int l_env_encrypt(lua_State *L)
{
	const char *fn = "dstack_env_encrypt";
	size_t len, eph_len, iv_len;
	NEED(pub, 1, CRYPTO_X25519_LEN, "public key");
	const uint8_t *pt = crypto_lua_bytes(L, 2, &len);
	const uint8_t *eph = crypto_lua_optbytes(L, 3, &eph_len);
	const uint8_t *iv = crypto_lua_optbytes(L, 4, &iv_len);
	if (eph && eph_len != CRYPTO_X25519_LEN)
		return crypto_lua_bad_len(L, fn, "ephemeral secret", CRYPTO_X25519_LEN, eph_len);
	if (iv && iv_len != CRYPTO_GCM_IV_LEN)
		return crypto_lua_bad_len(L, fn, "iv", CRYPTO_GCM_IV_LEN, iv_len);
	uint8_t *out = malloc(len + DSTACK_ENV_OVERHEAD);
	if (!out)
		return crypto_lua_fail(L, fn, CRYPTO_ENOMEM);
	int rc = dstack_env_encrypt(pub, pt, len, eph, iv, out);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)out, len + DSTACK_ENV_OVERHEAD);
	free(out);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, fn, rc);
}

/* dstack_env_decrypt(secret32, blob) -> plaintext */
static int l_env_decrypt(lua_State *L)
{
	const char *fn = "dstack_env_decrypt";
	size_t len;
	NEED(secret, 1, CRYPTO_X25519_LEN, "env_crypt_key");
	const uint8_t *blob = crypto_lua_bytes(L, 2, &len);
	if (len < DSTACK_ENV_OVERHEAD)
		return rt_push_fail(L, "EINVAL", "%s: blob must be at least %d bytes, got %zu", fn,
				    DSTACK_ENV_OVERHEAD, len);
	size_t n = len - DSTACK_ENV_OVERHEAD;
	uint8_t *out = malloc(n ? n : 1);
	if (!out)
		return crypto_lua_fail(L, fn, CRYPTO_ENOMEM);
	int rc = dstack_env_decrypt(secret, blob, len, out);
	if (rc == CRYPTO_OK)
		lua_pushlstring(L, (const char *)out, n);
	crypto_wipe(out, n);
	free(out);
	return rc == CRYPTO_OK ? 1 : crypto_lua_fail(L, fn, rc);
}

static const luaL_Reg dstack_funcs[] = {
	{ "dstack_derive_key", l_derive_key },
	{ "dstack_derive_p256", l_derive_p256 },
	{ "dstack_derive_dh_secret", l_derive_dh_secret },
	{ "dstack_p256_pkcs8", l_p256_pkcs8 },
	{ "dstack_kms_app_ca_key", l_kms_app_ca_key },
	{ "dstack_kms_disk_key", l_kms_disk_key },
	{ "dstack_kms_env_key", l_kms_env_key },
	{ "dstack_kms_app_k256", l_kms_app_k256 },
	{ "dstack_local_app_keys", l_local_app_keys },
	{ "dstack_get_key", l_get_key },
	{ "dstack_sign", l_sign },
	{ "dstack_verify", l_verify },
	{ "dstack_verify_key_chain", l_verify_key_chain },
	{ "dstack_kms_issued_sign", l_kms_issued_sign },
	{ "dstack_kms_issued_recover", l_kms_issued_recover },
	{ "dstack_env_pubkey_sign", l_env_pubkey_sign },
	{ "dstack_env_pubkey_recover", l_env_pubkey_recover },
	{ "dstack_report_data", l_report_data },
	{ "dstack_app_key_report_data", l_app_key_report_data },
	{ "dstack_env_encrypt", l_env_encrypt },
	{ "dstack_env_decrypt", l_env_decrypt },
	{ NULL, NULL },
};

void crypto_lua_register_dstack(lua_State *L)
{
	crypto_lua_register(L, dstack_funcs);
	lua_pushinteger(L, DSTACK_ENV_SIG_MAX_AGE);
	lua_setfield(L, -2, "DSTACK_ENV_SIG_MAX_AGE");
	lua_pushinteger(L, DSTACK_ENV_SIG_MAX_FUTURE);
	lua_setfield(L, -2, "DSTACK_ENV_SIG_MAX_FUTURE");
}
