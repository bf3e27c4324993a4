/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: a certificate or CSR from a peer (RA-TLS server and client certificates, the
 * KMS's CSRs), taken apart as the verifier does. The first byte picks the reader: even a
 * certificate (x509_cert_load: PEM or DER), odd a CSR (x509_csr_load); then x509_cert_info /
 * x509_csr_info (names, SANs, key usage, every extension) and each RA-TLS extension
 * (x509_info_ratls: the quote, event log, app id, special usage, attestation, app info).
 * Invariants beyond ASan/UBSan: failures carry a code; every SAN has a NUL-terminated value; an
 * RA-TLS extension found lies inside its extension's value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "x509/x509.h"

#define CHECK(c)                 \
	do {                     \
		if (!(c))        \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct x509_error err = { 0 };
	struct x509_info info;
	int rc;

	if (len < 1)
		return 0;
	memset(&info, 0, sizeof(info));
	if (data[0] & 1) {
		X509_REQ *req = x509_csr_load(data + 1, len - 1, &err);

		if (!req) {
			CHECK(err.code);
			return 0;
		}
		(void)x509_csr_signature_ok(req);
		rc = x509_csr_info(req, &info, &err);
		X509_REQ_free(req);
	} else {
		X509 *cert = x509_cert_load(data + 1, len - 1, &err);

		if (!cert) {
			CHECK(err.code);
			return 0;
		}
		rc = x509_cert_info(cert, &info, &err);
		X509_free(cert);
	}
	if (rc != 0) {
		CHECK(err.code);
		x509_info_free(&info);
		return 0;
	}
	for (size_t i = 0; i < info.n_sans; i++)
		CHECK(info.sans[i].value && strlen(info.sans[i].value) < 1u << 20);
	for (int w = 0; w < X509_RATLS_COUNT; w++) {
		const uint8_t *p = NULL;
		size_t n = 0;
		int r = x509_info_ratls(&info, (enum x509_ratls_ext)w, &p, &n, &err);

		CHECK(r >= -1 && r <= 1);
		if (r == 1) {
			const struct x509_ext_info *e = x509_info_ext(&info, x509_ratls_oid(w));

			CHECK(e && p >= e->value.data && n <= e->value.len &&
			      (size_t)(p - e->value.data) <= e->value.len - n);
		}
	}
	x509_info_free(&info);
	return 0;
}
