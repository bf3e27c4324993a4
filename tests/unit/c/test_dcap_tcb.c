/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCB evaluation of the DCAP verifier with TCB info and QE identity documents the test writes
 * and signs with the simulator's TCB-signing key (what dcap-qvl's tcb_override tests do after
 * the signature check): canonical level order (SGX components, PCESVN, TDX components), level
 * matching, component-count mismatches, FMSPC / PCE ID / id checks, the TDX module identity,
 * QE identity fields and levels, Revoked, and the status and advisory merge order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "dcap_sim_test.h"
#include "tdx/tdx_quote.h"

static const char *const none[] = { NULL };

#define ZERO48 "000000000000000000000000000000000000000000000000"
#define ZERO96 ZERO48 ZERO48

/* One TCB level: component lists as "2,2,...", NULL = the platform's own values. */
struct lv {
	const char *sgx;
	int pce; /* -1 = the platform's */
	const char *tdx;
	const char *status;
	const char *ids; /* JSON array text or NULL */
};

struct tcb_spec {
	const char *id;		 /* default "TDX" */
	int version;		 /* default 3 */
	const char *fmspc;	 /* default the platform's */
	const char *pce_id;	 /* default "0000" */
	const char *modules;	 /* JSON members before tcbLevels; NULL = default; "" = none */
	const struct lv *levels; /* NULL = the platform UpToDate */
	size_t n_levels;
};

struct ctx {
	struct simfx f;
	struct sf_doc ti, qe;
	char issue[32], next[32];
	char plat_sgx[80], plat_tdx[80], fmspc[13];
	unsigned pce, module_svn;
};

static void list(char *out, const uint8_t *v, size_t n)
{
	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		sprintf(out + strlen(out), "%s%u", i ? "," : "", v[i]);
}

static void setup(struct ctx *c)
{
	struct tm tm;
	memset(c, 0, sizeof(*c));
	sf_open(&c->f, NULL);
	time_t issue = c->f.now - 3600, next = c->f.now + 30 * 86400L;
	strftime(c->issue, sizeof(c->issue), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&issue, &tm));
	strftime(c->next, sizeof(c->next), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&next, &tm));
	const struct sim_platform *p = sim_platform(c->f.s);
	list(c->plat_sgx, p->cpu_svn, 16);
	list(c->plat_tdx, p->tee_tcb_svn, 16);
	for (int i = 0; i < 6; i++)
		sprintf(c->fmspc + 2 * i, "%02X", p->fmspc[i]);
	c->pce = p->pce_svn;
	c->module_svn = p->tee_tcb_svn[0];
	assert_int_equal(p->tee_tcb_svn[1], 1); /* module TDX_01 */
}

static void teardown(struct ctx *c)
{
	free(c->ti.json);
	free(c->qe.json);
	sf_close(&c->f);
}

static char *components(const char *svns)
{
	char buf[1024] = "[";
	char *copy = strdup(svns), *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		sprintf(buf + strlen(buf), "%s{\"svn\":%s}", buf[1] ? "," : "", t);
	strcat(buf, "]");
	free(copy);
	return strdup(buf);
}

static char *default_modules(void)
{
	return sf_printf(
		"\"tdxModule\":{\"mrsigner\":\"%s\",\"attributes\":\"0000000000000000\","
		"\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},\"tdxModuleIdentities\":[{\"id\":"
		"\"TDX_01\",\"mrsigner\":\"%s\",\"attributes\":\"0000000000000000\","
		"\"attributesMask\":\"FFFFFFFFFFFFFFFF\",\"tcbLevels\":[{\"tcb\":{"
		"\"isvsvn\":1},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":"
		"\"UpToDate\"}]}],",
		ZERO96, ZERO96);
}

