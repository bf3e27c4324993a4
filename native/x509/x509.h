/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x509: P-256 keys, PKCS#10 CSRs and X.509 certificates with the dstack RA-TLS extensions, parsed
 * back into plain fields; chain verification; the RA-TLS report_data binding. Plain C over
 * OpenSSL 3 (no Lua). Contract: native/x509/README.md.
 *
 * Conventions: functions that can fail take a `struct x509_error *` (may be NULL) and return 0 /
 * a pointer on success, -1 / NULL on failure with the error filled in. Buffers handed out are
 * `struct x509_buf` (free with x509_buf_free(), which also wipes them). Keys are EVP_PKEY,
 * certificates X509 and requests X509_REQ: free them with the OpenSSL functions.
 */
#ifndef MOONSTACK_X509_H
#define MOONSTACK_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/** Why a call failed: a stable code ("EINVAL", "EKEY", "EPARSE", "EVERIFY", "ENOMEM",
 *  "ECRYPTO"), a message, and for EVERIFY OpenSSL's X509_V_ERR_* value and the depth. */
struct x509_error {
	const char *code; /**< static string, never NULL after a failure */
	char msg[256];	  /**< human-readable reason */
	int verify_error; /**< X509_V_ERR_* (EVERIFY only), else 0 */
	int verify_depth; /**< depth of the failing certificate (EVERIFY only), else -1 */
};

/** A heap buffer owned by the caller. `data` is NUL-terminated one past `len` for text. */
struct x509_buf {
	uint8_t *data; /**< malloc'ed, or NULL */
	size_t len;    /**< bytes in data (without the terminating NUL) */
};

/** Wipe and free @p b, leaving it empty. Safe on an empty buffer and on NULL. */
void x509_buf_free(struct x509_buf *b);

/** Set @p out to a NUL-terminated copy of the @p len bytes at @p data (which may be NULL when
 *  @p len is 0). Returns 0, or -1 with ENOMEM in @p err (@p out left empty). */
int x509_buf_set(struct x509_buf *out, const void *data, size_t len, struct x509_error *err);

/* ---- keys (x509_key.c) ------------------------------------------------------------------- */

/** A fresh random P-256 private key, or NULL. */
EVP_PKEY *x509_key_generate(struct x509_error *err);

/** The P-256 private key whose scalar is the 32 big-endian bytes @p d (must be in [1, n-1]). */
EVP_PKEY *x509_key_from_scalar(const uint8_t d[32], struct x509_error *err);

/**
 * Load a key from PEM (PRIVATE KEY, EC PRIVATE KEY, PUBLIC KEY) or DER (PKCS#8, SEC1 ECPrivateKey,
 * SubjectPublicKeyInfo). The result may be a public key only (see x509_key_is_private()).
 * Encrypted keys are refused.
 */
EVP_PKEY *x509_key_load(const void *data, size_t len, struct x509_error *err);

/** Whether @p key holds a private part. */
bool x509_key_is_private(const EVP_PKEY *key);

/** The unencrypted PKCS#8 DER of a private key (138 bytes for P-256 as OpenSSL and rcgen write
 *  it: public key included, no curve parameters inside ECPrivateKey). */
int x509_key_pkcs8_der(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err);

/** The same as PEM ("-----BEGIN PRIVATE KEY-----"), NUL-terminated. */
int x509_key_pkcs8_pem(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err);

/** The SubjectPublicKeyInfo DER of @p key (private or public). */
int x509_key_spki_der(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err);

/** The SubjectPublicKeyInfo as PEM ("-----BEGIN PUBLIC KEY-----"), NUL-terminated. */
int x509_key_public_pem(EVP_PKEY *key, struct x509_buf *out, struct x509_error *err);

/** The 32-byte big-endian private scalar of a P-256 key. */
int x509_key_scalar(EVP_PKEY *key, uint8_t out[32], struct x509_error *err);

/** The uncompressed public point (04 || X || Y, 65 bytes) of a P-256 key. */
int x509_key_public_point(EVP_PKEY *key, uint8_t out[65], struct x509_error *err);

/* ---- DER, PEM, OIDs, report_data (x509_der.c) ------------------------------------------- */

