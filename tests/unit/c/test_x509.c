/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of native/x509 (x509.h): P-256 keys (the generator point for scalar 1, PKCS#8
 * layout), OCTET STRING wrapping, the RA-TLS report_data binding cross-checked with
 * `openssl dgst`, byte-exact DER of every RA-TLS extension, a CA and a leaf with every option
 * parsed back, CSRs, PEM, and the error cases. Chain verification: test_x509_verify.c.
 */
#define _GNU_SOURCE // memmem
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "x509/x509.h"

/* The P-256 generator G = 1·G (SEC 2 / FIPS 186-4), uncompressed. */
static const char *const G_HEX = "04"
				 "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
				 "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
/* The P-256 group order n. */
static const char *const N_HEX = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
/* DER of OID 1.3.6.1.4.1.62397.1 (the private arc), without the last arc and the header. */
static const uint8_t ARC[] = { 0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xe7, 0x3d, 0x01 };

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
	out[2 * n] = 0;
}

static size_t unhex(const char *h, uint8_t *out)
{
	size_t n = strlen(h) / 2;
	for (size_t i = 0; i < n; i++)
		sscanf(h + 2 * i, "%2hhx", &out[i]);
	return n;
}

static EVP_PKEY *scalar_key(uint8_t last)
{
	uint8_t d[32] = { 0 };
	d[31] = last;
	EVP_PKEY *k = x509_key_from_scalar(d, NULL);
	assert_non_null(k);
	return k;
}

static void test_key_from_scalar(void **state)
{
	EVP_PKEY *one = scalar_key(1);
	uint8_t pt[65], d[32];
	char h[2 * 65 + 1];
	assert_int_equal(x509_key_public_point(one, pt, NULL), 0);
	hex(pt, 65, h);
	assert_string_equal(h, G_HEX);
	assert_int_equal(x509_key_scalar(one, d, NULL), 0);
	assert_int_equal(d[31], 1);
	assert_true(x509_key_is_private(one));
	EVP_PKEY_free(one);

	// 0 and n are not scalars; n - 1 is
	struct x509_error err;
	uint8_t n[32];
	unhex(N_HEX, n);
	memset(d, 0, sizeof(d));
	assert_null(x509_key_from_scalar(d, &err));
	assert_string_equal(err.code, "EKEY");
	assert_null(x509_key_from_scalar(n, &err));
	assert_string_equal(err.code, "EKEY");
	n[31]--;
	EVP_PKEY *last = x509_key_from_scalar(n, &err);
	assert_non_null(last);
	// (n-1)·G = -G: same x as G
	assert_int_equal(x509_key_public_point(last, pt, NULL), 0);
	hex(pt, 33, h);
	assert_memory_equal(h, G_HEX, 66);
	EVP_PKEY_free(last);
}

static void test_key_export_load(void **state)
{
	EVP_PKEY *k = x509_key_generate(NULL);
	assert_non_null(k);
	struct x509_buf der, pem, spki, pub;
	assert_int_equal(x509_key_pkcs8_der(k, &der, NULL), 0);
	// 138 bytes: PKCS#8 v0, ecPublicKey + prime256v1, ECPrivateKey v1 with the public key and
	// no parameters (the layout dstack's derive_dh_secret hashes)
	static const uint8_t head[] = { 0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06,
					0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
					0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
					0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20 };
	assert_int_equal(der.len, 138);
	assert_memory_equal(der.data, head, sizeof(head));
	assert_memory_equal(der.data + 68, "\xa1\x44\x03\x42\x00\x04", 6);
	uint8_t d[32];
	assert_int_equal(x509_key_scalar(k, d, NULL), 0);
	assert_memory_equal(der.data + 36, d, 32);

	assert_int_equal(x509_key_pkcs8_pem(k, &pem, NULL), 0);
	assert_non_null(strstr((char *)pem.data, "-----BEGIN PRIVATE KEY-----"));
	assert_int_equal(x509_key_spki_der(k, &spki, NULL), 0);
	assert_int_equal(spki.len, 91);
	assert_int_equal(x509_key_public_pem(k, &pub, NULL), 0);
	assert_non_null(strstr((char *)pub.data, "-----BEGIN PUBLIC KEY-----"));

	// every form loads back to the same key
	const struct x509_buf *forms[] = { &der, &pem, &spki, &pub };
	for (int i = 0; i < 4; i++) {
		EVP_PKEY *back = x509_key_load(forms[i]->data, forms[i]->len, NULL);
		assert_non_null(back);
		assert_int_equal(EVP_PKEY_eq(back, k), 1);
		assert_int_equal(x509_key_is_private(back), i < 2);
		EVP_PKEY_free(back);
	}
	// a public key exports no private parts
	EVP_PKEY *pubonly = x509_key_load(spki.data, spki.len, NULL);
	struct x509_error err;
	struct x509_buf none;
	assert_int_equal(x509_key_pkcs8_der(pubonly, &none, &err), -1);
	assert_string_equal(err.code, "EKEY");
	assert_int_equal(x509_key_scalar(pubonly, d, &err), -1);
	EVP_PKEY_free(pubonly);
	assert_null(x509_key_load("garbage that is no key", 22, &err));
	assert_string_equal(err.code, "EKEY");
	assert_null(x509_key_load("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
				  58, &err));
	assert_string_equal(err.code, "EKEY");

	x509_buf_free(&der);
	x509_buf_free(&pem);
	x509_buf_free(&spki);
	x509_buf_free(&pub);
	EVP_PKEY_free(k);
}

