/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS peer verification for servers and clients: OpenSSL's chain check by default, or a hook
 * (a C function; RA-TLS plugs in here through the Lua binding) that sees the peer's certificates
 * and decides. The hook runs once per handshake, at the leaf; its answer is cached on the SSL.
 * Also the server SSL_CTX policy and the owned copies of the settings.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "moonstack/rt_base.h"
#include "rt_tls_internal.h"

int rt_tls_opts_copy(struct rt_tls_opts *t, const struct rt_tls_config *cfg)
{
	memset(t, 0, sizeof(*t));
	t->require_peer = cfg->require_peer;
	t->insecure = cfg->insecure;
	t->skip_hostname = cfg->skip_hostname;
	t->verify = cfg->verify;
	t->verify_user = cfg->verify_user;
	if ((cfg->cert && !(t->cert = strdup(cfg->cert))) ||
	    (cfg->key && !(t->key = strdup(cfg->key))) || (cfg->ca && !(t->ca = strdup(cfg->ca)))) {
		rt_tls_opts_free(t);
		return -ENOMEM;
	}
	return 0;
}

void rt_tls_opts_free(struct rt_tls_opts *t)
{
	free(t->cert);
	if (t->key)
		OPENSSL_cleanse(t->key, strlen(t->key)); // private key material
	free(t->key);
	free(t->ca);
	memset(t, 0, sizeof(*t));
}

int rt_tls_add_ca_pem(X509_STORE *store, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	if (!bio)
		return -1;
	int n = 0;
	X509 *x;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	ERR_clear_error(); // the read loop ends with a "no start line" error
	BIO_free(bio);
	return n;
}

/* SSL ex_data slot caching the hook's decision: 1 accepted, 2 rejected. */
static int decision_index = -1;

static int decision_slot(void)
{
	if (decision_index < 0)
		decision_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return decision_index;
}

/* Cached decision on the SSL: 0 none yet, 1 accepted, 2 rejected. */
static intptr_t cached_decision(SSL *ssl)
{
	return ssl ? (intptr_t)SSL_get_ex_data(ssl, decision_slot()) : 0;
}

/* Record @p accept on @p ssl and tell OpenSSL. Returns 1 to accept, 0 to refuse. */
static int apply_decision(SSL *ssl, X509_STORE_CTX *store, bool accept)
{
	if (ssl)
		SSL_set_ex_data(ssl, decision_slot(), (void *)(intptr_t)(accept ? 1 : 2));
	if (accept)
		X509_STORE_CTX_set_error(store, X509_V_OK);
	return accept ? 1 : 0;
}

int rt_tls_verify_peer(const struct rt_tls_opts *t, X509_STORE_CTX *store, int preverify_ok)
{
	if (!t || !t->verify)
		return preverify_ok ? 1 : 0;
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	if (X509_STORE_CTX_get_error_depth(store) > 0) {
		// Intermediate levels: the hook decides for the whole chain at the leaf.
		X509_STORE_CTX_set_error(store, X509_V_OK);
		return 1;
	}
	intptr_t cached = cached_decision(ssl);
	if (cached)
		return apply_decision(ssl, store, cached == 1);
	return apply_decision(ssl, store,
			      t->verify(t->verify_user, store, preverify_ok != 0, NULL));
}

/* The system trust store, loaded once on first use. */
static X509_STORE *system_store(void)
{
	static X509_STORE *store;
	if (!store) {
		store = X509_STORE_new();
		if (store && X509_STORE_set_default_paths(store) != 1) {
			X509_STORE_free(store);
			store = NULL;
		}
	}
	return store;
}

