/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Input checks and the argv buffer shared by the QEMU command-line builders (qemu_check.h):
 * every string a launch description carries goes through one of these before it reaches argv.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt_base.h"
#include "qemu/qemu_check.h"

static void vfill(struct qemu_error *err, const char *code, const char *prefix, const char *fmt,
		  va_list ap)
{
	if (!err)
		return;
	snprintf(err->code, sizeof(err->code), "%s", code);
	size_t off = 0;
	if (prefix) {
		int n = snprintf(err->msg, sizeof(err->msg), "%s: ", prefix);
		off = n < 0 ? 0 : (size_t)n < sizeof(err->msg) ? (size_t)n : sizeof(err->msg) - 1;
	}
	vsnprintf(err->msg + off, sizeof(err->msg) - off, fmt, ap);
}

int qemu_fail(struct qemu_error *err, int e, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfill(err, code, NULL, fmt, ap);
	va_end(ap);
	return -e;
}

int qemu_bad(struct qemu_error *err, const char *field, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfill(err, "EINVAL", field, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int qemu_check_text(struct qemu_error *err, const char *field, const char *s, size_t max)
{
	if (!s)
		return qemu_bad(err, field, "is required");
	size_t len = strlen(s);
	if (len > max)
		return qemu_bad(err, field, "longer than %zu bytes", max);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return qemu_bad(err, field, "control character 0x%02x at byte %zu", c, i);
		size_t n = rt_utf8_seq_len((const unsigned char *)s + i, len - i);
		if (n == 0)
			return qemu_bad(err, field, "not valid UTF-8 at byte %zu", i);
		i += n;
	}
	return 0;
}

int qemu_check_path(struct qemu_error *err, const char *field, const char *s, size_t max)
{
	if (!s || !*s)
		return qemu_bad(err, field, "is required");
	if (s[0] != '/')
		return qemu_bad(err, field, "must be an absolute path");
	return qemu_check_text(err, field, s, max);
}

int qemu_check_name(struct qemu_error *err, const char *field, const char *s, size_t max,
		    const char *extra)
{
	if (!s || !*s)
		return qemu_bad(err, field, "is required");
	size_t len = strlen(s);
	if (len > max)
		return qemu_bad(err, field, "longer than %zu characters", max);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-' ||
			  (extra && c && strchr(extra, c));
		if (!ok)
			return qemu_bad(err, field,
					"character 0x%02x not allowed (A-Z a-z 0-9 _ . -%s%s)", c,
					extra ? " " : "", extra ? extra : "");
	}
	return 0;
}

int qemu_check_ipv4(struct qemu_error *err, const char *field, const char *s)
{
	struct in_addr a;
	if (!s || !*s)
		return qemu_bad(err, field, "is required");
	if (strlen(s) > 15 || inet_pton(AF_INET, s, &a) != 1)
		return qemu_bad(err, field, "not an IPv4 address");
	return 0;
}

static void argb_push(struct qemu_argb *b, char *s)
{
	if (!s) {
		b->oom = true;
		return;
	}
	if (b->n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		char **v = realloc(b->v, cap * sizeof(*v));
		if (!v) {
			free(s);
			b->oom = true;
			return;
		}
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = s;
	b->v[b->n] = NULL;
}

void qemu_argb_add(struct qemu_argb *b, const char *s)
{
	if (!b->oom)
		argb_push(b, strdup(s));
}

void qemu_argb_addf(struct qemu_argb *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	argb_push(b, s);
}

int qemu_argb_finish(struct qemu_argb *b, struct qemu_argv *out, struct qemu_error *err)
{
	if (b->oom || !b->v) {
		struct qemu_argv tmp = { .argv = b->v, .argc = b->n };
		qemu_argv_free(&tmp);
		*b = (struct qemu_argb){ 0 };
		return qemu_fail(err, ENOMEM, "ENOMEM", "out of memory building the command line");
	}
	out->argv = b->v;
	out->argc = b->n;
	*b = (struct qemu_argb){ 0 };
	return 0;
}

void qemu_argv_free(struct qemu_argv *a)
{
	if (!a || !a->argv)
		return;
	for (size_t i = 0; i < a->argc; i++)
		free(a->argv[i]);
	free(a->argv);
	a->argv = NULL;
	a->argc = 0;
}
