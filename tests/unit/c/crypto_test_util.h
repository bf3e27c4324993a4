/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the crypto cmocka tests: hex in and out, and finding and reading the
 * shared test vectors (env MOONSTACK_VECTORS, else $MOONSTACK_SRC/../shared/vectors).
 * Include after <cmocka.h>.
 */
#ifndef MOONSTACK_CRYPTO_TEST_UTIL_H
#define MOONSTACK_CRYPTO_TEST_UTIL_H

#include "test_vectors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static inline int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode @p hex (no prefix) into @p out (exactly strlen(hex)/2 bytes); fails the test on bad
 * input or when it does not fit in @p cap. Returns the number of bytes. */
static inline size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex);
	assert_int_equal(n % 2, 0);
	assert_true(n / 2 <= cap);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
		assert_true(hi >= 0 && lo >= 0);
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return n / 2;
}

/* Lowercase hex of @p n bytes into a static rotating buffer (4 slots, up to 512 bytes each). */
static inline const char *tohex(const uint8_t *p, size_t n)
{
	static char bufs[4][1025];
	static int slot;
	char *b = bufs[slot++ & 3];
	assert_true(n <= 512);
	for (size_t i = 0; i < n; i++)
		snprintf(b + 2 * i, 3, "%02x", p[i]);
	b[2 * n] = '\0';
	return b;
}

/* Assert that @p n bytes at @p p are the hex string @p hex. */
#define assert_hex_equal(p, n, hex) assert_string_equal(tohex((p), (n)), (hex))

#endif
