/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the crypto cmocka tests: hex in and out, and finding and reading the
 * shared test vectors (env MOONSTACK_VECTORS, else $MOONSTACK_SRC/../shared/vectors).
 * Include after <cmocka.h>.
 */
#ifndef MOONSTACK_CRYPTO_TEST_UTIL_H
#define MOONSTACK_CRYPTO_TEST_UTIL_H

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

/* The shared vectors directory; fails the test with a clear message if it is missing. */
static inline const char *vectors_dir(void)
{
	static char path[4096];
	struct stat st;
	const char *env = getenv("MOONSTACK_VECTORS");

	if (env && *env) {
		snprintf(path, sizeof(path), "%s", env);
	} else {
		const char *src = getenv("MOONSTACK_SRC");
		snprintf(path, sizeof(path), "%s/../shared/vectors", src && *src ? src : ".");
	}
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		fail_msg("test vectors not found at %s: set MOONSTACK_VECTORS (or MOONSTACK_SRC so "
			 "that $MOONSTACK_SRC/../shared/vectors exists)",
			 path);
	return path;
}

/* Read the vectors file @p rel (relative to vectors_dir()); NUL-terminated, free() it. */
static inline char *read_vector(const char *rel, size_t *len)
{
	char path[4608];
	snprintf(path, sizeof(path), "%s/%s", vectors_dir(), rel);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open test vector %s", path);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	assert_true(size >= 0);
	char *buf = malloc((size_t)size + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	buf[size] = '\0';
	if (len)
		*len = (size_t)size;
	return buf;
}

#endif
