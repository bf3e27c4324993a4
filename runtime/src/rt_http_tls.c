/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS peer verification for servers and clients: OpenSSL's chain check by default, or an
 * operator/component hook in Lua (RA-TLS plugs in here) that sees the peer's certificates and
 * decides. The hook runs once per handshake, at the leaf; its answer is cached on the SSL.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "rt_http.h"

/* SSL ex_data slot caching the hook's decision: 1 accepted, 2 rejected. */
static int decision_index = -1;

static int decision_slot(void)
{
	if (decision_index < 0)
		decision_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	return decision_index;
}

static void push_der(lua_State *L, X509 *x)
{
	unsigned char *der = NULL;
	int len = i2d_X509(x, &der);
	if (len > 0) {
		lua_pushlstring(L, (const char *)der, (size_t)len);
		OPENSSL_free(der);
	} else {
		lua_pushnil(L);
	}
}

void rt_tls_push_peer(lua_State *L, X509_STORE_CTX *store, int preverify_ok)
{
	lua_createtable(L, 0, 4);
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	if (leaf) {
		push_der(L, leaf);
		lua_setfield(L, -2, "der");
	}
	// The chain as the peer sent it (leaf first), for verifiers that check it themselves.
	lua_newtable(L);
	int n = 0;
	if (leaf) {
		push_der(L, leaf);
		lua_rawseti(L, -2, ++n);
	}
	STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(store);
	for (int i = 0; untrusted && i < sk_X509_num(untrusted); i++) {
		X509 *c = sk_X509_value(untrusted, i);
		if (c == leaf || X509_cmp(c, leaf) == 0)
			continue;
		push_der(L, c);
		lua_rawseti(L, -2, ++n);
	}
	lua_setfield(L, -2, "chain");
	lua_pushboolean(L, preverify_ok);
	lua_setfield(L, -2, "preverify");
	int err = X509_STORE_CTX_get_error(store);
	if (err != X509_V_OK) {
		lua_pushstring(L, X509_verify_cert_error_string(err));
		lua_setfield(L, -2, "error");
	}
}

/* Ask the Lua hook; @p ok / @p why are our own verdict, shown to it. Returns true to accept. */
static bool ask_hook(struct rt_http_ctx *ctx, struct rt_tls_opts *t, X509_STORE_CTX *store, bool ok,
		     const char *why)
{
	lua_State *L = rt_http_ctx_state(ctx);
	int top = lua_gettop(L);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->verify_ref);
	rt_tls_push_peer(L, store, ok);
	if (!ok && why) {
		lua_pushstring(L, why);
		lua_setfield(L, -2, "error");
	}
	bool accept = false;
	if (rt_pcall_log(L, 1, 2, "TLS peer verification hook") == 0) {
		accept = lua_toboolean(L, -2);
		if (!accept) {
			const char *reason = lua_tostring(L, -1);
			rt_log(RT_LOG_WARN, "tls", "peer certificate rejected by hook: %s",
			       reason ? reason : "no reason given");
		}
	}
	lua_settop(L, top);
	return accept;
}

static bool has_hook(const struct rt_tls_opts *t)
{
	return t && t->verify_ref != LUA_NOREF && t->verify_ref != 0;
}

/* Cached decision on the SSL: 0 none yet, 1 accepted, 2 rejected. */
static intptr_t cached_decision(SSL *ssl)
{
	return ssl ? (intptr_t)SSL_get_ex_data(ssl, decision_slot()) : 0;
}

static int apply_decision(SSL *ssl, X509_STORE_CTX *store, bool accept)
{
	if (ssl)
		SSL_set_ex_data(ssl, decision_slot(), (void *)(intptr_t)(accept ? 1 : 2));
	if (accept)
		X509_STORE_CTX_set_error(store, X509_V_OK);
	return accept ? 0 : 1;
}

