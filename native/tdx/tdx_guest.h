/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Talking to a real TDX guest's kernel and host: quotes through configfs-tsm, the
 * /dev/tdx_guest ioctls (GET_REPORT0, EXTEND_RTMR, GET_QUOTE) behind an ops table, the host's
 * quote generation service (QGS) over a connected stream, and RTMRs through sysfs. Every path
 * is configurable so tests drive these against fake trees and fake services.
 * spec/guest-and-attestation.md §4.
 */
#ifndef MOONSTACK_TDX_GUEST_H
#define MOONSTACK_TDX_GUEST_H

#include "tdx/tdx.h"

/* ---- /dev/tdx_guest ioctls (Linux ABI) ---- */

/** _IOWR('T', 1, struct tdx_report_req): TDREPORT for report data. */
#define TDX_CMD_GET_REPORT0 0xC4405401u
/** _IOR('T', 3, struct tdx_extend_rtmr_req): extend an RTMR (0.5.x out-of-tree module). */
#define TDX_CMD_EXTEND_RTMR 0x80315403u
/** _IOW('T', 3, ...): the variant the 0.5.x module also accepts (tried on ENOTTY). */
#define TDX_CMD_EXTEND_RTMR_W 0x40315403u
/** _IOR('T', 4, struct tdx_quote_req): GetQuote TDVMCALL (historical; dstack does not use it). */
#define TDX_CMD_GET_QUOTE 0x80105404u
/** Default device path. */
#define TDX_GUEST_DEVICE "/dev/tdx_guest"
/** tdx_quote_hdr.version. */
#define TDX_GET_QUOTE_VERSION 1
/** tdx_quote_hdr.status while the host works on it. */
#define TDX_GET_QUOTE_IN_FLIGHT 0xFFFFFFFFFFFFFFFFull
/** Size of the GET_QUOTE shared buffer (header + data). */
#define TDX_GET_QUOTE_BUF_LEN (16 * 1024)

/** GET_REPORT0 argument (1088 B). */
struct tdx_report_req {
	uint8_t reportdata[TDX_REPORT_DATA_LEN]; /**< in */
	uint8_t tdreport[TDX_TDREPORT_LEN];	 /**< out */
};

/** EXTEND_RTMR argument (49 B, packed). */
struct tdx_extend_rtmr_req {
	uint8_t data[TDX_MR_LEN]; /**< the digest */
	uint8_t index;		  /**< RTMR index */
} __attribute__((packed));

/** GET_QUOTE argument: a user buffer holding struct tdx_quote_hdr + data. */
struct tdx_quote_req {
	uint64_t buf; /**< address of the buffer */
	uint64_t len; /**< its size */
};

/** GHCI GetQuote buffer header; data = u32 BE length + QGS message, replaced by the reply. */
struct tdx_quote_hdr {
	uint64_t version; /**< TDX_GET_QUOTE_VERSION */
	uint64_t status;  /**< 0 on success (set by the host) */
	uint32_t in_len;  /**< bytes of data sent */
	uint32_t out_len; /**< bytes of data returned */
	uint8_t data[];	  /**< payload */
};

/** How the ioctl layer reaches the kernel; tests substitute a fake. */
struct tdx_guest_ops {
	/** Open @p path read-write; return an fd or -errno. */
	int (*open)(void *ud, const char *path);
	/** ioctl(@p fd, @p req, @p arg); return 0 or -errno. */
	int (*ioctl)(void *ud, int fd, unsigned long req, void *arg);
	/** Close @p fd. */
	void (*close)(void *ud, int fd);
	void *ud; /**< passed to every op */
};

/** The real system calls. */
extern const struct tdx_guest_ops tdx_guest_sys_ops;

/** A TDX guest device: its path (NULL = TDX_GUEST_DEVICE) and ops (NULL = the real ones). */
struct tdx_guest_dev {
	const char *path;		 /**< device path */
	const struct tdx_guest_ops *ops; /**< how to reach it */
};

