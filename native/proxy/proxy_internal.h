/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_internal: the structures shared by the files of the proxy data path (snapshot, server,
 * workers, connections) and the functions they call in each other. Not for the binding.
 */
#ifndef MOONSTACK_PROXY_INTERNAL_H
#define MOONSTACK_PROXY_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <uv.h>

#include <openssl/ssl.h>

#include "moonstack/rt_tls.h"

#include "proxy/proxy.h"
#include "proxy/proxy_route.h"
#include "proxy/proxy_sni.h"

#include "proxy/proxy_dns.h"
#include "proxy/proxy_pp.h"

/* ---- immutable string map (proxy_map.c) ---- */

/** Open-addressing map from NUL-terminated keys to pointers; built once, then read-only. */
struct px_map {
	size_t cap; /**< power of two, 0 when empty */
	struct px_slot {
		const char *key;
		void *val;
	} * slots;
};

/** Size @p m for @p n keys. Returns 0 or -1. */
int px_map_init(struct px_map *m, size_t n);
/** Insert @p key (borrowed; must outlive the map). Returns 0, or -1 if already present. */
int px_map_put(struct px_map *m, const char *key, void *val);
/** The value of the @p len bytes at @p key, or NULL. */
void *px_map_get(const struct px_map *m, const char *key, size_t len);
/** Free the slots (not the keys). */
void px_map_free(struct px_map *m);

/* ---- counters ---- */

/** Counters of one app or instance; created on publish (main thread), never freed before the
 *  server, so workers keep plain pointers. */
struct px_stats {
	char *id;
	atomic_uint_fast64_t active, total, bytes_in, bytes_out;
	struct px_stats *next, *chain;
};

/** Counter sets by id: a chained hash (main thread only) and the list of all of them. */
struct px_stats_tab {
	struct px_stats **b;
	size_t nb, n;
	struct px_stats *all;
};

/* ---- snapshot ---- */

struct px_port {
	uint16_t port;
	bool pp;
};

struct px_app;

struct px_instance {
	char *id, *app_id;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	double last_handshake;
	bool has_ports, restrict_ports;
	struct px_port *ports;
	size_t nports;
	unsigned cap;
	struct px_app *app;
	struct px_stats *stats;
};

struct px_app {
	char *id;
	bool has_max;
	unsigned max_connections;
	struct px_instance **members; /**< most recent handshake first */
	size_t nmembers;
	struct px_stats *stats;
};

struct px_route {
	char *key;
	struct proxy_decision d;
};

struct px_domain {
	char *name, *cert, *key;
	SSL_CTX *ctx; /**< set at publish; NULL: no certificate */
};

struct proxy_snapshot {
	atomic_long refs;
	int64_t version;
	bool finished;
	struct px_domain *domains;
	size_t ndomains;
	const char **domain_names;
	bool insecure_localhost;
	bool has_special;
	struct sockaddr_storage special;
	socklen_t speciallen;
	double handshake_stale;
	unsigned cache_top_n;
	struct px_instance *instances;
	size_t ninstances, capinstances;
	struct px_app *apps;
	size_t napps, capapps;
	struct px_route *routes;
	size_t nroutes, caproutes;
	struct px_map inst_map, app_map, route_map;
	bool has_dns;
	char *dns_prefix;
	bool dns_compat;
	char **dns_servers;
	size_t ndns_servers;
	double dns_timeout;
	struct px_dns_ref *dns; /**< set at publish */
};

/** A resolver shared by the snapshots with the same DNS settings. */
struct px_dns_ref {
	atomic_long refs;
	char *cfgkey;
	struct proxy_dns *d;
};

/** The instance or app of @p id (instance first). */
struct px_instance *px_snapshot_instance(const struct proxy_snapshot *s, const char *id);
/** The app of @p id. */
struct px_app *px_snapshot_app(const struct proxy_snapshot *s, const char *id);
/** The decision of @p key, or NULL. */
const struct proxy_decision *px_snapshot_route(const struct proxy_snapshot *s, const char *key);
/** Healthy candidates of @p app at @p now: most recent handshake first, at most @p max. */
size_t px_snapshot_candidates(const struct proxy_snapshot *s, const struct px_app *app, double now,
			      unsigned top_n, struct px_instance **out, size_t max);
/** Whether @p in's port policy allows @p port; *@p pp gets its PROXY-header flag. */
bool px_port_allowed(const struct px_instance *in, uint16_t port, bool *pp);
/** Release a DNS reference. */
void px_dns_unref(struct px_dns_ref *r);