static void test_octets(void **state)
{
	static const size_t sizes[] = { 0, 5, 127, 128, 255, 256, 300, 70000 };
	static const uint8_t heads[][5] = {
		{ 0x04, 0x00 },
		{ 0x04, 0x05 },
		{ 0x04, 0x7f },
		{ 0x04, 0x81, 0x80 },
		{ 0x04, 0x81, 0xff },
		{ 0x04, 0x82, 0x01, 0x00 },
		{ 0x04, 0x82, 0x01, 0x2c },
		{ 0x04, 0x83, 0x01, 0x11, 0x70 },
	};
	static const size_t head_len[] = { 2, 2, 2, 3, 3, 4, 4, 5 };
	uint8_t *data = malloc(70000);
	for (size_t i = 0; i < 70000; i++)
		data[i] = (uint8_t)(i * 7);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct x509_buf b;
		assert_int_equal(x509_octets_wrap(data, sizes[i], &b, NULL), 0);
		assert_int_equal(b.len, head_len[i] + sizes[i]);
		assert_memory_equal(b.data, heads[i], head_len[i]);
		const uint8_t *c;
		size_t clen;
		assert_int_equal(x509_octets_unwrap(b.data, b.len, &c, &clen, NULL), 0);
		assert_int_equal(clen, sizes[i]);
		assert_ptr_equal(c, b.data + head_len[i]);
		// one byte more or less is refused
		struct x509_error err;
		assert_int_equal(x509_octets_unwrap(b.data, b.len - 1, &c, &clen, &err), -1);
		assert_string_equal(err.code, "EPARSE");
		x509_buf_free(&b);
	}
	free(data);
	const uint8_t *c;
	size_t clen;
	static const uint8_t not_octets[] = { 0x0c, 0x01, 0x41 };
	static const uint8_t ber_len[] = { 0x04, 0x81, 0x01, 0x41 };
	static const uint8_t trailing[] = { 0x04, 0x01, 0x41, 0x00 };
	assert_int_equal(x509_octets_unwrap(not_octets, 3, &c, &clen, NULL), -1);
	assert_int_equal(x509_octets_unwrap(ber_len, 4, &c, &clen, NULL), -1);
	assert_int_equal(x509_octets_unwrap(trailing, 4, &c, &clen, NULL), -1);
}

/* SHA-512 of @p data computed by the openssl CLI, as hex. */
static void openssl_sha512(const uint8_t *data, size_t len, char out[129])
{
	char path[] = "/tmp/x509-dgst-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "openssl dgst -sha512 -r %s", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(out, 129, p));
	out[128] = 0;
	pclose(p);
	unlink(path);
}

