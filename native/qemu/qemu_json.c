/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A strict, bounded JSON checker for QMP lines (qemu_json.h): recursive descent with a depth
 * limit, strings checked for escapes, control characters and UTF-8, numbers per RFC 8259.
 */
#include <string.h>

#include "moonstack/rt_base.h"
#include "qemu/qemu_json.h"

struct scan {
	const unsigned char *s;
	size_t len, pos;
};

static void skip_ws(struct scan *c)
{
	while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' ||
				   c->s[c->pos] == '\n' || c->s[c->pos] == '\r'))
		c->pos++;
}

static bool is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool is_hex(unsigned char ch)
{
	return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* A string at c->pos (the opening quote); sets start and end to its raw content. */
static int scan_string(struct scan *c, size_t *start, size_t *end)
{
	if (c->pos >= c->len || c->s[c->pos] != '"')
		return -1;
	c->pos++;
	*start = c->pos;
	while (c->pos < c->len) {
		unsigned char ch = c->s[c->pos];
		if (ch == '"') {
			*end = c->pos++;
			return 0;
		}
		if (ch < 0x20)
			return -1;
		if (ch == '\\') {
			if (c->pos + 1 >= c->len)
				return -1;
			unsigned char e = c->s[c->pos + 1];
			if (e == 'u') {
				if (c->pos + 6 > c->len)
					return -1;
				for (size_t i = 2; i < 6; i++)
					if (!is_hex(c->s[c->pos + i]))
						return -1;
				c->pos += 6;
			} else if (strchr("\"\\/bfnrt", e) && e) {
				c->pos += 2;
			} else {
				return -1;
			}
			continue;
		}
		if (ch < 0x80) {
			c->pos++;
			continue;
		}
		size_t n = rt_utf8_seq_len(c->s + c->pos, c->len - c->pos);
		if (n == 0)
			return -1;
		c->pos += n;
	}
	return -1;
}

/* A number; is_uint: a plain non-negative integer that fits 64 bits, then in value. */
static int scan_number(struct scan *c, bool *is_uint, uint64_t *value)
{
	size_t p = c->pos;
	bool neg = false, frac = false, overflow = false;
	uint64_t v = 0;
	if (p < c->len && c->s[p] == '-') {
		neg = true;
		p++;
	}
	if (p >= c->len || !is_digit(c->s[p]))
		return -1;
	if (c->s[p] == '0') {
		p++;
	} else {
		while (p < c->len && is_digit(c->s[p])) {
			uint64_t d = (uint64_t)(c->s[p] - '0');
			if (v > (UINT64_MAX - d) / 10)
				overflow = true;
			v = v * 10 + d;
			p++;
		}
	}
	if (p < c->len && c->s[p] == '.') {
		frac = true;
		p++;
		if (p >= c->len || !is_digit(c->s[p]))
			return -1;
		while (p < c->len && is_digit(c->s[p]))
			p++;
	}
	if (p < c->len && (c->s[p] == 'e' || c->s[p] == 'E')) {
		frac = true;
		p++;
		if (p < c->len && (c->s[p] == '+' || c->s[p] == '-'))
			p++;
		if (p >= c->len || !is_digit(c->s[p]))
			return -1;
		while (p < c->len && is_digit(c->s[p]))
			p++;
	}
	c->pos = p;
	*is_uint = !neg && !frac && !overflow;
	*value = v;
	return 0;
}

static int scan_literal(struct scan *c, const char *word)
{
	size_t n = strlen(word);
	if (c->len - c->pos < n || memcmp(c->s + c->pos, word, n) != 0)
		return -1;
	c->pos += n;
	return 0;
}

static int scan_value(struct scan *c, int depth, bool *is_uint, uint64_t *num);

static bool key_is(const struct scan *c, size_t start, size_t end, const char *key)
{
	size_t n = strlen(key);
	return end - start == n && memcmp(c->s + start, key, n) == 0;
}

/* After a member of an object or array closed by @close: 1 at ',' (another member follows), 0 at
 * @close (the container ends), -1 otherwise. Consumes what it saw. */
static int after_member(struct scan *c, char close)
{
	skip_ws(c);
	if (c->pos >= c->len)
		return -1;
	if (c->s[c->pos] == ',') {
		c->pos++;
		return 1;
	}
	if (c->s[c->pos] == close) {
		c->pos++;
		return 0;
	}
	return -1;
}

/* An object; at depth 1 (the top) record the members QMP framing looks at. */
static int scan_object(struct scan *c, int depth, struct qemu_json_top *top)
{
	if (depth > QEMU_JSON_MAX_DEPTH)
		return -1;
	c->pos++; // '{'
	skip_ws(c);
	if (c->pos < c->len && c->s[c->pos] == '}') {
		c->pos++;
		return 0;
	}
	for (;;) {
		size_t ks, ke;
		skip_ws(c);
		if (scan_string(c, &ks, &ke) < 0)
			return -1;
		skip_ws(c);
		if (c->pos >= c->len || c->s[c->pos] != ':')
			return -1;
		c->pos++;
		skip_ws(c);
		bool is_uint = false;
		uint64_t num = 0;
		if (scan_value(c, depth, &is_uint, &num) < 0)
			return -1;
		if (top) {
			if (key_is(c, ks, ke, "QMP"))
				top->qmp = true;
			else if (key_is(c, ks, ke, "event"))
				top->event = true;
			else if (key_is(c, ks, ke, "return"))
				top->ret = true;
			else if (key_is(c, ks, ke, "error"))
				top->error = true;
			else if (key_is(c, ks, ke, "id")) {
				top->has_id = is_uint;
				top->id = num;
			}
		}
		int more = after_member(c, '}');
		if (more <= 0)
			return more;
	}
}

static int scan_array(struct scan *c, int depth)
{
	if (depth > QEMU_JSON_MAX_DEPTH)
		return -1;
	c->pos++; // '['
	skip_ws(c);
	if (c->pos < c->len && c->s[c->pos] == ']') {
		c->pos++;
		return 0;
	}
	for (;;) {
		bool is_uint;
		uint64_t num;
		skip_ws(c);
		if (scan_value(c, depth, &is_uint, &num) < 0)
			return -1;
		int more = after_member(c, ']');
		if (more <= 0)
			return more;
	}
}

static int scan_value(struct scan *c, int depth, bool *is_uint, uint64_t *num)
{
	*is_uint = false;
	if (c->pos >= c->len)
		return -1;
	size_t a, b;
	switch (c->s[c->pos]) {
	case '{':
		return scan_object(c, depth + 1, NULL);
	case '[':
		return scan_array(c, depth + 1);
	case '"':
		return scan_string(c, &a, &b);
	case 't':
		return scan_literal(c, "true");
	case 'f':
		return scan_literal(c, "false");
	case 'n':
		return scan_literal(c, "null");
	default:
		return scan_number(c, is_uint, num);
	}
}

int qemu_json_scan(const char *s, size_t len, struct qemu_json_top *top, size_t *where)
{
	struct scan c = { .s = (const unsigned char *)s, .len = len, .pos = 0 };
	memset(top, 0, sizeof(*top));
	skip_ws(&c);
	int rc = -1;
	if (c.pos < c.len && c.s[c.pos] == '{') {
		rc = scan_object(&c, 1, top);
		skip_ws(&c);
		if (rc == 0 && c.pos != c.len)
			rc = -1;
	}
	if (where)
		*where = c.pos;
	return rc;
}