/** The dstack RA-TLS extensions (private arc 1.3.6.1.4.1.62397.1). */
enum x509_ratls_ext {
	X509_RATLS_QUOTE = 0,	  /**< .1.1 raw TDX quote (<= 0.5.8) */
	X509_RATLS_EVENT_LOG,	  /**< .1.2 JSON event log (<= 0.5.8) */
	X509_RATLS_APP_ID,	  /**< .1.3 20-byte app id */
	X509_RATLS_SPECIAL_USAGE, /**< .1.4 UTF-8 string, e.g. "app:custom" */
	X509_RATLS_ATTESTATION,	  /**< .1.8 VersionedAttestation bytes */
	X509_RATLS_APP_INFO,	  /**< .1.9 msgpack AppInfo */
	X509_RATLS_COUNT,
};

/** Dotted OID of @p which, or NULL if out of range. */
const char *x509_ratls_oid(enum x509_ratls_ext which);

/** Short name of @p which ("quote", "event_log", "app_id", "special_usage", "attestation",
 *  "app_info"), or NULL if out of range. */
const char *x509_ratls_name(enum x509_ratls_ext which);

/** How an x509_ext_spec's bytes become the extension's extnValue. */
enum x509_ext_encoding {
	X509_EXT_OCTETS = 0, /**< wrapped in a DER OCTET STRING (the dstack convention) */
	X509_EXT_DER = 1,    /**< already the DER value, used as is */
};

/** A custom extension to add to a certificate or CSR. */
struct x509_ext_spec {
	const char *oid;		 /**< dotted OID */
	const uint8_t *data;		 /**< content (see encoding) */
	size_t len;			 /**< bytes in data */
	bool critical;			 /**< criticality flag (dstack: false) */
	enum x509_ext_encoding encoding; /**< X509_EXT_OCTETS unless told */
};

/** The spec of RA-TLS extension @p which carrying @p data (non-critical, OCTET STRING wrapped). */
struct x509_ext_spec x509_ratls_ext(enum x509_ratls_ext which, const void *data, size_t len);

/** DER OCTET STRING of @p data (04 <len> <data>). */
int x509_octets_wrap(const void *data, size_t len, struct x509_buf *out, struct x509_error *err);

/** Point @p content at the payload of the DER OCTET STRING @p der (which must be exactly one
 *  OCTET STRING, definite length, no trailing bytes). No copy is made. */
int x509_octets_unwrap(const uint8_t *der, size_t len, const uint8_t **content, size_t *clen,
		       struct x509_error *err);

/** report_data for content type @p tag over @p data: SHA-512(tag || ":" || data). */
int x509_report_data(const char *tag, const void *data, size_t len, uint8_t out[64],
		     struct x509_error *err);

/** The RA-TLS binding of a certificate key: SHA-512("ratls-cert:" || spki_der). */
int x509_ratls_report_data(const uint8_t *spki_der, size_t len, uint8_t out[64],
			   struct x509_error *err);

/** One block of a PEM text. */
struct x509_pem_block {
	char *label;	     /**< e.g. "CERTIFICATE" (malloc'ed) */
	struct x509_buf der; /**< decoded body */
};

/** Split @p pem into its blocks (any labels). Fails with EPARSE if there is none or one is
 *  malformed. Free with x509_pem_blocks_free(). */
int x509_pem_decode(const char *pem, size_t len, struct x509_pem_block **blocks, size_t *n,
		    struct x509_error *err);

/** Free what x509_pem_decode() returned. */
void x509_pem_blocks_free(struct x509_pem_block *blocks, size_t n);

/** Encode @p der as one PEM block labelled @p label (NUL-terminated). */
int x509_pem_encode(const char *label, const void *der, size_t len, struct x509_buf *out,
		    struct x509_error *err);

/* ---- certificates and CSRs: creation (x509_build.c) -------------------------------------- */

/** KeyUsage bits (x509_cert_opts.key_usage, x509_info.key_usage). */
enum x509_key_usage {
	X509_KU_DIGITAL_SIGNATURE = 1 << 0,
	X509_KU_NON_REPUDIATION = 1 << 1,
	X509_KU_KEY_ENCIPHERMENT = 1 << 2,
	X509_KU_DATA_ENCIPHERMENT = 1 << 3,
	X509_KU_KEY_AGREEMENT = 1 << 4,
	X509_KU_KEY_CERT_SIGN = 1 << 5,
	X509_KU_CRL_SIGN = 1 << 6,
	X509_KU_ENCIPHER_ONLY = 1 << 7,
	X509_KU_DECIPHER_ONLY = 1 << 8,
};

/** ExtendedKeyUsage bits. */
enum x509_eku {
	X509_EKU_SERVER_AUTH = 1 << 0,
	X509_EKU_CLIENT_AUTH = 1 << 1,
};

