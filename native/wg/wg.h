/* SPDX-License-Identifier: Apache-2.0 */
/*
 * wg: a userspace WireGuard device (wireguard-go) driven through its UAPI text protocol, for
 * the gateway's WireGuard hub (M10). The device listens on an AF_UNIX stream socket,
 * /var/run/wireguard/<ifname>.sock; a request is `get=1\n\n` or `set=1\n` + key=value lines +
 * a blank line, and every answer ends with `errno=N\n\n`. Keys travel in hex (64 digits).
 *
 * The parser is strict: every key of a `get` answer is known, lines and values are bounded,
 * hex and numbers are validated, the final errno is required. The request builder refuses
 * anything that could inject a line (every string value is parsed, never copied).
 *
 * Every function returns 0 (or a value >= 0) or a negative errno; when @p err is not NULL it
 * gets a stable code and a message naming what failed. Local codes: EINVAL (bad input),
 * EPROTO (malformed answer), E2BIG (answer or request over its bound), ENOENT/ECONNREFUSED
 * (no device), ETIMEDOUT, ENOMEM, EIO. An errno answered by the device maps to EINVAL, EIO,
 * EPROTO, EADDRINUSE or EUNKNOWN (wireguard-go's -55) with the message "device: errno=N".
 */
#ifndef MOONSTACK_WG_H
#define MOONSTACK_WG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** A Curve25519 key: 32 raw bytes, 64 hex digits, 44 base64 characters. */
#define WG_KEY_LEN     32
#define WG_KEY_HEX_LEN 64
#define WG_KEY_B64_LEN 44
/** Longest endpoint text: "[" IPv6 "]:" port, plus NUL. */
#define WG_ENDPOINT_MAX 64
/** Bounds on a `get` answer: peers, allowed IPs per peer, one line, the whole answer. */
#define WG_MAX_PEERS	   4096
#define WG_MAX_ALLOWED_IPS 1024
#define WG_MAX_LINE	   256
#define WG_MAX_ANSWER	   (16u << 20)
/** Default socket directory of wireguard-go. */
#define WG_SOCKET_DIR "/var/run/wireguard"

/** An error: a stable upper-case code and a message. */
struct wg_error {
	char code[16];
	char msg[256];
};

/** One allowed IP range: @p family AF_INET or AF_INET6, network address, prefix length. */
struct wg_allowed_ip {
	int family;
	uint8_t addr[16];
	uint8_t cidr;
};

/** A peer as a `get` answer describes it. */
struct wg_peer {
	uint8_t public_key[WG_KEY_LEN];
	bool has_preshared_key; /* false when the device reports all zeros */
	uint8_t preshared_key[WG_KEY_LEN];
	char endpoint[WG_ENDPOINT_MAX]; /* "" when unknown */
	uint16_t persistent_keepalive_interval;
	uint64_t last_handshake_time_sec;
	uint32_t last_handshake_time_nsec;
	uint64_t rx_bytes, tx_bytes;
	uint32_t protocol_version;
	size_t n_allowed_ips;
	struct wg_allowed_ip *allowed_ips;
};

/** A device as a `get` answer describes it (free with wg_device_free). */
struct wg_device {
	bool has_private_key;
	uint8_t private_key[WG_KEY_LEN];
	uint8_t public_key[WG_KEY_LEN]; /* derived from private_key when present */
	uint16_t listen_port;
	uint32_t fwmark;
	size_t n_peers;
	struct wg_peer *peers;
};

/** One peer operation of a `set` request. */
struct wg_peer_op {
	uint8_t public_key[WG_KEY_LEN];
	bool remove;	  /* remove=true: nothing else may be set */
	bool update_only; /* change the peer only if it exists */
	bool set_preshared_key;
	uint8_t preshared_key[WG_KEY_LEN];
	const char *endpoint;		   /* NULL: unchanged; numeric "ip:port" / "[ip6]:port" */
	int persistent_keepalive_interval; /* -1: unchanged, 0 off, 1..65535 seconds */
	bool replace_allowed_ips;	   /* the list below replaces the peer's */
	size_t n_allowed_ips;
	const struct wg_allowed_ip *allowed_ips; /* added (or the new list) */
};

/** A `set` request: device settings then peer operations, applied atomically by the device. */
struct wg_set_req {
	bool set_private_key;
	uint8_t private_key[WG_KEY_LEN];
	int listen_port;    /* -1: unchanged, 0..65535 (0: random) */
	int64_t fwmark;	    /* -1: unchanged, 0..UINT32_MAX (0: off) */
	bool replace_peers; /* drop every peer not listed */
	size_t n_peers;
	const struct wg_peer_op *peers;
};

