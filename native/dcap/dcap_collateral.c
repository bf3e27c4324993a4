/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The collateral object: dcap-qvl's QuoteCollateralV3 JSON decoded into fields, then every
 * item parsed once (CRLs, issuer chains, TCB info and QE identity with sorted levels) and kept
 * with the raw signed bytes; dcap_verify() caches its time-independent checks in it.
 */
#include <stdlib.h>
#include <string.h>

#include "dcap/dcap_internal.h"

struct field {
	const char *name;
	bool hex, required;
	size_t data, len; /* offsets in struct dcap_collateral_input */
};

#define FIELD(n, hex, req)                                               \
	{                                                                \
#n, hex, req, offsetof(struct dcap_collateral_input, n), \
			offsetof(struct dcap_collateral_input, n##_len)  \
	}

static const struct field fields[] = {
	FIELD(pck_crl_issuer_chain, false, false),
	FIELD(root_ca_crl, true, true),
	FIELD(pck_crl, true, true),
	FIELD(tcb_info_issuer_chain, false, true),
	FIELD(tcb_info, false, true),
	FIELD(tcb_info_signature, true, true),
	FIELD(qe_identity_issuer_chain, false, true),
	FIELD(qe_identity, false, true),
	FIELD(qe_identity_signature, true, true),
	FIELD(pck_certificate_chain, false, false),
};

int dcap_collateral_input_from_json(const char *json, size_t len, struct dcap_collateral_input *in,
				    struct dcap_error *err)
{
	struct dcap_json doc;
	char why[160];
	int rc = 0;

	memset(in, 0, sizeof(*in));
	if (dcap_json_parse(json, len, &doc, why, sizeof(why)) != 0)
		return dcap_fail(err, "ECOLLATERAL", "collateral: invalid JSON: %s", why);
	if (doc.type != DJ_OBJECT) {
		dcap_json_free(&doc);
		return dcap_fail(err, "ECOLLATERAL", "collateral: not a JSON object");
	}
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && !rc; i++) {
		const struct field *f = &fields[i];
		const struct dcap_json *v = dcap_json_get(&doc, f->name);
		if (!v || v->type == DJ_NULL) {
			if (f->required)
				rc = dcap_fail(err, "ECOLLATERAL", "collateral: %s is missing",
					       f->name);
			continue;
		}
		if (v->type != DJ_STRING) {
			rc = dcap_fail(err, "ECOLLATERAL", "collateral: %s must be a string",
				       f->name);
			continue;
		}
		size_t n = f->hex ? v->len / 2 : v->len;
		char *buf = malloc(n + 1);
		if (!buf) {
			rc = dcap_fail(err, "ENOMEM", "out of memory");
			continue;
		}
		if (f->hex && (v->len % 2 || dcap_unhex(v->u.str, v->len, (uint8_t *)buf, n))) {
			free(buf);
			rc = dcap_fail(err, "ECOLLATERAL", "collateral: %s is not hex", f->name);
			continue;
		}
		if (!f->hex)
			memcpy(buf, v->u.str, n);
		buf[n] = '\0';
		memcpy((char *)in + f->data, &buf, sizeof(buf));
		memcpy((char *)in + f->len, &n, sizeof(n));
	}
	dcap_json_free(&doc);
	if (rc)
		dcap_collateral_input_free(in);
	return rc;
}

void dcap_collateral_input_free(struct dcap_collateral_input *in)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		char *p;
		memcpy(&p, (char *)in + fields[i].data, sizeof(p));
		free(p);
	}
	memset(in, 0, sizeof(*in));
}

static char *dup_bytes(const char *p, size_t n)
{
	char *o = malloc(n + 1);
	if (o) {
		memcpy(o, p, n);
		o[n] = '\0';
	}
	return o;
}

