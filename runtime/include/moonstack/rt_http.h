/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP and websocket on the runtime's loop through libwebsockets, for C code with no lua_State:
 * servers on TCP or unix sockets (plain or TLS, with a client-certificate policy), the exchange a
 * request handler answers through (now or later), server-side websockets, and an asynchronous
 * client. Handlers are C functions with a `void *user`; they run on the loop thread. The Lua
 * binding `moonstack.native.http` (rt_http_lua.c) is one user of this API.
 *
 * Header lists are packed NUL-separated texts: "name\0value\0name\0value\0" for headers,
 * "name\0name\0" for lists of names, with their total length in bytes.
 */
#ifndef MOONSTACK_RT_HTTP_H
#define MOONSTACK_RT_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "moonstack/rt_base.h"
#include "moonstack/rt_tls.h"

/** Largest request body accepted by default (the dstack guest API's limit). */
#define RT_HTTP_DEFAULT_MAX_BODY (10u * 1024 * 1024)
/** Largest websocket message accepted by default. */
#define RT_WS_DEFAULT_MAX_MESSAGE (1u * 1024 * 1024)
/** Default deadline of a client request, in milliseconds. */
#define RT_HTTP_DEFAULT_TIMEOUT_MS 30000
/** Largest client response body accepted by default. */
#define RT_HTTP_DEFAULT_MAX_RESPONSE (64u * 1024 * 1024)

/** A listening server. */
struct rt_http_server;
/** One request and its response, shared by the connection and whoever answers it. */
struct rt_http_exchange;
/** A websocket connection accepted by a server. */
struct rt_ws_conn;
/** A client request in flight (or finished). */
struct rt_http_req;

/** A request as its handler sees it. Valid during the handler call only: copy what you keep. */
struct rt_http_request {
	const char *method; /**< "GET", "POST", ... */
	const char *path;   /**< decoded path, without the query */
	const char *query;  /**< query string (re-encoded), "" if none */
	const char *body;   /**< request body (NUL-terminated past body_len), "" if none */
	size_t body_len;    /**< bytes in body */
	const char *peer;   /**< the client's address, or "unix" on a unix socket */
	const unsigned char *peer_cert; /**< client certificate DER (TLS), or NULL */
	size_t peer_cert_len;		/**< bytes in peer_cert */
	const char *server;		/**< the server's name */
};

/**
 * A request handler. Answer with rt_http_exchange_respond(), now or later (take a reference with
 * rt_http_exchange_ref() to answer later). Return 0, or non-zero if the handler failed: the
 * client then gets a 500 unless a response was already given.
 */
typedef int (*rt_http_request_fn)(void *user, struct rt_http_exchange *ex,
				  const struct rt_http_request *req);

/** Websocket events, in the order they come: one OPEN, MESSAGEs, one CLOSE. */
enum rt_ws_event {
	RT_WS_OPEN,
	RT_WS_MESSAGE,
	RT_WS_CLOSE,
};

/**
 * A websocket event handler. @p data / @p len / @p binary carry a MESSAGE (NULL / 0 / false for
 * the others). CLOSE comes for every opened connection, also after the server was closed; no
 * other event comes after rt_http_server_close(). Take a reference on @p ws to keep it past CLOSE.
 */
typedef void (*rt_ws_event_fn)(void *user, struct rt_ws_conn *ws, enum rt_ws_event event,
			       const void *data, size_t len, bool binary);

/**
 * A websocket upgrade filter: called synchronously when a client asks to upgrade on one of the
 * ws_paths, before the handshake is answered, with the upgrade request (method "GET", no body)
 * and an exchange that only reads headers (rt_http_exchange_header(); answering it fails with
 * -EPERM; it is detached when the filter returns). Return true to accept the upgrade; false
 * refuses it (the connection is closed without a 101).
 */
typedef bool (*rt_ws_filter_fn)(void *user, struct rt_http_exchange *ex,
				const struct rt_http_request *req);

