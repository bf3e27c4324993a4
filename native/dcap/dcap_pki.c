/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Certificates, chains, CRLs and raw ECDSA for the DCAP verifier (OpenSSL 3). A chain is
 * checked once, independently of the time (issuer names, signatures, a trailing root that must
 * be the trusted one, then OpenSSL's RFC 5280 path validation without time checks); validity
 * windows are checked on every verification against the caller's time. CRLs: issuer name,
 * signature (cached per issuer), cRLSign, no critical extension, [thisUpdate, nextUpdate].
 */
#include <ctype.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "crypto/crypto.h"
#include "dcap/dcap_internal.h"

static int fill_cert(struct dcap_cert *c, const char *what, const char *code,
		     struct dcap_error *err)
{
	unsigned int n = 0;

	if (!dcap_asn1_time(X509_get0_notBefore(c->x), &c->not_before) ||
	    !dcap_asn1_time(X509_get0_notAfter(c->x), &c->not_after))
		return dcap_fail(err, code, "%s: unreadable validity dates", what);
	if (X509_digest(c->x, EVP_sha256(), c->sha256, &n) != 1 || n != 32)
		return dcap_fail(err, "ENOMEM", "%s: cannot hash the certificate", what);
	c->cn[0] = '\0';
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(c->x), NID_commonName, c->cn,
				      sizeof(c->cn)) < 0)
		snprintf(c->cn, sizeof(c->cn), "(no CN)");
	if (!X509_get0_pubkey(c->x))
		return dcap_fail(err, code, "%s (CN=%s): unsupported public key", what, c->cn);
	return 0;
}

int dcap_cert_load(const uint8_t *data, size_t len, struct dcap_cert *c, const char *what,
		   const char *code, struct dcap_error *err)
{
	static const char begin[] = "-----BEGIN";
	size_t skip = 0;

	memset(c, 0, sizeof(*c));
	if (len > INT32_MAX)
		return dcap_fail(err, code, "%s: too large", what);
	while (skip < len && isspace(data[skip]))
		skip++;
	if (len - skip >= sizeof(begin) - 1 && memcmp(data + skip, begin, sizeof(begin) - 1) == 0) {
		BIO *b = BIO_new_mem_buf(data, (int)len);
		c->x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
	} else {
		const unsigned char *p = data;
		c->x = d2i_X509(NULL, &p, (long)len);
		if (c->x && p != data + len) {
			X509_free(c->x);
			c->x = NULL;
		}
	}
	ERR_clear_error();
	if (!c->x)
		return dcap_fail(err, code, "%s: not a DER or PEM certificate", what);
	if (fill_cert(c, what, code, err)) {
		dcap_cert_free(c);
		return -1;
	}
	return 0;
}

void dcap_cert_free(struct dcap_cert *c)
{
	X509_free(c->x);
	memset(c, 0, sizeof(*c));
}

int dcap_chain_load(const char *pem, size_t len, const char *what, const char *code,
		    struct dcap_chain *ch, struct dcap_error *err)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	int rc = 0;

	memset(ch, 0, sizeof(*ch));
	while (len > 0 && (pem[len - 1] == '\0' || isspace((unsigned char)pem[len - 1])))
		len--;
	if (len == 0 || len > INT32_MAX)
		return dcap_fail(err, code, "%s is empty", what);
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	if (!b)
		return dcap_fail(err, "ENOMEM", "out of memory");
	for (;;) {
		char *data;
		long left = BIO_get_mem_data(b, &data), skip = 0;
		while (skip < left && isspace((unsigned char)data[skip]))
			skip++;
		if (skip == left)
			break;
		if (ch->n == DCAP_MAX_CHAIN) {
			rc = dcap_fail(err, code, "%s has more than %d certificates", what,
				       DCAP_MAX_CHAIN);
			break;
		}
		X509 *x = NULL;
		if ((size_t)(left - skip) >= sizeof(begin) - 1 &&
		    memcmp(data + skip, begin, sizeof(begin) - 1) == 0)
			x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		if (!x) {
			rc = dcap_fail(err, code,
				       "%s: certificate %zu is not a valid PEM certificate", what,
				       ch->n);
			break;
		}
		ch->certs[ch->n].x = x;
		ch->n++;
		rc = fill_cert(&ch->certs[ch->n - 1], what, code, err);
		if (rc)
			break;
	}
	BIO_free(b);
	ERR_clear_error();
	if (rc) {
		dcap_chain_free(ch);
		return rc;
	}
	/* A trailing self-issued certificate is a copy of the root (dcap_chain_verify checks it
	 * is the trusted one): the path is what comes before it. */
	X509 *last = ch->certs[ch->n - 1].x;
	ch->n_path = ch->n;
	if (X509_NAME_cmp(X509_get_subject_name(last), X509_get_issuer_name(last)) == 0)
		ch->n_path--;
	return 0;
}

