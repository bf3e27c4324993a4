/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Event logs (native/tdx/tdx_eventlog.h): ccel.bin parses to exactly the upstream snapshots (TCG
 * events and the TdxEvent conversion); its replay gives RTMR0 of quote-from-tappd.hex; the
 * simulator attestation's 33 events replay to its quote's RTMRs (also stripped, and up to
 * boot-mr-done); V1/V2 runtime digests and canonical JSON match the spec vectors; a GCP vTPM
 * log (3 banks) parses; every truncation and corrupted field of the CCEL fails cleanly.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tdx/tdx.h"
#include "tdx_test_util.h"

#define CCEL	 "dstack/cc-eventlog/ccel.bin"
#define CCEL_END 1933 /* the log's data ends here; 0xFF after */

static const char *zero_mr =
	"000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	"000000";

/* A Lua state with the snapshot's value as `doc`: the TCG dump (Rust Debug text) becomes a
 * list of { imr_index, event_type, digests = {...}, event }, the TdxEvent one plain JSON. */
static lua_State *snapshot(const char *rel, bool tcg)
{
	lua_State *L = json_vector("derived/quotes-parsed.json"); /* any JSON: sets up cjson */
	size_t n;
	uint8_t *text = read_vector(rel, &n);
	const char *src =
		tcg ? "local text = ... doc = {} "
		      "for block in text:gmatch('TcgEventLog {(.-)\\n    },') do "
		      "  local e = { imr_index = tonumber(block:match('imr_index: (%d+)')), "
		      "    event_type = tonumber(block:match('event_type: (%d+)')), digests = {}, "
		      "    event = block:match('event: \"(%x*)\"') } "
		      "  local list = block:match('digests: %[(.-)%]') "
		      "  for d in list:gmatch('\"(%x+)\"') do e.digests[#e.digests + 1] = d end "
		      "  doc[#doc + 1] = e "
		      "end"
		    : "local text = ... doc = "
		      "require('cjson').decode(text:match('\\n%-%-%-\\n(.*)$'))";
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_cjson);
	lua_setfield(L, -2, "cjson");
	lua_pop(L, 2);
	if (luaL_loadstring(L, src))
		fail_msg("%s", lua_tostring(L, -1));
	lua_pushlstring(L, (const char *)text, n);
	if (lua_pcall(L, 1, 0, 0))
		fail_msg("%s: %s", rel, lua_tostring(L, -1));
	free(text);
	return L;
}

static void parse_ccel(uint8_t **data, size_t *len, struct tdx_tcg_log *log)
{
	struct tdx_error err = { 0 };

	*data = read_vector(CCEL, len);
	assert_int_equal(*len, 65536);
	if (tdx_tcg_parse(*data, *len, log, &err))
		fail_msg("ccel.bin: %s", err.msg);
}

static void test_ccel_matches_tcg_snapshot(void **state)
{
	uint8_t *data;
	size_t len;
	struct tdx_tcg_log log;
	char expr[128], want[64];

	parse_ccel(&data, &len, &log);
	/* the Spec ID header: one algorithm, SHA-384 */
	assert_int_equal(log.header_mr_index, 1);
	assert_int_equal(log.header_event_type, TDX_EV_NO_ACTION);
	assert_int_equal(log.spec_version_major, 2);
	assert_int_equal(log.uintn_size, 2);
	assert_int_equal(log.num_algs, 1);
	assert_int_equal(log.algs[0].id, TDX_TPM_ALG_SHA384);
	assert_int_equal(log.algs[0].digest_size, 48);
	assert_int_equal(log.vendor_info_size, 0);
	assert_int_equal(log.end, CCEL_END);

	lua_State *L = snapshot("dstack/cc-eventlog/ccel.expected-tcg-events.snap", true);
	assert_int_equal(log.count, 18);
	assert_int_equal(atoi(lua_eval(L, "#doc")), (int)log.count);
	for (size_t i = 0; i < log.count; i++) {
		const struct tdx_tcg_event *e = &log.events[i];
		snprintf(expr, sizeof(expr), "doc[%zu].imr_index", i + 1);
		snprintf(want, sizeof(want), "%u", e->mr_index);
		assert_string_equal(lua_eval(L, expr), want);
		snprintf(expr, sizeof(expr), "doc[%zu].event_type", i + 1);
		snprintf(want, sizeof(want), "%u", e->event_type);
		assert_string_equal(lua_eval(L, expr), want);
		snprintf(expr, sizeof(expr), "#doc[%zu].digests", i + 1);
		assert_int_equal(atoi(lua_eval(L, expr)), e->digest_count);
		assert_int_equal(e->digest_count, 1);
		assert_int_equal(e->digests[0].alg, TDX_TPM_ALG_SHA384);
		snprintf(expr, sizeof(expr), "doc[%zu].digests[1]", i + 1);
		assert_string_equal(lua_eval(L, expr), hexs(e->digests[0].value, 48));
		snprintf(expr, sizeof(expr), "doc[%zu].event", i + 1);
		assert_string_equal(lua_eval(L, expr), hexs(e->data, e->data_len));
	}
	lua_close(L);
	tdx_tcg_log_free(&log);
	free(data);
}

