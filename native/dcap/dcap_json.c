/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small strict JSON reader (RFC 8259) for the collateral: a recursive-descent parser into a
 * tree of values, strings unescaped to UTF-8 (surrogate pairs joined), duplicate keys and
 * anything after the value rejected, nesting bounded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcap/dcap_internal.h"

#define MAX_DEPTH 64

struct parser {
	const char *p;
	size_t len, off;
	char *why;
	size_t whylen;
	int failed;
};

static int perr(struct parser *ps, const char *what)
{
	if (!ps->failed)
		snprintf(ps->why, ps->whylen, "%s at offset %zu", what, ps->off);
	ps->failed = 1;
	return -1;
}

static void skip_ws(struct parser *ps)
{
	while (ps->off < ps->len) {
		char c = ps->p[ps->off];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		ps->off++;
	}
}

static int peek(struct parser *ps)
{
	return ps->off < ps->len ? (unsigned char)ps->p[ps->off] : -1;
}

static int literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);
	if (ps->len - ps->off < n || memcmp(ps->p + ps->off, word, n) != 0)
		return perr(ps, "invalid literal");
	ps->off += n;
	return 0;
}

static int hex4(struct parser *ps, unsigned *out)
{
	unsigned v = 0;
	if (ps->len - ps->off < 4)
		return perr(ps, "truncated \\u escape");
	for (int i = 0; i < 4; i++) {
		char c = ps->p[ps->off++];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return perr(ps, "invalid \\u escape");
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* A string at the cursor (after the opening quote is checked); *out is malloc'd. */
static int string(struct parser *ps, char **out, size_t *outlen)
{
	size_t start = ++ps->off, end = start;
	bool escapes = false;

	/* Find the end first: the unescaped text is never longer than the escaped one. */
	while (end < ps->len && ps->p[end] != '"') {
		if ((unsigned char)ps->p[end] < 0x20) {
			ps->off = end;
			return perr(ps, "control character in string");
		}
		if (ps->p[end] == '\\') {
			escapes = true;
			end++;
		}
		end++;
	}
	if (end >= ps->len) {
		ps->off = ps->len;
		return perr(ps, "unterminated string");
	}
	char *o = malloc(end - start + 1);
	size_t n = 0;
	if (!o)
		return perr(ps, "out of memory");
	if (!escapes) {
		memcpy(o, ps->p + start, end - start);
		n = end - start;
		ps->off = end;
	}
	while (ps->off < end) {
		char c = ps->p[ps->off++];
		if (c != '\\') {
			o[n++] = c;
			continue;
		}
		c = ps->p[ps->off++];
		unsigned cp;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			o[n++] = c;
			break;
		case 'b':
			o[n++] = '\b';
			break;
		case 'f':
			o[n++] = '\f';
			break;
		case 'n':
			o[n++] = '\n';
			break;
		case 'r':
			o[n++] = '\r';
			break;
		case 't':
			o[n++] = '\t';
			break;
		case 'u':
			if (hex4(ps, &cp))
				goto fail;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				unsigned lo;
				if (ps->off + 2 > end || ps->p[ps->off] != '\\' ||
				    ps->p[ps->off + 1] != 'u') {
					perr(ps, "unpaired surrogate");
					goto fail;
				}
				ps->off += 2;
				if (hex4(ps, &lo))
					goto fail;
				if (lo < 0xDC00 || lo > 0xDFFF) {
					perr(ps, "invalid surrogate pair");
					goto fail;
				}
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				perr(ps, "unpaired surrogate");
				goto fail;
			}
			n += put_utf8(o + n, cp);
			break;
		default:
			ps->off--;
			perr(ps, "invalid escape");
			goto fail;
		}
	}
	o[n] = '\0';
	ps->off = end + 1;
	*out = o;
	*outlen = n;
	return 0;
fail:
	free(o);
	return -1;
}

static int number(struct parser *ps, double *out)
{
	size_t s = ps->off;
	const char *p = ps->p;
	size_t i = s;

	if (i < ps->len && p[i] == '-')
		i++;
	if (i < ps->len && p[i] == '0') {
		i++;
	} else if (i < ps->len && p[i] >= '1' && p[i] <= '9') {
		while (i < ps->len && p[i] >= '0' && p[i] <= '9')
			i++;
	} else {
		return perr(ps, "invalid number");
	}
	if (i < ps->len && p[i] == '.') {
		size_t d = ++i;
		while (i < ps->len && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == d)
			return perr(ps, "invalid number");
	}
	if (i < ps->len && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < ps->len && (p[i] == '+' || p[i] == '-'))
			i++;
		size_t d = i;
		while (i < ps->len && p[i] >= '0' && p[i] <= '9')
			i++;
		if (i == d)
			return perr(ps, "invalid number");
	}
	char buf[64];
	if (i - s >= sizeof(buf))
		return perr(ps, "number too long");
	memcpy(buf, p + s, i - s);
	buf[i - s] = '\0';
	*out = strtod(buf, NULL);
	ps->off = i;
	return 0;
}

