/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP core's private layout: the objects shared by the context, server, websocket, client
 * and TLS files, and their internal entry points (libwebsockets glue). No Lua here: the public
 * API is moonstack/rt_http.h and moonstack/rt_tls.h, the Lua binding rt_http_lua*.c.
 */
#ifndef MOONSTACK_RT_HTTP_INTERNAL_H
#define MOONSTACK_RT_HTTP_INTERNAL_H

#include <libwebsockets.h>
#include <openssl/ssl.h>

#include "moonstack/rt_http.h"
#include "rt_json.h"
#include "rt_tls_internal.h"

/** lws's per-thread I/O buffer: more than a TLS record of plaintext (see rt_http_ctx.c). */
#define RT_HTTP_READ_BUFFER (32u * 1024)
/** lws's space for a request's header section (its values, names of unknown headers). */
#define RT_HTTP_HEADER_SPACE (16u * 1024)
/** Longest request target (path or query) answered; longer ones get 414. */
#define RT_HTTP_MAX_URI (8u * 1024)

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
	struct lws_vhost *client_vhost; /**< shared by client requests, created on first use */
	struct rt_tls_cache *tls_cache; /**< parsed client TLS material, created on first use */
};

/** Protocols of the context and the client vhost: [0] receives client TLS verification. */
extern const struct lws_protocols rt_http_client_protocols[];

/** One HTTP request/response pair, shared by the connection and whoever answers it. */
struct rt_http_exchange {
	struct lws *wsi; /**< NULL once the connection is gone */
	struct rt_http_server *server;
	int refs; /**< connection + handler references */
	char method[12];
	char *path;
	char *query;
	struct rt_buf body;
	size_t body_limit;
	bool body_too_big;
	bool close_after; /**< drop the connection after the response (unread body) */
	bool rx_paused;	  /**< reading stopped until the (later) response is written */
	bool dropped;	  /**< the connection closes after the response */
	bool dispatched;
	bool filter_only; /**< a websocket upgrade's, for its filter: headers only, no answer */
	/* response */
	bool responded;
	bool head_only;
	int status;
	struct rt_buf resp_headers; /**< "name\0value\0" pairs */
	char *resp_body;
	size_t resp_len;
	/* a streamed response (rt_http_stream.c): pieces written as the socket takes them */
	bool streaming;
	bool stream_ended;
	struct rt_http_chunk *out_head, *out_tail;
	size_t out_bytes;
	/* client certificate seen on this connection, if any */
	struct rt_tls_peer *peer;
};

/** A queued piece of a streamed response (LWS_PRE bytes of headroom before the data). */
struct rt_http_chunk {
	struct rt_http_chunk *next;
	size_t len;
	unsigned char data[];
};

/** Per-connection data lws allocates for our protocol (HTTP and websocket both). */
struct rt_http_pss {
	struct rt_http_exchange *ex;
	struct rt_ws_conn *ws;
};

/** A websocket connection accepted by a server, shared by lws and the handler's references. */
struct rt_ws_conn {
	struct lws *wsi;
	struct rt_http_server *server;
	int refs;
	unsigned long id;
	char *path;
	char *query;   /**< of the upgrade request, NULL when none */
	char peer[64]; /**< the client's address */
	struct rt_ws_msg *out_head, *out_tail;
	size_t out_bytes;
	struct rt_buf in;
	bool in_binary;
	bool close_requested;
	bool close_started; /**< the close frame is on its way (lws sends it) */
	int close_code;
	char close_reason[124];
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
	rt_http_request_fn on_request;
	rt_ws_event_fn on_ws;
	rt_ws_filter_fn ws_filter;
	void *user;
	void (*release)(void *user);
	bool closed;
	bool vhost_destroyed;		       /**< lws_vhost_destroy() called; finalize pending */
	int listen_fd;			       /**< the vhost's listening socket, or -1 */
	int dispatching;		       /**< handler calls in progress on this server */
	struct rt_http_server *next_listening; /**< process-wide list of started servers */
	bool ctx_released;
	int refs; /**< the owner's, the vhost's, a pending close's */
	unsigned long next_ws_id;
	unsigned long requests;
};

