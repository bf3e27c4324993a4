/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_route: the SNI naming grammar of the gateway (spec §6.2, upstream parse_dst_info).
 * Split at the first dot; `rest` exactly a base domain ⇒ platform name `<id>[-<tail>]`, where
 * tail loses one trailing `g`, then one trailing `s` (both ⇒ refuse) and what is left (maybe
 * empty) is a decimal u16 port, default 443 with `s` and 80 otherwise; else a custom domain.
 */
#include "proxy/proxy_route.h"

#include <string.h>

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Whether @p rest (n bytes) is the configured base @p base ("*." and a trailing dot ignored). */
static bool base_matches(const char *base, const char *rest, size_t n)
{
	size_t blen, i;

	if (base[0] == '*' && base[1] == '.')
		base += 2;
	blen = strlen(base);
	if (blen > 0 && base[blen - 1] == '.')
		blen--;
	if (n > 0 && rest[n - 1] == '.')
		n--;
	if (blen == 0 || blen != n)
		return false;
	for (i = 0; i < n; i++)
		if (lower(base[i]) != lower(rest[i]))
			return false;
	return true;
}

/* Decimal u16, digits only (leading zeros allowed, as Rust's u16::from_str). */
static bool parse_port(const char *s, size_t n, uint16_t *port)
{
	uint32_t v = 0;
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > 65535)
			return false;
	}
	*port = (uint16_t)v;
	return true;
}

static bool id_is(const struct proxy_route *r, const char *name)
{
	return strcmp(r->id, name) == 0;
}

enum proxy_route_error proxy_route_parse(const struct proxy_route_config *cfg, const char *sni,
					 size_t len, struct proxy_route *out)
{
	const char *dot, *dash, *tail;
	size_t label_len, id_len, tail_len, i;
	bool has_s = false, has_g = false;

	memset(out, 0, sizeof(*out));
	out->base_index = -1;
	if (len == 0)
		return PROXY_ROUTE_E_NO_SNI;
	if (len > 253)
		return PROXY_ROUTE_E_NAME_TOO_LONG;
	dot = memchr(sni, '.', len);
	if (!dot)
		return PROXY_ROUTE_E_NO_DOT;
	label_len = (size_t)(dot - sni);
	for (i = 0; i < cfg->n_base_domains; i++) {
		if (base_matches(cfg->base_domains[i], dot + 1, len - label_len - 1)) {
			out->base_index = (int)i;
			break;
		}
	}
	if (out->base_index < 0) {
		out->kind = PROXY_ROUTE_CUSTOM;
		out->mode = PROXY_ROUTE_PASSTHROUGH;
		return PROXY_ROUTE_E_NONE;
	}

	dash = memchr(sni, '-', label_len);
	id_len = dash ? (size_t)(dash - sni) : label_len;
	if (id_len == 0)
		return PROXY_ROUTE_E_EMPTY_ID;
	if (id_len > PROXY_ROUTE_ID_MAX)
		return PROXY_ROUTE_E_ID_TOO_LONG;
	for (i = 0; i < id_len; i++)
		out->id[i] = lower(sni[i]);
	out->id[id_len] = '\0';
	out->port = 80;
	if (dash) {
		tail = dash + 1;
		tail_len = label_len - id_len - 1;
		if (memchr(tail, '-', tail_len))
			return PROXY_ROUTE_E_TOO_MANY_DASHES;
		if (tail_len > 0 && lower(tail[tail_len - 1]) == 'g') {
			has_g = true;
			tail_len--;
		}
		if (tail_len > 0 && lower(tail[tail_len - 1]) == 's') {
			has_s = true;
			tail_len--;
		}
		if (has_g && has_s)
			return PROXY_ROUTE_E_BOTH_SG;
		if (has_s)
			out->port = 443;
		if (tail_len > 0) {
			if (!parse_port(tail, tail_len, &out->port))
				return PROXY_ROUTE_E_PORT;
			out->port_explicit = true;
		}
	}
	out->mode = has_s ? PROXY_ROUTE_PASSTHROUGH
			  : (has_g ? PROXY_ROUTE_TERMINATE_H2 : PROXY_ROUTE_TERMINATE);
	out->kind = PROXY_ROUTE_APP;

	if (id_is(out, "health") || id_is(out, "gateway")) {
		/* upstream serves these only on the terminate path, port 80 */
		if (has_s)
			return PROXY_ROUTE_E_SPECIAL_PASSTHROUGH;
		if (out->port != 80)
			return PROXY_ROUTE_E_SPECIAL_PORT;
		out->kind = id_is(out, "health") ? PROXY_ROUTE_HEALTH : PROXY_ROUTE_GATEWAY;
	} else if (id_is(out, "localhost")) {
		if (!cfg->insecure_localhost)
			return PROXY_ROUTE_E_LOCALHOST_DISABLED;
		out->kind = PROXY_ROUTE_LOCALHOST;
	}
	return PROXY_ROUTE_E_NONE;
}

const char *proxy_route_error_name(enum proxy_route_error e)
{
	static const char *const names[] = {
		[PROXY_ROUTE_E_NONE] = "none",
		[PROXY_ROUTE_E_NO_SNI] = "no-sni",
		[PROXY_ROUTE_E_NAME_TOO_LONG] = "name-too-long",
		[PROXY_ROUTE_E_NO_DOT] = "no-dot",
		[PROXY_ROUTE_E_EMPTY_ID] = "empty-id",
		[PROXY_ROUTE_E_ID_TOO_LONG] = "id-too-long",
		[PROXY_ROUTE_E_TOO_MANY_DASHES] = "too-many-dashes",
		[PROXY_ROUTE_E_BOTH_SG] = "both-s-and-g",
		[PROXY_ROUTE_E_PORT] = "port",
		[PROXY_ROUTE_E_SPECIAL_PORT] = "special-port",
		[PROXY_ROUTE_E_SPECIAL_PASSTHROUGH] = "special-passthrough",
		[PROXY_ROUTE_E_LOCALHOST_DISABLED] = "localhost-disabled",
	};

	if ((unsigned)e < sizeof(names) / sizeof(names[0]) && names[e])
		return names[e];
	return "unknown";
}
