/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TCG crypto-agile event logs (the TDX CCEL, TPM binary_bios_measurements) parsed in place,
 * and their conversion to dstack's TdxEvent form with the ACPI DATA labels (tdx_eventlog.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tdx/tdx_eventlog.h"

static const uint8_t spec_id_sig[16] = "Spec ID Event03";

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

struct rd {
	const uint8_t *p;
	size_t len, off;
	size_t record; /* start of the record being read, and its number (for messages) */
	size_t index;
	struct tdx_error *err;
	int rc;
};

static const uint8_t *get(struct rd *r, size_t n, const char *field)
{
	if (r->rc)
		return NULL;
	if (n > r->len - r->off) {
		r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", r->off,
				 "truncated: %s of %s at offset %zu needs %zu bytes, only %zu left",
				 field, r->index ? "an event" : "the Spec ID header", r->off, n,
				 r->len - r->off);
		return NULL;
	}
	const uint8_t *p = r->p + r->off;
	r->off += n;
	return p;
}

static uint32_t get32(struct rd *r, const char *field)
{
	const uint8_t *p = get(r, 4, field);
	return p ? le32(p) : 0;
}

static uint16_t get16(struct rd *r, const char *field)
{
	const uint8_t *p = get(r, 2, field);
	return p ? le16(p) : 0;
}

static int well_known_size(uint16_t alg)
{
	switch (alg) {
	case TDX_TPM_ALG_SHA1:
		return 20;
	case TDX_TPM_ALG_SHA256:
		return 32;
	case TDX_TPM_ALG_SHA384:
		return 48;
	case TDX_TPM_ALG_SHA512:
		return 64;
	default:
		return -1;
	}
}

static int digest_size(const struct tdx_tcg_log *log, uint16_t alg)
{
	for (uint32_t i = 0; i < log->num_algs; i++)
		if (log->algs[i].id == alg)
			return log->algs[i].digest_size;
	return well_known_size(alg);
}

/* The first record: TCG_PCClientPCREvent with a 20-byte digest and a TCG_EfiSpecIDEvent. */
static void parse_header(struct rd *r, struct tdx_tcg_log *log)
{
	const uint8_t *p;

	log->header_mr_index = get32(r, "pcrIndex");
	log->header_event_type = get32(r, "eventType");
	get(r, 20, "digest");
	uint32_t size = get32(r, "eventSize");
	size_t start = r->off;
	if (r->rc)
		return;
	if (size > r->len - r->off) {
		r->rc = tdx_fail(
			r->err, -EBADMSG, "EEVENTLOG", start,
			"truncated: the Spec ID event at offset %zu declares %u bytes, only "
			"%zu left",
			start, size, r->len - start);
		return;
	}
	if (size < 16 + 4 + 4 + 4 + 1) {
		r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", start - 4,
				 "Spec ID header: eventSize %u at offset %zu is too small", size,
				 start - 4);
		return;
	}
	size_t end = start + size;
	size_t saved_len = r->len;
	r->len = end; /* the header's fields must stay inside its event */
	p = get(r, 16, "signature");
	if (p && memcmp(p, spec_id_sig, sizeof(spec_id_sig)) != 0) {
		r->rc = tdx_fail(
			r->err, -EBADMSG, "EEVENTLOG", start,
			"Spec ID header at offset %zu: signature is not \"Spec ID Event03\"",
			start);
		return;
	}
	log->platform_class = get32(r, "platformClass");
	if ((p = get(r, 4, "specVersion"))) {
		log->spec_version_minor = p[0];
		log->spec_version_major = p[1];
		log->spec_errata = p[2];
		log->uintn_size = p[3];
	}
	log->num_algs = get32(r, "numberOfAlgorithms");
	if (!r->rc && (log->num_algs == 0 || log->num_algs > TDX_TCG_MAX_ALGS)) {
		r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", r->off - 4,
				 "Spec ID header: numberOfAlgorithms %u must be 1..%d",
				 log->num_algs, TDX_TCG_MAX_ALGS);
		return;
	}
	for (uint32_t i = 0; i < log->num_algs && !r->rc; i++) {
		log->algs[i].id = get16(r, "algorithmId");
		log->algs[i].digest_size = get16(r, "digestSize");
		int known = well_known_size(log->algs[i].id);
		if (!r->rc && known >= 0 && known != log->algs[i].digest_size)
			r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", r->off - 2,
					 "Spec ID header: algorithm 0x%04x declares digest size "
					 "%u, expected %d",
					 log->algs[i].id, log->algs[i].digest_size, known);
	}
	if ((p = get(r, 1, "vendorInfoSize"))) {
		log->vendor_info_size = p[0];
		log->vendor_info = get(r, p[0], "vendorInfo");
	}
	r->len = saved_len;
	if (!r->rc)
		r->off = end;
}

