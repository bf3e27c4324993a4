/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy VM (see rt_policyvm.h): the capped allocator, the count hook for the instruction
 * budget and the deadline, and load / info / call. The sandboxed library is in
 * rt_policyvm_sandbox.c, the wire format values cross in rt_policyvm_wire.c, the worker
 * process in rt_policyvm_worker.c.
 *
 * Every operation that may allocate in the policy state runs inside lua_cpcall(), so running
 * out of memory there is an ordinary error, never a panic. The other state is only read
 * while inside the policy state's protected call (reads never raise), and only written from
 * the caller's own context.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/random.h>

#include <luajit.h>

#include "moonstack/rt.h"
#include "rt_policyvm_internal.h"

/* While no policy code runs (setup, collection) the state may exceed its cap by this much:
 * the collector itself needs a little memory to free memory. */
#define PVM_HEADROOM (64u << 10)
/* The count hook runs every this many VM instructions. */
#define PVM_HOOK_STEP 1000u
/* Stack slots a copy may need per nesting level (table, key, value), plus slack. */
#define PVM_STACK_NEED(depth) (3 * (depth) + 16)

/* Registry keys (their addresses): the loaded policy and the last result. */
static char key_policy, key_result;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int set_fail(struct rt_pvm *vm, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int set_fail(struct rt_pvm *vm, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vm->err, sizeof(vm->err), fmt, ap);
	va_end(ap);
	return status;
}

/* ---- allocator, hook, runs ---- */

static void *pvm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct rt_pvm *vm = ud;
	if (!ptr)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		vm->used -= osize;
		return NULL;
	}
	size_t cap = vm->limits.memory_limit + (vm->running ? 0 : PVM_HEADROOM);
	void *p = NULL;
	if (nsize <= osize || vm->used - osize + nsize <= cap)
		p = realloc(ptr, nsize);
	if (!p) {
		if (vm->running && !vm->tripped) {
			vm->tripped = RT_PVM_ENOMEM;
			snprintf(vm->trip_msg, sizeof(vm->trip_msg),
				 "memory limit of %zu bytes reached", vm->limits.memory_limit);
		}
		return NULL;
	}
	vm->used = vm->used - osize + nsize;
	if (vm->used > vm->peak)
		vm->peak = vm->used;
	return p;
}

static int pvm_panic(lua_State *P)
{
	// Unreachable by design: every operation on the policy state is protected.
	rt_log(RT_LOG_ERROR, "policy", "policy VM panic: %s",
	       lua_type(P, -1) == LUA_TSTRING ? lua_tostring(P, -1) : "?");
	abort();
}

static void pvm_trip(lua_State *P, lua_Debug *ar, struct rt_pvm *vm, const char *what)
{
	vm->tripped = RT_PVM_ETIMEDOUT;
	if (lua_getinfo(P, "Sl", ar) && ar->currentline > 0)
		snprintf(vm->trip_msg, sizeof(vm->trip_msg), "%s (at %s:%d)", what, ar->short_src,
			 ar->currentline);
	else
		snprintf(vm->trip_msg, sizeof(vm->trip_msg), "%s", what);
}

static void pvm_hook(lua_State *P, lua_Debug *ar)
{
	struct rt_pvm *vm = rt_pvm_of(P);
	char what[96];

	if (!vm->tripped) {
		vm->steps += vm->hook_step;
		if (vm->steps > vm->limits.instruction_limit) {
			snprintf(what, sizeof(what), "instruction budget of %llu exceeded",
				 (unsigned long long)vm->limits.instruction_limit);
			pvm_trip(P, ar, vm, what);
		} else if (now_ns() >= vm->deadline_ns) {
			snprintf(what, sizeof(what), "deadline of %llu ms exceeded",
				 (unsigned long long)vm->limits.time_limit_ms);
			pvm_trip(P, ar, vm, what);
		}
	}
	// Once tripped, every hook raises again: the run cannot go on, even under pcall.
	if (vm->tripped) {
		lua_pushstring(P, vm->trip_msg);
		lua_error(P);
	}
}

static void pvm_arm(struct rt_pvm *vm)
{
	lua_settop(vm->P, 0);
	vm->tripped = 0;
	vm->steps = 0;
	vm->prints = 0;
	vm->suppressed = 0;
	vm->trip_msg[0] = '\0';
	vm->deadline_ns = now_ns() + vm->limits.time_limit_ms * 1000000u;
	vm->running = true;
	lua_sethook(vm->P, pvm_hook, LUA_MASKCOUNT, (int)vm->hook_step);
}