static void test_report_data(void **state)
{
	// the SPKI of the key with scalar 1: a fixed, well-known public key
	EVP_PKEY *one = scalar_key(1);
	struct x509_buf spki;
	assert_int_equal(x509_key_spki_der(one, &spki, NULL), 0);
	uint8_t expect_spki[91];
	unhex("3059301306072a8648ce3d020106082a8648ce3d030107034200", expect_spki);
	unhex(G_HEX, expect_spki + 26);
	assert_memory_equal(spki.data, expect_spki, 91);

	uint8_t rd[64];
	char got[129], want[129];
	assert_int_equal(x509_ratls_report_data(spki.data, spki.len, rd, NULL), 0);
	hex(rd, 64, got);
	uint8_t msg[11 + 91];
	memcpy(msg, "ratls-cert:", 11);
	memcpy(msg + 11, spki.data, spki.len);
	openssl_sha512(msg, sizeof(msg), want);
	assert_string_equal(got, want);
	// the generic form with another tag
	assert_int_equal(x509_report_data("app-data", "hello", 5, rd, NULL), 0);
	hex(rd, 64, got);
	openssl_sha512((const uint8_t *)"app-data:hello", 14, want);
	assert_string_equal(got, want);
	x509_buf_free(&spki);
	EVP_PKEY_free(one);
}

static X509 *make(const struct x509_cert_opts *o, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey)
{
	struct x509_error err = { 0 };
	X509 *x = x509_cert_create(o, key, issuer, ikey, &err);
	if (!x)
		fail_msg("x509_cert_create: %s: %s", err.code, err.msg);
	return x;
}

static const struct x509_ext_info *ext_of(const struct x509_info *info, const char *oid)
{
	const struct x509_ext_info *e = x509_info_ext(info, oid);
	assert_non_null(e);
	return e;
}

static void test_ratls_ext_der(void **state)
{
	// distinct contents, one of them long enough for a two-byte length
	static uint8_t big[300];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	const struct {
		enum x509_ratls_ext which;
		const void *data;
		size_t len;
		uint8_t last_arc;
	} cases[] = {
		{ X509_RATLS_QUOTE, big, sizeof(big), 1 },
		{ X509_RATLS_EVENT_LOG, "[]", 2, 2 },
		{ X509_RATLS_APP_ID,
		  "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
		  "\x10\x11\x12\x13\x14",
		  20, 3 },
		{ X509_RATLS_SPECIAL_USAGE, "app:custom", 10, 4 },
		{ X509_RATLS_ATTESTATION, "\x00\x00attest", 8, 8 },
		{ X509_RATLS_APP_INFO, "\x98\xc4\x00", 3, 9 },
	};
	struct x509_ext_spec exts[6];
	for (int i = 0; i < 6; i++)
		exts[i] = x509_ratls_ext(cases[i].which, cases[i].data, cases[i].len);
	EVP_PKEY *k = x509_key_generate(NULL);
	struct x509_cert_opts o = { .cn = "ext", .pathlen = -1, .exts = exts, .n_exts = 6 };
	X509 *x = make(&o, k, NULL, NULL);
	for (int i = 0; i < 6; i++) {
		// the whole Extension: SEQUENCE { OID, OCTET STRING { OCTET STRING { content } } },
		// no criticality flag
		ASN1_OBJECT *obj = OBJ_txt2obj(x509_ratls_oid(cases[i].which), 1);
		int at = X509_get_ext_by_OBJ(x, obj, -1);
		ASN1_OBJECT_free(obj);
		assert_true(at >= 0);
		unsigned char *der = NULL;
		int n = i2d_X509_EXTENSION(X509_get_ext(x, at), &der);
		uint8_t want[400];
		size_t w = 0, len = cases[i].len;
		size_t inner = (len < 128 ? 2 : 4) + len;     // 04 L content
		size_t outer = (inner < 128 ? 2 : 4) + inner; // 04 L inner
		size_t seq = 2 + sizeof(ARC) + 1 + outer;     // OID + value
		want[w++] = 0x30;
		if (seq >= 128) {
			want[w++] = 0x82;
			want[w++] = (uint8_t)(seq >> 8);
		}
		want[w++] = (uint8_t)seq;
		want[w++] = 0x06;
		want[w++] = sizeof(ARC) + 1;
		memcpy(want + w, ARC, sizeof(ARC));
		w += sizeof(ARC);
		want[w++] = cases[i].last_arc;
		want[w++] = 0x04;
		if (inner >= 128) {
			want[w++] = 0x82;
			want[w++] = (uint8_t)(inner >> 8);
		}
		want[w++] = (uint8_t)inner;
		want[w++] = 0x04;
		if (len >= 128) {
			want[w++] = 0x82;
			want[w++] = (uint8_t)(len >> 8);
		}
		want[w++] = (uint8_t)len;
		memcpy(want + w, cases[i].data, len);
		w += len;
		assert_int_equal(n, (int)w);
		assert_memory_equal(der, want, w);
		OPENSSL_free(der);
	}
	// and they read back unwrapped
	struct x509_info info;
	assert_int_equal(x509_cert_info(x, &info, NULL), 0);
	for (int i = 0; i < 6; i++) {
		const uint8_t *data;
		size_t len;
		assert_int_equal(x509_info_ratls(&info, cases[i].which, &data, &len, NULL), 1);
		assert_int_equal(len, cases[i].len);
		assert_memory_equal(data, cases[i].data, len);
		assert_false(ext_of(&info, x509_ratls_oid(cases[i].which))->critical);
	}
	x509_info_free(&info);
	X509_free(x);
	EVP_PKEY_free(k);
}

