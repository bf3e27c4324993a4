/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to native/dcap: the JSON reader, hex and time helpers, the parsed TCB info and QE
 * identity, TCB matching, certificates/CRLs/ECDSA, and the collateral object's layout.
 */
#ifndef MOONSTACK_DCAP_INTERNAL_H
#define MOONSTACK_DCAP_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dcap/dcap.h"
#include "tdx/tdx_quote.h"

/** Most TCB components a level may list (Intel: 16; more is a count mismatch). */
#define DCAP_MAX_COMPONENTS 32
/** Most certificates in a chain. */
#define DCAP_MAX_CHAIN 5

/** Fill @p err with @p code and a printf-style message; returns -1. */
int dcap_fail(struct dcap_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- JSON (dcap_json.c) ---- */

/** JSON value types. */
enum dcap_json_type { DJ_NULL, DJ_BOOL, DJ_NUMBER, DJ_STRING, DJ_ARRAY, DJ_OBJECT };

struct dcap_json_member;

/** A parsed JSON value; strings are NUL-terminated (and may hold NULs: see @ref len). */
struct dcap_json {
	enum dcap_json_type type; /**< the type */
	size_t len;		  /**< string length, array or object size */
	union {
		bool b;				  /**< DJ_BOOL */
		double num;			  /**< DJ_NUMBER */
		char *str;			  /**< DJ_STRING */
		struct dcap_json *items;	  /**< DJ_ARRAY */
		struct dcap_json_member *members; /**< DJ_OBJECT */
	} u;					  /**< the value */
};

/** One member of a JSON object. */
struct dcap_json_member {
	char *key;		/**< NUL-terminated key */
	size_t key_len;		/**< its length */
	struct dcap_json value; /**< its value */
};

/**
 * Parse the JSON text @p text (@p len bytes; RFC 8259, nothing but whitespace after the
 * value, duplicate keys rejected, nesting up to 64) into @p out (free with dcap_json_free()).
 * On failure returns -1 and writes the reason and offset to @p why.
 */
int dcap_json_parse(const char *text, size_t len, struct dcap_json *out, char *why, size_t whylen);

/** Free what dcap_json_parse() allocated in @p j. */
void dcap_json_free(struct dcap_json *j);

/** The member @p key of the object @p obj, or NULL (also when @p obj is not an object). */
const struct dcap_json *dcap_json_get(const struct dcap_json *obj, const char *key);

/* ---- hex and time (dcap_util.c) ---- */

/** Decode exactly @p outlen bytes of hex (either case) from @p hex (@p hexlen chars). */
int dcap_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t outlen);

/** Lowercase hex of @p len bytes into @p out (2 * len + 1 bytes). */
void dcap_hex(const uint8_t *in, size_t len, char *out);

/** Parse an RFC 3339 date-time ("2025-06-19T10:16:03Z", offsets and fractions allowed). */
int dcap_parse_time(const char *s, int64_t *out);

/** Format @p t as "YYYY-MM-DDTHH:MM:SSZ". */
void dcap_format_time(int64_t t, char out[32]);

/** Unix seconds of an ASN.1 time; false if it cannot be read. */
bool dcap_asn1_time(const ASN1_TIME *t, int64_t *out);

/* ---- TCB info and QE identity (dcap_tcbinfo.c) ---- */

/** A status with its advisory IDs (pointing into the parsed JSON). */
struct dcap_status_ids {
	enum dcap_tcb_status status; /**< the status */
	const char **ids;	     /**< advisory IDs */
	size_t n;		     /**< how many */
};

/** One TCB level of a TCB info. */
struct dcap_tcb_level {
	uint8_t sgx[DCAP_MAX_COMPONENTS]; /**< sgxtcbcomponents[].svn */
	size_t n_sgx;			  /**< how many */
	uint8_t tdx[DCAP_MAX_COMPONENTS]; /**< tdxtcbcomponents[].svn */
	size_t n_tdx;			  /**< how many */
	uint16_t pce_svn;		  /**< pcesvn */
	const char *tcb_date;		  /**< tcbDate */
	struct dcap_status_ids st;	  /**< tcbStatus, advisoryIDs */
	size_t json_index;		  /**< position in the JSON (for messages) */
};

/** One TCB level of a TDX module identity or of a QE identity. */
struct dcap_isv_level {
	uint16_t isvsvn;	   /**< tcb.isvsvn */
	const char *tcb_date;	   /**< tcbDate */
	struct dcap_status_ids st; /**< tcbStatus, advisoryIDs */
};

/** tdxModule or one of tdxModuleIdentities. */
struct dcap_module {
	const char *id;		       /**< "TDX_01" ... (NULL for tdxModule) */
	uint8_t mrsigner[48];	       /**< mrsigner */
	uint8_t attributes[8];	       /**< attributes */
	uint8_t attributes_mask[8];    /**< attributesMask */
	struct dcap_isv_level *levels; /**< tcbLevels, sorted by ISVSVN, highest first */
	size_t n_levels;	       /**< how many */
};