/* Write, sign and install a TCB info document. */
static void set_tcb(struct ctx *c, const struct tcb_spec *s)
{
	static const struct lv platform = { NULL, -1, NULL, "UpToDate", NULL };
	const struct lv *levels = s->levels ? s->levels : &platform;
	size_t n = s->levels ? s->n_levels : 1;
	char *body = strdup("");
	for (size_t i = 0; i < n; i++) {
		char *sgx = components(levels[i].sgx ? levels[i].sgx : c->plat_sgx);
		char *tdx = components(levels[i].tdx ? levels[i].tdx : c->plat_tdx);
		char *lvl =
			sf_printf("%s{\"tcb\":{\"sgxtcbcomponents\":%s,\"pcesvn\":%d,"
				  "\"tdxtcbcomponents\":%s},\"tcbDate\":\"2024-03-13T00:00:00Z\","
				  "\"tcbStatus\":\"%s\"%s%s}",
				  body, sgx, levels[i].pce < 0 ? (int)c->pce : levels[i].pce, tdx,
				  levels[i].status, levels[i].ids ? ",\"advisoryIDs\":" : "",
				  levels[i].ids ? levels[i].ids : "");
		free(body);
		body = sf_printf("%s%s", lvl, i + 1 < n ? "," : "");
		free(lvl);
		free(sgx);
		free(tdx);
	}
	char *modules = s->modules ? strdup(s->modules) : default_modules();
	char *json = sf_printf("{\"id\":\"%s\",\"version\":%d,\"issueDate\":\"%s\",\"nextUpdate\":"
			       "\"%s\",\"fmspc\":\"%s\",\"pceId\":\"%s\",\"tcbType\":0,"
			       "\"tcbEvaluationDataNumber\":17,%s\"tcbLevels\":[%s]}",
			       s->id ? s->id : "TDX", s->version ? s->version : 3, c->issue,
			       c->next, s->fmspc ? s->fmspc : c->fmspc,
			       s->pce_id ? s->pce_id : "0000", modules, body);
	free(modules);
	free(body);
	sf_set_tcb_info(&c->f, &c->ti, json, c->f.tcb_key);
}

struct qe_spec {
	const char *id;	      /* default "TD_QE" */
	int version;	      /* default 2 */
	const char *mrsigner; /* default the QE's */
	int isvprodid;	      /* 0 = the QE's */
	const char *misc, *misc_mask, *attrs, *attrs_mask;
	const char *levels; /* JSON array; NULL = the QE's ISVSVN UpToDate */
};

static void set_qe(struct ctx *c, const struct qe_spec *s)
{
	const struct sim_platform *p = sim_platform(c->f.s);
	char mrsigner[65], levels[160];
	for (int i = 0; i < 32; i++)
		sprintf(mrsigner + 2 * i, "%02X", p->qe_mr_signer[i]);
	snprintf(levels, sizeof(levels),
		 "[{\"tcb\":{\"isvsvn\":%u},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":"
		 "\"UpToDate\"}]",
		 p->qe_isv_svn);
	char *json = sf_printf(
		"{\"id\":\"%s\",\"version\":%d,\"issueDate\":\"%s\",\"nextUpdate\":\"%s\","
		"\"tcbEvaluationDataNumber\":17,\"miscselect\":\"%s\",\"miscselectMask\":\"%s\","
		"\"attributes\":\"%s\",\"attributesMask\":\"%s\",\"mrsigner\":\"%s\","
		"\"isvprodid\":%d,\"tcbLevels\":%s}",
		s->id ? s->id : "TD_QE", s->version ? s->version : 2, c->issue, c->next,
		s->misc ? s->misc : "00000000", s->misc_mask ? s->misc_mask : "FFFFFFFF",
		s->attrs ? s->attrs : "11000000000000000000000000000000",
		s->attrs_mask ? s->attrs_mask : "FBFFFFFFFFFFFFFF0000000000000000",
		s->mrsigner ? s->mrsigner : mrsigner,
		s->isvprodid ? s->isvprodid : p->qe_isv_prod_id, s->levels ? s->levels : levels);
	sf_set_qe_identity(&c->f, &c->qe, json, c->f.tcb_key);
}

static void test_builders(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	struct tcb_spec t = { 0 };
	struct qe_spec q = { 0 };
	set_tcb(&c, &t);
	set_qe(&c, &q);
	struct dcap_collateral *coll = NULL;
	struct dcap_error err = { 0 };
	assert_int_equal(dcap_collateral_new(&c.f.in, &coll, &err), 0);
	struct dcap_report r =
		dt_expect_ok(c.f.v, c.f.quote, c.f.quote_len, coll, c.f.now, "UpToDate", none);
	assert_string_equal(r.tcb_date, "2024-03-13T00:00:00Z"); /* points into coll */
	dcap_collateral_free(coll);
	teardown(&c);
}

