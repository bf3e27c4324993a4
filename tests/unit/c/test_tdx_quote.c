/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Quote parsing (native/tdx/tdx_quote.h): every real quote in the vectors parses and every field
 * equals vectors/derived/quotes-parsed.json (an independent parser's dump); every truncation
 * point fails cleanly (exact-size heap copies, so ASan sees any over-read); corrupted length,
 * version and type fields fail naming the field; trailing bytes are tolerated; the PEM chain
 * and the QE report binding are checked.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tdx/tdx.h"
#include "tdx_test_util.h"

#define NQUOTES 7

static lua_State *doc;

static int group_setup(void **state)
{
	doc = json_vector("derived/quotes-parsed.json");
	return 0;
}

static int group_teardown(void **state)
{
	lua_close(doc);
	return 0;
}

/* Parse a copy of exactly @len bytes (so reads past the end are ASan errors). */
static int parse_copy(const uint8_t *data, size_t len, struct tdx_error *err)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct tdx_quote q;

	assert_non_null(copy);
	memcpy(copy, data, len);
	int rc = tdx_quote_parse(copy, len, &q, err);
	free(copy);
	return rc;
}

static void num(char *out, long v)
{
	snprintf(out, 64, "%ld", v);
}

struct bfield {
	const char *name;
	size_t off; /* offsetof in the report struct */
	size_t len;
};

#define TD(n, l)                                         \
	{                                                \
#n, offsetof(struct tdx_td_report, n), l \
	}
#define EN(n, l)                                              \
	{                                                     \
#n, offsetof(struct tdx_enclave_report, n), l \
	}

static const struct bfield td_fields[] = {
	TD(tee_tcb_svn, 16),
	TD(mr_seam, 48),
	TD(mr_signer_seam, 48),
	TD(seam_attributes, 8),
	TD(td_attributes, 8),
	TD(xfam, 8),
	TD(mr_td, 48),
	TD(mr_config_id, 48),
	TD(mr_owner, 48),
	TD(mr_owner_config, 48),
	{ "rtmr0", offsetof(struct tdx_td_report, rtmr[0]), 48 },
	{ "rtmr1", offsetof(struct tdx_td_report, rtmr[1]), 48 },
	{ "rtmr2", offsetof(struct tdx_td_report, rtmr[2]), 48 },
	{ "rtmr3", offsetof(struct tdx_td_report, rtmr[3]), 48 },
	TD(report_data, 64),
	TD(tee_tcb_svn2, 16),
	TD(mr_servicetd, 48),
	{ NULL, 0, 0 },
};

static const struct bfield enclave_fields[] = {
	EN(cpu_svn, 16),   EN(attributes, 16),	EN(mr_enclave, 32),
	EN(mr_signer, 32), EN(report_data, 64), { NULL, 0, 0 },
};

static bool bytes_field(const struct bfield *fields, const void *base, const char *key, char *out)
{
	for (const struct bfield *f = fields; f->name; f++) {
		if (strcmp(f->name, key) != 0)
			continue;
		const uint8_t *p;
		memcpy(&p, (const char *)base + f->off, sizeof(p));
		assert_non_null(p);
		strcpy(out, hexs(p, f->len));
		return true;
	}
	return false;
}

static bool enclave_field(const struct tdx_enclave_report *r, const char *key, char *out)
{
	if (strcmp(key, "misc_select") == 0)
		num(out, r->misc_select);
	else if (strcmp(key, "isv_prod_id") == 0)
		num(out, r->isv_prod_id);
	else if (strcmp(key, "isv_svn") == 0)
		num(out, r->isv_svn);
	else
		return bytes_field(enclave_fields, r, key, out);
	return true;
}

