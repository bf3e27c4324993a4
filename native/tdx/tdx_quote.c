/* SPDX-License-Identifier: Apache-2.0 */
/*
 * DCAP quote parsing in place (tdx_quote.h): a cursor walks the header, the body by type, the
 * signature data and the (nested) certification data, checking each field against the end of
 * its container, so a bad length names the field, its offset and the reason.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "tdx/tdx_quote.h"

/* A cursor over the quote; @limit is the end of the innermost container being parsed. */
struct cur {
	const uint8_t *p;
	size_t len;	   /* whole input */
	size_t off;	   /* next byte */
	size_t limit;	   /* end of the current container */
	const char *where; /* the container's name, for messages */
	struct tdx_error *err;
};

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int bad(struct cur *c, size_t off, const char *fmt, const char *field, unsigned long v)
{
	char why[160];

	snprintf(why, sizeof(why), fmt, v);
	return tdx_fail(c->err, -EBADMSG, "EQUOTE", off, "%s at offset %zu: %s", field, off, why);
}

/* Take @n bytes for @field; fails when they run past the container or the input. */
static const uint8_t *take(struct cur *c, size_t n, const char *field, int *rc)
{
	if (*rc)
		return NULL;
	if (n > c->limit - c->off) {
		size_t left = c->limit - c->off;
		if (c->limit == c->len)
			*rc = tdx_fail(c->err, -EBADMSG, "EQUOTE", c->off,
				       "truncated: %s at offset %zu needs %zu bytes, only %zu left",
				       field, c->off, n, left);
		else
			*rc = tdx_fail(c->err, -EBADMSG, "EQUOTE", c->off,
				       "%s at offset %zu needs %zu bytes but the %s ends at offset "
				       "%zu (%zu bytes left)",
				       field, c->off, n, c->where, c->limit, left);
		return NULL;
	}
	const uint8_t *p = c->p + c->off;
	c->off += n;
	return p;
}

/* Enter a container of @size bytes starting at the cursor; returns the previous limit. */
static size_t enter(struct cur *c, size_t size, const char *field, const char *name,
		    const char **prev_where, int *rc)
{
	size_t prev = c->limit;

	*prev_where = c->where;
	if (*rc)
		return prev;
	if (size > c->limit - c->off) {
		if (c->limit == c->len)
			*rc = tdx_fail(
				c->err, -EBADMSG, "EQUOTE", c->off,
				"truncated: %s at offset %zu declares %zu bytes, only %zu left",
				field, c->off, size, c->limit - c->off);
		else
			*rc = tdx_fail(
				c->err, -EBADMSG, "EQUOTE", c->off,
				"%s at offset %zu declares %zu bytes but the %s ends at offset "
				"%zu (%zu bytes left)",
				field, c->off, size, c->where, c->limit, c->limit - c->off);
		return prev;
	}
	c->limit = c->off + size;
	c->where = name;
	return prev;
}

/* Leave a container: it must be used up exactly. */
static void leave(struct cur *c, size_t prev_limit, const char *prev_where, int *rc)
{
	if (*rc)
		return;
	if (c->off != c->limit) {
		*rc = tdx_fail(c->err, -EBADMSG, "EQUOTE", c->off,
			       "%s has %zu unexplained bytes at offset %zu (it ends at offset %zu)",
			       c->where, c->limit - c->off, c->off, c->limit);
		return;
	}
	c->limit = prev_limit;
	c->where = prev_where;
}

struct field {
	const char *name;
	size_t size;
	size_t dst; /* offsetof the pointer in the report struct, or -1 to skip (reserved) */
};

#define NOFIELD ((size_t)-1)
#define TDF(n, s)                                        \
	{                                                \
#n, s, offsetof(struct tdx_td_report, n) \
	}
#define ENF(n, s)                                             \
	{                                                     \
#n, s, offsetof(struct tdx_enclave_report, n) \
	}

static const struct field td10_fields[] = {
	TDF(tee_tcb_svn, 16),	  TDF(mr_seam, 48),	 TDF(mr_signer_seam, 48),
	TDF(seam_attributes, 8),  TDF(td_attributes, 8), TDF(xfam, 8),
	TDF(mr_td, 48),		  TDF(mr_config_id, 48), TDF(mr_owner, 48),
	TDF(mr_owner_config, 48), TDF(rtmr[0], 48),	 TDF(rtmr[1], 48),
	TDF(rtmr[2], 48),	  TDF(rtmr[3], 48),	 TDF(report_data, 64),
	{ NULL, 0, 0 },
};

static const struct field td15_fields[] = {
	TDF(tee_tcb_svn2, 16),
	TDF(mr_servicetd, 48),
	{ NULL, 0, 0 },
};