static void parse_event(struct rd *r, const struct tdx_tcg_log *log, struct tdx_tcg_event *ev)
{
	ev->offset = r->off;
	ev->mr_index = get32(r, "mrIndex");
	ev->event_type = get32(r, "eventType");
	ev->digest_count = get32(r, "digestCount");
	if (!r->rc && ev->digest_count > TDX_TCG_MAX_ALGS) {
		r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", r->off - 4,
				 "event %zu at offset %zu: digestCount %u exceeds %d", r->index,
				 ev->offset, ev->digest_count, TDX_TCG_MAX_ALGS);
		return;
	}
	for (uint32_t i = 0; i < ev->digest_count && !r->rc; i++) {
		uint16_t alg = get16(r, "algorithmId");
		int size = digest_size(log, alg);
		if (!r->rc && size < 0) {
			r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", r->off - 2,
					 "event %zu at offset %zu: unknown digest algorithm 0x%04x",
					 r->index, ev->offset, alg);
			return;
		}
		ev->digests[i].alg = alg;
		ev->digests[i].size = (uint16_t)size;
		ev->digests[i].value = get(r, (size_t)size, "digest");
	}
	ev->data_len = get32(r, "eventSize");
	if (!r->rc && ev->data_len > TDX_TCG_MAX_EVENT_SIZE) {
		r->rc = tdx_fail(r->err, -EBADMSG, "EEVENTLOG", r->off - 4,
				 "event %zu at offset %zu: eventSize %u exceeds %u", r->index,
				 ev->offset, ev->data_len, TDX_TCG_MAX_EVENT_SIZE);
		return;
	}
	ev->data = get(r, ev->data_len, "event data");
}

/* Whether the log ends at the reader's position: end of input, or the 0xFF-filled area. */
static bool at_end(const struct rd *r)
{
	size_t left = r->len - r->off;

	if (left == 0)
		return true;
	if (left < 4) {
		for (size_t i = r->off; i < r->len; i++)
			if (r->p[i] != 0xFF)
				return false;
		return true;
	}
	return le32(r->p + r->off) == 0xFFFFFFFFu;
}

int tdx_tcg_parse(const uint8_t *buf, size_t len, struct tdx_tcg_log *log, struct tdx_error *err)
{
	struct rd r = { .p = buf, .len = len, .err = err };
	size_t cap = 0;

	memset(log, 0, sizeof(*log));
	if (!buf && len)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "no event log data");
	parse_header(&r, log);
	while (!r.rc && !at_end(&r)) {
		if (log->count == cap) {
			size_t ncap = cap ? 2 * cap : 32;
			struct tdx_tcg_event *grown = realloc(log->events, ncap * sizeof(*grown));
			if (!grown) {
				r.rc = tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET,
						"out of memory");
				break;
			}
			log->events = grown;
			cap = ncap;
		}
		r.index = log->count + 1;
		struct tdx_tcg_event *ev = &log->events[log->count];
		memset(ev, 0, sizeof(*ev));
		parse_event(&r, log, ev);
		if (!r.rc)
			log->count++;
	}
	if (r.rc) {
		tdx_tcg_log_free(log);
		return r.rc;
	}
	log->end = r.off;
	return 0;
}

void tdx_tcg_log_free(struct tdx_tcg_log *log)
{
	free(log->events);
	log->events = NULL;
	log->count = 0;
}

int tdx_ccel_to_events(const struct tdx_tcg_log *log, struct tdx_event **out, size_t *n,
		       struct tdx_error *err)
{
	struct tdx_event *list = calloc(log->count ? log->count : 1, sizeof(*list));
	size_t count = 0;

	*out = NULL;
	*n = 0;
	if (!list)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
	for (size_t i = 0; i < log->count; i++) {
		const struct tdx_tcg_event *t = &log->events[i];
		if (t->mr_index == 0)
			continue; /* MRTD */
		if (t->digest_count != 1 || t->digests[0].alg != TDX_TPM_ALG_SHA384) {
			free(list);
			return tdx_fail(err, -EBADMSG, "EEVENTLOG", t->offset,
					"event %zu at offset %zu: a TDX event needs exactly one "
					"SHA-384 digest (it has %u)",
					i + 1, t->offset, t->digest_count);
		}
		if (t->mr_index > TDX_RTMR_COUNT) {
			free(list);
			return tdx_fail(
				err, -EBADMSG, "EEVENTLOG", t->offset,
				"event %zu at offset %zu: MR index %u is not an RTMR (1..4)", i + 1,
				t->offset, t->mr_index);
		}
		struct tdx_event *e = &list[count++];
		e->imr = t->mr_index - 1;
		e->event_type = t->event_type;
		memcpy(e->digest, t->digests[0].value, TDX_MR_LEN);
		e->digest_len = TDX_MR_LEN;
		e->name = "";
		e->payload = t->data;
		e->payload_len = t->data_len;
		e->version = 1;
	}
	*out = list;
	*n = count;
	return 0;
}

void tdx_events_label_acpi(struct tdx_event *ev, size_t n)
{
	static const char *const names[] = { "acpi-loader", "acpi-rsdp", "acpi-tables" };
	static const char acpi_data[] = "ACPI DATA";
	size_t seen = 0;

	for (size_t i = 0; i < n && seen < 3; i++) {
		struct tdx_event *e = &ev[i];
		if (e->imr != 0 || e->event_type != TDX_EV_PLATFORM_CONFIG_FLAGS ||
		    e->payload_len != sizeof(acpi_data) - 1 ||
		    memcmp(e->payload, acpi_data, sizeof(acpi_data) - 1) != 0)
			continue;
		e->name = names[seen++];
		e->name_len = strlen(e->name);
	}
}