/** Get (creating if needed) the context for @p rt and take a reference on it. */
struct rt_http_ctx *rt_http_ctx_acquire(struct rt_runtime *rt);

/** Drop a reference; the context is destroyed when the last one goes. */
void rt_http_ctx_release(struct rt_http_ctx *ctx);

/** The TLS cache of @p ctx, created on first use (NULL if out of memory). */
struct rt_tls_cache *rt_http_ctx_tls_cache(struct rt_http_ctx *ctx);

/** The lws protocol callback for servers (HTTP + websocket). */
int rt_http_server_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			    size_t len);

/** Write the status line and the headers of @p ex's response, with Content-Length
 *  @p content_len (LWS_ILLEGAL_HTTP_CONTENT_LEN: none, the connection closes at the end).
 *  Returns 0 or -1. */
int rt_http_write_head(struct lws *wsi, struct rt_http_exchange *ex, lws_filepos_t content_len);

/** Whether the packed header list @p h (@p len bytes) is whole "name\0value\0" pairs that
 *  cannot split the header block. */
bool rt_http_headers_ok(const char *h, size_t len);

/** The connection of a streamed response can take more (LWS_CALLBACK_HTTP_WRITEABLE). */
int rt_http_stream_writeable(struct lws *wsi, struct rt_http_pss *pss);

/** Free the pieces still queued on @p ex. */
void rt_http_stream_free(struct rt_http_exchange *ex);

/** The lws protocol callback for client requests. */
int rt_http_client_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			    size_t len);

/** Websocket events on a server connection (called from the server callback). */
int rt_ws_handle(struct lws *wsi, enum lws_callback_reasons reason, struct rt_http_pss *pss,
		 void *in, size_t len);

/** Install @p srv's client-certificate policy on its SSL_CTX (called by lws at vhost init). */
void rt_http_server_tls_setup(struct rt_http_server *srv, SSL_CTX *ssl_ctx);

/**
 * Verify a server certificate for a client connection of lws: install the client identity of
 * @p t on @p ssl (before the client certificate is chosen), then decide as rt_tls_check_server()
 * with @p t's CA from @p cache. Runs once per handshake (the decision is cached on the SSL).
 * Writes the reason of a refusal to @p rejected. Returns the lws callback value (0 = accept).
 */
int rt_http_client_verify(struct rt_tls_cache *cache, const struct rt_tls_opts *t, const char *host,
			  X509_STORE_CTX *store, SSL *ssl, char *rejected, size_t rejected_len);

/** The peer certificate of @p wsi's TLS connection, registered (see rt_tls_peer_take()). */
struct rt_tls_peer *rt_http_peer_take(struct lws *wsi);

/* rt_http_sock.c: lws's socket calls seen by the server core (see the file's comment). */

/** Keep the books of lws's socket calls on this thread (the loop's) from now on. */
void rt_http_sock_init(struct rt_runtime *rt);

/** Forget the last socket listened on; rt_http_sock_listen_end() then says which one lws
 *  listened on since (-1: none). */
void rt_http_sock_listen_begin(void);

/** The socket listened on since rt_http_sock_listen_begin(), or -1. */
int rt_http_sock_listen_end(void);

/** Call @p fn with each server connection lws holds now. */
void rt_http_sock_each_conn(void (*fn)(int fd, void *ud), void *ud);

/** lws accepted a server connection on @p fd. */
void rt_http_sock_accepted(int fd);

/** The input of a request on @p fd ended here (headers, or the body so far). */
void rt_http_sock_mark(int fd);

/**
 * Whether lws has not read @p fd since the previous request's input ended: the request parsed
 * now came from lws's buffer of bytes read past that request (pipelined).
 */
bool rt_http_sock_pipelined(int fd);

/** @p fd carries websocket or raw traffic now, no more HTTP requests. */
void rt_http_sock_upgraded(int fd);

/** lws logged that a header section did not fit: answer 431 on the connection it drops. */
void rt_http_sock_header_overflow(void);

/** Drain @p fd for a while once lws closed it, so that the client gets the answer it was sent. */
void rt_http_sock_linger(int fd);

/** The query string of @p wsi's request, re-encoded (lws decoded it); malloc'd, or NULL. */
char *rt_http_copy_query(struct lws *wsi);

#endif
