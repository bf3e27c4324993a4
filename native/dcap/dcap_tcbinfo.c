/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCB info (Intel PCS v3 format: SGX and TDX) and QE identity documents parsed into C values,
 * every field checked for type, range and length. TCB levels are put in the canonical order
 * dcap-qvl (and Intel's QVL) match them in: SGX components, then PCESVN, then (TDX) the TDX
 * components, each highest first, stable; module and QE levels by ISVSVN, highest first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dcap/dcap_internal.h"

/* A parse context: which document, for messages. */
struct ctx {
	const char *doc;
	struct dcap_error *err;
};

static int bad(struct ctx *c, const char *path, const char *why)
{
	return dcap_fail(c->err, "ECOLLATERAL", "%s: %s %s", c->doc, path, why);
}

/* "path.key" (or "key" at the top) in out; a path longer than the buffer is cut and ends
 * in "...". */
static void json_path(char *out, size_t size, const char *path, const char *key)
{
	int n = snprintf(out, size, "%s%s%s", path, *path ? "." : "", key);
	if (n < 0 || (size_t)n >= size)
		memcpy(out + size - 4, "...", 4);
}

static const struct dcap_json *member(struct ctx *c, const struct dcap_json *obj, const char *key,
				      enum dcap_json_type type, bool required, const char *path,
				      int *rc)
{
	char where[160];
	const struct dcap_json *v = dcap_json_get(obj, key);

	if (*rc)
		return NULL;
	json_path(where, sizeof(where), path, key);
	if (!v) {
		if (required)
			*rc = bad(c, where, "is missing");
		return NULL;
	}
	if (v->type != type) {
		static const char *const names[] = { "null",	 "a boolean", "a number",
						     "a string", "an array",  "an object" };
		char why[48];
		snprintf(why, sizeof(why), "must be %s", names[type]);
		*rc = bad(c, where, why);
		return NULL;
	}
	return v;
}

static const char *str(struct ctx *c, const struct dcap_json *obj, const char *key,
		       const char *path, int *rc)
{
	const struct dcap_json *v = member(c, obj, key, DJ_STRING, true, path, rc);
	return v ? v->u.str : NULL;
}

static uint32_t uint_field(struct ctx *c, const struct dcap_json *obj, const char *key,
			   uint32_t max, const char *path, int *rc)
{
	const struct dcap_json *v = member(c, obj, key, DJ_NUMBER, true, path, rc);
	if (!v)
		return 0;
	if (v->u.num < 0 || v->u.num > max || v->u.num != (double)(uint32_t)v->u.num) {
		char where[160], why[64];
		json_path(where, sizeof(where), path, key);
		snprintf(why, sizeof(why), "must be an integer in 0..%u", max);
		*rc = bad(c, where, why);
		return 0;
	}
	return (uint32_t)v->u.num;
}

static void hex_field(struct ctx *c, const struct dcap_json *obj, const char *key, uint8_t *out,
		      size_t n, const char *path, int *rc)
{
	const struct dcap_json *v = member(c, obj, key, DJ_STRING, true, path, rc);
	if (v && dcap_unhex(v->u.str, v->len, out, n) != 0) {
		char where[160], why[64];
		snprintf(where, sizeof(where), "%s%s%s", path, *path ? "." : "", key);
		snprintf(why, sizeof(why), "must be %zu bytes of hex", n);
		*rc = bad(c, where, why);
	}
}

static int64_t time_field(struct ctx *c, const struct dcap_json *obj, const char *key, int *rc)
{
	const char *s = str(c, obj, key, "", rc);
	int64_t t = 0;
	if (s && dcap_parse_time(s, &t) != 0)
		*rc = bad(c, key, "is not an RFC 3339 date-time");
	return t;
}

static void status_field(struct ctx *c, const struct dcap_json *level, const char *path,
			 struct dcap_status_ids *st, int *rc)
{
	const char *s = str(c, level, "tcbStatus", path, rc);
	if (!s)
		return;
	int i = 0;
	for (; i <= DCAP_REVOKED; i++)
		if (strcmp(s, dcap_tcb_status_name((enum dcap_tcb_status)i)) == 0)
			break;
	if (i > DCAP_REVOKED) {
		char where[160];
		snprintf(where, sizeof(where), "%s.tcbStatus", path);
		*rc = bad(c, where, "is not a known TCB status");
		return;
	}
	st->status = (enum dcap_tcb_status)i;
	const struct dcap_json *ids = member(c, level, "advisoryIDs", DJ_ARRAY, false, path, rc);
	if (!ids || ids->len == 0)
		return;
	st->ids = calloc(ids->len, sizeof(*st->ids));
	if (!st->ids) {
		*rc = dcap_fail(c->err, "ENOMEM", "out of memory");
		return;
	}
	for (size_t k = 0; k < ids->len; k++) {
		if (ids->u.items[k].type != DJ_STRING) {
			char where[160];
			snprintf(where, sizeof(where), "%s.advisoryIDs[%zu]", path, k);
			*rc = bad(c, where, "must be a string");
			return;
		}
		st->ids[st->n++] = ids->u.items[k].u.str;
	}
}

static void components(struct ctx *c, const struct dcap_json *tcb, const char *key, bool required,
		       const char *path, uint8_t *out, size_t *n, int *rc)
{
	const struct dcap_json *arr = member(c, tcb, key, DJ_ARRAY, required, path, rc);
	char where[160];

	if (!arr)
		return;
	if (arr->len > DCAP_MAX_COMPONENTS) {
		snprintf(where, sizeof(where), "%s.%s", path, key);
		*rc = bad(c, where, "has too many components");
		return;
	}
	for (size_t i = 0; i < arr->len && !*rc; i++) {
		snprintf(where, sizeof(where), "%s.%s[%zu]", path, key, i);
		if (arr->u.items[i].type != DJ_OBJECT) {
			*rc = bad(c, where, "must be an object");
			return;
		}
		out[i] = (uint8_t)uint_field(c, &arr->u.items[i], "svn", 255, where, rc);
	}
	*n = arr->len;
}

/* Lexicographic order of component lists (as Rust compares Vec<u8>). */
static int cmp_components(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
	size_t n = na < nb ? na : nb;
	int r = memcmp(a, b, n);
	if (r)
		return r < 0 ? -1 : 1;
	return na < nb ? -1 : na > nb;
}

/* > 0 when @a must come after @b (levels are ordered highest first). */
static int level_order(const struct dcap_tcb_level *a, const struct dcap_tcb_level *b, bool tdx)
{
	int r = cmp_components(b->sgx, b->n_sgx, a->sgx, a->n_sgx);
	if (r)
		return r;
	if (a->pce_svn != b->pce_svn)
		return b->pce_svn > a->pce_svn ? 1 : -1;
	return tdx ? cmp_components(b->tdx, b->n_tdx, a->tdx, a->n_tdx) : 0;
}

static void sort_levels(struct dcap_tcb_level *lv, size_t n, bool tdx)
{
	for (size_t i = 1; i < n; i++) { /* stable insertion sort: a few levels */
		struct dcap_tcb_level x = lv[i];
		size_t j = i;
		while (j > 0 && level_order(&lv[j - 1], &x, tdx) > 0) {
			lv[j] = lv[j - 1];
			j--;
		}
		lv[j] = x;
	}
}

static void sort_isv_levels(struct dcap_isv_level *lv, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct dcap_isv_level x = lv[i];
		size_t j = i;
		while (j > 0 && lv[j - 1].isvsvn < x.isvsvn) {
			lv[j] = lv[j - 1];
			j--;
		}
		lv[j] = x;
	}
}

