/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/wg without a device: the `get` parser against hand-written answers in wireguard-go's
 * format, every malformed form it must refuse, the `set` builder and its refusals (line
 * injection, bad keys and values), key conversions against RFC 7748's X25519 vector, and the
 * socket exchange against a fake UAPI server on a temporary socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "wg/wg.h"

/* RFC 7748 §6.1 */
#define ALICE_PRIV     "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
#define ALICE_PUB      "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
#define BOB_PUB	       "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
#define ALICE_PRIV_B64 "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo="
#define ALICE_PUB_B64  "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
#define BOB_PUB_B64    "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08="
#define PSK	       "0101010101010101010101010101010101010101010101010101010101010101"
#define ZERO	       "0000000000000000000000000000000000000000000000000000000000000000"

/* A get answer as wireguard-go writes it: two peers, one never seen. */
static const char GET_OK[] = "private_key=" ALICE_PRIV "\n"
			     "listen_port=51820\n"
			     "fwmark=4660\n"
			     "public_key=" BOB_PUB "\n"
			     "preshared_key=" PSK "\n"
			     "protocol_version=1\n"
			     "endpoint=10.250.0.2:51821\n"
			     "last_handshake_time_sec=1733580000\n"
			     "last_handshake_time_nsec=123456789\n"
			     "tx_bytes=18446744073709551615\n"
			     "rx_bytes=4242\n"
			     "persistent_keepalive_interval=25\n"
			     "allowed_ip=10.251.0.2/32\n"
			     "allowed_ip=fd00:dead:beef::/48\n"
			     "public_key=" ALICE_PUB "\n"
			     "preshared_key=" ZERO "\n"
			     "protocol_version=1\n"
			     "endpoint=[fe80::1]:51822\n"
			     "last_handshake_time_sec=0\n"
			     "last_handshake_time_nsec=0\n"
			     "tx_bytes=0\n"
			     "rx_bytes=0\n"
			     "persistent_keepalive_interval=0\n"
			     "errno=0\n"
			     "\n";

static void hex_equal(const uint8_t key[WG_KEY_LEN], const char *want)
{
	char hex[WG_KEY_HEX_LEN + 1];
	wg_key_to_hex(key, hex);
	assert_string_equal(hex, want);
}

static void test_parse_get(void **state)
{
	(void)state;
	struct wg_device d;
	struct wg_error e = { "", "" };
	char buf[64];

	int rc = wg_parse_get(GET_OK, sizeof(GET_OK) - 1, &d, &e);
	if (rc)
		fail_msg("%s: %s", e.code, e.msg);
	assert_true(d.has_private_key);
	hex_equal(d.private_key, ALICE_PRIV);
	hex_equal(d.public_key, ALICE_PUB);
	assert_int_equal(d.listen_port, 51820);
	assert_int_equal(d.fwmark, 4660);
	assert_int_equal(d.n_peers, 2);
	struct wg_peer *p = &d.peers[0];
	hex_equal(p->public_key, BOB_PUB);
	assert_true(p->has_preshared_key);
	hex_equal(p->preshared_key, PSK);
	assert_string_equal(p->endpoint, "10.250.0.2:51821");
	assert_int_equal(p->last_handshake_time_sec, 1733580000);
	assert_int_equal(p->last_handshake_time_nsec, 123456789);
	assert_true(p->tx_bytes == UINT64_MAX);
	assert_int_equal(p->rx_bytes, 4242);
	assert_int_equal(p->persistent_keepalive_interval, 25);
	assert_int_equal(p->n_allowed_ips, 2);
	assert_int_equal(wg_allowed_ip_format(&p->allowed_ips[0], buf, sizeof(buf)), 0);
	assert_string_equal(buf, "10.251.0.2/32");
	assert_int_equal(wg_allowed_ip_format(&p->allowed_ips[1], buf, sizeof(buf)), 0);
	assert_string_equal(buf, "fd00:dead:beef::/48");
	p = &d.peers[1];
	assert_false(p->has_preshared_key);
	assert_string_equal(p->endpoint, "[fe80::1]:51822");
	assert_int_equal(p->n_allowed_ips, 0);
	wg_device_free(&d);
	wg_device_free(&d); /* safe twice */

	/* a fresh device: nothing but errno */
	assert_int_equal(wg_parse_get("errno=0\n\n", 9, &d, &e), 0);
	assert_false(d.has_private_key);
	assert_int_equal(d.n_peers, 0);
	wg_device_free(&d);
}

