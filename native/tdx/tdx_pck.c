/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PEM PCK certificate chain a quote embeds (tdx_quote.h): each certificate's subject, issuer,
 * serial, validity and fingerprint, and the PCK leaf's SGX extension (FMSPC, PCE-ID, TCB). Only
 * parsing: chain verification belongs to the DCAP verifier.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tdx/tdx_quote.h"

#define SGX_EXT_OID "1.2.840.113741.1.13.1"

static void name_text(const X509_NAME *name, char *out, size_t outlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;

	out[0] = '\0';
	if (!b)
		return;
	/* RFC 2253/4514 string: most significant RDN last in the DER, first here. */
	X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
	n = BIO_get_mem_data(b, &p);
	if (n >= (long)outlen)
		n = (long)outlen - 1;
	if (n > 0)
		memcpy(out, p, (size_t)n);
	out[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

static void time_text(const ASN1_TIME *t, char *out, size_t outlen)
{
	struct tm tm;

	out[0] = '\0';
	if (t && ASN1_TIME_to_tm(t, &tm) == 1)
		strftime(out, outlen, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
}

static void serial_text(const ASN1_INTEGER *serial, char *out, size_t outlen)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;

	out[0] = '\0';
	if (hex) {
		snprintf(out, outlen, "0x%s", hex);
		for (char *p = out + 2; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	OPENSSL_free(hex);
	BN_free(bn);
}

/* Copy an OCTET STRING of exactly @n bytes. */
static bool octets(const ASN1_TYPE *v, uint8_t *out, size_t n)
{
	if (v->type != V_ASN1_OCTET_STRING || ASN1_STRING_length(v->value.octet_string) != (int)n)
		return false;
	memcpy(out, ASN1_STRING_get0_data(v->value.octet_string), n);
	return true;
}

static bool integer(const ASN1_TYPE *v, long max, long *out)
{
	if (v->type == V_ASN1_INTEGER)
		*out = ASN1_INTEGER_get(v->value.integer);
	else if (v->type == V_ASN1_ENUMERATED)
		*out = ASN1_ENUMERATED_get(v->value.enumerated);
	else
		return false;
	return *out >= 0 && *out <= max;
}

/* The SEQUENCE inside an ASN1_TYPE as a list of its elements (free with sk_ASN1_TYPE_pop_free). */
static STACK_OF(ASN1_TYPE) * sequence(const ASN1_TYPE *v)
{
	if (v->type != V_ASN1_SEQUENCE)
		return NULL;
	const unsigned char *p = ASN1_STRING_get0_data(v->value.sequence);
	return d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(v->value.sequence));
}

/* Walk SEQUENCE { SEQUENCE { OID, value } ... }, calling @fn for each pair. */
static bool walk_pairs(STACK_OF(ASN1_TYPE) * seq,
		       bool (*fn)(const char *oid, const ASN1_TYPE *v, struct tdx_sgx_ext *x),
		       struct tdx_sgx_ext *x)
{
	char oid[64];

	for (int i = 0; i < sk_ASN1_TYPE_num(seq); i++) {
		STACK_OF(ASN1_TYPE) *pair = sequence(sk_ASN1_TYPE_value(seq, i));
		bool ok = pair && sk_ASN1_TYPE_num(pair) == 2 &&
			  sk_ASN1_TYPE_value(pair, 0)->type == V_ASN1_OBJECT &&
			  OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_TYPE_value(pair, 0)->value.object,
				      1) > 0 &&
			  fn(oid, sk_ASN1_TYPE_value(pair, 1), x);
		sk_ASN1_TYPE_pop_free(pair, ASN1_TYPE_free);
		if (!ok)
			return false;
	}
	return true;
}

static bool tcb_item(const char *oid, const ASN1_TYPE *v, struct tdx_sgx_ext *x)
{
	static const char prefix[] = SGX_EXT_OID ".2.";
	long n, comp;

	if (strncmp(oid, prefix, sizeof(prefix) - 1) != 0)
		return true; /* unknown items are ignored */
	comp = strtol(oid + sizeof(prefix) - 1, NULL, 10);
	if (comp >= 1 && comp <= 16) {
		if (!integer(v, 255, &n))
			return false;
		x->tcb_comp[comp - 1] = (uint8_t)n;
	} else if (comp == 17) {
		if (!integer(v, 65535, &n))
			return false;
		x->pcesvn = (uint16_t)n;
	} else if (comp == 18) {
		return octets(v, x->cpusvn, sizeof(x->cpusvn));
	}
	return true;
}

static bool sgx_item(const char *oid, const ASN1_TYPE *v, struct tdx_sgx_ext *x)
{
	static const char prefix[] = SGX_EXT_OID ".";
	long n;

	if (strncmp(oid, prefix, sizeof(prefix) - 1) != 0 || strchr(oid + sizeof(prefix) - 1, '.'))
		return true;
	switch (strtol(oid + sizeof(prefix) - 1, NULL, 10)) {
	case 1:
		return octets(v, x->ppid, sizeof(x->ppid));
	case 2: {
		STACK_OF(ASN1_TYPE) *tcb = sequence(v);
		bool ok = tcb && walk_pairs(tcb, tcb_item, x);
		sk_ASN1_TYPE_pop_free(tcb, ASN1_TYPE_free);
		return ok;
	}
	case 3:
		return octets(v, x->pceid, sizeof(x->pceid));
	case 4:
		return octets(v, x->fmspc, sizeof(x->fmspc));
	case 5:
		if (!integer(v, 255, &n))
			return false;
		x->sgx_type = (int)n;
		return true;
	default:
		return true;
	}
}

/* 1 parsed, 0 absent, -1 malformed. */
static int sgx_extension(X509 *cert, struct tdx_sgx_ext *x)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(SGX_EXT_OID, 1);
	int idx = obj ? X509_get_ext_by_OBJ(cert, obj, -1) : -1;

	ASN1_OBJECT_free(obj);
	if (idx < 0)
		return 0;
	ASN1_OCTET_STRING *data = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
	const unsigned char *p = ASN1_STRING_get0_data(data);
	STACK_OF(ASN1_TYPE) *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, ASN1_STRING_length(data));
	memset(x, 0, sizeof(*x));
	x->sgx_type = -1;
	bool ok = seq && walk_pairs(seq, sgx_item, x);
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	return ok ? 1 : -1;
}