void rt_pvm_emit(struct rt_pvm *vm, const char *line, size_t len)
{
	if (vm->print_fn)
		vm->print_fn(vm->print_ud, line, len);
	else
		rt_log(RT_LOG_INFO, "policy", "%.*s", (int)len, line);
}

static void pvm_disarm(struct rt_pvm *vm)
{
	lua_sethook(vm->P, NULL, 0, 0);
	vm->running = false;
	if (vm->suppressed) {
		char line[64];
		int n = snprintf(line, sizeof(line), "(%u more lines suppressed)", vm->suppressed);
		rt_pvm_emit(vm, line, (size_t)n);
	}
}

static int op_collect(lua_State *P)
{
	lua_gc(P, LUA_GCCOLLECT, 0);
	return 0;
}

/* A protected run failed with @p st: classify it, record the message, clean up. */
static int pvm_failed(struct rt_pvm *vm, int st, int hint)
{
	lua_State *P = vm->P;
	int code = vm->tripped ? vm->tripped : st == LUA_ERRMEM ? RT_PVM_ENOMEM : hint;

	if (vm->tripped) {
		set_fail(vm, code, "%s", vm->trip_msg);
	} else if (code == RT_PVM_ENOMEM) {
		set_fail(vm, code, "memory limit of %zu bytes reached", vm->limits.memory_limit);
	} else if (lua_type(P, -1) == LUA_TSTRING) {
		set_fail(vm, code, "%s", lua_tostring(P, -1));
	} else if (lua_type(P, -1) == LUA_TNUMBER) {
		set_fail(vm, code, "%.14g", lua_tonumber(P, -1));
	} else {
		set_fail(vm, code, "(error object is a %s value)", luaL_typename(P, -1));
	}
	lua_settop(P, 0);
	if (code == RT_PVM_ENOMEM || code == RT_PVM_ETIMEDOUT)
		lua_cpcall(P, op_collect, NULL);
	lua_settop(P, 0);
	return code;
}

void rt_pvm_limits_defaults(struct rt_pvm_limits *l)
{
	if (!l->memory_limit)
		l->memory_limit = RT_PVM_DEFAULT_MEMORY;
	if (l->memory_limit < RT_PVM_MIN_MEMORY)
		l->memory_limit = RT_PVM_MIN_MEMORY;
	if (!l->instruction_limit)
		l->instruction_limit = RT_PVM_DEFAULT_INSTRUCTIONS;
	if (!l->time_limit_ms)
		l->time_limit_ms = RT_PVM_DEFAULT_TIME_MS;
	if (l->max_depth <= 0)
		l->max_depth = RT_PVM_DEFAULT_DEPTH;
	if (l->max_depth > RT_PVM_MAX_DEPTH)
		l->max_depth = RT_PVM_MAX_DEPTH;
	if (!l->max_items)
		l->max_items = RT_PVM_DEFAULT_ITEMS;
	if (!l->max_string)
		l->max_string = RT_PVM_DEFAULT_STRING;
	if (!l->max_bytes)
		l->max_bytes = RT_PVM_DEFAULT_BYTES;
}

struct rt_pvm *rt_pvm_create(const struct rt_pvm_limits *limits)
{
	struct rt_pvm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	if (limits)
		vm->limits = *limits;
	rt_pvm_limits_defaults(&vm->limits);
	struct rt_pvm_limits *l = &vm->limits;
	vm->hook_step = l->instruction_limit < PVM_HOOK_STEP ? l->instruction_limit : PVM_HOOK_STEP;
	if (getrandom(&vm->id_key, sizeof(vm->id_key), GRND_NONBLOCK) != sizeof(vm->id_key))
		vm->id_key = now_ns() ^ (uint64_t)(uintptr_t)vm;

	vm->P = lua_newstate(pvm_alloc, vm);
	if (!vm->P) {
		free(vm);
		return NULL;
	}
	lua_atpanic(vm->P, pvm_panic);
	if (lua_cpcall(vm->P, rt_pvm_open_sandbox, vm) != 0) {
		lua_close(vm->P);
		free(vm);
		return NULL;
	}
	return vm;
}

void rt_pvm_destroy(struct rt_pvm *vm)
{
	if (!vm)
		return;
	lua_close(vm->P);
	free(vm);
}

void rt_pvm_get_limits(const struct rt_pvm *vm, struct rt_pvm_limits *out)
{
	*out = vm->limits;
}

void rt_pvm_set_print(struct rt_pvm *vm, rt_pvm_print_fn fn, void *ud)
{
	vm->print_fn = fn;
	vm->print_ud = ud;
}
/* ---- load, info, call ---- */

