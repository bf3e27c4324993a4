/* SPDX-License-Identifier: Apache-2.0 */
/* Private to the `moonstack.native.tdx` binding: the parts of the module table each binding
 * file fills, and shared argument helpers. */
#ifndef MOONSTACK_TDX_LUA_H
#define MOONSTACK_TDX_LUA_H

#include <lauxlib.h>
#include <lua.h>

#include "tdx/tdx.h"

/** Add the event log functions to the table on top of the stack. */
void tdx_lua_eventlog_register(lua_State *L);

/** Add the guest device/service functions and the Lock class to the table on top. */
void tdx_lua_guest_register(lua_State *L);

/** Push nil, "CODE: message", "CODE" from @p err (the expected-failure contract); 3. */
int tdx_lua_fail(lua_State *L, const struct tdx_error *err);

/** The string at @p idx, which must be exactly @p len bytes (raises naming @p fn otherwise). */
const uint8_t *tdx_lua_check_bytes(lua_State *L, int idx, size_t len, const char *fn,
				   const char *what);

/** Set t[@p key] = the @p len bytes at @p p (nothing if @p p is NULL), t on top. */
void tdx_lua_setbytes(lua_State *L, const char *key, const void *p, size_t len);

/** Set t[@p key] = @p v, t on top. */
void tdx_lua_setint(lua_State *L, const char *key, lua_Number v);

#endif
