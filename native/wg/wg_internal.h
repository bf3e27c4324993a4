/* SPDX-License-Identifier: Apache-2.0 */
/* wg: helpers shared by the native's C files (not part of the API). */
#ifndef MOONSTACK_WG_INTERNAL_H
#define MOONSTACK_WG_INTERNAL_H

#include "wg/wg.h"

/** Fill @p err (if not NULL) with the stable code of errno @p e and a message; returns -@p e. */
int wg_fail(struct wg_error *err, int e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** The stable code of errno @p e ("EINVAL", ...; "EIO" for anything unlisted). */
const char *wg_code_of(int e);

#endif