static void expect_get_fail(const char *ans, int want, const char *code)
{
	struct wg_device d;
	struct wg_error e = { "", "" };
	int rc = wg_parse_get(ans, strlen(ans), &d, &e);
	if (rc != want)
		fail_msg("answer %s: rc %d (%s: %s), want %d", ans, rc, e.code, e.msg, want);
	assert_string_equal(e.code, code);
	assert_null(d.peers);
	assert_int_equal(d.n_peers, 0);
}

#define PEER "public_key=" BOB_PUB "\n"

static void test_parse_get_malformed(void **state)
{
	(void)state;
	/* device errnos */
	expect_get_fail("errno=-22\n\n", -EINVAL, "EINVAL");
	expect_get_fail("errno=-5\n\n", -EIO, "EIO");
	expect_get_fail("errno=-71\n\n", -EPROTO, "EPROTO");
	expect_get_fail("errno=-98\n\n", -EADDRINUSE, "EADDRINUSE");
	expect_get_fail("errno=-55\n\n", -ENOANO, "EUNKNOWN");
	expect_get_fail("errno=-1234\n\n", -EREMOTEIO, "EREMOTEIO");
	expect_get_fail("errno=-99999\n\n", -EPROTO, "EPROTO");
	expect_get_fail("errno=abc\n\n", -EPROTO, "EPROTO");
	expect_get_fail("errno=\n\n", -EPROTO, "EPROTO");
	expect_get_fail("errno=--1\n\n", -EPROTO, "EPROTO");
	/* truncation */
	expect_get_fail("", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=1\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=1\nerrno=0\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=1\nerrno=0", -EPROTO, "EPROTO");
	expect_get_fail("private_key=" ALICE_PRIV, -EPROTO, "EPROTO");
	expect_get_fail("\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=1\n\n", -EPROTO, "EPROTO");
	expect_get_fail("errno=0\n\nlisten_port=1\n", -EPROTO, "EPROTO");
	expect_get_fail("errno=0\n\n\n", -EPROTO, "EPROTO");
	/* bad hex */
	expect_get_fail("private_key=" ALICE_PRIV "0\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("private_key=7707\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("public_key=g" ALICE_PUB "\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("public_key=" ALICE_PRIV_B64 "\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "preshared_key=zz" ZERO "\nerrno=0\n\n", -EPROTO, "EPROTO");
	/* huge or out-of-range values */
	expect_get_fail("listen_port=65536\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("fwmark=4294967296\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "rx_bytes=18446744073709551616\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "tx_bytes=999999999999999999999\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "last_handshake_time_nsec=1000000000\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "last_handshake_time_sec=9223372036854775808\nerrno=0\n\n", -EPROTO,
			"EPROTO");
	expect_get_fail(PEER "persistent_keepalive_interval=65536\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "protocol_version=2\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=-1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=+1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port= 1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=\nerrno=0\n\n", -EPROTO, "EPROTO");
	/* bad values */
	expect_get_fail(PEER "allowed_ip=10.0.0.1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "allowed_ip=10.0.0.1/33\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "allowed_ip=::/129\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "allowed_ip=10.0.0.256/32\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "endpoint=example.com:51820\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "endpoint=10.0.0.1:0\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "endpoint=10.0.0.1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "endpoint=[::1:1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "endpoint=::1:51820\nerrno=0\n\n", -EPROTO, "EPROTO");
	/* structure */
	expect_get_fail("mystery=1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "mystery=1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("=1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=1\nlisten_port=2\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "rx_bytes=1\nrx_bytes=2\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail(PEER "listen_port=1\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("allowed_ip=10.0.0.1/32\nerrno=0\n\n", -EPROTO, "EPROTO");
	expect_get_fail("listen_port=1\r\nerrno=0\n\n", -EPROTO, "EPROTO");

	/* an embedded NUL */
	struct wg_device d;
	struct wg_error e;
	static const char nul[] = "listen_port=1\0\nerrno=0\n\n";
	assert_int_equal(wg_parse_get(nul, sizeof(nul) - 1, &d, &e), -EPROTO);

	/* an over-long line */
	char line[WG_MAX_LINE + 32];
	memset(line, 'a', sizeof(line));
	memcpy(line, "endpoint=", 9);
	memcpy(line + sizeof(line) - 11, "\nerrno=0\n\n", 10);
	line[sizeof(line) - 1] = '\0';
	expect_get_fail(line, -EPROTO, "EPROTO");
}

static void test_parse_get_bounds(void **state)
{
	(void)state;
	/* more allowed IPs than a peer may have */
	size_t n = WG_MAX_ALLOWED_IPS + 1, cap = 128 + n * 32;
	char *ans = malloc(cap);
	size_t len = (size_t)sprintf(ans, PEER);
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(ans + len, "allowed_ip=10.%zu.%zu.0/24\n", i / 256, i % 256);
	len += (size_t)sprintf(ans + len, "errno=0\n\n");
	struct wg_device d;
	struct wg_error e;
	assert_int_equal(wg_parse_get(ans, len, &d, &e), -E2BIG);
	assert_string_equal(e.code, "E2BIG");
	/* exactly the bound is fine */
	len = (size_t)sprintf(ans, PEER);
	for (size_t i = 0; i < n - 1; i++)
		len += (size_t)sprintf(ans + len, "allowed_ip=10.%zu.%zu.0/24\n", i / 256, i % 256);
	len += (size_t)sprintf(ans + len, "errno=0\n\n");
	assert_int_equal(wg_parse_get(ans, len, &d, &e), 0);
	assert_int_equal(d.peers[0].n_allowed_ips, WG_MAX_ALLOWED_IPS);
	wg_device_free(&d);
	free(ans);
	assert_int_equal(wg_parse_get("errno=0\n\n", WG_MAX_ANSWER + 1, &d, &e), -E2BIG);
}

static void test_set_answer(void **state)
{
	(void)state;
	struct wg_error e;
	assert_int_equal(wg_parse_set_answer("errno=0\n\n", 9, &e), 0);
	assert_int_equal(wg_parse_set_answer("errno=-22\n\n", 11, &e), -EINVAL);
	assert_string_equal(e.code, "EINVAL");
	assert_string_equal(e.msg, "device: errno=-22");
	assert_int_equal(wg_parse_set_answer("errno=0\n", 8, &e), -EPROTO);
	assert_int_equal(wg_parse_set_answer("errno=0\nx\n\n", 11, &e), -EPROTO);
	assert_int_equal(wg_parse_set_answer("ok\n\n", 4, &e), -EPROTO);
	assert_int_equal(wg_parse_set_answer("errno=7x\n\n", 10, &e), -EPROTO);
}

static struct wg_allowed_ip aip(const char *s)
{
	struct wg_allowed_ip ip;
	assert_int_equal(wg_allowed_ip_parse(s, strlen(s), &ip), 0);
	return ip;
}

static void test_build_set(void **state)
{
	(void)state;
	struct wg_allowed_ip ips[2] = { aip("10.251.0.2/32"), aip("fd00::2/128") };
	struct wg_peer_op peers[2] = { 0 };
	struct wg_set_req req = { .listen_port = 51820, .fwmark = -1, .replace_peers = true };
	struct wg_error e = { "", "" };
	char *out;
	size_t len;

	assert_int_equal(wg_key_from_hex(ALICE_PRIV, 64, req.private_key), 0);
	req.set_private_key = true;
	assert_int_equal(wg_key_from_hex(BOB_PUB, 64, peers[0].public_key), 0);
	peers[0].endpoint = "[::1]:51821";
	peers[0].persistent_keepalive_interval = 25;
	peers[0].replace_allowed_ips = true;
	peers[0].n_allowed_ips = 2;
	peers[0].allowed_ips = ips;
	assert_int_equal(wg_key_from_hex(ALICE_PUB, 64, peers[1].public_key), 0);
	peers[1].remove = true;
	peers[1].persistent_keepalive_interval = -1;
	req.peers = peers;
	req.n_peers = 2;
	int rc = wg_build_set(&req, &out, &len, &e);
	if (rc)
		fail_msg("%s: %s", e.code, e.msg);
	assert_string_equal(out, "set=1\n"
				 "private_key=" ALICE_PRIV "\n"
				 "listen_port=51820\n"
				 "replace_peers=true\n"
				 "public_key=" BOB_PUB "\n"
				 "endpoint=[::1]:51821\n"
				 "persistent_keepalive_interval=25\n"
				 "replace_allowed_ips=true\n"
				 "allowed_ip=10.251.0.2/32\n"
				 "allowed_ip=fd00::2/128\n"
				 "public_key=" ALICE_PUB "\n"
				 "remove=true\n"
				 "\n");
	assert_int_equal(len, strlen(out));
	free(out);

	/* the smallest request: nothing changes */
	struct wg_set_req empty = { .listen_port = -1, .fwmark = -1 };
	assert_int_equal(wg_build_set(&empty, &out, &len, &e), 0);
	assert_string_equal(out, "set=1\n\n");
	free(out);

	/* update_only, a preshared key and fwmark */
	struct wg_peer_op up = { .update_only = true,
				 .set_preshared_key = true,
				 .persistent_keepalive_interval = -1 };
	memset(up.preshared_key, 1, WG_KEY_LEN);
	struct wg_set_req r2 = { .listen_port = -1, .fwmark = 0, .n_peers = 1, .peers = &up };
	assert_int_equal(wg_build_set(&r2, &out, &len, &e), 0);
	assert_string_equal(out, "set=1\nfwmark=0\npublic_key=" ZERO
				 "\nupdate_only=true\npreshared_key=" PSK "\n\n");
	free(out);
}

static void expect_set_refused(const struct wg_set_req *req)
{
	struct wg_error e = { "", "" };
	char *out = (char *)1;
	size_t len = 1;
	assert_int_equal(wg_build_set(req, &out, &len, &e), -EINVAL);
	assert_string_equal(e.code, "EINVAL");
	assert_null(out);
	assert_int_equal(len, 0);
}

static void test_build_set_refusals(void **state)
{
	(void)state;
	struct wg_peer_op p = { .persistent_keepalive_interval = -1 };
	struct wg_set_req req = { .listen_port = -1, .fwmark = -1, .n_peers = 1, .peers = &p };

	/* line injection through the only free-form value */
	static const char *const bad_endpoints[] = {
		"10.0.0.1:51820\nprivate_key=" ZERO,
		"10.0.0.1:51820\n",
		"10.0.0.1:51820\r",
		"10.0.0.1\n:51820",
		"[::1]:51820\nremove=true",
		"[fe80::1%eth0]:51820",
		"evil.example:51820",
		"10.0.0.1:65536",
		"10.0.0.1:",
		"10.0.0.1: 1",
		"",
		"[::1]",
		"[[::1]]:1",
	};
	for (size_t i = 0; i < sizeof(bad_endpoints) / sizeof(*bad_endpoints); i++) {
		p.endpoint = bad_endpoints[i];
		expect_set_refused(&req);
	}
	p.endpoint = NULL;

	/* allowed IP strings are parsed, never copied */
	struct wg_allowed_ip ip;
	const char *inj = "10.0.0.1/32\nremove=true";
	assert_int_equal(wg_allowed_ip_parse(inj, strlen(inj), &ip), -EINVAL);
	assert_int_equal(wg_allowed_ip_parse("10.0.0.1/", 9, &ip), -EINVAL);
	assert_int_equal(wg_allowed_ip_parse("/8", 2, &ip), -EINVAL);
	/* and a forged struct is refused */
	struct wg_allowed_ip forged = { .family = AF_INET, .cidr = 33 };
	p.n_allowed_ips = 1;
	p.allowed_ips = &forged;
	expect_set_refused(&req);
	forged.family = 12345;
	forged.cidr = 8;
	expect_set_refused(&req);
	p.allowed_ips = NULL;
	expect_set_refused(&req);
	p.n_allowed_ips = 0;

	p.persistent_keepalive_interval = 65536;
	expect_set_refused(&req);
	p.persistent_keepalive_interval = -2;
	expect_set_refused(&req);
	p.persistent_keepalive_interval = -1;

	/* remove takes nothing else */
	p.remove = true;
	p.update_only = true;
	expect_set_refused(&req);
	p.update_only = false;
	p.endpoint = "10.0.0.1:1";
	expect_set_refused(&req);
	p.endpoint = NULL;
	p.remove = false;

	req.listen_port = 65536;
	expect_set_refused(&req);
	req.listen_port = -2;
	expect_set_refused(&req);
	req.listen_port = -1;
	req.fwmark = (int64_t)UINT32_MAX + 1;
	expect_set_refused(&req);
	req.fwmark = -1;
	req.peers = NULL;
	expect_set_refused(&req);
	req.n_peers = WG_MAX_PEERS + 1;
	req.peers = &p;
	expect_set_refused(&req);
}

static void test_keys(void **state)
{
	(void)state;
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN], k[WG_KEY_LEN];
	char b64[WG_KEY_B64_LEN + 1], hex[WG_KEY_HEX_LEN + 1];
	struct wg_error e;

	/* RFC 7748 §6.1: Alice's key pair */
	assert_int_equal(wg_key_from_hex(ALICE_PRIV, 64, priv), 0);
	assert_int_equal(wg_key_public(priv, pub, &e), 0);
	hex_equal(pub, ALICE_PUB);
	wg_key_to_base64(priv, b64);
	assert_string_equal(b64, ALICE_PRIV_B64);
	wg_key_to_base64(pub, b64);
	assert_string_equal(b64, ALICE_PUB_B64);
	assert_int_equal(wg_key_from_base64(BOB_PUB_B64, WG_KEY_B64_LEN, k), 0);
	hex_equal(k, BOB_PUB);
	/* upper-case hex is accepted, the output is lower case */
	char upper[] = ALICE_PUB;
	for (char *c = upper; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 32);
	assert_int_equal(wg_key_from_hex(upper, 64, k), 0);
	wg_key_to_hex(k, hex);
	assert_string_equal(hex, ALICE_PUB);

	/* refusals */
	assert_int_equal(wg_key_from_hex(ALICE_PUB, 63, k), -EINVAL);
	assert_int_equal(wg_key_from_hex(ALICE_PUB "00", 66, k), -EINVAL);
	assert_int_equal(wg_key_from_hex("x" ALICE_PUB, 64, k), -EINVAL);
	assert_int_equal(wg_key_from_hex(NULL, 64, k), -EINVAL);
	assert_int_equal(wg_key_from_base64(ALICE_PUB_B64, 43, k), -EINVAL);
	assert_int_equal(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo", 44, k),
			 -EINVAL);
	/* non-canonical: unused bits set (o -> p) */
	assert_int_equal(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmp=", 44, k),
			 -EINVAL);
	assert_int_equal(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066Spjqqb\nmo=", 44, k),
			 -EINVAL);
	assert_int_equal(wg_key_from_base64("hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo=", 44, k),
			 -EINVAL);

	/* generation: clamped, and its public key round-trips */
	assert_int_equal(wg_key_generate(priv, &e), 0);
	assert_int_equal(priv[0] & 7, 0);
	assert_int_equal(priv[31] & 0xc0, 0x40);
	assert_int_equal(wg_key_public(priv, pub, &e), 0);
	wg_key_to_base64(pub, b64);
	assert_int_equal(wg_key_from_base64(b64, WG_KEY_B64_LEN, k), 0);
	assert_memory_equal(k, pub, WG_KEY_LEN);
	assert_int_equal(wg_key_generate_psk(k, &e), 0);
}

static void test_socket_path(void **state)
{
	(void)state;
	char buf[108];
	struct wg_error e;
	assert_int_equal(wg_socket_path(NULL, "wg0", buf, sizeof(buf), &e), 0);
	assert_string_equal(buf, "/var/run/wireguard/wg0.sock");
	assert_int_equal(wg_socket_path("/tmp/x", "gw-hub_1", buf, sizeof(buf), &e), 0);
	assert_string_equal(buf, "/tmp/x/gw-hub_1.sock");
	static const char *const bad[] = {
		"", ".", "..", "a/b", "../x", "wg0\n", "0123456789abcdef", "wg 0"
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		assert_int_equal(wg_socket_path(NULL, bad[i], buf, sizeof(buf), &e), -EINVAL);
	assert_int_equal(wg_socket_path("/tmp", "wg0", buf, 8, &e), -EINVAL);
}

/* ---- a fake UAPI server: answers one connection with a canned reply ---- */

struct fake {
	int lfd;
	const char *reply;
	size_t reply_len;
	char got[4096];
};

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	size_t n = 0;
	if (c < 0)
		return NULL;
	/* read the request up to its blank line */
	while (n < sizeof(f->got) - 1) {
		ssize_t r = read(c, f->got + n, sizeof(f->got) - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		f->got[n] = '\0';
		if (n >= 2 && !strcmp(f->got + n - 2, "\n\n"))
			break;
	}
	if (f->reply_len)
		(void)!write(c, f->reply, f->reply_len);
	close(c);
	return NULL;
}

static void fake_start(struct fake *f, pthread_t *t, char *path, size_t n, const char *reply,
		       size_t reply_len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(path, n, "/tmp/wg-test-%d.sock", (int)getpid());
	unlink(path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	memset(f, 0, sizeof(*f));
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 1), 0);
	f->reply = reply;
	f->reply_len = reply_len;
	assert_int_equal(pthread_create(t, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f, pthread_t t, const char *path)
{
	pthread_join(t, NULL);
	close(f->lfd);
	unlink(path);
}

static void test_socket_exchange(void **state)
{
	(void)state;
	struct fake f;
	pthread_t t;
	char path[108];
	struct wg_device d;
	struct wg_error e = { "", "" };

	fake_start(&f, &t, path, sizeof(path), GET_OK, sizeof(GET_OK) - 1);
	int rc = wg_get(path, 2000, &d, &e);
	fake_stop(&f, t, path);
	if (rc)
		fail_msg("wg_get: %s: %s", e.code, e.msg);
	assert_string_equal(f.got, "get=1\n\n");
	assert_int_equal(d.n_peers, 2);
	wg_device_free(&d);

	struct wg_set_req req = { .listen_port = 1234, .fwmark = -1 };
	fake_start(&f, &t, path, sizeof(path), "errno=-98\n\n", 11);
	rc = wg_set(path, 2000, &req, &e);
	fake_stop(&f, t, path);
	assert_int_equal(rc, -EADDRINUSE);
	assert_string_equal(f.got, "set=1\nlisten_port=1234\n\n");

	fake_start(&f, &t, path, sizeof(path), "errno=0\n\n", 9);
	assert_int_equal(wg_set(path, 2000, &req, &e), 0);
	fake_stop(&f, t, path);

	/* closed mid-answer */
	fake_start(&f, &t, path, sizeof(path), "listen_port=1\n", 14);
	assert_int_equal(wg_get(path, 2000, &d, &e), -EPROTO);
	fake_stop(&f, t, path);

	/* trailing data after the blank line */
	fake_start(&f, &t, path, sizeof(path), "errno=0\n\nx", 10);
	assert_int_equal(wg_set(path, 2000, &req, &e), -EPROTO);
	fake_stop(&f, t, path);

	/* no device */
	assert_int_equal(wg_get("/nonexistent/wg0.sock", 2000, &d, &e), -ENOENT);
	assert_string_equal(e.code, "ENOENT");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_get),
		cmocka_unit_test(test_parse_get_malformed),
		cmocka_unit_test(test_parse_get_bounds),
		cmocka_unit_test(test_set_answer),
		cmocka_unit_test(test_build_set),
		cmocka_unit_test(test_build_set_refusals),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_socket_path),
		cmocka_unit_test(test_socket_exchange),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
