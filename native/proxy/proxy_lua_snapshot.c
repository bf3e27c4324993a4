/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proxy_lua_snapshot: the snapshot table of p:publish() (contract in README.md) checked
 * strictly and turned into a proxy_snapshot. Every misuse raises an argument error naming the
 * field (`snapshot.instances["ab12"].ports[8080].pp must be a boolean`); unknown keys too.
 */
#include "proxy/proxy_lua.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define GUARD "moonstack.proxy.snapshot_guard"

static int absindex(lua_State *L, int i)
{
	return i > 0 || i <= LUA_REGISTRYINDEX ? i : lua_gettop(L) + i + 1;
}

struct guard {
	struct proxy_snapshot *s;
};

static int guard_gc(lua_State *L)
{
	struct guard *g = luaL_checkudata(L, 1, GUARD);
	proxy_snapshot_unref(g->s);
	g->s = NULL;
	return 0;
}

/* Raise "snapshot.<path> <what>" as an error of argument @p arg. */
static int bad(lua_State *L, int arg, const char *path, const char *what)
{
	lua_pushfstring(L, "snapshot.%s %s", path, what);
	return luaL_argerror(L, arg, lua_tostring(L, -1));
}

void proxy_lua_only_keys(lua_State *L, int arg, int t, const char *prefix,
			 const char *const *allowed)
{
	t = absindex(L, t);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		bool ok = false;
		if (lua_type(L, -1) == LUA_TSTRING)
			for (int i = 0; allowed[i]; i++)
				ok = ok || strcmp(lua_tostring(L, -1), allowed[i]) == 0;
		if (!ok) {
			lua_pushfstring(L, "%s%s is not a known field", prefix,
					lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
			luaL_argerror(L, arg, lua_tostring(L, -1));
		}
	}
}

/* Refuse keys of the table at @p t not in @p allowed, naming them under snapshot.<path>. */
static void only_keys(lua_State *L, int arg, int t, const char *path, const char *const *allowed)
{
	char prefix[300];
	snprintf(prefix, sizeof(prefix), "snapshot.%s%s", path, path[0] ? "." : "");
	proxy_lua_only_keys(L, arg, t, prefix, allowed);
}

/* Field @p k of table @p t pushed; must be of @p type (or nil when @p optional). */
static int field(lua_State *L, int arg, int t, const char *path, const char *k, int type,
		 bool optional)
{
	lua_getfield(L, t, k);
	int got = lua_type(L, -1);
	if (got == type || (optional && got == LUA_TNIL))
		return got;
	char p[300];
	snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", k);
	return bad(L, arg, p, optional ? "has the wrong type" : "is missing or has the wrong type");
}

