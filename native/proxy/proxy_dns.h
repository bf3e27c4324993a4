/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_dns: the custom-domain resolver of spec kms-vmm-gateway.md §6.2 step 6. A name that is
 * not under a base domain is routed by a DNS TXT record: the first string of the TXT of
 * `<prefix>.<sni>` (and, with compat, of `_tapp-address.<sni>`, queried at the same time) is
 * "<id>:<port>"; when neither name has a TXT record, `<prefix>-wildcard.<parent of sni>` is
 * asked. Answers are cached (256 entries, LRU; positive TTL from the record, at most 300 s;
 * negative at most 10 s). Queries are built with res_nmkquery on a private `struct __res_state`
 * per call and parsed with ns_initparse/ns_parserr; they go over UDP on sockets connected to the
 * configured servers (else the system's), all queries of a round in flight at once, retried
 * across the servers until the timeout. Thread-safe: the cache is behind a mutex that is never
 * held during I/O.
 */
#ifndef MOONSTACK_PROXY_DNS_H
#define MOONSTACK_PROXY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Cached names (LRU beyond). */
#define PROXY_DNS_CACHE_SIZE 256
/** Longest a positive answer is kept, seconds (the record's TTL when shorter). */
#define PROXY_DNS_POSITIVE_TTL_MAX 300
/** Longest a negative answer (no record, malformed record) is kept, seconds. */
#define PROXY_DNS_NEGATIVE_TTL_MAX 10
/** How long a timeout or a server failure is remembered, seconds (so a dead server does not
 * hold a thread-pool slot per connection). */
#define PROXY_DNS_FAILURE_TTL 2
/** Most servers used. */
#define PROXY_DNS_SERVERS_MAX 4
/** Longest id accepted in a record (one DNS label). */
#define PROXY_DNS_ID_MAX 63

/** Resolver + cache. */
struct proxy_dns;

/** Configuration (copied by proxy_dns_new; nothing is kept from it). */
struct proxy_dns_config {
	/** TXT label prefix, e.g. "_dstack-app-address" (NULL: that default); [A-Za-z0-9_-]. */
	const char *prefix;
	/** Also ask `_tapp-address.<sni>` (app_address_ns_compat). */
	bool compat;
	/** "ip", "ip:port", "[ipv6]" or "[ipv6]:port" (port 53 by default); none: the system's. */
	const char *const *servers;
	size_t nservers;
	/** Whole-lookup timeout in seconds (<= 0: 5). */
	double timeout;
};

/** Counters, for metrics and tests. */
struct proxy_dns_stats {
	uint64_t lookups;    /**< proxy_dns_lookup calls with a valid name */
	uint64_t cache_hits; /**< answered from the cache */
	uint64_t queries;    /**< UDP datagrams sent */
	uint64_t timeouts;   /**< lookups that ended in ETIMEDOUT */
	uint64_t entries;    /**< names in the cache now (expired ones included until reused) */
};

/**
 * A resolver for @p cfg. Returns NULL with errno EINVAL (bad prefix or server), ENOENT (no
 * servers given and none in the system's configuration) or ENOMEM.
 */
struct proxy_dns *proxy_dns_new(const struct proxy_dns_config *cfg);

/** Free @p d (NULL is fine); no lookup may be running. */
void proxy_dns_free(struct proxy_dns *d);

/**
 * Blocking (call it on the uv thread pool): fill @p id (NUL-terminated, at most
 * PROXY_DNS_ID_MAX bytes, as written in the record) and @p port from the first TXT string
 * "<id>:<port>" of `<prefix>.<sni>` (or `_tapp-address.<sni>` with compat; the prefixed name wins
 * when both exist), else of `<prefix>-wildcard.<parent of sni>`. The id is [0-9A-Za-z]+ and the
 * port 1..65535 without leading zeros.
 *
 * Returns 0, or -ENOENT (no record), -EPROTO (a record, but not "<id>:<port>"; or a truncated
 * answer), -ETIMEDOUT (no answer in time), -EAGAIN (every server failed: SERVFAIL, REFUSED,
 * unreachable), -EINVAL (@p sni is not a valid host name), -ENOSPC (@p idcap too small for the
 * id). @p id and @p port are written only on success.
 */
int proxy_dns_lookup(struct proxy_dns *d, const char *sni, char *id, size_t idcap, uint16_t *port);

/** Copy the counters of @p d into @p out. */
void proxy_dns_stats(struct proxy_dns *d, struct proxy_dns_stats *out);

/** Drop every cached answer. */
void proxy_dns_flush(struct proxy_dns *d);

#endif /* MOONSTACK_PROXY_DNS_H */
