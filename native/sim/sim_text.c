/* SPDX-License-Identifier: Apache-2.0 */
/* Text helpers of the simulator: hex, the key=value state files, a growable byte buffer with
 * little-endian integers and JSON string quoting. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "sim/sim_internal.h"

void sim_hex(const uint8_t *in, size_t n, char *out, bool upper)
{
	rt_hex_encode(in, n, out, upper);
}

int sim_unhex(const char *in, size_t inlen, uint8_t *out, size_t n)
{
	return rt_hex_decode(in, inlen, out, n);
}

const char *sim_kv_find(const char *text, const char *key, size_t *vlen)
{
	size_t klen = strlen(key);
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		if (n > klen && line[0] != '#' && memcmp(line, key, klen) == 0 &&
		    line[klen] == '=') {
			size_t v = n - klen - 1;
			if (v > 0 && line[klen + v] == '\r')
				v--;
			*vlen = v;
			return line + klen + 1;
		}
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

int sim_kv_hex(const char *text, const char *key, uint8_t *out, size_t n)
{
	size_t vlen;
	const char *v = sim_kv_find(text, key, &vlen);
	return v ? sim_unhex(v, vlen, out, n) : -1;
}

int sim_kv_uint(const char *text, const char *key, unsigned long max, unsigned long *out)
{
	size_t vlen;
	const char *v = sim_kv_find(text, key, &vlen);
	if (!v || vlen == 0 || vlen > 10)
		return -1;
	unsigned long x = 0;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (unsigned long)(v[i] - '0');
	}
	if (x > max)
		return -1;
	*out = x;
	return 0;
}

static bool reserve(struct sim_buf *b, size_t n)
{
	if (b->failed)
		return false;
	if (b->cap - b->len > n)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len <= n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) {
		sim_buf_free(b);
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void sim_buf_add(struct sim_buf *b, const void *p, size_t n)
{
	if (n == 0 || !reserve(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void sim_buf_puts(struct sim_buf *b, const char *str)
{
	sim_buf_add(b, str, strlen(str));
}

void sim_buf_printf(struct sim_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		sim_buf_add(b, small, (size_t)n);
		return;
	}
	if (!reserve(b, (size_t)n + 1))
		return;
	va_start(ap, fmt);
	vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sim_buf_u16le(struct sim_buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	sim_buf_add(b, p, 2);
}

void sim_buf_u32le(struct sim_buf *b, uint32_t v)
{
	uint8_t p[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	sim_buf_add(b, p, 4);
}

void sim_buf_hex(struct sim_buf *b, const uint8_t *p, size_t n, bool upper)
{
	if (!reserve(b, 2 * n + 1))
		return;
	sim_hex(p, n, (char *)b->p + b->len, upper);
	b->len += 2 * n;
}

void sim_buf_json_str(struct sim_buf *b, const char *str)
{
	sim_buf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		switch (*p) {
		case '"':
			sim_buf_puts(b, "\\\"");
			break;
		case '\\':
			sim_buf_puts(b, "\\\\");
			break;
		case '\n':
			sim_buf_puts(b, "\\n");
			break;
		case '\r':
			sim_buf_puts(b, "\\r");
			break;
		case '\t':
			sim_buf_puts(b, "\\t");
			break;
		default:
			if (*p < 0x20)
				sim_buf_printf(b, "\\u%04x", *p);
			else
				sim_buf_add(b, p, 1);
		}
	}
	sim_buf_add(b, "\"", 1);
}

int sim_buf_finish(struct sim_buf *b, char **out, size_t *len)
{
	sim_buf_add(b, "", 1);
	if (b->failed) {
		sim_buf_free(b);
		*out = NULL;
		return SIM_ENOMEM;
	}
	*out = (char *)b->p;
	if (len)
		*len = b->len - 1;
	b->p = NULL;
	b->len = b->cap = 0;
	return 0;
}

void sim_buf_free(struct sim_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}
