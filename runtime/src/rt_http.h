/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP and websocket on the runtime's loop through libwebsockets: the objects shared by the
 * context, server, websocket, client and TLS files, and their internal entry points. The Lua
 * binding (`moonstack.native.http`) is in rt_http_lua.c.
 */
#ifndef MOONSTACK_RT_HTTP_H
#define MOONSTACK_RT_HTTP_H

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "moonstack/rt.h"
#include "rt_json.h"

/** Largest request body accepted by default (the dstack guest API's limit). */
#define RT_HTTP_DEFAULT_MAX_BODY (10u * 1024 * 1024)
/** Largest websocket message accepted by default. */
#define RT_WS_DEFAULT_MAX_MESSAGE (1u * 1024 * 1024)

/**
 * One lws context on the runtime's loop. It exists while a server or client request uses it
 * (an idle lws context would keep the loop alive) and is destroyed in the two stages lws needs
 * on a foreign loop.
 */
struct rt_http_ctx {
	struct rt_runtime *rt;
	struct lws_context *lws;
	int users;	   /**< servers + client requests holding the context */
	uv_timer_t reaper; /**< finishes a destroy on a later loop turn */
	bool destroying;
	int reaper_turns;
	lua_State *active_L; /**< state of the Lua call in progress, for callbacks it triggers */
	struct lws_vhost *client_vhost; /**< shared by client requests, created on first use */
	struct rt_tls_cache *tls_cache; /**< parsed client TLS material (rt_tls_cache.c) */
};

/** Protocols of the context and the client vhost: [0] receives client TLS verification. */
extern const struct lws_protocols rt_http_client_protocols[];

/** TLS settings shared by servers and clients. PEM text, owned (heap copies). */
struct rt_tls_opts {
	char *cert;	    /**< certificate chain PEM (server cert, or client cert) */
	char *key;	    /**< private key PEM */
	char *ca;	    /**< trusted CA PEM for the peer, or NULL */
	bool require_peer;  /**< server: demand a client certificate */
	bool insecure;	    /**< client: accept any server certificate (tests only) */
	bool skip_hostname; /**< client: do not match the certificate against the host */
	int verify_ref;	    /**< Lua function ref: verify(peer) -> true | false, reason */
	char rejected[160]; /**< client: why the server's certificate was refused */
};

struct rt_http_server;

/** One HTTP request/response pair. Shared by the connection and the Lua `exchange` object. */
struct rt_http_exchange {
	struct lws *wsi; /**< NULL once the connection is gone */
	struct rt_http_server *server;
	int refs; /**< connection + Lua userdata */
	char method[12];
	char *path;
	char *query;
	struct rt_buf body;
	size_t body_limit;
	bool body_too_big;
	bool close_after; /**< drop the connection after the response (unread body) */
	bool rx_paused;	  /**< reading stopped until the (later) response is written */
	bool dispatched;
	/* response */
	bool responded;
	bool head_only;
	int status;
	struct rt_buf resp_headers; /**< "name\0value\0" pairs */
	char *resp_body;
	size_t resp_len;
	/* client certificate seen on this connection, if any */
	struct rt_tls_peer *peer;
};

/** Per-connection data lws allocates for our protocol (HTTP and websocket both). */
struct rt_http_pss {
	struct rt_http_exchange *ex;
	struct rt_ws_conn *ws;
};

/** A websocket connection accepted by a server. Shared by lws and the Lua `ws` object. */
struct rt_ws_conn {
	struct lws *wsi;
	struct rt_http_server *server;
	int refs;
	unsigned long id;
	char *path;
	struct rt_ws_msg *out_head, *out_tail;
	size_t out_bytes;
	struct rt_buf in;
	bool in_binary;
	bool close_requested;
	bool close_started; /**< the close frame is on its way (lws sends it) */
	int close_code;
	char close_reason[124];
	int lua_ref; /**< the Lua userdata, kept alive while open */
};

/** A queued outgoing websocket message (LWS_PRE bytes of headroom before the payload). */
struct rt_ws_msg {
	struct rt_ws_msg *next;
	size_t len;
	bool binary;
	unsigned char data[];
};

