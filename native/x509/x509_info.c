/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x509 parsing: load certificates and CSRs (PEM or DER) and take them apart into a struct
 * x509_info (names, serial, validity, SANs, CA/pathlen, key usages, EKU, key identifiers, every
 * extension's raw value, SPKI, fingerprint).
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "moonstack/rt_tls.h"
#include "x509/x509.h"

/*
 * PEM text, or DER? DER certificates and requests start with a SEQUENCE tag (0x30), and may
 * well contain "-----BEGIN" inside (an RA-TLS certificate embeds a quote whose PCK chain is
 * PEM): only input that does not start with 0x30 is looked at as text.
 */
static bool looks_pem(const void *data, size_t len)
{
	if (len > 0 && ((const unsigned char *)data)[0] == 0x30)
		return false;
	return len > 10 && memmem(data, len, "-----BEGIN", 10) != NULL;
}

/* How to read one kind of object from PEM or exact DER (see load_der_or_pem). */
struct loader {
	const char *what;
	void *(*pem)(BIO *bio);
	void *(*d2i)(const unsigned char **p, long len);
	void (*free)(void *obj);
};

/* The three adapters of an OpenSSL object TYPE for a loader: pem_<name>, d2i_<name>,
 * free_<name>. */
#define LOADER_FUNCTIONS(name, TYPE)                               \
	static void *pem_##name(BIO *b)                            \
	{                                                          \
		return PEM_read_bio_##TYPE(b, NULL, NULL, NULL);   \
	}                                                          \
	static void *d2i_##name(const unsigned char **p, long len) \
	{                                                          \
		return d2i_##TYPE(NULL, p, len);                   \
	}                                                          \
	static void free_##name(void *x)                           \
	{                                                          \
		TYPE##_free(x);                                    \
	}

LOADER_FUNCTIONS(cert, X509)
LOADER_FUNCTIONS(req, X509_REQ)

static const struct loader cert_loader = { "certificate", pem_cert, d2i_cert, free_cert };
static const struct loader req_loader = { "certificate request", pem_req, d2i_req, free_req };

/* PEM text, or DER that must be used up exactly; errors name the kind of object. */
static void *load_der_or_pem(const void *data, size_t len, const struct loader *l,
			     struct x509_error *err)
{
	if (!data || len == 0 || len > 0x7fffffff)
		return x509_fail(err, "EINVAL", "empty or oversized %s", l->what), NULL;
	void *obj = NULL;
	if (looks_pem(data, len)) {
		BIO *bio = BIO_new_mem_buf(data, (int)len);
		obj = bio ? l->pem(bio) : NULL;
		BIO_free(bio);
	} else {
		const unsigned char *p = data;
		obj = l->d2i(&p, (long)len);
		if (obj && (size_t)(p - (const unsigned char *)data) != len) {
			l->free(obj);
			ERR_clear_error();
			return x509_fail(err, "EPARSE", "trailing bytes after the %s", l->what),
			       NULL;
		}
	}
	if (!obj)
		x509_fail_ssl(err, "EPARSE", "not a %s", l->what);
	return obj;
}

X509 *x509_cert_load(const void *data, size_t len, struct x509_error *err)
{
	X509 *peer = data ? rt_tls_peer_x509(data, len) : NULL; // decoded by the TLS handshake
	return peer ? peer : load_der_or_pem(data, len, &cert_loader, err);
}

X509_REQ *x509_csr_load(const void *data, size_t len, struct x509_error *err)
{
	return load_der_or_pem(data, len, &req_loader, err);
}

/* Copy an OpenSSL-allocated DER into @p out and free it. */
static int take_der(unsigned char *der, int n, struct x509_buf *out, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	if (n <= 0)
		return x509_fail_ssl(err, "ECRYPTO", "cannot encode DER");
	int rc = x509_buf_set(out, der, (size_t)n, err);
	OPENSSL_free(der);
	return rc;
}

int x509_cert_der(X509 *cert, struct x509_buf *out, struct x509_error *err)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);
	return take_der(der, n, out, err);
}

int x509_csr_der(X509_REQ *req, struct x509_buf *out, struct x509_error *err)
{
	unsigned char *der = NULL;
	int n = i2d_X509_REQ(req, &der);
	return take_der(der, n, out, err);
}

bool x509_csr_signature_ok(X509_REQ *req)
{
	EVP_PKEY *key = X509_REQ_get0_pubkey(req);
	bool ok = key && X509_REQ_verify(req, key) == 1;
	ERR_clear_error();
	return ok;
}

