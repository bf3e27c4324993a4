/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DCAP verifier: the trusted root, a small cache of verified PCK chains (keyed by the
 * SHA-256 of their PEM text, with the last verified QE report and attestation key of each),
 * and the verification flow of dcap_verify(): quote header; every chain up to the root (so a
 * wrong root is ECHAIN before anything else); then in dcap-qvl's order the root and root CA
 * CRL, TCB info, QE identity, PCK chain windows and CRLs, QE report signature and binding, QE
 * identity, quote signature, platform TCB and TDX module, status merge, TD/enclave attributes.
 */
#include <stdlib.h>
#include <string.h>

#include "dcap/dcap_internal.h"

#define CHAIN_CACHE 16

static const uint8_t intel_qe_vendor[16] = { 0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9,
					     0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07 };

/* A verified PCK chain and what was last verified with its leaf key. */
struct pck_entry {
	bool used;
	uint64_t last_use;
	uint8_t key[32]; /* SHA-256 of the PEM text */
	struct dcap_chain chain;
	struct tdx_sgx_ext sgx;
	bool qe_ok;
	uint8_t qe_signed[TDX_ENCLAVE_REPORT_LEN + 64]; /* QE report || signature, verified */
	uint8_t att_raw[64];
	EVP_PKEY *att_key;
};

struct dcap_verifier {
	struct dcap_root root;
	bool simulated, allow_debug, allow_service_td;
	uint64_t clock;
	struct pck_entry cache[CHAIN_CACHE];
};

static void entry_clear(struct pck_entry *e)
{
	dcap_chain_free(&e->chain);
	EVP_PKEY_free(e->att_key);
	memset(e, 0, sizeof(*e));
}

int dcap_verifier_new(const struct dcap_verifier_opts *o, struct dcap_verifier **out,
		      struct dcap_error *err)
{
	static const struct dcap_verifier_opts none;
	uint8_t pin[32];
	char fp[65];
	size_t len;

	*out = NULL;
	if (!o)
		o = &none;
	if (o->simulator && !o->root_ca)
		return dcap_fail(err, "EINVAL", "a simulator verifier needs its root CA");
	struct dcap_verifier *v = calloc(1, sizeof(*v));
	if (!v)
		return dcap_fail(err, "ENOMEM", "out of memory");
	const uint8_t *der = o->root_ca ? o->root_ca : dcap_intel_root_ca(&len);
	if (dcap_root_load(der, o->root_ca ? o->root_ca_len : len, &v->root, err)) {
		free(v);
		return -1;
	}
	dcap_unhex(DCAP_INTEL_ROOT_SHA256, 64, pin, 32);
	bool intel = memcmp(v->root.cert.sha256, pin, 32) == 0;
	if (!intel && !o->simulator) {
		dcap_hex(v->root.cert.sha256, 32, fp);
		dcap_verifier_free(v);
		return dcap_fail(err, "ECHAIN",
				 "the root CA (SHA-256 %s) is not the Intel SGX Root CA (SHA-256 "
				 "%s); only a simulator verifier trusts another root",
				 fp, DCAP_INTEL_ROOT_SHA256);
	}
	v->simulated = o->simulator && !intel; /* Intel's root is never a simulator's */
	v->allow_debug = o->allow_debug;
	v->allow_service_td = o->allow_service_td;
	*out = v;
	return 0;
}

void dcap_verifier_free(struct dcap_verifier *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < CHAIN_CACHE; i++)
		entry_clear(&v->cache[i]);
	dcap_root_free(&v->root);
	free(v);
}

bool dcap_verifier_simulated(const struct dcap_verifier *v)
{
	return v->simulated;
}

const uint8_t *dcap_verifier_root(const struct dcap_verifier *v, size_t *len)
{
	*len = v->root.der_len;
	return v->root.der;
}