/* ---- keys (wg_key.c) ---- */

/** @p key as 64 lower-case hex digits and a NUL. */
void wg_key_to_hex(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_HEX_LEN + 1]);

/** Parse exactly 64 hex digits (either case) of @p hex (@p len bytes). 0 or -EINVAL. */
int wg_key_from_hex(const char *hex, size_t len, uint8_t key[WG_KEY_LEN]);

/** @p key in standard padded base64 (44 characters) and a NUL. */
void wg_key_to_base64(const uint8_t key[WG_KEY_LEN], char out[WG_KEY_B64_LEN + 1]);

/** Parse exactly 44 characters of standard base64 ending in one '=' whose unused bits are
 *  zero (the canonical form only). 0 or -EINVAL. */
int wg_key_from_base64(const char *b64, size_t len, uint8_t key[WG_KEY_LEN]);

/** The X25519 public key of @p priv (clamped as X25519 does), through OpenSSL EVP. */
int wg_key_public(const uint8_t priv[WG_KEY_LEN], uint8_t pub[WG_KEY_LEN], struct wg_error *err);

/** A new private key: 32 random bytes from OpenSSL's CSPRNG, clamped like `wg genkey`. */
int wg_key_generate(uint8_t priv[WG_KEY_LEN], struct wg_error *err);

/** A new random preshared key (32 bytes, unclamped). */
int wg_key_generate_psk(uint8_t psk[WG_KEY_LEN], struct wg_error *err);

/* ---- values ---- */

/** Parse "a.b.c.d/n" or "v6/n" (@p len bytes; prefix required, host bits allowed as the
 *  device allows them). 0 or -EINVAL. */
int wg_allowed_ip_parse(const char *s, size_t len, struct wg_allowed_ip *out);

/** Format @p ip as "addr/cidr" into @p buf (at least 48 bytes). 0 or -EINVAL. */
int wg_allowed_ip_format(const struct wg_allowed_ip *ip, char *buf, size_t n);

/** Check that @p s (@p len bytes) is a numeric endpoint "a.b.c.d:port" or "[v6]:port" with
 *  port 1..65535 and shorter than WG_ENDPOINT_MAX. 0 or -EINVAL. */
int wg_endpoint_check(const char *s, size_t len);

/** The UAPI socket path of interface @p ifname under @p dir (NULL: WG_SOCKET_DIR). The name
 *  must be 1..15 characters of [A-Za-z0-9_.=+-], not "." or "..". */
int wg_socket_path(const char *dir, const char *ifname, char *buf, size_t n, struct wg_error *err);

/* ---- protocol (wg_uapi.c) ---- */

/** Release what a parsed device owns (it stays safe to free again). */
void wg_device_free(struct wg_device *dev);

/**
 * Parse a complete `get` answer (@p len bytes, ending with the blank line). On success fills
 * @p dev (free with wg_device_free). A device errno != 0 is returned as the error it maps to.
 */
int wg_parse_get(const char *buf, size_t len, struct wg_device *dev, struct wg_error *err);

/** Parse a `set` answer: exactly "errno=N\n\n". 0 when N is 0, else the mapped error. */
int wg_parse_set_answer(const char *buf, size_t len, struct wg_error *err);

/**
 * Build the `set=1\n...\n\n` request for @p req into a malloc()ed, NUL-terminated *@p out
 * (*@p out_len bytes without the NUL). Every value is validated first; nothing is written on
 * refusal (EINVAL).
 */
int wg_build_set(const struct wg_set_req *req, char **out, size_t *out_len, struct wg_error *err);

/* ---- socket I/O (wg_uapi.c): blocking, bounded by @p timeout_ms (<= 0: 5000) ---- */

/** Connect to the UAPI socket @p path: a blocking, close-on-exec fd with send/receive
 *  timeouts. */
int wg_connect(const char *path, int timeout_ms, struct wg_error *err);

/** `get` on the device at socket @p path into @p dev (free with wg_device_free). */
int wg_get(const char *path, int timeout_ms, struct wg_device *dev, struct wg_error *err);

/** `set` @p req on the device at socket @p path. */
int wg_set(const char *path, int timeout_ms, const struct wg_set_req *req, struct wg_error *err);

#endif