/** A parsed TCB info. */
struct dcap_tcb_info {
	struct dcap_json doc;		/**< the parsed JSON (owns every string) */
	const char *id;			/**< "TDX" or "SGX" */
	int version;			/**< version */
	int64_t issue_date;		/**< issueDate */
	int64_t next_update;		/**< nextUpdate */
	uint8_t fmspc[6];		/**< fmspc */
	uint8_t pce_id[2];		/**< pceId */
	uint32_t tcb_type;		/**< tcbType */
	uint32_t evaluation_number;	/**< tcbEvaluationDataNumber */
	struct dcap_tcb_level *levels;	/**< tcbLevels, canonically sorted */
	size_t n_levels;		/**< how many */
	bool has_module;		/**< tdxModule present */
	struct dcap_module module;	/**< tdxModule */
	struct dcap_module *identities; /**< tdxModuleIdentities */
	size_t n_identities;		/**< how many */
};

/** A parsed QE identity. */
struct dcap_qe_identity {
	struct dcap_json doc;	       /**< the parsed JSON (owns every string) */
	const char *id;		       /**< "QE" or "TD_QE" */
	int version;		       /**< version */
	int64_t issue_date;	       /**< issueDate */
	int64_t next_update;	       /**< nextUpdate */
	uint32_t evaluation_number;    /**< tcbEvaluationDataNumber */
	uint8_t miscselect[4];	       /**< miscselect */
	uint8_t miscselect_mask[4];    /**< miscselectMask */
	uint8_t attributes[16];	       /**< attributes */
	uint8_t attributes_mask[16];   /**< attributesMask */
	uint8_t mrsigner[32];	       /**< mrsigner */
	uint16_t isvprodid;	       /**< isvprodid */
	struct dcap_isv_level *levels; /**< tcbLevels, sorted by ISVSVN, highest first */
	size_t n_levels;	       /**< how many */
};

/** Parse a TCB info document (ECOLLATERAL on any malformed or missing field). */
int dcap_tcb_info_parse(const char *json, size_t len, struct dcap_tcb_info *ti,
			struct dcap_error *err);

/** Free @p ti. */
void dcap_tcb_info_free(struct dcap_tcb_info *ti);

/** Parse a QE identity document (ECOLLATERAL on any malformed or missing field). */
int dcap_qe_identity_parse(const char *json, size_t len, struct dcap_qe_identity *qi,
			   struct dcap_error *err);

/** Free @p qi. */
void dcap_qe_identity_free(struct dcap_qe_identity *qi);

/* ---- TCB matching (dcap_tcb.c) ---- */

/** Merge @p in into the report's status and advisory list (worse status wins, new IDs
 *  appended). ECOLLATERAL if the list overflows. */
int dcap_merge_status(enum dcap_tcb_status *status, struct dcap_report *r,
		      const struct dcap_status_ids *in, struct dcap_error *err);

/**
 * Match the platform: FMSPC, PCE ID, TCB info id/version vs the TEE, then the first TCB
 * level (in canonical order) that the PCK certificate's CPUSVN/PCESVN and, for TDX, the
 * TEE_TCB_SVN meet; then for TDX the module identity. Sets r->platform_status, advisories
 * and tcb_date. ETCB on any mismatch.
 */
int dcap_match_platform(const struct dcap_tcb_info *ti, const struct tdx_quote *q,
			const struct tdx_sgx_ext *pck, struct dcap_report *r,
			struct dcap_error *err);

/**
 * Check the QE report against the QE identity (id/version for the TEE, MRSIGNER, debug,
 * ISVPRODID, masked MISCSELECT and ATTRIBUTES: EQEID) and find its TCB level by ISVSVN
 * (ETCB if below every level). Sets @p out.
 */
int dcap_match_qe(const struct dcap_qe_identity *qi, bool tdx, const struct tdx_enclave_report *qe,
		  struct dcap_status_ids *out, struct dcap_error *err);

/* ---- certificates, CRLs, signatures (dcap_pki.c) ---- */

/** A certificate with what the checks read from it. */
struct dcap_cert {
	X509 *x;	    /**< the certificate */
	int64_t not_before; /**< notBefore (unix) */
	int64_t not_after;  /**< notAfter (unix) */
	uint8_t sha256[32]; /**< fingerprint */
	char cn[96];	    /**< subject CN (for messages) */
};

/** A PEM certificate chain, leaf first. */
struct dcap_chain {
	struct dcap_cert certs[DCAP_MAX_CHAIN]; /**< the certificates */
	size_t n;				/**< how many */
	size_t n_path; /**< certificates below the root (a trailing self-issued one excluded) */
};