/* tcbLevels of a module or QE identity: [{tcb: {isvsvn}, tcbDate, tcbStatus, advisoryIDs}] */
static void isv_levels(struct ctx *c, const struct dcap_json *obj, const char *path,
		       uint32_t max_svn, struct dcap_isv_level **out, size_t *n, int *rc)
{
	const struct dcap_json *arr = member(c, obj, "tcbLevels", DJ_ARRAY, true, path, rc);
	char where[160];

	if (!arr)
		return;
	*out = calloc(arr->len ? arr->len : 1, sizeof(**out));
	if (!*out) {
		*rc = dcap_fail(c->err, "ENOMEM", "out of memory");
		return;
	}
	for (size_t i = 0; i < arr->len && !*rc; i++) {
		const struct dcap_json *lv = &arr->u.items[i];
		*n = i + 1;
		snprintf(where, sizeof(where), "%s%stcbLevels[%zu]", path, *path ? "." : "", i);
		if (lv->type != DJ_OBJECT) {
			*rc = bad(c, where, "must be an object");
			return;
		}
		char tcbpath[180];
		snprintf(tcbpath, sizeof(tcbpath), "%s.tcb", where);
		const struct dcap_json *tcb = member(c, lv, "tcb", DJ_OBJECT, true, where, rc);
		(*out)[i].isvsvn = (uint16_t)uint_field(c, tcb, "isvsvn", max_svn, tcbpath, rc);
		(*out)[i].tcb_date = str(c, lv, "tcbDate", where, rc);
		status_field(c, lv, where, &(*out)[i].st, rc);
	}
	sort_isv_levels(*out, *n);
}

