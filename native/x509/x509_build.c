/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x509 creation: certificates and PKCS#10 requests from a struct x509_cert_opts (subject,
 * SANs, validity, serial, CA/pathlen, key usages, EKU, key identifiers, custom extensions such
 * as the RA-TLS ones), signed with OpenSSL.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "x509/x509.h"

typedef STACK_OF(X509_EXTENSION) ext_list;

static void free_exts(ext_list *exts)
{
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
}

/* Append the extension @p nid built from the internal structure @p value. */
static int push_i2d(ext_list *exts, int nid, bool critical, void *value, struct x509_error *err)
{
	X509_EXTENSION *ext = X509V3_EXT_i2d(nid, critical ? 1 : 0, value);
	if (!ext || !sk_X509_EXTENSION_push(exts, ext)) {
		X509_EXTENSION_free(ext);
		return x509_fail_ssl(err, "ECRYPTO", "cannot encode extension %s", OBJ_nid2sn(nid));
	}
	return 0;
}

static int add_sans(ext_list *exts, const struct x509_cert_opts *o, struct x509_error *err)
{
	if (o->n_sans == 0)
		return 0;
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	int rc = names ? 0 : x509_fail(err, "ENOMEM", "out of memory");
	for (size_t i = 0; rc == 0 && i < o->n_sans; i++) {
		const char *s = o->sans[i];
		if (!s || !*s) {
			rc = x509_fail(err, "EINVAL", "empty subjectAltName entry");
			break;
		}
		GENERAL_NAME *gn = GENERAL_NAME_new();
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s);
		ERR_clear_error();
		if (gn && ip) {
			GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
		} else if (gn) {
			ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
			if (dns && ASN1_STRING_set(dns, s, (int)strlen(s)) == 1) {
				GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
			} else {
				ASN1_IA5STRING_free(dns);
				GENERAL_NAME_free(gn);
				gn = NULL;
			}
		}
		if (!gn || !sk_GENERAL_NAME_push(names, gn)) {
			GENERAL_NAME_free(gn);
			rc = x509_fail(err, "ENOMEM", "out of memory");
		}
	}
	if (rc == 0)
		rc = push_i2d(exts, NID_subject_alt_name, false, names, err);
	GENERAL_NAMES_free(names);
	return rc;
}

static int add_basic_constraints(ext_list *exts, const struct x509_cert_opts *o,
				 struct x509_error *err)
{
	BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
	if (!bc)
		return x509_fail(err, "ENOMEM", "out of memory");
	bc->ca = 0xff;
	int rc = 0;
	if (o->pathlen >= 0) {
		bc->pathlen = ASN1_INTEGER_new();
		if (!bc->pathlen || ASN1_INTEGER_set(bc->pathlen, o->pathlen) != 1)
			rc = x509_fail(err, "ENOMEM", "out of memory");
	}
	if (rc == 0)
		rc = push_i2d(exts, NID_basic_constraints, true, bc, err);
	BASIC_CONSTRAINTS_free(bc);
	return rc;
}

static int add_key_usage(ext_list *exts, unsigned usage, struct x509_error *err)
{
	if (usage >> 9)
		return x509_fail(err, "EINVAL", "unknown key usage bits 0x%x", usage);
	ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
	int rc = bits ? 0 : x509_fail(err, "ENOMEM", "out of memory");
	for (int i = 0; rc == 0 && i < 9; i++)
		if ((usage & (1u << i)) && ASN1_BIT_STRING_set_bit(bits, i, 1) != 1)
			rc = x509_fail(err, "ENOMEM", "out of memory");
	if (rc == 0)
		rc = push_i2d(exts, NID_key_usage, true, bits, err);
	ASN1_BIT_STRING_free(bits);
	return rc;
}