/** A listening server: one lws vhost. */
struct rt_http_server {
	struct rt_http_ctx *ctx;
	struct lws_vhost *vhost;
	struct lws_protocols *protocols; /**< [0] ours, subprotocols, terminator */
	char *name;
	char *unix_path;
	mode_t unix_mode;    /**< permissions of the unix socket (0600 by default) */
	char lws_iface[108]; /**< the unix path as given to lws (see unix_iface()) */
	char *host;	     /**< TCP address to bind, or NULL for all */
	int port;	     /**< TCP port (0: any); the bound port once listening */
	size_t max_body;
	size_t max_ws_message;
	char **ws_paths;
	int n_ws_paths;
	struct rt_tls_opts tls;
	int on_request_ref;
	int on_ws_ref;
	int self_ref; /**< the Lua userdata, kept alive while listening */
	bool closed;
	bool vhost_destroyed;		       /**< lws_vhost_destroy() called; finalize pending */
	int dispatching;		       /**< Lua handler calls in progress on this server */
	struct rt_http_server *next_listening; /**< process-wide list of started servers */
	bool ctx_released;
	int refs; /**< the Lua userdata, the vhost, a pending close */
	unsigned long next_ws_id;
	unsigned long requests;
};

/** Get (creating if needed) the context for @p L's runtime and take a reference on it. */
struct rt_http_ctx *rt_http_ctx_acquire(lua_State *L);

/** Drop a reference; the context is destroyed when the last one goes. */
void rt_http_ctx_release(struct rt_http_ctx *ctx);

/** The state Lua callbacks must run on now (the active call's state, or the main one). */
lua_State *rt_http_ctx_state(struct rt_http_ctx *ctx);

/** The lws protocol callback for servers (HTTP + websocket). */
int rt_http_server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			    size_t len);

/** The lws protocol callback for client requests. */
int rt_http_client_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			    size_t len);

/** Websocket events on a server connection (called from the server callback). */
int rt_ws_handle(struct lws *wsi, enum lws_callback_reasons reason, struct rt_http_pss *pss,
		 void *in, size_t len);

/** Queue a message on @p c. Returns 0, -ENOTCONN if closed, -ENOBUFS if over the queue cap. */
int rt_ws_send(struct rt_ws_conn *c, const void *data, size_t len, bool binary);

/** Ask for a close with @p code and @p reason. */
void rt_ws_close(struct rt_ws_conn *c, int code, const char *reason);

/** Drop one reference to @p c; frees it on the last. */
void rt_ws_conn_unref(struct rt_ws_conn *c);

/** Drop one reference to @p ex; frees it on the last. */
void rt_http_exchange_unref(struct rt_http_exchange *ex);

/**
 * Record the response on @p ex and schedule writing it. @p headers is a "name\0value\0" list.
 * Takes ownership of @p body (malloc'ed). Returns 0, -ENOTCONN or -EALREADY.
 */
int rt_http_exchange_respond(struct rt_http_exchange *ex, int status, struct rt_buf *headers,
			     char *body, size_t len);

/**
 * Start listening as configured in @p srv (fields filled by the binding). On failure returns
 * a negative errno and sets @p err. The server holds a context reference until closed.
 */
int rt_http_server_start(struct rt_http_server *srv, lua_State *L, char *err, size_t errlen);

/** Stop accepting and close every connection (asynchronously). Idempotent. */
void rt_http_server_close(struct rt_http_server *srv, lua_State *L);

/** Drop one reference to @p srv; frees it on the last. */
void rt_http_server_unref(struct rt_http_server *srv);

/** Push the Lua `exchange` object for @p ex (takes a reference). */
void rt_http_push_exchange(lua_State *L, struct rt_http_exchange *ex);

/** Push the Lua `ws` object for @p c (created on first use, kept while the socket is open). */
void rt_ws_push(lua_State *L, struct rt_ws_conn *c);

