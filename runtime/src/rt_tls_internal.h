/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The TLS core's private entry points: owned copies of the TLS settings and the verification
 * decisions servers and clients share (rt_tls.c), used by the HTTP glue (rt_http_tls.c) and by
 * the SSL_CTX builders (rt_tls_ctx.c). Public API: moonstack/rt_tls.h.
 */
#ifndef MOONSTACK_RT_TLS_INTERNAL_H
#define MOONSTACK_RT_TLS_INTERNAL_H

#include "moonstack/rt_tls.h"

/** TLS settings, PEM texts owned (heap copies of a struct rt_tls_config). */
struct rt_tls_opts {
	char *cert;		 /**< certificate chain PEM (server cert, or client cert) */
	char *key;		 /**< private key PEM */
	char *ca;		 /**< trusted CA PEM for the peer, or NULL */
	bool require_peer;	 /**< server: demand a client certificate */
	bool insecure;		 /**< client: accept any server certificate (tests only) */
	bool skip_hostname;	 /**< client: do not match the certificate against the host */
	rt_tls_verify_fn verify; /**< peer-verification hook, or NULL */
	void *verify_user;
};

/** Copy @p cfg into @p t (zeroed first). Returns 0 or -ENOMEM (@p t then holds nothing). */
int rt_tls_opts_copy(struct rt_tls_opts *t, const struct rt_tls_config *cfg);

/** Free the copies in @p t (wiping the private key) and zero it. */
void rt_tls_opts_free(struct rt_tls_opts *t);

/**
 * Decide on a client certificate a server sees (OpenSSL's verify callback contract: returns 1 to
 * go on, 0 to refuse): without a hook OpenSSL's @p preverify_ok stands; with one, its answer at the
 * leaf decides for the whole chain, once per handshake (cached on the SSL).
 */
int rt_tls_verify_peer(const struct rt_tls_opts *t, X509_STORE_CTX *store, int preverify_ok);

/**
 * Decide on a server certificate a client sees (returns 1 to accept, 0 to refuse): at the leaf,
 * the chain against @p t's CA — @p trust if given, else looked up in @p cache — or the system
 * store, then the host name @p host, unless @p t is insecure; then the hook if any decides. Once
 * per handshake (cached on @p ssl); intermediate levels defer to the leaf. A refusal's reason goes
 * to @p rejected (if not NULL) and to the log.
 */
int rt_tls_check_server(const struct rt_tls_opts *t, struct rt_tls_cache *cache, X509_STORE *trust,
			const char *host, X509_STORE_CTX *store, SSL *ssl, char *rejected,
			size_t rejected_len);

/**
 * Apply @p t's server policy to @p ssl_ctx: key exchange groups, the chain certificates after
 * the leaf of t->cert, t->ca as the client CA store, the verify mode with @p verify_cb, no session
 * tickets when client certificates count.
 */
void rt_tls_server_ctx_configure(SSL_CTX *ssl_ctx, const struct rt_tls_opts *t,
				 int (*verify_cb)(int, X509_STORE_CTX *));

/** Build a server SSL_CTX for @p cfg (see rt_tls_cache_server_ctx()), uncached: the identity and
 *  trust come from @p c. Returns a new SSL_CTX, or NULL with "CODE: message" in @p err. */
SSL_CTX *rt_tls_build_server_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen);

/** Build a client SSL_CTX for @p cfg (see rt_tls_cache_client_ctx()), uncached. */
SSL_CTX *rt_tls_build_client_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen);

#endif
