/* SPDX-License-Identifier: Apache-2.0 */
/* Files compiled into the binary (all of lua/moonstack and ui/), generated at build time. */
#ifndef MOONSTACK_RT_EMBEDDED_H
#define MOONSTACK_RT_EMBEDDED_H

#include <stddef.h>

/** One embedded file: its repo-relative path and its bytes (NUL-terminated). */
struct rt_embedded_file {
	const char *path;
	const unsigned char *data;
	size_t len;
};

/** Every embedded file, terminated by an entry whose path is NULL. */
extern const struct rt_embedded_file rt_embedded_files[];

/** The embedded file at repo-relative @p path, or NULL. */
const struct rt_embedded_file *rt_embedded_find(const char *path);

#endif
