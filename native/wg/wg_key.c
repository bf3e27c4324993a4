/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wg keys: hex and base64 forms of a 32-byte Curve25519 key, X25519 public keys through
 * OpenSSL EVP, and key generation (clamped like `wg genkey`).
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "moonstack/rt_base.h"
#include "wg/wg_internal.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void wg_key_to_hex(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_HEX_LEN + 1])
{
	rt_hex_encode(key, WG_KEY_LEN, out, false);
}

int wg_key_from_hex(const char *hex, size_t len, uint8_t key[WG_KEY_LEN])
{
	uint8_t tmp[WG_KEY_LEN]; /* @key is left as it was on a refusal */

	if (!hex || rt_hex_decode(hex, len, tmp, WG_KEY_LEN))
		return -EINVAL;
	memcpy(key, tmp, WG_KEY_LEN);
	return 0;
}

void wg_key_to_base64(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1])
{
	size_t o = 0, i = 0;

	for (; i + 3 <= WG_KEY_LEN; i += 3) {
		uint32_t v = (uint32_t)key[i] << 16 | (uint32_t)key[i + 1] << 8 | key[i + 2];
		out[o++] = B64[v >> 18];
		out[o++] = B64[(v >> 12) & 63];
		out[o++] = B64[(v >> 6) & 63];
		out[o++] = B64[v & 63];
	}
	/* 32 = 30 + 2: one padding character */
	uint32_t v = (uint32_t)key[i] << 16 | (uint32_t)key[i + 1] << 8;
	out[o++] = B64[v >> 18];
	out[o++] = B64[(v >> 12) & 63];
	out[o++] = B64[(v >> 6) & 63];
	out[o++] = '=';
	out[o] = '\0';
}

static int b64val(char c)
{
	const char *p = c ? strchr(B64, c) : NULL;
	return p ? (int)(p - B64) : -1;
}

int wg_key_from_base64(const char *b64, size_t len, uint8_t key[WG_KEY_LEN])
{
	uint8_t tmp[WG_KEY_LEN];
	size_t o = 0;

	if (!b64 || len != WG_KEY_B64_LEN || b64[43] != '=')
		return -EINVAL;
	for (size_t i = 0; i < 40; i += 4) {
		int a = b64val(b64[i]), b = b64val(b64[i + 1]), c = b64val(b64[i + 2]),
		    d = b64val(b64[i + 3]);
		if (a < 0 || b < 0 || c < 0 || d < 0)
			return -EINVAL;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		tmp[o++] = (uint8_t)(v >> 16);
		tmp[o++] = (uint8_t)(v >> 8);
		tmp[o++] = (uint8_t)v;
	}
	int a = b64val(b64[40]), b = b64val(b64[41]), c = b64val(b64[42]);
	if (a < 0 || b < 0 || c < 0 || (c & 3) != 0)
		return -EINVAL; /* non-canonical: the 2 unused bits must be zero */
	uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6;
	tmp[o++] = (uint8_t)(v >> 16);
	tmp[o++] = (uint8_t)(v >> 8);
	memcpy(key, tmp, WG_KEY_LEN);
	return 0;
}

int wg_key_public(const uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN], struct wg_error *err)
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, WG_KEY_LEN);
	size_t n = WG_KEY_LEN;
	int ok;

	if (!k)
		return wg_fail(err, EIO, "X25519: cannot load the private key");
	ok = EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == WG_KEY_LEN;
	EVP_PKEY_free(k);
	if (!ok)
		return wg_fail(err, EIO, "X25519: cannot derive the public key");
	return 0;
}

int wg_key_generate_psk(uint8_t psk[WG_KEY_LEN], struct wg_error *err)
{
	if (RAND_priv_bytes(psk, WG_KEY_LEN) != 1)
		return wg_fail(err, EIO, "RAND_priv_bytes failed");
	return 0;
}

int wg_key_generate(uint8_t priv[WG_KEY_LEN], struct wg_error *err)
{
	int rc = wg_key_generate_psk(priv, err);

	if (rc)
		return rc;
	priv[0] &= 248;
	priv[31] = (uint8_t)((priv[31] & 127) | 64);
	return 0;
}