/**
 * GET_REPORT0: the TDREPORT binding @p report_data. Errors: ENOENT (no device), EDENIED,
 * ENOTSUP (not a TDX guest device), EIO.
 */
int tdx_guest_get_report(const struct tdx_guest_dev *dev,
			 const uint8_t report_data[TDX_REPORT_DATA_LEN],
			 uint8_t tdreport[TDX_TDREPORT_LEN], struct tdx_error *err);

/**
 * EXTEND_RTMR: RTMR[@p index] = SHA-384(RTMR || @p digest) by the TDX module (_IOR code, then
 * the _IOW code on ENOTTY). Errors: EINVAL (index > 3 or rejected), ENOENT, EDENIED, ENOTSUP,
 * EIO.
 */
int tdx_guest_extend_rtmr(const struct tdx_guest_dev *dev, unsigned index,
			  const uint8_t digest[TDX_MR_LEN], struct tdx_error *err);

/**
 * GET_QUOTE: send the QGS request for @p tdreport through the GetQuote TDVMCALL and decode
 * the reply. On success *@p quote (free() it) holds *@p len bytes. Errors: as above, plus
 * EPROTO (bad reply, non-zero status).
 */
int tdx_guest_get_quote(const struct tdx_guest_dev *dev, const uint8_t tdreport[TDX_TDREPORT_LEN],
			uint8_t **quote, size_t *len, struct tdx_error *err);

/* ---- host quote generation service (QGS) ---- */

/** QGS vsock port in dstack images (/etc/tdx-attest.conf `port=4050`). */
#define TDX_QGS_PORT 4050
/** vsock CID of the host. */
#define TDX_QGS_HOST_CID 2
/** A GET_QUOTE_REQ message: header (16) + report_size + id_list_size + TDREPORT. */
#define TDX_QGS_REQUEST_LEN (16 + 4 + 4 + TDX_TDREPORT_LEN)
/** Largest reply accepted. */
#define TDX_QGS_MAX_RESPONSE (16 * 1024)

/** Write the u32 BE length prefix and the GET_QUOTE_REQ message for @p tdreport into
 *  @p out (4 + TDX_QGS_REQUEST_LEN bytes). */
void tdx_qgs_encode_request(const uint8_t tdreport[TDX_TDREPORT_LEN],
			    uint8_t out[4 + TDX_QGS_REQUEST_LEN]);

/**
 * Decode a GET_QUOTE_RESP message @p msg (@p len bytes, without the length prefix): type 1,
 * error_code 0, sizes consistent, quote >= TDX_QUOTE_MIN_LEN. *@p quote points into @p msg.
 * Errors: EPROTO (with the offset).
 */
int tdx_qgs_decode_response(const uint8_t *msg, size_t len, const uint8_t **quote,
			    size_t *quote_len, struct tdx_error *err);

/**
 * One GET_QUOTE exchange over the connected stream @p fd (blocking I/O bounded by
 * @p timeout_ms overall): send the request, read the u32 BE length (<= TDX_QGS_MAX_RESPONSE)
 * and the reply, decode it. On success *@p quote (free() it) holds *@p len bytes. Errors:
 * ETIMEDOUT, EIO (connection), EPROTO.
 */
int tdx_qgs_exchange(int fd, const uint8_t tdreport[TDX_TDREPORT_LEN], int timeout_ms,
		     uint8_t **quote, size_t *len, struct tdx_error *err);

/** Connect a vsock stream to @p cid:@p port within @p timeout_ms; returns the fd or -errno. */
int tdx_qgs_connect_vsock(uint32_t cid, uint32_t port, int timeout_ms, struct tdx_error *err);

/** Connect a unix stream socket to @p path (a QGS bridged over a unix socket); fd or -errno. */
int tdx_qgs_connect_unix(const char *path, struct tdx_error *err);

/* ---- configfs-tsm ---- */

