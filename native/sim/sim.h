/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sim: a software TDX for development and CI. A simulator state directory holds a simulated
 * Intel-style PKI (root CA "moonstack TDX Simulation Root CA", a PCK platform CA, a PCK leaf with
 * the SGX extensions, a TCB-signing certificate), an attestation key and the platform/QE values;
 * one state file per CVM holds the TD measurements (MRTD, RTMR0-3, ...). Quotes are real-format
 * DCAP v4 TDX quotes signed exactly like real ones, and the matching collateral (TCB info, QE
 * identity, CRLs) is signed under the same simulated root. No Lua here (see sim_lua.c).
 */
#ifndef MOONSTACK_SIM_H
#define MOONSTACK_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/** Number of RTMRs of a TD. */
#define SIM_RTMR_COUNT 4
/** Size of a TD measurement register (SHA-384). */
#define SIM_MR_LEN 48
/** Size of a quote's report_data. */
#define SIM_REPORT_DATA_LEN 64
/** Longest CVM name (names match [A-Za-z0-9][A-Za-z0-9._-]*). */
#define SIM_CVM_NAME_MAX 64
/** CN of the simulated root CA, so nobody mistakes it for Intel's. */
#define SIM_ROOT_CA_CN "moonstack TDX Simulation Root CA"

/** Result codes: 0 or one of these (negative). sim_errcode() names them. */
enum sim_err {
	SIM_OK = 0,
	SIM_EINVAL = -1,  /**< bad argument (name, index, length) */
	SIM_ENOENT = -2,  /**< no such CVM */
	SIM_EEXIST = -3,  /**< the CVM exists already */
	SIM_EIO = -4,	  /**< a file could not be read or written */
	SIM_ECRYPTO = -5, /**< an OpenSSL operation failed */
	SIM_ESTATE = -6,  /**< the state directory or a state file is corrupt or inconsistent */
	SIM_ENOMEM = -7,  /**< out of memory */
};

/** Values of the simulated platform, fixed when the state directory is created. */
struct sim_platform {
	uint8_t fmspc[6];		  /**< FMSPC (PCK extension, TCB info) */
	uint8_t pce_id[2];		  /**< PCE-ID (PCK extension, TCB info) */
	uint8_t cpu_svn[16];		  /**< CPUSVN = the 16 SGX TCB components */
	uint16_t pce_svn;		  /**< PCESVN */
	uint8_t ppid[16];		  /**< PPID (random per state directory) */
	uint8_t platform_instance_id[16]; /**< platform instance id (random) */
	uint8_t qe_id[16];		  /**< QE ID: first 16 bytes of the header's user_data */
	uint8_t tee_tcb_svn[16];    /**< TEE TCB SVN ([0] module ISVSVN, [1] module version) */
	uint8_t mr_seam[48];	    /**< MRSEAM (hash of the simulated TDX module) */
	uint8_t mr_signer_seam[48]; /**< MRSIGNERSEAM (zero, as for Intel's module) */
	uint8_t seam_attributes[8]; /**< SEAM attributes */
	uint32_t qe_misc_select;    /**< QE report MISCSELECT */
	uint8_t qe_attributes[16];  /**< QE report ATTRIBUTES */
	uint8_t qe_mr_enclave[32];  /**< QE MRENCLAVE */
	uint8_t qe_mr_signer[32];   /**< QE MRSIGNER (the QE identity's mrsigner) */
	uint16_t qe_isv_prod_id;    /**< QE ISVPRODID (2 = TD QE) */
	uint16_t qe_isv_svn;	    /**< QE ISVSVN */
};

/** Per-CVM TD values (what a TD report carries besides the platform values). */
struct sim_td {
	uint8_t td_attributes[8];		  /**< TD attributes (default: SEPT_VE_DISABLE) */
	uint8_t xfam[8];			  /**< XFAM */
	uint8_t mrtd[SIM_MR_LEN];		  /**< MRTD */
	uint8_t mr_config_id[SIM_MR_LEN];	  /**< MRCONFIGID */
	uint8_t mr_owner[SIM_MR_LEN];		  /**< MROWNER */
	uint8_t mr_owner_config[SIM_MR_LEN];	  /**< MROWNERCONFIG */
	uint8_t rtmr[SIM_RTMR_COUNT][SIM_MR_LEN]; /**< RTMR0..3 */
};

/** Collateral in the dcap-qvl QuoteCollateralV3 shape, as C values. Free with
 *  sim_collateral_free(). Signatures are raw r||s over the exact JSON string bytes. */
