/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DCAP ECDSA quotes parsed in place: TDX v4 and v5 (TD report 1.0 and 1.5 bodies), SGX v3 and
 * v4, every length checked, trailing bytes after the signature data tolerated (real quotes
 * carry zero padding). Also the PEM PCK chain they embed (subjects, validity, SGX extension).
 * Layouts: spec/guest-and-attestation.md §3.
 */
#ifndef MOONSTACK_TDX_QUOTE_H
#define MOONSTACK_TDX_QUOTE_H

#include "tdx/tdx.h"

/** Quote header size (all versions). */
#define TDX_QUOTE_HEADER_LEN 48
/** SGX report body (also the QE report) size. */
#define TDX_ENCLAVE_REPORT_LEN 384
/** TD report 1.0 body size. */
#define TDX_TD10_REPORT_LEN 584
/** TD report 1.5 body size. */
#define TDX_TD15_REPORT_LEN 648
/** tee_type of a TDX quote. */
#define TDX_TEE_TYPE_TDX 0x00000081u
/** tee_type of an SGX quote. */
#define TDX_TEE_TYPE_SGX 0x00000000u
/** attestation_key_type ECDSA-256 with P-256 (the only one supported). */
#define TDX_ATT_KEY_ECDSA_P256 2

/** Body types (v5 body_type; derived from tee_type for v3/v4). */
enum tdx_body_type {
	TDX_BODY_SGX = 1,  /**< SGX enclave report, 384 B */
	TDX_BODY_TD10 = 2, /**< TD report 1.0, 584 B */
	TDX_BODY_TD15 = 3, /**< TD report 1.5, 648 B */
};

/** Certification data types. */
enum tdx_cert_type {
	TDX_CERT_PPID_PLAIN = 1,	/**< PPID in clear text */
	TDX_CERT_PPID_RSA2048 = 2,	/**< PPID encrypted with RSA-2048-OAEP */
	TDX_CERT_PPID_RSA3072 = 3,	/**< PPID encrypted with RSA-3072-OAEP */
	TDX_CERT_PCK_LEAF = 4,		/**< PCK leaf certificate */
	TDX_CERT_PCK_CHAIN = 5,		/**< PEM chain: PCK leaf, intermediate, root */
	TDX_CERT_QE_REPORT = 6,		/**< QE report certification data (wraps another type) */
	TDX_CERT_PLATFORM_MANIFEST = 7, /**< platform manifest */
};

/** Quote header (48 B). Pointers point into the quote. */
struct tdx_quote_header {
	uint16_t version;	     /**< 3, 4 or 5 */
	uint16_t att_key_type;	     /**< 2 = ECDSA-256 P-256 */
	uint32_t tee_type;	     /**< 0x81 TDX, 0 SGX */
	uint16_t qe_svn;	     /**< reserved in TDX quotes */
	uint16_t pce_svn;	     /**< reserved in TDX quotes */
	const uint8_t *qe_vendor_id; /**< 16 B */
	const uint8_t *user_data;    /**< 20 B (first 16 = QE ID) */
};

/** SGX enclave report body (384 B): an SGX quote's body or the QE report. */
struct tdx_enclave_report {
	const uint8_t *raw;	    /**< the 384 bytes */
	const uint8_t *cpu_svn;	    /**< 16 B */
	uint32_t misc_select;	    /**< MISCSELECT */
	const uint8_t *attributes;  /**< 16 B */
	const uint8_t *mr_enclave;  /**< 32 B */
	const uint8_t *mr_signer;   /**< 32 B */
	uint16_t isv_prod_id;	    /**< ISVPRODID */
	uint16_t isv_svn;	    /**< ISVSVN */
	const uint8_t *report_data; /**< 64 B */
};

/** TD report body (TD 1.0: 584 B; TD 1.5 adds tee_tcb_svn2 and mr_servicetd). */
struct tdx_td_report {
	const uint8_t *tee_tcb_svn;	     /**< 16 B */
	const uint8_t *mr_seam;		     /**< 48 B */
	const uint8_t *mr_signer_seam;	     /**< 48 B */
	const uint8_t *seam_attributes;	     /**< 8 B */
	const uint8_t *td_attributes;	     /**< 8 B */
	const uint8_t *xfam;		     /**< 8 B */
	const uint8_t *mr_td;		     /**< 48 B (MRTD) */
	const uint8_t *mr_config_id;	     /**< 48 B */
	const uint8_t *mr_owner;	     /**< 48 B */
	const uint8_t *mr_owner_config;	     /**< 48 B */
	const uint8_t *rtmr[TDX_RTMR_COUNT]; /**< 48 B each */
	const uint8_t *report_data;	     /**< 64 B */
	const uint8_t *tee_tcb_svn2;	     /**< 16 B, TD 1.5 only (else NULL) */
	const uint8_t *mr_servicetd;	     /**< 48 B, TD 1.5 only (else NULL) */
};