static void module_fields(struct ctx *c, const struct dcap_json *m, const char *path,
			  struct dcap_module *mod, int *rc)
{
	hex_field(c, m, "mrsigner", mod->mrsigner, sizeof(mod->mrsigner), path, rc);
	hex_field(c, m, "attributes", mod->attributes, sizeof(mod->attributes), path, rc);
	hex_field(c, m, "attributesMask", mod->attributes_mask, sizeof(mod->attributes_mask), path,
		  rc);
}

static void tdx_modules(struct ctx *c, const struct dcap_json *doc, struct dcap_tcb_info *ti,
			int *rc)
{
	const struct dcap_json *m = member(c, doc, "tdxModule", DJ_OBJECT, false, "", rc);
	if (m) {
		ti->has_module = true;
		module_fields(c, m, "tdxModule", &ti->module, rc);
	}
	const struct dcap_json *ids =
		member(c, doc, "tdxModuleIdentities", DJ_ARRAY, false, "", rc);
	if (!ids || *rc)
		return;
	ti->identities = calloc(ids->len ? ids->len : 1, sizeof(*ti->identities));
	if (!ti->identities) {
		*rc = dcap_fail(c->err, "ENOMEM", "out of memory");
		return;
	}
	for (size_t i = 0; i < ids->len && !*rc; i++) {
		char where[64];
		struct dcap_module *mod = &ti->identities[i];
		snprintf(where, sizeof(where), "tdxModuleIdentities[%zu]", i);
		if (ids->u.items[i].type != DJ_OBJECT) {
			*rc = bad(c, where, "must be an object");
			return;
		}
		ti->n_identities = i + 1;
		mod->id = str(c, &ids->u.items[i], "id", where, rc);
		module_fields(c, &ids->u.items[i], where, mod, rc);
		isv_levels(c, &ids->u.items[i], where, 255, &mod->levels, &mod->n_levels, rc);
	}
}

static void tcb_levels(struct ctx *c, const struct dcap_json *doc, struct dcap_tcb_info *ti,
		       int *rc)
{
	const struct dcap_json *arr = member(c, doc, "tcbLevels", DJ_ARRAY, true, "", rc);
	if (!arr)
		return;
	ti->levels = calloc(arr->len ? arr->len : 1, sizeof(*ti->levels));
	if (!ti->levels) {
		*rc = dcap_fail(c->err, "ENOMEM", "out of memory");
		return;
	}
	for (size_t i = 0; i < arr->len && !*rc; i++) {
		const struct dcap_json *lv = &arr->u.items[i];
		struct dcap_tcb_level *l = &ti->levels[i];
		char where[64], tcbpath[80];
		ti->n_levels = i + 1;
		snprintf(where, sizeof(where), "tcbLevels[%zu]", i);
		snprintf(tcbpath, sizeof(tcbpath), "%s.tcb", where);
		if (lv->type != DJ_OBJECT) {
			*rc = bad(c, where, "must be an object");
			return;
		}
		const struct dcap_json *tcb = member(c, lv, "tcb", DJ_OBJECT, true, where, rc);
		components(c, tcb, "sgxtcbcomponents", true, tcbpath, l->sgx, &l->n_sgx, rc);
		components(c, tcb, "tdxtcbcomponents", false, tcbpath, l->tdx, &l->n_tdx, rc);
		l->pce_svn = (uint16_t)uint_field(c, tcb, "pcesvn", 65535, tcbpath, rc);
		l->tcb_date = str(c, lv, "tcbDate", where, rc);
		status_field(c, lv, where, &l->st, rc);
		l->json_index = i;
	}
}

int dcap_tcb_info_parse(const char *json, size_t len, struct dcap_tcb_info *ti,
			struct dcap_error *err)
{
	struct ctx c = { "TCB info", err };
	char why[160];
	int rc = 0;