static lua_Number num(lua_State *L, int arg, int t, const char *path, const char *k, lua_Number def,
		      lua_Number lo, lua_Number hi, bool integer)
{
	if (field(L, arg, t, path, k, LUA_TNUMBER, true) == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	lua_Number v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (!(v >= lo && v <= hi) || (integer && v != floor(v))) {
		char p[300], w[100];
		snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", k);
		snprintf(w, sizeof(w), "must be %s in %g..%g", integer ? "an integer" : "a number",
			 lo, hi);
		bad(L, arg, p, w);
	}
	return v;
}

static bool boolean(lua_State *L, int arg, int t, const char *path, const char *k, bool def)
{
	bool v = field(L, arg, t, path, k, LUA_TBOOLEAN, true) == LUA_TNIL ? def
									   : lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

/* An id key (1..63 of [A-Za-z0-9_-]) at -2 during lua_next. */
static const char *id_key(lua_State *L, int arg, const char *what)
{
	size_t n;
	if (lua_type(L, -2) != LUA_TSTRING)
		bad(L, arg, what, "keys must be strings");
	const char *s = lua_tolstring(L, -2, &n);
	bool ok = n > 0 && n <= PROXY_ROUTE_ID_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		     (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '-' || s[i] == '_';
	if (!ok)
		bad(L, arg, what, "keys must be ids (1..63 letters, digits, - or _)");
	return s;
}

static void check(lua_State *L, int arg, int rc, const char *err)
{
	if (rc)
		luaL_argerror(L, arg, err);
}

static void domains(lua_State *L, int arg, struct proxy_snapshot *s)
{
	static const char *const keys[] = { "domain", "cert", "key", NULL };
	char err[300], path[64];

	if (field(L, arg, 2, "", "base_domains", LUA_TTABLE, true) == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int t = lua_gettop(L);
	size_t n = lua_objlen(L, t);
	for (size_t i = 1; i <= n; i++) {
		snprintf(path, sizeof(path), "base_domains[%zu]", i);
		lua_rawgeti(L, t, (int)i);
		if (!lua_istable(L, -1))
			bad(L, arg, path, "must be a table");
		int d = lua_gettop(L);
		only_keys(L, arg, d, path, keys);
		field(L, arg, d, path, "domain", LUA_TSTRING, false);
		bool has_cert = field(L, arg, d, path, "cert", LUA_TSTRING, true) != LUA_TNIL;
		bool has_key = field(L, arg, d, path, "key", LUA_TSTRING, true) != LUA_TNIL;
		if (has_cert != has_key)
			bad(L, arg, path, "needs both cert and key, or neither");
		char host[PROXY_SNI_HOST_MAX + 1];
		size_t len;
		const char *name = lua_tolstring(L, d + 1, &len);
		if (len > 2 && name[0] == '*' && name[1] == '.')
			name += 2, len -= 2;
		if (!proxy_sni_host_valid(name, len, host))
			bad(L, arg, path, "domain is not a valid host name");
		check(L, arg,
		      proxy_snapshot_add_domain(s, host, lua_tostring(L, d + 2),
						lua_tostring(L, d + 3), err, sizeof(err)),
		      err);
		lua_settop(L, t);
	}
	lua_pop(L, 1);
}

#define MAX_PORTS 65536

static void instances(lua_State *L, int arg, struct proxy_snapshot *s)
{
	static const char *const keys[] = { "app_id", "ip",	  "last_handshake",
					    "ports",  "restrict", "connections_cap",
					    NULL };
	char err[300], path[128];

	if (field(L, arg, 2, "", "instances", LUA_TTABLE, true) == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int t = lua_gettop(L);
	uint16_t *ports = lua_newuserdata(L, MAX_PORTS * sizeof(uint16_t));
	bool *pp = lua_newuserdata(L, MAX_PORTS * sizeof(bool));
	int base = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		const char *id = id_key(L, arg, "instances");
		snprintf(path, sizeof(path), "instances[\"%s\"]", id);
		if (!lua_istable(L, -1))
			bad(L, arg, path, "must be a table");
		int x = lua_gettop(L);
		only_keys(L, arg, x, path, keys);
		field(L, arg, x, path, "app_id", LUA_TSTRING, false);
		field(L, arg, x, path, "ip", LUA_TSTRING, false);
		struct proxy_instance_spec in = {
			.id = id,
			.app_id = lua_tostring(L, x + 1),
			.ip = lua_tostring(L, x + 2),
			.last_handshake = num(L, arg, x, path, "last_handshake", 0, 0, 1e12, false),
			.restrict_ports = boolean(L, arg, x, path, "restrict", false),
			.connections_cap =
				(unsigned)num(L, arg, x, path, "connections_cap", 0, 0, 1e9, true),
			.ports = ports,
			.pp = pp,
		};
		lua_pushvalue(L, x + 1);
		lua_pushvalue(L, x + 1);
		id_key(L, arg, "instances[].app_id");
		lua_pop(L, 2);
		if (field(L, arg, x, path, "ports", LUA_TTABLE, true) == LUA_TTABLE) {
			int pt = lua_gettop(L);
			in.has_ports = true;
			lua_pushnil(L);
			while (lua_next(L, pt)) {
				lua_Number p =
					lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : -1;
				if (!(p >= 1 && p <= 65535 && p == floor(p)))
					bad(L, arg, path, "ports keys must be port numbers");
				bool flag = false;
				if (lua_istable(L, -1)) {
					static const char *const pk[] = { "pp", NULL };
					only_keys(L, arg, -1, path, pk);
					flag = boolean(L, arg, lua_gettop(L), path, "pp", false);
				} else if (lua_type(L, -1) != LUA_TBOOLEAN ||
					   !lua_toboolean(L, -1)) {
					bad(L, arg, path,
					    "ports values must be true or { pp = bool }");
				}
				ports[in.nports] = (uint16_t)p;
				pp[in.nports++] = flag;
				lua_pop(L, 1);
			}
		}
		check(L, arg, proxy_snapshot_add_instance(s, &in, err, sizeof(err)), err);
		lua_settop(L, x - 1);
	}
	lua_settop(L, base - 3);
}

static void apps(lua_State *L, int arg, struct proxy_snapshot *s)
{
	static const char *const keys[] = { "max_connections", NULL };
	char err[300], path[128];

	if (field(L, arg, 2, "", "apps", LUA_TTABLE, true) == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int t = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		const char *id = id_key(L, arg, "apps");
		snprintf(path, sizeof(path), "apps[\"%s\"]", id);
		if (!lua_istable(L, -1))
			bad(L, arg, path, "must be a table");
		only_keys(L, arg, -1, path, keys);
		lua_getfield(L, -1, "max_connections");
		bool has = !lua_isnil(L, -1);
		lua_pop(L, 1);
		unsigned max = (unsigned)num(L, arg, lua_gettop(L), path, "max_connections", 0, 0,
					     1e9, true);
		check(L, arg, proxy_snapshot_add_app(s, id, has, max, err, sizeof(err)), err);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

void proxy_lua_decision(lua_State *L, int arg, int t, const char *path, struct proxy_decision *d)
{
	static const char *const keys[] = { "allow", "to_port", "pp", NULL };
	t = absindex(L, t);
	only_keys(L, arg, t, path, keys);
	field(L, arg, t, path, "allow", LUA_TBOOLEAN, false);
	d->allow = lua_toboolean(L, -1);
	lua_pop(L, 1);
	d->to_port = (uint16_t)num(L, arg, t, path, "to_port", 0, 1, 65535, true);
	lua_getfield(L, t, "pp");
	bool has_pp = !lua_isnil(L, -1);
	lua_pop(L, 1);
	d->pp = has_pp ? boolean(L, arg, t, path, "pp", false) : -1;
}

bool proxy_lua_route_key(const char *key, size_t n)
{
	const char *colon = memchr(key, ':', n);
	if (!colon || colon == key || colon - key > PROXY_ROUTE_ID_MAX)
		return false;
	size_t digits = n - (size_t)(colon - key) - 1;
	unsigned long port = 0;
	if (digits == 0 || digits > 5)
		return false;
	for (const char *p = colon + 1; p < key + n; p++) {
		if (*p < '0' || *p > '9')
			return false;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	return port <= 65535 && strlen(key) == n;
}

static void routes(lua_State *L, int arg, struct proxy_snapshot *s)
{
	char err[300], path[128];

	if (field(L, arg, 2, "", "routes", LUA_TTABLE, true) == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int t = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		size_t n;
		const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
		if (!key || !proxy_lua_route_key(key, n))
			bad(L, arg, "routes", "keys must be \"<id>:<port>\"");
		snprintf(path, sizeof(path), "routes[\"%s\"]", key);
		if (!lua_istable(L, -1))
			bad(L, arg, path, "must be a table");
		struct proxy_decision d;
		proxy_lua_decision(L, arg, -1, path, &d);
		check(L, arg, proxy_snapshot_add_route(s, key, &d, err, sizeof(err)), err);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static void custom(lua_State *L, int arg, struct proxy_snapshot *s)
{
	static const char *const keys[] = { "prefix", "compat", "servers", "timeout", NULL };
	const char *servers[16];
	char err[300];

	if (field(L, arg, 2, "", "custom_domains", LUA_TTABLE, true) == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	int t = lua_gettop(L);
	only_keys(L, arg, t, "custom_domains", keys);
	field(L, arg, t, "custom_domains", "prefix", LUA_TSTRING, false);
	field(L, arg, t, "custom_domains", "servers", LUA_TTABLE, false);
	size_t n = lua_objlen(L, t + 2);
	if (n > 16)
		bad(L, arg, "custom_domains.servers", "has more than 16 entries");
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, t + 2, (int)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			bad(L, arg, "custom_domains.servers", "must hold \"ip[:port]\" strings");
		servers[i] = lua_tostring(L, -1); /* anchored by the servers table */
		lua_pop(L, 1);
	}
	check(L, arg,
	      proxy_snapshot_set_dns(
		      s, lua_tostring(L, t + 1),
		      boolean(L, arg, t, "custom_domains", "compat", true), servers, n,
		      num(L, arg, t, "custom_domains", "timeout", 5, 0.001, 600, false), err,
		      sizeof(err)),
	      err);
	lua_settop(L, t - 1);
}

struct proxy_snapshot *proxy_lua_snapshot(lua_State *L, int arg)
{
	static const char *const keys[] = {
		"version", "base_domains", "insecure_localhost", "special",	"instances",
		"apps",	   "routes",	   "handshake_stale",	 "cache_top_n", "custom_domains",
		NULL
	};
	static const luaL_Reg meta[] = { { "__gc", guard_gc }, { NULL, NULL } };
	char err[300];

	luaL_checktype(L, arg, LUA_TTABLE);
	lua_settop(L, arg);
	if (arg != 2)
		luaL_error(L, "proxy_lua_snapshot: the table must be argument 2");
	only_keys(L, arg, arg, "", keys);
	field(L, arg, arg, "", "version", LUA_TNUMBER, false);
	lua_Number v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (v != floor(v) || fabs(v) > 9007199254740992.0)
		bad(L, arg, "version", "must be an integer");
	if (luaL_newmetatable(L, GUARD))
		luaL_register(L, NULL, meta);
	lua_pop(L, 1);
	struct guard *g = lua_newuserdata(L, sizeof(*g)); /* 3: frees the snapshot on a raise */
	g->s = NULL;
	luaL_getmetatable(L, GUARD);
	lua_setmetatable(L, -2);
	if (!(g->s = proxy_snapshot_new((int64_t)v)))
		luaL_error(L, "out of memory");
	struct proxy_snapshot *s = g->s;
	domains(L, arg, s);
	instances(L, arg, s);
	apps(L, arg, s);
	routes(L, arg, s);
	custom(L, arg, s);
	const char *special = NULL;
	uint16_t sport = 0;
	if (field(L, arg, arg, "", "special", LUA_TTABLE, true) == LUA_TTABLE) {
		static const char *const sk[] = { "host", "port", NULL };
		int t = lua_gettop(L);
		only_keys(L, arg, t, "special", sk);
		field(L, arg, t, "special", "host", LUA_TSTRING, false);
		special = lua_tostring(L, -1); /* anchored by the snapshot table */
		lua_pop(L, 1);
		field(L, arg, t, "special", "port", LUA_TNUMBER, false);
		lua_pop(L, 1);
		sport = (uint16_t)num(L, arg, t, "special", "port", 0, 1, 65535, true);
	}
	lua_pop(L, 1);
	check(L, arg,
	      proxy_snapshot_set(s, boolean(L, arg, arg, "", "insecure_localhost", false), special,
				 sport,
				 num(L, arg, arg, "", "handshake_stale", 1800, 0.001, 1e9, false),
				 (unsigned)num(L, arg, arg, "", "cache_top_n", 30, 0, 1e6, true),
				 err, sizeof(err)),
	      err);
	check(L, arg, proxy_snapshot_finish(s, err, sizeof(err)), err);
	g->s = NULL;
	lua_settop(L, arg);
	return s;
}