static int load(struct dcap_collateral *c, const struct dcap_collateral_input *in,
		struct dcap_error *err)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];
		char *p;
		size_t n;
		memcpy(&p, (const char *)in + f->data, sizeof(p));
		memcpy(&n, (const char *)in + f->len, sizeof(n));
		if (f->required && (!p || n == 0))
			return dcap_fail(err, "ECOLLATERAL", "collateral: %s is missing", f->name);
	}
	if (in->tcb_info_signature_len != 64 || in->qe_identity_signature_len != 64)
		return dcap_fail(err, "ECOLLATERAL", "collateral: %s must be 64 bytes (raw r||s)",
				 in->tcb_info_signature_len != 64 ? "tcb_info_signature"
								  : "qe_identity_signature");
	memcpy(c->tcb_info_sig, in->tcb_info_signature, 64);
	memcpy(c->qe_identity_sig, in->qe_identity_signature, 64);
	c->tcb_info_raw = dup_bytes(in->tcb_info, in->tcb_info_len);
	c->qe_identity_raw = dup_bytes(in->qe_identity, in->qe_identity_len);
	if (!c->tcb_info_raw || !c->qe_identity_raw)
		return dcap_fail(err, "ENOMEM", "out of memory");
	c->tcb_info_len = in->tcb_info_len;
	c->qe_identity_len = in->qe_identity_len;
	if (in->pck_certificate_chain && in->pck_certificate_chain_len) {
		c->pck_chain_pem =
			dup_bytes(in->pck_certificate_chain, in->pck_certificate_chain_len);
		if (!c->pck_chain_pem)
			return dcap_fail(err, "ENOMEM", "out of memory");
		c->pck_chain_pem_len = in->pck_certificate_chain_len;
	}
	if (dcap_crl_load(in->root_ca_crl, in->root_ca_crl_len, "root CA CRL", &c->root_crl, err) ||
	    dcap_crl_load(in->pck_crl, in->pck_crl_len, "PCK CRL", &c->pck_crl, err) ||
	    dcap_chain_load(in->tcb_info_issuer_chain, in->tcb_info_issuer_chain_len,
			    "TCB info issuer chain", "ECOLLATERAL", &c->tcb_chain, err) ||
	    dcap_chain_load(in->qe_identity_issuer_chain, in->qe_identity_issuer_chain_len,
			    "QE identity issuer chain", "ECOLLATERAL", &c->qe_chain, err) ||
	    dcap_tcb_info_parse(c->tcb_info_raw, c->tcb_info_len, &c->tcb_info, err) ||
	    dcap_qe_identity_parse(c->qe_identity_raw, c->qe_identity_len, &c->qe_id, err))
		return -1;
	return 0;
}

int dcap_collateral_new(const struct dcap_collateral_input *in, struct dcap_collateral **out,
			struct dcap_error *err)
{
	struct dcap_collateral *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return dcap_fail(err, "ENOMEM", "out of memory");
	if (load(c, in, err)) {
		dcap_collateral_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

int dcap_collateral_from_json(const char *json, size_t len, struct dcap_collateral **out,
			      struct dcap_error *err)
{
	struct dcap_collateral_input in;

	*out = NULL;
	if (dcap_collateral_input_from_json(json, len, &in, err))
		return -1;
	int rc = dcap_collateral_new(&in, out, err);
	dcap_collateral_input_free(&in);
	return rc;
}

void dcap_collateral_free(struct dcap_collateral *c)
{
	if (!c)
		return;
	dcap_crl_free(&c->root_crl);
	dcap_crl_free(&c->pck_crl);
	dcap_chain_free(&c->tcb_chain);
	dcap_chain_free(&c->qe_chain);
	dcap_tcb_info_free(&c->tcb_info);
	dcap_qe_identity_free(&c->qe_id);
	free(c->pck_chain_pem);
	free(c->tcb_info_raw);
	free(c->qe_identity_raw);
	free(c);
}

void dcap_collateral_get_info(const struct dcap_collateral *c, struct dcap_collateral_info *info)
{
	const struct dcap_tcb_info *ti = &c->tcb_info;
	const struct dcap_qe_identity *qi = &c->qe_id;

	memset(info, 0, sizeof(*info));
	info->tee = ti->id;
	info->tcb_info_version = ti->version;
	memcpy(info->fmspc, ti->fmspc, 6);
	memcpy(info->pce_id, ti->pce_id, 2);
	info->tcb_evaluation_data_number = ti->evaluation_number;
	info->tcb_info_issue_date = ti->issue_date;
	info->tcb_info_next_update = ti->next_update;
	info->qe_identity_id = qi->id;
	info->qe_identity_issue_date = qi->issue_date;
	info->qe_identity_next_update = qi->next_update;
	info->root_ca_crl_this_update = c->root_crl.this_update;
	info->root_ca_crl_next_update = c->root_crl.next_update;
	info->pck_crl_this_update = c->pck_crl.this_update;
	info->pck_crl_next_update = c->pck_crl.next_update;
	int64_t lo[] = { ti->issue_date, qi->issue_date, c->root_crl.this_update,
			 c->pck_crl.this_update };
	int64_t hi[] = { ti->next_update, qi->next_update, c->root_crl.next_update,
			 c->pck_crl.next_update };
	info->not_before = lo[0];
	info->not_after = hi[0];
	for (int i = 1; i < 4; i++) {
		if (lo[i] > info->not_before)
			info->not_before = lo[i];
		if (hi[i] < info->not_after)
			info->not_after = hi[i];
	}
}