/* A run that returns after its deadline (a long C call between two hooks) fails all the same. */
static int pvm_overran(struct rt_pvm *vm)
{
	uint64_t now = now_ns();
	if (now <= vm->deadline_ns)
		return RT_PVM_OK;
	return set_fail(vm, RT_PVM_ETIMEDOUT,
			"deadline of %llu ms exceeded (the run took %llu ms, in a library call)",
			(unsigned long long)vm->limits.time_limit_ms,
			(unsigned long long)((now - vm->deadline_ns) / 1000000u +
					     vm->limits.time_limit_ms));
}

static void clear_reg(lua_State *P, void *key)
{
	// Overwriting an existing registry slot does not allocate.
	lua_settop(P, 0);
	lua_pushlightuserdata(P, key);
	lua_pushnil(P);
	lua_rawset(P, LUA_REGISTRYINDEX);
	lua_settop(P, 0);
}

struct load_args {
	struct rt_pvm *vm;
	const char *src;
	size_t len;
	const char *name;
	int hint;
};

static int op_load(lua_State *P)
{
	struct load_args *a = lua_touserdata(P, 1);
	lua_settop(P, 0);
	int st = luaL_loadbufferx(P, a->src, a->len, a->name, "t");
	if (st != 0) {
		a->hint = st == LUA_ERRMEM ? RT_PVM_ENOMEM : RT_PVM_EPOLICY;
		return lua_error(P);
	}
	luaJIT_setmode(P, -1, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF);
	// The run's clock starts now: compiling (at most a source's size) is not policy code.
	a->vm->deadline_ns = now_ns() + a->vm->limits.time_limit_ms * 1000000u;
	rt_pvm_push_reg(P, &rt_pvm_key_env);
	lua_setfenv(P, -2);
	lua_call(P, 0, 1);
	if (!lua_istable(P, -1))
		return luaL_error(P, "the policy chunk must return a table, not %s",
				  luaL_typename(P, -1));
	lua_pushlightuserdata(P, &key_policy);
	lua_insert(P, -2);
	lua_rawset(P, LUA_REGISTRYINDEX);
	return 0;
}

int rt_pvm_load(struct rt_pvm *vm, const char *src, size_t len, const char *chunkname)
{
	struct load_args a = { vm, src, len, chunkname ? chunkname : "=policy", RT_PVM_EPOLICY };

	vm->err[0] = '\0';
	if (vm->loaded)
		return set_fail(vm, RT_PVM_EINVAL, "a policy is already loaded in this VM");
	if (len > 0 && src[0] == LUA_SIGNATURE[0])
		return set_fail(vm, RT_PVM_EINVAL,
				"bytecode is not allowed: policies load as source text only");
	pvm_arm(vm);
	int st = lua_cpcall(vm->P, op_load, &a);
	pvm_disarm(vm);
	if (st != 0)
		return pvm_failed(vm, st, a.hint);
	vm->loaded = true;
	lua_settop(vm->P, 0);
	int rc = pvm_overran(vm);
	if (rc != RT_PVM_OK)
		rt_pvm_unload(vm);
	return rc;
}

bool rt_pvm_loaded(const struct rt_pvm *vm)
{
	return vm->loaded;
}

void rt_pvm_unload(struct rt_pvm *vm)
{
	clear_reg(vm->P, &key_policy);
	vm->loaded = false;
	lua_cpcall(vm->P, op_collect, NULL);
	lua_settop(vm->P, 0);
}

static int op_reserve(lua_State *P)
{
	struct rt_pvm *vm = lua_touserdata(P, 1);
	luaL_checkstack(P, PVM_STACK_NEED(vm->limits.max_depth), "policy copy");
	return 0;
}

/* Encode the entries of the policy table (at 1 of e->L): the non-function ones when
 * @p hooks is false, the names of the function-valued ones (as name = true) otherwise. */
static int info_entries(struct rt_pvm_enc *e, bool hooks)
{
	lua_State *P = e->L;

	rt_pvm_wire_byte(e->out, RT_PVM_WIRE_OPEN);
	lua_pushnil(P);
	while (lua_next(P, 1)) { // P: [policy, key, value]
		if (lua_type(P, -1) != LUA_TFUNCTION) {
			if (!hooks && rt_pvm_enc_pair(e, 1) != 0)
				return -1;
		} else if (lua_type(P, -2) != LUA_TSTRING) {
			rt_pvm_path_push(e, 2);
			return rt_pvm_enc_fail(e, "a function at a non-string key");
		} else if (hooks) {
			size_t len;
			const char *name = lua_tolstring(P, -2, &len);
			if (++e->items > e->lim->max_items)
				return rt_pvm_enc_fail(e, "more than %zu table entries",
						       e->lim->max_items);
			if (len > 255)
				return rt_pvm_enc_fail(e, "a hook name longer than 255 bytes");
			rt_pvm_wire_string(e->out, name, len);
			rt_pvm_wire_byte(e->out, RT_PVM_WIRE_TRUE);
		}
		lua_pop(P, 1);
	}
	rt_pvm_wire_byte(e->out, RT_PVM_WIRE_CLOSE);
	return 0;
}