/* The parser's value of @section.@key as the JSON dump writes it. */
static bool actual(const struct tdx_quote *q, const char *section, const char *key, char *out)
{
	const struct tdx_quote_header *h = &q->header;

	if (strcmp(section, "header") == 0) {
		if (strcmp(key, "version") == 0)
			num(out, h->version);
		else if (strcmp(key, "attestation_key_type") == 0)
			num(out, h->att_key_type);
		else if (strcmp(key, "tee_type") == 0)
			snprintf(out, 64, "0x%x", h->tee_type);
		else if (strcmp(key, "qe_svn") == 0)
			num(out, h->qe_svn);
		else if (strcmp(key, "pce_svn") == 0)
			num(out, h->pce_svn);
		else if (strcmp(key, "qe_vendor_id") == 0)
			strcpy(out, hexs(h->qe_vendor_id, 16));
		else if (strcmp(key, "user_data") == 0)
			strcpy(out, hexs(h->user_data, 20));
		else
			return false;
		return true;
	}
	if (strcmp(section, "report") == 0)
		return h->tee_type == TDX_TEE_TYPE_TDX ? bytes_field(td_fields, &q->td, key, out)
						       : enclave_field(&q->sgx, key, out);
	if (strcmp(section, "qe_report") == 0)
		return enclave_field(&q->qe_report, key, out);
	if (strcmp(section, "auth") == 0) {
		if (strcmp(key, "sig_data_len") == 0)
			num(out, q->sig_data_len);
		else if (strcmp(key, "attestation_pubkey") == 0)
			strcpy(out, hexs(q->attestation_key, 64));
		else if (strcmp(key, "cert_data_type") == 0)
			num(out, q->cert_type);
		else if (strcmp(key, "inner_cert_type") == 0)
			num(out, q->inner_cert_type);
		else
			return false;
		return true;
	}
	return false;
}

/* Compare every key of doc.quotes[i].<section> with the parser. Returns how many. */
static int compare_section(const struct tdx_quote *q, int i, const char *section)
{
	char expr[256], keys[16384], got[16384];
	int n = 0;

	snprintf(expr, sizeof(expr),
		 "(function() local t = {} for k in pairs(doc.quotes[%d].%s) do t[#t+1] = k end "
		 "table.sort(t) return table.concat(t, ',') end)()",
		 i, section);
	snprintf(keys, sizeof(keys), "%s", lua_eval(doc, expr));
	for (char *key = strtok(keys, ","); key; key = strtok(NULL, ",")) {
		if (!actual(q, section, key, got))
			fail_msg("quote %d: the parser has no %s.%s", i, section, key);
		snprintf(expr, sizeof(expr), "doc.quotes[%d].%s.%s", i, section, key);
		const char *want = lua_eval(doc, expr);
		if (strcmp(want, got) != 0)
			fail_msg("quote %d: %s.%s = %s, expected %s", i, section, key, got, want);
		n++;
	}
	return n;
}

static void expect(int i, const char *field, const char *got)
{
	char expr[128];
	snprintf(expr, sizeof(expr), "doc.quotes[%d].%s", i, field);
	const char *want = lua_eval(doc, expr);
	assert_non_null(want);
	if (strcmp(want, got) != 0)
		fail_msg("quote %d: %s = %s, expected %s", i, field, got, want);
}

static void check_chain(const struct tdx_quote *q, int i)
{
	struct tdx_cert_info *certs;
	size_t n;
	char expr[128], buf[64];

	assert_non_null(q->pck_chain);
	assert_int_equal(tdx_pem_chain_parse(q->pck_chain, q->pck_chain_len, &certs, &n, NULL), 0);
	snprintf(expr, sizeof(expr), "#doc.quotes[%d].pck_chain", i);
	assert_int_equal(n, atoi(lua_eval(doc, expr)));
	for (size_t k = 0; k < n; k++) {
		const struct tdx_cert_info *c = &certs[k];
		char f[96];
#define CHECK(field, value)                                        \
	snprintf(f, sizeof(f), "pck_chain[%zu].%s", k + 1, field); \
	expect(i, f, value)
		CHECK("subject", c->subject);
		CHECK("issuer", c->issuer);
		CHECK("serial", c->serial);
		CHECK("not_before", c->not_before);
		CHECK("not_after", c->not_after);
		CHECK("sha256", hexs(c->sha256, 32));
#undef CHECK
	}
	/* the leaf's SGX extension */
	assert_true(certs[0].has_sgx_ext);
	const struct tdx_sgx_ext *x = &certs[0].sgx;
	expect(i, "pck_extension.fmspc", hexs(x->fmspc, 6));
	expect(i, "fmspc", hexs(x->fmspc, 6));
	expect(i, "pck_extension.pceid", hexs(x->pceid, 2));
	expect(i, "pck_extension.cpusvn", hexs(x->cpusvn, 16));
	expect(i, "pck_extension.ppid", hexs(x->ppid, 16));
	num(buf, x->pcesvn);
	expect(i, "pck_extension.pcesvn", buf);
	/* CPUSVN is the 16 TCB components */
	assert_memory_equal(x->cpusvn, x->tcb_comp, 16);
	assert_false(certs[1].has_sgx_ext);
	free(certs);
}