static bool has_san(const struct x509_info *info, enum x509_san_type t, const char *v)
{
	for (size_t i = 0; i < info->n_sans; i++)
		if (info->sans[i].type == t && strcmp(info->sans[i].value, v) == 0)
			return true;
	return false;
}

/* The first 20 bytes of SHA-256(SPKI of @p k) (rcgen's key identifier). */
static void key_id(EVP_PKEY *k, uint8_t id[20])
{
	struct x509_buf spki;
	uint8_t md[32];
	assert_int_equal(x509_key_spki_der(k, &spki, NULL), 0);
	EVP_Digest(spki.data, spki.len, md, NULL, EVP_sha256(), NULL);
	memcpy(id, md, 20);
	x509_buf_free(&spki);
}

static void test_ca_and_leaf(void **state)
{
	EVP_PKEY *ca_key = x509_key_generate(NULL), *key = x509_key_generate(NULL);
	struct x509_cert_opts ca_o = {
		.cn = "Dstack KMS CA",
		.org = "Dstack",
		.ca = true,
		.pathlen = 1,
		.key_usage = X509_KU_DIGITAL_SIGNATURE | X509_KU_KEY_CERT_SIGN | X509_KU_CRL_SIGN,
	};
	X509 *ca = make(&ca_o, ca_key, NULL, NULL);

	const char *sans[] = { "app.example.com", "10.1.2.3", "::1", "*.example.org" };
	uint8_t att[] = { 0x00, 0x00, 0x01, 0x02 }, app_id[20], serial[] = { 0x01, 0x23, 0x45 };
	memset(app_id, 0xab, sizeof(app_id));
	static const uint8_t custom_der[] = { 0x30, 0x03, 0x02, 0x01, 0x07 }; // SEQUENCE { 7 }
	struct x509_ext_spec exts[] = {
		x509_ratls_ext(X509_RATLS_ATTESTATION, att, sizeof(att)),
		x509_ratls_ext(X509_RATLS_APP_ID, app_id, sizeof(app_id)),
		x509_ratls_ext(X509_RATLS_SPECIAL_USAGE, "app:custom", 10),
		{ .oid = "1.2.3.4.5", .data = custom_der, .len = 5, .encoding = X509_EXT_DER },
		{ .oid = "1.2.3.4.6", .data = (const uint8_t *)"opaque", .len = 6 },
	};
	struct x509_cert_opts o = {
		.cn = "app.example.com",
		.org = "Moonstack",
		.sans = sans,
		.n_sans = 4,
		.not_before = 1700000000,
		.not_after = 1800000000,
		.serial = serial,
		.serial_len = sizeof(serial),
		.pathlen = -1,
		.key_usage = X509_KU_DIGITAL_SIGNATURE,
		.eku = X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH,
		.exts = exts,
		.n_exts = 5,
	};
	X509 *leaf = make(&o, key, ca, ca_key);

	struct x509_info ci, li;
	assert_int_equal(x509_cert_info(ca, &ci, NULL), 0);
	assert_int_equal(x509_cert_info(leaf, &li, NULL), 0);
	// the CA: as rcgen makes the KMS root (O first, then CN), 1975 notBefore, 10 years
	assert_int_equal(ci.version, 3);
	assert_string_equal(ci.cn, "Dstack KMS CA");
	assert_string_equal(ci.org, "Dstack");
	assert_string_equal(ci.subject, "CN=Dstack KMS CA,O=Dstack");
	assert_true(ci.self_issued);
	assert_true(ci.has_basic_constraints && ci.ca);
	assert_int_equal(ci.pathlen, 1);
	assert_true(ext_of(&ci, "2.5.29.19")->critical);
	assert_true(ext_of(&ci, "2.5.29.15")->critical);
	assert_int_equal(ci.key_usage,
			 X509_KU_DIGITAL_SIGNATURE | X509_KU_KEY_CERT_SIGN | X509_KU_CRL_SIGN);
	assert_int_equal(ci.not_before, X509_DEFAULT_NOT_BEFORE);
	int64_t want_after = (int64_t)time(NULL) + 3650LL * 86400;
	assert_true(ci.not_after >= want_after - 60 && ci.not_after <= want_after + 60);
	assert_int_equal(ci.serial.len, 16);
	assert_true(ci.serial.data[0] & 0x40);
	assert_int_equal(ci.aki.len, 0); // self-signed: no AKI, as rcgen
	uint8_t id[20];
	key_id(ca_key, id);
	assert_int_equal(ci.ski.len, 20);
	assert_memory_equal(ci.ski.data, id, 20);
	assert_string_equal(ci.sig_alg, "ecdsa-with-SHA256");

	// the leaf: every field back
	assert_string_equal(li.cn, "app.example.com");
	assert_string_equal(li.org, "Moonstack");
	assert_string_equal(li.issuer_cn, "Dstack KMS CA");
	assert_string_equal(li.issuer_org, "Dstack");
	assert_false(li.self_issued);
	assert_int_equal(li.serial.len, 3);
	assert_memory_equal(li.serial.data, serial, 3);
	assert_int_equal(li.not_before, 1700000000);
	assert_int_equal(li.not_after, 1800000000);
	assert_int_equal(li.n_sans, 4);
	assert_true(has_san(&li, X509_SAN_DNS, "app.example.com"));
	assert_true(has_san(&li, X509_SAN_IP, "10.1.2.3"));
	assert_true(has_san(&li, X509_SAN_IP, "::1"));
	assert_true(has_san(&li, X509_SAN_DNS, "*.example.org"));
	assert_false(li.has_basic_constraints);
	assert_false(li.ca);
	assert_int_equal(li.pathlen, -1);
	assert_true(li.has_key_usage);
	assert_int_equal(li.key_usage, X509_KU_DIGITAL_SIGNATURE);
	assert_true(li.has_eku);
	assert_int_equal(li.eku, X509_EKU_SERVER_AUTH | X509_EKU_CLIENT_AUTH);
	assert_int_equal(li.n_eku_oids, 2);
	assert_string_equal(li.eku_oids[0], "1.3.6.1.5.5.7.3.1");
	assert_string_equal(li.eku_oids[1], "1.3.6.1.5.5.7.3.2");
	key_id(key, id);
	assert_memory_equal(li.ski.data, id, 20);
	assert_int_equal(li.aki.len, 20);
	assert_memory_equal(li.aki.data, ci.ski.data, 20);
	// custom extensions: DER as given, or OCTET STRING wrapped
	const struct x509_ext_info *e = ext_of(&li, "1.2.3.4.5");
	assert_int_equal(e->value.len, 5);
	assert_memory_equal(e->value.data, custom_der, 5);
	e = ext_of(&li, "1.2.3.4.6");
	assert_int_equal(e->value.len, 8);
	assert_memory_equal(e->value.data, "\x04\x06opaque", 8);
	const uint8_t *data;
	size_t len;
	assert_int_equal(x509_info_ratls(&li, X509_RATLS_ATTESTATION, &data, &len, NULL), 1);
	assert_memory_equal(data, att, sizeof(att));
	assert_int_equal(x509_info_ratls(&li, X509_RATLS_QUOTE, &data, &len, NULL), 0);
	assert_int_equal(x509_info_ratls(&li, X509_RATLS_SPECIAL_USAGE, &data, &len, NULL), 1);
	assert_int_equal(len, 10);
	// SPKI, DER and fingerprint
	struct x509_buf spki, der;
	assert_int_equal(x509_key_spki_der(key, &spki, NULL), 0);
	assert_int_equal(li.spki.len, spki.len);
	assert_memory_equal(li.spki.data, spki.data, spki.len);
	assert_int_equal(x509_cert_der(leaf, &der, NULL), 0);
	uint8_t fp[32];
	EVP_Digest(der.data, der.len, fp, NULL, EVP_sha256(), NULL);
	assert_memory_equal(li.fingerprint, fp, 32);
	// the leaf's signature is the CA's
	assert_int_equal(X509_verify(leaf, ca_key), 1);
	// and it loads back from DER and from PEM
	struct x509_buf pem;
	assert_int_equal(x509_pem_encode("CERTIFICATE", der.data, der.len, &pem, NULL), 0);
	X509 *a = x509_cert_load(der.data, der.len, NULL),
	     *b = x509_cert_load(pem.data, pem.len, NULL);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(X509_cmp(a, leaf), 0);
	assert_int_equal(X509_cmp(b, leaf), 0);
	X509_free(a);
	X509_free(b);

	x509_buf_free(&pem);
	x509_buf_free(&der);
	x509_buf_free(&spki);
	x509_info_free(&ci);
	x509_info_free(&li);
	X509_free(leaf);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
}