/** How to run a server. Initialise with rt_http_server_config_init(); strings are copied. */
struct rt_http_server_config {
	const char *name; /**< for logs; NULL: "unix" or "http" */
	const char
		*unix_path; /**< listen on this unix socket (exclusive with host/port), or NULL */
	mode_t unix_mode;   /**< permissions of the unix socket (0600) */
	const char *host;   /**< TCP address or name to bind, or NULL for all */
	int port;	    /**< TCP port, 0 for any free one (see rt_http_server_port()) */
	size_t max_body;    /**< largest request body (RT_HTTP_DEFAULT_MAX_BODY) */
	size_t max_ws_message;	     /**< largest websocket message (RT_WS_DEFAULT_MAX_MESSAGE) */
	const char *const *ws_paths; /**< paths accepting websocket upgrades */
	int n_ws_paths;		     /**< entries in ws_paths */
	const char *const *ws_protocols; /**< websocket subprotocols accepted besides none */
	int n_ws_protocols;		 /**< entries in ws_protocols */
	struct rt_tls_config tls;	 /**< TLS if tls.cert is set (tls.key then required) */
	rt_http_request_fn on_request;	 /**< request handler (required) */
	rt_ws_event_fn on_ws;		 /**< websocket handler, or NULL */
	rt_ws_filter_fn ws_filter;	 /**< websocket upgrade filter, or NULL (accept all) */
	void *user;			 /**< passed to the handlers and to release */
	/** Called once when the server is freed (no handler runs after it), or NULL. */
	void (*release)(void *user);
};

/** Fill @p cfg with the defaults (everything else zero). */
void rt_http_server_config_init(struct rt_http_server_config *cfg);

/**
 * Start a server on @p rt's loop as @p cfg says. A unix socket is created with its mode from the
 * start and a stale one replaced, but not one a live process still serves; a TCP port in use is
 * refused. On success stores the server in @p out (the caller's reference) and returns 0; on
 * failure returns a negative errno with "CODE: message" in @p err (EADDRINUSE, EADDRNOTAVAIL,
 * ENAMETOOLONG, EEXIST, EPERM, EBUSY, EIO, EINVAL, ENOMEM), and @p cfg's release is not called.
 */
int rt_http_server_start(struct rt_runtime *rt, const struct rt_http_server_config *cfg,
			 struct rt_http_server **out, char *err, size_t errlen);

/**
 * Stop accepting and close every connection (asynchronously, on a later loop turn, so a handler
 * may close its own server). No handler is called after this, but websocket CLOSE events.
 * Idempotent.
 */
void rt_http_server_close(struct rt_http_server *srv);

/** Drop the caller's reference to @p srv (close it first); it is freed once unused. */
void rt_http_server_unref(struct rt_http_server *srv);

/** The bound TCP port (the real one after port 0), or 0 on a unix socket. */
int rt_http_server_port(const struct rt_http_server *srv);

/** The unix socket path, or NULL on TCP. */
const char *rt_http_server_unix_path(const struct rt_http_server *srv);

/** The TCP address bound (numeric once started), or NULL for all addresses. */
const char *rt_http_server_host(const struct rt_http_server *srv);

/** The server's name. */
const char *rt_http_server_name(const struct rt_http_server *srv);

/** Requests handed to the handler so far. */
unsigned long rt_http_server_requests(const struct rt_http_server *srv);

/** Whether the server was closed. */
bool rt_http_server_closed(const struct rt_http_server *srv);

/** Take a reference on @p ex (to answer after the handler returned). */
void rt_http_exchange_ref(struct rt_http_exchange *ex);

/** Drop a reference to @p ex; it is freed on the last. */
void rt_http_exchange_unref(struct rt_http_exchange *ex);

/**
 * Answer @p ex: status line, the packed @p headers ("name\0value\0"..., @p headers_len bytes;
 * Content-Length is always computed) and @p body (@p len bytes), both copied, written at once.
 * Returns 0, -EINVAL (status outside 100..599, or a header name or value that could split the
 * header block), -ENOMEM, -EALREADY (already answered) or -ENOTCONN (the client went away).
 */
