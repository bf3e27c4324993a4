/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The simulator state directory: created once (PKI, attestation key, platform values; files
 * 0600 written atomically, platform.conf last as the commit marker, all under the directory
 * lock), then loaded and checked on every open.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "sim/sim_internal.h"

#define PLATFORM_FILE "platform.conf"

/* The key and certificate files, in the order they are written and loaded. */
struct pki_file {
	const char *cert, *key;
	enum sim_cert_kind kind;
};

static const struct pki_file pki_files[] = {
	{ "root-ca.pem", "root-ca.key.pem", SIM_CERT_ROOT },
	{ "pck-platform-ca.pem", "pck-platform-ca.key.pem", SIM_CERT_PCK_CA },
	{ "pck.pem", "pck.key.pem", SIM_CERT_PCK },
	{ "tcb-signing.pem", "tcb-signing.key.pem", SIM_CERT_TCB },
};

#define ATTESTATION_KEY_FILE "attestation.key.pem"

const char *sim_errcode(int rc)
{
	switch (rc) {
	case SIM_OK:
		return "OK";
	case SIM_EINVAL:
		return "EINVAL";
	case SIM_ENOENT:
		return "ENOENT";
	case SIM_EEXIST:
		return "EEXIST";
	case SIM_EIO:
		return "EIO";
	case SIM_ECRYPTO:
		return "ECRYPTO";
	case SIM_ESTATE:
		return "ESTATE";
	case SIM_ENOMEM:
		return "ENOMEM";
	default:
		return "EUNKNOWN";
	}
}

int sim_fail(struct sim *s, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return rc;
}

int sim_fail_ssl(struct sim *s, const char *what)
{
	char buf[160] = "unknown error";
	unsigned long e = ERR_peek_last_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return sim_fail(s, SIM_ECRYPTO, "%s: %s", what, buf);
}

void sim_clear_error(struct sim *s)
{
	s->err[0] = '\0';
}

const char *sim_error(const struct sim *s)
{
	return s->err;
}

const char *sim_dir(const struct sim *s)
{
	return s->dir;
}

const struct sim_platform *sim_platform(const struct sim *s)
{
	return &s->plat;
}

const char *sim_root_ca_pem(const struct sim *s)
{
	return s->root_pem;
}

const uint8_t *sim_root_ca_der(const struct sim *s, size_t *len)
{
	*len = s->root_der_len;
	return s->root_der;
}

const char *sim_pck_chain_pem(const struct sim *s)
{
	return s->chain_pem;
}

void sim_attestation_key(const struct sim *s, uint8_t out[64])
{
	memcpy(out, s->att_pub, 64);
}

/* ---- platform values ---- */

static void digest(const EVP_MD *md, const char *text, uint8_t *out)
{
	unsigned int n = 0;
	EVP_Digest(text, strlen(text), out, &n, md, NULL);
}

int sim_platform_defaults(struct sim_platform *p)
{
	static const uint8_t fmspc[6] = { 0xB0, 0xC0, 0x6F, 0x00, 0x00, 0x00 };
	static const uint8_t cpu_svn[16] = { 3, 3, 2, 2, 4, 1, 0, 5 };
	static const uint8_t tee_tcb_svn[16] = { 6, 1, 3 };
	static const uint8_t qe_attributes[16] = { 0x15, [8] = 0xE7 };

	memset(p, 0, sizeof(*p));
	memcpy(p->fmspc, fmspc, sizeof(fmspc));
	memcpy(p->cpu_svn, cpu_svn, sizeof(cpu_svn));
	p->pce_svn = 11;
	memcpy(p->tee_tcb_svn, tee_tcb_svn, sizeof(tee_tcb_svn));
	digest(EVP_sha384(), "moonstack TDX simulation: TDX module", p->mr_seam);
	memcpy(p->qe_attributes, qe_attributes, sizeof(qe_attributes));
	digest(EVP_sha256(), "moonstack TDX simulation: quoting enclave", p->qe_mr_enclave);
	digest(EVP_sha256(), "moonstack TDX simulation: quoting enclave signer", p->qe_mr_signer);
	p->qe_isv_prod_id = 2; /* TD QE */
	p->qe_isv_svn = 4;
	if (RAND_bytes(p->ppid, sizeof(p->ppid)) != 1 ||
	    RAND_bytes(p->platform_instance_id, sizeof(p->platform_instance_id)) != 1 ||
	    RAND_bytes(p->qe_id, sizeof(p->qe_id)) != 1)
		return SIM_ECRYPTO;
	return 0;
}

