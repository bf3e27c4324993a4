/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to native/qemu: the error helpers and the string checks every input goes through
 * (qemu_check.c), and the growable argv the builders fill.
 */
#ifndef MOONSTACK_QEMU_CHECK_H
#define MOONSTACK_QEMU_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "qemu/qemu.h"

/** Fill @p err with @p code and a printf message. Returns -@p e. */
int qemu_fail(struct qemu_error *err, int e, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/** Fill @p err with EINVAL and "FIELD: message". Returns -EINVAL. */
int qemu_bad(struct qemu_error *err, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** @p s is valid UTF-8 with no control character (C0, DEL) and at most @p max bytes. */
int qemu_check_text(struct qemu_error *err, const char *field, const char *s, size_t max);

/** A host path: present, absolute, at most @p max bytes, text as above. */
int qemu_check_path(struct qemu_error *err, const char *field, const char *s, size_t max);

/** A name of 1..@p max characters from [A-Za-z0-9_.-] (plus the bytes in @p extra). */
int qemu_check_name(struct qemu_error *err, const char *field, const char *s, size_t max,
		    const char *extra);

/** An IPv4 address in dotted form. */
int qemu_check_ipv4(struct qemu_error *err, const char *field, const char *s);

/** A growable NULL-terminated argv; on allocation failure it is marked and appends stop. */
struct qemu_argb {
	char **v;
	size_t n, cap;
	bool oom;
};

/** Append a copy of @p s. */
void qemu_argb_add(struct qemu_argb *b, const char *s);

/** Append printf-formatted text. */
void qemu_argb_addf(struct qemu_argb *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Hand the argv over to @p out (NULL-terminated). Returns 0 or -ENOMEM (all freed). */
int qemu_argb_finish(struct qemu_argb *b, struct qemu_argv *out, struct qemu_error *err);

#endif
