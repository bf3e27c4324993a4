/* SPDX-License-Identifier: Apache-2.0 */
/* A growable byte buffer and JSON string quoting, for log records and protocol replies. */
#ifndef MOONSTACK_RT_JSON_H
#define MOONSTACK_RT_JSON_H

#include <stddef.h>

/** A growable buffer. Zero-initialise; free with rt_buf_free(). On allocation failure the
 *  buffer is marked failed (data freed, len 0) and further appends are ignored. */
struct rt_buf {
	char *data;
	size_t len;
	size_t cap;
	int failed;
};

/** Append @p len bytes. Returns 0 or -1 (allocation failure). */
int rt_buf_add(struct rt_buf *b, const void *p, size_t len);

/** Append a NUL-terminated string. */
int rt_buf_puts(struct rt_buf *b, const char *s);

/** Append one byte. */
int rt_buf_putc(struct rt_buf *b, char c);

/** Append printf-formatted text. */
int rt_buf_printf(struct rt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Free the buffer's memory and reset it. */
void rt_buf_free(struct rt_buf *b);

/**
 * Append @p s (@p len bytes) as a JSON string literal with quotes. Control characters and
 * bytes that are not valid UTF-8 are escaped (invalid bytes become U+FFFD).
 */
int rt_json_quote(struct rt_buf *b, const char *s, size_t len);

#endif
