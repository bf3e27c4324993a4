/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_tls: the server SSL_CTX of each base domain (its wildcard certificate), built on the
 * main thread when a snapshot is published: TLS 1.2 and 1.3 through the runtime's C-only TLS
 * cache (rt_tls.h), session tickets on (one ticket key per SSL_CTX, so every worker resumes the
 * sessions of every other), ALPN `h2` chosen only for connections routed with `g` (the
 * connection marks its SSL with SSL_set_app_data). An unchanged certificate and key keep the
 * SSL_CTX of the previous snapshot, so tickets issued before a reload stay valid.
 */
#include "proxy/proxy_internal.h"

#include <stdio.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int configured_index = -1;

static void init_index(void)
{
	configured_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ALPN: `h2` for a connection marked h2 that offers it; otherwise no ALPN at all. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	if (!SSL_get_app_data(ssl))
		return SSL_TLSEXT_ERR_NOACK;
	for (unsigned i = 0; i < inlen;) {
		unsigned n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Give @p ctx (maybe shared through the rt cache) the proxy's settings once. */
static void configure(SSL_CTX *ctx)
{
	if (SSL_CTX_get_ex_data(ctx, configured_index))
		return;
	static const unsigned char sid_ctx[] = "moonstack-proxy";
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	/* stateless tickets only (one per handshake): no session cache to lock across workers
	 * or to grow with the connections */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 1);
	/* read whole records (and what follows) in one read(2), not the 5-byte header first: one
	 * system call less per request (the relay asks SSL_has_pending() before it polls) */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_ex_data(ctx, configured_index, (void *)1);
}

/* The context of @p prev for the same PEM texts, or NULL. */
static SSL_CTX *reuse(const struct proxy_snapshot *prev, const struct px_domain *d)
{
	for (size_t i = 0; prev && i < prev->ndomains; i++) {
		const struct px_domain *p = &prev->domains[i];
		if (p->ctx && strcmp(p->cert, d->cert) == 0 && strcmp(p->key, d->key) == 0)
			return p->ctx;
	}
	return NULL;
}

int px_tls_build(struct rt_tls_cache *cache, struct proxy_snapshot *snap,
		 const struct proxy_snapshot *prev, char *err, size_t errlen)
{
	pthread_once(&once, init_index);
	if (configured_index < 0) {
		snprintf(err, errlen, "cannot allocate an SSL_CTX index");
		return -1;
	}
	for (size_t i = 0; i < snap->ndomains; i++) {
		struct px_domain *d = &snap->domains[i];
		if (!d->cert || !d->key || d->ctx)
			continue;
		SSL_CTX *ctx = reuse(prev, d);
		if (ctx) {
			SSL_CTX_up_ref(ctx);
			d->ctx = ctx;
			continue;
		}
		struct rt_tls_config cfg = { .cert = d->cert, .key = d->key };
		char why[200] = "";
		ctx = rt_tls_cache_server_ctx(cache, &cfg, why, sizeof(why));
		if (!ctx) {
			snprintf(err, errlen, "base domain %s: %s", d->name, why);
			return -1;
		}
		configure(ctx);
		d->ctx = ctx;
	}
	return 0;
}