/* The verified PCK chain of @pem, from the cache or parsed and checked now. */
static struct pck_entry *pck_chain(struct dcap_verifier *v, const char *pem, size_t len,
				   struct dcap_error *err)
{
	const char *what = "PCK certificate chain";
	struct pck_entry *e = NULL;
	uint8_t key[32];
	unsigned int n = 0;

	if (EVP_Digest(pem, len, key, &n, EVP_sha256(), NULL) != 1) {
		dcap_fail(err, "ENOMEM", "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < CHAIN_CACHE; i++) {
		if (v->cache[i].used && memcmp(v->cache[i].key, key, 32) == 0) {
			v->cache[i].last_use = ++v->clock;
			return &v->cache[i];
		}
		if (!e || !v->cache[i].used || (e->used && v->cache[i].last_use < e->last_use))
			e = &v->cache[i];
	}
	struct dcap_chain ch;
	struct tdx_cert_info *infos = NULL;
	struct tdx_error terr;
	size_t count = 0;
	if (dcap_chain_load(pem, len, what, "EQUOTE", &ch, err))
		return NULL;
	if (dcap_chain_verify(&v->root, &ch, what, err))
		goto fail;
	if (tdx_pem_chain_parse(pem, len, &infos, &count, &terr) != 0) {
		dcap_fail(err, "EQUOTE", "%s", terr.msg);
		goto fail;
	}
	if (count == 0 || !infos[0].has_sgx_ext) {
		dcap_fail(err, "ECHAIN", "the PCK certificate (CN=%s) has no SGX extension",
			  ch.certs[0].cn);
		goto fail;
	}
	entry_clear(e);
	e->used = true;
	e->last_use = ++v->clock;
	memcpy(e->key, key, 32);
	e->chain = ch;
	e->sgx = infos[0].sgx;
	free(infos);
	return e;
fail:
	free(infos);
	dcap_chain_free(&ch);
	return NULL;
}

/* Revocation of every certificate of @ch's path: issued by the root -> root CA CRL, else the
 * PCK CRL (which must then be issued by that CA). */
static int chain_revocation(struct dcap_verifier *v, struct dcap_collateral *c,
			    const struct dcap_chain *ch, int64_t now, const char *what,
			    struct dcap_error *err)
{
	for (size_t i = 0; i < ch->n_path; i++) {
		const struct dcap_cert *issuer =
			i + 1 < ch->n_path ? &ch->certs[i + 1] : &v->root.cert;
		struct dcap_crl *crl = issuer == &v->root.cert ? &c->root_crl : &c->pck_crl;
		if (dcap_crl_check(crl, issuer, now, err) ||
		    dcap_crl_check_serial(crl, &ch->certs[i], what, err))
			return -1;
	}
	return 0;
}

static int window(const char *what, int64_t issued, int64_t next, int64_t now,
		  struct dcap_error *err)
{
	char t[32], n[32];

