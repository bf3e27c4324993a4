/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the collateral a verifier fetches from a PCCS or takes from a caller. The
 * first byte picks the parser, the rest is its input: 0 the QuoteCollateralV3 JSON
 * (dcap_collateral_from_json: JSON, hex CRLs and signatures, then every item parsed: DER CRLs, PEM
 * chains, the TCB info and QE identity documents), 1 a TCB info document
 * (dcap_tcb_info_parse), 2 a QE identity document (dcap_qe_identity_parse), 3 the JSON parser
 * alone (dcap_json_parse). Invariants beyond ASan/UBSan: a failure has a code and a message; on
 * success the collateral's summary is readable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dcap/dcap.h"
#include "dcap/dcap_internal.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

static void failed(const struct dcap_error *err)
{
	CHECK(err->code && err->code[0] && err->msg[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct dcap_error err = { 0 };

	if (len < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t n = len - 1;

	switch (data[0] & 3) {
	case 0: {
		struct dcap_collateral *c = NULL;

		if (dcap_collateral_from_json(text, n, &c, &err) != 0) {
			failed(&err);
		} else {
			struct dcap_collateral_info info;

			dcap_collateral_get_info(c, &info);
			dcap_collateral_free(c);
		}
		break;
	}
	case 1: {
		struct dcap_tcb_info ti;

		memset(&ti, 0, sizeof(ti));
		if (dcap_tcb_info_parse(text, n, &ti, &err) != 0)
			failed(&err);
		dcap_tcb_info_free(&ti);
		break;
	}
	case 2: {
		struct dcap_qe_identity qi;

		memset(&qi, 0, sizeof(qi));
		if (dcap_qe_identity_parse(text, n, &qi, &err) != 0)
			failed(&err);
		dcap_qe_identity_free(&qi);
		break;
	}
	default: {
		struct dcap_json j;
		char why[200] = "";

		memset(&j, 0, sizeof(j));
		if (dcap_json_parse(text, n, &j, why, sizeof(why)) != 0)
			CHECK(why[0]);
		else
			dcap_json_free(&j);
		break;
	}
	}
	return 0;
}
