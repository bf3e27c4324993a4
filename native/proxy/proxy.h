/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy: the gateway's data path (spec kms-vmm-gateway.md §6.2-§6.5). A server owns N worker
 * threads, each with its own libuv loop and one SO_REUSEPORT listener per listen address; a
 * connection goes accept → (inbound PROXY header) → ClientHello → SNI grammar → backend choice
 * → routing decision → port policy → connect → (outbound PROXY v2) → TLS termination or
 * passthrough → relay, all in C. What to route where is an immutable, reference-counted
 * snapshot built on the main thread and published with an atomic swap; a connection keeps the
 * snapshot it started with. This header is the plain C API the Lua binding uses.
 */
#ifndef MOONSTACK_PROXY_H
#define MOONSTACK_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Most listen addresses of one server. */
#define PROXY_MAX_LISTEN 16
/** Most worker threads. */
#define PROXY_MAX_WORKERS 64
/** Most backends connected to in parallel for one connection. */
#define PROXY_MAX_TOP_N 8

/** Why a connection was refused (the keys of counters().refused). */
enum proxy_refusal {
	PROXY_R_NOT_TLS = 0, /**< first bytes are not a TLS handshake */
	PROXY_R_MALFORMED,   /**< broken ClientHello */
	PROXY_R_NO_SNI,	     /**< ClientHello without a server name */
	PROXY_R_ROUTE,	     /**< SNI refused by the grammar (§6.2) */
	PROXY_R_UNKNOWN_ID,  /**< neither an instance id nor an app id */
	PROXY_R_NO_BACKEND,  /**< no healthy instance */
	PROXY_R_DENIED,	     /**< routing policy said no (or no answer in time) */
	PROXY_R_PORT_POLICY, /**< the instance's port policy refuses the port (or has none) */
	PROXY_R_CAP,	     /**< per-app or per-instance connection cap reached */
	PROXY_R_CONNECT,     /**< no backend could be connected */
	PROXY_R_TIMEOUT,     /**< handshake / PROXY header / decision timeout */
	PROXY_R_DNS,	     /**< custom domain without a usable TXT record */
	PROXY_R_TLS,	     /**< TLS handshake failed */
	PROXY_R_PP,	     /**< malformed inbound PROXY header */
	PROXY_R_NO_CERT,     /**< terminate on a base domain without a certificate */
	PROXY_R_INTERNAL,    /**< out of memory, socket error */
	PROXY_R_COUNT
};

/** A stable name for @p r ("not-tls", "unknown-id", ...). */
const char *proxy_refusal_name(enum proxy_refusal r);

/** One listen address. */
struct proxy_listen {
	char host[64]; /**< numeric IPv4 or IPv6 address */
	uint16_t port; /**< 0 = any (the workers share the port the first one got) */
};

/** Server settings (copied by proxy_server_new()). Timeouts in seconds. */
struct proxy_options {
	struct proxy_listen listen[PROXY_MAX_LISTEN];
	size_t nlisten;
	unsigned workers;
	double t_connect, t_handshake, t_idle, t_shutdown, t_total, t_pp_header;
	size_t buffer_size;
	bool inbound_pp;
	unsigned max_connections_per_app; /**< 0 = unlimited */
	unsigned connect_top_n;		  /**< 0 = one random healthy instance */
	bool splice;
	bool io_uring; /**< batch the sends to backends of each event batch (proxy_batch.h) */
	int backlog;
};

/** Fill @p o with the contract's defaults (no listen address). */
void proxy_options_default(struct proxy_options *o);

/** A routing-policy decision for `<id>:<port>`. */
struct proxy_decision {
	bool allow;
	uint16_t to_port; /**< 0 = the port asked for */
	int pp;		  /**< -1 = the port policy's flag, else 0 / 1 */
};

struct proxy_server;
struct proxy_snapshot;

/* ---- snapshot (proxy_snapshot.c); built on one thread, then immutable ---- */

/** One instance as the control plane knows it. Strings are copied. */
struct proxy_instance_spec {
	const char *id, *app_id, *ip;
	double last_handshake; /**< unix seconds, 0 = never */
	bool has_ports;	       /**< false: no port policy known yet ⇒ deny */
	const uint16_t *ports; /**< listed ports ... */
	const bool *pp;	       /**< ... and their PROXY-header flag */
	size_t nports;
	bool restrict_ports;	  /**< only the listed ports */
	unsigned connections_cap; /**< 0 = unlimited */
};

/** A new, empty snapshot of @p version (refcount 1), or NULL. */
struct proxy_snapshot *proxy_snapshot_new(int64_t version);
/** Take one more reference. */
struct proxy_snapshot *proxy_snapshot_ref(struct proxy_snapshot *s);
/** Drop a reference (frees with the last; any thread). NULL is fine. */
void proxy_snapshot_unref(struct proxy_snapshot *s);
/** Its version. */
int64_t proxy_snapshot_version(const struct proxy_snapshot *s);
/** Add a base domain with its wildcard certificate chain and key (PEM; both NULL: none, only
 *  passthrough). Returns 0, or -1 with @p err set (duplicate, out of memory). */