	if (now >= issued && now <= next)
		return 0;
	dcap_format_time(now, n);
	dcap_format_time(now < issued ? issued : next, t);
	if (now < issued)
		return dcap_fail(err, "EEXPIRED",
				 "%s is not valid before its issueDate %s (now %s)", what, t, n);
	return dcap_fail(err, "EEXPIRED", "%s expired at its nextUpdate %s (now %s)", what, t, n);
}

static bool docs_cached(const struct dcap_verifier *v, const struct dcap_collateral *c)
{
	return c->signed_ok && memcmp(c->signed_root, v->root.cert.sha256, 32) == 0;
}

/* The issuer chains of the TCB info and QE identity up to the root (time-independent). */
static int collateral_chains(struct dcap_verifier *v, struct dcap_collateral *c,
			     struct dcap_error *err)
{
	if (docs_cached(v, c))
		return 0;
	if (dcap_chain_verify(&v->root, &c->tcb_chain, "TCB info issuer chain", err) ||
	    dcap_chain_verify(&v->root, &c->qe_chain, "QE identity issuer chain", err))
		return -1;
	return 0;
}

/* A signed collateral document: window, issuer chain window and revocation, signature. */
static int signed_doc(struct dcap_verifier *v, struct dcap_collateral *c, const char *what,
		      const char *chain_what, struct dcap_chain *ch, const char *raw, size_t len,
		      const uint8_t sig[64], int64_t issued, int64_t next, int64_t now,
		      struct dcap_error *err)
{
	if (window(what, issued, next, now, err) ||
	    dcap_chain_check_time(&v->root, ch, now, chain_what, err) ||
	    chain_revocation(v, c, ch, now, chain_what, err))
		return -1;
	if (!docs_cached(v, c) &&
	    !dcap_ecdsa_verify(X509_get0_pubkey(ch->certs[0].x), raw, len, sig))
		return dcap_fail(err, "ESIG",
				 "the %s signature does not verify with the key of CN=%s "
				 "(the signature covers the exact JSON text)",
				 what, ch->certs[0].cn);
	return 0;
}

static int collateral_docs(struct dcap_verifier *v, struct dcap_collateral *c, int64_t now,
			   struct dcap_error *err)
{
	if (signed_doc(v, c, "TCB info", "TCB info issuer chain", &c->tcb_chain, c->tcb_info_raw,
		       c->tcb_info_len, c->tcb_info_sig, c->tcb_info.issue_date,
		       c->tcb_info.next_update, now, err) ||
	    signed_doc(v, c, "QE identity", "QE identity issuer chain", &c->qe_chain,
		       c->qe_identity_raw, c->qe_identity_len, c->qe_identity_sig,
		       c->qe_id.issue_date, c->qe_id.next_update, now, err))
		return -1;
	c->signed_ok = true;
	memcpy(c->signed_root, v->root.cert.sha256, 32);
	return 0;
}

static int check_header(const struct tdx_quote *q, struct dcap_error *err)
{
	char hex[33];
	bool tdx = q->header.tee_type == TDX_TEE_TYPE_TDX;

	if (tdx && q->header.version != 4 && q->header.version != 5)
		return dcap_fail(err, "EQUOTE", "TDX quotes must be version 4 or 5, not %u",
				 q->header.version);
	if (!tdx && q->header.version != 3)
		return dcap_fail(err, "EQUOTE", "SGX quotes must be version 3, not %u",
				 q->header.version);
	if (memcmp(q->header.qe_vendor_id, intel_qe_vendor, 16) != 0) {
		dcap_hex(q->header.qe_vendor_id, 16, hex);
		return dcap_fail(err, "EQUOTE",
				 "unknown QE vendor ID %s (Intel's is "
				 "939a7233f79c4ca9940a0db3957f0607)",
				 hex);
	}
	if (!q->has_qe_report)
		return dcap_fail(
			err, "EQUOTE",
			"certification data type %u carries no QE report (type 6 expected)",
			q->cert_type);
	return 0;
}

/* The QE report signature (cached per chain) and its binding of the attestation key. */
static int qe_report(struct pck_entry *e, const struct tdx_quote *q, struct dcap_error *err)
{
	uint8_t signed_part[sizeof(e->qe_signed)];

	memcpy(signed_part, q->qe_report.raw, TDX_ENCLAVE_REPORT_LEN);
	memcpy(signed_part + TDX_ENCLAVE_REPORT_LEN, q->qe_report_signature, 64);
	if (!e->qe_ok || memcmp(e->qe_signed, signed_part, sizeof(signed_part)) != 0) {
		if (!dcap_ecdsa_verify(X509_get0_pubkey(e->chain.certs[0].x), q->qe_report.raw,
				       TDX_ENCLAVE_REPORT_LEN, q->qe_report_signature))
			return dcap_fail(err, "ESIG",
					 "the QE report signature does not verify with the PCK "
					 "certificate's key");
		memcpy(e->qe_signed, signed_part, sizeof(signed_part));
		e->qe_ok = true;
	}
	if (!tdx_quote_qe_hash_ok(q))
		return dcap_fail(
			err, "ESIG",
			"the QE report data does not bind the attestation key: "
			"SHA-256(attestation key || QE auth data) || 32 zero bytes expected");
	return 0;
}

static int quote_signature(struct pck_entry *e, const struct tdx_quote *q, struct dcap_error *err)
{
	if (!e->att_key || memcmp(e->att_raw, q->attestation_key, 64) != 0) {
		EVP_PKEY_free(e->att_key);
		e->att_key = dcap_p256_key(q->attestation_key);
		memcpy(e->att_raw, q->attestation_key, 64);
		if (!e->att_key)
			return dcap_fail(err, "ESIG",
					 "the attestation key is not a valid P-256 public key");
	}
	if (!dcap_ecdsa_verify(e->att_key, q->data, q->signed_len, q->signature))
		return dcap_fail(err, "ESIG",
				 "the quote signature over the header and body (bytes 0..%zu) does "
				 "not verify with the attestation key",
				 q->signed_len);
	return 0;
}

static bool zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* dcap-qvl's validate_attrs (TD attributes bits per the TDX module ABI). */
static int check_attributes(const struct dcap_verifier *v, const struct tdx_quote *q,
			    struct dcap_error *err)
{
	if (q->header.tee_type != TDX_TEE_TYPE_TDX) {
		if ((q->sgx.attributes[0] & 0x02) && !v->allow_debug)
			return dcap_fail(err, "EATTR", "the enclave runs in debug mode");
		return 0;
	}
	const uint8_t *a = q->td.td_attributes;
	if (a[0] & 0xfe)
		return dcap_fail(err, "EATTR", "reserved TUD bits of TD attributes are set");
	if ((a[0] & 0x01) && !v->allow_debug)
		return dcap_fail(err, "EATTR", "the TD runs in debug mode (TD attributes DEBUG)");
	if (a[1] || a[2] || (a[3] & 0x0f) || (a[3] & 0x20) || a[4] || a[5] || a[6] || (a[7] & 0x7f))
		return dcap_fail(err, "EATTR", "reserved bits of TD attributes are set");
	if (!(a[3] & 0x10))
		return dcap_fail(err, "EATTR", "SEPT_VE_DISABLE is not set in the TD attributes");
	if (q->td.mr_servicetd && !zero(q->td.mr_servicetd, 48) && !v->allow_service_td)
		return dcap_fail(err, "EATTR", "MRSERVICETD is not zero (a service TD is bound)");
	return 0;
}

static void fill_report(const struct dcap_verifier *v, const struct tdx_quote *q,
			const struct pck_entry *e, struct dcap_report *r)
{
	r->quote_version = q->header.version;
	r->tdx = q->header.tee_type == TDX_TEE_TYPE_TDX;
	r->simulated = v->simulated;
	memcpy(r->fmspc, e->sgx.fmspc, 6);
	memcpy(r->pce_id, e->sgx.pceid, 2);
	memcpy(r->cpu_svn, e->sgx.cpusvn, 16);
	r->pce_svn = e->sgx.pcesvn;
	memcpy(r->ppid, e->sgx.ppid, 16);
	r->qe_isv_svn = q->qe_report.isv_svn;
	if (!r->tdx) {
		const struct tdx_enclave_report *s = &q->sgx;
		memcpy(r->cpu_svn_report, s->cpu_svn, 16);
		r->misc_select = s->misc_select;
		memcpy(r->attributes, s->attributes, 16);
		memcpy(r->mr_enclave, s->mr_enclave, 32);
		memcpy(r->mr_signer, s->mr_signer, 32);
		r->isv_prod_id = s->isv_prod_id;
		r->isv_svn = s->isv_svn;
		memcpy(r->report_data, s->report_data, 64);
		return;
	}
	const struct tdx_td_report *t = &q->td;
	memcpy(r->tee_tcb_svn, t->tee_tcb_svn, 16);
	memcpy(r->mr_seam, t->mr_seam, 48);
	memcpy(r->mr_signer_seam, t->mr_signer_seam, 48);
	memcpy(r->seam_attributes, t->seam_attributes, 8);
	memcpy(r->td_attributes, t->td_attributes, 8);
	memcpy(r->xfam, t->xfam, 8);
	memcpy(r->mr_td, t->mr_td, 48);
	memcpy(r->mr_config_id, t->mr_config_id, 48);
	memcpy(r->mr_owner, t->mr_owner, 48);
	memcpy(r->mr_owner_config, t->mr_owner_config, 48);
	for (int i = 0; i < 4; i++)
		memcpy(r->rtmr[i], t->rtmr[i], 48);
	memcpy(r->report_data, t->report_data, 64);
	if (t->tee_tcb_svn2) {
		r->td15 = true;
		memcpy(r->tee_tcb_svn2, t->tee_tcb_svn2, 16);
		memcpy(r->mr_servicetd, t->mr_servicetd, 48);
	}
}

int dcap_verify(struct dcap_verifier *v, const uint8_t *quote, size_t len,
		struct dcap_collateral *c, int64_t now, struct dcap_report *r,
		struct dcap_error *err)
{
	static const struct dcap_chain root_only;
	struct tdx_quote q;
	struct tdx_error terr;
	struct dcap_status_ids qe_status;

