/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_sni: strict TLS ClientHello parser (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2, RFC 6066 §3
 * server_name, RFC 7301 ALPN). Two passes over the caller's buffer: the first walks the record
 * layer until the whole handshake message is present (or says how many bytes to wait for), the
 * second reads the ClientHello through a cursor that steps over record headers, so a handshake
 * fragmented over many records needs no copy. Every read is bounded by the innermost length
 * that encloses it.
 */
#include "proxy/proxy_sni.h"

#include <string.h>

#define TLS_CT_HANDSHAKE    22
#define TLS_HS_CLIENT_HELLO 1
#define TLS_RECORD_MAX	    16384
#define TLS_REC_HDR	    5
#define TLS_HS_HDR	    4

#define EXT_SERVER_NAME	       0
#define EXT_ALPN	       16
#define EXT_SUPPORTED_VERSIONS 43

/* Reads the handshake byte stream (logical offsets) across records already framed. */
struct cursor {
	const uint8_t *buf;
	size_t pos;	/* physical offset of the next byte */
	size_t rec_end; /* physical end of the current record's payload */
	size_t off;	/* logical offset in the handshake stream */
	size_t total;	/* logical length of the handshake stream */
};

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint8_t cur_u8(struct cursor *c)
{
	if (c->pos == c->rec_end) {
		/* framed by frame_records(): the next header and payload are in the buffer */
		c->pos = c->rec_end + TLS_REC_HDR;
		c->rec_end = c->pos + be16(c->buf + c->rec_end + 3);
	}
	c->off++;
	return c->buf[c->pos++];
}

/* The callers check off + n <= limit <= total before reading n bytes. */
static unsigned cur_u16(struct cursor *c)
{
	unsigned hi = cur_u8(c);

	return (hi << 8) | cur_u8(c);
}

static void cur_skip(struct cursor *c, size_t n)
{
	while (n > 0) {
		size_t chunk;

		if (c->pos == c->rec_end) {
			c->pos = c->rec_end + TLS_REC_HDR;
			c->rec_end = c->pos + be16(c->buf + c->rec_end + 3);
		}
		chunk = c->rec_end - c->pos;
		if (chunk > n)
			chunk = n;
		c->pos += chunk;
		c->off += chunk;
		n -= chunk;
	}
}

static bool cur_has(const struct cursor *c, size_t n, size_t limit)
{
	return limit >= c->off && limit - c->off >= n;
}

static enum proxy_sni_status need_more(struct proxy_sni_hello *out, size_t need)
{
	if (need > PROXY_SNI_MAX_BYTES) {
		out->error = PROXY_SNI_E_TOO_LARGE;
		return PROXY_SNI_MALFORMED;
	}
	out->need = need;
	return PROXY_SNI_NEED_MORE;
}

static enum proxy_sni_status fail(struct proxy_sni_hello *out, enum proxy_sni_error e)
{
	out->error = e;
	return PROXY_SNI_MALFORMED;
}

/*
 * Pass 1: walk records from offset 0 until they carry the whole handshake message; check each
 * header; learn the message length from its first four payload bytes (which may themselves be
 * split over records).
 */
static enum proxy_sni_status frame_records(const uint8_t *buf, size_t len,
					   struct proxy_sni_hello *out, size_t *hs_total)
{
	uint8_t hdr[TLS_HS_HDR];
	size_t nhdr = 0, payload = 0, off = 0, total = 0;