/**
 * A parsed quote. Every pointer points into the buffer given to tdx_quote_parse(), which must
 * outlive this struct.
 */
struct tdx_quote {
	const uint8_t *data;		/**< the whole input */
	size_t len;			/**< its length (including trailing bytes) */
	struct tdx_quote_header header; /**< the header */
	enum tdx_body_type body_type;	/**< what the body holds */
	uint32_t body_size;		/**< body size */
	size_t body_offset;		/**< 48 (v3/v4) or 54 (v5) */
	struct tdx_td_report td;	/**< the body, for TDX quotes */
	struct tdx_enclave_report sgx;	/**< the body, for SGX quotes */
	size_t signed_len;		/**< the quote signature covers bytes [0, signed_len) */
	uint32_t sig_data_len;		/**< size of the signature data after the u32 length */
	size_t sig_data_offset;		/**< offset of the signature data */
	const uint8_t *signature;	/**< 64 B ECDSA r||s over [0, signed_len) */
	const uint8_t *attestation_key; /**< 64 B raw P-256 x||y */
	uint16_t cert_type;		/**< outer certification data type */
	uint32_t cert_size;		/**< outer certification data size */
	const uint8_t *cert_data;	/**< outer certification data */
	bool has_qe_report;		/**< QE report present (type 6, or v3 inline) */
	struct tdx_enclave_report qe_report; /**< the QE report */
	const uint8_t *qe_report_signature;  /**< 64 B r||s by the PCK key over the QE report */
	uint16_t qe_auth_size;		     /**< QE authentication data size */
	const uint8_t *qe_auth_data;	     /**< QE authentication data */
	uint16_t inner_cert_type;	     /**< type inside type 6 (0 if no type 6) */
	uint32_t inner_cert_size;	     /**< its size */
	const uint8_t *inner_cert_data;	     /**< its data */
	const char *pck_chain; /**< PEM chain (type 5, innermost), NULs trimmed, or NULL */
	size_t pck_chain_len;  /**< its length */
	size_t end;	       /**< offset just after the signature data */
	size_t trailing;       /**< bytes after @ref end */
	bool trailing_nonzero; /**< whether any trailing byte is non-zero */
};

/**
 * Parse the quote in @p data (@p len bytes) into @p q without copying. Every length is
 * checked against the input and against its container; on failure returns -EBADMSG with code
 * EQUOTE, the offset of the faulty field and a message naming it and the reason. Versions:
 * 3 (SGX), 4 (SGX or TDX), 5 (body type 1/2/3); attestation key type 2 only.
 */
int tdx_quote_parse(const uint8_t *data, size_t len, struct tdx_quote *q, struct tdx_error *err);

/**
 * Whether the QE report binds the attestation key: QE report_data == SHA-256(attestation key
 * || QE auth data) followed by 32 zero bytes. False if there is no QE report.
 */
bool tdx_quote_qe_hash_ok(const struct tdx_quote *q);

/** The SGX extension (OID 1.2.840.113741.1.13.1) of a PCK certificate. */
struct tdx_sgx_ext {
	uint8_t ppid[16];     /**< PPID */
	uint8_t cpusvn[16];   /**< CPUSVN */
	uint8_t tcb_comp[16]; /**< SGX TCB component SVNs 1..16 */
	uint16_t pcesvn;      /**< PCESVN */
	uint8_t pceid[2];     /**< PCE-ID */
	uint8_t fmspc[6];     /**< FMSPC */
	int sgx_type;	      /**< SGX type (0 standard, 1 scalable, ...), -1 if absent */
};

/** One certificate of a PEM chain. */
struct tdx_cert_info {
	char subject[512];	/**< "C=US,ST=CA,...,CN=..." in certificate order */
	char issuer[512];	/**< same format */
	char serial[80];	/**< "0x" + lowercase hex */
	char not_before[32];	/**< "YYYY-MM-DDTHH:MM:SS+00:00" */
	char not_after[32];	/**< same format */
	uint8_t sha256[32];	/**< SHA-256 of the DER */
	bool has_sgx_ext;	/**< whether @ref sgx is filled */
	struct tdx_sgx_ext sgx; /**< the SGX extension (PCK leaf) */
};

/**
 * Parse the PEM certificate chain @p pem (@p len bytes; trailing NULs and whitespace are
 * fine, anything else after the last certificate is an error). On success *@p certs (free()
 * it) holds *@p n entries in chain order. Errors: EQUOTE (malformed PEM/DER/extension),
 * ENOMEM.
 */
int tdx_pem_chain_parse(const char *pem, size_t len, struct tdx_cert_info **certs, size_t *n,
			struct tdx_error *err);

#endif
