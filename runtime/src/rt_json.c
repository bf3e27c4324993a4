/* SPDX-License-Identifier: Apache-2.0 */
/* Growable buffer and JSON string quoting (see rt_json.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "rt_json.h"

static int buf_reserve(struct rt_buf *b, size_t extra)
{
	if (b->failed)
		return -1;
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 128;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		free(b->data);
		b->data = NULL;
		b->len = b->cap = 0;
		b->failed = 1;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int rt_buf_add(struct rt_buf *b, const void *p, size_t len)
{
	if (buf_reserve(b, len))
		return -1;
	if (len) // lws hands an empty body as (NULL, 0): memcpy must not see NULL
		memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int rt_buf_puts(struct rt_buf *b, const char *s)
{
	return rt_buf_add(b, s, strlen(s));
}

int rt_buf_putc(struct rt_buf *b, char c)
{
	return rt_buf_add(b, &c, 1);
}

int rt_buf_printf(struct rt_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n))
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void rt_buf_free(struct rt_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

size_t rt_utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t n;
	unsigned int cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

int rt_json_quote(struct rt_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	rt_buf_putc(b, '"');
	while (i < len) {
		unsigned char c = p[i];
		switch (c) {
		case '"':
			rt_buf_puts(b, "\\\"");
			i++;
			continue;
		case '\\':
			rt_buf_puts(b, "\\\\");
			i++;
			continue;
		case '\n':
			rt_buf_puts(b, "\\n");
			i++;
			continue;
		case '\r':
			rt_buf_puts(b, "\\r");
			i++;
			continue;
		case '\t':
			rt_buf_puts(b, "\\t");
			i++;
			continue;
		default:
			break;
		}
		if (c < 0x20 || c == 0x7F) {
			rt_buf_printf(b, "\\u%04x", c);
			i++;
			continue;
		}
		size_t n = rt_utf8_seq_len(p + i, len - i);
		if (n == 0) {
			rt_buf_puts(b, "\\ufffd");
			i++;
			continue;
		}
		rt_buf_add(b, p + i, n);
		i += n;
	}
	return rt_buf_putc(b, '"');
}