static int cert_info(X509 *cert, struct tdx_cert_info *ci, size_t index, struct tdx_error *err)
{
	unsigned char *der = NULL;
	int n = i2d_X509(cert, &der);

	memset(ci, 0, sizeof(*ci));
	if (n <= 0)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "cannot encode certificate");
	tdx_sha256(der, (size_t)n, ci->sha256);
	OPENSSL_free(der);
	name_text(X509_get_subject_name(cert), ci->subject, sizeof(ci->subject));
	name_text(X509_get_issuer_name(cert), ci->issuer, sizeof(ci->issuer));
	serial_text(X509_get0_serialNumber(cert), ci->serial, sizeof(ci->serial));
	time_text(X509_get0_notBefore(cert), ci->not_before, sizeof(ci->not_before));
	time_text(X509_get0_notAfter(cert), ci->not_after, sizeof(ci->not_after));
	int rc = sgx_extension(cert, &ci->sgx);
	if (rc < 0)
		return tdx_fail(err, -EBADMSG, "EQUOTE", TDX_NO_OFFSET,
				"PCK chain certificate %zu: malformed SGX extension", index);
	ci->has_sgx_ext = rc == 1;
	return 0;
}

int tdx_pem_chain_parse(const char *pem, size_t len, struct tdx_cert_info **certs, size_t *n,
			struct tdx_error *err)
{
	struct tdx_cert_info *list = NULL;
	size_t count = 0;
	int rc = 0;

	*certs = NULL;
	*n = 0;
	while (len > 0 && (pem[len - 1] == '\0' || isspace((unsigned char)pem[len - 1])))
		len--;
	if (len == 0 || len > INT32_MAX)
		return tdx_fail(err, -EBADMSG, "EQUOTE", TDX_NO_OFFSET, "PCK chain is empty");
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	if (!b)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
	for (;;) {
		/* Anything but whitespace before the next BEGIN line is an error. */
		char *data;
		long left = BIO_get_mem_data(b, &data);
		long skip = 0;
		while (skip < left && isspace((unsigned char)data[skip]))
			skip++;
		if (skip == left)
			break;
		static const char begin[] = "-----BEGIN CERTIFICATE-----";
		X509 *cert = NULL;
		if ((size_t)(left - skip) >= sizeof(begin) - 1 &&
		    memcmp(data + skip, begin, sizeof(begin) - 1) == 0)
			cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
		if (!cert) {
			rc = tdx_fail(err, -EBADMSG, "EQUOTE", TDX_NO_OFFSET,
				      "PCK chain: certificate %zu is not valid PEM/DER "
				      "(at byte %zu of the chain)",
				      count, len - (size_t)left);
			break;
		}
		struct tdx_cert_info *grown = realloc(list, (count + 1) * sizeof(*list));
		if (!grown) {
			X509_free(cert);
			rc = tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
			break;
		}
		list = grown;
		rc = cert_info(cert, &list[count], count, err);
		X509_free(cert);
		if (rc)
			break;
		count++;
	}
	BIO_free(b);
	ERR_clear_error();
	if (rc) {
		free(list);
		return rc;
	}
	*certs = list;
	*n = count;
	return 0;
}
