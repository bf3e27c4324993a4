/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.policyvm`: policy VMs (rt_policyvm.h) as userdata objects, and
 * sha256() for policy hashes.
 *
 *   local pvm = require('moonstack.native.policyvm')
 *   local vm = pvm.new({ memory_limit = 16 * 2^20, instruction_limit = 1e7, time_limit_ms = 50 })
 *   local info, err, code = vm:load(source, '@policy.lua') -- { fields = {...}, hooks = {...} }
 *   local decision, err, code = vm:call('on_auth', { appId = '...' })
 *   vm:logs()   -- lines the policy printed since the last call, and how many were dropped
 *   vm:close()  -- idempotent; __gc does it too
 *   pvm.open_count() -- VMs open in the process (leak checks)
 *
 * and the frames of the policy worker protocol (rt_policyvm_worker.c), for moonstack.policy.pool:
 *   pvm.request_load(source, chunkname)       -> frame bytes (length prefix included)
 *   pvm.request_call(hook, input [, limits])  -> frame bytes | nil, msg, 'EINVAL'
 *   pvm.decode_reply(payload [, limits])      -> reply table | nil, msg, 'EPROTO'
 *   pvm.frame_max([limits])                   -> largest payload either side accepts
 * (limits: the options of new(); the input is encoded within them).
 *
 * Failures return nil, "CODE: message", CODE with CODE one of EPOLICY, ETIMEDOUT, ENOMEM,
 * EINVAL, ENOENT. Misuse (wrong types, bad options, a closed VM, loading twice) raises.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "moonstack/rt.h"
#include "rt_natives.h"
#include "rt_policyvm.h"

#define VM_CLASS "moonstack.policyvm.VM"
/* Printed lines kept between two logs() calls; later ones are counted as dropped. */
#define LOG_LINES 64

/* VMs open in the process (for leak checks in tests). */
static _Atomic long live_vms;

struct l_vm {
	struct rt_pvm *vm;
	int nlines;
	unsigned dropped;
	char *lines[LOG_LINES];
};

static void clear_lines(struct l_vm *v)
{
	for (int i = 0; i < v->nlines; i++)
		free(v->lines[i]);
	v->nlines = 0;
	v->dropped = 0;
}

static void on_print(void *ud, const char *line, size_t len)
{
	struct l_vm *v = ud;
	char *copy = v->nlines < LOG_LINES ? malloc(len + 1) : NULL;
	if (!copy) {
		v->dropped++;
		return;
	}
	memcpy(copy, line, len);
	copy[len] = '\0';
	v->lines[v->nlines++] = copy;
}

static struct l_vm *check_vm(lua_State *L, const char *fn)
{
	struct l_vm *v = luaL_checkudata(L, 1, VM_CLASS);
	if (!v->vm)
		luaL_error(L, "vm:%s: the policy VM is closed", fn);
	return v;
}

static int fail(lua_State *L, struct rt_pvm *vm, int status)
{
	return rt_push_fail(L, rt_pvm_status_code(status), "%s", rt_pvm_error(vm));
}

struct opt_spec {
	const char *name;
	double min, max;
};

static const struct opt_spec opt_specs[] = {
	{ "memory_limit", RT_PVM_MIN_MEMORY, 16.0 * 1024 * 1024 * 1024 },
	{ "instruction_limit", 1, 1e15 },
	{ "time_limit_ms", 1, 3600000 },
	{ "max_depth", 1, RT_PVM_MAX_DEPTH },
	{ "max_items", 1, 1e9 },
	{ "max_string", 1, 1024.0 * 1024 * 1024 },
	{ "max_bytes", 1, 1024.0 * 1024 * 1024 },
	{ NULL, 0, 0 },
};

/* Read option @p spec from the table at @p idx, or 0 when absent; raises when invalid. */
static double get_opt(lua_State *L, int idx, const struct opt_spec *spec, const char *fn)
{
	lua_getfield(L, idx, spec->name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	double v = lua_tonumber(L, -1);
	if (lua_type(L, -1) != LUA_TNUMBER || v != floor(v) || v < spec->min || v > spec->max)
		luaL_error(L, "%s: option '%s' must be an integer in [%.0f, %.0f]", fn, spec->name,
			   spec->min, spec->max);
	lua_pop(L, 1);
	return v;
}

/* Read the limits table at @p idx (none or nil: all defaults) into @p limits; raises on an
 * unknown or invalid option. */
static void read_limits(lua_State *L, int idx, struct rt_pvm_limits *limits, const char *fn)
{
	memset(limits, 0, sizeof(*limits));
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		bool known = false;
		for (const struct opt_spec *s = opt_specs; s->name && !known; s++)
			known = lua_type(L, -2) == LUA_TSTRING &&
				strcmp(lua_tostring(L, -2), s->name) == 0;
		if (!known)
			luaL_error(L, "%s: unknown option '%s'", fn,
				   lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
								  : luaL_typename(L, -2));
		lua_pop(L, 1);
	}
	limits->memory_limit = (size_t)get_opt(L, idx, &opt_specs[0], fn);
	limits->instruction_limit = (uint64_t)get_opt(L, idx, &opt_specs[1], fn);
	limits->time_limit_ms = (uint64_t)get_opt(L, idx, &opt_specs[2], fn);
	limits->max_depth = (int)get_opt(L, idx, &opt_specs[3], fn);
	limits->max_items = (size_t)get_opt(L, idx, &opt_specs[4], fn);
	limits->max_string = (size_t)get_opt(L, idx, &opt_specs[5], fn);
	limits->max_bytes = (size_t)get_opt(L, idx, &opt_specs[6], fn);
}

/* new([opts]) -> vm | nil, "ENOMEM: ...", "ENOMEM" */
static int l_new(lua_State *L)
{
	struct rt_pvm_limits limits;

	read_limits(L, 1, &limits, "policyvm.new");
	// The userdata exists before the VM does, so nothing leaks if anything raises.
	struct l_vm *v = lua_newuserdata(L, sizeof(*v));
	memset(v, 0, sizeof(*v));
	luaL_getmetatable(L, VM_CLASS);
	lua_setmetatable(L, -2);
	v->vm = rt_pvm_create(&limits);
	if (!v->vm)
		return rt_push_fail(L, "ENOMEM", "cannot create a policy VM");
	live_vms++;
	rt_pvm_set_print(v->vm, on_print, v);
	return 1;
}

/* vm:load(source [, chunkname]) -> { fields = {...}, hooks = {...} } | nil, msg, code */
static int l_load(lua_State *L)
{
	struct l_vm *v = check_vm(L, "load");
	size_t len;
	const char *src = luaL_checklstring(L, 2, &len);
	const char *name = luaL_optstring(L, 3, "=policy");

	if (rt_pvm_loaded(v->vm))
		return luaL_error(L, "vm:load: a policy is already loaded (use a new VM)");
	int st = rt_pvm_load(v->vm, src, len, name);
	if (st != RT_PVM_OK)
		return fail(L, v->vm, st);
	st = rt_pvm_push_info(v->vm, L);
	if (st != RT_PVM_OK) {
		int n = fail(L, v->vm, st);
		rt_pvm_unload(v->vm);
		return n;
	}
	return 1;
}

/* vm:info() -> the table vm:load() returned | nil, msg, code */
static int l_info(lua_State *L)
{
	struct l_vm *v = check_vm(L, "info");
	int st = rt_pvm_push_info(v->vm, L);
	return st == RT_PVM_OK ? 1 : fail(L, v->vm, st);
}

/* vm:call(hook [, input]) -> result table | nil, msg, code */
static int l_call(lua_State *L)
{
	struct l_vm *v = check_vm(L, "call");
	const char *hook = luaL_checkstring(L, 2);
	int idx = 0;

	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		idx = 3;
	}
	if (!rt_pvm_loaded(v->vm))
		return luaL_error(L, "vm:call: no policy is loaded");
	int st = rt_pvm_call(v->vm, hook, L, idx, L);
	return st == RT_PVM_OK ? 1 : fail(L, v->vm, st);
}

/* vm:logs() -> { line, ... }, dropped: what the policy printed since the last logs() */
static int l_logs(lua_State *L)
{
	struct l_vm *v = check_vm(L, "logs");
	lua_createtable(L, v->nlines, 0);
	for (int i = 0; i < v->nlines; i++) {
		lua_pushstring(L, v->lines[i]);
		lua_rawseti(L, -2, i + 1);
	}
	lua_pushnumber(L, v->dropped);
	clear_lines(v);
	return 2;
}

/* vm:loaded() -> boolean */
static int l_loaded(lua_State *L)
{
	struct l_vm *v = check_vm(L, "loaded");
	lua_pushboolean(L, rt_pvm_loaded(v->vm));
	return 1;
}

/* vm:memory() -> bytes in use, limit, peak */
static int l_memory(lua_State *L)
{
	struct l_vm *v = check_vm(L, "memory");
	struct rt_pvm_limits limits;
	rt_pvm_get_limits(v->vm, &limits);
	lua_pushnumber(L, (lua_Number)rt_pvm_memory(v->vm));
	lua_pushnumber(L, (lua_Number)limits.memory_limit);
	lua_pushnumber(L, (lua_Number)rt_pvm_memory_peak(v->vm));
	return 3;
}

static void push_limits(lua_State *L, const struct rt_pvm_limits *l)
{
	lua_createtable(L, 0, 7);
	lua_pushnumber(L, (lua_Number)l->memory_limit);
	lua_setfield(L, -2, "memory_limit");
	lua_pushnumber(L, (lua_Number)l->instruction_limit);
	lua_setfield(L, -2, "instruction_limit");
	lua_pushnumber(L, (lua_Number)l->time_limit_ms);
	lua_setfield(L, -2, "time_limit_ms");
	lua_pushinteger(L, l->max_depth);
	lua_setfield(L, -2, "max_depth");
	lua_pushnumber(L, (lua_Number)l->max_items);
	lua_setfield(L, -2, "max_items");
	lua_pushnumber(L, (lua_Number)l->max_string);
	lua_setfield(L, -2, "max_string");
	lua_pushnumber(L, (lua_Number)l->max_bytes);
	lua_setfield(L, -2, "max_bytes");
}

/* vm:limits() -> { memory_limit, instruction_limit, time_limit_ms, max_depth, ... } */
static int l_limits(lua_State *L)
{
	struct l_vm *v = check_vm(L, "limits");
	struct rt_pvm_limits limits;
	rt_pvm_get_limits(v->vm, &limits);
	push_limits(L, &limits);
	lua_pushnumber(L, (lua_Number)rt_pvm_last_instructions(v->vm));
	lua_setfield(L, -2, "last_instructions");
	return 1;
}

/* vm:close(): free the VM; idempotent. */
static int l_close(lua_State *L)
{
	struct l_vm *v = luaL_checkudata(L, 1, VM_CLASS);
	if (v->vm) {
		rt_pvm_destroy(v->vm);
		v->vm = NULL;
		live_vms--;
	}
	clear_lines(v);
	return 0;
}

static int l_tostring(lua_State *L)
{
	struct l_vm *v = luaL_checkudata(L, 1, VM_CLASS);
	if (!v->vm)
		lua_pushfstring(L, "%s (closed): %p", VM_CLASS, (void *)v);
	else
		lua_pushfstring(L, "%s (%s, %d KiB): %p", VM_CLASS,
				rt_pvm_loaded(v->vm) ? "loaded" : "empty",
				(int)(rt_pvm_memory(v->vm) / 1024), (void *)v);
	return 1;
}

/* Turn @p b (which starts with a u32 placeholder) into a frame and push it; frees @p b. */
static int push_frame(lua_State *L, struct rt_pvm_buf *b)
{
	if (b->oom) {
		rt_pvm_buf_free(b);
		return luaL_error(L, "policyvm: out of memory");
	}
	rt_pvm_put_le32(b->data, (uint32_t)(b->len - 4));
	lua_pushlstring(L, b->data, b->len);
	rt_pvm_buf_free(b);
	return 1;
}

/* request_load(source, chunkname) -> frame */
static int l_request_load(lua_State *L)
{
	size_t srclen, namelen;
	const char *src = luaL_checklstring(L, 1, &srclen);
	const char *name = luaL_checklstring(L, 2, &namelen);
	struct rt_pvm_buf b = { 0 };
	uint32_t len = 0;
	uint16_t n16 = (uint16_t)namelen;

	if (srclen > RT_PVM_MAX_SOURCE)
		return luaL_argerror(L, 1, "policyvm.request_load: source larger than 1 MiB");
	if (namelen > 255)
		return luaL_argerror(L, 2, "policyvm.request_load: chunk name longer than 255");
	rt_pvm_buf_put(&b, &len, sizeof(len));
	rt_pvm_wire_byte(&b, RT_PVM_OP_LOAD);
	rt_pvm_buf_put(&b, &n16, sizeof(n16));
	rt_pvm_buf_put(&b, name, namelen);
	rt_pvm_buf_put(&b, src, srclen);
	return push_frame(L, &b);
}

/* request_call(hook, input [, limits]) -> frame | nil, msg, 'EINVAL' */
static int l_request_call(lua_State *L)
{
	size_t hooklen;
	const char *hook = luaL_checklstring(L, 1, &hooklen);
	struct rt_pvm_limits limits;
	struct rt_pvm_wire_limits lim;
	struct rt_pvm_buf b = { 0 };
	uint32_t len = 0;
	unsigned char h8 = (unsigned char)hooklen;
	char err[400];

	if (hooklen == 0 || hooklen > 255)
		return luaL_argerror(L, 1, "policyvm.request_call: hook name of 1 to 255 bytes");
	luaL_checktype(L, 2, LUA_TTABLE);
	read_limits(L, 3, &limits, "policyvm.request_call");
	rt_pvm_limits_defaults(&limits);
	rt_pvm_wire_limits_of(&limits, &lim);
	rt_pvm_buf_put(&b, &len, sizeof(len));
	rt_pvm_wire_byte(&b, RT_PVM_OP_CALL);
	rt_pvm_buf_put(&b, &h8, 1);
	rt_pvm_buf_put(&b, hook, hooklen);
	if (rt_pvm_encode(L, 2, &lim, "input", &b, err, sizeof(err)) != 0) {
		rt_pvm_buf_free(&b);
		return rt_push_fail(L, "EINVAL", "%s", err);
	}
	return push_frame(L, &b);
}

/* The limits of a worker's reply: { ok, code, error, info = { fields, hooks } or result,
 * output = { lines } } around values within @p limits. */
static void reply_limits(const struct rt_pvm_limits *limits, struct rt_pvm_wire_limits *lim)
{
	rt_pvm_wire_limits_of(limits, lim);
	lim->max_depth += 2;
	lim->max_items += 2 + 64;
	if (lim->max_string < 4096)
		lim->max_string = 4096;
	lim->max_bytes = rt_pvm_frame_max(limits);
}

/* decode_reply(payload [, limits]) -> table | nil, msg, 'EPROTO' */
static int l_decode_reply(lua_State *L)
{
	size_t len;
	const char *data = luaL_checklstring(L, 1, &len);
	struct rt_pvm_limits limits;
	struct rt_pvm_wire_limits lim;
	char err[256];

	read_limits(L, 2, &limits, "policyvm.decode_reply");
	rt_pvm_limits_defaults(&limits);
	reply_limits(&limits, &lim);
	if (rt_pvm_decode(L, data, len, &lim, err, sizeof(err)) != 0)
		return rt_push_fail(L, "EPROTO", "%s", err);
	if (!lua_istable(L, -1))
		return rt_push_fail(L, "EPROTO", "malformed policy data: the reply is not a table");
	return 1;
}

/* frame_max([limits]) -> bytes */
static int l_frame_max(lua_State *L)
{
	struct rt_pvm_limits limits;

	read_limits(L, 1, &limits, "policyvm.frame_max");
	rt_pvm_limits_defaults(&limits);
	lua_pushnumber(L, (lua_Number)rt_pvm_frame_max(&limits));
	return 1;
}

/* sha256(data) -> lowercase hex digest */
static int l_sha256(lua_State *L)
{
	size_t len;
	const char *data = luaL_checklstring(L, 1, &len);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
		return luaL_error(L, "policyvm.sha256: digest failed");
	for (unsigned int i = 0; i < mdlen; i++) {
		hex[2 * i] = "0123456789abcdef"[md[i] >> 4];
		hex[2 * i + 1] = "0123456789abcdef"[md[i] & 15];
	}
	lua_pushlstring(L, hex, 2 * mdlen);
	return 1;
}

/* open_count() -> number of policy VMs open in the process */
static int l_open_count(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)live_vms);
	return 1;
}

static const luaL_Reg vm_methods[] = {
	{ "load", l_load },	{ "info", l_info },	{ "call", l_call },
	{ "logs", l_logs },	{ "loaded", l_loaded }, { "memory", l_memory },
	{ "limits", l_limits }, { "close", l_close },	{ NULL, NULL },
};

static const luaL_Reg vm_meta[] = {
	{ "__gc", l_close },
	{ "__tostring", l_tostring },
	{ NULL, NULL },
};

static const luaL_Reg functions[] = {
	{ "new", l_new },
	{ "sha256", l_sha256 },
	{ "open_count", l_open_count },
	{ "request_load", l_request_load },
	{ "request_call", l_request_call },
	{ "decode_reply", l_decode_reply },
	{ "frame_max", l_frame_max },
	{ NULL, NULL },
};

int luaopen_moonstack_native_policyvm(lua_State *L)
{
	const struct rt_pvm_limits defaults = {
		.memory_limit = RT_PVM_DEFAULT_MEMORY,
		.instruction_limit = RT_PVM_DEFAULT_INSTRUCTIONS,
		.time_limit_ms = RT_PVM_DEFAULT_TIME_MS,
		.max_depth = RT_PVM_DEFAULT_DEPTH,
		.max_items = RT_PVM_DEFAULT_ITEMS,
		.max_string = RT_PVM_DEFAULT_STRING,
		.max_bytes = RT_PVM_DEFAULT_BYTES,
	};

	rt_newclass(L, VM_CLASS, vm_methods, vm_meta);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	push_limits(L, &defaults);
	lua_setfield(L, -2, "defaults");
	return 1;
}
