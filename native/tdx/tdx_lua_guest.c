/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest part of `moonstack.native.tdx`: configfs-tsm, the /dev/tdx_guest ioctls, the host
 * quote service and sysfs RTMRs, plus an flock()ed Lock object for the runtime event log.
 * The slow calls take an optional trailing callback: without it they block (CLI tools);
 * with it they run on the libuv thread pool and call back cb(result | nil, msg, code) on the
 * loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "moonstack/rt.h"
#include "tdx/tdx_lua.h"

#define LOCK_CLASS "moonstack.tdx.Lock"

enum op {
	OP_TSM_QUOTE,
	OP_GUEST_REPORT,
	OP_GUEST_EXTEND,
	OP_GUEST_QUOTE,
	OP_QGS_QUOTE,
};

/* One call: inputs (owned copies), outputs, and the callback when asynchronous. */
struct job {
	uv_work_t work;
	lua_State *L;
	int cb_ref;
	enum op op;
	char *path; /* device path, entry override or unix socket */
	char *root;
	char *entry_name;
	struct tdx_tsm_opts tsm;
	uint32_t cid, port;
	int timeout_ms;
	unsigned index;
	uint8_t in[TDX_TDREPORT_LEN];
	uint8_t out[TDX_TDREPORT_LEN];
	uint8_t *quote;
	size_t quote_len;
	int rc;
	struct tdx_error err;
};

static void job_free(struct job *j)
{
	free(j->path);
	free(j->root);
	free(j->entry_name);
	free(j->quote);
	free(j);
}

static struct job *job_new(lua_State *L, enum op op)
{
	struct job *j = calloc(1, sizeof(*j));

	if (!j)
		luaL_error(L, "tdx: out of memory");
	j->op = op;
	j->cb_ref = LUA_NOREF;
	return j;
}

/* Copy an optional string (raises on OOM after freeing the job). */
static char *dup_or_die(lua_State *L, struct job *j, const char *s)
{
	char *copy;

	if (!s)
		return NULL;
	copy = strdup(s);
	if (!copy) {
		job_free(j);
		luaL_error(L, "tdx: out of memory");
	}
	return copy;
}

static void run(struct job *j)
{
	struct tdx_guest_dev dev = { .path = j->path, .ops = NULL };

	switch (j->op) {
	case OP_TSM_QUOTE:
		j->rc = tdx_tsm_get_quote(&j->tsm, j->in, &j->quote, &j->quote_len, &j->err);
		break;
	case OP_GUEST_REPORT:
		j->rc = tdx_guest_get_report(&dev, j->in, j->out, &j->err);
		break;
	case OP_GUEST_EXTEND:
		j->rc = tdx_guest_extend_rtmr(&dev, j->index, j->in, &j->err);
		break;
	case OP_GUEST_QUOTE:
		tdx_quote_lock();
		j->rc = tdx_guest_get_quote(&dev, j->in, &j->quote, &j->quote_len, &j->err);
		tdx_quote_unlock();
		break;
	case OP_QGS_QUOTE: {
		tdx_quote_lock();
		int fd = j->path ? tdx_qgs_connect_unix(j->path, &j->err)
				 : tdx_qgs_connect_vsock(j->cid, j->port, j->timeout_ms, &j->err);
		if (fd < 0) {
			j->rc = fd;
		} else {
			j->rc = tdx_qgs_exchange(fd, j->in, j->timeout_ms, &j->quote, &j->quote_len,
						 &j->err);
			close(fd);
		}
		tdx_quote_unlock();
		break;
	}
	}
}

