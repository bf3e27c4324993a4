/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of dstack's derivations and signatures (native/crypto/dstack.h) against every
 * dstack vector in the specs (kms-vmm-gateway.md §9 items 1-5, guest-and-attestation.md §10
 * items 1-3, 27) and in the shared vectors (dstack/simulator/appkeys.json,
 * derived/simulator-getkey-vectors.json, read at test time). Values marked "[node]" were
 * computed independently with @noble/hashes + @noble/curves + Node's OpenSSL (a script that
 * first reproduced every upstream value above) when these tests were written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "crypto/dstack.h"
#include "crypto_test_util.h"

extern int luaopen_cjson(lua_State *L);

/* The KMS root P-256 key of upstream's kdf.rs test (PKCS#8 DER) and its scalar. */
static const char ROOT_DER[] = "308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b02"
			       "01010420f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2a"
			       "fe19cec1a1440342000491f50522407ce29dce3ed7d31a15d80c1c42f13a2355"
			       "2d2b33a0ce09ee11e47bce95936f3e7f80d195f879e28e1b144ef37ac9ab8e36"
			       "a690cbf930b775897b27";
static const char ROOT_SCALAR[] =
	"f57527cea4ab7ffb49af99b158cdc0e3ec06398f528349ea236b7d2afe19cec1";

/* The simulator's app id (from attestation.bin's app-id event). */
static const char SIM_APP_ID[] = "5bb4ff9a3837357f19dc176407a5709c62eb6c56";
static const char SIM_APP_PUB[] =
	"02818494263695e8839122dbd88e281d7380622999df4e60a14befa0f2d096fc7c";
static const char SIM_KMS_PUB[] =
	"0321529e458424ab1f710a3a57ec4dad2fb195ddca572f7469242ba6c7563085b6";

#define IOV(s)                     \
	{                          \
		(s), sizeof(s) - 1 \
	}

/* ---- JSON vectors, decoded with cjson in a scratch Lua state ---- */

/* A Lua state with the JSON file @p rel decoded into the global V. */
static lua_State *load_json(const char *rel)
{
	size_t len;
	char *text = read_vector(rel, &len);
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	lua_pushcfunction(L, luaopen_cjson);
	lua_call(L, 0, 1);
	lua_getfield(L, -1, "decode");
	lua_pushlstring(L, text, len);
	if (lua_pcall(L, 1, 1, 0) != 0)
		fail_msg("cannot decode %s: %s", rel, lua_tostring(L, -1));
	lua_setglobal(L, "V");
	lua_settop(L, 0);
	free(text);
	return L;
}

/* The string value of the Lua expression @p expr over V, decoded from hex into @p out. */
static size_t json_hex(lua_State *L, const char *expr, uint8_t *out, size_t cap)
{
	char src[256];
	snprintf(src, sizeof(src), "return %s", expr);
	if (luaL_dostring(L, src) != 0 || lua_type(L, -1) != LUA_TSTRING)
		fail_msg("vector field %s missing or not a string", expr);
	size_t n = unhex(lua_tostring(L, -1), out, cap);
	lua_pop(L, 1);
	return n;
}