struct sim_collateral {
	char *pck_crl_issuer_chain;	/**< PEM: PCK platform CA, root */
	uint8_t *root_ca_crl;		/**< DER CRL issued by the root */
	size_t root_ca_crl_len;		/**< its size */
	uint8_t *pck_crl;		/**< DER CRL issued by the PCK platform CA */
	size_t pck_crl_len;		/**< its size */
	char *tcb_info_issuer_chain;	/**< PEM: TCB signing cert, root */
	char *tcb_info;			/**< TCB info JSON (TDX, version 3), signed verbatim */
	uint8_t tcb_info_signature[64]; /**< raw r||s by the TCB signing key */
	char *qe_identity_issuer_chain; /**< PEM: TCB signing cert, root */
	char *qe_identity;		/**< QE identity JSON (TD_QE, version 2), signed verbatim */
	uint8_t qe_identity_signature[64]; /**< raw r||s by the TCB signing key */
};

/** An open simulator state directory. */
struct sim;

/** Stable upper-case name of a result code ("EINVAL", ...; "OK" for 0). */
const char *sim_errcode(int rc);

/**
 * Open the simulator state directory @p dir, creating it (mode 0700) and its PKI, keys and
 * platform values on first use (files 0600, each written atomically; concurrent first opens
 * are serialised by a lock file). A later open reuses everything, so the root stays the same.
 * On failure returns a negative code, sets *@p out to NULL and writes a message to @p err.
 */
int sim_open(const char *dir, struct sim **out, char *err, size_t errlen);

/** Close @p s (NULL is fine) and free its keys. */
void sim_close(struct sim *s);

/** Message describing the last failure of a call on @p s ("" if none). */
const char *sim_error(const struct sim *s);

/** The state directory @p s was opened on. */
const char *sim_dir(const struct sim *s);

/** The platform values of @p s (owned by @p s). */
const struct sim_platform *sim_platform(const struct sim *s);

/** The root CA certificate as PEM text (owned by @p s). */
const char *sim_root_ca_pem(const struct sim *s);

/** The root CA certificate as DER; *@p len gets its size (owned by @p s). */
const uint8_t *sim_root_ca_der(const struct sim *s, size_t *len);

/** The PEM chain embedded in quotes: PCK leaf, PCK platform CA, root (owned by @p s). */
const char *sim_pck_chain_pem(const struct sim *s);

/** The attestation public key as raw x||y (64 bytes, as in quotes). */
void sim_attestation_key(const struct sim *s, uint8_t out[64]);

/** Whether @p name is a valid CVM name. */
bool sim_cvm_name_valid(const char *name);

/** Fill @p td with the defaults: zero measurements, td_attributes with SEPT_VE_DISABLE
 *  (0000001000000000), xfam e702060000000000. */
void sim_td_defaults(struct sim_td *td);

/**
 * Create the CVM @p name with the values in @p td (NULL = sim_td_defaults()). If it exists,
 * fails with SIM_EEXIST unless @p replace, which resets it.
 */
int sim_cvm_create(struct sim *s, const char *name, const struct sim_td *td, bool replace);

/** Read the current values of CVM @p name into @p out. SIM_ENOENT if it does not exist. */
int sim_cvm_load(struct sim *s, const char *name, struct sim_td *out);

/** Delete CVM @p name. SIM_ENOENT if it does not exist. */
int sim_cvm_remove(struct sim *s, const char *name);

/**
 * Extend RTMR @p index (0..3) of CVM @p name: RTMR = SHA-384(RTMR || @p digest). The state
 * file is updated atomically under the directory lock. If @p out is not NULL it receives the
 * new value.
 */
int sim_extend_rtmr(struct sim *s, const char *name, unsigned index,
		    const uint8_t digest[SIM_MR_LEN], uint8_t out[SIM_MR_LEN]);

/**
 * Issue a fresh v4 TDX quote for CVM @p name with @p report_data (@p len <= 64 bytes, zero
 * padded to 64): the attestation key signs header||body, the QE report (report_data =
 * SHA-256(attestation key || QE auth data) || 32 zero bytes) is signed by the PCK key, and
 * certification data type 6 wraps type 5 (PEM chain leaf, intermediate, root; NUL-terminated).
 * On success *@p quote (free() it) holds *@p quote_len bytes.
 */
int sim_quote(struct sim *s, const char *name, const uint8_t *report_data, size_t len,
	      uint8_t **quote, size_t *quote_len);

/**
 * Issue collateral for the platform valid around @p now (issue dates and CRL thisUpdate one
 * hour before, nextUpdate 30 days after): TCB info with levels that make the platform
 * UpToDate, QE identity, root CA CRL and PCK CRL, signed by the simulated TCB-signing key and
 * CAs. Fill @p out (release with sim_collateral_free()).
 */
int sim_collateral(struct sim *s, time_t now, struct sim_collateral *out);

/** Free what sim_collateral() allocated in @p c and zero it. */
void sim_collateral_free(struct sim_collateral *c);

/**
 * Serialize @p c as the JSON object of vectors/dcap-qvl/ *_collateral.json (CRLs as lowercase
 * hex, signatures as lowercase hex r||s, JSON documents as strings). *@p json is a
 * NUL-terminated string to free(); *@p len (if not NULL) its length.
 */
int sim_collateral_json(const struct sim_collateral *c, char **json, size_t *len);

#endif