/* ---- TLS (proxy_tls.c) ---- */

/** Give every domain of @p snap with a certificate its SSL_CTX, reusing those of @p prev for
 *  unchanged PEM texts. Returns 0 or -1 with @p err. Main thread. */
int px_tls_build(struct rt_tls_cache *cache, struct proxy_snapshot *snap,
		 const struct proxy_snapshot *prev, char *err, size_t errlen);

/* ---- workers and connections ---- */

struct px_conn;

struct px_listener {
	uv_poll_t poll;
	int fd;
	struct px_worker *w;
};

/** Bits of px_worker.flags, set by other threads, read on the worker's async. */
#define PX_W_STOP    1u
#define PX_W_DECIDED 2u

struct px_worker {
	struct proxy_server *s;
	unsigned idx;
	uv_thread_t thread;
	uv_loop_t loop;
	uv_async_t async;
	uv_timer_t stop_timer;
	atomic_uint flags;
	struct px_listener *listeners;
	pthread_mutex_t mu; /**< guards the connection list and what conns() reads */
	struct px_conn *conns;
	size_t nconns;
	bool stopping;
	uint64_t next_id;
	uint8_t *scratch;      /**< buffer_size bytes every relay of this worker reads into first */
	uv_timer_t trim_timer; /**< worker 0: gives freed heap back to the system after churn */
	int epfd;	       /**< the connections' sockets (struct px_watch), level-triggered */
	uv_poll_t ep_poll;     /**< the loop's watch on epfd */
	struct px_batch *batch; /**< sends to backends queued while a batch of events runs */
	bool batching;		/**< inside that batch: sends to backends may be queued */
};

struct px_miss_q;

struct proxy_server {
	struct proxy_options o;
	uint16_t ports[PROXY_MAX_LISTEN];
	struct px_worker *workers;
	unsigned nworkers, started;
	pthread_mutex_t snap_mu;
	struct proxy_snapshot *snap;
	struct rt_tls_cache *tls_cache;
	struct px_dns_ref *dns;
	struct px_stats_tab app_stats, inst_stats;
	atomic_uint_fast64_t active, total, bytes_in, bytes_out;
	atomic_uint_fast64_t refused[PROXY_R_COUNT];
	atomic_uint_fast64_t conn_ids;
	atomic_uint_fast64_t queued, queued_short; /**< proxy_counters */
	atomic_uint churn; /**< connections opened + closed since the last heap trim */
	/* route misses and decisions (proxy_miss.c) */
	pthread_mutex_t miss_mu;
	proxy_miss_notify_fn miss_fn;
	void *miss_ud;
	struct px_miss_q *misses; /**< queued, not yet handed to Lua */
	struct px_decided *decided;
};

/** A decision answered by Lua (overlay on the snapshot's routes). */
struct px_decided {
	char *key;
	struct proxy_decision d;
	bool answered; /**< false: asked, waiting */
	struct px_decided *next;
};

/** Current snapshot with a new reference (NULL before the first publish). */
struct proxy_snapshot *px_server_snapshot(struct proxy_server *s);
/** Count a refusal. */
void px_refuse_count(struct proxy_server *s, enum proxy_refusal r);

/** Accept handler: a new client socket @p fd on @p w. */
void px_conn_start(struct px_worker *w, int fd, const struct sockaddr *peer, socklen_t peerlen);
/** Wake parked connections of @p w after a decision. */
void px_conn_wake_parked(struct px_worker *w);
/** Close every connection of @p w now. */
void px_conn_close_all(struct px_worker *w);

/**
 * Look up a decision for @p key: 1 found (*@p d), 0 unknown and (when a handler is set) now
 * asked (the caller parks), -1 unknown and no handler (allow by port policy). @p m describes
 * the connection for the handler.
 */
int px_miss_lookup(struct proxy_server *s, const char *key, const struct proxy_miss *m,
		   struct proxy_decision *d);
/** Free the miss queue and decisions. */
void px_miss_free(struct proxy_server *s);
/** Forget asked and answered keys (on publish: the new snapshot's routes replace them). */
void px_miss_clear(struct proxy_server *s);

/** Free the counter tables (proxy_publish.c). */
void px_stats_free(struct proxy_server *s);

/** Milliseconds of a seconds timeout (at least 1). */
static inline uint64_t px_ms(double secs)
{
	double ms = secs * 1000.0;
	return ms < 1 ? 1 : ms > 1e12 ? (uint64_t)1e12 : (uint64_t)ms;
}

#endif /* MOONSTACK_PROXY_INTERNAL_H */