static const struct field enclave_fields[] = {
	ENF(cpu_svn, 16),
	{ "misc_select", 4, NOFIELD },
	{ "reserved1", 28, NOFIELD },
	ENF(attributes, 16),
	ENF(mr_enclave, 32),
	{ "reserved2", 32, NOFIELD },
	ENF(mr_signer, 32),
	{ "reserved3", 96, NOFIELD },
	{ "isv_prod_id", 2, NOFIELD },
	{ "isv_svn", 2, NOFIELD },
	{ "reserved4", 60, NOFIELD },
	ENF(report_data, 64),
	{ NULL, 0, 0 },
};

/* Walk @fields, storing pointers into the struct at @base; @prefix names the structure. */
static void take_fields(struct cur *c, const struct field *fields, void *base, const char *prefix,
			int *rc)
{
	char name[96];

	for (const struct field *f = fields; f->name && !*rc; f++) {
		snprintf(name, sizeof(name), "%s.%s", prefix, f->name);
		const uint8_t *p = take(c, f->size, name, rc);
		if (p && f->dst != NOFIELD)
			memcpy((char *)base + f->dst, &p, sizeof(p));
	}
}

static void take_enclave_report(struct cur *c, struct tdx_enclave_report *r, const char *prefix,
				int *rc)
{
	size_t start = c->off;

	take_fields(c, enclave_fields, r, prefix, rc);
	if (*rc)
		return;
	r->raw = c->p + start;
	r->misc_select = le32(r->raw + 16);
	r->isv_prod_id = le16(r->raw + 256);
	r->isv_svn = le16(r->raw + 258);
}

static void take_header(struct cur *c, struct tdx_quote *q, int *rc)
{
	struct tdx_quote_header *h = &q->header;
	const uint8_t *p;

	if ((p = take(c, 2, "header.version", rc))) {
		h->version = le16(p);
		if (h->version < 3 || h->version > 5)
			*rc = bad(c, 0, "unsupported version %lu (3, 4 or 5 expected)",
				  "header.version", h->version);
	}
	if ((p = take(c, 2, "header.attestation_key_type", rc))) {
		h->att_key_type = le16(p);
		if (h->att_key_type != TDX_ATT_KEY_ECDSA_P256)
			*rc = bad(c, 2, "unsupported attestation key type %lu (2 = ECDSA P-256)",
				  "header.attestation_key_type", h->att_key_type);
	}
	if ((p = take(c, 4, "header.tee_type", rc))) {
		h->tee_type = le32(p);
		if (h->tee_type != TDX_TEE_TYPE_TDX && h->tee_type != TDX_TEE_TYPE_SGX)
			*rc = bad(c, 4, "unknown TEE type 0x%lx (0x81 TDX, 0 SGX)",
				  "header.tee_type", h->tee_type);
		else if (h->version == 3 && h->tee_type != TDX_TEE_TYPE_SGX)
			*rc = bad(c, 4, "TEE type 0x%lx in a version 3 quote (SGX only)",
				  "header.tee_type", h->tee_type);
	}
	if ((p = take(c, 2, "header.qe_svn", rc)))
		h->qe_svn = le16(p);
	if ((p = take(c, 2, "header.pce_svn", rc)))
		h->pce_svn = le16(p);
	h->qe_vendor_id = take(c, 16, "header.qe_vendor_id", rc);
	h->user_data = take(c, 20, "header.user_data", rc);
}

static void take_body(struct cur *c, struct tdx_quote *q, int *rc)
{
	bool tdx = q->header.tee_type == TDX_TEE_TYPE_TDX;
	const uint8_t *p;

	if (q->header.version == 5) {
		if ((p = take(c, 2, "body_type", rc))) {
			q->body_type = le16(p);
			if (q->body_type < TDX_BODY_SGX || q->body_type > TDX_BODY_TD15)
				*rc = bad(c, 48,
					  "unknown body type %lu (1 SGX, 2 TD 1.0, 3 TD 1.5)",
					  "body_type", q->body_type);
			else if ((q->body_type == TDX_BODY_SGX) == tdx)
				*rc = bad(c, 48,
					  "body type %lu does not match the header's TEE type",
					  "body_type", q->body_type);
		}
		if ((p = take(c, 4, "body_size", rc))) {
			static const uint32_t sizes[] = { 0, TDX_ENCLAVE_REPORT_LEN,
							  TDX_TD10_REPORT_LEN,
							  TDX_TD15_REPORT_LEN };
			q->body_size = le32(p);
			if (q->body_size != sizes[q->body_type])
				*rc = bad(c, 50, "size %lu does not match the body type",
					  "body_size", q->body_size);
		}
	} else {
		q->body_type = tdx ? TDX_BODY_TD10 : TDX_BODY_SGX;
		q->body_size = tdx ? TDX_TD10_REPORT_LEN : TDX_ENCLAVE_REPORT_LEN;
	}
	if (*rc)
		return;
	q->body_offset = c->off;
	if (!tdx) {
		take_enclave_report(c, &q->sgx, "report", rc);
		return;
	}
	take_fields(c, td10_fields, &q->td, "report", rc);
	if (q->body_type == TDX_BODY_TD15)
		take_fields(c, td15_fields, &q->td, "report", rc);
}

