/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal to native/qemu: a strict JSON checker for one QMP line. It validates the whole
 * text (RFC 8259, UTF-8, nesting bounded) and reports the top-level members QMP framing
 * needs; decoding is left to Lua (cjson).
 */
#ifndef MOONSTACK_QEMU_JSON_H
#define MOONSTACK_QEMU_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Deepest nesting accepted (QMP answers nest a handful of levels). */
#define QEMU_JSON_MAX_DEPTH 64

/** What a top-level object holds. */
struct qemu_json_top {
	bool qmp;    /**< "QMP": the greeting */
	bool event;  /**< "event": an asynchronous event */
	bool ret;    /**< "return" */
	bool error;  /**< "error" */
	bool has_id; /**< "id" holds a non-negative integer that fits 64 bits */
	uint64_t id; /**< its value */
};

/**
 * Check that @p s (@p len bytes) is exactly one JSON object, surrounded by optional
 * whitespace, and fill @p top. Returns 0, or -1 with *@p where set to the offending byte.
 */
int qemu_json_scan(const char *s, size_t len, struct qemu_json_top *top, size_t *where);

#endif
