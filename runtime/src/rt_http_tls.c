/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS glue between libwebsockets and the TLS core (rt_tls.c): a server vhost's SSL_CTX gets its
 * server's client-certificate policy, and a client connection gets its client identity and the
 * check of the server's certificate, both in the callbacks lws makes during the handshake.
 */
#include <stdint.h>

#include <openssl/x509.h>

#include "rt_http_internal.h"

/* SSL_CTX ex_data slot holding the server a vhost's SSL_CTX belongs to. */
static int server_index = -1;

static int server_verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct rt_http_server *srv =
		ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_index) : NULL;
	if (!srv || srv->closed)
		return 0;
	return rt_tls_verify_peer(&srv->tls, store, preverify_ok);
}

void rt_http_server_tls_setup(struct rt_http_server *srv, SSL_CTX *ssl_ctx)
{
	if (server_index < 0)
		server_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	SSL_CTX_set_ex_data(ssl_ctx, server_index, srv);
	rt_tls_server_ctx_configure(ssl_ctx, &srv->tls, server_verify_cb);
}

/* Install the client certificate chain and key of @p t on @p ssl. Returns 0 or -1. */
static int install_identity(struct rt_tls_cache *cache, SSL *ssl, const struct rt_tls_opts *t)
{
	const struct rt_tls_identity *id =
		cache ? rt_tls_cache_identity(cache, t->cert, t->key) : NULL;
	if (!id || SSL_use_certificate(ssl, id->leaf) != 1)
		return -1;
	for (int i = 0; i < sk_X509_num(id->chain); i++)
		if (SSL_add1_chain_cert(ssl, sk_X509_value(id->chain, i)) != 1)
			return -1;
	return SSL_use_PrivateKey(ssl, id->key) == 1 ? 0 : -1;
}

int rt_http_client_verify(struct rt_tls_cache *cache, const struct rt_tls_opts *t, const char *host,
			  X509_STORE_CTX *store, SSL *ssl, char *rejected, size_t rejected_len)
{
	static int identity_slot = -1;
	if (identity_slot < 0)
		identity_slot = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (ssl && t->cert && !SSL_get_ex_data(ssl, identity_slot)) {
		// The client certificate is chosen after the server's is verified: set it now.
		SSL_set_ex_data(ssl, identity_slot, (void *)1);
		if (install_identity(cache, ssl, t) != 0)
			rt_log(RT_LOG_ERROR, "tls", "cannot use the client certificate/key");
	}
	// A Host of "name:port" (opts.host_port) names "name" for the certificate check.
	char bare[256];
	const char *colon = host ? strchr(host, ':') : NULL;
	if (colon && !strchr(colon + 1, ':') && (size_t)(colon - host) < sizeof(bare)) {
		memcpy(bare, host, (size_t)(colon - host));
		bare[colon - host] = '\0';
		host = bare;
	}
	int ok = rt_tls_check_server(t, cache, NULL, host, store, ssl, rejected, rejected_len);
	return ok ? 0 : 1;
}

struct rt_tls_peer *rt_http_peer_take(struct lws *wsi)
{
	SSL *ssl = lws_get_ssl(wsi);
	return ssl ? rt_tls_peer_take(ssl) : NULL;
}
