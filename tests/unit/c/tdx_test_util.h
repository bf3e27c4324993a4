/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for the tdx cmocka tests: locate the test vectors (env MOONSTACK_VECTORS, else
 * $MOONSTACK_SRC/../shared/vectors), read files, hex, and JSON through cjson in a plain
 * LuaJIT state (the vectors' expected values are JSON). Include after <cmocka.h>.
 */
#ifndef MOONSTACK_TDX_TEST_UTIL_H
#define MOONSTACK_TDX_TEST_UTIL_H

#include "test_vectors.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <lua-cjson.h>

static inline int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode hex text (0x prefix and surrounding whitespace allowed) into a new buffer. */
static inline uint8_t *unhex(const char *s, size_t slen, size_t *out_len)
{
	while (slen && isspace((unsigned char)*s))
		s++, slen--;
	while (slen && isspace((unsigned char)s[slen - 1]))
		slen--;
	if (slen >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2, slen -= 2;
	assert_int_equal(slen % 2, 0);
	uint8_t *out = malloc(slen / 2 + 1);
	assert_non_null(out);
	for (size_t i = 0; i < slen / 2; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		assert_true(hi >= 0 && lo >= 0);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*out_len = slen / 2;
	return out;
}

/* A quote vector: binary, or hex text when its name ends in .hex/.txt. */
static inline uint8_t *read_quote_vector(const char *rel, size_t *len)
{
	size_t n;
	uint8_t *raw = read_vector(rel, &n);
	size_t rl = strlen(rel);
	if ((rl > 4 && strcmp(rel + rl - 4, ".hex") == 0) ||
	    (rl > 4 && strcmp(rel + rl - 4, ".txt") == 0)) {
		uint8_t *bin = unhex((const char *)raw, n, len);
		free(raw);
		return bin;
	}
	*len = n;
	return raw;
}

/* Lowercase hex of @len bytes into a static buffer (one at a time). */
static inline const char *hexs(const uint8_t *p, size_t len)
{
	static char buf[2 * 8192 + 1];
	static const char d[] = "0123456789abcdef";
	if (len > 8192)
		len = 8192;
	for (size_t i = 0; i < len; i++) {
		buf[2 * i] = d[p[i] >> 4];
		buf[2 * i + 1] = d[p[i] & 15];
	}
	buf[2 * len] = 0;
	return buf;
}

/* A LuaJIT state holding vectors/<rel> decoded by cjson as the global `doc`. */
static inline lua_State *json_vector(const char *rel)
{
	size_t n;
	uint8_t *text = read_vector(rel, &n);
	lua_State *L = luaL_newstate();
	assert_non_null(L);
	luaL_openlibs(L);
	lua_pushcfunction(L, luaopen_cjson);
	lua_call(L, 0, 1);
	lua_getfield(L, -1, "decode");
	lua_pushlstring(L, (const char *)text, n);
	if (lua_pcall(L, 1, 1, 0) != 0)
		fail_msg("%s: %s", rel, lua_tostring(L, -1));
	lua_setglobal(L, "doc");
	lua_pop(L, 1);
	free(text);
	return L;
}

/* Evaluate the Lua expression @expr (with `doc` in scope) to a string (numbers and booleans
 * are converted; nil gives NULL). The result stays valid until the next call. */
static inline const char *lua_eval(lua_State *L, const char *expr)
{
	static char buf[16384];
	char src[1024];
	snprintf(src, sizeof(src),
		 "local v = %s; if v == nil then return nil end; return "
		 "type(v) == 'number' and string.format('%%.17g', v) or tostring(v)",
		 expr);
	if (luaL_loadstring(L, src) || lua_pcall(L, 0, 1, 0))
		fail_msg("lua_eval(%s): %s", expr, lua_tostring(L, -1));
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return NULL;
	}
	snprintf(buf, sizeof(buf), "%s", lua_tostring(L, -1));
	lua_pop(L, 1);
	return buf;
}

#endif