static void test_ccel_matches_tdx_snapshot(void **state)
{
	uint8_t *data;
	size_t len, n;
	struct tdx_tcg_log log;
	struct tdx_event *ev;
	char expr[128], want[64];

	parse_ccel(&data, &len, &log);
	assert_int_equal(tdx_ccel_to_events(&log, &ev, &n, NULL), 0);
	lua_State *L = snapshot("dstack/cc-eventlog/ccel.expected-tdx-eventlog.snap", false);
	assert_int_equal(n, 18);
	assert_int_equal(atoi(lua_eval(L, "#doc")), (int)n);
	for (size_t i = 0; i < n; i++) {
		snprintf(expr, sizeof(expr), "doc[%zu].imr", i + 1);
		snprintf(want, sizeof(want), "%u", ev[i].imr);
		assert_string_equal(lua_eval(L, expr), want);
		snprintf(expr, sizeof(expr), "doc[%zu].event_type", i + 1);
		snprintf(want, sizeof(want), "%u", ev[i].event_type);
		assert_string_equal(lua_eval(L, expr), want);
		snprintf(expr, sizeof(expr), "doc[%zu].digest", i + 1);
		assert_string_equal(lua_eval(L, expr), hexs(ev[i].digest, ev[i].digest_len));
		snprintf(expr, sizeof(expr), "doc[%zu].event", i + 1);
		assert_string_equal(lua_eval(L, expr), "");
		assert_int_equal(ev[i].name_len, 0);
		snprintf(expr, sizeof(expr), "doc[%zu].event_payload", i + 1);
		assert_string_equal(lua_eval(L, expr), hexs(ev[i].payload, ev[i].payload_len));
		/* the payload points into the CCEL buffer (no copies) */
		assert_true(ev[i].payload >= data && ev[i].payload < data + CCEL_END);
	}
	lua_close(L);
	free(ev);
	tdx_tcg_log_free(&log);
	free(data);
}

static void test_ccel_replay_gives_the_quote_rtmr0(void **state)
{
	uint8_t *data, *quote;
	size_t len, n, qlen;
	struct tdx_tcg_log log;
	struct tdx_event *ev;
	struct tdx_quote q;
	uint8_t rtmr[4][48];

	parse_ccel(&data, &len, &log);
	assert_int_equal(tdx_ccel_to_events(&log, &ev, &n, NULL), 0);
	assert_int_equal(tdx_replay(ev, n, NULL, rtmr, NULL), 0);
	quote = read_quote_vector("dcap-qvl/quote-from-tappd.hex", &qlen);
	assert_int_equal(tdx_quote_parse(quote, qlen, &q, NULL), 0);
	assert_memory_equal(rtmr[0], q.td.rtmr[0], 48);
	assert_string_equal(hexs(rtmr[0], 48),
			    "274c2344116db7c663470693b5ba62b8621eac28cb41d2f816ddf188f9f423f900a1c"
			    "44d32386fd3c993dc814e62af9d");
	assert_string_equal(hexs(rtmr[1], 48),
			    "bdcf4ee0f7fdfe7c73fbb19ded73193aee23a6726b86d3b282ea097cf4c9ed7a0db21"
			    "b5c1ccd513e410d90e310836b26");
	assert_string_equal(hexs(rtmr[2], 48), zero_mr);
	assert_string_equal(hexs(rtmr[3], 48), zero_mr);
	/* the CCEL does not cover the quote's later RTMR1 events */
	assert_memory_not_equal(rtmr[1], q.td.rtmr[1], 48);
	free(quote);
	free(ev);
	tdx_tcg_log_free(&log);
	free(data);
}

