/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal header of the `moonstack.native.x509` binding, shared by x509_lua.c (module, keys,
 * PEM, report_data) and x509_lua_cert.c (certificates, CSRs, verification).
 */
#ifndef MOONSTACK_X509_LUA_H
#define MOONSTACK_X509_LUA_H

#include "moonstack/rt.h"
#include "x509/x509.h"

/** Metatable name of key userdata. */
#define X509_KEY_CLASS "moonstack.x509.Key"

/** Key userdata: owns one EVP_PKEY (NULL once closed). */
struct l_x509_key {
	EVP_PKEY *pkey;
};

/** The open key at @p idx (raises naming @p fn if it is not a key or is closed). */
EVP_PKEY *x509_lua_check_key(lua_State *L, int idx, const char *fn);

/** Push nil, "CODE: msg", CODE from @p err. Returns 3. */
int x509_lua_fail(lua_State *L, const struct x509_error *err);

/** Push @p b as a Lua string and free it. */
void x509_lua_push_buf(lua_State *L, struct x509_buf *b);

/** Open `moonstack.native.x509` (preloaded through rt_natives.def). */
int luaopen_moonstack_native_x509(lua_State *L);

/** Register the certificate functions (cert_create, cert_info, csr_*, verify) in the table on
 *  top of the stack. */
void x509_lua_register_cert(lua_State *L);

#endif
