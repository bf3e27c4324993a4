/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_sni: a strict, allocation-free TLS ClientHello parser for the gateway's SNI router
 * (spec kms-vmm-gateway.md §6.2 step 2). The caller peeks bytes from a new connection and asks
 * whether they hold a whole ClientHello; the answer is NEED_MORE (with the total number of
 * bytes to wait for), NOT_TLS, MALFORMED (with a precise reason) or OK with the server name,
 * the ALPN protocols offered and whether TLS 1.3 is offered. The parser is stateless: call it
 * again on the grown buffer. It never reads outside [buf, buf + len).
 */
#ifndef MOONSTACK_PROXY_SNI_H
#define MOONSTACK_PROXY_SNI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most bytes the ClientHello records may occupy together; more is PROXY_SNI_E_TOO_LARGE. */
#define PROXY_SNI_MAX_BYTES 16384
/** Longest host name (RFC 1035 presentation form without the trailing dot). */
#define PROXY_SNI_HOST_MAX 253
/** ALPN protocols kept; further ones only set alpn_truncated. */
#define PROXY_SNI_ALPN_MAX 8
/** Longest ALPN protocol id kept; a longer one only sets alpn_truncated. */
#define PROXY_SNI_ALPN_NAME_MAX 32

/** Verdict of proxy_sni_parse(). */
enum proxy_sni_status {
	PROXY_SNI_OK = 0,	 /**< a whole, well-formed ClientHello */
	PROXY_SNI_NEED_MORE = 1, /**< prefix of a plausible ClientHello; see proxy_sni_hello.need */
	PROXY_SNI_NOT_TLS = 2,	 /**< the first bytes are not a TLS handshake record */
	PROXY_SNI_MALFORMED = 3, /**< TLS, but broken; see proxy_sni_hello.error */
};

/** Why a ClientHello was refused (PROXY_SNI_NOT_TLS or PROXY_SNI_MALFORMED). */
enum proxy_sni_error {
	PROXY_SNI_E_NONE = 0,
	PROXY_SNI_E_NOT_HANDSHAKE,	 /**< first record's content type is not handshake (22) */
	PROXY_SNI_E_RECORD_VERSION,	 /**< record version is not 3.0 .. 3.4 */
	PROXY_SNI_E_RECORD_EMPTY,	 /**< zero-length handshake record */
	PROXY_SNI_E_RECORD_LENGTH,	 /**< record longer than 2^14 */
	PROXY_SNI_E_RECORD_INTERLEAVED,	 /**< another content type inside the ClientHello */
	PROXY_SNI_E_TOO_LARGE,		 /**< the records would exceed PROXY_SNI_MAX_BYTES */
	PROXY_SNI_E_HANDSHAKE_TYPE,	 /**< first handshake message is not a ClientHello */
	PROXY_SNI_E_HANDSHAKE_TRAILING,	 /**< bytes after the ClientHello in its last record */
	PROXY_SNI_E_HELLO_TRUNCATED,	 /**< a field runs past the ClientHello's length */
	PROXY_SNI_E_HELLO_VERSION,	 /**< legacy_version is not 3.0 .. 3.3 */
	PROXY_SNI_E_SESSION_ID,		 /**< session id longer than 32 */
	PROXY_SNI_E_CIPHER_SUITES,	 /**< cipher suite list empty or of odd length */
	PROXY_SNI_E_COMPRESSION,	 /**< compression method list empty */
	PROXY_SNI_E_EXTENSIONS_LENGTH,	 /**< extension block length does not match the hello */
	PROXY_SNI_E_EXTENSION_LENGTH,	 /**< one extension runs past the extension block */
	PROXY_SNI_E_EXTENSION_DUPLICATE, /**< the same extension type twice */
	PROXY_SNI_E_SERVER_NAME,	 /**< server_name list lengths inconsistent or duplicated */
	PROXY_SNI_E_HOST_NAME,		 /**< host_name is not a valid DNS name */
	PROXY_SNI_E_ALPN,		 /**< ALPN list lengths inconsistent or empty protocol */
	PROXY_SNI_E_SUPPORTED_VERSIONS,	 /**< supported_versions lengths inconsistent */
};

/** One ALPN protocol id as offered (opaque bytes, NUL-terminated for convenience). */
struct proxy_sni_alpn {
	uint8_t len;
	char name[PROXY_SNI_ALPN_NAME_MAX + 1];
};

/** What proxy_sni_parse() found; every field is reset on each call. */
struct proxy_sni_hello {
	/** NEED_MORE: total buffer length to wait for (always <= PROXY_SNI_MAX_BYTES). */
	size_t need;
	/** NOT_TLS / MALFORMED: the reason. */
	enum proxy_sni_error error;
	/** OK: bytes of the buffer taken by the ClientHello records (what to replay upstream). */
	size_t record_bytes;
	/** OK: ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients). */
	uint16_t legacy_version;
	/** OK: a server_name extension with a host_name was present. */
	bool has_sni;
	/** The host name, lowercased, validated, NUL-terminated ("" without SNI). */
	char host[PROXY_SNI_HOST_MAX + 1];
	size_t host_len;
	/** An ALPN extension was present. */
	bool has_alpn;
	/** More than PROXY_SNI_ALPN_MAX protocols or one longer than PROXY_SNI_ALPN_NAME_MAX. */
	bool alpn_truncated;
	unsigned alpn_count;
	struct proxy_sni_alpn alpn[PROXY_SNI_ALPN_MAX];
	/** A supported_versions extension was present ... */
	bool has_supported_versions;
	/** ... and lists TLS 1.3 (0x0304). */
	bool tls13;
};

/**
 * Parse the ClientHello at the start of @p buf (@p len bytes peeked from a new connection).
 * The handshake message may be fragmented over several records; every record of it must be
 * a handshake record. Never allocates, never reads past @p len; @p out is always written.
 *
 * Returns PROXY_SNI_OK, PROXY_SNI_NEED_MORE (out->need > len), PROXY_SNI_NOT_TLS or
 * PROXY_SNI_MALFORMED (out->error names the field).
 */
enum proxy_sni_status proxy_sni_parse(const void *buf, size_t len, struct proxy_sni_hello *out);

/** Whether @p hello offers the ALPN protocol @p proto (e.g. "h2"). */
bool proxy_sni_offers_alpn(const struct proxy_sni_hello *hello, const char *proto);

/** A stable lower-case name for @p st ("ok", "need-more", "not-tls", "malformed"). */
const char *proxy_sni_status_name(enum proxy_sni_status st);

/** A stable lower-case name for @p e (e.g. "record-length", "host-name"). */
const char *proxy_sni_error_name(enum proxy_sni_error e);

/**
 * Validate and lowercase a DNS host name of @p len bytes into @p out (room for
 * PROXY_SNI_HOST_MAX + 1): labels of 1..63 bytes of [A-Za-z0-9-], total <= 253, no trailing
 * dot, last label not all digits (no IP literals). Returns true when valid.
 */
bool proxy_sni_host_valid(const char *name, size_t len, char *out);

#endif /* MOONSTACK_PROXY_SNI_H */