void dcap_chain_free(struct dcap_chain *ch)
{
	for (size_t i = 0; i < ch->n; i++)
		dcap_cert_free(&ch->certs[i]);
	memset(ch, 0, sizeof(*ch));
}

int dcap_root_load(const uint8_t *data, size_t len, struct dcap_root *root, struct dcap_error *err)
{
	memset(root, 0, sizeof(*root));
	if (dcap_cert_load(data, len, &root->cert, "root CA", "ECHAIN", err))
		return -1;
	X509 *x = root->cert.x;
	root->key = X509_get0_pubkey(x);
	int der_len = i2d_X509(x, &root->der);
	if (der_len > 0)
		root->der_len = (size_t)der_len;
	root->store = X509_STORE_new();
	if (der_len <= 0 || !root->store || X509_STORE_add_cert(root->store, x) != 1) {
		dcap_root_free(root);
		return dcap_fail(err, "ENOMEM", "out of memory");
	}
	const char *why = NULL;
	if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) != 0)
		why = "is not self-issued";
	else if (X509_verify(x, root->key) != 1)
		why = "is not validly self-signed";
	else if (X509_check_ca(x) < 1)
		why = "is not a CA certificate";
	ERR_clear_error();
	if (why) {
		dcap_fail(err, "ECHAIN", "the root CA (CN=%s) %s", root->cert.cn, why);
		dcap_root_free(root);
		return -1;
	}
	return 0;
}

void dcap_root_free(struct dcap_root *root)
{
	X509_STORE_free(root->store);
	OPENSSL_free(root->der);
	dcap_cert_free(&root->cert);
	memset(root, 0, sizeof(*root));
}