int proxy_snapshot_add_domain(struct proxy_snapshot *s, const char *domain, const char *cert,
			      const char *key, char *err, size_t errlen);
/** Add an instance. Returns 0, or -1 with @p err (duplicate id, bad ip, out of memory). */
int proxy_snapshot_add_instance(struct proxy_snapshot *s, const struct proxy_instance_spec *in,
				char *err, size_t errlen);
/** Per-app override of max_connections_per_app (0 = unlimited). */
int proxy_snapshot_add_app(struct proxy_snapshot *s, const char *app_id, bool has_max,
			   unsigned max_connections, char *err, size_t errlen);
/** A routing decision for "<id>:<port>". */
int proxy_snapshot_add_route(struct proxy_snapshot *s, const char *key,
			     const struct proxy_decision *d, char *err, size_t errlen);
/** Scalar settings. @p special_host NULL: no special backend (health/gateway refused). */
int proxy_snapshot_set(struct proxy_snapshot *s, bool insecure_localhost, const char *special_host,
		       uint16_t special_port, double handshake_stale, unsigned cache_top_n,
		       char *err, size_t errlen);
/** Custom-domain resolution settings (copied); without it custom domains are refused. */
int proxy_snapshot_set_dns(struct proxy_snapshot *s, const char *prefix, bool compat,
			   const char *const *servers, size_t nservers, double timeout, char *err,
			   size_t errlen);
/** Build the lookup tables. Returns 0 or -1 with @p err. Call once, before publishing. */
int proxy_snapshot_finish(struct proxy_snapshot *s, char *err, size_t errlen);

/* ---- server (proxy_server.c) ---- */

/**
 * Bind every listener of every worker now (so EADDRINUSE is reported here) and start the
 * workers. Returns the server, or NULL with "CODE: message" in @p err and the code in @p code.
 */
struct proxy_server *proxy_server_new(const struct proxy_options *o, char *err, size_t errlen,
				      char *code, size_t codelen);
/** The bound port of listen address @p i (0-based), 0 if out of range. */
uint16_t proxy_server_port(const struct proxy_server *s, size_t i);
/**
 * Publish @p snap (finished; the server takes the caller's reference): builds the TLS contexts
 * of its base domains (reusing the previous snapshot's for unchanged certificates), resolves
 * its counters, and swaps it in. Main thread. Returns 0, or -1 with @p err (the snapshot is
 * then released and the old one stays).
 */
int proxy_server_publish(struct proxy_server *s, struct proxy_snapshot *snap, char *err,
			 size_t errlen);
/** Version of the published snapshot (-1 before the first). */
int64_t proxy_server_version(struct proxy_server *s);

/** Called from a worker thread when a route miss was queued (e.g. uv_async_send). */
typedef void (*proxy_miss_notify_fn)(void *ud);
/** Install the route-miss notifier (NULL: unseen keys are allowed with the port policy). */
void proxy_server_on_miss(struct proxy_server *s, proxy_miss_notify_fn fn, void *ud);
/** One queued route miss (strings owned by the server until the callback returns). */
struct proxy_miss {
	const char *key, *id, *mode, *sni, *app_id, *instance_id, *client;
	uint16_t port;
};
/** Hand the queued misses to @p fn on the calling (main) thread. */
void proxy_server_take_misses(struct proxy_server *s,
			      void (*fn)(void *ud, const struct proxy_miss *m), void *ud);
/** Answer a miss (or pre-seed a decision): parked connections with @p key go on. */
void proxy_server_decide(struct proxy_server *s, const char *key, const struct proxy_decision *d);

/** Totals read back by Lua. */
struct proxy_counters {
	uint64_t active, total, bytes_in, bytes_out;
	uint64_t refused[PROXY_R_COUNT];
	int64_t snapshot_version;
	uint64_t queued;       /**< sends to backends batched (proxy_batch.h) */
	uint64_t queued_short; /**< of those, the ones a full socket did not take whole */
};
/** Read the totals. */
void proxy_server_counters(struct proxy_server *s, struct proxy_counters *c);
/** One per-app or per-instance counter set. */
struct proxy_stat {
	const char *id;
	uint64_t active, total, bytes_in, bytes_out;
};
/** Call @p fn for each app (@p instances false) or instance counter set ever published. */
void proxy_server_stats_each(struct proxy_server *s, bool instances,
			     void (*fn)(void *ud, const struct proxy_stat *st), void *ud);
/** One active connection. */
struct proxy_conn_info {
	uint64_t id;
	unsigned worker;
	const char *client, *sni, *mode, *app_id, *instance_id, *backend;
	uint64_t age_ms, bytes_in, bytes_out;
	int64_t snapshot_version;
};
/** Call @p fn for up to @p max active connections (0 = all). */
void proxy_server_conns_each(struct proxy_server *s, size_t max,
			     void (*fn)(void *ud, const struct proxy_conn_info *c), void *ud);
/**
 * Stop accepting, let connections drain up to the `shutdown` timeout, close the rest, join
 * the workers and free @p s. Main thread; blocks for at most that timeout.
 */
void proxy_server_free(struct proxy_server *s);

#endif /* MOONSTACK_PROXY_H */