/* Certification data of @type and @size at the cursor (already inside its container). */
static void take_cert_data(struct cur *c, struct tdx_quote *q, uint16_t type, uint32_t size,
			   const char *field, int *rc)
{
	const uint8_t *p = take(c, size, field, rc);

	if (!p || type != TDX_CERT_PCK_CHAIN)
		return;
	size_t n = size;
	while (n > 0 && p[n - 1] == '\0')
		n--;
	if (n == 0) {
		*rc = bad(c, c->off - size, "the PCK certificate chain is empty", field, 0);
		return;
	}
	q->pck_chain = (const char *)p;
	q->pck_chain_len = n;
}

static uint16_t take_cert_type(struct cur *c, const char *field, bool allow_qe_report, int *rc)
{
	const uint8_t *p = take(c, 2, field, rc);
	uint16_t type = p ? le16(p) : 0;

	if (p && (type < TDX_CERT_PPID_PLAIN || type > TDX_CERT_PLATFORM_MANIFEST ||
		  (type == TDX_CERT_QE_REPORT && !allow_qe_report)))
		*rc = bad(c, c->off - 2, "invalid certification data type %lu", field, type);
	return type;
}

static void take_qe_report_part(struct cur *c, struct tdx_quote *q, int *rc)
{
	const uint8_t *p;

	take_enclave_report(c, &q->qe_report, "qe_report", rc);
	q->qe_report_signature = take(c, 64, "qe_report_signature", rc);
	if ((p = take(c, 2, "qe_auth_data_size", rc)))
		q->qe_auth_size = le16(p);
	q->qe_auth_data = take(c, q->qe_auth_size, "qe_auth_data", rc);
	q->has_qe_report = !*rc;
}

static void take_signature_data(struct cur *c, struct tdx_quote *q, int *rc)
{
	const char *w0, *w1, *w2;
	const uint8_t *p;
	size_t l0, l1, l2;

	if ((p = take(c, 4, "signature_data_size", rc)))
		q->sig_data_len = le32(p);
	l0 = enter(c, q->sig_data_len, "signature data", "signature data", &w0, rc);
	if (*rc)
		return;
	q->sig_data_offset = c->off;
	q->signature = take(c, 64, "quote_signature", rc);
	q->attestation_key = take(c, 64, "attestation_key", rc);
	if (q->header.version == 3)
		take_qe_report_part(c, q, rc);
	q->cert_type = take_cert_type(c, "certification_data_type", q->header.version != 3, rc);
	if ((p = take(c, 4, "certification_data_size", rc)))
		q->cert_size = le32(p);
	l1 = enter(c, q->cert_size, "certification data", "certification data", &w1, rc);
	if (*rc)
		return;
	q->cert_data = c->p + c->off;
	if (q->cert_type != TDX_CERT_QE_REPORT) {
		take_cert_data(c, q, q->cert_type, q->cert_size, "certification_data", rc);
	} else {
		take_qe_report_part(c, q, rc);
		q->inner_cert_type = take_cert_type(c, "inner certification_data_type", false, rc);
		if ((p = take(c, 4, "inner certification_data_size", rc)))
			q->inner_cert_size = le32(p);
		l2 = enter(c, q->inner_cert_size, "inner certification data",
			   "inner certification data", &w2, rc);
		if (*rc)
			return;
		q->inner_cert_data = c->p + c->off;
		take_cert_data(c, q, q->inner_cert_type, q->inner_cert_size,
			       "inner certification_data", rc);
		leave(c, l2, w2, rc);
	}
	leave(c, l1, w1, rc);
	leave(c, l0, w0, rc);
}

int tdx_quote_parse(const uint8_t *data, size_t len, struct tdx_quote *q, struct tdx_error *err)
{
	struct cur c = { .p = data, .len = len, .limit = len, .where = "quote", .err = err };
	int rc = 0;

	memset(q, 0, sizeof(*q));
	if (!data && len)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "no quote data");
	q->data = data;
	q->len = len;
	take_header(&c, q, &rc);
	take_body(&c, q, &rc);
	if (rc)
		return rc;
	q->signed_len = c.off;
	take_signature_data(&c, q, &rc);
	if (rc)
		return rc;
	q->end = c.off;
	q->trailing = len - c.off;
	for (size_t i = c.off; i < len; i++)
		q->trailing_nonzero |= data[i] != 0;
	return 0;
}

bool tdx_quote_qe_hash_ok(const struct tdx_quote *q)
{
	static const uint8_t zero[32];
	uint8_t hash[32];
	unsigned int n = 0;
	bool ok;

	if (!q->has_qe_report || !q->attestation_key)
		return false;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, q->attestation_key, 64) == 1 &&
	     EVP_DigestUpdate(ctx, q->qe_auth_data, q->qe_auth_size) == 1 &&
	     EVP_DigestFinal_ex(ctx, hash, &n) == 1;
	EVP_MD_CTX_free(ctx);
	return ok && memcmp(hash, q->qe_report.report_data, 32) == 0 &&
	       memcmp(zero, q->qe_report.report_data + 32, 32) == 0;
}