static int add_eku(ext_list *exts, unsigned eku, struct x509_error *err)
{
	if (eku & ~(unsigned)(X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH))
		return x509_fail(err, "EINVAL", "unknown extended key usage bits 0x%x", eku);
	EXTENDED_KEY_USAGE *list = sk_ASN1_OBJECT_new_null();
	int rc = list ? 0 : x509_fail(err, "ENOMEM", "out of memory");
	if (rc == 0 && (eku & X509_EKU_SERVER_AUTH) &&
	    !sk_ASN1_OBJECT_push(list, OBJ_nid2obj(NID_server_auth)))
		rc = x509_fail(err, "ENOMEM", "out of memory");
	if (rc == 0 && (eku & X509_EKU_CLIENT_AUTH) &&
	    !sk_ASN1_OBJECT_push(list, OBJ_nid2obj(NID_client_auth)))
		rc = x509_fail(err, "ENOMEM", "out of memory");
	if (rc == 0)
		rc = push_i2d(exts, NID_ext_key_usage, false, list, err);
	sk_ASN1_OBJECT_free(list); // the objects are OpenSSL's static ones
	return rc;
}

/* rcgen's key identifier: the first 20 bytes of SHA-256 over the SubjectPublicKeyInfo DER. */
static int key_id(EVP_PKEY *key, uint8_t id[20], struct x509_error *err)
{
	struct x509_buf spki;
	if (x509_key_spki_der(key, &spki, err) != 0)
		return -1;
	uint8_t md[32];
	unsigned int n = 0;
	int ok = EVP_Digest(spki.data, spki.len, md, &n, EVP_sha256(), NULL) == 1;
	x509_buf_free(&spki);
	if (!ok)
		return x509_fail_ssl(err, "ECRYPTO", "SHA-256 failed");
	memcpy(id, md, 20);
	return 0;
}

static int add_ski(ext_list *exts, EVP_PKEY *key, struct x509_error *err)
{
	uint8_t id[20];
	if (key_id(key, id, err) != 0)
		return -1;
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	int rc = os && ASN1_OCTET_STRING_set(os, id, 20) == 1
			 ? push_i2d(exts, NID_subject_key_identifier, false, os, err)
			 : x509_fail(err, "ENOMEM", "out of memory");
	ASN1_OCTET_STRING_free(os);
	return rc;
}

static int add_aki(ext_list *exts, X509 *issuer, EVP_PKEY *issuer_key, struct x509_error *err)
{
	uint8_t id[20];
	const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
	ERR_clear_error();
	const uint8_t *idp = id;
	int idlen = 20;
	if (ski) {
		idp = ASN1_STRING_get0_data(ski);
		idlen = ASN1_STRING_length(ski);
	} else if (key_id(issuer_key, id, err) != 0) {
		return -1;
	}
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	int rc = 0;
	if (!akid || !(akid->keyid = ASN1_OCTET_STRING_new()) ||
	    ASN1_OCTET_STRING_set(akid->keyid, idp, idlen) != 1)
		rc = x509_fail(err, "ENOMEM", "out of memory");
	if (rc == 0)
		rc = push_i2d(exts, NID_authority_key_identifier, false, akid, err);
	AUTHORITY_KEYID_free(akid);
	return rc;
}

/* Whether @p data is exactly one DER/BER element. */
static bool one_element(const uint8_t *data, size_t len)
{
	const unsigned char *p = data;
	ASN1_TYPE *t = len ? d2i_ASN1_TYPE(NULL, &p, (long)len) : NULL;
	bool ok = t && (size_t)(p - data) == len;
	ASN1_TYPE_free(t);
	ERR_clear_error();
	return ok;
}

static int add_custom(ext_list *exts, const struct x509_ext_spec *s, struct x509_error *err)
{
	if (!s->oid || (!s->data && s->len))
		return x509_fail(err, "EINVAL", "custom extension without an OID or data");
	ASN1_OBJECT *obj = OBJ_txt2obj(s->oid, 1);
	if (!obj) {
		ERR_clear_error();
		return x509_fail(err, "EINVAL", "'%s' is not a dotted OID", s->oid);
	}
	struct x509_buf value = { 0 };
	int rc = 0;
	if (s->encoding == X509_EXT_DER) {
		if (!one_element(s->data, s->len))
			rc = x509_fail(err, "EINVAL", "extension %s: value is not one DER element",
				       s->oid);
		else if (!(value.data = malloc(s->len + 1)))
			rc = x509_fail(err, "ENOMEM", "out of memory");
		else
			memcpy(value.data, s->data, value.len = s->len);
	} else {
		rc = x509_octets_wrap(s->data, s->len, &value, err);
	}
	ASN1_OCTET_STRING *os = rc == 0 ? ASN1_OCTET_STRING_new() : NULL;
	X509_EXTENSION *ext = NULL;
	if (rc == 0 && (!os || ASN1_OCTET_STRING_set(os, value.data, (int)value.len) != 1 ||
			!(ext = X509_EXTENSION_create_by_OBJ(NULL, obj, s->critical ? 1 : 0, os)) ||
			!sk_X509_EXTENSION_push(exts, ext))) {
		X509_EXTENSION_free(ext);
		rc = x509_fail_ssl(err, "ENOMEM", "cannot build extension %s", s->oid);
	}
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(obj);
	x509_buf_free(&value);
	return rc;
}