static int push_result(lua_State *L, struct job *j)
{
	if (j->rc)
		return tdx_lua_fail(L, &j->err);
	switch (j->op) {
	case OP_GUEST_REPORT:
		lua_pushlstring(L, (const char *)j->out, TDX_TDREPORT_LEN);
		break;
	case OP_GUEST_EXTEND:
		lua_pushboolean(L, 1);
		break;
	default:
		lua_pushlstring(L, (const char *)j->quote, j->quote_len);
		break;
	}
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

	if (status == UV_ECANCELED)
		j->rc = tdx_fail(&j->err, -ECANCELED, "ECANCELED", TDX_NO_OFFSET, "cancelled");
	lua_rawgeti(L, LUA_REGISTRYINDEX, j->cb_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, j->cb_ref);
	int n = push_result(L, j);
	job_free(j);
	rt_pcall_log(L, n, 0, "tdx callback");
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
		return luaL_error(L, "tdx.%s: the callback must be a function", fn);
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

static const char *opt_field_string(lua_State *L, int idx, const char *key, const char *fn)
{
	const char *s = NULL;

	lua_getfield(L, idx, key);
	if (!lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "tdx.%s: option '%s' must be a string", fn, key);
		s = lua_tostring(L, -1);
	}
	lua_pop(L, 1); /* the string stays alive in the options table */
	return s;
}

static unsigned opt_field_uint(lua_State *L, int idx, const char *key, unsigned max, const char *fn)
{
	lua_Number v = 0;

	lua_getfield(L, idx, key);
	if (!lua_isnil(L, -1)) {
		v = lua_tonumber(L, -1);
		if (lua_type(L, -1) != LUA_TNUMBER || v < 0 || v > max || v != (lua_Number)(long)v)
			luaL_error(L, "tdx.%s: option '%s' must be an integer in [0, %u]", fn, key,
				   max);
	}
	lua_pop(L, 1);
	return (unsigned)v;
}

/* Options of the configfs-tsm calls, from the table at @idx (may be nil). Strings point
 * into the options table; nothing is allocated, so raising here leaks nothing. */
static void tsm_options(lua_State *L, int idx, struct tdx_tsm_opts *o, const char *fn)
{
	static const char *const known[] = { "root",
					     "entry",
					     "entry_name",
					     "poll_ms",
					     "timeout_ms",
					     "busy_sleep_ms",
					     "busy_retries",
					     "provider_retries",
					     "provider_wait_ms",
					     NULL };
	memset(o, 0, sizeof(*o));
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		bool ok = false;
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "tdx.%s: option names must be strings", fn);
		for (int i = 0; known[i] && !ok; i++)
			ok = strcmp(lua_tostring(L, -2), known[i]) == 0;
		if (!ok)
			luaL_error(L, "tdx.%s: unknown option '%s'", fn, lua_tostring(L, -2));
		lua_pop(L, 1);
	}
	o->root = opt_field_string(L, idx, "root", fn);
	o->entry = opt_field_string(L, idx, "entry", fn);
	o->entry_name = opt_field_string(L, idx, "entry_name", fn);
	o->poll_ms = opt_field_uint(L, idx, "poll_ms", 60000, fn);
	o->timeout_ms = opt_field_uint(L, idx, "timeout_ms", 600000, fn);
	o->busy_sleep_ms = opt_field_uint(L, idx, "busy_sleep_ms", 600000, fn);
	o->busy_retries = opt_field_uint(L, idx, "busy_retries", 100, fn);
	o->provider_retries = opt_field_uint(L, idx, "provider_retries", 1000, fn);
	o->provider_wait_ms = opt_field_uint(L, idx, "provider_wait_ms", 60000, fn);
}

/* tsm_entry([opts]) -> path | nil, msg, code */
static int l_tsm_entry(lua_State *L)
{
	struct tdx_tsm_opts o;
	struct tdx_error err = { 0 };
	char out[4096];

	tsm_options(L, 1, &o, "tsm_entry");
	if (tdx_tsm_entry(&o, out, sizeof(out), &err))
		return tdx_lua_fail(L, &err);
	lua_pushstring(L, out);
	return 1;
}

/* tsm_get_quote(opts, report_data [, cb]) -> quote | nil, msg, code */
static int l_tsm_get_quote(lua_State *L)
{
	struct tdx_tsm_opts o;

	tsm_options(L, 1, &o, "tsm_get_quote");
	const uint8_t *rd =
		tdx_lua_check_bytes(L, 2, TDX_REPORT_DATA_LEN, "tsm_get_quote", "report_data");
	struct job *j = job_new(L, OP_TSM_QUOTE);
	memcpy(j->in, rd, TDX_REPORT_DATA_LEN);
	j->tsm = o;
	j->root = dup_or_die(L, j, o.root);
	j->path = dup_or_die(L, j, o.entry);
	j->entry_name = dup_or_die(L, j, o.entry_name);
	j->tsm.root = j->root;
	j->tsm.entry = j->path;
	j->tsm.entry_name = j->entry_name;
	return dispatch(L, j, 3, "tsm_get_quote");
}

