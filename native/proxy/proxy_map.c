/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_map: the immutable string → pointer hash map of a route snapshot (instance ids, app
 * ids, route keys). Built once on the main thread with open addressing (load <= 1/2, FNV-1a,
 * linear probing), then read by every worker without a lock.
 */
#include "proxy/proxy_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ull;
	}
	return h;
}

int px_map_init(struct px_map *m, size_t n)
{
	size_t cap = 8;

	while (cap < n * 2)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	m->cap = m->slots ? cap : 0;
	return m->slots ? 0 : -1;
}

int px_map_put(struct px_map *m, const char *key, void *val)
{
	size_t len = strlen(key);
	size_t i = (size_t)hash(key, len) & (m->cap - 1);

	while (m->slots[i].key) {
		if (strcmp(m->slots[i].key, key) == 0)
			return -1;
		i = (i + 1) & (m->cap - 1);
	}
	m->slots[i].key = key;
	m->slots[i].val = val;
	return 0;
}

void *px_map_get(const struct px_map *m, const char *key, size_t len)
{
	if (!m->cap)
		return NULL;
	size_t i = (size_t)hash(key, len) & (m->cap - 1);

	while (m->slots[i].key) {
		const char *k = m->slots[i].key;
		if (strncmp(k, key, len) == 0 && k[len] == '\0')
			return m->slots[i].val;
		i = (i + 1) & (m->cap - 1);
	}
	return NULL;
}

void px_map_free(struct px_map *m)
{
	free(m->slots);
	m->slots = NULL;
	m->cap = 0;
}
