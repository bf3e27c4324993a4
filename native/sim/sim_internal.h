/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the sim sources: the handle, files and locking, hex and key=value text,
 * a byte buffer, and the simulated PKI (keys, certificates, CRLs, raw ECDSA signatures). */
#ifndef MOONSTACK_SIM_INTERNAL_H
#define MOONSTACK_SIM_INTERNAL_H

#include <stdarg.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sim/sim.h"

/** The open state directory: keys, certificates (and their PEM/DER forms), platform values. */
struct sim {
	char *dir;
	struct sim_platform plat;
	EVP_PKEY *root_key, *ca_key, *pck_key, *tcb_key, *att_key;
	X509 *root, *ca, *pck, *tcb;
	char *root_pem, *ca_pem, *pck_pem, *tcb_pem;
	char *chain_pem; /* pck_pem + ca_pem + root_pem */
	uint8_t *root_der;
	size_t root_der_len;
	uint8_t att_pub[64];
	char err[256];
};

/** Record a failure message on @p s and return @p rc. */
int sim_fail(struct sim *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/** Like sim_fail(), appending the first queued OpenSSL error (and clearing the queue). */
int sim_fail_ssl(struct sim *s, const char *what);

/** Clear the last failure message of @p s. */
void sim_clear_error(struct sim *s);

/* ---- files (sim_files.c) ---- */

/** Write @p len bytes to @p path atomically (temporary file 0600, fsync, rename, fsync dir). */
int sim_write_atomic(struct sim *s, const char *path, const void *data, size_t len);

/** Read the whole file @p path into a NUL-terminated buffer (free()). Returns 0 or -errno. */
int sim_read_file(const char *path, char **data, size_t *len);

/** `dir` + "/" + `name` into @p out; SIM_EINVAL if it does not fit. */
int sim_path(struct sim *s, char *out, size_t size, const char *name);

/** Create @p dir (mode 0700) and its parents if missing. Returns 0 or -errno. */
int sim_mkdirs(const char *dir);

/** Take the directory lock (flock on `<dir>/lock`), @p exclusive or shared. Returns the
 *  descriptor (>= 0) or a negative code. */
int sim_lock(struct sim *s, bool exclusive);

/** Release a lock taken with sim_lock() (negative @p fd is ignored). */
void sim_unlock(int fd);

/* ---- hex and key=value text ---- */

/** Write 2 * @p n hex digits of @p in to @p out, NUL-terminated. */
void sim_hex(const uint8_t *in, size_t n, char *out, bool upper);

/** Decode exactly @p n bytes from the @p inlen hex digits at @p in. Returns 0 or -1. */
int sim_unhex(const char *in, size_t inlen, uint8_t *out, size_t n);

/** Find `key=value` (one per line, `#` comments) in @p text; *@p vlen gets the value's length. */
const char *sim_kv_find(const char *text, const char *key, size_t *vlen);

/** Decode the hex value of @p key into exactly @p n bytes. Returns 0 or -1. */
int sim_kv_hex(const char *text, const char *key, uint8_t *out, size_t n);

/** Read the decimal value of @p key (<= @p max). Returns 0 or -1. */
int sim_kv_uint(const char *text, const char *key, unsigned long max, unsigned long *out);

/* ---- a growable byte buffer ---- */

/** A growable buffer. Zero-initialise; after an allocation failure `failed` is set and
 *  further appends are ignored. */
struct sim_buf {
	uint8_t *p;
	size_t len, cap;
	bool failed;
};

/** Append @p n bytes. */
void sim_buf_add(struct sim_buf *b, const void *p, size_t n);

/** Append a NUL-terminated string (without its NUL). */
void sim_buf_puts(struct sim_buf *b, const char *str);

/** Append printf-formatted text. */
void sim_buf_printf(struct sim_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Append little-endian integers. */
void sim_buf_u16le(struct sim_buf *b, uint16_t v);
void sim_buf_u32le(struct sim_buf *b, uint32_t v);

/** Append @p n bytes as lowercase (or uppercase) hex. */
void sim_buf_hex(struct sim_buf *b, const uint8_t *p, size_t n, bool upper);

/** Append @p str as a JSON string literal (quotes included). */
void sim_buf_json_str(struct sim_buf *b, const char *str);

/** Append a NUL and hand the memory over (*@p out, *@p len without the NUL). SIM_ENOMEM if
 *  the buffer failed (it is freed either way). */
int sim_buf_finish(struct sim_buf *b, char **out, size_t *len);

/** Free the buffer. */
void sim_buf_free(struct sim_buf *b);

/* ---- the simulated PKI (sim_pki.c) ---- */

/** Kinds of certificate the simulator issues. */
enum sim_cert_kind {
	SIM_CERT_ROOT,	 /**< self-signed root, CA pathlen 1 */
	SIM_CERT_PCK_CA, /**< PCK platform CA, CA pathlen 0 */
	SIM_CERT_PCK,	 /**< PCK leaf with the SGX extensions */
	SIM_CERT_TCB,	 /**< TCB signing leaf */
};

/** A fresh P-256 key, or NULL. */
EVP_PKEY *sim_pki_keygen(void);

/**
 * Issue a certificate of @p kind for @p key, signed by @p issuer_key (the issuer certificate is
 * @p issuer, NULL for the root), valid from a day before @p now. @p plat supplies the SGX
 * extension values of SIM_CERT_PCK. NULL on failure (OpenSSL error queued).
 */
X509 *sim_pki_issue(enum sim_cert_kind kind, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
		    time_t now, const struct sim_platform *plat);

/** A CRL (v2, no entries, CRL number, AKI) by @p issuer valid around @p now, as DER (free()). */
int sim_pki_crl(X509 *issuer, EVP_PKEY *issuer_key, time_t now, uint8_t **der, size_t *len);

/** The DER of the SGX extension (OID 1.2.840.113741.1.13.1) for @p plat (free()). */
int sim_pki_sgx_extension(const struct sim_platform *plat, uint8_t **der, size_t *len);

/** ECDSA P-256 over SHA-256(@p msg) as raw r||s. Returns 0 or SIM_ECRYPTO. */
int sim_sign_raw(EVP_PKEY *key, const void *msg, size_t len, uint8_t sig[64]);

/** The raw x||y public point of a P-256 key. Returns 0 or SIM_ECRYPTO. */
int sim_pubkey_raw(EVP_PKEY *key, uint8_t out[64]);

/** PEM text of a certificate / a private key (PKCS#8), NUL-terminated (free()), or NULL. */
char *sim_pem_cert(X509 *x);
char *sim_pem_key(EVP_PKEY *key);

/* ---- state (sim_state.c) ---- */

/** Fill @p plat with the defaults and fresh random ids. Returns 0 or SIM_ECRYPTO. */
int sim_platform_defaults(struct sim_platform *plat);

#endif
