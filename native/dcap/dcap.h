/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dcap: Intel DCAP quote verification (TDX v4/v5, SGX v3) against collateral at a given time,
 * as a plain C API (no Lua; see dcap_lua.c). Verdicts follow Phala's dcap-qvl (Rust) and are
 * stricter where the peers are loose: CRL signatures and windows, TDX module identity, sorted
 * TCB levels, PCE ID, the QE report's zero padding, the whole PCK chain. Quotes are parsed by
 * native/tdx. Contract: README.md.
 *
 * Conventions: functions return 0 or -1 and, when @p err is not NULL, fill it with a stable
 * code (EQUOTE, ESIG, ECHAIN, ECRL, EEXPIRED, ETCB, EQEID, EATTR, ECOLLATERAL, EINVAL,
 * ENOMEM) and a message naming what failed and why. Objects are not thread-safe: use each
 * verifier and collateral from one thread at a time.
 */
#ifndef MOONSTACK_DCAP_H
#define MOONSTACK_DCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** SHA-256 fingerprint (hex) of the Intel SGX Root CA the verifier trusts by default. */
#define DCAP_INTEL_ROOT_SHA256 "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

/** Most advisory IDs a report carries (platform, TDX module and QE lists merged). */
#define DCAP_MAX_ADVISORIES 256

/** What went wrong. */
struct dcap_error {
	const char *code; /**< stable upper-case code (static string) */
	char msg[400];	  /**< human-readable reason */
};

/** TCB status, in increasing severity (the order statuses are merged in). */
enum dcap_tcb_status {
	DCAP_UP_TO_DATE = 0,				/**< UpToDate */
	DCAP_SW_HARDENING_NEEDED = 1,			/**< SWHardeningNeeded */
	DCAP_CONFIGURATION_NEEDED = 2,			/**< ConfigurationNeeded */
	DCAP_CONFIGURATION_AND_SW_HARDENING_NEEDED = 3, /**< ConfigurationAndSWHardeningNeeded */
	DCAP_OUT_OF_DATE = 4,				/**< OutOfDate */
	DCAP_OUT_OF_DATE_CONFIGURATION_NEEDED = 5,	/**< OutOfDateConfigurationNeeded */
	DCAP_REVOKED = 6,				/**< Revoked (a verification error) */
};

/** Intel's name of @p s ("UpToDate", ...). */
const char *dcap_tcb_status_name(enum dcap_tcb_status s);

/** The Intel SGX Root CA (DER) embedded in the binary; *@p len gets its size. */
const uint8_t *dcap_intel_root_ca(size_t *len);

/* ---- collateral ---- */

/**
 * The collateral of a quote, field by field, as dcap-qvl's QuoteCollateralV3 holds it but
 * with binary values decoded: PEM chains and JSON documents as text, CRLs as DER, signatures
 * as raw r||s (64 bytes). dcap_collateral_new() only reads it.
 */
struct dcap_collateral_input {
	char *pck_crl_issuer_chain;	     /**< PEM (optional; informational) */
	size_t pck_crl_issuer_chain_len;     /**< its length */
	uint8_t *root_ca_crl;		     /**< DER CRL issued by the root CA */
	size_t root_ca_crl_len;		     /**< its length */
	uint8_t *pck_crl;		     /**< DER CRL issued by the PCK CA */
	size_t pck_crl_len;		     /**< its length */
	char *tcb_info_issuer_chain;	     /**< PEM: TCB signing certificate, root */
	size_t tcb_info_issuer_chain_len;    /**< its length */
	char *tcb_info;			     /**< TCB info JSON, exactly as signed */
	size_t tcb_info_len;		     /**< its length */
	uint8_t *tcb_info_signature;	     /**< raw r||s */
	size_t tcb_info_signature_len;	     /**< 64 */
	char *qe_identity_issuer_chain;	     /**< PEM: TCB signing certificate, root */
	size_t qe_identity_issuer_chain_len; /**< its length */
	char *qe_identity;		     /**< QE identity JSON, exactly as signed */
	size_t qe_identity_len;		     /**< its length */
	uint8_t *qe_identity_signature;	     /**< raw r||s */
	size_t qe_identity_signature_len;    /**< 64 */
	char *pck_certificate_chain;	     /**< PEM PCK chain (optional: else the quote's) */
	size_t pck_certificate_chain_len;    /**< its length */
};