/** Days added to "now" for the default notAfter (rcgen / dstack: 3650). */
#define X509_DEFAULT_DAYS 3650
/** The default notBefore: 1975-01-01T00:00:00Z (rcgen's default, used by dstack). */
#define X509_DEFAULT_NOT_BEFORE 157766400

/**
 * What to put in a certificate (or, for the subject, SANs and extensions, a CSR). Zero is the
 * default of every field; set pathlen to -1 for "no path length constraint".
 */
struct x509_cert_opts {
	const char *cn;		 /**< subject CommonName, or NULL */
	const char *org;	 /**< subject OrganizationName, or NULL */
	const char *const *sans; /**< subjectAltName entries: IP literals become iPAddress,
				      anything else dNSName (as dstack does) */
	size_t n_sans;		 /**< entries in sans */
	int64_t not_before;	 /**< unix seconds; 0 = X509_DEFAULT_NOT_BEFORE */
	int64_t not_after;	 /**< unix seconds; 0 = now + X509_DEFAULT_DAYS days */
	const uint8_t *serial;	 /**< big-endian serial, or NULL for 16 random bytes */
	size_t serial_len;	 /**< bytes in serial (1..20) */
	bool ca;		 /**< add BasicConstraints CA:TRUE (critical) */
	int pathlen;		 /**< with ca: >= 0 pathLenConstraint, < 0 none */
	unsigned key_usage;	 /**< X509_KU_* bits; 0 = no KeyUsage (critical when present) */
	unsigned eku;		 /**< X509_EKU_* bits; 0 = no ExtendedKeyUsage */
	bool no_ski;		 /**< leave out SubjectKeyIdentifier */
	bool no_aki;		 /**< leave out AuthorityKeyIdentifier */
	const struct x509_ext_spec *exts; /**< custom extensions, added in order */
	size_t n_exts;			  /**< entries in exts */
};

/**
 * Create a certificate for @p subject_key (private or public) signed by @p issuer_key.
 * @p issuer NULL makes it self-signed (issuer name = subject name; @p issuer_key defaults to
 * @p subject_key). The issuer key must match the issuer certificate. Signature: ECDSA with
 * SHA-256 for EC keys (SHA-256 for RSA, none for Ed25519). SKI = the first 20 bytes of
 * SHA-256(SPKI DER), as rcgen computes it; AKI = the issuer's SKI (or, when it has none, the
 * same hash of the issuer's SPKI).
 */
X509 *x509_cert_create(const struct x509_cert_opts *o, EVP_PKEY *subject_key, X509 *issuer,
		       EVP_PKEY *issuer_key, struct x509_error *err);

/**
 * Create a PKCS#10 request signed by @p key: subject (cn, org) and, in an extensionRequest
 * attribute, the SANs, KeyUsage, EKU and custom extensions of @p o (validity, serial, CA, SKI
 * and AKI are ignored).
 */
X509_REQ *x509_csr_create(const struct x509_cert_opts *o, EVP_PKEY *key, struct x509_error *err);

/* ---- loading and parsing (x509_info.c) --------------------------------------------------- */

/** Load the first certificate of a PEM text, or a DER certificate. */
X509 *x509_cert_load(const void *data, size_t len, struct x509_error *err);

/** Load a CSR from PEM ("CERTIFICATE REQUEST") or DER. */
X509_REQ *x509_csr_load(const void *data, size_t len, struct x509_error *err);

/** The DER of @p cert. */
int x509_cert_der(X509 *cert, struct x509_buf *out, struct x509_error *err);

/** The DER of @p req. */
int x509_csr_der(X509_REQ *req, struct x509_buf *out, struct x509_error *err);

/** Whether the CSR's signature verifies with its own public key. */
bool x509_csr_signature_ok(X509_REQ *req);

/** Kinds of subjectAltName entries. */
enum x509_san_type {
	X509_SAN_DNS = 1,
	X509_SAN_IP,
	X509_SAN_EMAIL,
	X509_SAN_URI,
	X509_SAN_OTHER,
};

/** One subjectAltName entry. */
struct x509_san {
	enum x509_san_type type;
	char *value; /**< the name; IPs as text ("10.0.0.1", "::1"); "" for OTHER */
};

/** One extension as found in the certificate or CSR. */
struct x509_ext_info {
	char oid[96];	       /**< dotted */
	bool critical;	       /**< criticality flag */
	struct x509_buf value; /**< extnValue contents (DER) */
};

