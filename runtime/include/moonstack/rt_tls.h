/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS for C code, with no lua_State: the settings shared by servers and clients (PEM texts, a
 * client-certificate policy, a peer-verification hook given as a C function), a cache of parsed
 * identities, trust stores and whole server/client SSL_CTX built from PEM, and access to the peer
 * certificates handshakes decoded. The runtime's HTTP layer (moonstack/rt_http.h) is built on it;
 * a C proxy uses it directly. Nothing here is thread-safe: use a cache from one thread (a loop).
 */
#ifndef MOONSTACK_RT_TLS_H
#define MOONSTACK_RT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/** Key exchange groups offered and accepted, in preference order (X25519 first, as OpenSSL
 * clients send their first key share for it). */
#define RT_TLS_GROUPS "X25519:P-256:X448:P-384:P-521"

/**
 * A peer-verification hook: decides whether the peer whose certificate chain @p store holds
 * (X509_STORE_CTX_get0_cert() is the leaf, X509_STORE_CTX_get0_untrusted() the chain as sent) is
 * accepted. @p ok is the built-in verdict (OpenSSL's chain check on a server; the chain, CA and
 * host name check on a client) and @p why its reason when it failed (NULL if there is none beyond
 * the store's error). Its answer replaces the built-in one. Called once per handshake, at the
 * leaf, on the loop thread; log the reason of a refusal yourself.
 */
typedef bool (*rt_tls_verify_fn)(void *user, X509_STORE_CTX *store, bool ok, const char *why);

/** TLS settings of a server or a client. The strings are borrowed: users copy what they keep. */
struct rt_tls_config {
	const char *cert;	 /**< certificate chain PEM (leaf first), or NULL for a client */
	const char *key;	 /**< private key PEM of the leaf, or NULL */
	const char *ca;		 /**< PEM of the CAs trusted for the peer, or NULL */
	bool require_peer;	 /**< server: demand a client certificate */
	bool insecure;		 /**< client: accept any server certificate (tests only) */
	bool skip_hostname;	 /**< client: do not match the certificate against the host */
	rt_tls_verify_fn verify; /**< peer-verification hook, or NULL for the built-in verdict */
	void *verify_user;	 /**< passed to @c verify */
};

/** A certificate chain and its private key, parsed (owned by the cache that returned it). */
struct rt_tls_identity {
	X509 *leaf;
	STACK_OF(X509) * chain; /**< the certificates after the leaf */
	EVP_PKEY *key;
};

/**
 * Parsed TLS material keyed by the SHA-256 of its PEM text, a few entries of each kind (8),
 * least recently used out. OpenSSL 3 spends ~0.2 ms decoding a certificate and ~0.6 ms a PEM
 * private key: a cache lets a connection reuse what an earlier one parsed.
 */
struct rt_tls_cache;

/** A new, empty cache, or NULL (out of memory). */
struct rt_tls_cache *rt_tls_cache_new(void);

/** Free @p c and its entries (SSL_CTX handed out stay valid: they are reference-counted). */
void rt_tls_cache_free(struct rt_tls_cache *c);

/**
 * The identity of the PEM texts @p cert_pem (leaf first, then its chain) and @p key_pem, from
 * @p c or parsed now; NULL if unusable. Borrowed: valid until the next call on @p c.
 */
const struct rt_tls_identity *rt_tls_cache_identity(struct rt_tls_cache *c, const char *cert_pem,
						    const char *key_pem);

/**
 * A trust store holding the certificates of the PEM text @p ca_pem, from @p c or built now; NULL
 * if it holds none. Borrowed: valid until the next call on @p c (X509_STORE_up_ref() to keep it).
 */
X509_STORE *rt_tls_cache_store(struct rt_tls_cache *c, const char *ca_pem);

/**
 * A server SSL_CTX for @p cfg (cert and key required): the identity and its chain, the key
 * exchange groups RT_TLS_GROUPS, TLS 1.2 or later, and the client-certificate policy — a client
 * certificate is demanded with @c require_peer, asked for (its absence accepted) with @c ca or
 * @c verify, checked against @c ca by OpenSSL then decided by @c verify if set; no session
 * tickets then (a resumed session would skip the check). The same settings (same PEM texts, flags
 * and hook) give the same SSL_CTX while it stays in @p c. Returns a new reference (SSL_CTX_free()
 * it), or NULL with a reason in @p err.
 */
SSL_CTX *rt_tls_cache_server_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen);

/**
 * A client SSL_CTX for @p cfg: the client identity if @c cert / @c key are set, and the check of
 * the server the HTTP client applies — chain against @c ca (or the system store), host name (see
 * rt_tls_client_ssl_new()) unless @c skip_hostname, nothing with @c insecure, then @c verify if
 * set. Same caching and ownership as rt_tls_cache_server_ctx().
 */
SSL_CTX *rt_tls_cache_client_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen);

/**
 * A client connection of @p ctx (from rt_tls_cache_client_ctx()) to @p host: SNI and the name the
 * server certificate must match (an IP literal or a DNS name; NULL for none). Set its BIOs or fd
 * and call SSL_connect(). Returns a new SSL (SSL_free() it), or NULL.
 */
SSL *rt_tls_client_ssl_new(SSL_CTX *ctx, const char *host);

/** Add every certificate in the PEM text @p pem to @p store. Returns the count, or -1. */
int rt_tls_add_ca_pem(X509_STORE *store, const char *pem);

/**
 * A peer certificate a handshake decoded, registered for rt_tls_peer_x509() while it is held:
 * natives given its DER (an HTTP request's `peer_cert`) then reuse the decoded X509.
 */
struct rt_tls_peer;

/** Take the peer certificate of the established connection @p ssl and register it; NULL if the
 *  peer sent none (or out of memory). Release it with rt_tls_peer_release(). */
struct rt_tls_peer *rt_tls_peer_take(SSL *ssl);

/** Unregister and free @p p (NULL is fine). */
void rt_tls_peer_release(struct rt_tls_peer *p);

/** The DER of @p p's certificate (@p len gets its length). Valid while @p p is held. */
const unsigned char *rt_tls_peer_der(const struct rt_tls_peer *p, size_t *len);

/** The decoded certificate of @p p. Borrowed: valid while @p p is held. */
X509 *rt_tls_peer_cert(const struct rt_tls_peer *p);

/**
 * The OpenSSL certificate a TLS handshake of this process decoded from exactly the DER @p der
 * (@p len bytes) — a client certificate an HTTP request in flight holds (`req.peer_cert`) — with
 * a new reference (X509_free() it); NULL if there is none. Natives reading `req.peer_cert` use it
 * to skip decoding the certificate a second time.
 */
X509 *rt_tls_peer_x509(const void *der, size_t len);

#endif