/* The string value of @p expr, copied into @p out. */
static void json_str(lua_State *L, const char *expr, char *out, size_t cap)
{
	char src[256];
	snprintf(src, sizeof(src), "return %s", expr);
	if (luaL_dostring(L, src) != 0 || lua_type(L, -1) != LUA_TSTRING)
		fail_msg("vector field %s missing or not a string", expr);
	snprintf(out, cap, "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
}

/* ---- §9 item 1: derive_key, derive_p256, PKCS#8, derive_dh_secret ---- */

static void test_dh_secret_vector(void **state)
{
	uint8_t root[32], der[DSTACK_P256_PKCS8_LEN], want[DSTACK_P256_PKCS8_LEN], out[32];
	const struct crypto_iov ctx[] = { IOV("context one"), IOV("context two") };

	unhex(ROOT_SCALAR, root, 32);
	assert_int_equal(unhex(ROOT_DER, want, sizeof(want)), DSTACK_P256_PKCS8_LEN);
	assert_int_equal(dstack_p256_pkcs8(root, der), CRYPTO_OK);
	assert_memory_equal(der, want, DSTACK_P256_PKCS8_LEN);

	assert_int_equal(dstack_derive_dh_secret(root, 32, ctx, 2, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "663afd58820be8ad645f9c035e93199d114ab16f738db62393bc1d7d623e8813");

	/* the context parts are concatenated: one part with the same bytes gives the same key */
	const struct crypto_iov joined = IOV("context onecontext two");
	uint8_t again[32];
	assert_int_equal(dstack_derive_dh_secret(root, 32, &joined, 1, again), CRYPTO_OK);
	assert_memory_equal(again, out, 32);

	/* PKCS#8 of an invalid scalar is refused */
	memset(root, 0, 32);
	assert_int_equal(dstack_p256_pkcs8(root, der), CRYPTO_EKEY);
}

static void test_derive_key(void **state)
{
	uint8_t ikm[32], out[64];

	/* guest-and-attestation §10 item 1: upstream's DUMMY_K256_KEY, path "vms" */
	unhex("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b", ikm, 32);
	const struct crypto_iov vms = IOV("vms");
	assert_int_equal(dstack_derive_key(ikm, 32, &vms, 1, out, 32), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "9db79b3fefe69f2a7b7efbc908c854bf845a629023361f2c9cb3db09fb99010f");

	/* = HKDF-SHA256(salt "RATLS"), and longer outputs extend shorter ones */
	uint8_t plain[64];
	assert_int_equal(crypto_hkdf(CRYPTO_SHA256, ikm, 32, "RATLS", 5, &vms, 1, plain, 64),
			 CRYPTO_OK);
	assert_memory_equal(plain, out, 32);
	assert_int_equal(dstack_derive_key(ikm, 32, &vms, 1, out, 64), CRYPTO_OK);
	assert_memory_equal(plain, out, 64);

	/* derive_p256 gives the same bytes when they are a valid scalar */
	uint8_t d[32];
	assert_int_equal(dstack_derive_p256(ikm, 32, &vms, 1, d), CRYPTO_OK);
	assert_memory_equal(d, plain, 32);
	assert_int_equal(dstack_derive_key(ikm, 32, &vms, 1, out, 0), CRYPTO_EINVAL);
}

/* ---- §9 item 2: the KMS derivation tree ---- */

static void test_kms_tree(void **state)
{
	uint8_t root[32], app_id[20], inst[20], out[32], pub[33], sig[65], rec[33], rk[32];

	unhex(ROOT_SCALAR, root, 32);
	memset(app_id, 0x11, 20);
	memset(inst, 0x22, 20);

	uint8_t secret[32], env_pub[32];
	assert_int_equal(dstack_kms_env_key(root, app_id, secret, env_pub), CRYPTO_OK);
	assert_hex_equal(secret, 32,
			 "a7470db8cfdd0fe24134b461d60766afa7c078abe6dce9f2c8a5c44034ca400e");
	assert_hex_equal(env_pub, 32,
			 "93cf259f68b24775d54290a8ea57cf93efc994d3ff28a7b8ba7a39e9f512302f");
	assert_int_equal(dstack_kms_env_key(root, app_id, NULL, env_pub), CRYPTO_OK);
	assert_hex_equal(env_pub, 32,
			 "93cf259f68b24775d54290a8ea57cf93efc994d3ff28a7b8ba7a39e9f512302f");

	assert_int_equal(dstack_kms_disk_key(root, app_id, inst, 20, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "a59c814e2c6d9353af59ce4fba7215e5ec3b62a2495b4dca48ea6f9804061f51");
	assert_int_equal(dstack_kms_disk_key(root, app_id, NULL, 0, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "14de7a7fd8bddf8e641a55ca97f043cac4344d175419f743940840f3a348f049");
	assert_int_equal(dstack_kms_disk_key(root, app_id, inst, 19, out), CRYPTO_EINVAL);

	assert_int_equal(dstack_kms_app_ca_key(root, app_id, out), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "5b779e0a9fe80b2e5866d94958daa1a4e29a183228b3f37acd7eae153e18a75f");

	memset(rk, 0x01, 32);
	assert_int_equal(dstack_kms_app_k256(rk, app_id, out, pub, sig), CRYPTO_OK);
	assert_hex_equal(out, 32,
			 "88fa429170ad091e0f87b335ba19b1729610ac25441728807ce3325161846baf");
	/* spec: 02a594d1…01ebc3; full value [node] */
	assert_hex_equal(pub, 33,
			 "02a594d1e64985d03463fc26e666eaf6a82b6c75834ca8c25810b25069b401ebc3");
	/* the dstack-kms-issued signature: [node] (RFC 6979), and it recovers the root key */
	assert_hex_equal(sig, 65,
			 "9ec2e6deec77b3584de4c6406034b39a4e4a04643cbf56655247774c1a15f03e"
			 "73970201967d270928b41fec3cfdbb7538adc5d4fbd328c10c6927621024f00800");
	uint8_t root_pub[33];
	assert_int_equal(crypto_k256_pubkey(rk, true, root_pub), CRYPTO_OK);
	assert_int_equal(dstack_kms_issued_recover(app_id, pub, sig, rec), CRYPTO_OK);
	assert_memory_equal(rec, root_pub, 33);
	/* another app id does not recover the root */
	app_id[0] ^= 1;
	assert_int_equal(dstack_kms_issued_recover(app_id, pub, sig, rec), CRYPTO_OK);
	assert_memory_not_equal(rec, root_pub, 33);

	/* an invalid k256 root is refused */
	memset(rk, 0, 32);
	assert_int_equal(dstack_kms_app_k256(rk, app_id, out, pub, sig), CRYPTO_EKEY);
}

static void test_local_keys(void **state)
{
	uint8_t seed[32], ca[32], disk[32], k256[32];

	/* [node] vectors for the non-KMS providers' tree (kms-vmm-gateway §3.3) */
	memset(seed, 7, 32);
	assert_int_equal(dstack_local_app_keys(seed, ca, disk, k256), CRYPTO_OK);
	assert_hex_equal(ca, 32,
			 "8a5f4a81e451cba35f953deb213aee9289fc4685336eb5f6f6f1fdf8a98811e7");
	assert_hex_equal(disk, 32,
			 "3f6c554f16da42799159f852266a55a2761c2e927d9192b36e44b3e3dc258be2");
	assert_hex_equal(k256, 32,
			 "366b65a79ad5959f30b0a024cd726042bc439782f24e19d0295442f7b5f7b3af");
	assert_int_equal(dstack_local_app_keys(seed, NULL, NULL, NULL), CRYPTO_OK);
}

/* ---- §9 item 3: env-encrypt-pubkey signatures ---- */

static const char ENV_PUBKEY[] = "e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a";

static void test_env_pubkey_legacy(void **state)
{
	uint8_t pub[32], app_id[20] = { 0 }, sig[65], signer[33];

	unhex(ENV_PUBKEY, pub, 32);
	unhex("8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed"
	      "7a5e7111652004aef37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00",
	      sig, 65);
	assert_int_equal(dstack_env_pubkey_recover(pub, app_id, sig, 65, false, 0, 0, 0, signer),
			 CRYPTO_OK);
	assert_hex_equal(signer, 33,
			 "0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f");

	/* 64-byte and all-zero signatures are refused */
	assert_int_equal(dstack_env_pubkey_recover(pub, app_id, sig, 64, false, 0, 0, 0, signer),
			 CRYPTO_EINVAL);
	uint8_t zero[65] = { 0 };
	assert_int_equal(dstack_env_pubkey_recover(pub, app_id, zero, 65, false, 0, 0, 0, signer),
			 CRYPTO_ESIG);
	/* another public key recovers someone else */
	pub[0] ^= 1;
	assert_int_equal(dstack_env_pubkey_recover(pub, app_id, sig, 65, false, 0, 0, 0, signer),
			 CRYPTO_OK);
	assert_string_not_equal(
		tohex(signer, 33),
		"0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f");
}

static void test_env_pubkey_timestamp(void **state)
{
	uint8_t pub[32], app_id[20] = { 0 }, rk[32], root_pub[33], sig[65], legacy[65], signer[33];
	const uint64_t ts = 1700000000;

	unhex(ENV_PUBKEY, pub, 32);
	memset(rk, 1, 32);
	assert_int_equal(crypto_k256_pubkey(rk, true, root_pub), CRYPTO_OK);
	assert_int_equal(dstack_env_pubkey_sign(rk, app_id, pub, true, ts, sig), CRYPTO_OK);
	/* [node] */
	assert_hex_equal(sig, 65,
			 "0e1ed612d5f880bf0036f6ed488aff24fdcdab6f81de790f3f015758652de51c"
			 "0c4734039c4ac66372f429fd5a00d569ea35b435d987138a04b66e42d675a6a501");
	assert_int_equal(dstack_env_pubkey_sign(rk, app_id, pub, false, 0, legacy), CRYPTO_OK);
	assert_memory_not_equal(sig, legacy, 65);

#define RECOVER(now, max_age) \
	dstack_env_pubkey_recover(pub, app_id, sig, 65, true, ts, (now), (max_age), signer)
	assert_int_equal(RECOVER(ts, 300), CRYPTO_OK);
	assert_memory_equal(signer, root_pub, 33);
	/* window: at most 300 s old, at most 60 s in the future (bounds included) */
	assert_int_equal(RECOVER(ts + 300, 300), CRYPTO_OK);
	assert_int_equal(RECOVER(ts + 301, 300), CRYPTO_ETIMESTAMP);
	assert_int_equal(RECOVER(ts + 600, 300), CRYPTO_ETIMESTAMP);
	assert_int_equal(RECOVER(ts + 600, 600), CRYPTO_OK);
	assert_int_equal(RECOVER(ts - 60, 300), CRYPTO_OK);
	assert_int_equal(RECOVER(ts - 61, 300), CRYPTO_ETIMESTAMP);
	assert_int_equal(RECOVER(ts - 120, 300), CRYPTO_ETIMESTAMP);
	assert_int_equal(RECOVER(0, 300), CRYPTO_ETIMESTAMP);
	assert_int_equal(RECOVER(UINT64_MAX, UINT64_MAX - 1), CRYPTO_OK);
#undef RECOVER

	/* the timestamp is signed: another timestamp recovers another key */
	assert_int_equal(
		dstack_env_pubkey_recover(pub, app_id, sig, 65, true, ts + 1, ts + 1, 300, signer),
		CRYPTO_OK);
	assert_memory_not_equal(signer, root_pub, 33);
	/* the legacy signature is not a timestamped one */
	assert_int_equal(dstack_env_pubkey_recover(pub, app_id, legacy, 65, false, 0, 0, 0, signer),
			 CRYPTO_OK);
	assert_memory_equal(signer, root_pub, 33);
	assert_int_equal(
		dstack_env_pubkey_recover(pub, app_id, legacy, 65, true, ts, ts, 300, signer),
		CRYPTO_OK);
	assert_memory_not_equal(signer, root_pub, 33);
}

/* ---- §9 item 4: the simulator's keys and GetKey chain ---- */

struct sim {
	uint8_t k256_key[32], k256_sig[65], env_key[32], app_id[20];
};

static void load_sim(struct sim *s)
{
	lua_State *L = load_json("dstack/simulator/appkeys.json");
	assert_int_equal(json_hex(L, "V.k256_key", s->k256_key, 32), 32);
	assert_int_equal(json_hex(L, "V.k256_signature", s->k256_sig, 65), 65);
	assert_int_equal(json_hex(L, "V.env_crypt_key", s->env_key, 32), 32);
	lua_close(L);
	unhex(SIM_APP_ID, s->app_id, 20);
}

static void test_simulator_chain(void **state)
{
	struct sim s;
	struct dstack_key k;
	uint8_t pub[33], kms[33], app[33], xpub[32];

	load_sim(&s);
	assert_int_equal(crypto_k256_pubkey(s.k256_key, true, pub), CRYPTO_OK);
	assert_hex_equal(pub, 33, SIM_APP_PUB);
	assert_int_equal(dstack_kms_issued_recover(s.app_id, pub, s.k256_sig, kms), CRYPTO_OK);
	assert_hex_equal(kms, 33, SIM_KMS_PUB);

	assert_int_equal(dstack_get_key(s.k256_key, "/test/path", 10, "test-purpose", 12,
					DSTACK_KEY_SECP256K1, &k),
			 CRYPTO_OK);
	assert_hex_equal(k.key, 32,
			 "b9fbb7171185c421c58610a2acba8ceae93623ae47815618cbad1e98fc042cb7");
	assert_int_equal(k.pub_len, 33);
	assert_hex_equal(k.pub, 33,
			 "02c1082e78670feed1c847db81dbd71be37e4d53200a746c0a89f0afa8173cf566");
	/* guest-and-attestation §10 item 3: chain[0] "if RFC 6979 holds" */
	assert_hex_equal(k.chain0, 65,
			 "f50c51735a97072f0c98125ed61fc84e2fdb36e95990b9e57337dadc0e2a9712"
			 "227f04e07209faecb8891d59ec144a6c13e411dc90b3423f28071bd3fe11978d01");
	uint8_t digest[32];
	char msg[128];
	snprintf(msg, sizeof(msg), "test-purpose:%s", tohex(k.pub, 33));
	crypto_keccak256(msg, strlen(msg), digest);
	assert_int_equal(crypto_k256_recover(digest, k.chain0, true, app), CRYPTO_OK);
	assert_hex_equal(app, 33, SIM_APP_PUB);

	/* the whole chain in one call */
	assert_int_equal(dstack_verify_key_chain(k.pub, k.pub_len, "test-purpose", 12, k.chain0,
						 s.app_id, s.k256_sig, app, kms),
			 CRYPTO_OK);
	assert_hex_equal(app, 33, SIM_APP_PUB);
	assert_hex_equal(kms, 33, SIM_KMS_PUB);
	/* a wrong purpose breaks it (another app key, hence another KMS key) */
	assert_int_equal(dstack_verify_key_chain(k.pub, k.pub_len, "other", 5, k.chain0, s.app_id,
						 s.k256_sig, app, kms),
			 CRYPTO_OK);
	assert_string_not_equal(tohex(kms, 33), SIM_KMS_PUB);
	crypto_wipe(&k, sizeof(k));

	/* ed25519: same key bytes, 32-byte public key */
	assert_int_equal(dstack_get_key(s.k256_key, "/test/path", 10, "test-purpose", 12,
					DSTACK_KEY_ED25519, &k),
			 CRYPTO_OK);
	assert_hex_equal(k.key, 32,
			 "b9fbb7171185c421c58610a2acba8ceae93623ae47815618cbad1e98fc042cb7");
	assert_int_equal(k.pub_len, 32);
	assert_true(strncmp(tohex(k.pub, 32), "2149e71e", 8) == 0);
	assert_true(strcmp(tohex(k.pub, 32) + 58, "4b2304") == 0);

	/* env_crypt_key -> X25519 public key */
	assert_int_equal(crypto_x25519_pubkey(s.env_key, xpub), CRYPTO_OK);
	assert_hex_equal(xpub, 32,
			 "4b03687002c7e0f6e8eaabea3edc108de72a06d2c2b64a3e14c34883645c7127");

	assert_int_equal(dstack_key_alg_parse(""), DSTACK_KEY_SECP256K1);
	assert_int_equal(dstack_key_alg_parse("k256"), DSTACK_KEY_SECP256K1);
	assert_int_equal(dstack_key_alg_parse("ed25519"), DSTACK_KEY_ED25519);
	assert_int_equal(dstack_key_alg_parse("secp256k1_prehashed"), -1);
	assert_int_equal(dstack_key_alg_parse("rsa"), -1);
}

/* derived/simulator-getkey-vectors.json: every case, byte for byte. */
static void test_simulator_getkey_vectors(void **state)
{
	struct sim s;
	load_sim(&s);
	lua_State *L = load_json("derived/simulator-getkey-vectors.json");
	uint8_t app_id[20], want[65];
	char expr[128], path[128], purpose[128], alg[32];

	json_hex(L, "V.app_id", app_id, 20);
	assert_memory_equal(app_id, s.app_id, 20);
	assert_int_equal(luaL_dostring(L, "return #V.getKey"), 0);
	int n = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	assert_true(n >= 5);

	for (int i = 1; i <= n; i++) {
		struct dstack_key k;
		uint8_t app[33], kms[33];

		snprintf(expr, sizeof(expr), "V.getKey[%d].path", i);
		json_str(L, expr, path, sizeof(path));
		snprintf(expr, sizeof(expr), "V.getKey[%d].purpose", i);
		json_str(L, expr, purpose, sizeof(purpose));
		snprintf(expr, sizeof(expr), "V.getKey[%d].algorithm", i);
		json_str(L, expr, alg, sizeof(alg));
		int a = dstack_key_alg_parse(alg);
		assert_true(a >= 0);

		assert_int_equal(dstack_get_key(s.k256_key, path, strlen(path), purpose,
						strlen(purpose), a, &k),
				 CRYPTO_OK);
		snprintf(expr, sizeof(expr), "V.getKey[%d].key", i);
		json_hex(L, expr, want, 32);
		assert_memory_equal(k.key, want, 32);
		snprintf(expr, sizeof(expr), "V.getKey[%d].pubkey", i);
		assert_int_equal(json_hex(L, expr, want, 33), k.pub_len);
		assert_memory_equal(k.pub, want, k.pub_len);
		snprintf(expr, sizeof(expr), "V.getKey[%d].signature_chain[1]", i);
		json_hex(L, expr, want, 65);
		assert_memory_equal(k.chain0, want, 65);
		snprintf(expr, sizeof(expr), "V.getKey[%d].signature_chain[2]", i);
		json_hex(L, expr, want, 65);
		assert_memory_equal(want, s.k256_sig, 65);

		assert_int_equal(dstack_verify_key_chain(k.pub, k.pub_len, purpose, strlen(purpose),
							 k.chain0, app_id, want, app, kms),
				 CRYPTO_OK);
		json_hex(L, "V.app_k256_pubkey_compressed", want, 33);
		assert_memory_equal(app, want, 33);
		json_hex(L, "V.kms_root_k256_pubkey_recovered", want, 33);
		assert_memory_equal(kms, want, 33);
		crypto_wipe(&k, sizeof(k));
	}
	lua_close(L);
}

/* Sign/Verify with the key GetKey("vms", "signing"). */
static void test_sign_verify(void **state)
{
	struct sim s;
	struct dstack_signature sig;
	struct dstack_key vms;
	load_sim(&s);

	assert_int_equal(
		dstack_get_key(s.k256_key, "vms", 3, "signing", 7, DSTACK_KEY_SECP256K1, &vms),
		CRYPTO_OK);
	/* simulator-getkey-vectors.json "vms" and guest-and-attestation §10 item 3 */
	assert_hex_equal(vms.key, 32,
			 "1091a4d6721f6a719ca57320e4975f7e237649131111ee1c5032f661dc1cfef2");
	assert_hex_equal(vms.pub, 33,
			 "036105f01d1fd781568f7c208b087b1c4f522601410ed7e9c7870d573de7c46d54");

	const char *data = "hello dstack";
	int alg = dstack_sign_alg_parse("secp256k1");
	assert_int_equal(dstack_sign(s.k256_key, alg, data, strlen(data), &sig), CRYPTO_OK);
	assert_memory_equal(sig.pub, vms.pub, 33);
	assert_memory_equal(sig.chain0, vms.chain0, 65);
	/* ECDSA over SHA-256(data), deterministic */
	uint8_t digest[32], expect[64];
	crypto_sha256(data, strlen(data), digest);
	assert_int_equal(crypto_k256_sign(vms.key, digest, expect), CRYPTO_OK);
	assert_memory_equal(sig.sig, expect, 64);
	assert_int_equal(dstack_verify(alg, data, strlen(data), sig.sig, 64, sig.pub, 33),
			 CRYPTO_OK);
	assert_int_equal(dstack_verify(alg, "hello dstacK", 12, sig.sig, 64, sig.pub, 33),
			 CRYPTO_EVERIFY);

	/* prehashed: exactly 32 bytes */
	int pre = dstack_sign_alg_parse("secp256k1_prehashed");
	assert_int_equal(dstack_sign(s.k256_key, pre, digest, 31, &sig), CRYPTO_EINVAL);
	assert_int_equal(dstack_sign(s.k256_key, pre, digest, 32, &sig), CRYPTO_OK);
	assert_memory_equal(sig.sig, expect, 64);
	assert_int_equal(dstack_verify(pre, digest, 32, sig.sig, 64, sig.pub, 33), CRYPTO_OK);
	assert_int_equal(dstack_verify(pre, digest, 31, sig.sig, 64, sig.pub, 33), CRYPTO_EINVAL);

	/* ed25519 */
	int ed = dstack_sign_alg_parse("ed25519");
	assert_int_equal(dstack_sign(s.k256_key, ed, data, strlen(data), &sig), CRYPTO_OK);
	assert_int_equal(sig.pub_len, 32);
	assert_int_equal(dstack_verify(ed, data, strlen(data), sig.sig, 64, sig.pub, 32),
			 CRYPTO_OK);
	sig.sig[5] ^= 1;
	assert_int_equal(dstack_verify(ed, data, strlen(data), sig.sig, 64, sig.pub, 32),
			 CRYPTO_EVERIFY);
	assert_int_equal(dstack_verify(ed, data, strlen(data), sig.sig, 63, sig.pub, 32),
			 CRYPTO_EINVAL);

	assert_int_equal(dstack_sign_alg_parse("rsa"), -1);
	assert_int_equal(dstack_sign(s.k256_key, 7, data, 1, &sig), CRYPTO_EINVAL);
	crypto_wipe(&vms, sizeof(vms));
}

/* guest-and-attestation §7.1 / §10 item 1: GetAttestationForAppKey report_data. */
static void test_report_data(void **state)
{
	uint8_t ikm[32], out[64];
	struct dstack_key k;

	unhex("1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b", ikm, 32);
	assert_int_equal(dstack_get_key(ikm, "vms", 3, "signing", 7, DSTACK_KEY_ED25519, &k),
			 CRYPTO_OK);
	assert_int_equal(dstack_app_key_report_data(DSTACK_KEY_ED25519, k.pub, 32, out), CRYPTO_OK);
	uint8_t want[64] = { 0 };
	const char *ed = "dip1::ed25519-pk:5Pbre1Amf1hrp2V2bbfKlIfxpQb2pJAmrgmhxgVoG9s";
	memcpy(want, ed, strlen(ed));
	assert_int_equal(strlen(ed), 60);
	assert_memory_equal(out, want, 64);

	assert_int_equal(dstack_get_key(ikm, "vms", 3, "signing", 7, DSTACK_KEY_SECP256K1, &k),
			 CRYPTO_OK);
	assert_int_equal(dstack_app_key_report_data(DSTACK_KEY_SECP256K1, k.pub, 33, out),
			 CRYPTO_OK);
	const char *secp = "dip1::secp256k1c-pk:A6t_JdVkVdMAocH3f1f20WGT6JzdntxcXimUtEax8zc9";
	assert_int_equal(strlen(secp), 64);
	assert_memory_equal(out, secp, 64);
	assert_int_equal(dstack_app_key_report_data(DSTACK_KEY_SECP256K1, k.pub, 32, out),
			 CRYPTO_EINVAL);

	/* SHA-512(tag ":" content) */
	uint8_t manual[64];
	assert_int_equal(dstack_report_data("app-data", "test", 4, out), CRYPTO_OK);
	crypto_sha512("app-data:test", 13, manual);
	assert_memory_equal(out, manual, 64);
	crypto_wipe(&k, sizeof(k));
}

/* ---- §9 item 5: the encrypted-env blob ---- */

static void test_env_blob(void **state)
{
	uint8_t root[32], app_id[20], secret[32], pub[32], eph[32], iv[12];
	uint8_t blob[256], pt[256], key[32];
	const char *json = "{\"env\":[{\"key\":\"FOO\",\"value\":\"a b\"}]}";
	size_t n = strlen(json);

	unhex(ROOT_SCALAR, root, 32);
	memset(app_id, 0x11, 20);
	assert_int_equal(dstack_kms_env_key(root, app_id, secret, pub), CRYPTO_OK);
	memset(eph, 0x42, 32);
	memset(iv, 0x24, 12);
	assert_int_equal(dstack_env_encrypt(pub, json, n, eph, iv, blob), CRYPTO_OK);
	/* [node]: x25519 + Node's aes-256-gcm */
	assert_hex_equal(blob, n + DSTACK_ENV_OVERHEAD,
			 "132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472"
			 "242424242424242424242424"
			 "5c53f3d5aaec28178c334bf242d71651d62c8f7d5f2fd0667dac6dafd625279fe1086c"
			 "b73eb92bcb723dfdc696e2a36eccfe2d391c");

	/* the layout by hand: AES key = X25519(secret, ephemeral pub), IV at 32, tag at the end */
	assert_int_equal(crypto_x25519(secret, blob, key), CRYPTO_OK);
	assert_int_equal(crypto_aes256gcm_decrypt(key, blob + 32, NULL, 0, blob + 44, n + 16, pt),
			 CRYPTO_OK);
	assert_memory_equal(pt, json, n);

	memset(pt, 0, sizeof(pt));
	assert_int_equal(dstack_env_decrypt(secret, blob, n + DSTACK_ENV_OVERHEAD, pt), CRYPTO_OK);
	assert_memory_equal(pt, json, n);

	/* random ephemeral key and IV: two blobs differ, both decrypt */
	uint8_t blob2[256];
	assert_int_equal(dstack_env_encrypt(pub, json, n, NULL, NULL, blob2), CRYPTO_OK);
	assert_memory_not_equal(blob2, blob, 44);
	assert_int_equal(dstack_env_decrypt(secret, blob2, n + DSTACK_ENV_OVERHEAD, pt), CRYPTO_OK);
	assert_memory_equal(pt, json, n);

	/* errors: too short, tampered, wrong key, low-order ephemeral key */
	assert_int_equal(dstack_env_decrypt(secret, blob, 43, pt), CRYPTO_EINVAL);
	assert_int_equal(dstack_env_decrypt(secret, blob, DSTACK_ENV_OVERHEAD - 1, pt),
			 CRYPTO_EINVAL);
	blob[50] ^= 1;
	assert_int_equal(dstack_env_decrypt(secret, blob, n + DSTACK_ENV_OVERHEAD, pt),
			 CRYPTO_EDECRYPT);
	blob[50] ^= 1;
	secret[0] ^= 0x40;
	assert_int_equal(dstack_env_decrypt(secret, blob, n + DSTACK_ENV_OVERHEAD, pt),
			 CRYPTO_EDECRYPT);
	secret[0] ^= 0x40;
	memset(blob, 0, 32);
	assert_int_equal(dstack_env_decrypt(secret, blob, n + DSTACK_ENV_OVERHEAD, pt),
			 CRYPTO_EKEY);

	/* an empty plaintext is the 60-byte minimum */
	assert_int_equal(dstack_env_encrypt(pub, NULL, 0, NULL, NULL, blob), CRYPTO_OK);
	assert_int_equal(dstack_env_decrypt(secret, blob, DSTACK_ENV_OVERHEAD, pt), CRYPTO_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dh_secret_vector),
		cmocka_unit_test(test_derive_key),
		cmocka_unit_test(test_kms_tree),
		cmocka_unit_test(test_local_keys),
		cmocka_unit_test(test_env_pubkey_legacy),
		cmocka_unit_test(test_env_pubkey_timestamp),
		cmocka_unit_test(test_simulator_chain),
		cmocka_unit_test(test_simulator_getkey_vectors),
		cmocka_unit_test(test_sign_verify),
		cmocka_unit_test(test_report_data),
		cmocka_unit_test(test_env_blob),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