	if (len < 1)
		return need_more(out, TLS_REC_HDR);
	if (buf[0] != TLS_CT_HANDSHAKE || (len >= 2 && buf[1] != 3)) {
		out->error = PROXY_SNI_E_NOT_HANDSHAKE;
		return PROXY_SNI_NOT_TLS;
	}
	for (;;) {
		size_t rlen, end, i;

		if (len - off < TLS_REC_HDR) {
			/* judge what is there of the header before waiting for the rest */
			if (off > 0 && len > off && buf[off] != TLS_CT_HANDSHAKE)
				return fail(out, PROXY_SNI_E_RECORD_INTERLEAVED);
			if (len - off >= 2 && buf[off + 1] != 3)
				return fail(out, PROXY_SNI_E_RECORD_VERSION);
			if (len - off >= 3 && buf[off + 2] > 4)
				return fail(out, PROXY_SNI_E_RECORD_VERSION);
			return need_more(out, off + TLS_REC_HDR);
		}
		if (buf[off] != TLS_CT_HANDSHAKE)
			return fail(out, PROXY_SNI_E_RECORD_INTERLEAVED);
		if (buf[off + 1] != 3 || buf[off + 2] > 4)
			return fail(out, PROXY_SNI_E_RECORD_VERSION);
		rlen = be16(buf + off + 3);
		if (rlen == 0)
			return fail(out, PROXY_SNI_E_RECORD_EMPTY);
		if (rlen > TLS_RECORD_MAX)
			return fail(out, PROXY_SNI_E_RECORD_LENGTH);
		end = off + TLS_REC_HDR + rlen;
		/* the header bytes of the message may be readable before the record is whole */
		for (i = 0; nhdr < TLS_HS_HDR && i < rlen && off + TLS_REC_HDR + i < len; i++)
			hdr[nhdr++] = buf[off + TLS_REC_HDR + i];
		if (nhdr >= 1 && hdr[0] != TLS_HS_CLIENT_HELLO)
			return fail(out, PROXY_SNI_E_HANDSHAKE_TYPE);
		if (nhdr == TLS_HS_HDR) {
			total = TLS_HS_HDR + ((size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3]);
			/* every further byte costs at least its own, so this bounds the records */
			if (off + TLS_REC_HDR + (total - payload) > PROXY_SNI_MAX_BYTES)
				return fail(out, PROXY_SNI_E_TOO_LARGE);
		}
		if (end > PROXY_SNI_MAX_BYTES)
			return fail(out, PROXY_SNI_E_TOO_LARGE);
		if (len < end)
			return need_more(out, end);
		payload += rlen;
		if (nhdr == TLS_HS_HDR && payload >= total) {
			if (payload > total)
				return fail(out, PROXY_SNI_E_HANDSHAKE_TRAILING);
			out->record_bytes = end;
			*hs_total = total;
			return PROXY_SNI_OK;
		}
		off = end;
	}
}

bool proxy_sni_host_valid(const char *name, size_t len, char *out)
{
	size_t i, label = 0;
	bool digits_only = true;

	if (len == 0 || len > PROXY_SNI_HOST_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char ch = name[i];

		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			digits_only = true;
			out[i] = ch;
			continue;
		}
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
			return false;
		if (!(ch >= '0' && ch <= '9'))
			digits_only = false;
		if (++label > 63)
			return false;
		out[i] = ch;
	}
	/* trailing dot (empty last label), or an IPv4 literal / all-numeric TLD */
	if (label == 0 || digits_only)
		return false;
	out[len] = '\0';
	return true;
}

/* RFC 6066 §3: ServerNameList; exactly one host_name (type 0), other types skipped. */
static enum proxy_sni_status parse_server_name(struct cursor *c, size_t ext_end,
					       struct proxy_sni_hello *out)
{
	size_t list_len, list_end;

	if (!cur_has(c, 2, ext_end))
		return fail(out, PROXY_SNI_E_SERVER_NAME);
	list_len = cur_u16(c);
	list_end = c->off + list_len;
	if (list_len == 0 || list_end != ext_end)
		return fail(out, PROXY_SNI_E_SERVER_NAME);
	while (c->off < list_end) {
		unsigned type;
		size_t name_len, i;
		char name[PROXY_SNI_HOST_MAX];

		if (!cur_has(c, 3, list_end))
			return fail(out, PROXY_SNI_E_SERVER_NAME);
		type = cur_u8(c);
		name_len = cur_u16(c);
		if (name_len == 0 || !cur_has(c, name_len, list_end))
			return fail(out, PROXY_SNI_E_SERVER_NAME);
		if (type != 0) {
			cur_skip(c, name_len);
			continue;
		}
		if (out->has_sni)
			return fail(out, PROXY_SNI_E_SERVER_NAME);
		if (name_len > PROXY_SNI_HOST_MAX)
			return fail(out, PROXY_SNI_E_HOST_NAME);
		for (i = 0; i < name_len; i++)
			name[i] = (char)cur_u8(c);
		if (!proxy_sni_host_valid(name, name_len, out->host))
			return fail(out, PROXY_SNI_E_HOST_NAME);
		out->host_len = name_len;
		out->has_sni = true;
	}
	return PROXY_SNI_OK;
}

/* RFC 7301 §3.1: ProtocolNameList<2..2^16-1> of ProtocolName<1..2^8-1>. */
static enum proxy_sni_status parse_alpn(struct cursor *c, size_t ext_end,
					struct proxy_sni_hello *out)
{
	size_t list_len, list_end;

