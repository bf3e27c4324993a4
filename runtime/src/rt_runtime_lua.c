/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.runtime`: version, the shared log sink, embedded files, the
 * development Lua directory, exit control and runtime counters.
 */
#include <string.h>

#include "rt_embedded.h"
#include "rt_internal.h"

static int l_version(lua_State *L)
{
	lua_pushstring(L, MOONSTACK_VERSION);
	return 1;
}

static enum rt_log_level check_level(lua_State *L, int idx)
{
	const char *name = luaL_checkstring(L, idx);
	int level = rt_log_level_parse(name);
	if (level < 0)
		luaL_argerror(L, idx, lua_pushfstring(L, "unknown log level '%s'", name));
	return (enum rt_log_level)level;
}

/* log(level, component, msg [, fields_json]) */
static int l_log(lua_State *L)
{
	enum rt_log_level level = check_level(L, 1);
	const char *component = luaL_checkstring(L, 2);
	const char *msg = luaL_checkstring(L, 3);
	const char *fields = luaL_optstring(L, 4, NULL);
	rt_log_emit(level, component, msg, fields);
	return 0;
}

static int l_set_log_level(lua_State *L)
{
	rt_log_set_level(check_level(L, 1));
	return 0;
}

static int l_log_level(lua_State *L)
{
	lua_pushstring(L, rt_log_level_name(rt_log_get_level()));
	return 1;
}

static int l_set_log_json(lua_State *L)
{
	rt_log_set_json(lua_toboolean(L, 1));
	return 0;
}

static int l_log_json(lua_State *L)
{
	lua_pushboolean(L, rt_log_is_json());
	return 1;
}

/* embedded(path) -> bytes | nil */
static int l_embedded(lua_State *L)
{
	const struct rt_embedded_file *f = rt_embedded_find(luaL_checkstring(L, 1));
	if (!f)
		return 0;
	lua_pushlstring(L, (const char *)f->data, f->len);
	return 1;
}

/* embedded_list([prefix]) -> { path, ... } in sorted order */
static int l_embedded_list(lua_State *L)
{
	const char *prefix = luaL_optstring(L, 1, "");
	size_t plen = strlen(prefix);
	int n = 0;
	lua_newtable(L);
	for (const struct rt_embedded_file *f = rt_embedded_files; f->path; f++) {
		if (strncmp(f->path, prefix, plen) == 0) {
			lua_pushstring(L, f->path);
			lua_rawseti(L, -2, ++n);
		}
	}
	return 1;
}

static int l_lua_dir(lua_State *L)
{
	struct rt_runtime *rt = rt_from_lua(L);
	if (!rt->lua_dir)
		return 0;
	lua_pushstring(L, rt->lua_dir);
	return 1;
}

/* exit([code]): stop the loop; the process exits with code once shut down. */
static int l_exit(lua_State *L)
{
	rt_request_exit(rt_from_lua(L), (int)luaL_optinteger(L, 1, 0));
	return 0;
}

static int l_set_exit_code(lua_State *L)
{
	rt_set_exit_code(rt_from_lua(L), (int)luaL_checkinteger(L, 1));
	return 0;
}

static int l_stats(lua_State *L)
{
	struct rt_runtime *rt = rt_from_lua(L);
	lua_createtable(L, 0, 2);
	lua_pushnumber(L, (lua_Number)rt_callback_errors(rt));
	lua_setfield(L, -2, "callback_errors");
	lua_pushinteger(L, rt_exit_code(rt));
	lua_setfield(L, -2, "exit_code");
	return 1;
}

/* unix_socket_state(path) -> 'live' | 'stale', or nil, message (rt_unix_socket_probe). */
static int l_unix_socket_state(lua_State *L)
{
	int rc = rt_unix_socket_probe(luaL_checkstring(L, 1));
	if (rc < 0) {
		lua_pushnil(L);
		lua_pushstring(L, strerror(-rc));
		return 2;
	}
	lua_pushstring(L, rc ? "live" : "stale");
	return 1;
}

static const luaL_Reg functions[] = {
	{ "version", l_version },
	{ "log", l_log },
	{ "set_log_level", l_set_log_level },
	{ "log_level", l_log_level },
	{ "set_log_json", l_set_log_json },
	{ "log_json", l_log_json },
	{ "embedded", l_embedded },
	{ "embedded_list", l_embedded_list },
	{ "lua_dir", l_lua_dir },
	{ "exit", l_exit },
	{ "set_exit_code", l_set_exit_code },
	{ "stats", l_stats },
	{ "unix_socket_state", l_unix_socket_state },
	{ NULL, NULL },
};

int luaopen_moonstack_native_runtime(lua_State *L)
{
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	return 1;
}