/* OpenSSL's RFC 5280 path validation of ch->certs[0..n_path) up to the root, no time. */
static int path_validate(const struct dcap_root *root, const struct dcap_chain *ch,
			 const char *what, struct dcap_error *err)
{
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int rc = -1;

	if (!untrusted || !ctx) {
		dcap_fail(err, "ENOMEM", "out of memory");
		goto out;
	}
	for (size_t i = 1; i < ch->n_path; i++)
		if (!sk_X509_push(untrusted, ch->certs[i].x)) {
			dcap_fail(err, "ENOMEM", "out of memory");
			goto out;
		}
	if (X509_STORE_CTX_init(ctx, root->store, ch->certs[0].x, untrusted) != 1) {
		dcap_fail(err, "ENOMEM", "out of memory");
		goto out;
	}
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_NO_CHECK_TIME | X509_V_FLAG_X509_STRICT);
	if (X509_verify_cert(ctx) != 1) {
		int depth = X509_STORE_CTX_get_error_depth(ctx);
		const char *cn = depth >= 0 && (size_t)depth < ch->n_path ? ch->certs[depth].cn
									  : root->cert.cn;
		dcap_fail(err, "ECHAIN", "%s: certificate %d (CN=%s): %s", what, depth, cn,
			  X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	if ((size_t)sk_X509_num(X509_STORE_CTX_get0_chain(ctx)) != ch->n_path + 1) {
		dcap_fail(err, "ECHAIN", "%s: the validated path does not use every certificate",
			  what);
		goto out;
	}
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	sk_X509_free(untrusted);
	ERR_clear_error();
	return rc;
}

int dcap_chain_verify(const struct dcap_root *root, const struct dcap_chain *ch, const char *what,
		      struct dcap_error *err)
{
	char fp[65];

	if (ch->n_path < ch->n && memcmp(ch->certs[ch->n - 1].sha256, root->cert.sha256, 32) != 0) {
		dcap_hex(ch->certs[ch->n - 1].sha256, 32, fp);
		return dcap_fail(err, "ECHAIN",
				 "%s ends in a root (CN=%s, SHA-256 %s) that is not the trusted "
				 "root (CN=%s)",
				 what, ch->certs[ch->n - 1].cn, fp, root->cert.cn);
	}
	if (ch->n_path == 0)
		return dcap_fail(err, "ECHAIN", "%s has no certificate below the root", what);
	for (size_t i = 0; i < ch->n_path; i++) {
		const struct dcap_cert *c = &ch->certs[i];
		const struct dcap_cert *up = i + 1 < ch->n_path ? &ch->certs[i + 1] : &root->cert;
		if (X509_NAME_cmp(X509_get_issuer_name(c->x), X509_get_subject_name(up->x)) != 0)
			return dcap_fail(err, "ECHAIN",
					 "%s: certificate %zu (CN=%s) is not issued by the next "
					 "certificate (CN=%s)%s",
					 what, i, c->cn, up->cn,
					 up == &root->cert ? ", the trusted root" : "");
		int ok = X509_verify(c->x, X509_get0_pubkey(up->x));
		ERR_clear_error();
		if (ok != 1)
			return dcap_fail(err, "ECHAIN",
					 "%s: the signature of certificate %zu (CN=%s) does not "
					 "verify with the key of CN=%s",
					 what, i, c->cn, up->cn);
	}
	return path_validate(root, ch, what, err);
}

static int check_window(const struct dcap_cert *c, int64_t now, const char *what,
			struct dcap_error *err)
{
	char t[32], n[32];

	if (now >= c->not_before && now <= c->not_after)
		return 0;
	dcap_format_time(now, n);
	if (now < c->not_before) {
		dcap_format_time(c->not_before, t);
		return dcap_fail(err, "EEXPIRED",
				 "%s: certificate CN=%s is not valid before %s (now %s)", what,
				 c->cn, t, n);
	}
	dcap_format_time(c->not_after, t);
	return dcap_fail(err, "EEXPIRED", "%s: certificate CN=%s expired at %s (now %s)", what,
			 c->cn, t, n);
}

int dcap_chain_check_time(const struct dcap_root *root, const struct dcap_chain *ch, int64_t now,
			  const char *what, struct dcap_error *err)
{
	for (size_t i = 0; i < ch->n_path; i++)
		if (check_window(&ch->certs[i], now, what, err))
			return -1;
	return check_window(&root->cert, now, what, err);
}

int dcap_crl_load(const uint8_t *der, size_t len, const char *what, struct dcap_crl *crl,
		  struct dcap_error *err)
{
	const unsigned char *p = der;

	memset(crl, 0, sizeof(*crl));
	crl->what = what;
	crl->crl = len <= INT32_MAX ? d2i_X509_CRL(NULL, &p, (long)len) : NULL;
	ERR_clear_error();
	if (!crl->crl || p != der + len) {
		dcap_crl_free(crl);
		return dcap_fail(err, "ECOLLATERAL", "%s: not a DER CRL", what);
	}
	crl->what = what;
	if (!dcap_asn1_time(X509_CRL_get0_lastUpdate(crl->crl), &crl->this_update) ||
	    !dcap_asn1_time(X509_CRL_get0_nextUpdate(crl->crl), &crl->next_update)) {
		dcap_crl_free(crl);
		return dcap_fail(err, "ECOLLATERAL",
				 "%s: missing or unreadable thisUpdate/nextUpdate", what);
	}
	return 0;
}

void dcap_crl_free(struct dcap_crl *crl)
{
	X509_CRL_free(crl->crl);
	memset(crl, 0, sizeof(*crl));
}

int dcap_crl_check(struct dcap_crl *crl, const struct dcap_cert *issuer, int64_t now,
		   struct dcap_error *err)
{
	char t[32], n[32];

	if (X509_NAME_cmp(X509_CRL_get_issuer(crl->crl), X509_get_subject_name(issuer->x)) != 0) {
		char name[160] = "";
		X509_NAME_get_text_by_NID(X509_CRL_get_issuer(crl->crl), NID_commonName, name,
					  sizeof(name));
		return dcap_fail(err, "ECRL", "the %s is issued by CN=%s, not by CN=%s", crl->what,
				 name, issuer->cn);
	}
	if (!crl->verified || memcmp(crl->verified_by, issuer->sha256, 32) != 0) {
		int ok = X509_CRL_verify(crl->crl, X509_get0_pubkey(issuer->x));
		ERR_clear_error();
		if (ok != 1)
			return dcap_fail(err, "ECRL",
					 "the signature of the %s does not verify with the key of "
					 "CN=%s",
					 crl->what, issuer->cn);
		crl->verified = true;
		memcpy(crl->verified_by, issuer->sha256, 32);
	}
	if (!(X509_get_key_usage(issuer->x) & KU_CRL_SIGN))
		return dcap_fail(err, "ECRL", "the %s issuer CN=%s may not sign CRLs (no cRLSign)",
				 crl->what, issuer->cn);
	for (int i = 0; i < X509_CRL_get_ext_count(crl->crl); i++)
		if (X509_EXTENSION_get_critical(X509_CRL_get_ext(crl->crl, i)))
			return dcap_fail(err, "ECRL",
					 "the %s has an unsupported critical extension", crl->what);
	if (now >= crl->this_update && now <= crl->next_update)
		return 0;
	dcap_format_time(now, n);
	if (now < crl->this_update) {
		dcap_format_time(crl->this_update, t);
		return dcap_fail(err, "ECRL",
				 "the %s is not valid before its thisUpdate %s (now %s)", crl->what,
				 t, n);
	}
	if (now > crl->next_update) {
		dcap_format_time(crl->next_update, t);
		return dcap_fail(err, "ECRL", "the %s expired at its nextUpdate %s (now %s)",
				 crl->what, t, n);
	}
	return 0;
}

int dcap_crl_check_serial(const struct dcap_crl *crl, const struct dcap_cert *cert,
			  const char *what, struct dcap_error *err)
{
	X509_REVOKED *rev = NULL;

	if (X509_CRL_get0_by_serial(crl->crl, &rev, X509_get0_serialNumber(cert->x)) != 1)
		return 0;
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert->x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	dcap_fail(err, "ECRL", "%s: certificate CN=%s (serial %s) is revoked by the %s", what,
		  cert->cn, hex ? hex : "?", crl->what);
	OPENSSL_free(hex);
	BN_free(bn);
	return -1;
}

EVP_PKEY *dcap_p256_key(const uint8_t xy[64])
{
	uint8_t pub65[65] = { 0x04 };
	memcpy(pub65 + 1, xy, 64);
	return crypto_p256_public_key(pub65);
}

/* DER INTEGER of a 32-byte unsigned big-endian value; returns the bytes written. */
static size_t der_uint(const uint8_t *v, uint8_t *out)
{
	size_t skip = 0;
	while (skip < 31 && v[skip] == 0)
		skip++;
	size_t n = 32 - skip, pad = v[skip] & 0x80 ? 1 : 0;
	out[0] = 0x02;
	out[1] = (uint8_t)(n + pad);
	out[2] = 0;
	memcpy(out + 2 + pad, v + skip, n);
	return 2 + pad + n;
}

bool dcap_ecdsa_verify(EVP_PKEY *key, const void *msg, size_t len, const uint8_t sig[64])
{
	uint8_t der[2 + 2 * 35], digest[32];
	unsigned int dlen = 0;

	size_t n = der_uint(sig, der + 2);
	n += der_uint(sig + 32, der + 2 + n);
	der[0] = 0x30;
	der[1] = (uint8_t)n;
	if (!key || EVP_Digest(msg, len, digest, &dlen, EVP_sha256(), NULL) != 1)
		return false;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	bool ok = ctx && EVP_PKEY_verify_init(ctx) == 1 &&
		  EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
		  EVP_PKEY_verify(ctx, der, n + 2, digest, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}