/** Install @p srv's client-certificate policy on its SSL_CTX (called by lws at vhost init). */
void rt_http_server_tls_setup(struct rt_http_server *srv, SSL_CTX *ssl_ctx);

/** Key exchange groups offered and accepted, in preference order (X25519 first, as OpenSSL
 * clients send their first key share for it). */
#define RT_TLS_GROUPS "X25519:P-256:X448:P-384:P-521"

/** A client certificate chain and its key, parsed (owned by the cache). */
struct rt_tls_identity {
	X509 *leaf;
	STACK_OF(X509) * chain; /**< the certificates after the leaf */
	EVP_PKEY *key;
};

/** The parsed identity of the PEM texts @p cert_pem (leaf first, then its chain) and
 * @p key_pem, from @p ctx's cache or parsed now; NULL if unusable. Valid until the next call. */
const struct rt_tls_identity *rt_tls_cache_identity(struct rt_http_ctx *ctx, const char *cert_pem,
						    const char *key_pem);

/** A trust store holding the certificates of the PEM text @p ca_pem, from @p ctx's cache or built
 * now; NULL if it holds none. Borrowed: valid until the next call. */
X509_STORE *rt_tls_cache_store(struct rt_http_ctx *ctx, const char *ca_pem);

/** Free @p ctx's cache (context teardown). */
void rt_tls_cache_free(struct rt_http_ctx *ctx);

/** Add every certificate in the PEM text @p pem to @p store. Returns the count, or -1. */
int rt_tls_add_ca_pem(X509_STORE *store, const char *pem);

/** lua_CFunction `request(opts, callback)` of the binding (rt_http_client.c). */
int rt_http_client_request(lua_State *L);

/** Register the client's Lua class (called by luaopen). */
void rt_http_client_register(lua_State *L);

/** Parse a Lua `tls` options table at @p idx into @p t. Raises on misuse. */
void rt_tls_opts_parse(lua_State *L, int idx, struct rt_tls_opts *t, bool server);

/** Parse a Lua headers table at @p idx into "name\0value\0" pairs. Raises on misuse. */
void rt_http_headers_parse(lua_State *L, int idx, struct rt_buf *out);

/** Free the heap copies in @p t (and unref its Lua function) . */
void rt_tls_opts_free(lua_State *L, struct rt_tls_opts *t);

/**
 * Handle LWS_CALLBACK_OPENSSL_PERFORM_{CLIENT,SERVER}_CERT_VERIFICATION with @p t's policy:
 * with a Lua verifier, its answer replaces OpenSSL's; otherwise OpenSSL's stands.
 * Returns the lws callback value (0 = accept).
 */
int rt_tls_verify(struct rt_http_ctx *ctx, struct rt_tls_opts *t, X509_STORE_CTX *store,
		  int preverify_ok);

/**
 * Verify a server certificate for a client connection: install the client identity of @p t on
 * @p ssl (before the client certificate is chosen), check the chain against @p t's CA (or the
 * system store) and @p host, then let the Lua hook decide if there is one. Runs once per
 * handshake (the decision is cached on the SSL). Returns the lws callback value (0 = accept).
 */
int rt_tls_verify_server(struct rt_http_ctx *ctx, struct rt_tls_opts *t, const char *host,
			 X509_STORE_CTX *store, SSL *ssl);

/** Push the peer description {der = leaf DER, chain = {DER...}, preverify = bool, error = str}. */
void rt_tls_push_peer(lua_State *L, X509_STORE_CTX *store, int preverify_ok);

/** A verified peer certificate: the handshake's X509 and its DER (rt_tls_peers.c). */
struct rt_tls_peer {
	X509 *x509;
	unsigned char *der;
	size_t len;
	struct rt_tls_peer *prev, *next; /**< the live entries rt_tls_peer_x509() searches */
};

/** The peer certificate of @p wsi, registered for rt_tls_peer_x509() until released; NULL if
 * the peer sent none. */
struct rt_tls_peer *rt_tls_peer_take(struct lws *wsi);

/** Drop @p p (NULL is fine). */
void rt_tls_peer_release(struct rt_tls_peer *p);

#endif