	if (!cur_has(c, 2, ext_end))
		return fail(out, PROXY_SNI_E_ALPN);
	list_len = cur_u16(c);
	list_end = c->off + list_len;
	if (list_len < 2 || list_end != ext_end)
		return fail(out, PROXY_SNI_E_ALPN);
	out->has_alpn = true;
	while (c->off < list_end) {
		size_t plen, i;

		plen = cur_u8(c);
		if (plen == 0 || !cur_has(c, plen, list_end))
			return fail(out, PROXY_SNI_E_ALPN);
		if (out->alpn_count >= PROXY_SNI_ALPN_MAX || plen > PROXY_SNI_ALPN_NAME_MAX) {
			out->alpn_truncated = true;
			cur_skip(c, plen);
			continue;
		}
		for (i = 0; i < plen; i++)
			out->alpn[out->alpn_count].name[i] = (char)cur_u8(c);
		out->alpn[out->alpn_count].name[plen] = '\0';
		out->alpn[out->alpn_count].len = (uint8_t)plen;
		out->alpn_count++;
	}
	return PROXY_SNI_OK;
}

/* RFC 8446 §4.2.1, ClientHello form: ProtocolVersion versions<2..254>. */
static enum proxy_sni_status parse_supported_versions(struct cursor *c, size_t ext_end,
						      struct proxy_sni_hello *out)
{
	size_t vlen, i;

	if (!cur_has(c, 1, ext_end))
		return fail(out, PROXY_SNI_E_SUPPORTED_VERSIONS);
	vlen = cur_u8(c);
	if (vlen < 2 || vlen % 2 != 0 || c->off + vlen != ext_end)
		return fail(out, PROXY_SNI_E_SUPPORTED_VERSIONS);
	out->has_supported_versions = true;
	for (i = 0; i < vlen; i += 2)
		if (cur_u16(c) == 0x0304)
			out->tls13 = true;
	return PROXY_SNI_OK;
}

static bool seen_before(uint64_t *seen, unsigned type)
{
	uint64_t bit;

	if (type >= 64)
		return false; /* GREASE, renegotiation_info, ECH: not tracked */
	bit = (uint64_t)1 << type;
	if (*seen & bit)
		return true;
	*seen |= bit;
	return false;
}

/* Pass 2: the ClientHello body, logical offsets [4, total). */
static enum proxy_sni_status parse_hello(struct cursor *c, struct proxy_sni_hello *out)
{
	size_t end = c->total, n, ext_end;
	uint64_t seen = 0;
	enum proxy_sni_status st;

	cur_skip(c, TLS_HS_HDR);
	if (!cur_has(c, 2 + 32 + 1, end))
		return fail(out, PROXY_SNI_E_HELLO_TRUNCATED);
	out->legacy_version = (uint16_t)cur_u16(c);
	if ((out->legacy_version >> 8) != 3 || (out->legacy_version & 0xff) > 3)
		return fail(out, PROXY_SNI_E_HELLO_VERSION);
	cur_skip(c, 32); /* random */
	n = cur_u8(c);
	if (n > 32)
		return fail(out, PROXY_SNI_E_SESSION_ID);
	if (!cur_has(c, n + 2, end))
		return fail(out, PROXY_SNI_E_HELLO_TRUNCATED);
	cur_skip(c, n);
	n = cur_u16(c);
	if (n < 2 || n % 2 != 0)
		return fail(out, PROXY_SNI_E_CIPHER_SUITES);
	if (!cur_has(c, n + 1, end))
		return fail(out, PROXY_SNI_E_HELLO_TRUNCATED);
	cur_skip(c, n);
	n = cur_u8(c);
	if (n < 1)
		return fail(out, PROXY_SNI_E_COMPRESSION);
	if (!cur_has(c, n, end))
		return fail(out, PROXY_SNI_E_HELLO_TRUNCATED);
	cur_skip(c, n);
	if (c->off == end)
		return PROXY_SNI_OK; /* no extensions (legal before TLS 1.3) */
	if (!cur_has(c, 2, end))
		return fail(out, PROXY_SNI_E_EXTENSIONS_LENGTH);
	n = cur_u16(c);
	if (c->off + n != end)
		return fail(out, PROXY_SNI_E_EXTENSIONS_LENGTH);
	while (c->off < end) {
		unsigned type;

		if (!cur_has(c, 4, end))
			return fail(out, PROXY_SNI_E_EXTENSION_LENGTH);
		type = cur_u16(c);
		n = cur_u16(c);
		if (!cur_has(c, n, end))
			return fail(out, PROXY_SNI_E_EXTENSION_LENGTH);
		if (seen_before(&seen, type))
			return fail(out, PROXY_SNI_E_EXTENSION_DUPLICATE);
		ext_end = c->off + n;
		switch (type) {
		case EXT_SERVER_NAME:
			st = parse_server_name(c, ext_end, out);
			break;
		case EXT_ALPN:
			st = parse_alpn(c, ext_end, out);
			break;
		case EXT_SUPPORTED_VERSIONS:
			st = parse_supported_versions(c, ext_end, out);
			break;
		default:
			cur_skip(c, n);
			st = PROXY_SNI_OK;
			break;
		}
		if (st != PROXY_SNI_OK)
			return st;
	}
	return PROXY_SNI_OK;
}