static void test_acpi_labels(void **state)
{
	uint8_t *data;
	size_t len, n;
	struct tdx_tcg_log log;
	struct tdx_event *ev;
	const char *names[] = { "acpi-loader", "acpi-rsdp", "acpi-tables" };
	int seen = 0;

	parse_ccel(&data, &len, &log);
	assert_int_equal(tdx_ccel_to_events(&log, &ev, &n, NULL), 0);
	tdx_events_label_acpi(ev, n);
	for (size_t i = 0; i < n; i++) {
		if (ev[i].event_type == TDX_EV_PLATFORM_CONFIG_FLAGS && ev[i].imr == 0) {
			assert_true(seen < 3);
			assert_string_equal(ev[i].name, names[seen]);
			assert_int_equal(ev[i].name_len, strlen(names[seen]));
			assert_memory_equal(ev[i].payload, "ACPI DATA", 9);
			seen++;
		} else {
			assert_int_equal(ev[i].name_len, 0);
		}
	}
	assert_int_equal(seen, 3);
	/* a fourth ACPI DATA event, or one with another payload, stays unnamed */
	struct tdx_event extra[5];
	for (int i = 0; i < 5; i++)
		extra[i] = (struct tdx_event){ .imr = 0,
					       .event_type = 10,
					       .name = "",
					       .payload = (const uint8_t *)"ACPI DATA",
					       .payload_len = 9 };
	extra[1].payload_len = 8;
	tdx_events_label_acpi(extra, 5);
	assert_string_equal(extra[0].name, "acpi-loader");
	assert_string_equal(extra[1].name, "");
	assert_string_equal(extra[3].name, "acpi-tables");
	assert_string_equal(extra[4].name, "");
	free(ev);
	tdx_tcg_log_free(&log);
	free(data);
}

static void digest_is(int version, const char *name, const void *payload, size_t plen,
		      const char *want)
{
	uint8_t d[48];
	struct tdx_error err = { 0 };

	if (tdx_runtime_digest(version, name, strlen(name), payload, plen, d, &err))
		fail_msg("%s: %s", name, err.msg);
	assert_string_equal(hexs(d, 48), want);
}

static void preimage_is(int version, const char *name, size_t nlen, const void *payload,
			size_t plen, const char *want, size_t want_len)
{
	uint8_t *pre;
	size_t len;

	assert_int_equal(tdx_runtime_preimage(version, name, nlen, payload, plen, &pre, &len, NULL),
			 0);
	assert_int_equal(len, want_len);
	assert_memory_equal(pre, want, want_len);
	free(pre);
}

static void test_runtime_v1_vectors(void **state)
{
	/* spec §10 item 12 (fixture digests) and kms-vmm-gateway §9 item 6 */
	digest_is(1, "system-preparing", "", 0,
		  "f9974020ef507068183313d0ca808e0d1ca9b2d1ad0c61f5784e7157c362c06536f5ddacdad4451"
		  "693f48fcc72fff624");
	digest_is(1, "boot-mr-done", "", 0,
		  "98bd7e6bd3952720b65027fd494834045d06b4a714bf737a06b874638b3ea00ff402f7f583e3e3b"
		  "05e921c8570433ac6");
	digest_is(1, "system-ready", "", 0,
		  "1a76b2a80a0be71eae59f80945d876351a7a3fb8e9fd1ff1cede5734aa84ea11fd72b4edfbb6f04"
		  "e5a85edd114c751bd");
	digest_is(1, "app-id", "\xde\xad\xbe\xef", 4,
		  "67b4be4efed0893cfa2bb1d35dca209ad8348b4c97f980807bcde8b9a0f26398dd0923d6eccb5aa"
		  "2096d98046da8740f");
	/* the V1 preimage: u32le(0x08000001) ":" name ":" payload */
	preimage_is(1, "app-id", 6, "\x01\x02", 2, "\x01\x00\x00\x08:app-id:\x01\x02", 14);
	/* names are bytes in V1: invalid UTF-8 is fine */
	preimage_is(1, "\xff", 1, "", 0, "\x01\x00\x00\x08:\xff:", 7);
}