/* Refuse two extensions with the same OID (an invalid certificate). */
static int check_unique(ext_list *exts, struct x509_error *err)
{
	int n = sk_X509_EXTENSION_num(exts);
	for (int i = 0; i < n; i++) {
		ASN1_OBJECT *a = X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, i));
		for (int j = i + 1; j < n; j++) {
			if (OBJ_cmp(a, X509_EXTENSION_get_object(
					       sk_X509_EXTENSION_value(exts, j))) == 0) {
				char oid[96];
				OBJ_obj2txt(oid, sizeof(oid), a, 1);
				return x509_fail(err, "EINVAL", "extension %s appears twice", oid);
			}
		}
	}
	return 0;
}

/* The extensions of @p o: standard ones first (as rcgen orders them), then custom ones. */
static ext_list *build_exts(const struct x509_cert_opts *o, EVP_PKEY *subject_key, X509 *issuer,
			    EVP_PKEY *issuer_key, bool for_cert, struct x509_error *err)
{
	ext_list *exts = sk_X509_EXTENSION_new_null();
	if (!exts)
		return x509_fail(err, "ENOMEM", "out of memory"), NULL;
	int rc = add_sans(exts, o, err);
	if (rc == 0 && o->key_usage)
		rc = add_key_usage(exts, o->key_usage, err);
	if (rc == 0 && o->eku)
		rc = add_eku(exts, o->eku, err);
	if (rc == 0 && for_cert && !o->no_ski)
		rc = add_ski(exts, subject_key, err);
	if (rc == 0 && for_cert && issuer && !o->no_aki)
		rc = add_aki(exts, issuer, issuer_key, err);
	if (rc == 0 && o->ca)
		rc = add_basic_constraints(exts, o, err);
	for (size_t i = 0; rc == 0 && i < o->n_exts; i++)
		rc = add_custom(exts, &o->exts[i], err);
	if (rc == 0)
		rc = check_unique(exts, err);
	if (rc) {
		free_exts(exts);
		return NULL;
	}
	return exts;
}

static int set_name(X509_NAME *name, const struct x509_cert_opts *o, struct x509_error *err)
{
	// dstack order: O first, then CN
	if (o->org && X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
						 (const unsigned char *)o->org, -1, -1, 0) != 1)
		return x509_fail_ssl(err, "EINVAL", "bad organization name");
	if (o->cn && X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
						(const unsigned char *)o->cn, -1, -1, 0) != 1)
		return x509_fail_ssl(err, "EINVAL", "bad common name");
	return 0;
}

/* Message digest for signing with @p key: none for EdDSA, SHA-256 otherwise. */
static const EVP_MD *sign_md(EVP_PKEY *key)
{
	int id = EVP_PKEY_get_base_id(key);
	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

static int set_serial(X509 *x, const struct x509_cert_opts *o, struct x509_error *err)
{
	uint8_t buf[20];
	const uint8_t *s = o->serial;
	size_t n = o->serial_len;
	if (!s) {
		n = 16;
		if (RAND_bytes(buf, (int)n) != 1)
			return x509_fail_ssl(err, "ECRYPTO", "no random bytes for the serial");
		buf[0] = (buf[0] & 0x7f) | 0x40; // positive, full length
		s = buf;
	} else if (n == 0 || n > 20) {
		return x509_fail(err, "EINVAL", "serial must be 1 to 20 bytes");
	}
	BIGNUM *bn = BN_bin2bn(s, (int)n, NULL);
	int ok = bn && !BN_is_zero(bn) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	return ok ? 0 : x509_fail_ssl(err, "EINVAL", "bad serial number");
}

static int set_validity(X509 *x, const struct x509_cert_opts *o, struct x509_error *err)
{
	int64_t nb = o->not_before ? o->not_before : X509_DEFAULT_NOT_BEFORE;
	int64_t na = o->not_after ? o->not_after
				  : (int64_t)time(NULL) + (int64_t)X509_DEFAULT_DAYS * 86400;
	if (na <= nb)
		return x509_fail(err, "EINVAL", "not_after must be later than not_before");
	if (!ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na))
		return x509_fail_ssl(err, "EINVAL", "validity out of range");
	return 0;
}