enum proxy_sni_status proxy_sni_parse(const void *buf, size_t len, struct proxy_sni_hello *out)
{
	const uint8_t *p = buf;
	struct cursor c;
	size_t total = 0;
	enum proxy_sni_status st;

	memset(out, 0, sizeof(*out));
	st = frame_records(p, len, out, &total);
	if (st != PROXY_SNI_OK)
		return st;
	c.buf = p;
	c.pos = TLS_REC_HDR;
	c.rec_end = TLS_REC_HDR + be16(p + 3);
	c.off = 0;
	c.total = total;
	st = parse_hello(&c, out);
	if (st != PROXY_SNI_OK) {
		size_t keep = out->record_bytes;
		enum proxy_sni_error e = out->error;

		memset(out, 0, sizeof(*out));
		out->record_bytes = keep;
		out->error = e;
	}
	return st;
}

bool proxy_sni_offers_alpn(const struct proxy_sni_hello *hello, const char *proto)
{
	size_t len = strlen(proto);
	unsigned i;

	for (i = 0; i < hello->alpn_count; i++)
		if (hello->alpn[i].len == len && memcmp(hello->alpn[i].name, proto, len) == 0)
			return true;
	return false;
}

const char *proxy_sni_status_name(enum proxy_sni_status st)
{
	switch (st) {
	case PROXY_SNI_OK:
		return "ok";
	case PROXY_SNI_NEED_MORE:
		return "need-more";
	case PROXY_SNI_NOT_TLS:
		return "not-tls";
	case PROXY_SNI_MALFORMED:
		return "malformed";
	}
	return "unknown";
}

const char *proxy_sni_error_name(enum proxy_sni_error e)
{
	static const char *const names[] = {
		[PROXY_SNI_E_NONE] = "none",
		[PROXY_SNI_E_NOT_HANDSHAKE] = "not-handshake",
		[PROXY_SNI_E_RECORD_VERSION] = "record-version",
		[PROXY_SNI_E_RECORD_EMPTY] = "record-empty",
		[PROXY_SNI_E_RECORD_LENGTH] = "record-length",
		[PROXY_SNI_E_RECORD_INTERLEAVED] = "record-interleaved",
		[PROXY_SNI_E_TOO_LARGE] = "too-large",
		[PROXY_SNI_E_HANDSHAKE_TYPE] = "handshake-type",
		[PROXY_SNI_E_HANDSHAKE_TRAILING] = "handshake-trailing",
		[PROXY_SNI_E_HELLO_TRUNCATED] = "hello-truncated",
		[PROXY_SNI_E_HELLO_VERSION] = "hello-version",
		[PROXY_SNI_E_SESSION_ID] = "session-id",
		[PROXY_SNI_E_CIPHER_SUITES] = "cipher-suites",
		[PROXY_SNI_E_COMPRESSION] = "compression",
		[PROXY_SNI_E_EXTENSIONS_LENGTH] = "extensions-length",
		[PROXY_SNI_E_EXTENSION_LENGTH] = "extension-length",
		[PROXY_SNI_E_EXTENSION_DUPLICATE] = "extension-duplicate",
		[PROXY_SNI_E_SERVER_NAME] = "server-name",
		[PROXY_SNI_E_HOST_NAME] = "host-name",
		[PROXY_SNI_E_ALPN] = "alpn",
		[PROXY_SNI_E_SUPPORTED_VERSIONS] = "supported-versions",
	};

	if ((unsigned)e < sizeof(names) / sizeof(names[0]) && names[e])
		return names[e];
	return "unknown";
}