/** Points tdx_tsm_get_quote() calls its hook at (tests use them to race the kernel). */
enum tdx_tsm_step {
	TDX_TSM_LOCKED = 1, /**< inblob opened and locked */
	TDX_TSM_WRITTEN,    /**< report data written to inblob */
	TDX_TSM_GENERATION, /**< the new generation was seen */
	TDX_TSM_READ,	    /**< outblob was read */
};

/** configfs-tsm options. Zero-initialise; zero fields take the defaults in brackets. */
struct tdx_tsm_opts {
	const char *root;	   /**< prefix for the standard paths ["" = "/"] */
	const char *entry;	   /**< entry dir override (DCAP_TDX_QUOTE_CONFIGFS_PATH) [none] */
	const char *entry_name;	   /**< entry created under the report dir ["com.intel.dcap"] */
	unsigned poll_ms;	   /**< generation poll interval [10] */
	unsigned timeout_ms;	   /**< generation wait [5000] */
	unsigned busy_sleep_ms;	   /**< sleep after EBUSY/EINTR/ETIMEDOUT [10000] */
	unsigned busy_retries;	   /**< tries on those errors [3] */
	unsigned provider_retries; /**< polls for the provider file [5] */
	unsigned provider_wait_ms; /**< between those polls [20] */
	/** Called at each step (may be NULL). */
	void (*hook)(void *ud, enum tdx_tsm_step step, const char *entry);
	void *hook_ud; /**< passed to @ref hook */
};

/**
 * Resolve the configfs-tsm entry directory into @p out: the override (must be absolute,
 * shorter than 240 characters, a directory whose provider starts with "tdx_guest") or
 * <root>/sys/kernel/config/tsm/report/<entry_name>, created if absent, waiting for its
 * provider file. Errors: EINVAL (bad override), ENOENT (no tsm report dir, no provider),
 * ENOTSUP (another provider), EIO.
 */
int tdx_tsm_entry(const struct tdx_tsm_opts *opts, char *out, size_t outlen, struct tdx_error *err);

/**
 * Obtain a quote for @p report_data through configfs-tsm with dstack's exact sequence (flock
 * on inblob, generation g1, write 64 bytes, wait for g1 + 1, one read of outblob, generation
 * unchanged, 1020 < size < 8192), serialised process-wide. On success *@p quote (free() it)
 * holds *@p len bytes. Errors: as tdx_tsm_entry(), plus EBUSY (generation raced, device busy),
 * ETIMEDOUT, EIO (empty or odd-sized outblob).
 */
int tdx_tsm_get_quote(const struct tdx_tsm_opts *opts,
		      const uint8_t report_data[TDX_REPORT_DATA_LEN], uint8_t **quote, size_t *len,
		      struct tdx_error *err);

/* ---- sysfs measurements (in-tree driver) ---- */

/** Default measurements dir of the in-tree tdx_guest driver. */
#define TDX_SYSFS_MEASUREMENTS "/sys/devices/virtual/misc/tdx_guest/measurements"

/**
 * Extend RTMR @p index by writing the 48 raw bytes to <@p dir>/rtmr<index>:sha384. Errors:
 * EINVAL (index > 3, or the kernel says EINVAL), EDENIED (EPERM/EACCES), ENOENT, EIO.
 */
int tdx_sysfs_extend_rtmr(const char *dir, unsigned index, const uint8_t digest[TDX_MR_LEN],
			  struct tdx_error *err);

/** Read <@p dir>/<@p name>:sha384 (name "mrtd", "rtmr0".."rtmr3"; 48 raw bytes). Errors:
 *  EINVAL, ENOENT, EDENIED, EIO (short read). */
int tdx_sysfs_read_mr(const char *dir, const char *name, uint8_t out[TDX_MR_LEN],
		      struct tdx_error *err);

/** Serialises quote generation process-wide (the driver is not concurrent-safe). */
void tdx_quote_lock(void);

/** Release tdx_quote_lock(). */
void tdx_quote_unlock(void);

#endif
