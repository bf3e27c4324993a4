/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_route: the gateway's SNI naming grammar (spec kms-vmm-gateway.md §6.2 steps 3-5, §9
 * row 14, upstream dstack-gateway parse_dst_info). An SNI is split at its first dot; when the
 * rest is exactly one of the configured base domains (those with a wildcard certificate) the
 * label is `<id>[-<port>][s|g]`, else the name is a custom domain (TXT lookup, passthrough).
 */
#ifndef MOONSTACK_PROXY_ROUTE_H
#define MOONSTACK_PROXY_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Longest id kept (one DNS label). */
#define PROXY_ROUTE_ID_MAX 63

/** What a name routes to. */
enum proxy_route_kind {
	PROXY_ROUTE_APP = 0, /**< `<id>` under a base domain: instance id, else app id (§6.4) */
	PROXY_ROUTE_CUSTOM,  /**< not under a base domain: DNS TXT lookup, passthrough (§6.2.6) */
	PROXY_ROUTE_HEALTH,  /**< `health`: 200 on GET / (port 80, terminated) */
	PROXY_ROUTE_GATEWAY, /**< `gateway`: this node's /health, /.dstack/... (port 80) */
	PROXY_ROUTE_LOCALHOST, /**< `localhost` → 127.0.0.1 (only with insecure_localhost) */
};

/** How the connection is handled. */
enum proxy_route_mode {
	PROXY_ROUTE_TERMINATE = 0, /**< TLS terminated here, HTTP/1.1 (no ALPN advertised) */
	PROXY_ROUTE_TERMINATE_H2,  /**< `g`: TLS terminated here, ALPN h2 */
	PROXY_ROUTE_PASSTHROUGH,   /**< `s` or custom domain: bytes relayed, app terminates */
};

/** Why a name was refused. */
enum proxy_route_error {
	PROXY_ROUTE_E_NONE = 0,
	PROXY_ROUTE_E_NO_SNI,		   /**< empty name (a hello without SNI is closed) */
	PROXY_ROUTE_E_NAME_TOO_LONG,	   /**< longer than 253 */
	PROXY_ROUTE_E_NO_DOT,		   /**< no dot: neither platform nor custom name */
	PROXY_ROUTE_E_EMPTY_ID,		   /**< `-80.base`: nothing before the dash */
	PROXY_ROUTE_E_ID_TOO_LONG,	   /**< id longer than 63 */
	PROXY_ROUTE_E_TOO_MANY_DASHES,	   /**< `a-1-2.base` */
	PROXY_ROUTE_E_BOTH_SG,		   /**< `a-sg.base`: both suffixes */
	PROXY_ROUTE_E_PORT,		   /**< tail not a decimal u16 (`a-gs`, `a-99999`) */
	PROXY_ROUTE_E_SPECIAL_PORT,	   /**< health / gateway on a port other than 80 */
	PROXY_ROUTE_E_SPECIAL_PASSTHROUGH, /**< health / gateway with `s` */
	PROXY_ROUTE_E_LOCALHOST_DISABLED,  /**< localhost without insecure_localhost */
};

/** The configured names. */
struct proxy_route_config {
	/** Base domains with a wildcard cert: "example.com" or "*.example.com" (same thing). */
	const char *const *base_domains;
	size_t n_base_domains;
	/** core.debug.insecure_localhost_backend: let `localhost` mean 127.0.0.1. */
	bool insecure_localhost;
};

/** A parsed name. */
struct proxy_route {
	enum proxy_route_kind kind;
	enum proxy_route_mode mode;
	/** APP / HEALTH / GATEWAY / LOCALHOST: the id, NUL-terminated ("" for CUSTOM). */
	char id[PROXY_ROUTE_ID_MAX + 1];
	/** Backend port: explicit, else 443 with `s`, else 80 (0 for CUSTOM: from the TXT). */
	uint16_t port;
	/** The port was written in the name. */
	bool port_explicit;
	/** Index into config->base_domains of the matching base (-1 for CUSTOM). */
	int base_index;
};

/**
 * Parse @p sni (@p len bytes, as returned by proxy_sni_parse: lowercase, validated) against
 * @p cfg into @p out. Base domains compare case-insensitively, a trailing dot ignored.
 * Returns PROXY_ROUTE_E_NONE or the refusal; @p out is always written.
 */
enum proxy_route_error proxy_route_parse(const struct proxy_route_config *cfg, const char *sni,
					 size_t len, struct proxy_route *out);

/** A stable lower-case name for @p e (e.g. "too-many-dashes"). */
const char *proxy_route_error_name(enum proxy_route_error e);

#endif /* MOONSTACK_PROXY_ROUTE_H */
