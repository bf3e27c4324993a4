/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.wg`: a wireguard-go device through its UAPI socket (wg.h), and
 * key helpers. Keys are base64 strings in Lua (as `wg` prints them); hex (64 digits) is also
 * accepted on input.
 *
 *   local wg = require('moonstack.native.wg')
 *   wg.genkey(), wg.genpsk()                   -- base64 keys
 *   wg.pubkey(priv)                            -- X25519 public key, base64
 *   wg.hex(key), wg.base64(key)                -- convert (either form in)
 *   wg.socket_path(ifname [, dir])             -- /var/run/wireguard/<ifname>.sock
 *   wg.get(path [, opts] [, cb])               -- device table (below)
 *   wg.set(path, conf [, opts] [, cb])         -- true
 *
 * opts = { timeout_ms = N }. Without cb, get/set block (a local socket, answers in
 * milliseconds: fine for tools); with cb they run on the libuv thread pool and call
 * cb(result | nil, msg, code) on the loop, returning true at once.
 * Device: { private_key?, public_key?, listen_port, fwmark, peers = { { public_key,
 * preshared_key?, endpoint?, allowed_ips = { 'a.b.c.d/n', ... }, last_handshake_time_sec,
 * last_handshake_time_nsec, rx_bytes, tx_bytes, persistent_keepalive_interval }, ... } }.
 * conf: { private_key?, listen_port?, fwmark?, replace_peers?, peers = { { public_key,
 * remove?, update_only?, preshared_key?, endpoint?, persistent_keepalive_interval?,
 * replace_allowed_ips?, allowed_ips? }, ... } }.
 * Failures return nil, "CODE: message", CODE (wg.h lists the codes). Misuse (wrong types, bad
 * keys or values in conf) raises.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"
#include "wg/wg.h"

static int push_err(lua_State *L, const struct wg_error *e)
{
	return rt_push_fail(L, e->code, "%s", e->msg);
}

/* A key argument: base64 (44) or hex (64); raises otherwise. */
static void check_key(lua_State *L, int idx, const char *what, uint8_t key[WG_KEY_LEN])
{
	size_t len;
	const char *s = lua_tolstring(L, idx, &len);
	if (!s || lua_type(L, idx) != LUA_TSTRING ||
	    (wg_key_from_base64(s, len, key) && wg_key_from_hex(s, len, key)))
		luaL_error(L, "wg: %s must be a base64 or hex key", what);
}

static void push_key(lua_State *L, const uint8_t key[WG_KEY_LEN])
{
	char b64[WG_KEY_B64_LEN + 1];
	wg_key_to_base64(key, b64);
	lua_pushstring(L, b64);
}

static int l_genkey(lua_State *L)
{
	uint8_t k[WG_KEY_LEN];
	struct wg_error e;
	if (wg_key_generate(k, &e))
		return push_err(L, &e);
	push_key(L, k);
	explicit_bzero(k, sizeof(k));
	return 1;
}

static int l_genpsk(lua_State *L)
{
	uint8_t k[WG_KEY_LEN];
	struct wg_error e;
	if (wg_key_generate_psk(k, &e))
		return push_err(L, &e);
	push_key(L, k);
	explicit_bzero(k, sizeof(k));
	return 1;
}

static int l_pubkey(lua_State *L)
{
	uint8_t priv[WG_KEY_LEN], pub[WG_KEY_LEN];
	struct wg_error e;
	check_key(L, 1, "the private key", priv);
	int rc = wg_key_public(priv, pub, &e);
	explicit_bzero(priv, sizeof(priv));
	if (rc)
		return push_err(L, &e);
	push_key(L, pub);
	return 1;
}

static int l_hex(lua_State *L)
{
	uint8_t k[WG_KEY_LEN];
	char hex[WG_KEY_HEX_LEN + 1];
	check_key(L, 1, "the key", k);
	wg_key_to_hex(k, hex);
	lua_pushstring(L, hex);
	return 1;
}

static int l_base64(lua_State *L)
{
	uint8_t k[WG_KEY_LEN];
	check_key(L, 1, "the key", k);
	push_key(L, k);
	return 1;
}

static int l_socket_path(lua_State *L)
{
	char buf[108];
	struct wg_error e;
	if (wg_socket_path(luaL_optstring(L, 2, NULL), luaL_checkstring(L, 1), buf, sizeof(buf),
			   &e))
		return push_err(L, &e);
	lua_pushstring(L, buf);
	return 1;
}

/* ---- get/set jobs ---- */

struct job {
	uv_work_t work;
	lua_State *L;
	int cb_ref;
	bool is_set;
	char *path;
	int timeout_ms;
	struct wg_set_req req; /* set: peers and allowed IPs owned below */
	struct wg_peer_op *peers;
	char **endpoints;
	struct wg_allowed_ip **ips;
	struct wg_device dev; /* get */
	int rc;
	struct wg_error err;
};

static void job_free(struct job *j)
{
	for (size_t i = 0; i < j->req.n_peers; i++) {
		free(j->endpoints ? j->endpoints[i] : NULL);
		free(j->ips ? j->ips[i] : NULL);
	}
	free(j->endpoints);
	free(j->ips);
	free(j->peers);
	free(j->path);
	wg_device_free(&j->dev);
	explicit_bzero(&j->req, sizeof(j->req));
	free(j);
}

static void run(struct job *j)
{
	if (j->is_set)
		j->rc = wg_set(j->path, j->timeout_ms, &j->req, &j->err);
	else
		j->rc = wg_get(j->path, j->timeout_ms, &j->dev, &j->err);
}

static void set_int(lua_State *L, const char *k, lua_Number v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

static int push_result(lua_State *L, struct job *j)
{
	char ip[64];

	if (j->rc)
		return push_err(L, &j->err);
	if (j->is_set) {
		lua_pushboolean(L, 1);
		return 1;
	}
	const struct wg_device *d = &j->dev;
	lua_createtable(L, 0, 5);
	if (d->has_private_key) {
		push_key(L, d->private_key);
		lua_setfield(L, -2, "private_key");
		push_key(L, d->public_key);
		lua_setfield(L, -2, "public_key");
	}
	set_int(L, "listen_port", d->listen_port);
	set_int(L, "fwmark", d->fwmark);
	lua_createtable(L, (int)d->n_peers, 0);
	for (size_t i = 0; i < d->n_peers; i++) {
		const struct wg_peer *p = &d->peers[i];
		lua_createtable(L, 0, 9);
		push_key(L, p->public_key);
		lua_setfield(L, -2, "public_key");
		if (p->has_preshared_key) {
			push_key(L, p->preshared_key);
			lua_setfield(L, -2, "preshared_key");
		}
		if (p->endpoint[0]) {
			lua_pushstring(L, p->endpoint);
			lua_setfield(L, -2, "endpoint");
		}
		set_int(L, "last_handshake_time_sec", (lua_Number)p->last_handshake_time_sec);
		set_int(L, "last_handshake_time_nsec", p->last_handshake_time_nsec);
		set_int(L, "rx_bytes", (lua_Number)p->rx_bytes);
		set_int(L, "tx_bytes", (lua_Number)p->tx_bytes);
		set_int(L, "persistent_keepalive_interval", p->persistent_keepalive_interval);
		lua_createtable(L, (int)p->n_allowed_ips, 0);
		for (size_t k = 0; k < p->n_allowed_ips; k++) {
			if (wg_allowed_ip_format(&p->allowed_ips[k], ip, sizeof(ip)) == 0) {
				lua_pushstring(L, ip);
				lua_rawseti(L, -2, (int)k + 1);
			}
		}
		lua_setfield(L, -2, "allowed_ips");
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "peers");
	return 1;
}

static void work_cb(uv_work_t *w)
{
	run(w->data);
}

static void after_work_cb(uv_work_t *w, int status)
{
	struct job *j = w->data;
	lua_State *L = j->L;

	if (status == UV_ECANCELED) {
		j->rc = -ECANCELED;
		snprintf(j->err.code, sizeof(j->err.code), "ECANCELED");
		snprintf(j->err.msg, sizeof(j->err.msg), "cancelled");
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, j->cb_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
	int n = push_result(L, j);
	job_free(j);
	rt_pcall_log(L, n, 0, "wg callback");
}

/* Run @j now (no callback at @cb_idx) or on the thread pool. Frees @j either way. */
static int dispatch(lua_State *L, struct job *j, int cb_idx, const char *fn)
{
	if (lua_isnoneornil(L, cb_idx)) {
		run(j);
		int n = push_result(L, j);
		job_free(j);
		return n;
	}
	if (!lua_isfunction(L, cb_idx)) {
		job_free(j);
		return luaL_error(L, "wg.%s: the callback must be a function", fn);
	}
	j->work.data = j;
	int rc = rt_queue_lua_work(L, &j->work, cb_idx, &j->L, &j->cb_ref, work_cb, after_work_cb);
	if (rc) {
		job_free(j);
		return rt_push_uv_fail(L, rc);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* The job for @fn with its path (arg 1) and options (table at @opt_idx or nil). Raises. */
static struct job *job_new(lua_State *L, int opt_idx, bool is_set, const char *fn)
{
	const char *path = luaL_checkstring(L, 1);
	int timeout = 0;

	if (!lua_isnoneornil(L, opt_idx)) {
		luaL_checktype(L, opt_idx, LUA_TTABLE);
		lua_getfield(L, opt_idx, "timeout_ms");
		if (!lua_isnil(L, -1)) {
			lua_Number t = luaL_checknumber(L, -1);
			if (t < 1 || t > 600000)
				luaL_error(L, "wg.%s: timeout_ms must be 1..600000", fn);
			timeout = (int)t;
		}
		lua_pop(L, 1);
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j || !(j->path = strdup(path))) {
		free(j);
		luaL_error(L, "wg: out of memory");
	}
	j->is_set = is_set;
	j->timeout_ms = timeout;
	j->cb_ref = LUA_NOREF;
	j->req.listen_port = -1;
	j->req.fwmark = -1;
	return j;
}

/* wg.get(path [, opts] [, cb]) */
static int l_get(lua_State *L)
{
	int cb = 3, opt = 2;
	if (lua_isfunction(L, 2)) {
		cb = 2;
		opt = 0;
	}
	struct job *j = job_new(L, opt ? opt : lua_gettop(L) + 1, false, "get");
	return dispatch(L, j, cb, "get");
}

/* Field @k of the table at -1 as a number in [lo, hi], or @dflt when nil. Sets *@bad. */
static lua_Number opt_num(lua_State *L, const char *k, lua_Number lo, lua_Number hi,
			  lua_Number dflt, const char **bad)
{
	lua_Number v = dflt;
	lua_getfield(L, -1, k);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TNUMBER || (v = lua_tonumber(L, -1)) < lo || v > hi ||
		    v != (lua_Number)(int64_t)v)
			*bad = k;
	}
	lua_pop(L, 1);
	return v;
}

static bool opt_bool(lua_State *L, const char *k, const char **bad)
{
	bool v = false;
	lua_getfield(L, -1, k);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TBOOLEAN)
			*bad = k;
		v = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	return v;
}

/* Field @k of the table at -1 as a key; false when absent. Sets *@bad. */
static bool opt_key(lua_State *L, const char *k, uint8_t key[WG_KEY_LEN], const char **bad)
{
	size_t len;
	bool have = false;
	lua_getfield(L, -1, k);
	if (!lua_isnil(L, -1)) {
		const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
		if (!s || (wg_key_from_base64(s, len, key) && wg_key_from_hex(s, len, key)))
			*bad = k;
		have = true;
	}
	lua_pop(L, 1);
	return have;
}

/* Fill peer @i from the table at -1; returns the name of a bad field or NULL. */
static const char *parse_peer(lua_State *L, struct job *j, size_t i)
{
	struct wg_peer_op *op = &j->peers[i];
	const char *bad = NULL;
	size_t len;

	if (!opt_key(L, "public_key", op->public_key, &bad))
		return "public_key";
	op->remove = opt_bool(L, "remove", &bad);
	op->update_only = opt_bool(L, "update_only", &bad);
	op->set_preshared_key = opt_key(L, "preshared_key", op->preshared_key, &bad);
	op->persistent_keepalive_interval =
		(int)opt_num(L, "persistent_keepalive_interval", 0, 65535, -1, &bad);
	op->replace_allowed_ips = opt_bool(L, "replace_allowed_ips", &bad);
	lua_getfield(L, -1, "endpoint");
	if (!lua_isnil(L, -1)) {
		const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
		if (!s || wg_endpoint_check(s, len) || !(j->endpoints[i] = strdup(s)))
			bad = "endpoint";
		op->endpoint = j->endpoints[i];
	}
	lua_pop(L, 1);
	lua_getfield(L, -1, "allowed_ips");
	if (!lua_isnil(L, -1)) {
		size_t n = lua_type(L, -1) == LUA_TTABLE ? lua_objlen(L, -1) : SIZE_MAX;
		if (n > WG_MAX_ALLOWED_IPS) {
			bad = "allowed_ips";
		} else if (n > 0) {
			j->ips[i] = calloc(n, sizeof(struct wg_allowed_ip));
			if (!j->ips[i])
				bad = "allowed_ips";
			for (size_t k = 0; j->ips[i] && k < n; k++) {
				lua_rawgeti(L, -1, (int)k + 1);
				const char *s = lua_type(L, -1) == LUA_TSTRING
							? lua_tolstring(L, -1, &len)
							: NULL;
				if (!s || wg_allowed_ip_parse(s, len, &j->ips[i][k]))
					bad = "allowed_ips";
				lua_pop(L, 1);
			}
			op->allowed_ips = j->ips[i];
			op->n_allowed_ips = n;
		}
	}
	lua_pop(L, 1);
	return bad;
}

/* wg.set(path, conf [, opts] [, cb]) */
static int l_set(lua_State *L)
{
	const char *bad = NULL;
	int cb = 4, opt = 3;

	luaL_checktype(L, 2, LUA_TTABLE);
	if (lua_isfunction(L, 3)) {
		cb = 3;
		opt = 0;
	}
	struct job *j = job_new(L, opt ? opt : lua_gettop(L) + 1, true, "set");
	lua_pushvalue(L, 2);
	j->req.set_private_key = opt_key(L, "private_key", j->req.private_key, &bad);
	j->req.listen_port = (int)opt_num(L, "listen_port", 0, 65535, -1, &bad);
	j->req.fwmark = (int64_t)opt_num(L, "fwmark", 0, UINT32_MAX, -1, &bad);
	j->req.replace_peers = opt_bool(L, "replace_peers", &bad);
	lua_getfield(L, -1, "peers");
	if (!bad && !lua_isnil(L, -1)) {
		size_t n = lua_type(L, -1) == LUA_TTABLE ? lua_objlen(L, -1) : SIZE_MAX;
		if (n > WG_MAX_PEERS) {
			bad = "peers";
		} else if (n > 0) {
			j->peers = calloc(n, sizeof(*j->peers));
			j->endpoints = calloc(n, sizeof(char *));
			j->ips = calloc(n, sizeof(*j->ips));
			if (!j->peers || !j->endpoints || !j->ips) {
				bad = "peers";
			} else {
				j->req.peers = j->peers;
				j->req.n_peers = n;
			}
			for (size_t i = 0; !bad && i < j->req.n_peers; i++) {
				lua_rawgeti(L, -1, (int)i + 1);
				if (lua_type(L, -1) != LUA_TTABLE)
					bad = "peers";
				else
					bad = parse_peer(L, j, i);
				lua_pop(L, 1);
			}
		}
	}
	lua_pop(L, 2);
	if (bad) {
		job_free(j);
		return luaL_error(L, "wg.set: bad '%s'", bad);
	}
	/* the combination rules (remove alone, ...) are misuse too: check before any I/O */
	char *msg;
	size_t msg_len;
	struct wg_error e;
	if (wg_build_set(&j->req, &msg, &msg_len, &e)) {
		job_free(j);
		return luaL_error(L, "wg.set: %s", e.msg);
	}
	explicit_bzero(msg, msg_len);
	free(msg);
	return dispatch(L, j, cb, "set");
}

int luaopen_moonstack_native_wg(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "genkey", l_genkey }, { "genpsk", l_genpsk }, { "pubkey", l_pubkey },
		{ "hex", l_hex },	{ "base64", l_base64 }, { "socket_path", l_socket_path },
		{ "get", l_get },	{ "set", l_set },	{ NULL, NULL },
	};
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	return 1;
}
