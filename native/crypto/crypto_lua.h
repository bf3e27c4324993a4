/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to the `moonstack.native.crypto` binding: argument and result helpers shared by
 * crypto_lua.c (primitives), crypto_lua_dstack.c (dstack derivations and signatures) and
 * crypto_lua_password.c (bcrypt).
 */
#ifndef MOONSTACK_CRYPTO_LUA_H
#define MOONSTACK_CRYPTO_LUA_H

#include <stddef.h>
#include <stdint.h>

#include "moonstack/rt.h"

/**
 * Raise "<fn>: bad argument #idx (<expected> expected, got <type>)", with the function's name
 * taken from its first upvalue (see crypto_lua_register()); works in tail calls and pcall too.
 */
int crypto_lua_argerror(lua_State *L, int idx, const char *expected);

/** Register @p funcs into the table on top, each with its name as upvalue 1. */
void crypto_lua_register(lua_State *L, const luaL_Reg *funcs);

/** Argument @p idx as a string (raises unless it is one). */
const char *crypto_lua_string(lua_State *L, int idx);

/** Argument @p idx as bytes (raises unless it is a string; numbers are not coerced). */
const uint8_t *crypto_lua_bytes(lua_State *L, int idx, size_t *len);

/** Optional bytes argument: NULL with *len = 0 when none/nil. */
const uint8_t *crypto_lua_optbytes(lua_State *L, int idx, size_t *len);

/** Push nil, "EINVAL: fn: what must be N bytes, got M", "EINVAL". Returns 3. */
int crypto_lua_bad_len(lua_State *L, const char *fn, const char *what, size_t want, size_t got);

/** Push the expected-failure triple for the crypto result @p rc. Returns 3. */
int crypto_lua_fail(lua_State *L, const char *fn, int rc);

/** Push @p len bytes and wipe them. */
void crypto_lua_push_secret(lua_State *L, uint8_t *p, size_t len);

/**
 * A non-negative integer argument that fits in 53 bits (timestamps, lengths). Returns 0 and
 * sets *out, or -1 if it is not such a number (the caller reports EINVAL). Raises unless it
 * is a number.
 */
int crypto_lua_uint(lua_State *L, int idx, uint64_t *out);

/** Argument @p idx that must be exactly @p want bytes, else return the EINVAL failure. Both
 * macros need `fn`, the function name, in scope. */
#define NEED(var, idx, want, what)                                   \
	size_t var##_len;                                            \
	const uint8_t *var = crypto_lua_bytes(L, (idx), &var##_len); \
	if (var##_len != (want))                                     \
		return crypto_lua_bad_len(L, fn, (what), (want), var##_len);

/** A SEC1 public key argument: 33 or 65 bytes. */
#define NEED_PUB(var, idx)                                                                         \
	size_t var##_len;                                                                          \
	const uint8_t *var = crypto_lua_bytes(L, (idx), &var##_len);                               \
	if (var##_len != CRYPTO_EC_PUB_COMPRESSED && var##_len != CRYPTO_EC_PUB_UNCOMPRESSED)      \
		return rt_push_fail(L, "EINVAL", "%s: public key must be 33 or 65 bytes, got %zu", \
				    fn, var##_len);

/** Add the dstack_* functions to the table on top of the stack. */
void crypto_lua_register_dstack(lua_State *L);

/** Add bcrypt_check (blocking, or on the thread pool with a callback) and bcrypt_hash_valid. */
void crypto_lua_register_password(lua_State *L);

#endif
