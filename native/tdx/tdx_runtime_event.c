/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dstack runtime events (RTMR3): the V1 and V2 digest preimages (tdx_eventlog.h). V2 is the
 * RFC 8785 (JCS) canonical JSON of {"name","payload","type"}: keys in that (sorted) order, no
 * whitespace, strings escaped as ECMAScript's JSON.stringify does, non-ASCII kept raw.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "tdx/tdx_eventlog.h"

/* Append the JCS form of the string @s to @out (which has room: 6 bytes per input byte + 2).
 * Returns the new end, or NULL if @s is not valid UTF-8. */
static uint8_t *jcs_string(uint8_t *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *p = (const uint8_t *)s;

	*out++ = '"';
	for (size_t i = 0; i < len;) {
		uint8_t c = p[i];
		const char *esc = NULL;
		switch (c) {
		case '"':
			esc = "\\\"";
			break;
		case '\\':
			esc = "\\\\";
			break;
		case '\b':
			esc = "\\b";
			break;
		case '\f':
			esc = "\\f";
			break;
		case '\n':
			esc = "\\n";
			break;
		case '\r':
			esc = "\\r";
			break;
		case '\t':
			esc = "\\t";
			break;
		default:
			break;
		}
		if (esc) {
			memcpy(out, esc, 2);
			out += 2;
			i++;
		} else if (c < 0x20) {
			memcpy(out, "\\u00", 4);
			out[4] = (uint8_t)hex[c >> 4];
			out[5] = (uint8_t)hex[c & 15];
			out += 6;
			i++;
		} else {
			size_t n = rt_utf8_seq_len(p + i, len - i);
			if (n == 0)
				return NULL;
			memcpy(out, p + i, n);
			out += n;
			i += n;
		}
	}
	*out++ = '"';
	return out;
}

int tdx_runtime_preimage(int version, const char *name, size_t name_len, const uint8_t *payload,
			 size_t payload_len, uint8_t **out, size_t *out_len, struct tdx_error *err)
{
	static const char v2_a[] = "{\"name\":";
	static const char v2_b[] = ",\"payload\":\"";
	static const char v2_c[] = "\",\"type\":134217729}";
	uint8_t *buf, *p;

	*out = NULL;
	*out_len = 0;
	if (version != 1 && version != 2)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
				"runtime event version must be 1 or 2, not %d", version);
	if (name_len > SIZE_MAX / 8 || payload_len > SIZE_MAX / 4)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "event too large");
	if (version == 1) {
		buf = malloc(4 + 1 + name_len + 1 + payload_len + 1);
		if (!buf)
			return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
		p = buf;
		for (int i = 0; i < 4; i++)
			*p++ = (uint8_t)(TDX_RUNTIME_EVENT_TYPE >> (8 * i));
		*p++ = ':';
		if (name_len)
			memcpy(p, name, name_len);
		p += name_len;
		*p++ = ':';
		if (payload_len)
			memcpy(p, payload, payload_len);
		p += payload_len;
	} else {
		buf = malloc(sizeof(v2_a) + 6 * name_len + 2 + sizeof(v2_b) + 2 * payload_len +
			     sizeof(v2_c) + 1);
		if (!buf)
			return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
		memcpy(buf, v2_a, sizeof(v2_a) - 1);
		p = jcs_string(buf + sizeof(v2_a) - 1, name, name_len);
		if (!p) {
			free(buf);
			return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
					"runtime event name is not valid UTF-8");
		}
		memcpy(p, v2_b, sizeof(v2_b) - 1);
		p += sizeof(v2_b) - 1;
		tdx_hex(payload, payload_len, (char *)p);
		p += 2 * payload_len;
		memcpy(p, v2_c, sizeof(v2_c) - 1);
		p += sizeof(v2_c) - 1;
	}
	*out = buf;
	*out_len = (size_t)(p - buf);
	return 0;
}

int tdx_runtime_digest(int version, const char *name, size_t name_len, const uint8_t *payload,
		       size_t payload_len, uint8_t digest[TDX_MR_LEN], struct tdx_error *err)
{
	uint8_t *pre;
	size_t len;
	int rc = tdx_runtime_preimage(version, name, name_len, payload, payload_len, &pre, &len,
				      err);

	if (rc)
		return rc;
	rc = tdx_sha384(pre, len, digest);
	free(pre);
	if (rc)
		return tdx_fail(err, rc, "ENOMEM", TDX_NO_OFFSET, "SHA-384 failed");
	return 0;
}