static void test_csr(void **state)
{
	EVP_PKEY *key = x509_key_generate(NULL);
	const char *sans[] = { "node.local", "192.168.0.9" };
	struct x509_ext_spec ext = x509_ratls_ext(X509_RATLS_ATTESTATION, "evidence", 8);
	struct x509_cert_opts o = { .cn = "node",
				    .org = "Org",
				    .sans = sans,
				    .n_sans = 2,
				    .eku = X509_EKU_CLIENT_AUTH,
				    .exts = &ext,
				    .n_exts = 1,
				    .pathlen = -1 };
	struct x509_error err;
	X509_REQ *req = x509_csr_create(&o, key, &err);
	assert_non_null(req);
	struct x509_buf der;
	assert_int_equal(x509_csr_der(req, &der, NULL), 0);
	X509_REQ_free(req);
	req = x509_csr_load(der.data, der.len, NULL);
	assert_non_null(req);
	struct x509_info info;
	assert_int_equal(x509_csr_info(req, &info, NULL), 0);
	assert_true(info.signature_ok);
	assert_int_equal(info.version, 1);
	assert_string_equal(info.cn, "node");
	assert_string_equal(info.org, "Org");
	assert_true(has_san(&info, X509_SAN_DNS, "node.local"));
	assert_true(has_san(&info, X509_SAN_IP, "192.168.0.9"));
	assert_int_equal(info.eku, X509_EKU_CLIENT_AUTH);
	const uint8_t *data;
	size_t len;
	assert_int_equal(x509_info_ratls(&info, X509_RATLS_ATTESTATION, &data, &len, NULL), 1);
	assert_memory_equal(data, "evidence", 8);
	struct x509_buf spki;
	assert_int_equal(x509_key_spki_der(key, &spki, NULL), 0);
	assert_memory_equal(info.spki.data, spki.data, spki.len);
	x509_info_free(&info);
	X509_REQ_free(req);

	// a flipped bit in the signature (the last bytes of the DER) is noticed
	der.data[der.len - 2] ^= 1;
	req = x509_csr_load(der.data, der.len, NULL);
	assert_non_null(req);
	assert_false(x509_csr_signature_ok(req));
	X509_REQ_free(req);
	// a CSR needs the private key
	EVP_PKEY *pub = x509_key_load(spki.data, spki.len, NULL);
	assert_null(x509_csr_create(&o, pub, &err));
	assert_string_equal(err.code, "EKEY");
	EVP_PKEY_free(pub);
	x509_buf_free(&spki);
	x509_buf_free(&der);
	EVP_PKEY_free(key);
}

