/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: tdx_quote_parse on arbitrary bytes (a quote from a remote party), then what
 * the verifier does next with a parsed quote: the QE-report hash check and the PEM PCK chain
 * (tdx_pem_chain_parse, with its SGX extension). Invariants beyond ASan/UBSan: a failure has the
 * code EQUOTE and a message, its offset within the input; a success keeps every pointer and
 * length inside the input (body, signature data, certification data, PCK chain), end +
 * trailing == len, and parses the same on an exact-size copy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tdx/tdx.h"
#include "tdx/tdx_quote.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static void inside(const uint8_t *base, size_t len, const void *p, size_t n)
{
	if (!p)
		return;
	CHECK((const uint8_t *)p >= base && (size_t)((const uint8_t *)p - base) <= len &&
	      n <= len - (size_t)((const uint8_t *)p - base));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct tdx_quote q;
	struct tdx_error err = { 0 };

	memset(&q, 0, sizeof(q));
	if (tdx_quote_parse(data, len, &q, &err) != 0) {
		CHECK(err.code && !strcmp(err.code, "EQUOTE") && err.msg[0]);
		CHECK(err.offset == TDX_NO_OFFSET || err.offset <= len);
		return 0;
	}
	CHECK(q.data == data && q.len == len && q.end <= len && q.end + q.trailing == len);
	CHECK(q.signed_len <= q.end && q.body_offset + q.body_size <= q.signed_len);
	inside(data, len, q.signature, 64);
	inside(data, len, q.attestation_key, 64);
	inside(data, len, q.cert_data, q.cert_size);
	inside(data, len, q.qe_report_signature, 64);
	inside(data, len, q.qe_auth_data, q.qe_auth_size);
	inside(data, len, q.inner_cert_data, q.inner_cert_size);
	inside(data, len, q.pck_chain, q.pck_chain_len);
	(void)tdx_quote_qe_hash_ok(&q);

	/* the same verdict on an exact-size copy of just the used bytes */
	uint8_t *copy = malloc(q.end ? q.end : 1);
	struct tdx_quote q2;

	CHECK(copy);
	memcpy(copy, data, q.end);
	CHECK(tdx_quote_parse(copy, q.end, &q2, &err) == 0 && q2.end == q.end && q2.trailing == 0);
	free(copy);

	if (q.pck_chain) {
		struct tdx_cert_info *certs = NULL;
		size_t n = 0;

		if (tdx_pem_chain_parse(q.pck_chain, q.pck_chain_len, &certs, &n, &err) == 0) {
			for (size_t i = 0; i < n; i++)
				CHECK(memchr(certs[i].subject, 0, sizeof(certs[i].subject)) &&
				      memchr(certs[i].serial, 0, sizeof(certs[i].serial)));
			free(certs);
		} else {
			CHECK(err.code && err.msg[0]);
		}
	}
	return 0;
}