int rt_pvm_info_wire(struct rt_pvm *vm, struct rt_pvm_buf *out)
{
	lua_State *P = vm->P;
	struct rt_pvm_wire_limits lim;
	struct rt_pvm_enc e;
	size_t before = out->len;

	vm->err[0] = '\0';
	if (!vm->loaded)
		return set_fail(vm, RT_PVM_ENOENT, "no policy is loaded");
	lua_settop(P, 0);
	if (lua_cpcall(P, op_reserve, vm) != 0) {
		lua_settop(P, 0);
		return set_fail(vm, RT_PVM_ENOMEM, "out of memory");
	}
	rt_pvm_wire_limits_of(&vm->limits, &lim);
	rt_pvm_push_reg(P, &key_policy); // P: [policy]
	rt_pvm_enc_init(&e, P, &lim, out, "policy");
	e.ancestors[0] = lua_topointer(P, 1);
	rt_pvm_wire_byte(out, RT_PVM_WIRE_OPEN);
	rt_pvm_wire_string(out, "fields", 6);
	int rc = info_entries(&e, false);
	if (rc == 0) {
		rt_pvm_wire_string(out, "hooks", 5);
		rc = info_entries(&e, true);
	}
	rt_pvm_wire_byte(out, RT_PVM_WIRE_CLOSE);
	lua_settop(P, 0);
	if (rc == 0 && out->oom)
		rc = rt_pvm_enc_fail(&e, "out of memory");
	if (rc != 0) {
		out->len = before;
		return set_fail(vm, RT_PVM_EINVAL, "%s", e.err);
	}
	return RT_PVM_OK;
}

int rt_pvm_push_info(struct rt_pvm *vm, lua_State *to)
{
	struct rt_pvm_buf buf = { 0 };
	struct rt_pvm_wire_limits lim;
	char err[256];

	int st = rt_pvm_info_wire(vm, &buf);
	if (st == RT_PVM_OK) {
		// { fields = { entries }, hooks = { names } }: one more level, two more entries and
		// their names
		rt_pvm_wire_limits_of(&vm->limits, &lim);
		lim.max_depth += 1;
		lim.max_items += 2;
		if (lim.max_string < 255)
			lim.max_string = 255;
		if (rt_pvm_decode(to, buf.data, buf.len, &lim, err, sizeof(err)) != 0)
			st = set_fail(vm, RT_PVM_EINVAL, "%s", err);
	}
	rt_pvm_buf_free(&buf);
	return st;
}

bool rt_pvm_has_hook(struct rt_pvm *vm, const char *hook)
{
	lua_State *P = vm->P;
	bool found = false;

	if (!vm->loaded)
		return false;
	lua_settop(P, 0);
	rt_pvm_push_reg(P, &key_policy);
	lua_pushnil(P);
	// Compare keys in place: pushing the name would allocate outside a protected call.
	while (!found && lua_next(P, 1)) {
		if (lua_type(P, -2) == LUA_TSTRING && lua_type(P, -1) == LUA_TFUNCTION &&
		    strcmp(lua_tostring(P, -2), hook) == 0)
			found = true;
		lua_pop(P, 1);
	}
	lua_settop(P, 0);
	return found;
}

struct call_args {
	struct rt_pvm *vm;
	const char *hook;
	const char *in;
	size_t inlen;
	int hint;
	char err[256];
};

