/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event logs and RTMRs: the boot-time CCEL (a TCG PC-Client crypto-agile log), its conversion
 * to dstack's TdxEvent form, dstack runtime events (RTMR3) with their V1 and V2 digests, and
 * RTMR replay (SHA-384 extend from zero). spec/guest-and-attestation.md §5.
 */
#ifndef MOONSTACK_TDX_EVENTLOG_H
#define MOONSTACK_TDX_EVENTLOG_H

#include "tdx/tdx.h"

/** Event type of dstack runtime events (not a TCG type; V1 and V2 alike). */
#define TDX_RUNTIME_EVENT_TYPE 0x08000001u
/** TCG EV_NO_ACTION (the Spec ID header's type). */
#define TDX_EV_NO_ACTION 3u
/** TCG EV_PLATFORM_CONFIG_FLAGS (the type of the three "ACPI DATA" events). */
#define TDX_EV_PLATFORM_CONFIG_FLAGS 10u
/** Most digests (hash algorithms) an event may carry. */
#define TDX_TCG_MAX_ALGS 8
/** Largest event data (and digest count) accepted, as dstack. */
#define TDX_TCG_MAX_EVENT_SIZE 65536u
/** TCG algorithm ids. */
#define TDX_TPM_ALG_SHA1   0x0004
#define TDX_TPM_ALG_SHA256 0x000B
#define TDX_TPM_ALG_SHA384 0x000C
#define TDX_TPM_ALG_SHA512 0x000D

/** One digest of a TCG event; @ref value points into the log. */
struct tdx_tcg_digest {
	uint16_t alg;	      /**< TPM_ALG_ID */
	uint16_t size;	      /**< digest size */
	const uint8_t *value; /**< the digest */
};

/** One TCG_PCR_EVENT2 record; pointers point into the log. */
struct tdx_tcg_event {
	uint32_t mr_index;     /**< 1-based MR index for TDX CCEL (0 = MRTD); PCR index for TPM */
	uint32_t event_type;   /**< TCG event type */
	uint32_t digest_count; /**< number of digests */
	struct tdx_tcg_digest digests[TDX_TCG_MAX_ALGS]; /**< the digests */
	const uint8_t *data;				 /**< event data */
	uint32_t data_len;				 /**< its size */
	size_t offset;					 /**< where the record starts */
};

/** A digest algorithm declared by the Spec ID header. */
struct tdx_tcg_alg {
	uint16_t id;	      /**< TPM_ALG_ID */
	uint16_t digest_size; /**< its size */
};

/** A parsed TCG crypto-agile log. */
struct tdx_tcg_log {
	uint32_t header_mr_index;		   /**< first record's index */
	uint32_t header_event_type;		   /**< first record's type (EV_NO_ACTION) */
	uint32_t platform_class;		   /**< TCG_EfiSpecIDEvent.platformClass */
	uint8_t spec_version_minor;		   /**< specVersionMinor */
	uint8_t spec_version_major;		   /**< specVersionMajor */
	uint8_t spec_errata;			   /**< specErrata */
	uint8_t uintn_size;			   /**< uintnSize */
	uint32_t num_algs;			   /**< numberOfAlgorithms */
	struct tdx_tcg_alg algs[TDX_TCG_MAX_ALGS]; /**< the algorithms */
	uint8_t vendor_info_size;		   /**< vendorInfoSize */
	const uint8_t *vendor_info;		   /**< vendorInfo */
	struct tdx_tcg_event *events;		   /**< the records after the header (malloc'ed) */
	size_t count;				   /**< how many */
	size_t end; /**< offset where the log ends (0xFF fill or end of input) */
};

/**
 * Parse the TCG log in @p buf (@p len bytes; a CCEL table or a TPM binary_bios_measurements
 * file): the SHA-1-style Spec ID Event03 header, then TCG_PCR_EVENT2 records until the end of
 * input or an mrIndex of 0xFFFFFFFF (the 0xFF-filled unused area). Digest sizes come from the
 * header's algorithm table (or the well-known sizes); an unknown algorithm, a count above
 * TDX_TCG_MAX_ALGS or an event above TDX_TCG_MAX_EVENT_SIZE is an error (EEVENTLOG, with the
 * offset). Release with tdx_tcg_log_free().
 */