	memset(ti, 0, sizeof(*ti));
	if (dcap_json_parse(json, len, &ti->doc, why, sizeof(why)) != 0)
		return dcap_fail(err, "ECOLLATERAL", "TCB info: invalid JSON: %s", why);
	const struct dcap_json *d = &ti->doc;
	if (d->type != DJ_OBJECT)
		rc = bad(&c, "document", "must be an object");
	ti->id = str(&c, d, "id", "", &rc);
	ti->version = (int)uint_field(&c, d, "version", 255, "", &rc);
	ti->issue_date = time_field(&c, d, "issueDate", &rc);
	ti->next_update = time_field(&c, d, "nextUpdate", &rc);
	hex_field(&c, d, "fmspc", ti->fmspc, sizeof(ti->fmspc), "", &rc);
	hex_field(&c, d, "pceId", ti->pce_id, sizeof(ti->pce_id), "", &rc);
	ti->tcb_type = uint_field(&c, d, "tcbType", UINT32_MAX, "", &rc);
	ti->evaluation_number = uint_field(&c, d, "tcbEvaluationDataNumber", UINT32_MAX, "", &rc);
	tcb_levels(&c, d, ti, &rc);
	tdx_modules(&c, d, ti, &rc);
	if (rc) {
		dcap_tcb_info_free(ti);
		return rc;
	}
	sort_levels(ti->levels, ti->n_levels, ti->version >= 3 && strcmp(ti->id, "TDX") == 0);
	return 0;
}

static void free_levels(struct dcap_isv_level *lv, size_t n)
{
	for (size_t i = 0; lv && i < n; i++)
		free(lv[i].st.ids);
	free(lv);
}

void dcap_tcb_info_free(struct dcap_tcb_info *ti)
{
	for (size_t i = 0; ti->levels && i < ti->n_levels; i++)
		free(ti->levels[i].st.ids);
	free(ti->levels);
	for (size_t i = 0; ti->identities && i < ti->n_identities; i++)
		free_levels(ti->identities[i].levels, ti->identities[i].n_levels);
	free(ti->identities);
	dcap_json_free(&ti->doc);
	memset(ti, 0, sizeof(*ti));
}

int dcap_qe_identity_parse(const char *json, size_t len, struct dcap_qe_identity *qi,
			   struct dcap_error *err)
{
	struct ctx c = { "QE identity", err };
	char why[160];
	int rc = 0;

	memset(qi, 0, sizeof(*qi));
	if (dcap_json_parse(json, len, &qi->doc, why, sizeof(why)) != 0)
		return dcap_fail(err, "ECOLLATERAL", "QE identity: invalid JSON: %s", why);
	const struct dcap_json *d = &qi->doc;
	if (d->type != DJ_OBJECT)
		rc = bad(&c, "document", "must be an object");
	qi->id = str(&c, d, "id", "", &rc);
	qi->version = (int)uint_field(&c, d, "version", 255, "", &rc);
	qi->issue_date = time_field(&c, d, "issueDate", &rc);
	qi->next_update = time_field(&c, d, "nextUpdate", &rc);
	qi->evaluation_number = uint_field(&c, d, "tcbEvaluationDataNumber", UINT32_MAX, "", &rc);
	hex_field(&c, d, "miscselect", qi->miscselect, sizeof(qi->miscselect), "", &rc);
	hex_field(&c, d, "miscselectMask", qi->miscselect_mask, sizeof(qi->miscselect_mask), "",
		  &rc);
	hex_field(&c, d, "attributes", qi->attributes, sizeof(qi->attributes), "", &rc);
	hex_field(&c, d, "attributesMask", qi->attributes_mask, sizeof(qi->attributes_mask), "",
		  &rc);
	hex_field(&c, d, "mrsigner", qi->mrsigner, sizeof(qi->mrsigner), "", &rc);
	qi->isvprodid = (uint16_t)uint_field(&c, d, "isvprodid", 65535, "", &rc);
	isv_levels(&c, d, "", 65535, &qi->levels, &qi->n_levels, &rc);
	if (rc) {
		dcap_qe_identity_free(qi);
		return rc;
	}
	return 0;
}

void dcap_qe_identity_free(struct dcap_qe_identity *qi)
{
	free_levels(qi->levels, qi->n_levels);
	dcap_json_free(&qi->doc);
	memset(qi, 0, sizeof(*qi));
}