/**
 * Decode the QuoteCollateralV3 JSON object @p json (@p len bytes): CRLs and signatures as hex
 * strings, the rest as strings. Fills @p in with malloc'd copies (release with
 * dcap_collateral_input_free()). Unknown members are ignored; a missing or mistyped member is
 * ECOLLATERAL.
 */
int dcap_collateral_input_from_json(const char *json, size_t len, struct dcap_collateral_input *in,
				    struct dcap_error *err);

/** Free what dcap_collateral_input_from_json() allocated in @p in and zero it. */
void dcap_collateral_input_free(struct dcap_collateral_input *in);

/** Parsed, cached collateral: CRLs, issuer chains, TCB info and QE identity (levels sorted). */
struct dcap_collateral;

/**
 * Parse every item of @p in once (CRLs, PEM chains, the TCB info and QE identity JSON, whose
 * TCB levels are sorted as dcap-qvl sorts them) into *@p out (free with
 * dcap_collateral_free()). Signatures and chains are checked by dcap_verify(), which caches
 * what does not depend on the time. Errors: ECOLLATERAL, ENOMEM.
 */
int dcap_collateral_new(const struct dcap_collateral_input *in, struct dcap_collateral **out,
			struct dcap_error *err);

/** dcap_collateral_input_from_json() then dcap_collateral_new(). */
int dcap_collateral_from_json(const char *json, size_t len, struct dcap_collateral **out,
			      struct dcap_error *err);

/** Free @p c (NULL is fine). Reports that point into it become invalid. */
void dcap_collateral_free(struct dcap_collateral *c);

/** What a collateral says about itself (for caches and tools); times are unix seconds. */
struct dcap_collateral_info {
	const char *tee;		     /**< TCB info id: "TDX" or "SGX" */
	int tcb_info_version;		     /**< TCB info version */
	uint8_t fmspc[6];		     /**< TCB info FMSPC */
	uint8_t pce_id[2];		     /**< TCB info PCE ID */
	uint32_t tcb_evaluation_data_number; /**< TCB info evaluation data number */
	int64_t tcb_info_issue_date;	     /**< TCB info issueDate */
	int64_t tcb_info_next_update;	     /**< TCB info nextUpdate */
	const char *qe_identity_id;	     /**< "QE" or "TD_QE" */
	int64_t qe_identity_issue_date;	     /**< QE identity issueDate */
	int64_t qe_identity_next_update;     /**< QE identity nextUpdate */
	int64_t root_ca_crl_this_update;     /**< root CA CRL thisUpdate */
	int64_t root_ca_crl_next_update;     /**< root CA CRL nextUpdate */
	int64_t pck_crl_this_update;	     /**< PCK CRL thisUpdate */
	int64_t pck_crl_next_update;	     /**< PCK CRL nextUpdate */
	int64_t not_before;		     /**< latest issue/thisUpdate of the items above */
	int64_t not_after;		     /**< earliest nextUpdate of the items above */
};

/** Fill @p info from @p c (strings owned by @p c). */
void dcap_collateral_get_info(const struct dcap_collateral *c, struct dcap_collateral_info *info);

/* ---- verifier ---- */

/** Options of dcap_verifier_new(); zero = Intel's root, no simulator, no debug. */
struct dcap_verifier_opts {
	const uint8_t *root_ca; /**< DER or PEM root to trust; NULL = the Intel SGX Root CA */
	size_t root_ca_len;	/**< its length */
	bool simulator;		/**< trust @ref root_ca although it is not Intel's */
	bool allow_debug;	/**< accept debug TDs/enclaves (never a debug QE) */
	bool allow_service_td;	/**< accept a non-zero MRSERVICETD (TD 1.5) */
};

/** A verifier: the trusted root and caches of parsed, verified PCK chains. */
struct dcap_verifier;

/**
 * Create a verifier. Without @p o->root_ca it trusts the embedded Intel SGX Root CA, checked
 * against its pinned SHA-256 fingerprint. A given root must be Intel's (same fingerprint)
 * unless @p o->simulator is set; then reports say `simulated` (never for Intel's root). The
 * root must be a valid self-signed CA certificate. Errors: ECHAIN (not the Intel root, not a
 * self-signed CA), EINVAL (simulator without a root), ENOMEM.
 */
int dcap_verifier_new(const struct dcap_verifier_opts *o, struct dcap_verifier **out,
		      struct dcap_error *err);

