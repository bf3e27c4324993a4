/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the C unit tests: finding and reading the shared test vectors (../shared/vectors). */
#ifndef MOONSTACK_TEST_VECTORS_H
#define MOONSTACK_TEST_VECTORS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cmocka.h>

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
static inline void *read_vector(const char *rel, size_t *len)
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
