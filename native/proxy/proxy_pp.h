/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_pp: HAProxy PROXY protocol v1 (text) and v2 (binary) for the gateway (spec
 * kms-vmm-gateway.md §6.2 step 1, §6.5): a strict, stateless, allocation-free parser over the
 * bytes peeked from a new connection, and builders for the header the gateway writes before the
 * payload to a backend whose port policy asks for it. No I/O.
 *
 * Accepted (the rest is MALFORMED with the field named in `error`):
 *  v1: "PROXY TCP4 <ipv4> <ipv4> <port> <port>\r\n", the same with TCP6 and IPv6 literals, or
 *      "PROXY UNKNOWN[ <anything but CR/LF>]\r\n"; single spaces, at most 107 bytes, IPv4 as
 *      four decimal octets without leading zeros, ports 0..65535 without leading zeros.
 *  v2: the 12-byte signature, version 2, command LOCAL (address block ignored, as the spec
 *      says) or PROXY with AF_INET or AF_INET6 over STREAM, or AF_UNSPEC (treated like LOCAL);
 *      AF_UNIX and DGRAM are refused (a gateway is reached over TCP only); the whole header at
 *      most PROXY_PP_MAX_BYTES; TLVs after the addresses walked and bounds-checked, not kept.
 */
#ifndef MOONSTACK_PROXY_PP_H
#define MOONSTACK_PROXY_PP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/** Longest v1 header, CRLF included (the spec's bound). */
#define PROXY_PP_V1_MAX 107
/** v2 fixed part: signature, version/command, family/transport, length. */
#define PROXY_PP_V2_HDR 16
/** Longest header accepted (v2: 16 bytes + address block + TLVs). */
#define PROXY_PP_MAX_BYTES 4096
/** Room enough for any header the builders write (v1 TCP6 is the longest, 104 bytes). */
#define PROXY_PP_BUILD_MAX 108

/** Verdict of proxy_pp_parse(). */
enum proxy_pp_result {
	PROXY_PP_OK,	    /**< a whole, valid header; see proxy_pp_header */
	PROXY_PP_NEED_MORE, /**< a valid prefix; proxy_pp_header.need is the total to wait for */
	PROXY_PP_MALFORMED, /**< a PROXY header, but broken; proxy_pp_header.error names the field
			     */
	PROXY_PP_NOT_PP,    /**< the bytes start neither "PROXY " nor the v2 signature */
};

/** What proxy_pp_parse() found; every field is reset on each call. */
struct proxy_pp_header {
	size_t header_bytes;	     /**< OK: bytes the header took (consume them) */
	bool local;		     /**< OK: v2 LOCAL or UNSPEC / v1 UNKNOWN: no addresses */
	int family;		     /**< OK: AF_INET, AF_INET6, AF_UNSPEC (when local) */
	struct sockaddr_storage src; /**< OK, not local: the client (port in network order) */
	struct sockaddr_storage dst; /**< OK, not local: the address it connected to */
	size_t need;	   /**< NEED_MORE: total bytes to wait for (> len, a lower bound) */
	const char *error; /**< MALFORMED: the field, e.g. "v1-source-port", "v2-tlv" */
	int version;	   /**< OK / MALFORMED / NEED_MORE once known: 1 or 2, else 0 */
};

/**
 * Parse the PROXY header at the start of @p buf (@p len bytes peeked so far). Stateless: call
 * again on the grown buffer after NEED_MORE. out->need is always > len, <= PROXY_PP_MAX_BYTES and
 * never more than the header's real length, so waiting for it cannot stall a sender that then
 * waits for the server. Never reads past @p len, never allocates; @p out is always written.
 */
enum proxy_pp_result proxy_pp_parse(const uint8_t *buf, size_t len, struct proxy_pp_header *out);

/**
 * Write a v2 header for @p src -> @p dst (command PROXY, STREAM, AF_INET or AF_INET6; a mixed
 * pair is written as AF_INET6 with the IPv4 side v4-mapped). With @p src or @p dst NULL it writes
 * a LOCAL header (16 bytes). Returns the bytes written, or -1 with errno ENOSPC when @p cap is
 * too small or EAFNOSUPPORT for another family.
 */
ssize_t proxy_pp_build_v2(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
			  size_t cap);

/**
 * Write a v1 header ("PROXY TCP4 ...\r\n", TCP6, mixed pairs as TCP6 v4-mapped; "PROXY
 * UNKNOWN\r\n" when @p src or @p dst is NULL). Not NUL-terminated. Returns the bytes written, or
 * -1 with errno ENOSPC / EAFNOSUPPORT as proxy_pp_build_v2().
 */
ssize_t proxy_pp_build_v1(const struct sockaddr *src, const struct sockaddr *dst, uint8_t *out,
			  size_t cap);

/** A stable lower-case name for @p r ("ok", "need-more", "malformed", "not-pp"). */
const char *proxy_pp_result_name(enum proxy_pp_result r);

#endif /* MOONSTACK_PROXY_PP_H */