/** Free @p v (NULL is fine). */
void dcap_verifier_free(struct dcap_verifier *v);

/** Whether @p v trusts a simulator root. */
bool dcap_verifier_simulated(const struct dcap_verifier *v);

/** The DER of the root @p v trusts; *@p len gets its size (owned by @p v). */
const uint8_t *dcap_verifier_root(const struct dcap_verifier *v, size_t *len);

/** The verdict on a quote. Byte fields are copies; advisory IDs point into the collateral. */
struct dcap_report {
	enum dcap_tcb_status status;	      /**< merged status (never Revoked) */
	enum dcap_tcb_status platform_status; /**< matched TCB level (with the TDX module's) */
	enum dcap_tcb_status qe_status;	      /**< QE identity TCB level */
	const char *advisory_ids[DCAP_MAX_ADVISORIES]; /**< platform, then module, then QE */
	size_t n_advisory_ids;			       /**< how many */
	const char *tcb_date;			       /**< tcbDate of the matched level */
	uint16_t quote_version;			       /**< 3, 4 or 5 */
	bool tdx;				       /**< TDX (else SGX) */
	bool td15;				       /**< TD report 1.5 body */
	bool simulated;				       /**< verified under a simulator root */
	uint8_t fmspc[6];			       /**< from the PCK certificate */
	uint8_t pce_id[2];			       /**< from the PCK certificate */
	uint8_t cpu_svn[16];			       /**< from the PCK certificate */
	uint16_t pce_svn;			       /**< from the PCK certificate */
	uint8_t ppid[16];			       /**< from the PCK certificate */
	uint16_t qe_isv_svn;			       /**< the QE report's ISVSVN */
	/* TDX body */
	uint8_t tee_tcb_svn[16];     /**< TEE_TCB_SVN */
	uint8_t mr_seam[48];	     /**< MRSEAM */
	uint8_t mr_signer_seam[48];  /**< MRSIGNERSEAM */
	uint8_t seam_attributes[8];  /**< SEAMATTRIBUTES */
	uint8_t td_attributes[8];    /**< TDATTRIBUTES */
	uint8_t xfam[8];	     /**< XFAM */
	uint8_t mr_td[48];	     /**< MRTD */
	uint8_t mr_config_id[48];    /**< MRCONFIGID */
	uint8_t mr_owner[48];	     /**< MROWNER */
	uint8_t mr_owner_config[48]; /**< MROWNERCONFIG */
	uint8_t rtmr[4][48];	     /**< RTMR0..3 */
	uint8_t tee_tcb_svn2[16];    /**< TEE_TCB_SVN2 (TD 1.5) */
	uint8_t mr_servicetd[48];    /**< MRSERVICETD (TD 1.5) */
	/* SGX body */
	uint8_t cpu_svn_report[16]; /**< the enclave's CPUSVN */
	uint32_t misc_select;	    /**< MISCSELECT */
	uint8_t attributes[16];	    /**< ATTRIBUTES */
	uint8_t mr_enclave[32];	    /**< MRENCLAVE */
	uint8_t mr_signer[32];	    /**< MRSIGNER */
	uint16_t isv_prod_id;	    /**< ISVPRODID */
	uint16_t isv_svn;	    /**< ISVSVN */
	/* both */
	uint8_t report_data[64]; /**< REPORTDATA */
};

/**
 * Verify the quote @p quote (@p len bytes; trailing bytes after the signature data are
 * ignored) against @p c at unix time @p now and fill @p r. See README.md for every check and
 * its order. Errors: EQUOTE (malformed or unsupported quote), ESIG (the quote, QE report,
 * TCB info or QE identity signature, or the QE report's binding of the attestation key),
 * ECHAIN (a certificate chain or the root), ECRL (a CRL's issuer, signature or window, or a
 * revoked certificate), EEXPIRED (TCB info, QE identity or a certificate outside its window),
 * ETCB (FMSPC/PCE ID/TEE mismatch, no matching TCB level, TDX module identity, Revoked),
 * EQEID (QE identity mismatch), EATTR (debug or reserved attributes, MRSERVICETD), ENOMEM.
 */
int dcap_verify(struct dcap_verifier *v, const uint8_t *quote, size_t len,
		struct dcap_collateral *c, int64_t now, struct dcap_report *r,
		struct dcap_error *err);

#endif