int rt_http_exchange_respond(struct rt_http_exchange *ex, int status, const char *headers,
			     size_t headers_len, const void *body, size_t len);

/** Bytes a streamed response may hold queued before rt_http_exchange_write() refuses more. */
#define RT_HTTP_STREAM_MAX_QUEUED (4u * 1024 * 1024)

/**
 * Begin a streamed answer to @p ex: the status line and the packed @p headers (as
 * rt_http_exchange_respond()) go out now, without Content-Length: the body follows in pieces
 * (rt_http_exchange_write()) and the connection closes after rt_http_exchange_end(). For logs
 * that grow while a client follows them. Returns 0, -EINVAL, -ENOMEM, -EALREADY or -ENOTCONN.
 */
int rt_http_exchange_begin(struct rt_http_exchange *ex, int status, const char *headers,
			   size_t headers_len);

/**
 * Queue @p len bytes of a streamed answer (copied; written as the socket takes them). Returns 0,
 * -EINVAL (not streaming, or ended), -ENOTCONN (the client went away), -ENOBUFS (the client does
 * not read: RT_HTTP_STREAM_MAX_QUEUED bytes wait already) or -ENOMEM.
 */
int rt_http_exchange_write(struct rt_http_exchange *ex, const void *data, size_t len);

/** End a streamed answer: the connection closes once the queued pieces are written. Returns 0
 *  or -EINVAL (not streaming); idempotent. */
int rt_http_exchange_end(struct rt_http_exchange *ex);

/** Bytes of a streamed answer still queued (0 when none or not streaming). */
size_t rt_http_exchange_queued(const struct rt_http_exchange *ex);

/**
 * The value of the request header @p name (any case, custom headers included) as a malloc'ed,
 * NUL-terminated copy (@p len gets its length if not NULL); NULL if absent, or once the client
 * went away or was answered.
 */
char *rt_http_exchange_header(struct rt_http_exchange *ex, const char *name, size_t *len);

/**
 * Call @p fn for every request header lws knows by name (lowercased; custom headers cannot be
 * listed, look them up with rt_http_exchange_header()), until it returns non-zero. Returns that
 * value or 0. Nothing is listed once the client went away.
 */
int rt_http_exchange_each_header(struct rt_http_exchange *ex,
				 int (*fn)(void *user, const char *name, const char *value),
				 void *user);

/** Whether the client is still connected (a response can still be written). */
bool rt_http_exchange_connected(const struct rt_http_exchange *ex);

/** Whether rt_http_exchange_respond() succeeded (or an automatic error response was sent). */
bool rt_http_exchange_responded(const struct rt_http_exchange *ex);

/** The request method. */
const char *rt_http_exchange_method(const struct rt_http_exchange *ex);

/** The request path (NULL if it could not be copied). */
const char *rt_http_exchange_path(const struct rt_http_exchange *ex);

/** The client certificate of the request's TLS connection as DER (@p len gets its length), or
 *  NULL. Valid while @p ex is held. */
const unsigned char *rt_http_exchange_peer_cert(const struct rt_http_exchange *ex, size_t *len);

/** The client certificate of the request's TLS connection as the handshake decoded it, or NULL.
 *  Borrowed: valid while @p ex is held (X509_up_ref() to keep it). */
X509 *rt_http_exchange_peer_x509(const struct rt_http_exchange *ex);

/**
 * Queue a message on @p ws (copied). Returns 0, -ENOTCONN if closed or closing, -ENOBUFS if the
 * peer is not reading (16 MiB queued), -ENOMEM.
 */
int rt_ws_send(struct rt_ws_conn *ws, const void *data, size_t len, bool binary);

/** Close @p ws with @p code and @p reason (up to 123 bytes) after the queued messages. */
void rt_ws_close(struct rt_ws_conn *ws, int code, const char *reason);

/** Take a reference on @p ws. */
void rt_ws_conn_ref(struct rt_ws_conn *ws);

