/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Collateral for simulated quotes, in the format of Intel's PCS as dcap-qvl stores it
 * (QuoteCollateralV3): TCB info (TDX, version 3) whose top level is exactly the simulated
 * platform (UpToDate), QE identity (TD_QE, version 2), the root CA CRL and the PCK CRL, the
 * issuer chains, and raw r||s signatures over the exact JSON bytes by the TCB-signing key.
 */
#include <stdlib.h>
#include <string.h>

#include "sim/sim_internal.h"

#define VALIDITY_DAYS	      30
#define TCB_EVALUATION_NUMBER 17
#define TCB_DATE	      "2024-03-13T00:00:00Z"
#define OLD_TCB_DATE	      "2018-01-04T00:00:00Z"
#define QE_ATTRIBUTES_MASK    "FBFFFFFFFFFFFFFF0000000000000000"

static void iso_time(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void put_svns(struct sim_buf *b, const char *key, const uint8_t *svn)
{
	sim_buf_printf(b, "\"%s\":[", key);
	for (int i = 0; i < 16; i++)
		sim_buf_printf(b, "%s{\"svn\":%u}", i ? "," : "", svn ? svn[i] : 0);
	sim_buf_puts(b, "]");
}

static void put_module(struct sim_buf *b, const struct sim_platform *p)
{
	sim_buf_puts(b, "\"mrsigner\":\"");
	sim_buf_hex(b, p->mr_signer_seam, sizeof(p->mr_signer_seam), true);
	sim_buf_puts(b, "\",\"attributes\":\"");
	sim_buf_hex(b, p->seam_attributes, sizeof(p->seam_attributes), true);
	sim_buf_puts(b, "\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\"");
}

static int tcb_info_json(const struct sim_platform *p, const char *issue, const char *next,
			 char **out)
{
	struct sim_buf b = { 0 };
	sim_buf_printf(&b,
		       "{\"id\":\"TDX\",\"version\":3,\"issueDate\":\"%s\",\"nextUpdate\":\"%s\","
		       "\"fmspc\":\"",
		       issue, next);
	sim_buf_hex(&b, p->fmspc, sizeof(p->fmspc), true);
	sim_buf_puts(&b, "\",\"pceId\":\"");
	sim_buf_hex(&b, p->pce_id, sizeof(p->pce_id), true);
	sim_buf_printf(&b, "\",\"tcbType\":0,\"tcbEvaluationDataNumber\":%d,\"tdxModule\":{",
		       TCB_EVALUATION_NUMBER);
	put_module(&b, p);
	/* The identity of the module version the platform runs (tee_tcb_svn[1]), UpToDate at
	 * its ISVSVN (tee_tcb_svn[0]). */
	sim_buf_printf(&b, "},\"tdxModuleIdentities\":[{\"id\":\"TDX_%02X\",", p->tee_tcb_svn[1]);
	put_module(&b, p);
	sim_buf_printf(&b,
		       ",\"tcbLevels\":[{\"tcb\":{\"isvsvn\":%u},\"tcbDate\":\"" TCB_DATE
		       "\",\"tcbStatus\":\"UpToDate\"}]}],\"tcbLevels\":[{\"tcb\":{",
		       p->tee_tcb_svn[0]);
	/* Level 1: exactly the platform's TCB, UpToDate. */
	put_svns(&b, "sgxtcbcomponents", p->cpu_svn);
	sim_buf_printf(&b, ",\"pcesvn\":%u,", p->pce_svn);
	put_svns(&b, "tdxtcbcomponents", p->tee_tcb_svn);
	sim_buf_puts(&b, "},\"tcbDate\":\"" TCB_DATE "\",\"tcbStatus\":\"UpToDate\"},{\"tcb\":{");
	/* Level 2: anything older is OutOfDate. */
	put_svns(&b, "sgxtcbcomponents", NULL);
	sim_buf_puts(&b, ",\"pcesvn\":0,");
	put_svns(&b, "tdxtcbcomponents", NULL);
	sim_buf_puts(&b, "},\"tcbDate\":\"" OLD_TCB_DATE "\",\"tcbStatus\":\"OutOfDate\","
			 "\"advisoryIDs\":[\"MOONSTACK-SIM-0001\"]}]}");
	return sim_buf_finish(&b, out, NULL);
}

static int qe_identity_json(const struct sim_platform *p, const char *issue, const char *next,
			    char **out)
{
	static const uint8_t mask[16] = { 0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	uint8_t misc[4], attributes[16];
	for (int i = 0; i < 4; i++)
		misc[i] = (uint8_t)(p->qe_misc_select >> (8 * i));
	for (int i = 0; i < 16; i++)
		attributes[i] = p->qe_attributes[i] & mask[i];
	struct sim_buf b = { 0 };
	sim_buf_printf(&b,
		       "{\"id\":\"TD_QE\",\"version\":2,\"issueDate\":\"%s\",\"nextUpdate\":\"%s\","
		       "\"tcbEvaluationDataNumber\":%d,\"miscselect\":\"",
		       issue, next, TCB_EVALUATION_NUMBER);
	sim_buf_hex(&b, misc, sizeof(misc), true);
	sim_buf_puts(&b, "\",\"miscselectMask\":\"FFFFFFFF\",\"attributes\":\"");
	sim_buf_hex(&b, attributes, sizeof(attributes), true);
	sim_buf_puts(&b, "\",\"attributesMask\":\"" QE_ATTRIBUTES_MASK "\",\"mrsigner\":\"");
	sim_buf_hex(&b, p->qe_mr_signer, sizeof(p->qe_mr_signer), true);
	sim_buf_printf(&b,
		       "\",\"isvprodid\":%u,\"tcbLevels\":[{\"tcb\":{\"isvsvn\":%u},\"tcbDate\":"
		       "\"" TCB_DATE "\",\"tcbStatus\":\"UpToDate\"}]}",
		       p->qe_isv_prod_id, p->qe_isv_svn);
	return sim_buf_finish(&b, out, NULL);
}

static char *concat(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	char *out = malloc(na + nb + 1);
	if (out) {
		memcpy(out, a, na);
		memcpy(out + na, b, nb + 1);
	}
	return out;
}

int sim_collateral(struct sim *s, time_t now, struct sim_collateral *out)
{
	memset(out, 0, sizeof(*out));
	char issue[32], next[32];
	iso_time(now - 3600, issue);
	iso_time(now + VALIDITY_DAYS * 24L * 3600L, next);

	int rc = 0;
	out->pck_crl_issuer_chain = concat(s->ca_pem, s->root_pem);
	out->tcb_info_issuer_chain = concat(s->tcb_pem, s->root_pem);
	out->qe_identity_issuer_chain = concat(s->tcb_pem, s->root_pem);
	if (!out->pck_crl_issuer_chain || !out->tcb_info_issuer_chain ||
	    !out->qe_identity_issuer_chain ||
	    tcb_info_json(&s->plat, issue, next, &out->tcb_info) ||
	    qe_identity_json(&s->plat, issue, next, &out->qe_identity))
		rc = sim_fail(s, SIM_ENOMEM, "out of memory");
	if (rc == 0 &&
	    (sim_pki_crl(s->root, s->root_key, now, &out->root_ca_crl, &out->root_ca_crl_len) < 0 ||
	     sim_pki_crl(s->ca, s->ca_key, now, &out->pck_crl, &out->pck_crl_len) < 0))
		rc = sim_fail_ssl(s, "issuing the CRLs");
	if (rc == 0 && (sim_sign_raw(s->tcb_key, out->tcb_info, strlen(out->tcb_info),
				     out->tcb_info_signature) < 0 ||
			sim_sign_raw(s->tcb_key, out->qe_identity, strlen(out->qe_identity),
				     out->qe_identity_signature) < 0))
		rc = sim_fail_ssl(s, "signing the collateral");
	if (rc < 0)
		sim_collateral_free(out);
	return rc;
}

void sim_collateral_free(struct sim_collateral *c)
{
	free(c->pck_crl_issuer_chain);
	free(c->root_ca_crl);
	free(c->pck_crl);
	free(c->tcb_info_issuer_chain);
	free(c->tcb_info);
	free(c->qe_identity_issuer_chain);
	free(c->qe_identity);
	memset(c, 0, sizeof(*c));
}

int sim_collateral_json(const struct sim_collateral *c, char **json, size_t *len)
{
	struct sim_buf b = { 0 };
	sim_buf_puts(&b, "{\"pck_crl_issuer_chain\":");
	sim_buf_json_str(&b, c->pck_crl_issuer_chain);
	sim_buf_puts(&b, ",\"root_ca_crl\":\"");
	sim_buf_hex(&b, c->root_ca_crl, c->root_ca_crl_len, false);
	sim_buf_puts(&b, "\",\"pck_crl\":\"");
	sim_buf_hex(&b, c->pck_crl, c->pck_crl_len, false);
	sim_buf_puts(&b, "\",\"tcb_info_issuer_chain\":");
	sim_buf_json_str(&b, c->tcb_info_issuer_chain);
	sim_buf_puts(&b, ",\"tcb_info\":");
	sim_buf_json_str(&b, c->tcb_info);
	sim_buf_puts(&b, ",\"tcb_info_signature\":\"");
	sim_buf_hex(&b, c->tcb_info_signature, 64, false);
	sim_buf_puts(&b, "\",\"qe_identity_issuer_chain\":");
	sim_buf_json_str(&b, c->qe_identity_issuer_chain);
	sim_buf_puts(&b, ",\"qe_identity\":");
	sim_buf_json_str(&b, c->qe_identity);
	sim_buf_puts(&b, ",\"qe_identity_signature\":\"");
	sim_buf_hex(&b, c->qe_identity_signature, 64, false);
	sim_buf_puts(&b, "\"}");
	return sim_buf_finish(&b, json, len);
}
