/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the TCG event log parser (a CCEL table or a TPM binary_bios_measurements
 * file, read from the firmware or sent by a remote party) and what follows it: conversion to
 * dstack's TdxEvents, the ACPI labels and a replay into RTMRs. Invariants beyond ASan/UBSan: a
 * failure has the code EEVENTLOG (or ENOMEM) and a message; a parsed log ends within the input,
 * its vendor info and every event's data lie inside the input; converted events have imr <= 3
 * and a 48-byte digest; the replay of the converted events succeeds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tdx/tdx.h"
#include "tdx/tdx_eventlog.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static int is_code(const struct tdx_error *err, const char *a, const char *b)
{
	return err->code && (!strcmp(err->code, a) || !strcmp(err->code, b)) && err->msg[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct tdx_tcg_log log;
	struct tdx_error err = { 0 };
	struct tdx_event *ev = NULL;
	size_t n = 0;
	uint8_t rtmr[TDX_RTMR_COUNT][TDX_MR_LEN];

	memset(&log, 0, sizeof(log));
	if (tdx_tcg_parse(data, len, &log, &err) != 0) {
		CHECK(is_code(&err, "EEVENTLOG", "ENOMEM"));
		tdx_tcg_log_free(&log);
		return 0;
	}
	CHECK(log.end <= len);
	if (log.vendor_info_size)
		CHECK(log.vendor_info >= data &&
		      log.vendor_info + log.vendor_info_size <= data + len);
	for (size_t i = 0; i < log.count; i++)
		if (log.events[i].data_len)
			CHECK(log.events[i].data >= data &&
			      log.events[i].data_len <= (size_t)(data + len - log.events[i].data));
	if (tdx_ccel_to_events(&log, &ev, &n, &err) != 0) {
		CHECK(is_code(&err, "EEVENTLOG", "ENOMEM"));
	} else {
		for (size_t i = 0; i < n; i++) {
			CHECK(ev[i].imr <= 3 && ev[i].digest_len == TDX_MR_LEN);
			if (ev[i].payload_len)
				CHECK(ev[i].payload >= data &&
				      ev[i].payload + ev[i].payload_len <= data + len);
		}
		tdx_events_label_acpi(ev, n);
		CHECK(tdx_replay(ev, n, NULL, rtmr, &err) == 0);
		free(ev);
	}
	tdx_tcg_log_free(&log);
	return 0;
}