static void test_runtime_v2_canonical_json(void **state)
{
	const char *j;
	struct tdx_error err = { 0 };
	uint8_t *pre, d[48];
	size_t len;

	j = "{\"name\":\"compose-hash\",\"payload\":\"abcd\",\"type\":134217729}";
	preimage_is(2, "compose-hash", 12, "\xab\xcd", 2, j, strlen(j));
	digest_is(2, "compose-hash", "\xab\xcd", 2,
		  "9dde1673f544faa94b921825209593ddde08d0baf9cd6990175dffaf3081f1bb10311d56de18949"
		  "1feb33842a050ad7b");
	j = "{\"name\":\"\",\"payload\":\"\",\"type\":134217729}";
	preimage_is(2, "", 0, "", 0, j, strlen(j));
	/* control characters: short escapes, \u00xx for the rest */
	j = "{\"name\":\"\\b\\f\\n\\r\\t\\u0001\\u001f\",\"payload\":\"\",\"type\":134217729}";
	preimage_is(2, "\b\f\n\r\t\x01\x1f", 7, "", 0, j, strlen(j));
	/* quote and backslash (kms-vmm-gateway §9 item 6) */
	j = "{\"name\":\"event\\\"with\\\\special\\nchars\",\"payload\":\"ff\",\"type\":134217729}";
	preimage_is(2, "event\"with\\special\nchars", 24, "\xff", 1, j, strlen(j));
	/* non-ASCII stays raw UTF-8; DEL and '/' are not escaped; payload hex is lowercase */
	j = "{\"name\":\"caf\xc3\xa9/"
	    "\x7f\xf0\x9f\x94\x92\",\"payload\":\"abcdef\",\"type\":134217729}";
	preimage_is(2, "caf\xc3\xa9/\x7f\xf0\x9f\x94\x92", 11, "\xab\xcd\xef", 3, j, strlen(j));
	/* V1 and V2 differ */
	uint8_t d1[48];
	assert_int_equal(tdx_runtime_digest(1, "test", 4, (const uint8_t *)"\1\2\3", 3, d1, NULL),
			 0);
	assert_int_equal(tdx_runtime_digest(2, "test", 4, (const uint8_t *)"\1\2\3", 3, d, NULL),
			 0);
	assert_memory_not_equal(d1, d, 48);
	/* invalid UTF-8 names, and bad versions, are rejected */
	const char *bad[] = { "\xff",	     "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
			      "\xe0\x80\xaf" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
			tdx_runtime_preimage(2, bad[i], strlen(bad[i]), NULL, 0, &pre, &len, &err),
			-EINVAL);
		assert_string_equal(err.code, "EINVAL");
		assert_null(pre);
	}
	assert_int_equal(tdx_runtime_preimage(3, "x", 1, NULL, 0, &pre, &len, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "version"));
}

/* The simulator fixture's events, decoded from JSON; strings stay alive in the Lua state. */
struct fixture_events {
	lua_State *L;
	struct tdx_event ev[64];
	uint8_t *owned[128];
	size_t n, nowned;
};

static const uint8_t *keep(struct fixture_events *f, const char *hex, size_t *len)
{
	uint8_t *b = unhex(hex, strlen(hex), len);
	f->owned[f->nowned++] = b;
	return b;
}

