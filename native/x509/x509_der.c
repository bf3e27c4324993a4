/* SPDX-License-Identifier: Apache-2.0 */
/*
 * x509 building blocks: errors and buffers, the RA-TLS OID table, DER OCTET STRING wrapping,
 * the report_data hashes (SHA-512 of "tag:" || data) and PEM blocks.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "x509/x509.h"

static void fill(struct x509_error *err, const char *code, const char *fmt, va_list ap)
{
	if (!err)
		return;
	err->code = code;
	err->verify_error = 0;
	err->verify_depth = -1;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int x509_fail(struct x509_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fill(err, code, fmt, ap);
	va_end(ap);
	return -1;
}

int x509_fail_ssl(struct x509_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fill(err, code, fmt, ap);
	va_end(ap);
	unsigned long e = ERR_peek_last_error();
	if (err && e) {
		size_t n = strlen(err->msg);
		if (n + 3 < sizeof(err->msg)) {
			memcpy(err->msg + n, " (", 2);
			ERR_error_string_n(e, err->msg + n + 2, sizeof(err->msg) - n - 3);
			n = strlen(err->msg);
			if (n + 1 < sizeof(err->msg)) {
				err->msg[n] = ')';
				err->msg[n + 1] = '\0';
			}
		}
	}
	ERR_clear_error();
	return -1;
}

int x509_buf_set(struct x509_buf *out, const void *data, size_t len, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	out->data = malloc(len + 1);
	if (!out->data)
		return x509_fail(err, "ENOMEM", "out of memory");
	if (len)
		memcpy(out->data, data, len);
	out->data[len] = 0;
	out->len = len;
	return 0;
}

void x509_buf_free(struct x509_buf *b)
{
	if (!b)
		return;
	if (b->data) {
		OPENSSL_cleanse(b->data, b->len);
		free(b->data);
	}
	b->data = NULL;
	b->len = 0;
}

static const struct {
	const char *oid, *name;
} ratls[X509_RATLS_COUNT] = {
	[X509_RATLS_QUOTE] = { "1.3.6.1.4.1.62397.1.1", "quote" },
	[X509_RATLS_EVENT_LOG] = { "1.3.6.1.4.1.62397.1.2", "event_log" },
	[X509_RATLS_APP_ID] = { "1.3.6.1.4.1.62397.1.3", "app_id" },
	[X509_RATLS_SPECIAL_USAGE] = { "1.3.6.1.4.1.62397.1.4", "special_usage" },
	[X509_RATLS_ATTESTATION] = { "1.3.6.1.4.1.62397.1.8", "attestation" },
	[X509_RATLS_APP_INFO] = { "1.3.6.1.4.1.62397.1.9", "app_info" },
};

const char *x509_ratls_oid(enum x509_ratls_ext which)
{
	return (unsigned)which < X509_RATLS_COUNT ? ratls[which].oid : NULL;
}

const char *x509_ratls_name(enum x509_ratls_ext which)
{
	return (unsigned)which < X509_RATLS_COUNT ? ratls[which].name : NULL;
}

struct x509_ext_spec x509_ratls_ext(enum x509_ratls_ext which, const void *data, size_t len)
{
	struct x509_ext_spec s = {
		.oid = x509_ratls_oid(which),
		.data = data,
		.len = len,
		.critical = false,
		.encoding = X509_EXT_OCTETS,
	};
	return s;
}

int x509_octets_wrap(const void *data, size_t len, struct x509_buf *out, struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	if (len > 0x7fffffff)
		return x509_fail(err, "EINVAL", "content too large for an OCTET STRING");
	// header: tag, then short form (< 128) or 0x8N followed by N big-endian length bytes
	uint8_t hdr[6];
	size_t h = 0;
	hdr[h++] = 0x04;
	if (len < 0x80) {
		hdr[h++] = (uint8_t)len;
	} else {
		int nbytes = len > 0xffffff ? 4 : len > 0xffff ? 3 : len > 0xff ? 2 : 1;
		hdr[h++] = (uint8_t)(0x80 | nbytes);
		for (int i = nbytes - 1; i >= 0; i--)
			hdr[h++] = (uint8_t)(len >> (8 * i));
	}
	out->data = malloc(h + len + 1);
	if (!out->data)
		return x509_fail(err, "ENOMEM", "out of memory");
	memcpy(out->data, hdr, h);
	if (len)
		memcpy(out->data + h, data, len);
	out->len = h + len;
	out->data[out->len] = 0;
	return 0;
}

int x509_octets_unwrap(const uint8_t *der, size_t len, const uint8_t **content, size_t *clen,
		       struct x509_error *err)
{
	if (len < 2 || der[0] != 0x04)
		return x509_fail(err, "EPARSE", "not a DER OCTET STRING");
	size_t n, h;
	if (der[1] < 0x80) {
		n = der[1];
		h = 2;
	} else {
		size_t nbytes = der[1] & 0x7f;
		if (nbytes == 0 || nbytes > 4 || len < 2 + nbytes)
			return x509_fail(err, "EPARSE", "bad OCTET STRING length");
		n = 0;
		for (size_t i = 0; i < nbytes; i++)
			n = (n << 8) | der[2 + i];
		// DER: the shortest form, no leading zero byte
		if (n < 0x80 || der[2] == 0)
			return x509_fail(err, "EPARSE", "OCTET STRING length is not minimal (BER)");
		h = 2 + nbytes;
	}
	if (n != len - h)
		return x509_fail(err, "EPARSE", "OCTET STRING length %zu does not match %zu bytes",
				 n, len - h);
	*content = der + h;
	*clen = n;
	return 0;
}

int x509_report_data(const char *tag, const void *data, size_t len, uint8_t out[64],
		     struct x509_error *err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok = md && EVP_DigestInit_ex(md, EVP_sha512(), NULL) == 1 &&
		 EVP_DigestUpdate(md, tag, strlen(tag)) == 1 && EVP_DigestUpdate(md, ":", 1) == 1 &&
		 EVP_DigestUpdate(md, data, len) == 1 && EVP_DigestFinal_ex(md, out, &n) == 1 &&
		 n == 64;
	EVP_MD_CTX_free(md);
	return ok ? 0 : x509_fail_ssl(err, "ECRYPTO", "SHA-512 failed");
}

int x509_ratls_report_data(const uint8_t *spki_der, size_t len, uint8_t out[64],
			   struct x509_error *err)
{
	return x509_report_data("ratls-cert", spki_der, len, out, err);
}

void x509_pem_blocks_free(struct x509_pem_block *blocks, size_t n)
{
	for (size_t i = 0; blocks && i < n; i++) {
		free(blocks[i].label);
		x509_buf_free(&blocks[i].der);
	}
	free(blocks);
}

int x509_pem_decode(const char *pem, size_t len, struct x509_pem_block **blocks, size_t *n,
		    struct x509_error *err)
{
	*blocks = NULL;
	*n = 0;
	if (len > 0x7fffffff)
		return x509_fail(err, "EINVAL", "PEM text too large");
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return x509_fail_ssl(err, "ENOMEM", "out of memory");
	struct x509_pem_block *list = NULL;
	size_t count = 0, cap = 0;
	int rc = 0;
	for (;;) {
		char *name = NULL, *header = NULL;
		unsigned char *data = NULL;
		long dlen = 0;
		if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
			unsigned long e = ERR_peek_last_error();
			// the loop ends on "no start line" once something was read
			if (ERR_GET_REASON(e) != PEM_R_NO_START_LINE || count == 0)
				rc = x509_fail_ssl(err, "EPARSE",
						   count ? "malformed PEM block"
							 : "no PEM block found");
			ERR_clear_error();
			break;
		}
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct x509_pem_block *grown = realloc(list, ncap * sizeof(*list));
			if (!grown) {
				OPENSSL_free(name);
				OPENSSL_free(header);
				OPENSSL_clear_free(data, (size_t)dlen);
				rc = x509_fail(err, "ENOMEM", "out of memory");
				break;
			}
			list = grown;
			cap = ncap;
		}
		struct x509_pem_block *b = &list[count];
		b->label = strdup(name);
		b->der.data = malloc((size_t)dlen + 1);
		b->der.len = (size_t)dlen;
		if (b->der.data) {
			memcpy(b->der.data, data, (size_t)dlen);
			b->der.data[dlen] = 0;
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_clear_free(data, (size_t)dlen);
		count++;
		if (!b->label || !b->der.data) {
			rc = x509_fail(err, "ENOMEM", "out of memory");
			break;
		}
	}
	BIO_free(bio);
	if (rc) {
		x509_pem_blocks_free(list, count);
		return rc;
	}
	*blocks = list;
	*n = count;
	return 0;
}

int x509_pem_encode(const char *label, const void *der, size_t len, struct x509_buf *out,
		    struct x509_error *err)
{
	*out = (struct x509_buf){ 0 };
	if (len > 0x7fffffff)
		return x509_fail(err, "EINVAL", "data too large");
	BIO *bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio(bio, label, "", der, (long)len) <= 0) {
		BIO_free(bio);
		return x509_fail_ssl(err, "ECRYPTO", "cannot write PEM");
	}
	char *p = NULL;
	long n = BIO_get_mem_data(bio, &p);
	int rc = x509_buf_set(out, p, (size_t)n, err);
	BIO_free(bio);
	return rc;
}