int tdx_tcg_parse(const uint8_t *buf, size_t len, struct tdx_tcg_log *log, struct tdx_error *err);

/** Free what tdx_tcg_parse() allocated (the struct itself is the caller's). */
void tdx_tcg_log_free(struct tdx_tcg_log *log);

/**
 * One event in dstack's TdxEvent form. Nothing is owned: @ref name and @ref payload point into
 * a log buffer, static strings or the caller's memory.
 */
struct tdx_event {
	uint32_t imr;		    /**< 0-based RTMR index */
	uint32_t event_type;	    /**< TCG type, or TDX_RUNTIME_EVENT_TYPE */
	uint8_t digest[TDX_MR_LEN]; /**< the digest (when @ref digest_len is 48) */
	size_t digest_len;	    /**< 48, or 0 for a stripped runtime event */
	const char *name;	    /**< `event`: "" for boot events, the name for runtime ones */
	size_t name_len;	    /**< its length */
	const uint8_t *payload;	    /**< `event_payload` */
	size_t payload_len;	    /**< its length */
	int version;		    /**< runtime event digest version: 1 or 2 */
};

/**
 * Convert a parsed CCEL to TdxEvents as dstack does: drop records with mrIndex 0 (MRTD),
 * require exactly one SHA-384 digest, imr = mrIndex - 1 (must be <= 3), name "", payload =
 * event data (pointing into the log's buffer). No ACPI labels (see tdx_events_label_acpi()).
 * On success *@p out (free() it) holds *@p n events. Errors: EEVENTLOG, ENOMEM.
 */
int tdx_ccel_to_events(const struct tdx_tcg_log *log, struct tdx_event **out, size_t *n,
		       struct tdx_error *err);

/** Name the first three "ACPI DATA" events (imr 0, type 10) acpi-loader, acpi-rsdp,
 *  acpi-tables, in order (dstack HEAD's labelling). */
void tdx_events_label_acpi(struct tdx_event *ev, size_t n);

/**
 * The digest preimage of a runtime event: V1 = u32le(0x08000001) ":" name ":" payload; V2 =
 * the RFC 8785 canonical JSON {"name":name,"payload":hex(payload),"type":134217729} (V2 needs
 * a valid UTF-8 name: EINVAL otherwise). On success *@p out (free() it) holds *@p out_len
 * bytes. Errors: EINVAL (version not 1/2, invalid UTF-8), ENOMEM.
 */
int tdx_runtime_preimage(int version, const char *name, size_t name_len, const uint8_t *payload,
			 size_t payload_len, uint8_t **out, size_t *out_len, struct tdx_error *err);

/** SHA-384 of tdx_runtime_preimage() into @p digest. Same errors. */
int tdx_runtime_digest(int version, const char *name, size_t name_len, const uint8_t *payload,
		       size_t payload_len, uint8_t digest[TDX_MR_LEN], struct tdx_error *err);

/** The digest an event extends its RTMR with: recomputed for runtime events, else its own
 *  48-byte digest. Errors: EEVENTLOG (no 48-byte digest), EINVAL (as tdx_runtime_digest). */
int tdx_event_digest(const struct tdx_event *ev, uint8_t digest[TDX_MR_LEN], struct tdx_error *err);

/** mr = SHA-384(mr || digest). */
void tdx_rtmr_extend(uint8_t mr[TDX_MR_LEN], const uint8_t digest[TDX_MR_LEN]);

/**
 * Replay @p n events into @p rtmr (each starts at 48 zero bytes; events extend their imr in
 * order with tdx_event_digest()). If @p until is not NULL, stop after the first runtime event
 * named @p until (dstack's boot-time value with "boot-mr-done"). Errors: EEVENTLOG (imr > 3,
 * missing digest; the message names the event index), EINVAL.
 */
int tdx_replay(const struct tdx_event *ev, size_t n, const char *until,
	       uint8_t rtmr[TDX_RTMR_COUNT][TDX_MR_LEN], struct tdx_error *err);

#endif