static void load_simulator_events(struct fixture_events *f)
{
	char expr[128];

	memset(f, 0, sizeof(*f));
	f->L = json_vector("derived/simulator-attestation.decoded.json");
	f->n = (size_t)atoi(lua_eval(f->L, "#doc.event_log"));
	assert_int_equal(f->n, 33);
	for (size_t i = 0; i < f->n; i++) {
		struct tdx_event *e = &f->ev[i];
		size_t dl;
		snprintf(expr, sizeof(expr), "doc.event_log[%zu].imr", i + 1);
		e->imr = (uint32_t)atoi(lua_eval(f->L, expr));
		snprintf(expr, sizeof(expr), "doc.event_log[%zu].event_type", i + 1);
		e->event_type = (uint32_t)strtoul(lua_eval(f->L, expr), NULL, 10);
		snprintf(expr, sizeof(expr), "doc.event_log[%zu].digest", i + 1);
		const uint8_t *d = keep(f, lua_eval(f->L, expr), &dl);
		assert_int_equal(dl, 48);
		memcpy(e->digest, d, 48);
		e->digest_len = 48;
		snprintf(expr, sizeof(expr), "doc.event_log[%zu].event", i + 1);
		uint8_t *name = (uint8_t *)strdup(lua_eval(f->L, expr));
		f->owned[f->nowned++] = name;
		e->name = (const char *)name;
		e->name_len = strlen(e->name);
		snprintf(expr, sizeof(expr), "doc.event_log[%zu].event_payload", i + 1);
		e->payload = keep(f, lua_eval(f->L, expr), &e->payload_len);
		e->version = 1;
	}
}

static void free_events(struct fixture_events *f)
{
	for (size_t i = 0; i < f->nowned; i++)
		free(f->owned[i]);
	lua_close(f->L);
}

static void test_simulator_attestation_replay(void **state)
{
	struct fixture_events f;
	uint8_t rtmr[4][48], only[4][48], d[48];
	char expr[128];
	struct tdx_event runtime[16];
	size_t nrt = 0;

	load_simulator_events(&f);
	assert_int_equal(tdx_replay(f.ev, f.n, NULL, rtmr, NULL), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(expr, sizeof(expr), "doc.quote_report.rtmr%d", i);
		assert_string_equal(hexs(rtmr[i], 48), lua_eval(f.L, expr));
		snprintf(expr, sizeof(expr), "doc.replayed_rtmrs_from_digests[%d]", i + 1);
		assert_string_equal(hexs(rtmr[i], 48), lua_eval(f.L, expr));
	}
	/* every runtime event's fixture digest is its V1 digest; stripped copies replay alike */
	for (size_t i = 0; i < f.n; i++) {
		if (f.ev[i].event_type != TDX_RUNTIME_EVENT_TYPE)
			continue;
		assert_int_equal(f.ev[i].imr, 3);
		assert_int_equal(tdx_event_digest(&f.ev[i], d, NULL), 0);
		assert_memory_equal(d, f.ev[i].digest, 48);
		runtime[nrt] = f.ev[i];
		runtime[nrt].digest_len = 0; /* as GetQuote strips them */
		nrt++;
	}
	assert_int_equal(nrt, 9);
	assert_int_equal(tdx_replay(runtime, nrt, NULL, only, NULL), 0);
	assert_memory_equal(only[3], rtmr[3], 48);
	assert_string_equal(hexs(only[0], 48), zero_mr);
	/* the boot-time value: up to and including boot-mr-done */
	assert_int_equal(tdx_replay(f.ev, f.n, "boot-mr-done", only, NULL), 0);
	assert_string_equal(hexs(only[3], 48),
			    "161d4d87fecefcad09ed96ba8f901e58eca0f422b8155e2829ef94ce084a757e88c7f"
			    "4be29df017ed72531e8efb643b7");
	assert_memory_equal(only[0], rtmr[0], 48);
	/* a stripped runtime event with a wrong name changes RTMR3 (the digest is recomputed,
	 * not trusted) */
	runtime[1].name = "app-iD";
	assert_int_equal(tdx_replay(runtime, nrt, NULL, only, NULL), 0);
	assert_memory_not_equal(only[3], rtmr[3], 48);
	free_events(&f);
}

