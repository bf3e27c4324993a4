/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_conn: one client connection of a worker and its phases, shared by proxy_conn.c (accept,
 * PROXY header, ClientHello, routing), proxy_connect.c (backend choice and parallel connect)
 * and proxy_relay.c (TLS termination, relay, half-close, timeouts). Internal.
 */
#ifndef MOONSTACK_PROXY_CONN_H
#define MOONSTACK_PROXY_CONN_H

#include "proxy/proxy_internal.h"

/** Bytes read before the route is known: a PROXY header and the ClientHello records. */
#define PX_INBUF (PROXY_SNI_MAX_BYTES + 1024)
/** The first size of that buffer: most hellos fit (it doubles while one needs more). */
#define PX_INBUF_FIRST 2048

enum px_phase {
	PX_PH_PP,      /**< reading the inbound PROXY header */
	PX_PH_HELLO,   /**< reading the ClientHello */
	PX_PH_DNS,     /**< custom domain: TXT lookup on the thread pool */
	PX_PH_DECIDE,  /**< parked for a routing decision from Lua */
	PX_PH_CONNECT, /**< connecting to the candidates */
	PX_PH_TLS,     /**< TLS handshake with the client (terminate) */
	PX_PH_RELAY,   /**< both directions open */
	PX_PH_DRAIN,   /**< one direction done, `shutdown` timer running */
	PX_PH_CLOSING, /**< handles closing */
};

/** A TCP peer's address (IPv4 or IPv6): a connection keeps three, so not a sockaddr_storage. */
union px_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

/** Format @p a as "ip:port" / "[ip]:port" ("-" for none) into @p out. */
void px_addr_format(const union px_addr *a, char *out, size_t cap);

/** What a registered socket is to its connection. */
enum px_watch_kind { PX_WATCH_CLIENT, PX_WATCH_BACKEND, PX_WATCH_CAND };

/**
 * A socket of a connection in its worker's epoll set (level-triggered, registered once: no
 * libuv handle per socket, whose set-up and tear-down cost a dozen system calls per
 * connection). px_watch_forget() takes it out before the socket is closed.
 */
struct px_watch {
	struct px_conn *c;
	struct px_cand *cand; /**< PX_WATCH_CAND: the attempt */
	int fd;		      /**< registered socket, or -1 */
	int events;	      /**< UV_READABLE | UV_WRITABLE asked now (0: not in the set) */
	enum px_watch_kind kind;
};

/** Ask for @p events (UV_READABLE | UV_WRITABLE; 0 leaves the set) on @p x's socket. */
void px_watch_set(struct px_worker *w, struct px_watch *x, int events);
/** Take @p x's socket out of the set before it is closed: closing is not enough while a
 *  forked child (a policy worker between fork and exec) still holds the socket. */
void px_watch_forget(struct px_worker *w, struct px_watch *x);
/** A registered socket's events: dispatch them (proxy_conn.c). */
void px_watch_fire(struct px_watch *x, int status, int events);

/** One backend connect attempt. */
struct px_cand {
	int fd;
	struct px_watch watch;
	struct px_instance *inst;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

/** One relay direction: bytes buffered (or in a pipe) between a source and a destination. */
struct px_dir {
	uint8_t *buf;
	size_t off, len;
	int pipe[2];
	size_t piped;
	bool eof;	    /**< source reached its end */
	bool shut;	    /**< the end was passed to the destination */
	bool queued;	    /**< bytes wait in the worker's batch (proxy_batch.h) */
	int src_ev, dst_ev; /**< poll events wanted on each side after the last pump */
};

struct px_conn {
	struct px_worker *w;
	struct px_conn *prev, *next;
	uint64_t id;
	struct proxy_snapshot *snap;
	enum px_phase phase;
	int cfd, bfd;
	struct px_watch cw, bw; /**< the client's and the backend's socket */
	uv_timer_t timer;
	unsigned closing; /**< handles still closing */
	uint64_t started_ms, deadline_ms, last_ms, total_deadline_ms, drain_deadline_ms;
	/* what was read before routing */
	uint8_t *in; /**< incap bytes (grown up to PX_INBUF), freed once relaying */
	size_t inlen, incap, hello_off;
	union px_addr client, local; /**< from the socket or the inbound PROXY header */
	bool pp_local;
	/* routing */
	struct proxy_sni_hello *hello; /**< while the hello is read (freed once parsed) */
	char *sni;		       /**< the hello's server name, once parsed */
	struct proxy_route route;
	char key[PROXY_ROUTE_ID_MAX + 8];
	const char *mode;
	struct px_instance *inst; /**< instance id lookup, or the candidate that won */
	struct px_app *app;
	struct px_stats *app_stats, *inst_stats;
	bool app_counted, inst_counted;
	uint16_t port; /**< backend port after routing decisions */
	bool pp_out;
	struct px_dns_job *dns; /**< a custom domain's TXT lookup, while it runs */
	bool dns_busy;		/**< the lookup runs: free the connection when it returns */
	/* connect */
	struct px_cand *cand; /**< the connect attempts (as many as may be made), or NULL */
	unsigned ncand, cand_pending;
	union px_addr baddr; /**< the backend: chosen, then the one connected */
	/* TLS */
	SSL *ssl;
	bool rbio_mem;
	/* relay */
	struct px_dir c2s, s2c;
	atomic_uint_fast64_t bytes_in, bytes_out;
};

/** Refuse @p c for @p why (counted) and close it. */
void px_conn_refuse(struct px_conn *c, enum proxy_refusal why);
/** Close @p c (both sockets, handles, counters) and free it when the handles are closed. */
void px_conn_close(struct px_conn *c);
/** (Re)arm the phase timer to fire in @p ms. */
void px_conn_arm(struct px_conn *c, uint64_t ms);
/** The routing decision is made: check policy and caps, then connect (proxy_connect.c). */
void px_conn_route_decided(struct px_conn *c, const struct proxy_decision *d);
/** Connected to the backend @p fd: start TLS or the relay (proxy_relay.c). */
void px_conn_backend_ready(struct px_conn *c);

/** Candidate @p k's connect finished, or @p failed (the poll reported an error) (proxy_connect.c).
 */
void px_connect_done(struct px_conn *c, struct px_cand *k, bool failed);
/** Poll callback of a socket in TLS / relay phases: @p backend tells which one, @p status and
 *  @p events are the poll's. */
void px_relay_poll(struct px_conn *c, bool backend, int status, int events);
/** Timer callback for the relay phases. */
void px_relay_timer(struct px_conn *c);
/** Free relay resources (pipes, buffers, SSL). */
void px_relay_free(struct px_conn *c);
/** Close connect attempts that did not win. */
void px_connect_free(struct px_conn *c);
/** uv_close @p h, counted: the connection is freed when its last handle closed. */
void px_conn_close_handle(struct px_conn *c, uv_handle_t *h);
/** Set poll events on the client or backend socket (0 stops it). */
void px_conn_poll(struct px_conn *c, bool backend, int events);
/** Milliseconds on the worker's loop clock. */
uint64_t px_now_ms(struct px_conn *c);
/** Called by a worker when its last connection is gone while stopping. */
void px_worker_maybe_done(struct px_worker *w);

#endif /* MOONSTACK_PROXY_CONN_H */