static int value(struct parser *ps, struct dcap_json *v, int depth);

static int array(struct parser *ps, struct dcap_json *v, int depth)
{
	size_t cap = 0;

	v->type = DJ_ARRAY;
	ps->off++;
	skip_ws(ps);
	if (peek(ps) == ']') {
		ps->off++;
		return 0;
	}
	for (;;) {
		if (v->len == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct dcap_json *g = realloc(v->u.items, ncap * sizeof(*g));
			if (!g)
				return perr(ps, "out of memory");
			v->u.items = g;
			cap = ncap;
		}
		struct dcap_json *item = &v->u.items[v->len];
		memset(item, 0, sizeof(*item));
		v->len++;
		skip_ws(ps);
		if (value(ps, item, depth + 1))
			return -1;
		skip_ws(ps);
		int c = peek(ps);
		ps->off++;
		if (c == ']')
			return 0;
		if (c != ',') {
			ps->off--;
			return perr(ps, "expected ',' or ']'");
		}
	}
}

static int object(struct parser *ps, struct dcap_json *v, int depth)
{
	size_t cap = 0;

	v->type = DJ_OBJECT;
	ps->off++;
	skip_ws(ps);
	if (peek(ps) == '}') {
		ps->off++;
		return 0;
	}
	for (;;) {
		skip_ws(ps);
		if (peek(ps) != '"')
			return perr(ps, "expected a string key");
		if (v->len == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct dcap_json_member *g = realloc(v->u.members, ncap * sizeof(*g));
			if (!g)
				return perr(ps, "out of memory");
			v->u.members = g;
			cap = ncap;
		}
		struct dcap_json_member *m = &v->u.members[v->len];
		memset(m, 0, sizeof(*m));
		size_t key_off = ps->off;
		if (string(ps, &m->key, &m->key_len))
			return -1;
		v->len++;
		for (size_t i = 0; i + 1 < v->len; i++) {
			if (v->u.members[i].key_len == m->key_len &&
			    memcmp(v->u.members[i].key, m->key, m->key_len) == 0) {
				ps->off = key_off;
				return perr(ps, "duplicate key");
			}
		}
		skip_ws(ps);
		if (peek(ps) != ':')
			return perr(ps, "expected ':'");
		ps->off++;
		skip_ws(ps);
		if (value(ps, &m->value, depth + 1))
			return -1;
		skip_ws(ps);
		int c = peek(ps);
		ps->off++;
		if (c == '}')
			return 0;
		if (c != ',') {
			ps->off--;
			return perr(ps, "expected ',' or '}'");
		}
	}
}

static int value(struct parser *ps, struct dcap_json *v, int depth)
{
	if (depth > MAX_DEPTH)
		return perr(ps, "nesting too deep");
	switch (peek(ps)) {
	case '{':
		return object(ps, v, depth);
	case '[':
		return array(ps, v, depth);
	case '"':
		v->type = DJ_STRING;
		return string(ps, &v->u.str, &v->len);
	case 't':
		v->type = DJ_BOOL;
		v->u.b = true;
		return literal(ps, "true");
	case 'f':
		v->type = DJ_BOOL;
		return literal(ps, "false");
	case 'n':
		v->type = DJ_NULL;
		return literal(ps, "null");
	case -1:
		return perr(ps, "unexpected end of input");
	default:
		v->type = DJ_NUMBER;
		return number(ps, &v->u.num);
	}
}

int dcap_json_parse(const char *text, size_t len, struct dcap_json *out, char *why, size_t whylen)
{
	struct parser ps = { .p = text, .len = len, .why = why, .whylen = whylen };

	memset(out, 0, sizeof(*out));
	skip_ws(&ps);
	if (value(&ps, out, 0) == 0) {
		skip_ws(&ps);
		if (ps.off != ps.len)
			perr(&ps, "trailing characters after the JSON value");
	}
	if (ps.failed) {
		dcap_json_free(out);
		return -1;
	}
	return 0;
}

void dcap_json_free(struct dcap_json *j)
{
	if (!j)
		return;
	switch (j->type) {
	case DJ_STRING:
		free(j->u.str);
		break;
	case DJ_ARRAY:
		for (size_t i = 0; i < j->len; i++)
			dcap_json_free(&j->u.items[i]);
		free(j->u.items);
		break;
	case DJ_OBJECT:
		for (size_t i = 0; i < j->len; i++) {
			free(j->u.members[i].key);
			dcap_json_free(&j->u.members[i].value);
		}
		free(j->u.members);
		break;
	default:
		break;
	}
	memset(j, 0, sizeof(*j));
}

const struct dcap_json *dcap_json_get(const struct dcap_json *obj, const char *key)
{
	if (!obj || obj->type != DJ_OBJECT)
		return NULL;
	size_t n = strlen(key);
	for (size_t i = 0; i < obj->len; i++)
		if (obj->u.members[i].key_len == n && memcmp(obj->u.members[i].key, key, n) == 0)
			return &obj->u.members[i].value;
	return NULL;
}
