/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x509 chain verification: a leaf through untrusted intermediates to given trust anchors, at a
 * given time, for a TLS purpose and optionally a host name, with OpenSSL's X509_verify_cert.
 */
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "x509/x509.h"

int x509_verify(X509 *leaf, X509 *const *chain, size_t n_chain, X509 *const *roots, size_t n_roots,
		const struct x509_verify_opts *o, struct x509_error *err)
{
	static const struct x509_verify_opts defaults = { 0 };
	if (!o)
		o = &defaults;
	if (!leaf)
		return x509_fail(err, "EINVAL", "no leaf certificate");
	if (n_roots == 0)
		return x509_fail(err, "EINVAL", "no trusted root given");
	int rc = -1;
	X509_STORE *store = X509_STORE_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	if (!store || !untrusted || !ctx) {
		x509_fail_ssl(err, "ENOMEM", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n_roots; i++) {
		if (!roots[i] || X509_STORE_add_cert(store, roots[i]) != 1) {
			x509_fail_ssl(err, "EINVAL", "cannot add trusted certificate %zu", i + 1);
			goto out;
		}
	}
	for (size_t i = 0; i < n_chain; i++) {
		if (!chain[i] || !sk_X509_push(untrusted, chain[i])) {
			x509_fail(err, "EINVAL", "bad intermediate certificate %zu", i + 1);
			goto out;
		}
	}
	if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
		x509_fail_ssl(err, "ECRYPTO", "cannot set up verification");
		goto out;
	}
	X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_time(param, (time_t)(o->time ? o->time : (int64_t)time(NULL)));
	if (o->partial)
		X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
	if (o->purpose == X509_FOR_SERVER)
		X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	else if (o->purpose == X509_FOR_CLIENT)
		X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	if (o->hostname) {
		ASN1_OCTET_STRING *ip = a2i_IPADDRESS(o->hostname);
		ERR_clear_error();
		int ok = ip ? X509_VERIFY_PARAM_set1_ip(param, ASN1_STRING_get0_data(ip),
							(size_t)ASN1_STRING_length(ip))
			    : X509_VERIFY_PARAM_set1_host(param, o->hostname, 0);
		ASN1_OCTET_STRING_free(ip);
		if (ok != 1) {
			x509_fail_ssl(err, "EINVAL", "bad host name '%s'", o->hostname);
			goto out;
		}
	}
	if (X509_verify_cert(ctx) == 1) {
		rc = 0;
	} else {
		int e = X509_STORE_CTX_get_error(ctx);
		int depth = X509_STORE_CTX_get_error_depth(ctx);
		x509_fail(err, "EVERIFY", "%s (depth %d)", X509_verify_cert_error_string(e), depth);
		if (err) {
			err->verify_error = e;
			err->verify_depth = depth;
		}
		ERR_clear_error();
	}
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted); // the certificates stay the caller's
	X509_STORE_free(store);
	return rc;
}
