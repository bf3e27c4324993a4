/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.x509`: keys as userdata, PEM blocks, OCTET STRING wrapping and the
 * report_data hashes; certificates, CSRs and verification come from x509_lua_cert.c.
 *
 *   local x = require('moonstack.native.x509')
 *   local key = x.key_generate()              -- or key_load(pem_or_der), key_from_scalar(s32)
 *   key:pkcs8_pem(), key:pkcs8_der(), key:spki(), key:public_pem(), key:scalar(),
 *   key:public_point(), key:is_private(), key:close()
 *   x.pem_decode(text) -> { {label=, der=}, ... };  x.pem_encode(label, der) -> text
 *   x.report_data(tag, data), x.ratls_report_data(spki) -> 64 bytes
 *   x.octets_wrap(data) -> DER;  x.octets_unwrap(der) -> data
 *   x.ratls -> { quote = '1.3.6.1.4.1.62397.1.1', ... }
 *
 * Expected failures return nil, "CODE: message", CODE (EKEY, EPARSE, EINVAL, EVERIFY, ...);
 * misuse (wrong argument types, a closed key) raises. Contract: native/x509/README.md.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "x509/x509_lua.h"

int x509_lua_fail(lua_State *L, const struct x509_error *err)
{
	return rt_push_fail(L, err->code ? err->code : "ECRYPTO", "%s", err->msg);
}

void x509_lua_push_buf(lua_State *L, struct x509_buf *b)
{
	lua_pushlstring(L, (const char *)b->data, b->len);
	x509_buf_free(b);
}

EVP_PKEY *x509_lua_check_key(lua_State *L, int idx, const char *fn)
{
	struct l_x509_key *k = luaL_testudata(L, idx, X509_KEY_CLASS);
	if (!k)
		luaL_error(L, "%s: argument #%d must be a key (moonstack.x509.Key)", fn, idx);
	if (!k->pkey)
		luaL_error(L, "%s: the key is closed", fn);
	return k->pkey;
}

/* Wrap @p pkey (ownership taken) in a new key userdata, or push the failure. */
static int push_key(lua_State *L, EVP_PKEY *pkey, const struct x509_error *err)
{
	if (!pkey)
		return x509_lua_fail(L, err);
	struct l_x509_key *k = lua_newuserdata(L, sizeof(*k));
	k->pkey = pkey;
	luaL_getmetatable(L, X509_KEY_CLASS);
	lua_setmetatable(L, -2);
	return 1;
}

static int l_key_generate(lua_State *L)
{
	struct x509_error err;
	return push_key(L, x509_key_generate(&err), &err);
}

static int l_key_from_scalar(lua_State *L)
{
	size_t len;
	const char *d = luaL_checklstring(L, 1, &len);
	if (len != 32)
		return luaL_argerror(L, 1, "key_from_scalar: the scalar must be 32 bytes");
	struct x509_error err;
	return push_key(L, x509_key_from_scalar((const uint8_t *)d, &err), &err);
}

static int l_key_load(lua_State *L)
{
	size_t len;
	const char *data = luaL_checklstring(L, 1, &len);
	struct x509_error err;
	return push_key(L, x509_key_load(data, len, &err), &err);
}

static int l_is_key(lua_State *L)
{
	lua_pushboolean(L, luaL_testudata(L, 1, X509_KEY_CLASS) != NULL);
	return 1;
}

typedef int (*key_export_fn)(EVP_PKEY *, struct x509_buf *, struct x509_error *);

static int key_export(lua_State *L, const char *fn, key_export_fn export)
{
	EVP_PKEY *pkey = x509_lua_check_key(L, 1, fn);
	struct x509_buf b;
	struct x509_error err;
	if (export(pkey, &b, &err) != 0)
		return x509_lua_fail(L, &err);
	x509_lua_push_buf(L, &b);
	return 1;
}

static int l_key_pkcs8_der(lua_State *L)
{
	return key_export(L, "key:pkcs8_der", x509_key_pkcs8_der);
}

static int l_key_pkcs8_pem(lua_State *L)
{
	return key_export(L, "key:pkcs8_pem", x509_key_pkcs8_pem);
}

static int l_key_spki(lua_State *L)
{
	return key_export(L, "key:spki", x509_key_spki_der);
}

static int l_key_public_pem(lua_State *L)
{
	return key_export(L, "key:public_pem", x509_key_public_pem);
}

static int l_key_scalar(lua_State *L)
{
	EVP_PKEY *pkey = x509_lua_check_key(L, 1, "key:scalar");
	uint8_t d[32];
	struct x509_error err;
	if (x509_key_scalar(pkey, d, &err) != 0)
		return x509_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)d, sizeof(d));
	OPENSSL_cleanse(d, sizeof(d));
	return 1;
}

static int l_key_public_point(lua_State *L)
{
	EVP_PKEY *pkey = x509_lua_check_key(L, 1, "key:public_point");
	uint8_t p[65];
	struct x509_error err;
	if (x509_key_public_point(pkey, p, &err) != 0)
		return x509_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)p, sizeof(p));
	return 1;
}

static int l_key_is_private(lua_State *L)
{
	lua_pushboolean(L, x509_key_is_private(x509_lua_check_key(L, 1, "key:is_private")));
	return 1;
}

static int l_key_close(lua_State *L)
{
	struct l_x509_key *k = luaL_checkudata(L, 1, X509_KEY_CLASS);
	EVP_PKEY_free(k->pkey); // EVP_PKEY_free wipes the private part
	k->pkey = NULL;
	return 0;
}

static int l_key_tostring(lua_State *L)
{
	struct l_x509_key *k = luaL_checkudata(L, 1, X509_KEY_CLASS);
	if (!k->pkey) {
		lua_pushstring(L, "moonstack.x509.Key (closed)");
		return 1;
	}
	lua_pushfstring(L, "moonstack.x509.Key (%s, %s)", EVP_PKEY_get0_type_name(k->pkey),
			x509_key_is_private(k->pkey) ? "private" : "public");
	return 1;
}

static int l_pem_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	struct x509_pem_block *blocks;
	size_t n;
	struct x509_error err;
	if (x509_pem_decode(text, len, &blocks, &n, &err) != 0)
		return x509_lua_fail(L, &err);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_createtable(L, 0, 2);
		lua_pushstring(L, blocks[i].label);
		lua_setfield(L, -2, "label");
		lua_pushlstring(L, (const char *)blocks[i].der.data, blocks[i].der.len);
		lua_setfield(L, -2, "der");
		lua_rawseti(L, -2, (int)i + 1);
	}
	x509_pem_blocks_free(blocks, n);
	return 1;
}

static int l_pem_encode(lua_State *L)
{
	const char *label = luaL_checkstring(L, 1);
	size_t len;
	const char *der = luaL_checklstring(L, 2, &len);
	struct x509_buf b;
	struct x509_error err;
	if (x509_pem_encode(label, der, len, &b, &err) != 0)
		return x509_lua_fail(L, &err);
	x509_lua_push_buf(L, &b);
	return 1;
}

static int l_report_data(lua_State *L)
{
	const char *tag = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	uint8_t out[64];
	struct x509_error err;
	if (x509_report_data(tag, data, len, out, &err) != 0)
		return x509_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

static int l_ratls_report_data(lua_State *L)
{
	size_t len;
	const char *spki = luaL_checklstring(L, 1, &len);
	uint8_t out[64];
	struct x509_error err;
	if (x509_ratls_report_data((const uint8_t *)spki, len, out, &err) != 0)
		return x509_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

static int l_octets_wrap(lua_State *L)
{
	size_t len;
	const char *data = luaL_checklstring(L, 1, &len);
	struct x509_buf b;
	struct x509_error err;
	if (x509_octets_wrap(data, len, &b, &err) != 0)
		return x509_lua_fail(L, &err);
	x509_lua_push_buf(L, &b);
	return 1;
}

static int l_octets_unwrap(lua_State *L)
{
	size_t len;
	const char *der = luaL_checklstring(L, 1, &len);
	const uint8_t *content;
	size_t clen;
	struct x509_error err;
	if (x509_octets_unwrap((const uint8_t *)der, len, &content, &clen, &err) != 0)
		return x509_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)content, clen);
	return 1;
}

static const luaL_Reg key_methods[] = {
	{ "pkcs8_der", l_key_pkcs8_der },
	{ "pkcs8_pem", l_key_pkcs8_pem },
	{ "spki", l_key_spki },
	{ "public_pem", l_key_public_pem },
	{ "scalar", l_key_scalar },
	{ "public_point", l_key_public_point },
	{ "is_private", l_key_is_private },
	{ "close", l_key_close },
	{ NULL, NULL },
};

static const luaL_Reg key_meta[] = {
	{ "__gc", l_key_close },
	{ "__tostring", l_key_tostring },
	{ NULL, NULL },
};

static const luaL_Reg functions[] = {
	{ "key_generate", l_key_generate },
	{ "key_from_scalar", l_key_from_scalar },
	{ "key_load", l_key_load },
	{ "is_key", l_is_key },
	{ "pem_decode", l_pem_decode },
	{ "pem_encode", l_pem_encode },
	{ "report_data", l_report_data },
	{ "ratls_report_data", l_ratls_report_data },
	{ "octets_wrap", l_octets_wrap },
	{ "octets_unwrap", l_octets_unwrap },
	{ NULL, NULL },
};

int luaopen_moonstack_native_x509(lua_State *L)
{
	rt_newclass(L, X509_KEY_CLASS, key_methods, key_meta);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	x509_lua_register_cert(L);
	lua_createtable(L, 0, X509_RATLS_COUNT);
	for (int i = 0; i < X509_RATLS_COUNT; i++) {
		lua_pushstring(L, x509_ratls_oid((enum x509_ratls_ext)i));
		lua_setfield(L, -2, x509_ratls_name((enum x509_ratls_ext)i));
	}
	lua_setfield(L, -2, "ratls");
	lua_pushinteger(L, X509_DEFAULT_NOT_BEFORE);
	lua_setfield(L, -2, "default_not_before");
	lua_pushinteger(L, X509_DEFAULT_DAYS);
	lua_setfield(L, -2, "default_days");
	return 1;
}
