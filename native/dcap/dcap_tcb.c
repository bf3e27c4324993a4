/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCB evaluation: the platform's TCB level (PCK certificate CPUSVN/PCESVN, then the TD's
 * TEE_TCB_SVN) in a TCB info, the TDX module identity (MRSIGNERSEAM, SEAMATTRIBUTES under the
 * mask, TDX_xx levels by module ISVSVN), the QE against its QE identity, and the status merge
 * (the worse status wins; advisory IDs keep their order, new ones appended). Semantics follow
 * dcap-qvl's verify.rs.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dcap/dcap_internal.h"

int dcap_merge_status(enum dcap_tcb_status *status, struct dcap_report *r,
		      const struct dcap_status_ids *in, struct dcap_error *err)
{
	if (in->status > *status)
		*status = in->status;
	for (size_t i = 0; i < in->n; i++) {
		bool seen = false;
		for (size_t k = 0; k < r->n_advisory_ids && !seen; k++)
			seen = strcmp(r->advisory_ids[k], in->ids[i]) == 0;
		if (seen)
			continue;
		if (r->n_advisory_ids == DCAP_MAX_ADVISORIES)
			return dcap_fail(err, "ECOLLATERAL", "more than %d advisory IDs",
					 DCAP_MAX_ADVISORIES);
		r->advisory_ids[r->n_advisory_ids++] = in->ids[i];
	}
	return 0;
}

static const struct dcap_module *find_identity(const struct dcap_tcb_info *ti, unsigned version)
{
	char want[16];

	snprintf(want, sizeof(want), "TDX_%02X", version);
	for (size_t i = 0; i < ti->n_identities; i++)
		if (strcasecmp(ti->identities[i].id, want) == 0)
			return &ti->identities[i];
	return NULL;
}

/* TDX module identity (dcap-qvl's match_tdx_module_identity): merges its status, if any. */
static int match_module(const struct dcap_tcb_info *ti, const struct tdx_td_report *td,
			struct dcap_report *r, struct dcap_error *err)
{
	unsigned isvsvn = td->tee_tcb_svn[0], version = td->tee_tcb_svn[1];
	const struct dcap_module *m = &ti->module;
	char want[2 * 48 + 1], got[2 * 48 + 1];

	if (!ti->has_module)
		return dcap_fail(err, "ETCB", "TDX TCB info has no tdxModule");
	if (version > 0 && ti->n_identities > 0) {
		m = find_identity(ti, version);
		if (!m)
			return dcap_fail(err, "ETCB",
					 "no TDX module identity TDX_%02X in the TCB info (TDX "
					 "module version tee_tcb_svn[1] = %u)",
					 version, version);
	}
	if (memcmp(m->mrsigner, td->mr_signer_seam, 48) != 0) {
		dcap_hex(m->mrsigner, 48, want);
		dcap_hex(td->mr_signer_seam, 48, got);
		return dcap_fail(err, "ETCB", "TDX module MRSIGNER mismatch: expected %s, got %s",
				 want, got);
	}
	for (int i = 0; i < 8; i++) {
		uint8_t mask = m->attributes_mask[i], act = td->seam_attributes[i];
		if ((m->attributes[i] & mask) != (act & mask))
			return dcap_fail(err, "ETCB",
					 "TDX module SEAMATTRIBUTES mismatch at byte %d: expected "
					 "%02x, got %02x (masked with %02x)",
					 i, m->attributes[i] & mask, act & mask, mask);
		if (act & (uint8_t)~mask)
			return dcap_fail(err, "ETCB",
					 "TDX module SEAMATTRIBUTES has bits outside the mask at "
					 "byte %d (%02x, mask %02x)",
					 i, act, mask);
	}
	if (m == &ti->module)
		return 0; /* identity corroborated; no levels to take a status from */
	for (size_t i = 0; i < m->n_levels; i++) {
		if (isvsvn >= m->levels[i].isvsvn)
			return dcap_merge_status(&r->platform_status, r, &m->levels[i].st, err);
	}
	return dcap_fail(err, "ETCB",
			 "TDX module ISVSVN %u (tee_tcb_svn[0]) is below every TCB level of "
			 "module identity %s",
			 isvsvn, m->id);
}

static bool all_ge(const uint8_t *have, const uint8_t *need, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (have[i] < need[i])
			return false;
	return true;
}

int dcap_match_platform(const struct dcap_tcb_info *ti, const struct tdx_quote *q,
			const struct tdx_sgx_ext *pck, struct dcap_report *r,
			struct dcap_error *err)
{
	bool tdx = q->header.tee_type == TDX_TEE_TYPE_TDX;
	char a[64], b[64];