static struct job *guest_job(lua_State *L, enum op op, const char *fn)
{
	const char *path = luaL_optstring(L, 1, TDX_GUEST_DEVICE);
	struct job *j = job_new(L, op);

	j->path = dup_or_die(L, j, path);
	return j;
}

/* guest_get_report(device, report_data [, cb]) -> tdreport (1024 bytes) | nil, msg, code */
static int l_guest_get_report(lua_State *L)
{
	const uint8_t *rd =
		tdx_lua_check_bytes(L, 2, TDX_REPORT_DATA_LEN, "guest_get_report", "report_data");
	struct job *j = guest_job(L, OP_GUEST_REPORT, "guest_get_report");

	memcpy(j->in, rd, TDX_REPORT_DATA_LEN);
	return dispatch(L, j, 3, "guest_get_report");
}

static unsigned check_index(lua_State *L, int idx, const char *fn)
{
	lua_Integer i = luaL_checkinteger(L, idx);

	if (i < 0 || i >= TDX_RTMR_COUNT)
		luaL_error(L, "tdx.%s: RTMR index must be 0..3", fn);
	return (unsigned)i;
}

/* guest_extend_rtmr(device, index, digest [, cb]) -> true | nil, msg, code */
static int l_guest_extend_rtmr(lua_State *L)
{
	unsigned index = check_index(L, 2, "guest_extend_rtmr");
	const uint8_t *d = tdx_lua_check_bytes(L, 3, TDX_MR_LEN, "guest_extend_rtmr", "digest");
	struct job *j = guest_job(L, OP_GUEST_EXTEND, "guest_extend_rtmr");

	j->index = index;
	memcpy(j->in, d, TDX_MR_LEN);
	return dispatch(L, j, 4, "guest_extend_rtmr");
}

/* guest_get_quote(device, tdreport [, cb]) -> quote | nil, msg, code */
static int l_guest_get_quote(lua_State *L)
{
	const uint8_t *r =
		tdx_lua_check_bytes(L, 2, TDX_TDREPORT_LEN, "guest_get_quote", "tdreport");
	struct job *j = guest_job(L, OP_GUEST_QUOTE, "guest_get_quote");

	memcpy(j->in, r, TDX_TDREPORT_LEN);
	return dispatch(L, j, 3, "guest_get_quote");
}

/* qgs_get_quote({ cid =, port = } | { path = }, tdreport [, cb]) -> quote | nil, msg, code */
static int l_qgs_get_quote(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const uint8_t *r = tdx_lua_check_bytes(L, 2, TDX_TDREPORT_LEN, "qgs_get_quote", "tdreport");
	const char *path = opt_field_string(L, 1, "path", "qgs_get_quote");
	unsigned cid = opt_field_uint(L, 1, "cid", 0xFFFFFFFFu, "qgs_get_quote");
	unsigned port = opt_field_uint(L, 1, "port", 0xFFFFFFFFu, "qgs_get_quote");
	unsigned timeout = opt_field_uint(L, 1, "timeout_ms", 600000, "qgs_get_quote");
	if (!path && !port)
		return luaL_error(L, "tdx.qgs_get_quote: option 'port' (or 'path') is required");
	struct job *j = job_new(L, OP_QGS_QUOTE);
	memcpy(j->in, r, TDX_TDREPORT_LEN);
	j->path = dup_or_die(L, j, path);
	j->cid = cid ? cid : TDX_QGS_HOST_CID;
	j->port = port;
	j->timeout_ms = (int)timeout;
	return dispatch(L, j, 3, "qgs_get_quote");
}