static void test_level_order(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	const char *zeros = "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0";

	/* JSON order: the oldest level first. Matching in JSON order would say OutOfDate. */
	struct lv reversed[] = {
		{ zeros, 0, zeros, "OutOfDate", "[\"SA-OLD\"]" },
		{ NULL, -1, NULL, "UpToDate", NULL },
	};
	struct tcb_spec t = { .levels = reversed, .n_levels = 2 };
	set_tcb(&c, &t);
	sf_expect_ok(&c.f, c.f.now, "UpToDate", none);

	/* every level OutOfDate (upstream's tcb_override test) */
	struct lv outdated[] = {
		{ NULL, -1, NULL, "OutOfDate", "[\"SA-1\",\"SA-2\"]" },
		{ zeros, 0, zeros, "OutOfDate", "[\"SA-3\"]" },
	};
	static const char *const ids12[] = { "SA-1", "SA-2", NULL };
	t = (struct tcb_spec){ .levels = outdated, .n_levels = 2 };
	set_tcb(&c, &t);
	struct dcap_report r = sf_expect_ok(&c.f, c.f.now, "OutOfDate", ids12);
	assert_int_equal(r.platform_status, DCAP_OUT_OF_DATE);
	assert_int_equal(r.qe_status, DCAP_UP_TO_DATE);

	/* a higher PCESVN than the platform's is skipped */
	struct lv pce[] = {
		{ NULL, -1, NULL, "SWHardeningNeeded", "[\"SA-P\"]" },
		{ NULL, 99, NULL, "UpToDate", NULL },
	};
	static const char *const idsp[] = { "SA-P", NULL };
	t = (struct tcb_spec){ .levels = pce, .n_levels = 2 };
	set_tcb(&c, &t);
	sf_expect_ok(&c.f, c.f.now, "SWHardeningNeeded", idsp);

	/* same SGX components and PCESVN: the TDX components break the tie (highest first) */
	struct lv tdx_tie[] = {
		{ NULL, -1, zeros, "UpToDate", NULL },
		{ NULL, -1, NULL, "OutOfDateConfigurationNeeded", "[\"SA-T\"]" },
	};
	static const char *const idst[] = { "SA-T", NULL };
	t = (struct tcb_spec){ .levels = tdx_tie, .n_levels = 2 };
	set_tcb(&c, &t);
	sf_expect_ok(&c.f, c.f.now, "OutOfDateConfigurationNeeded", idst);

	/* a TDX component above the platform's is skipped */
	char high[80];
	const struct sim_platform *p = sim_platform(c.f.s);
	uint8_t svn[16];
	memcpy(svn, p->tee_tcb_svn, 16);
	svn[2]++;
	list(high, svn, 16);
	struct lv tdx_high[] = {
		{ NULL, -1, high, "UpToDate", NULL },
		{ zeros, 0, zeros, "OutOfDate", "[\"SA-Z\"]" },
	};
	static const char *const idsz[] = { "SA-Z", NULL };
	t = (struct tcb_spec){ .levels = tdx_high, .n_levels = 2 };
	set_tcb(&c, &t);
	sf_expect_ok(&c.f, c.f.now, "OutOfDate", idsz);

	/* nothing matches; Revoked */
	const char *all255 = "255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255";
	struct lv unreachable[] = { { all255, 0, NULL, "UpToDate", NULL } };
	t = (struct tcb_spec){ .levels = unreachable, .n_levels = 1 };
	set_tcb(&c, &t);
	sf_expect_fail(&c.f, c.f.now, "ETCB", "No matching TCB level found for CPUSVN");
	struct lv revoked[] = { { NULL, -1, NULL, "Revoked", NULL } };
	t = (struct tcb_spec){ .levels = revoked, .n_levels = 1 };
	set_tcb(&c, &t);
	sf_expect_fail(&c.f, c.f.now, "ETCB",
		       "the TCB status is Revoked (platform Revoked, QE UpToDate)");
	teardown(&c);
}

