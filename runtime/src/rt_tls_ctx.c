/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Server and client SSL_CTX built from PEM through the TLS cache, for C code that runs its own
 * connections (a proxy): the same policy the HTTP layer applies through libwebsockets — the
 * client-certificate policy and hook on a server, the server check (chain, CA, host name, hook)
 * on a client. Each SSL_CTX owns a copy of its settings (freed with it).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "moonstack/rt_base.h"
#include "rt_tls_internal.h"

/* What an SSL_CTX built here carries in its ex_data: its settings and resolved trust store. */
struct ctx_state {
	struct rt_tls_opts opts;
	X509_STORE *trust; /* client: the store of opts.ca (a reference), or NULL */
};

static void state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct ctx_state *st = ptr;
	if (!st)
		return;
	rt_tls_opts_free(&st->opts);
	X509_STORE_free(st->trust);
	free(st);
}

static void host_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

static int state_index = -1; /* SSL_CTX ex_data: struct ctx_state */
static int host_index = -1;  /* SSL ex_data: the host name a client checks */

static bool init_indexes(void)
{
	if (state_index < 0)
		state_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, state_free);
	if (host_index < 0)
		host_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, host_free);
	return state_index >= 0 && host_index >= 0;
}

static struct ctx_state *state_of_store(X509_STORE_CTX *store, SSL **ssl)
{
	*ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	return *ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(*ssl), state_index) : NULL;
}

static int server_verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl;
	struct ctx_state *st = state_of_store(store, &ssl);
	return st ? rt_tls_verify_peer(&st->opts, store, preverify_ok) : 0;
}

static int client_verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl;
	struct ctx_state *st = state_of_store(store, &ssl);
	if (!st)
		return 0;
	const char *host = SSL_get_ex_data(ssl, host_index);
	return rt_tls_check_server(&st->opts, NULL, st->trust, host, store, ssl, NULL, 0);
}

static void fail(char *err, size_t errlen, const char *code, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char ossl[160] = "";
	if (e)
		ERR_error_string_n(e, ossl, sizeof(ossl));
	ERR_clear_error();
	snprintf(err, errlen, "%s: %s%s%s", code, what, ossl[0] ? ": " : "", ossl);
}

/* A new SSL_CTX of @p method with a copy of @p cfg attached. */
static SSL_CTX *new_ctx(const SSL_METHOD *method, const struct rt_tls_config *cfg,
			struct ctx_state **out, char *err, size_t errlen)
{
	struct ctx_state *st = calloc(1, sizeof(*st));
	SSL_CTX *ctx = st && init_indexes() ? SSL_CTX_new(method) : NULL;
	if (!ctx || rt_tls_opts_copy(&st->opts, cfg) != 0) {
		SSL_CTX_free(ctx);
		free(st);
		fail(err, errlen, "ENOMEM", "cannot create the TLS context");
		return NULL;
	}
	SSL_CTX_set_ex_data(ctx, state_index, st); // freed with ctx from here
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	*out = st;
	return ctx;
}

/* Use @p id (leaf, chain, key) as @p ctx's certificate. Returns 0 or -1. */
static int use_identity(SSL_CTX *ctx, const struct rt_tls_identity *id, bool with_chain)
{
	if (!id || SSL_CTX_use_certificate(ctx, id->leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, id->key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		return -1;
	for (int i = 0; with_chain && i < sk_X509_num(id->chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(id->chain, i)) != 1)
			return -1;
	return 0;
}

SSL_CTX *rt_tls_build_server_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen)
{
	if (!cfg->cert || !cfg->key) {
		snprintf(err, errlen, "EINVAL: a TLS server needs a certificate and a key");
		return NULL;
	}
	struct ctx_state *st;
	SSL_CTX *ctx = new_ctx(TLS_server_method(), cfg, &st, err, errlen);
	if (!ctx)
		return NULL;
	// The chain after the leaf is added from the PEM by rt_tls_server_ctx_configure().
	if (use_identity(ctx, rt_tls_cache_identity(c, cfg->cert, cfg->key), false) != 0) {
		fail(err, errlen, "EKEY", "unusable certificate or key");
		SSL_CTX_free(ctx);
		return NULL;
	}
	rt_tls_server_ctx_configure(ctx, &st->opts, server_verify_cb);
	return ctx;
}

SSL_CTX *rt_tls_build_client_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen)
{
	if ((cfg->cert == NULL) != (cfg->key == NULL)) {
		snprintf(err, errlen, "EINVAL: a client certificate and its key go together");
		return NULL;
	}
	struct ctx_state *st;
	SSL_CTX *ctx = new_ctx(TLS_client_method(), cfg, &st, err, errlen);
	if (!ctx)
		return NULL;
	if (SSL_CTX_set1_groups_list(ctx, RT_TLS_GROUPS) != 1)
		rt_log(RT_LOG_WARN, "tls", "cannot set the key exchange groups %s", RT_TLS_GROUPS);
	if (cfg->cert && use_identity(ctx, rt_tls_cache_identity(c, cfg->cert, cfg->key), true)) {
		fail(err, errlen, "EKEY", "unusable client certificate or key");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (cfg->ca) {
		st->trust = rt_tls_cache_store(c, cfg->ca);
		if (!st->trust || X509_STORE_up_ref(st->trust) != 1) {
			st->trust = NULL;
			snprintf(err, errlen, "EINVAL: tls.ca holds no usable certificate");
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	// Our check replaces OpenSSL's (whose store stays empty) at every level.
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, client_verify_cb);
	return ctx;
}

SSL *rt_tls_client_ssl_new(SSL_CTX *ctx, const char *host)
{
	if (!init_indexes() || !ctx)
		return NULL;
	SSL *ssl = SSL_new(ctx);
	char *copy = host ? strdup(host) : NULL;
	if (!ssl || (host && !copy) || SSL_set_ex_data(ssl, host_index, copy) != 1) {
		free(copy);
		SSL_free(ssl);
		return NULL;
	}
	unsigned char buf[16];
	bool literal =
		host && (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1);
	if (host && !literal && SSL_set_tlsext_host_name(ssl, host) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}