int rt_tls_verify(struct rt_http_ctx *ctx, struct rt_tls_opts *t, X509_STORE_CTX *store,
		  int preverify_ok)
{
	if (!has_hook(t))
		return preverify_ok ? 0 : 1;
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	if (X509_STORE_CTX_get_error_depth(store) > 0) {
		// Intermediate levels: the hook decides for the whole chain at the leaf.
		X509_STORE_CTX_set_error(store, X509_V_OK);
		return 0;
	}
	intptr_t cached = cached_decision(ssl);
	if (cached)
		return apply_decision(ssl, store, cached == 1);
	return apply_decision(ssl, store, ask_hook(ctx, t, store, preverify_ok, NULL));
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

/* Install the client certificate chain and key of @p t on @p ssl. Returns 0 or -1. */
static int install_identity(struct rt_http_ctx *ctx, SSL *ssl, const struct rt_tls_opts *t)
{
	const struct rt_tls_identity *id = rt_tls_cache_identity(ctx, t->cert, t->key);
	if (!id || SSL_use_certificate(ssl, id->leaf) != 1)
		return -1;
	for (int i = 0; i < sk_X509_num(id->chain); i++)
		if (SSL_add1_chain_cert(ssl, sk_X509_value(id->chain, i)) != 1)
			return -1;
	return SSL_use_PrivateKey(ssl, id->key) == 1 ? 0 : -1;
}

/* Our verdict on the server's chain and name. Returns NULL if fine, else the reason. */
static const char *check_server_chain(struct rt_http_ctx *ctx, const struct rt_tls_opts *t,
				      const char *host, X509_STORE_CTX *store)
{
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	if (!leaf)
		return "no server certificate";
	X509_STORE *trust = NULL;
	if (t->ca && !(trust = rt_tls_cache_store(ctx, t->ca)))
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

int rt_tls_verify_server(struct rt_http_ctx *ctx, struct rt_tls_opts *t, const char *host,
			 X509_STORE_CTX *store, SSL *ssl)
{
	static int identity_slot = -1;
	if (identity_slot < 0)
		identity_slot = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (ssl && t->cert && !SSL_get_ex_data(ssl, identity_slot)) {
		// The client certificate is chosen after the server's is verified: set it now.
		SSL_set_ex_data(ssl, identity_slot, (void *)1);
		if (install_identity(ctx, ssl, t) != 0)
			rt_log(RT_LOG_ERROR, "tls", "cannot use the client certificate/key");
	}
	if (X509_STORE_CTX_get_error_depth(store) > 0) {
		X509_STORE_CTX_set_error(store, X509_V_OK); // decided at the leaf
		return 0;
	}
	intptr_t cached = cached_decision(ssl);
	if (cached)
		return apply_decision(ssl, store, cached == 1);
	const char *why = t->insecure ? NULL : check_server_chain(ctx, t, host, store);
	bool accept = why == NULL;
	if (has_hook(t))
		accept = ask_hook(ctx, t, store, accept, why);
	else if (why)
		rt_log(RT_LOG_WARN, "tls", "server certificate of %s rejected: %s",
		       host ? host : "?", why);
	if (!accept)
		snprintf(t->rejected, sizeof(t->rejected), "server certificate rejected: %s",
			 why && !has_hook(t) ? why : "by the verification hook");
	return apply_decision(ssl, store, accept);
}

void rt_tls_opts_free(lua_State *L, struct rt_tls_opts *t)
{
	free(t->cert);
	if (t->key)
		OPENSSL_cleanse(t->key, strlen(t->key)); // private key material
	free(t->key);
	free(t->ca);
	t->cert = t->key = t->ca = NULL;
	if (L && t->verify_ref != LUA_NOREF && t->verify_ref != 0)
		luaL_unref(L, LUA_REGISTRYINDEX, t->verify_ref);
	t->verify_ref = LUA_NOREF;
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

/* SSL_CTX ex_data slot holding the server a vhost's SSL_CTX belongs to. */
static int server_index = -1;

static int server_verify_cb(int preverify_ok, X509_STORE_CTX *store)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct rt_http_server *srv =
		ssl ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), server_index) : NULL;
	if (!srv || srv->closed)
		return 0;
	return rt_tls_verify(srv->ctx, &srv->tls, store, preverify_ok) == 0 ? 1 : 0;
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

void rt_http_server_tls_setup(struct rt_http_server *srv, SSL_CTX *ssl_ctx)
{
	if (server_index < 0)
		server_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	SSL_CTX_set_ex_data(ssl_ctx, server_index, srv);
	/* lws pins the key exchange to its ecdh_curve (P-256) while OpenSSL clients lead with an
	 * X25519 key share: every TLS 1.3 handshake would pay a HelloRetryRequest round trip. */
	if (SSL_CTX_set1_groups_list(ssl_ctx, RT_TLS_GROUPS) != 1)
		rt_log(RT_LOG_WARN, "tls", "cannot set the key exchange groups %s", RT_TLS_GROUPS);
	if (srv->tls.cert)
		add_chain_certs(ssl_ctx, srv->tls.cert);
	if (srv->tls.ca)
		rt_tls_add_ca_pem(SSL_CTX_get_cert_store(ssl_ctx), srv->tls.ca);
	int mode = SSL_VERIFY_NONE;
	if (srv->tls.require_peer)
		mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
	else if (srv->tls.ca || srv->tls.verify_ref != LUA_NOREF)
		mode = SSL_VERIFY_PEER; // ask for a certificate, accept its absence
	SSL_CTX_set_verify(ssl_ctx, mode, mode == SSL_VERIFY_NONE ? NULL : server_verify_cb);
	/* No TLS 1.3 session tickets where client certificates count: a resumed session would skip
	 * the client's (RA-TLS) verification, and each ticket carries the client's certificate
	 * (a quote: two 6 KB tickets encrypted per handshake for nothing). */
	if (mode != SSL_VERIFY_NONE)
		SSL_CTX_set_num_tickets(ssl_ctx, 0);
}
