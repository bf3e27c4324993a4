/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Quote generation: a DCAP v4 TDX quote laid out and signed exactly like a real one.
 *   header (48) | TD report body (584) | auth_data_size u32 | ISV signature (64, attestation
 *   key over header||body) | attestation key x||y (64) | cert type 6 u16 | size u32 |
 *   QE report (384) | QE report signature (64, PCK key) | QE auth data size u16 | QE auth data |
 *   cert type 5 u16 | size u32 | PEM chain (leaf, PCK platform CA, root) + NUL
 */
#include <stdlib.h>
#include <string.h>

#include "sim/sim_internal.h"

#define HEADER_LEN    48
#define BODY_LEN      584
#define QE_REPORT_LEN 384
#define QE_AUTH_LEN   32

/* Intel's QE vendor id (939a7233-f79c-4ca9-940a-0db3957f0607). */
static const uint8_t intel_qe_vendor_id[16] = { 0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9,
						0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07 };

static void put_header(struct sim_buf *b, const struct sim_platform *p)
{
	static const uint8_t zero[4];
	sim_buf_u16le(b, 4);	/* version */
	sim_buf_u16le(b, 2);	/* attestation key type: ECDSA-256 with P-256 */
	sim_buf_u32le(b, 0x81); /* TEE type: TDX */
	sim_buf_u16le(b, 0);	/* reserved (QE SVN) */
	sim_buf_u16le(b, 0);	/* reserved (PCE SVN) */
	sim_buf_add(b, intel_qe_vendor_id, sizeof(intel_qe_vendor_id));
	sim_buf_add(b, p->qe_id, 16); /* user_data: QE ID ... */
	sim_buf_add(b, zero, 4);      /* ... and 4 zero bytes */
}

static void put_body(struct sim_buf *b, const struct sim_platform *p, const struct sim_td *td,
		     const uint8_t report_data[SIM_REPORT_DATA_LEN])
{
	sim_buf_add(b, p->tee_tcb_svn, 16);
	sim_buf_add(b, p->mr_seam, 48);
	sim_buf_add(b, p->mr_signer_seam, 48);
	sim_buf_add(b, p->seam_attributes, 8);
	sim_buf_add(b, td->td_attributes, 8);
	sim_buf_add(b, td->xfam, 8);
	sim_buf_add(b, td->mrtd, SIM_MR_LEN);
	sim_buf_add(b, td->mr_config_id, SIM_MR_LEN);
	sim_buf_add(b, td->mr_owner, SIM_MR_LEN);
	sim_buf_add(b, td->mr_owner_config, SIM_MR_LEN);
	for (int i = 0; i < SIM_RTMR_COUNT; i++)
		sim_buf_add(b, td->rtmr[i], SIM_MR_LEN);
	sim_buf_add(b, report_data, SIM_REPORT_DATA_LEN);
}

/* The QE's SGX report body, binding the attestation key and the QE auth data. */
static void qe_report(const struct sim *s, const uint8_t *auth, uint8_t out[QE_REPORT_LEN])
{
	const struct sim_platform *p = &s->plat;
	uint8_t hashed[64 + QE_AUTH_LEN];
	unsigned int n = 0;
	memset(out, 0, QE_REPORT_LEN);
	memcpy(out, p->cpu_svn, 16);
	for (int i = 0; i < 4; i++)
		out[16 + i] = (uint8_t)(p->qe_misc_select >> (8 * i));
	memcpy(out + 48, p->qe_attributes, 16);
	memcpy(out + 64, p->qe_mr_enclave, 32);
	memcpy(out + 128, p->qe_mr_signer, 32);
	out[256] = (uint8_t)p->qe_isv_prod_id;
	out[257] = (uint8_t)(p->qe_isv_prod_id >> 8);
	out[258] = (uint8_t)p->qe_isv_svn;
	out[259] = (uint8_t)(p->qe_isv_svn >> 8);
	memcpy(hashed, s->att_pub, 64);
	memcpy(hashed + 64, auth, QE_AUTH_LEN);
	/* report_data = SHA-256(attestation key || QE auth data) || 32 zero bytes */
	EVP_Digest(hashed, sizeof(hashed), out + 320, &n, EVP_sha256(), NULL);
}

int sim_quote(struct sim *s, const char *name, const uint8_t *report_data, size_t len,
	      uint8_t **quote, size_t *quote_len)
{
	*quote = NULL;
	*quote_len = 0;
	if (len > SIM_REPORT_DATA_LEN || (len > 0 && !report_data))
		return sim_fail(s, SIM_EINVAL, "report_data is %zu bytes, at most 64 allowed", len);
	uint8_t rd[SIM_REPORT_DATA_LEN] = { 0 };
	if (len > 0)
		memcpy(rd, report_data, len);
	struct sim_td td;
	int rc = sim_cvm_load(s, name, &td);
	if (rc < 0)
		return rc;

	/* The QE auth data is the 0..31 pattern real quotes carry. */
	uint8_t auth[QE_AUTH_LEN], report[QE_REPORT_LEN], qe_sig[64], isv_sig[64];
	for (int i = 0; i < QE_AUTH_LEN; i++)
		auth[i] = (uint8_t)i;
	qe_report(s, auth, report);
	if (sim_sign_raw(s->pck_key, report, sizeof(report), qe_sig) < 0)
		return sim_fail_ssl(s, "signing the QE report");

	struct sim_buf b = { 0 };
	put_header(&b, &s->plat);
	put_body(&b, &s->plat, &td, rd);
	if (b.failed || b.len != HEADER_LEN + BODY_LEN) {
		sim_buf_free(&b);
		return sim_fail(s, SIM_ENOMEM, "out of memory");
	}
	if (sim_sign_raw(s->att_key, b.p, b.len, isv_sig) < 0) {
		sim_buf_free(&b);
		return sim_fail_ssl(s, "signing the quote");
	}

	size_t chain_len = strlen(s->chain_pem) + 1; /* NUL-terminated, as real quotes */
	size_t cert6_len = QE_REPORT_LEN + 64 + 2 + QE_AUTH_LEN + 2 + 4 + chain_len;
	size_t auth_len = 64 + 64 + 2 + 4 + cert6_len;
	sim_buf_u32le(&b, (uint32_t)auth_len);
	sim_buf_add(&b, isv_sig, 64);
	sim_buf_add(&b, s->att_pub, 64);
	sim_buf_u16le(&b, 6); /* QE report certification data */
	sim_buf_u32le(&b, (uint32_t)cert6_len);
	sim_buf_add(&b, report, sizeof(report));
	sim_buf_add(&b, qe_sig, 64);
	sim_buf_u16le(&b, QE_AUTH_LEN);
	sim_buf_add(&b, auth, QE_AUTH_LEN);
	sim_buf_u16le(&b, 5); /* PCK certificate chain */
	sim_buf_u32le(&b, (uint32_t)chain_len);
	sim_buf_add(&b, s->chain_pem, chain_len);
	if (b.failed) {
		sim_buf_free(&b);
		return sim_fail(s, SIM_ENOMEM, "out of memory");
	}
	*quote = b.p;
	*quote_len = b.len;
	return 0;
}