/* Our verdict on the server's chain and name. Returns NULL if fine, else the reason. */
static const char *check_server_chain(const struct rt_tls_opts *t, struct rt_tls_cache *cache,
				      X509_STORE *trust, const char *host, X509_STORE_CTX *store)
{
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	if (!leaf)
		return "no server certificate";
	if (t->ca && !trust && !(cache && (trust = rt_tls_cache_store(cache, t->ca))))
		return "tls.ca holds no usable certificate";
	X509_STORE_CTX *v = X509_STORE_CTX_new();
	const char *why = NULL;
	if (!v || X509_STORE_CTX_init(v, trust ? trust : system_store(), leaf,
				      X509_STORE_CTX_get0_untrusted(store)) != 1) {
		why = "cannot set up chain verification";
	} else {
		X509_STORE_CTX_set_purpose(v, X509_PURPOSE_SSL_SERVER);
		if (X509_verify_cert(v) != 1)
			why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(v));
	}
	X509_STORE_CTX_free(v);
	if (!why && !t->skip_hostname && host) {
		int match = X509_check_ip_asc(leaf, host, 0);
		if (match == -2) // not an IP literal: a DNS name
			match = X509_check_host(leaf, host, 0, 0, NULL);
		if (match != 1)
			why = "certificate does not match the host name";
	}
	return why;
}

int rt_tls_check_server(const struct rt_tls_opts *t, struct rt_tls_cache *cache, X509_STORE *trust,
			const char *host, X509_STORE_CTX *store, SSL *ssl, char *rejected,
			size_t rejected_len)
{
	if (X509_STORE_CTX_get_error_depth(store) > 0) {
		X509_STORE_CTX_set_error(store, X509_V_OK); // decided at the leaf
		return 1;
	}
	intptr_t cached = cached_decision(ssl);
	if (cached)
		return apply_decision(ssl, store, cached == 1);
	const char *why = t->insecure ? NULL : check_server_chain(t, cache, trust, host, store);
	bool accept = why == NULL;
	if (t->verify)
		accept = t->verify(t->verify_user, store, accept, why);
	else if (why)
		rt_log(RT_LOG_WARN, "tls", "server certificate of %s rejected: %s",
		       host ? host : "?", why);
	if (!accept && rejected)
		snprintf(rejected, rejected_len, "server certificate rejected: %s",
			 why && !t->verify ? why : "by the verification hook");
	return apply_decision(ssl, store, accept);
}

/*
 * lws loads only the first certificate of tls.cert: send the rest of the chain too (a KMS-issued
 * [leaf, app CA, root] chain must reach the peer whole).
 */
static void add_chain_certs(SSL_CTX *ssl_ctx, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL; // the leaf, loaded by lws
	X509_free(x);
	while (bio && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (SSL_CTX_add0_chain_cert(ssl_ctx, x) != 1)
			X509_free(x);
	ERR_clear_error();
	BIO_free(bio);
}

void rt_tls_server_ctx_configure(SSL_CTX *ssl_ctx, const struct rt_tls_opts *t,
				 int (*verify_cb)(int, X509_STORE_CTX *))
{
	/* lws pins the key exchange to its ecdh_curve (P-256) while OpenSSL clients lead with an
	 * X25519 key share: every TLS 1.3 handshake would pay a HelloRetryRequest round trip. */
	if (SSL_CTX_set1_groups_list(ssl_ctx, RT_TLS_GROUPS) != 1)
		rt_log(RT_LOG_WARN, "tls", "cannot set the key exchange groups %s", RT_TLS_GROUPS);
	if (t->cert)
		add_chain_certs(ssl_ctx, t->cert);
	if (t->ca)
		rt_tls_add_ca_pem(SSL_CTX_get_cert_store(ssl_ctx), t->ca);
	int mode = SSL_VERIFY_NONE;
	if (t->require_peer)
		mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	else if (t->ca || t->verify)
		mode = SSL_VERIFY_PEER; // ask for a certificate, accept its absence
	SSL_CTX_set_verify(ssl_ctx, mode, mode == SSL_VERIFY_NONE ? NULL : verify_cb);
	/* No TLS 1.3 session tickets where client certificates count: a resumed session would skip
	 * the client's (RA-TLS) verification, and each ticket carries the client's certificate
	 * (a quote: two 6 KB tickets encrypted per handshake for nothing). */
	if (mode != SSL_VERIFY_NONE)
		SSL_CTX_set_num_tickets(ssl_ctx, 0);
}