/** A certificate (or CSR: no issuer, serial, validity, fingerprint) taken apart. */
struct x509_info {
	int version;		       /**< 3 for v3 certificates, 1 for CSRs */
	char *subject, *issuer;	       /**< RFC 2253 one-line names (issuer NULL for CSRs) */
	char *cn, *org;		       /**< subject CN / O (NULL if absent) */
	char *issuer_cn, *issuer_org;  /**< issuer CN / O (NULL if absent) */
	struct x509_buf serial;	       /**< big-endian magnitude */
	int64_t not_before, not_after; /**< unix seconds */
	struct x509_san *sans;	       /**< subjectAltName entries */
	size_t n_sans;		       /**< entries in sans */
	bool has_basic_constraints;    /**< BasicConstraints present */
	bool ca;		       /**< CA:TRUE */
	int pathlen;		       /**< pathLenConstraint, -1 if none */
	bool has_key_usage;	       /**< KeyUsage present */
	unsigned key_usage;	       /**< X509_KU_* bits */
	bool has_eku;		       /**< ExtendedKeyUsage present */
	unsigned eku;		       /**< X509_EKU_* bits among them */
	char **eku_oids;	       /**< every EKU purpose as a dotted OID */
	size_t n_eku_oids;	       /**< entries in eku_oids */
	struct x509_buf ski, aki;      /**< key identifiers (empty if absent) */
	struct x509_ext_info *exts;    /**< every extension, in certificate order */
	size_t n_exts;		       /**< entries in exts */
	struct x509_buf spki;	       /**< SubjectPublicKeyInfo DER */
	struct x509_buf der;	       /**< the whole certificate / CSR DER */
	uint8_t fingerprint[32];       /**< SHA-256 of der (certificates only) */
	char sig_alg[64];	       /**< e.g. "ecdsa-with-SHA256" */
	bool self_issued;	       /**< subject == issuer */
	bool signature_ok;	       /**< CSRs: self-signature verifies; certificates: false */
};

/** Take @p cert apart into @p info (zeroed first). Free with x509_info_free(). */
int x509_cert_info(X509 *cert, struct x509_info *info, struct x509_error *err);

/** Take @p req apart into @p info (zeroed first); extensions come from extensionRequest. */
int x509_csr_info(X509_REQ *req, struct x509_info *info, struct x509_error *err);

/** Free everything x509_cert_info() / x509_csr_info() allocated and zero @p info. */
void x509_info_free(struct x509_info *info);

/** The extension @p oid of @p info, or NULL. */
const struct x509_ext_info *x509_info_ext(const struct x509_info *info, const char *oid);

/**
 * The content of RA-TLS extension @p which (OCTET STRING unwrapped) in @p info. Returns 1 and
 * points @p data at it when present, 0 when absent, -1 when present but not an OCTET STRING.
 */
int x509_info_ratls(const struct x509_info *info, enum x509_ratls_ext which, const uint8_t **data,
		    size_t *len, struct x509_error *err);

/* ---- chain verification (x509_verify.c) -------------------------------------------------- */

/** What the leaf must be good for. */
enum x509_purpose {
	X509_FOR_ANY = 0, /**< no purpose check */
	X509_FOR_SERVER,  /**< TLS server (EKU serverAuth if EKU present) */
	X509_FOR_CLIENT,  /**< TLS client (EKU clientAuth if EKU present) */
};

/** Options of x509_verify(). Zero = now, any purpose, self-signed roots only. */
struct x509_verify_opts {
	int64_t time;		   /**< unix seconds to verify at; 0 = now */
	enum x509_purpose purpose; /**< purpose check on the leaf */
	const char *hostname;	   /**< if set, the leaf must match it (DNS name or IP literal) */
	bool partial;		   /**< trust anchors may be intermediate certificates */
};

/**
 * Verify @p leaf up to one of @p roots through @p chain (untrusted intermediates, any order),
 * at the given time and for the given purpose. 0 if valid; -1 with EVERIFY (OpenSSL's reason,
 * verify_error and verify_depth set) or another code.
 */
int x509_verify(X509 *leaf, X509 *const *chain, size_t n_chain, X509 *const *roots, size_t n_roots,
		const struct x509_verify_opts *o, struct x509_error *err);

/* ---- internal helpers shared by the x509 files ------------------------------------------- */

/** Fill @p err (if not NULL) with @p code and a printf-style message; returns -1. */
int x509_fail(struct x509_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** Like x509_fail(), appending OpenSSL's last queued error (and clearing the queue). */
int x509_fail_ssl(struct x509_error *err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
