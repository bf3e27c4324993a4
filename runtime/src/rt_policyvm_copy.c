/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deep copies of plain values (nil, booleans, numbers, strings, tables of them) from one
 * lua_State to another, with the VM's limits on nesting, entries and string length. Cycles,
 * functions, userdata, threads and non-scalar keys are refused with the path of the value.
 * Metatables are ignored (raw access only). Reading the source never raises or allocates.
 */
#include <stdarg.h>
#include <stdio.h>

#include "rt_policyvm_internal.h"

int rt_pvm_copy_fail(struct rt_pvm_copy *c, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(c->err, sizeof(c->err), "%s: %s", c->path, what);
	return -1;
}

void rt_pvm_copy_init(struct rt_pvm_copy *c, struct rt_pvm *vm, lua_State *from, lua_State *to,
		      const char *root)
{
	c->vm = vm;
	c->from = from;
	c->to = to;
	c->items = 0;
	c->err[0] = '\0';
	c->pathlen = (size_t)snprintf(c->path, sizeof(c->path), "%s", root);
}

static bool is_identifier(const char *s, size_t len)
{
	if (len == 0 || len > 40 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
		return false;
	for (size_t i = 1; i < len; i++) {
		char ch = s[i];
		if (!(ch == '_' || (ch >= '0' && ch <= '9') ||
		      ((ch | 32) >= 'a' && (ch | 32) <= 'z')))
			return false;
	}
	return true;
}

size_t rt_pvm_path_push(struct rt_pvm_copy *c, int k)
{
	size_t old = c->pathlen, room = sizeof(c->path) - old, len;
	const char *s;
	int n = 0;

	if (room <= 1)
		return old;
	switch (lua_type(c->from, k)) {
	case LUA_TSTRING:
		s = lua_tolstring(c->from, k, &len);
		if (is_identifier(s, len))
			n = snprintf(c->path + old, room, ".%.*s", (int)len, s);
		else
			n = snprintf(c->path + old, room, "[\"%.*s\"]", (int)(len > 24 ? 24 : len),
				     s);
		break;
	case LUA_TNUMBER:
		n = snprintf(c->path + old, room, "[%.14g]", lua_tonumber(c->from, k));
		break;
	default:
		n = snprintf(c->path + old, room, "[%s]", luaL_typename(c->from, k));
		break;
	}
	if (n < 0)
		n = 0;
	c->pathlen = old + ((size_t)n < room ? (size_t)n : room - 1);
	return old;
}

static void path_pop(struct rt_pvm_copy *c, size_t old)
{
	c->pathlen = old;
	c->path[old] = '\0';
}

int rt_pvm_copy_pair(struct rt_pvm_copy *c, int t, int depth)
{
	int k = lua_gettop(c->from) - 1;
	int kt = lua_type(c->from, k);

	if (++c->items > c->vm->limits.max_items)
		return rt_pvm_copy_fail(c, "more than %zu table entries", c->vm->limits.max_items);
	if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
		return rt_pvm_copy_fail(c, "a %s key cannot be copied", lua_typename(c->from, kt));
	size_t old = rt_pvm_path_push(c, k);
	if (rt_pvm_copy_value(c, k, depth) != 0 || rt_pvm_copy_value(c, k + 1, depth) != 0)
		return -1;
	path_pop(c, old);
	lua_rawset(c->to, t);
	return 0;
}

static int copy_table(struct rt_pvm_copy *c, int idx, int depth)
{
	const void *p = lua_topointer(c->from, idx);

	if (depth >= c->vm->limits.max_depth)
		return rt_pvm_copy_fail(c, "tables nested deeper than %d levels",
					c->vm->limits.max_depth);
	for (int i = 0; i < depth; i++) {
		if (c->ancestors[i] == p)
			return rt_pvm_copy_fail(c, "the table contains itself (a cycle)");
	}
	c->ancestors[depth] = p;
	lua_newtable(c->to);
	int t = lua_gettop(c->to);
	lua_pushnil(c->from);
	while (lua_next(c->from, idx)) {
		if (rt_pvm_copy_pair(c, t, depth + 1) != 0)
			return -1;
		lua_pop(c->from, 1);
	}
	return 0;
}

int rt_pvm_copy_value(struct rt_pvm_copy *c, int idx, int depth)
{
	size_t len;
	const char *s;

	switch (lua_type(c->from, idx)) {
	case LUA_TNIL:
		lua_pushnil(c->to);
		return 0;
	case LUA_TBOOLEAN:
		lua_pushboolean(c->to, lua_toboolean(c->from, idx));
		return 0;
	case LUA_TNUMBER:
		lua_pushnumber(c->to, lua_tonumber(c->from, idx));
		return 0;
	case LUA_TSTRING:
		s = lua_tolstring(c->from, idx, &len);
		if (len > c->vm->limits.max_string)
			return rt_pvm_copy_fail(c, "a string of %zu bytes exceeds the limit of %zu",
						len, c->vm->limits.max_string);
		lua_pushlstring(c->to, s, len);
		return 0;
	case LUA_TTABLE:
		return copy_table(c, idx, depth);
	default:
		return rt_pvm_copy_fail(c,
					"a %s value cannot be copied (only nil, booleans, numbers, "
					"strings and tables of them)",
					luaL_typename(c->from, idx));
	}
}