static void test_every_quote_matches_the_dump(void **state)
{
	char expr[128], buf[64];
	int fields = 0;

	assert_int_equal(atoi(lua_eval(doc, "#doc.quotes")), NQUOTES);
	for (int i = 1; i <= NQUOTES; i++) {
		snprintf(expr, sizeof(expr), "doc.quotes[%d].file", i);
		char *file = strdup(lua_eval(doc, expr));
		size_t len;
		uint8_t *data = read_quote_vector(file, &len);
		struct tdx_quote q;
		struct tdx_error err = { 0 };
		if (tdx_quote_parse(data, len, &q, &err) != 0)
			fail_msg("%s: %s", file, err.msg);
		num(buf, (long)len);
		expect(i, "size", buf);
		uint8_t sha[32];
		tdx_sha256(data, len, sha);
		expect(i, "sha256", hexs(sha, 32));
		num(buf, (long)q.signed_len);
		expect(i, "signed_len", buf);
		num(buf, (long)q.trailing);
		expect(i, "trailing_bytes", buf);
		assert_false(q.trailing_nonzero);
		expect(i, "tee", q.header.tee_type == TDX_TEE_TYPE_TDX ? "TDX" : "SGX");
		snprintf(expr, sizeof(expr), "doc.quotes[%d].body_type", i);
		if (lua_eval(doc, expr)) {
			num(buf, q.body_type);
			expect(i, "body_type", buf);
		}
		expect(i, "qe_auth_data", hexs(q.qe_auth_data, q.qe_auth_size));
		assert_true(q.has_qe_report);
		expect(i, "qe_hash_ok", tdx_quote_qe_hash_ok(&q) ? "true" : "false");
		fields += compare_section(&q, i, "header");
		fields += compare_section(&q, i, "report");
		fields += compare_section(&q, i, "auth");
		fields += compare_section(&q, i, "qe_report");
		check_chain(&q, i);
		assert_int_equal(q.end + q.trailing, len);
		free(data);
		free(file);
	}
	assert_true(fields > 7 * 25); /* nothing silently skipped */
}

/* Every prefix shorter than the signature data's end fails with EQUOTE and an offset inside
 * the input; every longer one parses (it only loses trailing padding). */
static void truncations(const char *file)
{
	size_t len;
	uint8_t *data = read_quote_vector(file, &len);
	struct tdx_quote q;
	struct tdx_error err;

	assert_int_equal(tdx_quote_parse(data, len, &q, NULL), 0);
	size_t end = q.end;
	for (size_t n = 0; n <= len; n++) {
		memset(&err, 0, sizeof(err));
		int rc = parse_copy(data, n, &err);
		if (n < end) {
			if (rc != -EBADMSG)
				fail_msg("%s: prefix of %zu bytes parsed (rc %d)", file, n, rc);
			assert_string_equal(err.code, "EQUOTE");
			assert_true(err.offset <= n);
			assert_non_null(strstr(err.msg, "truncated"));
			assert_non_null(strstr(err.msg, "offset"));
		} else if (rc != 0) {
			fail_msg("%s: %zu bytes (end %zu) failed: %s", file, n, end, err.msg);
		}
	}
	free(data);
}

static void test_truncated_v4(void **state)
{
	truncations("dcap-qvl/tdx_quote");
}

static void test_truncated_v5(void **state)
{
	truncations("dcap-qvl/tdx_quote_outdated");
}