/** Drop a reference to @p ws; it is freed on the last. */
void rt_ws_conn_unref(struct rt_ws_conn *ws);

/** The connection's number, unique per server. */
unsigned long rt_ws_conn_id(const struct rt_ws_conn *ws);

/** The path the connection was opened on (without the query). */
const char *rt_ws_conn_path(const struct rt_ws_conn *ws);

/** The query string of the upgrade request ("" when none), re-encoded as a request's. */
const char *rt_ws_conn_query(const struct rt_ws_conn *ws);

/** The client's address (numeric, as lws_get_peer_simple gives it; "" if unknown). */
const char *rt_ws_conn_peer(const struct rt_ws_conn *ws);

/** Whether the connection is still up (until its CLOSE event). */
bool rt_ws_conn_connected(const struct rt_ws_conn *ws);

/** Whether messages can still be sent (connected, and no close asked). */
bool rt_ws_conn_is_open(const struct rt_ws_conn *ws);

/** What a client request asks for. Initialise with rt_http_client_opts_init(); copied. */
struct rt_http_client_opts {
	const char *method;    /**< "GET" */
	const char *address;   /**< host name or IP address to connect to (TCP) */
	const char *unix_path; /**< or a unix socket path (used if set) */
	int port;	       /**< TCP port (80) */
	const char *path;      /**< request target ("/") */
	const char *host;      /**< Host header and TLS name; NULL: "localhost" on a unix
				*   socket, else the address */
	int timeout_ms;	       /**< deadline of the whole exchange (RT_HTTP_DEFAULT_TIMEOUT_MS) */
	size_t max_response;   /**< largest response body (RT_HTTP_DEFAULT_MAX_RESPONSE) */
	const void *body;      /**< request body, or NULL */
	size_t body_len;       /**< bytes in body */
	const char *headers;   /**< packed request headers, or NULL (Host, Content-Length: ours) */
	size_t headers_len;    /**< bytes in headers */
	const char *want_headers; /**< packed names of custom response headers to copy, or NULL */
	size_t want_headers_len;  /**< bytes in want_headers */
	bool use_tls;		  /**< HTTPS */
	struct rt_tls_config tls; /**< its settings (used with use_tls) */
};

/** A response, valid during the completion call only. */
struct rt_http_response {
	int status;
	const char *headers; /**< packed "name\0value\0" (names lowercased): every header lws knows
			      *   by name, plus the wanted custom ones present */
	size_t headers_len;  /**< bytes in headers */
	const char *body;    /**< body (NUL-terminated past body_len) */
	size_t body_len;     /**< bytes in body */
};

/**
 * Completion of a client request, called exactly once: with @p res and NULL @p code on success,
 * or with NULL @p res, a stable @p code (ECONNREFUSED, ECONNRESET, ECERT, ETIMEDOUT, ETOOBIG,
 * ECANCELED) and a message @p msg. It may come from rt_http_client_request() itself.
 */
typedef void (*rt_http_response_fn)(void *user, const struct rt_http_response *res,
				    const char *code, const char *msg);

/** Fill @p o with the defaults (everything else zero). */
void rt_http_client_opts_init(struct rt_http_client_opts *o);

/**
 * Send the request @p o on @p rt's loop (one connection per request); @p done gets the outcome.
 * Stores the request in @p out (the caller's reference, for rt_http_client_cancel(); NULL if not
 * wanted) and returns 0; or returns a negative errno with "CODE: message" in @p err (EINVAL: no
 * address, EIO: no libwebsockets context, ENOMEM) and @p done is never called.
 */
int rt_http_client_request(struct rt_runtime *rt, const struct rt_http_client_opts *o,
			   rt_http_response_fn done, void *user, struct rt_http_req **out,
			   char *err, size_t errlen);

/** Cancel @p r: its completion is called now with ECANCELED, unless it already was. */
void rt_http_client_cancel(struct rt_http_req *r);

/** Drop the caller's reference to @p r. */
void rt_http_req_unref(struct rt_http_req *r);

#endif