/* The first entry @p nid of @p name as UTF-8 (malloc'ed), or NULL. */
static char *name_entry(const X509_NAME *name, int nid)
{
	int i = X509_NAME_get_index_by_NID(name, nid, -1);
	if (i < 0)
		return NULL;
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
	unsigned char *utf8 = NULL;
	int n = ASN1_STRING_to_UTF8(&utf8, s);
	if (n < 0)
		return ERR_clear_error(), NULL;
	char *copy = strndup((const char *)utf8, (size_t)n);
	OPENSSL_free(utf8);
	return copy;
}

/* The RFC 2253 one-line form of @p name (malloc'ed), or NULL. */
static char *name_line(const X509_NAME *name)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		char *p = NULL;
		long n = BIO_get_mem_data(bio, &p);
		out = strndup(p ? p : "", (size_t)n);
	}
	BIO_free(bio);
	return out;
}

static int add_san(struct x509_info *info, enum x509_san_type type, char *value,
		   struct x509_error *err)
{
	struct x509_san *grown = realloc(info->sans, (info->n_sans + 1) * sizeof(*grown));
	if (!grown || !value) {
		free(value);
		if (grown)
			info->sans = grown;
		return x509_fail(err, "ENOMEM", "out of memory");
	}
	info->sans = grown;
	info->sans[info->n_sans++] = (struct x509_san){ type, value };
	return 0;
}