	if (memcmp(pck->fmspc, ti->fmspc, 6) != 0) {
		dcap_hex(pck->fmspc, 6, a);
		dcap_hex(ti->fmspc, 6, b);
		return dcap_fail(err, "ETCB",
				 "FMSPC mismatch: the PCK certificate has %s, the TCB info %s", a,
				 b);
	}
	if (memcmp(pck->pceid, ti->pce_id, 2) != 0) {
		dcap_hex(pck->pceid, 2, a);
		dcap_hex(ti->pce_id, 2, b);
		return dcap_fail(err, "ETCB",
				 "PCE ID mismatch: the PCK certificate has %s, the TCB info %s", a,
				 b);
	}
	if (tdx ? (ti->version < 3 || strcmp(ti->id, "TDX") != 0)
		: (ti->version < 2 || strcmp(ti->id, "SGX") != 0))
		return dcap_fail(err, "ETCB", "%s quote with a TCB info of id %s version %d",
				 tdx ? "TDX" : "SGX", ti->id, ti->version);
	for (size_t i = 0; i < ti->n_levels; i++) {
		const struct dcap_tcb_level *l = &ti->levels[i];
		if (pck->pcesvn < l->pce_svn)
			continue;
		if (l->n_sgx != 16)
			return dcap_fail(err, "ETCB",
					 "SGX component count mismatch: expected 16, got %zu "
					 "(tcbLevels[%zu])",
					 l->n_sgx, l->json_index);
		if (!all_ge(pck->cpusvn, l->sgx, 16))
			continue;
		if (tdx) {
			if (l->n_tdx != 16)
				return dcap_fail(err, "ETCB",
						 "TDX component count mismatch: expected 16, got "
						 "%zu (tcbLevels[%zu])",
						 l->n_tdx, l->json_index);
			if (!all_ge(q->td.tee_tcb_svn, l->tdx, 16))
				continue;
		}
		r->platform_status = DCAP_UP_TO_DATE;
		r->tcb_date = l->tcb_date;
		if (dcap_merge_status(&r->platform_status, r, &l->st, err))
			return -1;
		return tdx ? match_module(ti, &q->td, r, err) : 0;
	}
	dcap_hex(pck->cpusvn, 16, a);
	if (tdx)
		dcap_hex(q->td.tee_tcb_svn, 16, b);
	return dcap_fail(err, "ETCB",
			 "No matching TCB level found for CPUSVN %s, PCESVN %u%s%s among %zu "
			 "levels",
			 a, pck->pcesvn, tdx ? ", TEE_TCB_SVN " : "", tdx ? b : "", ti->n_levels);
}

int dcap_match_qe(const struct dcap_qe_identity *qi, bool tdx, const struct tdx_enclave_report *qe,
		  struct dcap_status_ids *out, struct dcap_error *err)
{
	const char *want = tdx ? "TD_QE" : "QE";
	char a[65], b[65];

	if (strcmp(qi->id, want) != 0 || qi->version < 2 || qi->version > (tdx ? 3 : 2))
		return dcap_fail(err, "EQEID",
				 "QE identity %s version %d does not fit a %s quote (expected %s "
				 "version %s)",
				 qi->id, qi->version, tdx ? "TDX" : "SGX", want,
				 tdx ? "2 or 3" : "2");
	if (memcmp(qi->mrsigner, qe->mr_signer, 32) != 0) {
		dcap_hex(qi->mrsigner, 32, a);
		dcap_hex(qe->mr_signer, 32, b);
		return dcap_fail(err, "EQEID", "QE MRSIGNER mismatch: expected %s, got %s", a, b);
	}
	if (qe->attributes[0] & 0x02)
		return dcap_fail(err, "EQEID", "the QE runs in debug mode");
	if (qe->isv_prod_id != qi->isvprodid)
		return dcap_fail(err, "EQEID", "QE ISVPRODID mismatch: expected %u, got %u",
				 qi->isvprodid, qe->isv_prod_id);
	const uint8_t *misc = qe->raw + 16; /* MISCSELECT as stored (little-endian) */
	for (int i = 0; i < 4; i++)
		if ((misc[i] & qi->miscselect_mask[i]) !=
		    (qi->miscselect[i] & qi->miscselect_mask[i]))
			return dcap_fail(err, "EQEID",
					 "QE MISCSELECT mismatch: expected %08x, got %08x (mask "
					 "%02x%02x%02x%02x)",
					 (unsigned)(qi->miscselect[0] | qi->miscselect[1] << 8 |
						    qi->miscselect[2] << 16 |
						    (unsigned)qi->miscselect[3] << 24),
					 qe->misc_select, qi->miscselect_mask[3],
					 qi->miscselect_mask[2], qi->miscselect_mask[1],
					 qi->miscselect_mask[0]);
	for (int i = 0; i < 16; i++) {
		uint8_t mask = qi->attributes_mask[i];
		if ((qe->attributes[i] & mask) != (qi->attributes[i] & mask))
			return dcap_fail(err, "EQEID",
					 "QE ATTRIBUTES mismatch at byte %d: expected %02x, got "
					 "%02x (masked with %02x)",
					 i, qi->attributes[i] & mask, qe->attributes[i] & mask,
					 mask);
	}
	if (qi->n_levels == 0)
		return dcap_fail(err, "ETCB", "the QE identity has no TCB levels");
	for (size_t i = 0; i < qi->n_levels; i++) {
		if (qe->isv_svn >= qi->levels[i].isvsvn) {
			*out = qi->levels[i].st;
			return 0;
		}
	}
	return dcap_fail(err, "ETCB", "QE ISVSVN %u is below the minimum %u of the QE identity",
			 qe->isv_svn, qi->levels[qi->n_levels - 1].isvsvn);
}