static void test_pem(void **state)
{
	struct x509_buf a, b;
	assert_int_equal(x509_pem_encode("CERTIFICATE", "\x30\x00", 2, &a, NULL), 0);
	assert_int_equal(x509_pem_encode("PRIVATE KEY", "\x01\x02\x03", 3, &b, NULL), 0);
	char both[512];
	snprintf(both, sizeof(both), "junk before\n%s%s", (char *)a.data, (char *)b.data);
	struct x509_pem_block *blocks;
	size_t n;
	assert_int_equal(x509_pem_decode(both, strlen(both), &blocks, &n, NULL), 0);
	assert_int_equal(n, 2);
	assert_string_equal(blocks[0].label, "CERTIFICATE");
	assert_int_equal(blocks[0].der.len, 2);
	assert_string_equal(blocks[1].label, "PRIVATE KEY");
	assert_memory_equal(blocks[1].der.data, "\x01\x02\x03", 3);
	x509_pem_blocks_free(blocks, n);
	struct x509_error err;
	assert_int_equal(x509_pem_decode("no pem here", 11, &blocks, &n, &err), -1);
	assert_string_equal(err.code, "EPARSE");
	x509_buf_free(&a);
	x509_buf_free(&b);
}

static void expect_create_error(const struct x509_cert_opts *o, EVP_PKEY *k, X509 *issuer,
				EVP_PKEY *ikey, const char *code)
{
	struct x509_error err = { 0 };
	X509 *x = x509_cert_create(o, k, issuer, ikey, &err);
	X509_free(x);
	assert_null(x);
	assert_string_equal(err.code, code);
	assert_true(err.msg[0] != 0);
}