static void test_component_counts(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	char eight[80], twenty[120];
	snprintf(eight, sizeof(eight), "%.*s", 15, c.plat_sgx); /* "3,3,2,2,4,1,0,5" */
	assert_int_equal(strlen(eight), 15);
	snprintf(twenty, sizeof(twenty), "%s,0,0,0,0", c.plat_sgx);
	struct {
		struct lv level;
		const char *frag;
	} cases[] = {
		{ { eight, -1, NULL, "UpToDate", NULL },
		  "SGX component count mismatch: expected 16, got 8" },
		{ { twenty, -1, NULL, "UpToDate", NULL },
		  "SGX component count mismatch: expected 16, got 20" },
		{ { NULL, -1, "6,1,3,0,0,0,0,0", "UpToDate", NULL },
		  "TDX component count mismatch: expected 16, got 8" },
		{ { NULL, -1, "6,1,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0", "UpToDate", NULL },
		  "TDX component count mismatch: expected 16, got 20" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tcb_spec t = { .levels = &cases[i].level, .n_levels = 1 };
		set_tcb(&c, &t);
		sf_expect_fail(&c.f, c.f.now, "ETCB", cases[i].frag);
	}
	teardown(&c);
}

static void test_tcb_info_identity(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	struct tcb_spec t = { .fmspc = "00A067110000" };
	set_tcb(&c, &t);
	sf_expect_fail(&c.f, c.f.now, "ETCB",
		       "FMSPC mismatch: the PCK certificate has b0c06f000000, the TCB info "
		       "00a067110000");
	t = (struct tcb_spec){ .fmspc = "b0c06f000000" }; /* hex case does not matter */
	set_tcb(&c, &t);
	sf_expect_ok(&c.f, c.f.now, "UpToDate", none);
	t = (struct tcb_spec){ .pce_id = "0100" };
	set_tcb(&c, &t);
	sf_expect_fail(&c.f, c.f.now, "ETCB", "PCE ID mismatch");
	t = (struct tcb_spec){ .id = "SGX" };
	set_tcb(&c, &t);
	sf_expect_fail(&c.f, c.f.now, "ETCB", "TDX quote with a TCB info of id SGX version 3");
	t = (struct tcb_spec){ .version = 2 };
	set_tcb(&c, &t);
	sf_expect_fail(&c.f, c.f.now, "ETCB", "TDX quote with a TCB info of id TDX version 2");
	teardown(&c);
}

static char *module(const char *id, const char *mrsigner, const char *attrs, const char *mask,
		    const char *levels)
{
	return sf_printf("{\"id\":\"%s\",\"mrsigner\":\"%s\",\"attributes\":\"%s\","
			 "\"attributesMask\":\"%s\",\"tcbLevels\":%s}",
			 id, mrsigner, attrs, mask, levels);
}

static void test_module_identity(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	const char *base = "\"tdxModule\":{\"mrsigner\":\"" ZERO96 "\",\"attributes\":"
			   "\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},";
	const char *up = "[{\"tcb\":{\"isvsvn\":6},\"tcbDate\":\"2024-03-13T00:00:00Z\","
			 "\"tcbStatus\":\"UpToDate\"}]";
	const char *signer = "01" ZERO48 "0000000000000000000000000000000000000000000000";
	struct {
		char *modules;
		const char *status, *frag;
		const char *const *ids;
	} cases[8];
	static const char *const idsm[] = { "SA-M", NULL };
	char *m;
	size_t n = 0;

	cases[n++] = (typeof(cases[0])){ strdup(""), NULL, "TDX TCB info has no tdxModule", NULL };
	m = module("TDX_03", ZERO96, "0000000000000000", "FFFFFFFFFFFFFFFF", up);
	cases[n++] = (typeof(cases[0])){ sf_printf("%s\"tdxModuleIdentities\":[%s],", base, m),
					 NULL, "no TDX module identity TDX_01", NULL };
	free(m);
	m = module("TDX_01", signer, "0000000000000000", "FFFFFFFFFFFFFFFF", up);
	cases[n++] = (typeof(cases[0])){ sf_printf("%s\"tdxModuleIdentities\":[%s],", base, m),
					 NULL, "TDX module MRSIGNER mismatch: expected 01", NULL };
	free(m);
	m = module("TDX_01", ZERO96, "0100000000000000", "FFFFFFFFFFFFFFFF", up);
	cases[n++] =
		(typeof(cases[0])){ sf_printf("%s\"tdxModuleIdentities\":[%s],", base, m), NULL,
				    "TDX module SEAMATTRIBUTES mismatch at byte 0", NULL };
	free(m);
	m = module("tdx_01", ZERO96, "0100000000000000", "0000000000000000", up);
	cases[n++] = (typeof(cases[0])){ sf_printf("%s\"tdxModuleIdentities\":[%s],", base, m),
					 "UpToDate", NULL, none };
	free(m);
	m = module("TDX_01", ZERO96, "0000000000000000", "FFFFFFFFFFFFFFFF",
		   "[{\"tcb\":{\"isvsvn\":7},\"tcbDate\":\"2024-03-13T00:00:00Z\",\"tcbStatus\":"
		   "\"UpToDate\"}]");
	cases[n++] =
		(typeof(cases[0])){ sf_printf("%s\"tdxModuleIdentities\":[%s],", base, m), NULL,
				    "TDX module ISVSVN 6 (tee_tcb_svn[0]) is below every TCB "
				    "level of module identity TDX_01",
				    NULL };
	free(m);
	m = module("TDX_01", ZERO96, "0000000000000000", "FFFFFFFFFFFFFFFF",
		   "[{\"tcb\":{\"isvsvn\":5},\"tcbDate\":\"2023-08-09T00:00:00Z\",\"tcbStatus\":"
		   "\"OutOfDate\",\"advisoryIDs\":[\"SA-M\"]},{\"tcb\":{\"isvsvn\":7},\"tcbDate\":"
		   "\"2024-03-13T00:00:00Z\",\"tcbStatus\":\"UpToDate\"}]");
	cases[n++] = (typeof(cases[0])){ sf_printf("%s\"tdxModuleIdentities\":[%s],", base, m),
					 "OutOfDate", NULL, idsm };
	free(m);
	/* without identities the base tdxModule is checked, with no status of its own */
	cases[n++] = (typeof(cases[0])){
		sf_printf("\"tdxModule\":{\"mrsigner\":\"%s\",\"attributes\":\"0000000000000000\","
			  "\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},",
			  signer),
		NULL, "TDX module MRSIGNER mismatch", NULL
	};
	for (size_t i = 0; i < n; i++) {
		struct tcb_spec t = { .modules = cases[i].modules };
		set_tcb(&c, &t);
		if (cases[i].status)
			sf_expect_ok(&c.f, c.f.now, cases[i].status, cases[i].ids);
		else
			sf_expect_fail(&c.f, c.f.now, "ETCB", cases[i].frag);
		free(cases[i].modules);
	}
	struct tcb_spec t = { .modules = base };
	set_tcb(&c, &t);
	sf_expect_ok(&c.f, c.f.now, "UpToDate", none);
	teardown(&c);
}

static void test_qe_identity(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	struct tcb_spec t = { 0 };
	set_tcb(&c, &t);
	struct {
		struct qe_spec spec;
		const char *code, *frag, *status;
		const char *const *ids;
	} cases[] = {
		{ .spec = { .id = "QE" },
		  .code = "EQEID",
		  .frag = "QE identity QE version 2 does not fit a TDX quote" },
		{ .spec = { .version = 4 },
		  .code = "EQEID",
		  .frag = "expected TD_QE version 2 or 3" },
		{ .spec = { .version = 3 }, .status = "UpToDate", .ids = none },
		{ .spec = { .mrsigner = ZERO48 "0000000000000000" },
		  .code = "EQEID",
		  .frag = "QE MRSIGNER mismatch" },
		{ .spec = { .isvprodid = 1 },
		  .code = "EQEID",
		  .frag = "QE ISVPRODID mismatch: expected 1, got 2" },
		{ .spec = { .misc = "01000000" },
		  .code = "EQEID",
		  .frag = "QE MISCSELECT mismatch" },
		{ .spec = { .misc = "01000000", .misc_mask = "00000000" },
		  .status = "UpToDate",
		  .ids = none },
		{ .spec = { .attrs = "10000000000000000000000000000000" },
		  .code = "EQEID",
		  .frag = "QE ATTRIBUTES mismatch at byte 0: expected 10, got 11" },
		{ .spec = { .attrs_mask = "FFFFFFFFFFFFFFFF0000000000000000" },
		  .code = "EQEID",
		  .frag = "QE ATTRIBUTES mismatch at byte 0: expected 11, got 15" },
		{ .spec = { .levels =
				    "[{\"tcb\":{\"isvsvn\":5},\"tcbDate\":\"2024-03-13T00:00:00Z\","
				    "\"tcbStatus\":\"UpToDate\"}]" },
		  .code = "ETCB",
		  .frag = "QE ISVSVN 4 is below the minimum 5 of the QE identity" },
		{ .spec = { .levels = "[]" },
		  .code = "ETCB",
		  .frag = "the QE identity has no TCB levels" },
		{ .spec = { .levels =
				    "[{\"tcb\":{\"isvsvn\":4},\"tcbDate\":\"2024-03-13T00:00:00Z\","
				    "\"tcbStatus\":\"Revoked\"}]" },
		  .code = "ETCB",
		  .frag = "the TCB status is Revoked (platform UpToDate, QE Revoked)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		set_qe(&c, &cases[i].spec);
		if (cases[i].code)
			sf_expect_fail(&c.f, c.f.now, cases[i].code, cases[i].frag);
		else
			sf_expect_ok(&c.f, c.f.now, cases[i].status, cases[i].ids);
	}
	/* unsorted levels: the QE's ISVSVN 4 matches the level of 3, not the first in JSON */
	static const char *const idsq[] = { "SA-Q", NULL };
	struct qe_spec q = {
		.levels = "[{\"tcb\":{\"isvsvn\":2},\"tcbDate\":\"2020-01-01T00:00:00Z\","
			  "\"tcbStatus\":\"OutOfDate\",\"advisoryIDs\":[\"SA-2\"]},"
			  "{\"tcb\":{\"isvsvn\":5},\"tcbDate\":\"2024-03-13T00:00:00Z\","
			  "\"tcbStatus\":\"UpToDate\"},"
			  "{\"tcb\":{\"isvsvn\":3},\"tcbDate\":\"2022-01-01T00:00:00Z\","
			  "\"tcbStatus\":\"OutOfDate\",\"advisoryIDs\":[\"SA-Q\"]}]"
	};
	set_qe(&c, &q);
	struct dcap_report r = sf_expect_ok(&c.f, c.f.now, "OutOfDate", idsq);
	assert_int_equal(r.qe_status, DCAP_OUT_OF_DATE);
	assert_int_equal(r.platform_status, DCAP_UP_TO_DATE);
	teardown(&c);
}

/* The QE in debug mode: the QE report re-signed by the PCK key with ATTRIBUTES.DEBUG set. */
static void test_qe_debug(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	struct tdx_quote p;
	struct tdx_error terr;
	assert_int_equal(tdx_quote_parse(c.f.quote, c.f.quote_len, &p, &terr), 0);
	uint8_t *qe = c.f.quote + (p.qe_report.raw - c.f.quote);
	uint8_t *sig = c.f.quote + (p.qe_report_signature - c.f.quote);
	qe[48] |= 0x02;
	sf_sign(c.f.pck_key, qe, 384, sig);
	sf_expect_fail(&c.f, c.f.now, "EQEID", "the QE runs in debug mode");
	qe[48] &= (uint8_t)~0x02;
	sf_expect_fail(&c.f, c.f.now, "ESIG", "the QE report signature does not verify");
	sf_sign(c.f.pck_key, qe, 384, sig);
	sf_expect_ok(&c.f, c.f.now, "UpToDate", none);
	teardown(&c);
}

/* Platform, then TDX module, then QE: the worst status, advisory IDs in that order, once. */
static void test_merge(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	struct lv level[] = { { NULL, -1, NULL, "OutOfDate", "[\"A\",\"B\"]" } };
	char *m = module("TDX_01", ZERO96, "0000000000000000", "FFFFFFFFFFFFFFFF",
			 "[{\"tcb\":{\"isvsvn\":1},\"tcbDate\":\"2024-03-13T00:00:00Z\","
			 "\"tcbStatus\":\"SWHardeningNeeded\",\"advisoryIDs\":[\"B\",\"C\"]}]");
	char *modules = sf_printf("\"tdxModule\":{\"mrsigner\":\"%s\",\"attributes\":"
				  "\"0000000000000000\",\"attributesMask\":\"FFFFFFFFFFFFFFFF\"},"
				  "\"tdxModuleIdentities\":[%s],",
				  ZERO96, m);
	struct tcb_spec t = { .modules = modules, .levels = level, .n_levels = 1 };
	set_tcb(&c, &t);
	struct qe_spec q = {
		.levels = "[{\"tcb\":{\"isvsvn\":4},\"tcbDate\":\"2024-03-13T00:00:00Z\","
			  "\"tcbStatus\":\"ConfigurationNeeded\",\"advisoryIDs\":[\"D\","
			  "\"A\"]}]"
	};
	set_qe(&c, &q);
	static const char *const ids[] = { "A", "B", "C", "D", NULL };
	struct dcap_report r = sf_expect_ok(&c.f, c.f.now, "OutOfDate", ids);
	assert_int_equal(r.platform_status, DCAP_OUT_OF_DATE);
	assert_int_equal(r.qe_status, DCAP_CONFIGURATION_NEEDED);
	/* a worse QE status wins */
	struct lv sw[] = { { NULL, -1, NULL, "SWHardeningNeeded", "[\"A\"]" } };
	t = (struct tcb_spec){ .modules = modules, .levels = sw, .n_levels = 1 };
	set_tcb(&c, &t);
	static const char *const ids2[] = { "A", "B", "C", "D", NULL };
	r = sf_expect_ok(&c.f, c.f.now, "ConfigurationNeeded", ids2);
	assert_int_equal(r.platform_status, DCAP_SW_HARDENING_NEEDED);
	free(modules);
	free(m);
	teardown(&c);
}

/* Signed but malformed documents are ECOLLATERAL when the collateral is parsed. */
static void test_malformed(void **state)
{
	(void)state;
	struct ctx c;
	setup(&c);
	const char *orig = c.f.sc.tcb_info;
	struct {
		const char *from, *to, *frag;
	} cases[] = {
		{ "\"tcbLevels\":[", "\"tcbLevelz\":[", "TCB info: tcbLevels is missing" },
		{ "{\"svn\":3}", "{\"svn\":256}",
		  "tcbLevels[0].tcb.sgxtcbcomponents[0].svn must be an integer in 0..255" },
		{ "{\"svn\":3}", "{\"svn\":3.5}", "must be an integer" },
		{ "\"tcbStatus\":\"UpToDate\"}]}", "\"tcbStatus\":\"Fine\"}]}",
		  "tcbStatus is not a known TCB status" },
		{ "\"fmspc\":\"B0C06F000000\"", "\"fmspc\":\"B0C06F0000\"",
		  "fmspc must be 6 bytes of hex" },
		{ "\"pcesvn\":11", "\"pcesvn\":\"11\"", "pcesvn must be a number" },
		{ "\"version\":3", "\"version\":3,\"version\":3", "duplicate key" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_non_null(strstr(orig, cases[i].from));
		sf_set_tcb_info(&c.f, &c.ti, sf_replace(orig, cases[i].from, cases[i].to),
				c.f.tcb_key);
		struct dcap_collateral *coll = NULL;
		struct dcap_error err = { 0 };
		assert_int_equal(dcap_collateral_new(&c.f.in, &coll, &err), -1);
		assert_string_equal(err.code, "ECOLLATERAL");
		if (!strstr(err.msg, cases[i].frag))
			fail_msg("expected \"%s\", got %s", cases[i].frag, err.msg);
	}
	teardown(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builders),	 cmocka_unit_test(test_level_order),
		cmocka_unit_test(test_component_counts), cmocka_unit_test(test_tcb_info_identity),
		cmocka_unit_test(test_module_identity),	 cmocka_unit_test(test_qe_identity),
		cmocka_unit_test(test_qe_debug),	 cmocka_unit_test(test_merge),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