static void test_truncated_sgx_v3(void **state)
{
	truncations("dcap-qvl/sgx_quote");
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Parse @data with the u32 (or u16 if @width is 2) at @off set to @value; expect a failure
 * whose message contains @needle and whose offset is @err_off (or anything if SIZE_MAX). */
static void corrupt(const uint8_t *data, size_t len, size_t off, int width, uint32_t value,
		    const char *needle, size_t err_off)
{
	uint8_t *copy = malloc(len);
	struct tdx_error err = { 0 };
	struct tdx_quote q;

	memcpy(copy, data, len);
	if (width == 4)
		put32(copy + off, value);
	else if (width == 2) {
		copy[off] = (uint8_t)value;
		copy[off + 1] = (uint8_t)(value >> 8);
	}
	int rc = tdx_quote_parse(copy, len, &q, &err);
	if (rc == 0)
		fail_msg("value %u at offset %zu was accepted", value, off);
	assert_int_equal(rc, -EBADMSG);
	assert_string_equal(err.code, "EQUOTE");
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
	if (err_off != SIZE_MAX && err.offset != err_off)
		fail_msg("message '%s': offset %zu, expected %zu", err.msg, err.offset, err_off);
	free(copy);
}

static void test_corrupted_fields(void **state)
{
	size_t len;
	uint8_t *d = read_quote_vector("dcap-qvl/tdx_quote", &len);
	uint32_t sig = get32(d + 632);	      /* 4300 */
	uint32_t cert = get32(d + 636 + 130); /* 4166 */
	const size_t qe_auth = 1218, inner = 1220 + 32;

	corrupt(d, len, 0, 2, 6, "header.version", 0);
	corrupt(d, len, 0, 2, 2, "header.version", 0);
	corrupt(d, len, 2, 2, 3, "attestation_key_type", 2);
	corrupt(d, len, 4, 4, 0x82, "tee_type", 4);
	/* signature data size: past the input, past the padding, short of its contents */
	corrupt(d, len, 632, 4, 0xFFFFFFFFu, "signature data at offset 636 declares", 636);
	corrupt(d, len, 632, 4, sig + 1, "signature data has 1 unexplained bytes", SIZE_MAX);
	corrupt(d, len, 632, 4, sig - 1, "the signature data ends", SIZE_MAX);
	corrupt(d, len, 632, 4, 100, "the signature data ends", SIZE_MAX);
	/* certification data */
	corrupt(d, len, 636 + 128, 2, 0, "certification_data_type", 764);
	corrupt(d, len, 636 + 128, 2, 9, "certification_data_type", 764);
	corrupt(d, len, 636 + 130, 4, cert + 1, "the signature data ends", SIZE_MAX);
	corrupt(d, len, 636 + 130, 4, cert - 1, "the certification data ends", SIZE_MAX);
	/* QE auth data and the inner chain */
	corrupt(d, len, qe_auth, 2, 0xFFFF, "qe_auth_data", 1220);
	corrupt(d, len, qe_auth, 2, 33, "certification data", SIZE_MAX);
	corrupt(d, len, inner, 2, 6, "inner certification_data_type", inner);
	corrupt(d, len, inner + 2, 4, get32(d + inner + 2) + 1, "certification data ends",
		SIZE_MAX);
	corrupt(d, len, inner + 2, 4, get32(d + inner + 2) - 1, "unexplained", SIZE_MAX);
	corrupt(d, len, inner + 2, 4, 0, "chain is empty", SIZE_MAX);
	free(d);

	/* v5: body type and size */
	d = read_quote_vector("dcap-qvl/tdx_quote_outdated", &len);
	corrupt(d, len, 48, 2, 4, "body_type", 48);
	corrupt(d, len, 48, 2, 1, "does not match the header's TEE type", 48);
	corrupt(d, len, 48, 2, 2, "body_size", 50); /* TD 1.0 type with a 648-byte body */
	corrupt(d, len, 50, 4, 584, "body_size", 50);
	free(d);

	/* v3 is SGX only */
	d = read_quote_vector("dcap-qvl/sgx_quote", &len);
	corrupt(d, len, 4, 4, 0x81, "version 3", 4);
	corrupt(d, len, 0, 2, 4, "invalid certification data type", 564); /* v4 layout */
	free(d);
}

static void test_trailing_bytes(void **state)
{
	size_t len;
	uint8_t *d = read_quote_vector("dcap-qvl/tdx_quote", &len);
	struct tdx_quote q;

	/* without the padding */
	assert_int_equal(parse_copy(d, len - 70, NULL), 0);
	assert_int_equal(tdx_quote_parse(d, len - 70, &q, NULL), 0);
	assert_int_equal(q.trailing, 0);
	/* non-zero trailing bytes are tolerated and reported */
	d[len - 1] = 0x5a;
	assert_int_equal(tdx_quote_parse(d, len, &q, NULL), 0);
	assert_int_equal(q.trailing, 70);
	assert_true(q.trailing_nonzero);
	/* signed region and pointers */
	assert_int_equal(q.signed_len, 632);
	assert_ptr_equal(q.td.report_data, d + 568);
	assert_ptr_equal(q.td.rtmr[3], d + 520);
	assert_ptr_equal(q.signature, d + 636);
	assert_ptr_equal(q.attestation_key, d + 700);
	assert_int_equal(q.cert_type, 6);
	assert_ptr_equal(q.qe_report.raw, d + 770);
	assert_int_equal(q.qe_auth_size, 32);
	assert_int_equal(q.inner_cert_type, 5);
	assert_int_equal(q.pck_chain_len + 1, q.inner_cert_size); /* one NUL trimmed */
	assert_true(q.pck_chain[q.pck_chain_len - 1] == '\n');
	free(d);
}

static void test_qe_hash_binding(void **state)
{
	size_t len;
	uint8_t *d = read_quote_vector("dcap-qvl/tdx_quote", &len);
	struct tdx_quote q;

	assert_int_equal(tdx_quote_parse(d, len, &q, NULL), 0);
	assert_true(tdx_quote_qe_hash_ok(&q));
	d[700] ^= 1; /* attestation key */
	assert_false(tdx_quote_qe_hash_ok(&q));
	d[700] ^= 1;
	d[1220] ^= 1; /* QE auth data */
	assert_false(tdx_quote_qe_hash_ok(&q));
	free(d);
}

static void test_pem_chain_errors(void **state)
{
	size_t len, n;
	uint8_t *d = read_quote_vector("dcap-qvl/tdx_quote", &len);
	struct tdx_quote q;
	struct tdx_cert_info *certs;
	struct tdx_error err = { 0 };

	assert_int_equal(tdx_quote_parse(d, len, &q, NULL), 0);
	char *pem = malloc(q.pck_chain_len + 64);
	/* trailing whitespace and NULs are fine */
	memcpy(pem, q.pck_chain, q.pck_chain_len);
	memcpy(pem + q.pck_chain_len, "\n \0\0", 4);
	assert_int_equal(tdx_pem_chain_parse(pem, q.pck_chain_len + 4, &certs, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(certs[2].subject,
			    "C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX Root CA");
	free(certs);
	/* garbage after the last certificate */
	memcpy(pem + q.pck_chain_len, "junk", 4);
	assert_int_equal(tdx_pem_chain_parse(pem, q.pck_chain_len + 4, &certs, &n, &err), -EBADMSG);
	assert_string_equal(err.code, "EQUOTE");
	assert_non_null(strstr(err.msg, "certificate 3"));
	assert_null(certs);
	/* garbage before */
	assert_int_equal(tdx_pem_chain_parse("x-----BEGIN CERTIFICATE-----", 28, &certs, &n, &err),
			 -EBADMSG);
	/* a corrupted base64 body */
	memcpy(pem, q.pck_chain, q.pck_chain_len);
	pem[100] = '!';
	assert_int_equal(tdx_pem_chain_parse(pem, q.pck_chain_len, &certs, &n, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "certificate 0"));
	/* empty */
	assert_int_equal(tdx_pem_chain_parse("\0\0", 2, &certs, &n, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "empty"));
	free(pem);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_quote_matches_the_dump),
		cmocka_unit_test(test_truncated_v4),
		cmocka_unit_test(test_truncated_v5),
		cmocka_unit_test(test_truncated_sgx_v3),
		cmocka_unit_test(test_corrupted_fields),
		cmocka_unit_test(test_trailing_bytes),
		cmocka_unit_test(test_qe_hash_binding),
		cmocka_unit_test(test_pem_chain_errors),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
