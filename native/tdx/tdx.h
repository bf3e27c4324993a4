/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tdx: Intel TDX quotes, RTMRs and event logs as a plain C API (no Lua; see tdx_lua.c for the
 * binding). This umbrella header holds what every part shares (the error record, sizes) and
 * includes the per-concept headers: tdx_quote.h (parsing quotes in place, PCK chains),
 * tdx_eventlog.h (CCEL/TCG logs, runtime events, RTMR replay) and tdx_guest.h (configfs-tsm,
 * /dev/tdx_guest ioctls, the host quote service, sysfs RTMRs).
 *
 * Conventions: functions return 0 or a negative errno and, when @p err is not NULL, fill it
 * with a stable upper-case code, the byte offset where parsing failed (if any) and a message.
 */
#ifndef MOONSTACK_TDX_H
#define MOONSTACK_TDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Size of a TD measurement register (MRTD, RTMRn): SHA-384. */
#define TDX_MR_LEN 48
/** Number of RTMRs. */
#define TDX_RTMR_COUNT 4
/** Size of report_data in a TD report or quote. */
#define TDX_REPORT_DATA_LEN 64
/** Size of a TDREPORT (TDREPORT_STRUCT) as returned by GET_REPORT0. */
#define TDX_TDREPORT_LEN 1024
/** Quotes shorter than this (or equal) are rejected when obtained from a device/service. */
#define TDX_QUOTE_MIN_LEN 1020
/** Quotes of this size or more are rejected when obtained from configfs-tsm. */
#define TDX_QUOTE_MAX_LEN 8192

/** tdx_error.offset when no byte offset applies. */
#define TDX_NO_OFFSET ((size_t)-1)

/** What went wrong. Codes: EQUOTE (malformed quote), EEVENTLOG (malformed event log),
 *  EINVAL (bad argument), ENOENT, EBUSY, ETIMEDOUT, EIO, EPROTO (quote service protocol),
 *  EDENIED (permission), ENOTSUP (no such method/ioctl), ENOMEM. */
struct tdx_error {
	const char *code; /**< stable upper-case code (static string) */
	size_t offset;	  /**< byte offset in the input where parsing failed, or TDX_NO_OFFSET */
	char msg[320];	  /**< human-readable message (names the field and the reason) */
};

/**
 * Fill @p err (if not NULL) with @p code, @p offset and a printf-style message, and return
 * @p rc (a negative errno) so callers can write `return tdx_fail(err, -EBADMSG, ...)`.
 */
int tdx_fail(struct tdx_error *err, int rc, const char *code, size_t offset, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/** The stable code for a negative errno @p rc ("ENOENT", "EDENIED", "EBUSY", ..., "EIO"). */
const char *tdx_errno_code(int rc);

/** Write @p len bytes of @p in as lowercase hex plus a NUL into @p out (2 * len + 1 bytes). */
void tdx_hex(const uint8_t *in, size_t len, char *out);

/** SHA-384 of @p len bytes at @p data into @p out. Returns 0 or -ENOMEM. */
int tdx_sha384(const void *data, size_t len, uint8_t out[TDX_MR_LEN]);

/** SHA-256 of @p len bytes at @p data into @p out. Returns 0 or -ENOMEM. */
int tdx_sha256(const void *data, size_t len, uint8_t out[32]);

#include "tdx/tdx_eventlog.h"
#include "tdx/tdx_guest.h"
#include "tdx/tdx_quote.h"

#endif