static void test_errors(void **state)
{
	EVP_PKEY *k = x509_key_generate(NULL), *other = x509_key_generate(NULL);
	struct x509_cert_opts base = { .cn = "x", .pathlen = -1 };
	X509 *ca = make(&base, other, NULL, NULL);
	struct x509_ext_spec dup[] = { x509_ratls_ext(X509_RATLS_APP_ID, "a", 1),
				       x509_ratls_ext(X509_RATLS_APP_ID, "b", 1) };
	struct x509_cert_opts o = base;
	o.exts = dup;
	o.n_exts = 2;
	expect_create_error(&o, k, NULL, NULL, "EINVAL"); // the same OID twice
	struct x509_ext_spec bad_oid = { .oid = "not.an.oid",
					 .data = (const uint8_t *)"x",
					 .len = 1 };
	o.exts = &bad_oid;
	o.n_exts = 1;
	expect_create_error(&o, k, NULL, NULL, "EINVAL");
	struct x509_ext_spec bad_der = { .oid = "1.2.3",
					 .data = (const uint8_t *)"\x30\x05\x01",
					 .len = 3,
					 .encoding = X509_EXT_DER };
	o.exts = &bad_der;
	expect_create_error(&o, k, NULL, NULL, "EINVAL");
	o = base;
	o.not_before = 2000;
	o.not_after = 1000;
	expect_create_error(&o, k, NULL, NULL, "EINVAL");
	o = base;
	o.serial = (const uint8_t *)"\x00";
	o.serial_len = 1;
	expect_create_error(&o, k, NULL, NULL, "EINVAL"); // serial 0
	const char *empty[] = { "" };
	o = base;
	o.sans = empty;
	o.n_sans = 1;
	expect_create_error(&o, k, NULL, NULL, "EINVAL");
	// an issuer key that does not belong to the issuer certificate
	expect_create_error(&base, k, ca, k, "EKEY");
	// an issuer certificate without its key
	expect_create_error(&base, k, ca, NULL, "EINVAL");
	// self-signed with a public key only
	struct x509_buf spki;
	assert_int_equal(x509_key_spki_der(k, &spki, NULL), 0);
	EVP_PKEY *pub = x509_key_load(spki.data, spki.len, NULL);
	expect_create_error(&base, pub, NULL, NULL, "EKEY");
	// ...but a public subject key signed by an issuer is the normal case
	X509 *x = make(&base, pub, ca, other);
	X509_free(x);
	// garbage is no certificate
	struct x509_error err;
	assert_null(x509_cert_load("\x30\x03\x02\x01\x01", 5, &err));
	assert_string_equal(err.code, "EPARSE");
	x509_buf_free(&spki);
	EVP_PKEY_free(pub);
	X509_free(ca);
	EVP_PKEY_free(k);
	EVP_PKEY_free(other);
}