static void test_replay_errors(void **state)
{
	struct tdx_event ev[2] = {
		{ .imr = 0, .event_type = 1, .digest_len = 48, .name = "" },
		{ .imr = 4, .event_type = 1, .digest_len = 48, .name = "" },
	};
	uint8_t rtmr[4][48];
	struct tdx_error err = { 0 };

	assert_int_equal(tdx_replay(ev, 2, NULL, rtmr, &err), -EBADMSG);
	assert_string_equal(err.code, "EEVENTLOG");
	assert_non_null(strstr(err.msg, "event 1: imr 4"));
	ev[1].imr = 2;
	ev[1].digest_len = 0; /* a boot event without digest */
	assert_int_equal(tdx_replay(ev, 2, NULL, rtmr, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "event 1:"));
	assert_non_null(strstr(err.msg, "digest"));
	ev[1] = (struct tdx_event){ .imr = 3,
				    .event_type = TDX_RUNTIME_EVENT_TYPE,
				    .name = "\xff",
				    .name_len = 1,
				    .version = 2 };
	assert_int_equal(tdx_replay(ev, 2, NULL, rtmr, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "UTF-8"));
	ev[1].version = 1; /* V1 takes any bytes */
	assert_int_equal(tdx_replay(ev, 2, NULL, rtmr, &err), 0);
	/* extend: SHA-384(zeros || digest) */
	uint8_t mr[48] = { 0 }, dg[48] = { 0 }, buf[96] = { 0 }, want[48];
	tdx_sha384(buf, 96, want);
	tdx_rtmr_extend(mr, dg);
	assert_memory_equal(mr, want, 48);
}

/* Every prefix of the CCEL's data parses only at an event boundary; corruption is reported. */
static void test_ccel_truncations(void **state)
{
	uint8_t *data;
	size_t len;
	struct tdx_tcg_log log, part;
	struct tdx_error err;

	parse_ccel(&data, &len, &log);
	for (size_t n = 0; n < CCEL_END; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		memcpy(copy, data, n);
		memset(&err, 0, sizeof(err));
		int rc = tdx_tcg_parse(copy, n, &part, &err);
		bool boundary = false;
		size_t before = 0;
		for (size_t k = 0; k < log.count; k++) {
			if (log.events[k].offset == n)
				boundary = true, before = k;
		}
		if (boundary) {
			if (rc)
				fail_msg("prefix %zu (an event boundary) failed: %s", n, err.msg);
			assert_int_equal(part.count, before);
			tdx_tcg_log_free(&part);
		} else {
			if (rc != -EBADMSG)
				fail_msg("prefix %zu parsed", n);
			assert_string_equal(err.code, "EEVENTLOG");
			assert_true(err.offset <= n);
			assert_non_null(strstr(err.msg, "truncated"));
		}
		free(copy);
	}
	tdx_tcg_log_free(&log);
	free(data);
}

static void ccel_corrupt(size_t off, int width, uint32_t v, const char *needle)
{
	size_t len;
	uint8_t *d = read_vector(CCEL, &len);
	struct tdx_tcg_log log;
	struct tdx_error err = { 0 };

	for (int i = 0; i < width; i++)
		d[off + (size_t)i] = (uint8_t)(v >> (8 * i));
	if (tdx_tcg_parse(d, len, &log, &err) != -EBADMSG)
		fail_msg("value %u at offset %zu was accepted (%s)", v, off, needle);
	assert_string_equal(err.code, "EEVENTLOG");
	if (!strstr(err.msg, needle))
		fail_msg("'%s' lacks '%s'", err.msg, needle);
	assert_null(log.events);
	free(d);
}