	memset(r, 0, sizeof(*r));
	if (tdx_quote_parse(quote, len, &q, &terr) != 0)
		return dcap_fail(err, "EQUOTE", "%s", terr.msg);
	if (check_header(&q, err))
		return -1;
	const char *pem = c->pck_chain_pem ? c->pck_chain_pem : q.pck_chain;
	size_t pem_len = c->pck_chain_pem ? c->pck_chain_pem_len : q.pck_chain_len;
	if (!pem)
		return dcap_fail(err, "EQUOTE",
				 "the quote carries no PEM PCK certificate chain (certification "
				 "data type %u) and the collateral has none",
				 q.inner_cert_type ? q.inner_cert_type : q.cert_type);
	/* Trust first: every chain must lead to the root (checked once, then cached). */
	struct pck_entry *e = pck_chain(v, pem, pem_len, err);
	if (!e || collateral_chains(v, c, err))
		return -1;
	/* The root: its window, the root CA CRL, not revoked. Then the signed documents. */
	if (dcap_chain_check_time(&v->root, &root_only, now, "root CA", err) ||
	    dcap_crl_check(&c->root_crl, &v->root.cert, now, err) ||
	    dcap_crl_check_serial(&c->root_crl, &v->root.cert, "root CA", err) ||
	    collateral_docs(v, c, now, err))
		return -1;
	if (dcap_chain_check_time(&v->root, &e->chain, now, "PCK certificate chain", err) ||
	    chain_revocation(v, c, &e->chain, now, "PCK certificate chain", err))
		return -1;
	bool tdx = q.header.tee_type == TDX_TEE_TYPE_TDX;
	if (qe_report(e, &q, err) || dcap_match_qe(&c->qe_id, tdx, &q.qe_report, &qe_status, err) ||
	    quote_signature(e, &q, err) || dcap_match_platform(&c->tcb_info, &q, &e->sgx, r, err))
		return -1;
	r->status = r->platform_status;
	r->qe_status = qe_status.status;
	if (dcap_merge_status(&r->status, r, &qe_status, err))
		return -1;
	if (r->status == DCAP_REVOKED)
		return dcap_fail(err, "ETCB", "the TCB status is Revoked (platform %s, QE %s)",
				 dcap_tcb_status_name(r->platform_status),
				 dcap_tcb_status_name(r->qe_status));
	if (check_attributes(v, &q, err))
		return -1;
	fill_report(v, &q, e, r);
	return 0;
}
