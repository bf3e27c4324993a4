/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Module loading: embedded Lua (all of lua/moonstack, compiled into the binary) behind an
 * optional development directory (--lua-dir / MOONSTACK_LUA_DIR) that is searched first.
 * Chunk names are the source paths, so tracebacks point at the files.
 */
#include <stdio.h>
#include <string.h>

#include "rt_embedded.h"
#include "rt_internal.h"

const struct rt_embedded_file *rt_embedded_find(const char *path)
{
	for (const struct rt_embedded_file *f = rt_embedded_files; f->path; f++)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

/* "a.b.c" -> "a/b/c" into buf; returns 0, or -1 if it does not fit or is not a plain name. */
static int module_path(const char *name, char *buf, size_t len)
{
	size_t n = strlen(name);
	if (n == 0 || n + 1 > len)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c == '/' || c == '\\' || (c == '.' && (i == 0 || name[i - 1] == '.')))
			return -1;
		buf[i] = c == '.' ? '/' : c;
	}
	buf[n] = '\0';
	return 0;
}

static int load_file_chunk(lua_State *L, const char *file)
{
	FILE *f = fopen(file, "rb");
	if (!f)
		return 0;
	fclose(f);
	if (luaL_loadfile(L, file) != 0)
		return luaL_error(L, "error loading module from '%s':\n\t%s", file,
				  lua_tostring(L, -1));
	return 1;
}

/* package.loaders entry: modules from the development directory. */
static int search_lua_dir(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *dir = lua_tostring(L, lua_upvalueindex(1));
	char rel[512], file[1024];

	if (module_path(name, rel, sizeof(rel)) != 0)
		return 0;
	snprintf(file, sizeof(file), "%s/%s.lua", dir, rel);
	if (load_file_chunk(L, file))
		return 1;
	snprintf(file, sizeof(file), "%s/%s/init.lua", dir, rel);
	if (load_file_chunk(L, file))
		return 1;
	lua_pushfstring(L, "\n\tno file '%s/%s.lua' (--lua-dir)", dir, rel);
	return 1;
}

/* package.loaders entry: modules compiled into the binary. */
static int search_embedded(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	char rel[512], path[600];
	const struct rt_embedded_file *f;

	if (module_path(name, rel, sizeof(rel)) != 0)
		return 0;
	snprintf(path, sizeof(path), "lua/%s.lua", rel);
	f = rt_embedded_find(path);
	if (!f) {
		snprintf(path, sizeof(path), "lua/%s/init.lua", rel);
		f = rt_embedded_find(path);
	}
	if (!f) {
		lua_pushfstring(L, "\n\tno embedded module '%s'", name);
		return 1;
	}
	lua_pushfstring(L, "@%s", path);
	const char *chunkname = lua_tostring(L, -1);
	if (luaL_loadbuffer(L, (const char *)f->data, f->len, chunkname) != 0)
		return luaL_error(L, "error loading embedded module '%s':\n\t%s", name,
				  lua_tostring(L, -1));
	return 1;
}

/* Insert the C function on top of the stack into package.loaders at position pos. */
static void insert_loader(lua_State *L, int pos)
{
	// [fn]
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaders"); // [fn, package, loaders]
	int n = (int)lua_objlen(L, -1);
	for (int i = n; i >= pos; i--) {
		lua_rawgeti(L, -1, i);
		lua_rawseti(L, -2, i + 1);
	}
	lua_pushvalue(L, -3);
	lua_rawseti(L, -2, pos);
	lua_pop(L, 3);
}

void rt_loader_install(lua_State *L, const char *lua_dir)
{
	// package.loaders: [1] preload, then ours, then the standard path/cpath searchers.
	lua_pushcfunction(L, search_embedded);
	insert_loader(L, 2);
	if (lua_dir && *lua_dir) {
		lua_pushstring(L, lua_dir);
		lua_pushcclosure(L, search_lua_dir, 1);
		insert_loader(L, 2);
	}
}