static void test_ccel_corruption(void **state)
{
	/* header: Spec ID signature, algorithm count, digest size, event size */
	ccel_corrupt(0x20, 1, 'X', "Spec ID Event03");
	ccel_corrupt(0x38, 4, 0, "numberOfAlgorithms");
	ccel_corrupt(0x38, 4, 9, "numberOfAlgorithms");
	ccel_corrupt(0x3e, 2, 32, "digest size");
	ccel_corrupt(0x1c, 4, 8, "eventSize");
	/* first event (at 0x41): digest count, algorithm, event size */
	ccel_corrupt(0x49, 4, 9, "digestCount 9");
	ccel_corrupt(0x4d, 2, 0x0099, "unknown digest algorithm 0x0099");
	ccel_corrupt(0x7f, 4, 70000, "eventSize 70000 exceeds");
	ccel_corrupt(0x7f, 4, 65536 * 2 - 1, "exceeds");
	/* an event size that runs past the input */
	ccel_corrupt(0x7f, 4, 65530, "truncated: event data");

	/* a non-RTMR MR index, and a SHA-256 digest, cannot be TdxEvents */
	size_t len, n;
	uint8_t *d = read_vector(CCEL, &len);
	struct tdx_tcg_log log;
	struct tdx_event *ev;
	struct tdx_error err = { 0 };
	d[0x41] = 5;
	assert_int_equal(tdx_tcg_parse(d, len, &log, NULL), 0);
	assert_int_equal(tdx_ccel_to_events(&log, &ev, &n, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "MR index 5"));
	assert_null(ev);
	tdx_tcg_log_free(&log);
	d[0x41] = 0; /* MRTD records are dropped */
	assert_int_equal(tdx_tcg_parse(d, len, &log, NULL), 0);
	assert_int_equal(tdx_ccel_to_events(&log, &ev, &n, &err), 0);
	assert_int_equal(n, 17);
	free(ev);
	tdx_tcg_log_free(&log);
	free(d);
}

static void test_tpm_eventlog(void **state)
{
	static const char *pcr2[] = {
		"df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119",
		"00b8a357e652623798d1bbd16c375ec90fbed802b4269affa3e78e6eb19386cf",
		"9ab14a46f858662a89adc102d2a57a13f52f75c1769d65a4c34edbbfc8855f0f",
		"ade943a0a7a3189a3201ba17d7df778eb380cbd33ce5e361176e974ccf7cdedb",
	};
	size_t len, n;
	uint8_t *d = read_vector("dstack/cc-eventlog/tpm_eventlog.bin", &len);
	struct tdx_tcg_log log;
	struct tdx_event *ev;
	struct tdx_error err = { 0 };
	int npcr2 = 0, npcr0 = 0, n99 = 0;

	if (tdx_tcg_parse(d, len, &log, &err))
		fail_msg("tpm_eventlog.bin: %s", err.msg);
	assert_int_equal(log.platform_class, 0);
	assert_int_equal(log.num_algs, 3);
	assert_int_equal(log.end, len);
	for (size_t i = 0; i < log.count; i++) {
		const struct tdx_tcg_event *e = &log.events[i];
		assert_int_equal(e->digest_count, 3);
		npcr0 += e->mr_index == 0;
		n99 += e->mr_index == 99;
		if (e->mr_index != 2)
			continue;
		for (uint32_t k = 0; k < e->digest_count; k++) {
			if (e->digests[k].alg != TDX_TPM_ALG_SHA256)
				continue;
			assert_true(npcr2 < 4);
			assert_string_equal(hexs(e->digests[k].value, 32), pcr2[npcr2]);
		}
		npcr2++;
	}
	assert_int_equal(npcr2, 4);
	assert_true(npcr0 >= 1);
	assert_int_equal(n99, 0);
	/* not a TDX log: several digests per event */
	assert_int_equal(tdx_ccel_to_events(&log, &ev, &n, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "exactly one SHA-384"));
	tdx_tcg_log_free(&log);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ccel_matches_tcg_snapshot),
		cmocka_unit_test(test_ccel_matches_tdx_snapshot),
		cmocka_unit_test(test_ccel_replay_gives_the_quote_rtmr0),
		cmocka_unit_test(test_acpi_labels),
		cmocka_unit_test(test_runtime_v1_vectors),
		cmocka_unit_test(test_runtime_v2_canonical_json),
		cmocka_unit_test(test_simulator_attestation_replay),
		cmocka_unit_test(test_replay_errors),
		cmocka_unit_test(test_ccel_truncations),
		cmocka_unit_test(test_ccel_corruption),
		cmocka_unit_test(test_tpm_eventlog),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