/** The trust anchor. */
struct dcap_root {
	struct dcap_cert cert; /**< the root certificate */
	EVP_PKEY *key;	       /**< its public key */
	X509_STORE *store;     /**< a store holding only the root */
	uint8_t *der;	       /**< its DER */
	size_t der_len;	       /**< its length */
};

/** A CRL with its window and a cache of its signature check. */
struct dcap_crl {
	X509_CRL *crl;		 /**< the CRL */
	const char *what;	 /**< "root CA CRL" or "PCK CRL" */
	int64_t this_update;	 /**< thisUpdate (unix) */
	int64_t next_update;	 /**< nextUpdate (unix) */
	bool verified;		 /**< signature checked with @ref verified_by */
	uint8_t verified_by[32]; /**< fingerprint of the issuer that signed it */
};

/** Load a certificate from DER or PEM; fills @p c. */
int dcap_cert_load(const uint8_t *data, size_t len, struct dcap_cert *c, const char *what,
		   const char *code, struct dcap_error *err);

/** Free a certificate. */
void dcap_cert_free(struct dcap_cert *c);

/** Parse the PEM chain @p pem (1..DCAP_MAX_CHAIN certificates; failures use @p code) and
 *  set ch->n_path (a trailing self-issued certificate is not part of the path). */
int dcap_chain_load(const char *pem, size_t len, const char *what, const char *code,
		    struct dcap_chain *ch, struct dcap_error *err);

/** Free a chain. */
void dcap_chain_free(struct dcap_chain *ch);

/** Set up @p root from DER/PEM: a self-signed CA; its SHA-256 is computed. */
int dcap_root_load(const uint8_t *data, size_t len, struct dcap_root *root, struct dcap_error *err);

/** Free a root. */
void dcap_root_free(struct dcap_root *root);

/**
 * Check @p ch up to @p root, independently of the time: each certificate is issued and
 * signed by the next (the last by the root), a trailing self-issued certificate must be the
 * root itself, and OpenSSL's RFC 5280 path validation (CA flags, path length, key usage,
 * critical extensions) must pass. ECHAIN. @p ch is not modified.
 */
int dcap_chain_verify(const struct dcap_root *root, const struct dcap_chain *ch, const char *what,
		      struct dcap_error *err);

/** The validity window of every certificate of the path and of the root at @p now.
 *  EEXPIRED. */
int dcap_chain_check_time(const struct dcap_root *root, const struct dcap_chain *ch, int64_t now,
			  const char *what, struct dcap_error *err);

/** Parse a DER CRL; ECOLLATERAL. */
int dcap_crl_load(const uint8_t *der, size_t len, const char *what, struct dcap_crl *crl,
		  struct dcap_error *err);

/** Free a CRL. */
void dcap_crl_free(struct dcap_crl *crl);

/**
 * Check that @p crl is issued by @p issuer (name, signature — cached per issuer — and the
 * cRLSign key usage), has no critical extension, and that @p now lies in [thisUpdate,
 * nextUpdate]. ECRL.
 */
int dcap_crl_check(struct dcap_crl *crl, const struct dcap_cert *issuer, int64_t now,
		   struct dcap_error *err);

/** ECRL if @p cert (described by @p what) is listed in @p crl. */
int dcap_crl_check_serial(const struct dcap_crl *crl, const struct dcap_cert *cert,
			  const char *what, struct dcap_error *err);

/** A P-256 public key from the raw 64-byte x||y; NULL if not on the curve. */
EVP_PKEY *dcap_p256_key(const uint8_t xy[64]);

/** Whether raw r||s @p sig is a valid ECDSA-SHA256 signature by @p key over @p msg. */
bool dcap_ecdsa_verify(EVP_PKEY *key, const void *msg, size_t len, const uint8_t sig[64]);

/* ---- the collateral object (dcap_collateral.c) ---- */

struct dcap_collateral {
	struct dcap_crl root_crl;      /**< root CA CRL */
	struct dcap_crl pck_crl;       /**< PCK CRL */
	struct dcap_chain tcb_chain;   /**< TCB info issuer chain */
	struct dcap_chain qe_chain;    /**< QE identity issuer chain */
	char *pck_chain_pem;	       /**< optional PCK chain (else the quote's) */
	size_t pck_chain_pem_len;      /**< its length */
	char *tcb_info_raw;	       /**< TCB info, the signed bytes */
	size_t tcb_info_len;	       /**< their length */
	uint8_t tcb_info_sig[64];      /**< its signature */
	char *qe_identity_raw;	       /**< QE identity, the signed bytes */
	size_t qe_identity_len;	       /**< their length */
	uint8_t qe_identity_sig[64];   /**< its signature */
	struct dcap_tcb_info tcb_info; /**< parsed TCB info */
	struct dcap_qe_identity qe_id; /**< parsed QE identity */
	bool signed_ok;		       /**< chains/signatures checked under @ref signed_root */
	uint8_t signed_root[32];       /**< fingerprint of that root */
};

#endif