X509 *x509_cert_create(const struct x509_cert_opts *o, EVP_PKEY *subject_key, X509 *issuer,
		       EVP_PKEY *issuer_key, struct x509_error *err)
{
	if (!o || !subject_key)
		return x509_fail(err, "EINVAL", "missing options or subject key"), NULL;
	EVP_PKEY *signer = issuer_key ? issuer_key : subject_key;
	if (issuer && !issuer_key)
		return x509_fail(err, "EINVAL", "an issuer certificate needs the issuer key"), NULL;
	if (!x509_key_is_private(signer))
		return x509_fail(err, "EKEY", "the signing key has no private part"), NULL;
	if (issuer && X509_check_private_key(issuer, issuer_key) != 1) {
		x509_fail_ssl(err, "EKEY", "the issuer key does not match the issuer certificate");
		return NULL;
	}
	if (!issuer && issuer_key && EVP_PKEY_eq(issuer_key, subject_key) != 1) {
		ERR_clear_error();
		return x509_fail(err, "EKEY", "self-signed: the signing key must be the subject's"),
		       NULL;
	}
	X509 *x = X509_new();
	ext_list *exts = NULL;
	if (!x) {
		x509_fail_ssl(err, "ENOMEM", "out of memory");
		goto fail;
	}
	if (X509_set_version(x, X509_VERSION_3) != 1 || set_serial(x, o, err) != 0 ||
	    set_validity(x, o, err) != 0 || set_name(X509_get_subject_name(x), o, err) != 0)
		goto fail;
	if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
					   : X509_get_subject_name(x)) != 1 ||
	    X509_set_pubkey(x, subject_key) != 1) {
		x509_fail_ssl(err, "EKEY", "cannot set the issuer or the public key");
		goto fail;
	}
	exts = build_exts(o, subject_key, issuer, issuer_key, true, err);
	if (!exts)
		goto fail;
	for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
		if (X509_add_ext(x, sk_X509_EXTENSION_value(exts, i), -1) != 1) {
			x509_fail_ssl(err, "ECRYPTO", "cannot add an extension");
			goto fail;
		}
	}
	if (X509_sign(x, signer, sign_md(signer)) <= 0) {
		x509_fail_ssl(err, "ECRYPTO", "cannot sign the certificate");
		goto fail;
	}
	free_exts(exts);
	return x;
fail:
	free_exts(exts);
	X509_free(x);
	return NULL;
}

X509_REQ *x509_csr_create(const struct x509_cert_opts *o, EVP_PKEY *key, struct x509_error *err)
{
	if (!o || !key)
		return x509_fail(err, "EINVAL", "missing options or key"), NULL;
	if (!x509_key_is_private(key))
		return x509_fail(err, "EKEY", "a CSR is signed with its own private key"), NULL;
	X509_REQ *req = X509_REQ_new();
	ext_list *exts = NULL;
	if (!req) {
		x509_fail_ssl(err, "ENOMEM", "out of memory");
		goto fail;
	}
	if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	    X509_REQ_set_pubkey(req, key) != 1) {
		x509_fail_ssl(err, "EKEY", "cannot set the public key");
		goto fail;
	}
	if (set_name(X509_REQ_get_subject_name(req), o, err) != 0)
		goto fail;
	exts = build_exts(o, key, NULL, NULL, false, err);
	if (!exts)
		goto fail;
	if (sk_X509_EXTENSION_num(exts) > 0 && X509_REQ_add_extensions(req, exts) != 1) {
		x509_fail_ssl(err, "ECRYPTO", "cannot add the extension request");
		goto fail;
	}
	if (X509_REQ_sign(req, key, sign_md(key)) <= 0) {
		x509_fail_ssl(err, "ECRYPTO", "cannot sign the request");
		goto fail;
	}
	free_exts(exts);
	return req;
fail:
	free_exts(exts);
	X509_REQ_free(req);
	return NULL;
}
