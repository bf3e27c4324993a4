/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.netns`: a network namespace (netns.h) held open as a userdata.
 *
 *   local netns = require('moonstack.native.netns')
 *   local ns, err, code = netns.open(pid_or_path)  -- an existing namespace
 *   local ns, err, code = netns.create()           -- a new one, loopback up, caller unmoved
 *   ns:socket('tcp'|'udp' [, 'inet'|'inet6'])      -- fd of a socket living in ns (non-blocking,
 *                                                  --   close-on-exec): hand it to uv tcp:open
 *   ns:inode(), netns.self_inode()                 -- namespace identity
 *   ns:close()                                     -- idempotent (also __gc)
 *
 * Failures return nil, "CODE: message", CODE (EPERM when namespaces are not permitted, ENOENT,
 * EINVAL, EMFILE, EIO). Misuse (wrong types, a closed namespace) raises.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "moonstack/rt.h"
#include "netns/netns.h"

#define NETNS_CLASS "moonstack.netns.Netns"

struct l_netns {
	int fd;
};

static int push_err(lua_State *L, const struct netns_error *e)
{
	return rt_push_fail(L, e->code, "%s", e->msg);
}

static struct l_netns *push_ns(lua_State *L, int fd)
{
	struct l_netns *u = lua_newuserdata(L, sizeof(*u));
	u->fd = fd;
	luaL_getmetatable(L, NETNS_CLASS);
	lua_setmetatable(L, -2);
	return u;
}

static int check_fd(lua_State *L, const char *fn)
{
	struct l_netns *u = luaL_checkudata(L, 1, NETNS_CLASS);
	if (u->fd < 0)
		luaL_error(L, "netns:%s: the namespace is closed", fn);
	return u->fd;
}

/* netns.open(pid | path) */
static int l_open(lua_State *L)
{
	struct netns_error e;
	int fd;
	if (lua_type(L, 1) == LUA_TNUMBER)
		fd = netns_open_pid((int)lua_tointeger(L, 1), &e);
	else if (lua_type(L, 1) == LUA_TSTRING)
		fd = netns_open(lua_tostring(L, 1), &e);
	else
		return luaL_argerror(L, 1, "netns.open: expected a pid or a path");
	if (fd < 0)
		return push_err(L, &e);
	push_ns(L, fd);
	return 1;
}

/* netns.create() */
static int l_create(lua_State *L)
{
	struct netns_error e;
	int fd = netns_create(&e);
	if (fd < 0)
		return push_err(L, &e);
	push_ns(L, fd);
	return 1;
}

/* netns.self_inode() */
static int l_self_inode(lua_State *L)
{
	struct netns_error e;
	uint64_t ino;
	if (netns_self_inode(&ino, &e) < 0)
		return push_err(L, &e);
	lua_pushnumber(L, (lua_Number)ino);
	return 1;
}

/* ns:socket('tcp'|'udp' [, 'inet'|'inet6']) */
static int l_socket(lua_State *L)
{
	int fd = check_fd(L, "socket");
	static const char *const types[] = { "tcp", "udp", NULL };
	static const char *const families[] = { "inet", "inet6", NULL };
	int type = luaL_checkoption(L, 2, NULL, types) == 0 ? SOCK_STREAM : SOCK_DGRAM;
	int family = luaL_checkoption(L, 3, "inet", families) == 0 ? AF_INET : AF_INET6;
	struct netns_error e;
	int s = netns_socket(fd, family, type, &e);
	if (s < 0)
		return push_err(L, &e);
	lua_pushinteger(L, s);
	return 1;
}

/* ns:inode() */
static int l_inode(lua_State *L)
{
	int fd = check_fd(L, "inode");
	struct netns_error e;
	uint64_t ino;
	if (netns_inode(fd, &ino, &e) < 0)
		return push_err(L, &e);
	lua_pushnumber(L, (lua_Number)ino);
	return 1;
}

/* ns:close() */
static int l_close(lua_State *L)
{
	struct l_netns *u = luaL_checkudata(L, 1, NETNS_CLASS);
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
	}
	return 0;
}

static const char *inode_str(uint64_t ino, char buf[24])
{
	snprintf(buf, 24, "%" PRIu64, ino);
	return buf;
}

static int l_tostring(lua_State *L)
{
	struct l_netns *u = luaL_checkudata(L, 1, NETNS_CLASS);
	uint64_t ino = 0;
	char buf[24];
	if (u->fd < 0 || netns_inode(u->fd, &ino, NULL) < 0)
		lua_pushstring(L, "netns<closed>");
	else
		lua_pushfstring(L, "netns<net:[%s]>", inode_str(ino, buf));
	return 1;
}

int luaopen_moonstack_native_netns(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "socket", l_socket },
		{ "inode", l_inode },
		{ "close", l_close },
		{ NULL, NULL },
	};
	static const luaL_Reg meta[] = {
		{ "__gc", l_close },
		{ "__tostring", l_tostring },
		{ NULL, NULL },
	};
	static const luaL_Reg funcs[] = {
		{ "open", l_open },
		{ "create", l_create },
		{ "self_inode", l_self_inode },
		{ NULL, NULL },
	};
	rt_newclass(L, NETNS_CLASS, methods, meta);
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	return 1;
}