static char *asn1_text(const ASN1_STRING *s)
{
	return strndup((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
}

/* An iPAddress SAN as text ("10.0.0.1", "::1"; hex for odd lengths), malloc'ed. */
static char *ip_text(const ASN1_OCTET_STRING *ip)
{
	char buf[INET6_ADDRSTRLEN + 1] = "";
	const unsigned char *p = ASN1_STRING_get0_data(ip);
	int n = ASN1_STRING_length(ip);
	if (n == 4)
		inet_ntop(AF_INET, p, buf, sizeof(buf));
	else if (n == 16)
		inet_ntop(AF_INET6, p, buf, sizeof(buf));
	else
		for (int i = 0; i < n && i < 16; i++)
			snprintf(buf + 2 * i, sizeof(buf) - 2 * (size_t)i, "%02x", p[i]);
	return strdup(buf);
}

static int parse_sans(struct x509_info *info, const GENERAL_NAMES *names, struct x509_error *err)
{
	for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		int rc;
		if (gn->type == GEN_DNS) {
			rc = add_san(info, X509_SAN_DNS, asn1_text(gn->d.dNSName), err);
		} else if (gn->type == GEN_EMAIL) {
			rc = add_san(info, X509_SAN_EMAIL, asn1_text(gn->d.rfc822Name), err);
		} else if (gn->type == GEN_URI) {
			rc = add_san(info, X509_SAN_URI, asn1_text(gn->d.uniformResourceIdentifier),
				     err);
		} else if (gn->type == GEN_IPADD) {
			rc = add_san(info, X509_SAN_IP, ip_text(gn->d.iPAddress), err);
		} else {
			rc = add_san(info, X509_SAN_OTHER, strdup(""), err);
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* Read the standard extensions we report as fields, and copy every extension's raw value. */
static int parse_exts(struct x509_info *info, const STACK_OF(X509_EXTENSION) * exts,
		      struct x509_error *err)
{
	int n = sk_X509_EXTENSION_num(exts);
	if (n <= 0)
		return 0;
	info->exts = calloc((size_t)n, sizeof(*info->exts));
	if (!info->exts)
		return x509_fail(err, "ENOMEM", "out of memory");
	for (int i = 0; i < n; i++) {
		X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
		struct x509_ext_info *e = &info->exts[info->n_exts++];
		ASN1_OBJECT *obj = X509_EXTENSION_get_object(ext);
		OBJ_obj2txt(e->oid, sizeof(e->oid), obj, 1);
		/* RFC 5280 4.2: at most one instance of an extension (two would be read as two
		 * different answers: two key identifiers, two RA-TLS quotes) */
		for (size_t k = 0; k + 1 < info->n_exts; k++)
			if (!strcmp(info->exts[k].oid, e->oid))
				return x509_fail(err, "EPARSE", "duplicate extension %s", e->oid);
		e->critical = X509_EXTENSION_get_critical(ext) > 0;
		const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
		if (x509_buf_set(&e->value, ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v),
				 err))
			return -1;
		int nid = OBJ_obj2nid(obj);
		if (nid != NID_subject_alt_name && nid != NID_basic_constraints &&
		    nid != NID_key_usage && nid != NID_ext_key_usage &&
		    nid != NID_subject_key_identifier && nid != NID_authority_key_identifier)
			continue;
		void *d = X509V3_EXT_d2i(ext);
		if (!d) {
			ERR_clear_error();
			return x509_fail(err, "EPARSE", "malformed extension %s", e->oid);
		}
		int rc = 0;
		if (nid == NID_subject_alt_name) {
			rc = parse_sans(info, d, err);
			GENERAL_NAMES_free(d);
		} else if (nid == NID_basic_constraints) {
			BASIC_CONSTRAINTS *bc = d;
			info->has_basic_constraints = true;
			info->ca = bc->ca != 0;
			info->pathlen = bc->pathlen ? (int)ASN1_INTEGER_get(bc->pathlen) : -1;
			BASIC_CONSTRAINTS_free(bc);
		} else if (nid == NID_key_usage) {
			ASN1_BIT_STRING *bits = d;
			info->has_key_usage = true;
			for (int b = 0; b < 9; b++)
				if (ASN1_BIT_STRING_get_bit(bits, b))
					info->key_usage |= 1u << b;
			ASN1_BIT_STRING_free(bits);
		} else if (nid == NID_ext_key_usage) {
			EXTENDED_KEY_USAGE *eku = d;
			int k = sk_ASN1_OBJECT_num(eku);
			info->has_eku = true;
			info->eku_oids = calloc((size_t)k + 1, sizeof(char *));
			for (int j = 0; info->eku_oids && j < k; j++) {
				ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, j);
				char buf[96];
				OBJ_obj2txt(buf, sizeof(buf), o, 1);
				info->eku_oids[info->n_eku_oids++] = strdup(buf);
				if (OBJ_obj2nid(o) == NID_server_auth)
					info->eku |= X509_EKU_SERVER_AUTH;
				else if (OBJ_obj2nid(o) == NID_client_auth)
					info->eku |= X509_EKU_CLIENT_AUTH;
			}
			if (!info->eku_oids)
				rc = x509_fail(err, "ENOMEM", "out of memory");
			sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
		} else if (nid == NID_subject_key_identifier) {
			ASN1_OCTET_STRING *ski = d;
			rc = x509_buf_set(&info->ski, ASN1_STRING_get0_data(ski),
					  (size_t)ASN1_STRING_length(ski), err);
			ASN1_OCTET_STRING_free(ski);
		} else {
			AUTHORITY_KEYID *akid = d;
			if (akid->keyid)
				rc = x509_buf_set(&info->aki, ASN1_STRING_get0_data(akid->keyid),
						  (size_t)ASN1_STRING_length(akid->keyid), err);
			AUTHORITY_KEYID_free(akid);
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* The SubjectPublicKeyInfo as it was parsed (i2d_PUBKEY of the EVP_PKEY would go through
 * OpenSSL 3.0's encoder framework: 200 times slower). */
static int spki_of(X509_PUBKEY *pub, struct x509_info *info, struct x509_error *err)
{
	unsigned char *der = NULL;
	int n = pub ? i2d_X509_PUBKEY(pub, &der) : -1;
	return take_der(der, n, &info->spki, err);
}

static int64_t unix_time(const ASN1_TIME *t)
{
	struct tm tm;
	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return (int64_t)timegm(&tm);
}

/* The end of x509_cert_info / x509_csr_info: with rc 0 the signature algorithm's name from
 * `sig_nid`, with rc -1 the half-filled info freed. Returns rc. */
static int info_done(struct x509_info *info, int sig_nid, int rc)
{
	if (rc != 0) {
		x509_info_free(info);
		return rc;
	}
	snprintf(info->sig_alg, sizeof(info->sig_alg), "%s",
		 sig_nid != NID_undef ? OBJ_nid2ln(sig_nid) : "unknown");
	ERR_clear_error();
	return 0;
}

int x509_cert_info(X509 *cert, struct x509_info *info, struct x509_error *err)
{
	memset(info, 0, sizeof(*info));
	info->pathlen = -1;
	info->version = (int)X509_get_version(cert) + 1;
	info->subject = name_line(X509_get_subject_name(cert));
	info->issuer = name_line(X509_get_issuer_name(cert));
	info->cn = name_entry(X509_get_subject_name(cert), NID_commonName);
	info->org = name_entry(X509_get_subject_name(cert), NID_organizationName);
	info->issuer_cn = name_entry(X509_get_issuer_name(cert), NID_commonName);
	info->issuer_org = name_entry(X509_get_issuer_name(cert), NID_organizationName);
	info->self_issued =
		X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) == 0;
	if (!info->subject || !info->issuer) {
		x509_fail(err, "ENOMEM", "out of memory");
		goto fail;
	}
	BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	if (!serial) {
		x509_fail_ssl(err, "EPARSE", "bad serial number");
		goto fail;
	}
	info->serial.len = (size_t)BN_num_bytes(serial);
	info->serial.data = malloc(info->serial.len + 1);
	if (info->serial.data)
		BN_bn2bin(serial, info->serial.data);
	BN_free(serial);
	if (!info->serial.data) {
		x509_fail(err, "ENOMEM", "out of memory");
		goto fail;
	}
	info->not_before = unix_time(X509_get0_notBefore(cert));
	info->not_after = unix_time(X509_get0_notAfter(cert));
	if (parse_exts(info, X509_get0_extensions(cert), err) != 0 ||
	    spki_of(X509_get0_pubkey(cert) ? X509_get_X509_PUBKEY(cert) : NULL, info, err) != 0 ||
	    x509_cert_der(cert, &info->der, err) != 0)
		goto fail;
	unsigned int n = 0;
	EVP_Digest(info->der.data, info->der.len, info->fingerprint, &n, EVP_sha256(), NULL);
	return info_done(info, X509_get_signature_nid(cert), 0);
fail:
	return info_done(info, NID_undef, -1);
}

int x509_csr_info(X509_REQ *req, struct x509_info *info, struct x509_error *err)
{
	memset(info, 0, sizeof(*info));
	info->pathlen = -1;
	info->version = (int)X509_REQ_get_version(req) + 1;
	const X509_NAME *subject = X509_REQ_get_subject_name(req);
	info->subject = name_line(subject);
	info->cn = name_entry(subject, NID_commonName);
	info->org = name_entry(subject, NID_organizationName);
	if (!info->subject) {
		x509_fail(err, "ENOMEM", "out of memory");
		goto fail;
	}
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	ERR_clear_error();
	int rc = parse_exts(info, exts, err);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	if (rc != 0 ||
	    spki_of(X509_REQ_get0_pubkey(req) ? X509_REQ_get_X509_PUBKEY(req) : NULL, info, err) !=
		    0 ||
	    x509_csr_der(req, &info->der, err) != 0)
		goto fail;
	info->signature_ok = x509_csr_signature_ok(req);
	return info_done(info, X509_REQ_get_signature_nid(req), 0);
fail:
	return info_done(info, NID_undef, -1);
}

void x509_info_free(struct x509_info *info)
{
	if (!info)
		return;
	free(info->subject);
	free(info->issuer);
	free(info->cn);
	free(info->org);
	free(info->issuer_cn);
	free(info->issuer_org);
	x509_buf_free(&info->serial);
	for (size_t i = 0; i < info->n_sans; i++)
		free(info->sans[i].value);
	free(info->sans);
	for (size_t i = 0; i < info->n_eku_oids; i++)
		free(info->eku_oids[i]);
	free(info->eku_oids);
	x509_buf_free(&info->ski);
	x509_buf_free(&info->aki);
	for (size_t i = 0; i < info->n_exts; i++)
		x509_buf_free(&info->exts[i].value);
	free(info->exts);
	x509_buf_free(&info->spki);
	x509_buf_free(&info->der);
	memset(info, 0, sizeof(*info));
	info->pathlen = -1;
}

const struct x509_ext_info *x509_info_ext(const struct x509_info *info, const char *oid)
{
	for (size_t i = 0; i < info->n_exts; i++)
		if (strcmp(info->exts[i].oid, oid) == 0)
			return &info->exts[i];
	return NULL;
}

int x509_info_ratls(const struct x509_info *info, enum x509_ratls_ext which, const uint8_t **data,
		    size_t *len, struct x509_error *err)
{
	const char *oid = x509_ratls_oid(which);
	if (!oid)
		return x509_fail(err, "EINVAL", "unknown RA-TLS extension %d", (int)which);
	const struct x509_ext_info *e = x509_info_ext(info, oid);
	if (!e)
		return 0;
	if (x509_octets_unwrap(e->value.data, e->value.len, data, len, err) != 0)
		return x509_fail(err, "EPARSE", "RA-TLS extension %s is not an OCTET STRING", oid);
	return 1;
}
