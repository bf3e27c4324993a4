/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the two files of the `moonstack.native.http` binding share: the state Lua callbacks run
 * on, the Lua side of a TLS verification hook, and option parsing into the C API's structures
 * (heap copies kept in a scratch the binding's userdata owns, so a raise leaks nothing).
 */
#ifndef MOONSTACK_RT_HTTP_LUA_H
#define MOONSTACK_RT_HTTP_LUA_H

#include "moonstack/rt.h"
#include "moonstack/rt_http.h"
#include "rt_json.h"

/**
 * The state Lua callbacks must run on now: the one of the binding call in progress (set with
 * rt_http_lua_enter()), else @p rt's main state.
 */
lua_State *rt_http_lua_state(struct rt_runtime *rt);

/** Make @p L the state callbacks run on during a C call that may call back synchronously.
 *  Returns the previous one, for rt_http_lua_leave(). */
lua_State *rt_http_lua_enter(lua_State *L);

/** Restore the state rt_http_lua_enter() returned. */
void rt_http_lua_leave(lua_State *prev);

/** A Lua function used as a TLS verification hook (the binding owns the registry ref). */
struct rt_http_lua_hook {
	struct rt_runtime *rt;
	int ref; /**< LUA_NOREF when none or released */
};

/** The rt_tls_verify_fn calling the Lua hook @p user (a struct rt_http_lua_hook) with the peer
 *  description {der, chain, preverify, error}; a refusal is logged with the hook's reason. */
bool rt_http_lua_verify(void *user, X509_STORE_CTX *store, bool ok, const char *why);

/** Release @p h's ref (if any) in @p L. */
void rt_http_lua_hook_release(lua_State *L, struct rt_http_lua_hook *h);

/** Heap copies made while parsing options, freed (and wiped) together. */
struct rt_http_lua_scratch {
	struct rt_http_lua_item {
		void *p;
		size_t len;
	} * items;
	size_t n, cap;
	struct rt_buf bufs[2]; /**< packed header lists */
};

/** A copy of the @p len bytes at @p p (zeroed if @p p is NULL), NUL-terminated past @p len,
 *  kept in @p s. Raises on out of memory. */
void *rt_http_lua_keep(lua_State *L, struct rt_http_lua_scratch *s, const void *p, size_t len);

/** Free (and wipe) everything kept in @p s. */
void rt_http_lua_scratch_free(struct rt_http_lua_scratch *s);

/** The string option @p field of the table at @p idx, copied into @p s, or NULL if absent.
 *  Raises if it is not a string (or absent and @p required). */
const char *rt_http_lua_opt_string(lua_State *L, int idx, const char *field, bool required,
				   struct rt_http_lua_scratch *s);

/** Parse a Lua headers table at @p idx into packed "name\0value\0" pairs. Raises on misuse. */
void rt_http_headers_parse(lua_State *L, int idx, struct rt_buf *out);

/**
 * Parse a Lua `tls` options table at @p idx into @p t (strings kept in @p s); a `verify` function
 * is referenced in @p hook and installed as @p t's hook. Raises on misuse.
 */
void rt_http_lua_tls_parse(lua_State *L, int idx, struct rt_tls_config *t,
			   struct rt_http_lua_hook *hook, struct rt_http_lua_scratch *s,
			   bool server);

/** Push nil, @p err ("CODE: message"), "CODE". Returns 3. */
int rt_http_lua_push_err(lua_State *L, const char *err);

/** lua_CFunction `request(opts, callback)` of the binding (rt_http_lua_client.c). */
int rt_http_lua_request(lua_State *L);

/** Register the client's Lua class (called by luaopen). */
void rt_http_lua_client_register(lua_State *L);

#endif
