/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy wire format: plain values (nil, booleans, numbers, strings, tables of them) as
 * bytes, so they can cross from one lua_State to another or to a policy worker process over a
 * pipe (rt_policyvm.h describes the grammar). Encoding applies the VM's limits on nesting,
 * entries, string length and total size, and refuses cycles, functions, userdata, threads and
 * non-scalar keys, naming the path of the value; metatables are ignored (raw access only) and
 * reading the source state never raises or allocates in it. Decoding checks every length and
 * limit, so bytes from a crashed or compromised worker cannot overrun anything.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_policyvm_internal.h"

/* ---- buffers and primitive writers ---- */

bool rt_pvm_buf_put(struct rt_pvm_buf *b, const void *p, size_t n)
{
	if (b->oom)
		return false;
	if (n > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n) {
			if (cap > SIZE_MAX / 2) {
				b->oom = true;
				return false;
			}
			cap *= 2;
		}
		char *data = realloc(b->data, cap);
		if (!data) {
			b->oom = true;
			return false;
		}
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return true;
}

void rt_pvm_buf_free(struct rt_pvm_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void rt_pvm_wire_byte(struct rt_pvm_buf *b, char tag)
{
	rt_pvm_buf_put(b, &tag, 1);
}

void rt_pvm_wire_string(struct rt_pvm_buf *b, const char *s, size_t len)
{
	uint32_t n = (uint32_t)len;
	rt_pvm_wire_byte(b, RT_PVM_WIRE_STRING);
	rt_pvm_buf_put(b, &n, sizeof(n));
	rt_pvm_buf_put(b, s, len);
}

void rt_pvm_wire_number(struct rt_pvm_buf *b, double v)
{
	rt_pvm_wire_byte(b, RT_PVM_WIRE_NUMBER);
	rt_pvm_buf_put(b, &v, sizeof(v));
}

/* ---- encoding ---- */

int rt_pvm_enc_fail(struct rt_pvm_enc *e, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(e->err, sizeof(e->err), "%s: %s", e->path, what);
	return -1;
}

void rt_pvm_enc_init(struct rt_pvm_enc *e, lua_State *L, const struct rt_pvm_wire_limits *lim,
		     struct rt_pvm_buf *out, const char *root)
{
	e->L = L;
	e->lim = lim;
	e->out = out;
	e->base = out->len;
	e->items = 0;
	e->err[0] = '\0';
	e->pathlen = (size_t)snprintf(e->path, sizeof(e->path), "%s", root);
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

size_t rt_pvm_path_push(struct rt_pvm_enc *e, int k)
{
	size_t old = e->pathlen, room = sizeof(e->path) - old, len;
	const char *s;
	int n = 0;

	if (room <= 1)
		return old;
	switch (lua_type(e->L, k)) {
	case LUA_TSTRING:
		s = lua_tolstring(e->L, k, &len);
		if (is_identifier(s, len))
			n = snprintf(e->path + old, room, ".%.*s", (int)len, s);
		else
			n = snprintf(e->path + old, room, "[\"%.*s\"]", (int)(len > 24 ? 24 : len),
				     s);
		break;
	case LUA_TNUMBER:
		n = snprintf(e->path + old, room, "[%.14g]", lua_tonumber(e->L, k));
		break;
	default:
		n = snprintf(e->path + old, room, "[%s]", luaL_typename(e->L, k));
		break;
	}
	if (n < 0)
		n = 0;
	e->pathlen = old + ((size_t)n < room ? (size_t)n : room - 1);
	return old;
}

static void path_pop(struct rt_pvm_enc *e, size_t old)
{
	e->pathlen = old;
	e->path[old] = '\0';
}

/* Room for @p n more bytes within the encoding's total size limit? */
static int enc_room(struct rt_pvm_enc *e, size_t n)
{
	if (e->out->len - e->base + n > e->lim->max_bytes)
		return rt_pvm_enc_fail(e, "more than %zu bytes in all", e->lim->max_bytes);
	return 0;
}

int rt_pvm_enc_pair(struct rt_pvm_enc *e, int depth)
{
	int k = lua_gettop(e->L) - 1;
	int kt = lua_type(e->L, k);

	if (++e->items > e->lim->max_items)
		return rt_pvm_enc_fail(e, "more than %zu table entries", e->lim->max_items);
	if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
		return rt_pvm_enc_fail(e, "a %s key cannot be copied", lua_typename(e->L, kt));
	size_t old = rt_pvm_path_push(e, k);
	if (rt_pvm_enc_value(e, k, depth) != 0 || rt_pvm_enc_value(e, k + 1, depth) != 0)
		return -1;
	path_pop(e, old);
	return 0;
}

static int enc_table(struct rt_pvm_enc *e, int idx, int depth)
{
	const void *p = lua_topointer(e->L, idx);

	if (depth >= e->lim->max_depth)
		return rt_pvm_enc_fail(e, "tables nested deeper than %d levels", e->lim->max_depth);
	for (int i = 0; i < depth; i++) {
		if (e->ancestors[i] == p)
			return rt_pvm_enc_fail(e, "the table contains itself (a cycle)");
	}
	e->ancestors[depth] = p;
	if (enc_room(e, 2) != 0)
		return -1;
	rt_pvm_wire_byte(e->out, RT_PVM_WIRE_OPEN);
	lua_pushnil(e->L);
	while (lua_next(e->L, idx)) {
		if (rt_pvm_enc_pair(e, depth + 1) != 0)
			return -1;
		lua_pop(e->L, 1);
	}
	rt_pvm_wire_byte(e->out, RT_PVM_WIRE_CLOSE);
	return 0;
}

int rt_pvm_enc_value(struct rt_pvm_enc *e, int idx, int depth)
{
	size_t len;
	const char *s;

	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		idx = lua_gettop(e->L) + idx + 1;
	switch (lua_type(e->L, idx)) {
	case LUA_TNIL:
		if (enc_room(e, 1) != 0)
			return -1;
		rt_pvm_wire_byte(e->out, RT_PVM_WIRE_NIL);
		return 0;
	case LUA_TBOOLEAN:
		if (enc_room(e, 1) != 0)
			return -1;
		rt_pvm_wire_byte(e->out,
				 lua_toboolean(e->L, idx) ? RT_PVM_WIRE_TRUE : RT_PVM_WIRE_FALSE);
		return 0;
	case LUA_TNUMBER:
		if (enc_room(e, 9) != 0)
			return -1;
		rt_pvm_wire_number(e->out, lua_tonumber(e->L, idx));
		return 0;
	case LUA_TSTRING:
		s = lua_tolstring(e->L, idx, &len);
		if (len > e->lim->max_string)
			return rt_pvm_enc_fail(e, "a string of %zu bytes exceeds the limit of %zu",
					       len, e->lim->max_string);
		if (enc_room(e, 5 + len) != 0)
			return -1;
		rt_pvm_wire_string(e->out, s, len);
		return 0;
	case LUA_TTABLE:
		return enc_table(e, idx, depth);
	default:
		return rt_pvm_enc_fail(e,
				       "a %s value cannot be copied (only nil, booleans, numbers, "
				       "strings and tables of them)",
				       luaL_typename(e->L, idx));
	}
}

int rt_pvm_encode(lua_State *L, int idx, const struct rt_pvm_wire_limits *lim, const char *root,
		  struct rt_pvm_buf *out, char *err, size_t errlen)
{
	struct rt_pvm_enc e;

	rt_pvm_enc_init(&e, L, lim, out, root);
	int top = lua_gettop(L);
	int rc = rt_pvm_enc_value(&e, idx, 0);
	lua_settop(L, top);
	if (rc == 0 && out->oom)
		rc = rt_pvm_enc_fail(&e, "out of memory");
	if (rc != 0)
		snprintf(err, errlen, "%s", e.err);
	return rc;
}

/* ---- decoding ---- */

struct dec {
	lua_State *L;
	const unsigned char *p, *end;
	const struct rt_pvm_wire_limits *lim;
	size_t items;
	char *err;
	size_t errlen;
};

static int dec_fail(struct dec *d, const char *what)
{
	snprintf(d->err, d->errlen, "malformed policy data: %s", what);
	return -1;
}

static int dec_value(struct dec *d, int depth, bool as_key);

static int dec_table(struct dec *d, int depth)
{
	if (depth >= d->lim->max_depth)
		return dec_fail(d, "tables nested too deep");
	lua_newtable(d->L);
	for (;;) {
		if (d->p >= d->end)
			return dec_fail(d, "a table without its end");
		if (*d->p == RT_PVM_WIRE_CLOSE) {
			d->p++;
			return 0;
		}
		if (++d->items > d->lim->max_items)
			return dec_fail(d, "too many table entries");
		if (dec_value(d, depth + 1, true) != 0 || dec_value(d, depth + 1, false) != 0)
			return -1;
		if (lua_isnil(d->L, -1))
			return dec_fail(d, "a nil value in a table");
		lua_rawset(d->L, -3);
	}
}

static int dec_value(struct dec *d, int depth, bool as_key)
{
	uint32_t n;
	double v;

	if (d->p >= d->end)
		return dec_fail(d, "truncated");
	char tag = (char)*d->p++;
	if (as_key && (tag == RT_PVM_WIRE_NIL || tag == RT_PVM_WIRE_OPEN))
		return dec_fail(d, "a nil or table key");
	switch (tag) {
	case RT_PVM_WIRE_NIL:
		lua_pushnil(d->L);
		return 0;
	case RT_PVM_WIRE_FALSE:
	case RT_PVM_WIRE_TRUE:
		lua_pushboolean(d->L, tag == RT_PVM_WIRE_TRUE);
		return 0;
	case RT_PVM_WIRE_NUMBER:
		if ((size_t)(d->end - d->p) < sizeof(v))
			return dec_fail(d, "truncated number");
		memcpy(&v, d->p, sizeof(v));
		d->p += sizeof(v);
		if (as_key && isnan(v))
			return dec_fail(d, "a NaN key");
		lua_pushnumber(d->L, v);
		return 0;
	case RT_PVM_WIRE_STRING:
		if ((size_t)(d->end - d->p) < sizeof(n))
			return dec_fail(d, "truncated string length");
		memcpy(&n, d->p, sizeof(n));
		d->p += sizeof(n);
		if (n > d->lim->max_string)
			return dec_fail(d, "a string over the limit");
		if ((size_t)(d->end - d->p) < n)
			return dec_fail(d, "truncated string");
		lua_pushlstring(d->L, (const char *)d->p, n);
		d->p += n;
		return 0;
	case RT_PVM_WIRE_OPEN:
		return dec_table(d, depth);
	default:
		return dec_fail(d, "an unknown tag");
	}
}

int rt_pvm_decode(lua_State *L, const char *data, size_t len, const struct rt_pvm_wire_limits *lim,
		  char *err, size_t errlen)
{
	struct dec d = {
		L,     (const unsigned char *)data, (const unsigned char *)data + len, lim, 0, err,
		errlen
	};
	int top = lua_gettop(L);

	if (len > lim->max_bytes) {
		snprintf(err, errlen, "malformed policy data: more than %zu bytes", lim->max_bytes);
		return -1;
	}
	luaL_checkstack(L, 3 * lim->max_depth + 8, "policy data");
	if (dec_value(&d, 0, false) != 0 ||
	    (d.p != d.end && dec_fail(&d, "bytes after the value") != 0)) {
		lua_settop(L, top);
		return -1;
	}
	return 0;
}

void rt_pvm_wire_limits_of(const struct rt_pvm_limits *l, struct rt_pvm_wire_limits *out)
{
	out->max_depth = l->max_depth;
	out->max_items = l->max_items;
	out->max_string = l->max_string;
	out->max_bytes = l->max_bytes;
}
