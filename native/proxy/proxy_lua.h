/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_lua: what the two files of the `moonstack.native.proxy` binding share — the snapshot
 * table reader (proxy_lua_snapshot.c) used by p:publish(), the decision reader used by
 * p:publish() and p:decide() (proxy_lua.c), and the strict check of a table's keys used by
 * both (proxy.new's options, the snapshot).
 */
#ifndef MOONSTACK_PROXY_LUA_H
#define MOONSTACK_PROXY_LUA_H

#include "moonstack/rt.h"
#include "proxy/proxy_internal.h"

/**
 * Check the snapshot table at argument @p arg (must be 2) strictly and build a finished
 * snapshot (a new reference). Raises an argument error naming the field on any misuse.
 */
struct proxy_snapshot *proxy_lua_snapshot(lua_State *L, int arg);

/** Read the decision table at @p t ({ allow, to_port?, pp? }); raises naming @p path. */
void proxy_lua_decision(lua_State *L, int arg, int t, const char *path, struct proxy_decision *d);

/**
 * Raise an argument error of @p arg, "<prefix><key> is not a known field", when the table at
 * @p t has a key (a string, or "?" for any other type) not in the NULL-terminated @p allowed.
 */
void proxy_lua_only_keys(lua_State *L, int arg, int t, const char *prefix,
			 const char *const *allowed);

/** Whether @p key (@p n bytes) is "<id>:<port>". */
bool proxy_lua_route_key(const char *key, size_t n);

#endif /* MOONSTACK_PROXY_LUA_H */
