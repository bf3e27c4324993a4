/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers for bindings: classes (metatables) and the nil, message, CODE failure contract. */
#include <stdio.h>

#include "moonstack/rt.h"

void rt_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, const luaL_Reg *meta)
{
	if (!luaL_newmetatable(L, tname)) {
		lua_pop(L, 1);
		return;
	}
	// [mt]
	if (meta)
		luaL_register(L, NULL, meta);
	lua_newtable(L); // [mt, methods]
	if (methods)
		luaL_register(L, NULL, methods);
	lua_setfield(L, -2, "__index");
	lua_pushstring(L, tname);
	lua_setfield(L, -2, "__name");
	lua_pop(L, 1);
}

void rt_hex_encode(const uint8_t *in, size_t len, char *out, bool upper)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int rt_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t outlen)
{
	if (hexlen != 2 * outlen)
		return -1;
	for (size_t i = 0; i < outlen; i++) {
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int rt_push_fail(lua_State *L, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", code, msg);
	lua_pushstring(L, code);
	return 3;
}