static int op_call(lua_State *P)
{
	struct call_args *a = lua_touserdata(P, 1);
	struct rt_pvm_wire_limits lim;

	lua_settop(P, 0);
	rt_pvm_push_reg(P, &key_policy);
	lua_pushstring(P, a->hook);
	lua_rawget(P, 1);
	if (!lua_isfunction(P, -1)) {
		a->hint = RT_PVM_ENOENT;
		return luaL_error(P, "the policy has no hook '%s'", a->hook);
	}
	if (a->in && a->inlen) {
		rt_pvm_wire_limits_of(&a->vm->limits, &lim);
		int bad = rt_pvm_decode(P, a->in, a->inlen, &lim, a->err, sizeof(a->err));
		if (bad == 0 && !lua_istable(P, -1)) {
			snprintf(a->err, sizeof(a->err), "input: not a table");
			bad = -1;
		}
		if (bad != 0) {
			a->hint = RT_PVM_EINVAL;
			lua_pushstring(P, a->err);
			return lua_error(P);
		}
	} else {
		lua_newtable(P);
	}
	lua_call(P, 1, 1);
	if (!lua_istable(P, -1))
		return luaL_error(P, "hook '%s' returned %s, not a table", a->hook,
				  luaL_typename(P, -1));
	lua_pushlightuserdata(P, &key_result);
	lua_insert(P, -2);
	lua_rawset(P, LUA_REGISTRYINDEX);
	lua_settop(P, 0);
	// Room for reading the result back without growing the stack.
	luaL_checkstack(P, PVM_STACK_NEED(a->vm->limits.max_depth), "policy copy");
	return 0;
}

int rt_pvm_call_wire(struct rt_pvm *vm, const char *hook, const char *in, size_t inlen,
		     struct rt_pvm_buf *out)
{
	lua_State *P = vm->P;
	struct call_args a = { vm, hook, in, inlen, RT_PVM_EPOLICY, "" };
	struct rt_pvm_wire_limits lim;
	char err[400];

	vm->err[0] = '\0';
	if (!vm->loaded)
		return set_fail(vm, RT_PVM_ENOENT, "no policy is loaded");
	pvm_arm(vm);
	int st = lua_cpcall(P, op_call, &a);
	pvm_disarm(vm);
	if (st != 0)
		return pvm_failed(vm, st, a.hint);

	int rc = pvm_overran(vm);
	if (rc == RT_PVM_OK) {
		size_t before = out->len;
		lua_settop(P, 0);
		rt_pvm_push_reg(P, &key_result);
		rt_pvm_wire_limits_of(&vm->limits, &lim);
		if (rt_pvm_encode(P, 1, &lim, "result", out, err, sizeof(err)) != 0) {
			out->len = before;
			rc = set_fail(vm, RT_PVM_EINVAL, "%s", err);
		}
	}
	clear_reg(P, &key_result);
	return rc;
}

int rt_pvm_call(struct rt_pvm *vm, const char *hook, lua_State *from, int idx, lua_State *to)
{
	struct rt_pvm_buf in = { 0 }, out = { 0 };
	struct rt_pvm_wire_limits lim;
	char err[400];

	vm->err[0] = '\0';
	if (!vm->loaded)
		return set_fail(vm, RT_PVM_ENOENT, "no policy is loaded");
	rt_pvm_wire_limits_of(&vm->limits, &lim);
	if (idx && rt_pvm_encode(from, idx, &lim, "input", &in, err, sizeof(err)) != 0) {
		rt_pvm_buf_free(&in);
		return set_fail(vm, RT_PVM_EINVAL, "%s", err);
	}
	int st = rt_pvm_call_wire(vm, hook, in.data, in.len, &out);
	rt_pvm_buf_free(&in);
	if (st == RT_PVM_OK && rt_pvm_decode(to, out.data, out.len, &lim, err, sizeof(err)) != 0)
		st = set_fail(vm, RT_PVM_EINVAL, "%s", err);
	rt_pvm_buf_free(&out);
	return st;
}

size_t rt_pvm_frame_max(const struct rt_pvm_limits *l)
{
	size_t big = l->max_bytes > RT_PVM_MAX_SOURCE ? l->max_bytes : RT_PVM_MAX_SOURCE;
	return big + (64u << 10);
}

const char *rt_pvm_error(const struct rt_pvm *vm)
{
	return vm->err;
}

size_t rt_pvm_memory(const struct rt_pvm *vm)
{
	return vm->used;
}

size_t rt_pvm_memory_peak(const struct rt_pvm *vm)
{
	return vm->peak;
}

uint64_t rt_pvm_last_instructions(const struct rt_pvm *vm)
{
	return vm->steps;
}

const char *rt_pvm_status_code(int status)
{
	switch (status) {
	case RT_PVM_OK:
		return "OK";
	case RT_PVM_EPOLICY:
		return "EPOLICY";
	case RT_PVM_ETIMEDOUT:
		return "ETIMEDOUT";
	case RT_PVM_ENOMEM:
		return "ENOMEM";
	case RT_PVM_EINVAL:
		return "EINVAL";
	case RT_PVM_ENOENT:
		return "ENOENT";
	default:
		return "EINTERNAL";
	}
}