/* qgs_encode_request(tdreport) -> the framed GET_QUOTE_REQ (length prefix included) */
static int l_qgs_encode_request(lua_State *L)
{
	uint8_t out[4 + TDX_QGS_REQUEST_LEN];

	tdx_qgs_encode_request(
		tdx_lua_check_bytes(L, 1, TDX_TDREPORT_LEN, "qgs_encode_request", "tdreport"), out);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

/* sysfs_extend_rtmr(dir, index, digest) -> true | nil, msg, code */
static int l_sysfs_extend_rtmr(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	unsigned index = check_index(L, 2, "sysfs_extend_rtmr");
	const uint8_t *d = tdx_lua_check_bytes(L, 3, TDX_MR_LEN, "sysfs_extend_rtmr", "digest");
	struct tdx_error err = { 0 };

	if (tdx_sysfs_extend_rtmr(dir, index, d, &err))
		return tdx_lua_fail(L, &err);
	lua_pushboolean(L, 1);
	return 1;
}

/* sysfs_read_mr(dir, name) -> 48 bytes | nil, msg, code */
static int l_sysfs_read_mr(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	const char *name = luaL_checkstring(L, 2);
	struct tdx_error err = { 0 };
	uint8_t mr[TDX_MR_LEN];

	if (tdx_sysfs_read_mr(dir, name, mr, &err))
		return tdx_lua_fail(L, &err);
	lua_pushlstring(L, (const char *)mr, sizeof(mr));
	return 1;
}

/* ---- Lock: an exclusive flock() on a file, held until unlock()/close()/GC ---- */

struct l_lock {
	int fd;
};

/* flock(path [, wait]) -> lock | nil, msg, code. Creates the file (0600). wait defaults to
 * true (block until the lock is free); with false, a held lock fails with EBUSY. */
static int l_flock(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	bool wait = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
	struct l_lock *lk = lua_newuserdata(L, sizeof(*lk));
	int rc;

	lk->fd = -1;
	luaL_getmetatable(L, LOCK_CLASS);
	lua_setmetatable(L, -2);
	lk->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lk->fd < 0)
		return rt_push_fail(L, tdx_errno_code(-errno), "open %s: %s", path,
				    strerror(errno));
	while ((rc = flock(lk->fd, LOCK_EX | (wait ? 0 : LOCK_NB))) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		int e = errno;
		close(lk->fd);
		lk->fd = -1;
		if (e == EWOULDBLOCK)
			return rt_push_fail(L, "EBUSY", "%s is locked by someone else", path);
		return rt_push_fail(L, "EIO", "flock %s: %s", path, strerror(e));
	}
	return 1;
}

static int l_lock_close(lua_State *L)
{
	struct l_lock *lk = luaL_checkudata(L, 1, LOCK_CLASS);

	if (lk->fd >= 0) {
		close(lk->fd); /* releases the lock */
		lk->fd = -1;
	}
	return 0;
}

static int l_lock_tostring(lua_State *L)
{
	struct l_lock *lk = luaL_checkudata(L, 1, LOCK_CLASS);

	lua_pushfstring(L, "tdx.Lock (%s)", lk->fd >= 0 ? "held" : "released");
	return 1;
}

static int l_lock_held(lua_State *L)
{
	struct l_lock *lk = luaL_checkudata(L, 1, LOCK_CLASS);

	lua_pushboolean(L, lk->fd >= 0);
	return 1;
}

static const luaL_Reg lock_methods[] = {
	{ "unlock", l_lock_close },
	{ "close", l_lock_close },
	{ "held", l_lock_held },
	{ NULL, NULL },
};

static const luaL_Reg lock_meta[] = {
	{ "__gc", l_lock_close },
	{ "__tostring", l_lock_tostring },
	{ NULL, NULL },
};

static const luaL_Reg funcs[] = {
	{ "tsm_entry", l_tsm_entry },
	{ "tsm_get_quote", l_tsm_get_quote },
	{ "guest_get_report", l_guest_get_report },
	{ "guest_extend_rtmr", l_guest_extend_rtmr },
	{ "guest_get_quote", l_guest_get_quote },
	{ "qgs_get_quote", l_qgs_get_quote },
	{ "qgs_encode_request", l_qgs_encode_request },
	{ "sysfs_extend_rtmr", l_sysfs_extend_rtmr },
	{ "sysfs_read_mr", l_sysfs_read_mr },
	{ "flock", l_flock },
	{ NULL, NULL },
};

void tdx_lua_guest_register(lua_State *L)
{
	rt_newclass(L, LOCK_CLASS, lock_methods, lock_meta);
	luaL_register(L, NULL, funcs);
}