#define HEX_FIELDS(X)           \
	X(fmspc)                \
	X(pce_id)               \
	X(cpu_svn)              \
	X(ppid)                 \
	X(platform_instance_id) \
	X(qe_id)                \
	X(tee_tcb_svn)          \
	X(mr_seam)              \
	X(mr_signer_seam)       \
	X(seam_attributes)      \
	X(qe_attributes)        \
	X(qe_mr_enclave)        \
	X(qe_mr_signer)

static int format_platform(const struct sim_platform *p, time_t now, char **text)
{
	struct sim_buf b = { 0 };
	sim_buf_printf(
		&b,
		"# moonstack TDX simulator: platform values. Do not edit: the PCK certificate\n"
		"# encodes them.\nversion=1\ncreated=%lld\n",
		(long long)now);
#define X(f)                                        \
	sim_buf_puts(&b, #f "=");                   \
	sim_buf_hex(&b, p->f, sizeof(p->f), false); \
	sim_buf_puts(&b, "\n");
	HEX_FIELDS(X)
#undef X
	sim_buf_printf(&b, "pce_svn=%u\nqe_misc_select=%lu\nqe_isv_prod_id=%u\nqe_isv_svn=%u\n",
		       p->pce_svn, (unsigned long)p->qe_misc_select, p->qe_isv_prod_id,
		       p->qe_isv_svn);
	return sim_buf_finish(&b, text, NULL);
}

static int parse_platform(const char *text, struct sim_platform *p)
{
	unsigned long v[4];
	memset(p, 0, sizeof(*p));
#define X(f)                                              \
	if (sim_kv_hex(text, #f, p->f, sizeof(p->f)) < 0) \
		return -1;
	HEX_FIELDS(X)
#undef X
	if (sim_kv_uint(text, "pce_svn", 0xFFFF, &v[0]) < 0 ||
	    sim_kv_uint(text, "qe_misc_select", 0xFFFFFFFFUL, &v[1]) < 0 ||
	    sim_kv_uint(text, "qe_isv_prod_id", 0xFFFF, &v[2]) < 0 ||
	    sim_kv_uint(text, "qe_isv_svn", 0xFFFF, &v[3]) < 0)
		return -1;
	p->pce_svn = (uint16_t)v[0];
	p->qe_misc_select = (uint32_t)v[1];
	p->qe_isv_prod_id = (uint16_t)v[2];
	p->qe_isv_svn = (uint16_t)v[3];
	return 0;
}

/* ---- create ---- */

static int write_text(struct sim *s, const char *name, const char *text)
{
	char path[4096];
	int rc = sim_path(s, path, sizeof(path), name);
	if (rc < 0)
		return rc;
	if (!text)
		return sim_fail(s, SIM_ENOMEM, "out of memory writing %s", name);
	return sim_write_atomic(s, path, text, strlen(text));
}

static int write_key(struct sim *s, const char *name, EVP_PKEY *key)
{
	char *pem = sim_pem_key(key);
	int rc = write_text(s, name, pem);
	if (pem)
		OPENSSL_cleanse(pem, strlen(pem));
	free(pem);
	return rc;
}

static int write_cert(struct sim *s, const char *name, X509 *x)
{
	char *pem = sim_pem_cert(x);
	int rc = write_text(s, name, pem);
	free(pem);
	return rc;
}

static int create_state(struct sim *s)
{
	time_t now = time(NULL);
	EVP_PKEY **keys[] = { &s->root_key, &s->ca_key, &s->pck_key, &s->tcb_key, &s->att_key };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!(*keys[i] = sim_pki_keygen()))
			return sim_fail_ssl(s, "key generation");
	if (sim_platform_defaults(&s->plat) < 0)
		return sim_fail_ssl(s, "random platform ids");
	s->root = sim_pki_issue(SIM_CERT_ROOT, s->root_key, NULL, s->root_key, now, &s->plat);
	if (s->root)
		s->ca = sim_pki_issue(SIM_CERT_PCK_CA, s->ca_key, s->root, s->root_key, now,
				      &s->plat);
	if (s->ca)
		s->pck = sim_pki_issue(SIM_CERT_PCK, s->pck_key, s->ca, s->ca_key, now, &s->plat);
	if (s->pck)
		s->tcb = sim_pki_issue(SIM_CERT_TCB, s->tcb_key, s->root, s->root_key, now,
				       &s->plat);
	if (!s->tcb)
		return sim_fail_ssl(s, "issuing the simulated certificates");

	X509 *certs[] = { s->root, s->ca, s->pck, s->tcb };
	EVP_PKEY *pkeys[] = { s->root_key, s->ca_key, s->pck_key, s->tcb_key };
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < 4; i++) {
		rc = write_key(s, pki_files[i].key, pkeys[i]);
		if (rc == 0)
			rc = write_cert(s, pki_files[i].cert, certs[i]);
	}
	if (rc == 0)
		rc = write_key(s, ATTESTATION_KEY_FILE, s->att_key);
	char *conf = NULL;
	if (rc == 0 && (rc = format_platform(&s->plat, now, &conf)) < 0)
		sim_fail(s, rc, "out of memory");
	if (rc == 0)
		rc = write_text(s, PLATFORM_FILE, conf); /* last: marks the state complete */
	free(conf);
	return rc;
}

/* ---- load ---- */

static int read_text(struct sim *s, const char *name, char **text)
{
	char path[4096];
	int rc = sim_path(s, path, sizeof(path), name);
	if (rc < 0)
		return rc;
	rc = sim_read_file(path, text, NULL);
	if (rc == -ENOENT)
		return sim_fail(s, SIM_ESTATE, "incomplete state directory: %s is missing", path);
	if (rc < 0)
		return sim_fail(s, SIM_EIO, "cannot read %s: %s", path, strerror(-rc));
	return 0;
}

static int load_key(struct sim *s, const char *name, EVP_PKEY **key)
{
	char *pem = NULL;
	int rc = read_text(s, name, &pem);
	if (rc < 0)
		return rc;
	BIO *bio = BIO_new_mem_buf(pem, -1);
	*key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	OPENSSL_cleanse(pem, strlen(pem));
	free(pem);
	if (!*key || EVP_PKEY_get_base_id(*key) != EVP_PKEY_EC || EVP_PKEY_get_bits(*key) != 256) {
		ERR_clear_error();
		return sim_fail(s, SIM_ESTATE, "%s/%s is not a P-256 private key", s->dir, name);
	}
	return 0;
}

static int load_cert(struct sim *s, const char *name, X509 **x, char **pem)
{
	int rc = read_text(s, name, pem);
	if (rc < 0)
		return rc;
	BIO *bio = BIO_new_mem_buf(*pem, -1);
	*x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (!*x) {
		ERR_clear_error();
		return sim_fail(s, SIM_ESTATE, "%s/%s is not a PEM certificate", s->dir, name);
	}
	return 0;
}

static int load_state(struct sim *s)
{
	char *conf = NULL;
	int rc = read_text(s, PLATFORM_FILE, &conf);
	if (rc < 0)
		return rc;
	rc = parse_platform(conf, &s->plat);
	free(conf);
	if (rc < 0)
		return sim_fail(s, SIM_ESTATE, "%s/%s is corrupt", s->dir, PLATFORM_FILE);

	X509 **certs[] = { &s->root, &s->ca, &s->pck, &s->tcb };
	EVP_PKEY **keys[] = { &s->root_key, &s->ca_key, &s->pck_key, &s->tcb_key };
	char **pems[] = { &s->root_pem, &s->ca_pem, &s->pck_pem, &s->tcb_pem };
	for (size_t i = 0; i < 4; i++) {
		if ((rc = load_key(s, pki_files[i].key, keys[i])) < 0 ||
		    (rc = load_cert(s, pki_files[i].cert, certs[i], pems[i])) < 0)
			return rc;
		if (X509_check_private_key(*certs[i], *keys[i]) != 1) {
			ERR_clear_error();
			return sim_fail(s, SIM_ESTATE, "%s/%s does not match its key", s->dir,
					pki_files[i].cert);
		}
	}
	X509 *issuers[] = { s->root, s->root, s->ca, s->root };
	for (size_t i = 0; i < 4; i++) {
		EVP_PKEY *pub = X509_get0_pubkey(issuers[i]);
		if (!pub || X509_verify(*certs[i], pub) != 1) {
			ERR_clear_error();
			return sim_fail(s, SIM_ESTATE, "%s/%s is not signed by its issuer", s->dir,
					pki_files[i].cert);
		}
	}
	if ((rc = load_key(s, ATTESTATION_KEY_FILE, &s->att_key)) < 0)
		return rc;
	if (sim_pubkey_raw(s->att_key, s->att_pub) < 0)
		return sim_fail_ssl(s, "attestation public key");

	size_t a = strlen(s->pck_pem), b = strlen(s->ca_pem), c = strlen(s->root_pem);
	if (!(s->chain_pem = malloc(a + b + c + 1)))
		return sim_fail(s, SIM_ENOMEM, "out of memory");
	memcpy(s->chain_pem, s->pck_pem, a);
	memcpy(s->chain_pem + a, s->ca_pem, b);
	memcpy(s->chain_pem + a + b, s->root_pem, c + 1);

	unsigned char *der = NULL;
	int n = i2d_X509(s->root, &der);
	if (n <= 0)
		return sim_fail_ssl(s, "encoding the root CA");
	s->root_der = malloc((size_t)n);
	if (s->root_der)
		memcpy(s->root_der, der, (size_t)n);
	OPENSSL_free(der);
	if (!s->root_der)
		return sim_fail(s, SIM_ENOMEM, "out of memory");
	s->root_der_len = (size_t)n;
	return 0;
}

/* Free the keys and certificates (create_state() leaves them set; load_state() reloads). */
static void free_pki(struct sim *s)
{
	EVP_PKEY_free(s->root_key);
	EVP_PKEY_free(s->ca_key);
	EVP_PKEY_free(s->pck_key);
	EVP_PKEY_free(s->tcb_key);
	EVP_PKEY_free(s->att_key);
	X509_free(s->root);
	X509_free(s->ca);
	X509_free(s->pck);
	X509_free(s->tcb);
	free(s->root_pem);
	free(s->ca_pem);
	free(s->pck_pem);
	free(s->tcb_pem);
	free(s->chain_pem);
	free(s->root_der);
	s->root_key = s->ca_key = s->pck_key = s->tcb_key = s->att_key = NULL;
	s->root = s->ca = s->pck = s->tcb = NULL;
	s->root_pem = s->ca_pem = s->pck_pem = s->tcb_pem = s->chain_pem = NULL;
	s->root_der = NULL;
	s->root_der_len = 0;
}

static int open_locked(struct sim *s)
{
	char path[4096];
	int rc = sim_path(s, path, sizeof(path), PLATFORM_FILE);
	if (rc < 0)
		return rc;
	char *text = NULL;
	rc = sim_read_file(path, &text, NULL);
	free(text);
	if (rc == -ENOENT) {
		rc = create_state(s);
		free_pki(s);
		if (rc < 0)
			return rc;
	} else if (rc < 0) {
		return sim_fail(s, SIM_EIO, "cannot read %s: %s", path, strerror(-rc));
	}
	return load_state(s);
}

int sim_open(const char *dir, struct sim **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!dir || !*dir || strlen(dir) > 3800) {
		snprintf(err, errlen, "invalid state directory");
		return SIM_EINVAL;
	}
	struct sim *s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = strdup(dir))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return SIM_ENOMEM;
	}
	size_t n = strlen(s->dir);
	while (n > 1 && s->dir[n - 1] == '/')
		s->dir[--n] = '\0';

	char cvms[4096];
	int rc = sim_mkdirs(s->dir);
	if (rc < 0) {
		rc = sim_fail(s, SIM_EIO, "cannot create %s: %s", s->dir, strerror(-rc));
	} else if ((rc = sim_path(s, cvms, sizeof(cvms), "cvms")) == 0 &&
		   (rc = sim_mkdirs(cvms)) < 0) {
		rc = sim_fail(s, SIM_EIO, "cannot create %s: %s", cvms, strerror(-rc));
	}
	if (rc == 0) {
		int lock = sim_lock(s, true);
		rc = lock < 0 ? lock : open_locked(s);
		sim_unlock(lock);
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s", s->err);
		sim_close(s);
		return rc;
	}
	sim_clear_error(s);
	*out = s;
	return 0;
}

void sim_close(struct sim *s)
{
	if (!s)
		return;
	free_pki(s);
	free(s->dir);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}