/* A certificate with the same extension twice (RFC 5280 4.2 forbids it) is refused by
 * x509_cert_info, naming the OID, with nothing leaked (fuzz_x509_ext found two authority key
 * identifiers leaking the first); one instance of each is read. */
static void test_duplicate_extension(void **state)
{
	(void)state;
	static const int nids[] = { NID_authority_key_identifier, NID_subject_key_identifier,
				    NID_basic_constraints, NID_ext_key_usage };
	static const char *const vals[] = { "keyid:always", "hash", "CA:FALSE", "serverAuth" };
	static const char *const oids[] = { "2.5.29.35", "2.5.29.14", "2.5.29.19", "2.5.29.37" };
	for (int twice = 0; twice < 2; twice++) {
		for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++) {
			EVP_PKEY *k = x509_key_generate(NULL);
			X509 *x = X509_new();
			assert_non_null(x);
			X509_set_version(x, 2);
			ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
			X509_gmtime_adj(X509_getm_notBefore(x), 0);
			X509_gmtime_adj(X509_getm_notAfter(x), 3600);
			X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
						   (const unsigned char *)"dup", -1, -1, 0);
			X509_set_issuer_name(x, X509_get_subject_name(x));
			X509_set_pubkey(x, k);
			X509V3_CTX ctx;
			X509V3_set_ctx_nodb(&ctx);
			X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
			/* the key identifier the authority one copies */
			X509_EXTENSION *ski =
				X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
			if (nids[i] != NID_subject_key_identifier)
				X509_add_ext(x, ski, -1);
			X509_EXTENSION_free(ski);
			X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nids[i], vals[i]);
			assert_non_null(e);
			X509_add_ext(x, e, -1);
			if (twice)
				X509_add_ext(x, e, -1);
			X509_EXTENSION_free(e);
			assert_true(X509_sign(x, k, EVP_sha256()) > 0);
			struct x509_info info;
			struct x509_error err;
			int rc = x509_cert_info(x, &info, &err);
			if (twice) {
				assert_int_equal(rc, -1);
				assert_string_equal(err.code, "EPARSE");
				char want[64];
				snprintf(want, sizeof(want), "duplicate extension %s", oids[i]);
				assert_non_null(strstr(err.msg, want));
			} else {
				assert_int_equal(rc, 0);
				x509_info_free(&info);
			}
			X509_free(x);
			EVP_PKEY_free(k);
		}
	}
}

/* A DER certificate whose extension carries PEM text (as an RA-TLS quote carries its PCK chain)
 * is still read as DER, not as the PEM inside it. */
static void test_der_containing_pem_text(void **state)
{
	static const char pem_inside[] =
		"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	EVP_PKEY *key = x509_key_generate(NULL);
	assert_non_null(key);
	struct x509_ext_spec ext =
		x509_ratls_ext(X509_RATLS_QUOTE, pem_inside, sizeof(pem_inside) - 1);
	struct x509_cert_opts o = { .cn = "ratls-with-pem", .exts = &ext, .n_exts = 1 };
	X509 *cert = x509_cert_create(&o, key, NULL, key, NULL);
	assert_non_null(cert);
	struct x509_buf der;
	assert_int_equal(x509_cert_der(cert, &der, NULL), 0);
	assert_non_null(memmem(der.data, der.len, "-----BEGIN", 10));
	X509 *back = x509_cert_load(der.data, der.len, NULL);
	assert_non_null(back);
	assert_int_equal(X509_cmp(back, cert), 0);
	X509_free(back);
	x509_buf_free(&der);
	X509_free(cert);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_from_scalar),
		cmocka_unit_test(test_key_export_load),
		cmocka_unit_test(test_octets),
		cmocka_unit_test(test_report_data),
		cmocka_unit_test(test_ratls_ext_der),
		cmocka_unit_test(test_ca_and_leaf),
		cmocka_unit_test(test_csr),
		cmocka_unit_test(test_pem),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_der_containing_pem_text),
		cmocka_unit_test(test_duplicate_extension),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
