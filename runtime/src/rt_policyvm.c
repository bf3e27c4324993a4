/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy VM (see rt_policyvm.h): a capped allocator, a sandboxed base library with
 * read-only globals, text-only loading with the JIT off, a count hook for the instruction
 * budget and the deadline, and deep copies of plain values between two states.
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

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>

#include "moonstack/rt.h"
#include "rt_policyvm.h"

/* While no policy code runs (setup, collection) the state may exceed its cap by this much:
 * the collector itself needs a little memory to free memory. */
#define PVM_HEADROOM (64u << 10)
/* The count hook runs every this many VM instructions. */
#define PVM_HOOK_STEP 1000u
/* Stack slots a copy may need per nesting level (table, key, value), plus slack. */
#define PVM_STACK_NEED(depth) (3 * (depth) + 16)

/* Registry keys (their addresses): the loaded policy, the last result, the read-only globals,
 * and the mark that metatables of read-only proxies carry. */
static char key_policy, key_result, key_env, key_readonly;

struct rt_pvm {
	lua_State *P;
	struct rt_pvm_limits limits;
	size_t used, peak;
	bool loaded;
	bool running;
	int tripped; /* RT_PVM_ETIMEDOUT or RT_PVM_ENOMEM once a run is over its limits */
	uint64_t steps, hook_step, deadline_ns;
	unsigned prints, suppressed;
	rt_pvm_print_fn print_fn;
	void *print_ud;
	char trip_msg[256];
	char err[512];
};

/* A deep copy in progress, from one state to the other. */
struct pvm_copy {
	struct rt_pvm *vm;
	lua_State *from, *to;
	size_t items;
	const void *ancestors[RT_PVM_MAX_DEPTH];
	size_t pathlen;
	char path[192];
	char err[400];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct rt_pvm *vm_of(lua_State *P)
{
	void *ud;
	lua_getallocf(P, &ud);
	return ud;
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
	struct rt_pvm *vm = vm_of(P);
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

static void pvm_emit(struct rt_pvm *vm, const char *line, size_t len)
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
		pvm_emit(vm, line, (size_t)n);
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

/* Push registry[key] on P without allocating. */
static void push_reg(lua_State *P, void *key)
{
	lua_pushlightuserdata(P, key);
	lua_rawget(P, LUA_REGISTRYINDEX);
}

/* ---- the sandboxed library ---- */

/* print(...): tostring each argument, join with tabs, hand the line to the print sink. */
static int l_print(lua_State *P)
{
	struct rt_pvm *vm = vm_of(P);
	int n = lua_gettop(P);
	luaL_Buffer b;
	size_t len;

	if (vm->prints >= RT_PVM_PRINT_LINES) {
		vm->suppressed++;
		return 0;
	}
	vm->prints++;
	luaL_buffinit(P, &b);
	for (int i = 1; i <= n; i++) {
		lua_pushvalue(P, lua_upvalueindex(1));
		lua_pushvalue(P, i);
		lua_call(P, 1, 1);
		if (!lua_isstring(P, -1))
			return luaL_error(P, "'tostring' must return a string to 'print'");
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	const char *s = lua_tolstring(P, -1, &len);
	pvm_emit(vm, s, len > RT_PVM_PRINT_MAX ? RT_PVM_PRINT_MAX : len);
	return 0;
}

/* pcall that cannot catch a blown budget or memory cap: those end the whole run. */
static int l_pcall(lua_State *P)
{
	luaL_checkany(P, 1);
	int st = lua_pcall(P, lua_gettop(P) - 1, LUA_MULTRET, 0);
	if (st != 0 && vm_of(P)->tripped)
		return lua_error(P);
	lua_pushboolean(P, st == 0);
	lua_insert(P, 1);
	return lua_gettop(P);
}

/* xpcall(f, handler, ...), with the same rule as pcall. */
static int l_xpcall(lua_State *P)
{
	int n = lua_gettop(P);
	luaL_checkany(P, 2);
	// [f, h, args...] -> [h, f, args...]
	lua_pushvalue(P, 1);
	lua_pushvalue(P, 2);
	lua_replace(P, 1);
	lua_replace(P, 2);
	int st = lua_pcall(P, n - 2, LUA_MULTRET, 1);
	if (st != 0 && vm_of(P)->tripped)
		return lua_error(P);
	lua_pushboolean(P, st == 0);
	lua_replace(P, 1);
	return lua_gettop(P);
}

static bool is_readonly(lua_State *P, int idx)
{
	bool ro = false;
	if (lua_getmetatable(P, idx)) {
		push_reg(P, &key_readonly);
		lua_pushlightuserdata(P, &key_readonly);
		lua_rawget(P, -3);
		ro = lua_rawequal(P, -1, -2);
		lua_pop(P, 3);
	}
	return ro;
}

/* rawset that refuses the read-only proxies. */
static int l_rawset(lua_State *P)
{
	luaL_checktype(P, 1, LUA_TTABLE);
	luaL_checkany(P, 2);
	luaL_checkany(P, 3);
	if (is_readonly(P, 1))
		return luaL_error(P, "attempt to modify a read-only table");
	lua_settop(P, 3);
	lua_rawset(P, 1);
	return 1;
}

/* __newindex of a read-only proxy; upvalue 1 is the table's name ("_G" for the globals). */
static int l_readonly_newindex(lua_State *P)
{
	const char *name = lua_tostring(P, lua_upvalueindex(1));
	const char *key = lua_type(P, 2) == LUA_TSTRING ? lua_tostring(P, 2) : NULL;
	char msg[160];

	if (strcmp(name, "_G") == 0)
		snprintf(msg, sizeof(msg),
			 "attempt to set global '%s': globals are read-only (use a local)",
			 key ? key : luaL_typename(P, 2));
	else
		snprintf(msg, sizeof(msg), "attempt to set '%s' in read-only table '%s'",
			 key ? key : luaL_typename(P, 2), name);
	// LuaJIT reports the Lua caller of this C function as level 1.
	return luaL_error(P, "%s", msg);
}

/* Push a read-only proxy of the table at @p idx, called @p name in messages. */
static void push_readonly(lua_State *P, int idx, const char *name)
{
	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		idx = lua_gettop(P) + idx + 1;
	lua_newtable(P);
	lua_createtable(P, 0, 4);
	lua_pushvalue(P, idx);
	lua_setfield(P, -2, "__index");
	lua_pushstring(P, name);
	lua_pushcclosure(P, l_readonly_newindex, 1);
	lua_setfield(P, -2, "__newindex");
	lua_pushboolean(P, 0);
	lua_setfield(P, -2, "__metatable");
	lua_pushlightuserdata(P, &key_readonly);
	push_reg(P, &key_readonly);
	lua_rawset(P, -3);
	lua_setmetatable(P, -2);
}

static int op_setup(lua_State *P)
{
	static const luaL_Reg libs[] = {
		{ "", luaopen_base },
		{ LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table },
		{ LUA_MATHLIBNAME, luaopen_math },
		{ NULL, NULL },
	};
	static const char *const removed[] = {
		"load",		  "loadstring", "dofile",  "loadfile", "require",
		"module",	  "getfenv",	"setfenv", "gcinfo",   "newproxy",
		"collectgarbage", "coroutine",	"package", "io",       "os",
		"debug",	  "jit",	"ffi",	   "bit",      NULL,
	};

	for (const luaL_Reg *lib = libs; lib->func; lib++) {
		lua_pushcfunction(P, lib->func);
		lua_pushstring(P, lib->name);
		lua_call(P, 1, 0);
	}
	lua_settop(P, 0);
	// No trace is ever compiled in this state, so the count hook always fires.
	luaJIT_setmode(P, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);

	// The mark read-only metatables carry (a unique table, compared by identity).
	lua_pushlightuserdata(P, &key_readonly);
	lua_newtable(P);
	lua_rawset(P, LUA_REGISTRYINDEX);

	for (const char *const *name = removed; *name; name++) {
		lua_pushnil(P);
		lua_setfield(P, LUA_GLOBALSINDEX, *name);
	}
	lua_getglobal(P, LUA_STRLIBNAME);
	lua_pushnil(P);
	lua_setfield(P, -2, "dump");
	lua_pop(P, 1);

	lua_getglobal(P, "tostring");
	lua_pushcclosure(P, l_print, 1);
	lua_setglobal(P, "print");
	lua_pushcfunction(P, l_pcall);
	lua_setglobal(P, "pcall");
	lua_pushcfunction(P, l_xpcall);
	lua_setglobal(P, "xpcall");
	lua_pushcfunction(P, l_rawset);
	lua_setglobal(P, "rawset");

	// Hide the string metatable: its __index is the real string table.
	lua_pushliteral(P, "");
	if (lua_getmetatable(P, -1)) {
		lua_pushboolean(P, 0);
		lua_setfield(P, -2, "__metatable");
	}
	lua_settop(P, 0);

	static const char *const shared[] = { LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
					      NULL };
	for (const char *const *name = shared; *name; name++) {
		lua_getglobal(P, *name);
		push_readonly(P, -1, *name);
		lua_setglobal(P, *name);
		lua_pop(P, 1);
	}
	lua_pushvalue(P, LUA_GLOBALSINDEX);
	push_readonly(P, -1, "_G");
	lua_pushvalue(P, -1);
	lua_setglobal(P, "_G");
	lua_pushlightuserdata(P, &key_env);
	lua_insert(P, -2);
	lua_rawset(P, LUA_REGISTRYINDEX);
	lua_settop(P, 0);
	// Collect a little earlier than the default (200): the cap counts uncollected garbage.
	lua_gc(P, LUA_GCSETPAUSE, 150);
	return 0;
}

struct rt_pvm *rt_pvm_create(const struct rt_pvm_limits *limits)
{
	struct rt_pvm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	if (limits)
		vm->limits = *limits;
	struct rt_pvm_limits *l = &vm->limits;
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
	vm->hook_step = l->instruction_limit < PVM_HOOK_STEP ? l->instruction_limit : PVM_HOOK_STEP;

	vm->P = lua_newstate(pvm_alloc, vm);
	if (!vm->P) {
		free(vm);
		return NULL;
	}
	lua_atpanic(vm->P, pvm_panic);
	if (lua_cpcall(vm->P, op_setup, vm) != 0) {
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

/* ---- deep copies ---- */

static int copy_fail(struct pvm_copy *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int copy_fail(struct pvm_copy *c, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(c->err, sizeof(c->err), "%s: %s", c->path, what);
	return -1;
}

static void copy_init(struct pvm_copy *c, struct rt_pvm *vm, lua_State *from, lua_State *to,
		      const char *root)
{
	c->vm = vm;
	c->from = from;
	c->to = to;
	c->items = 0;
	c->err[0] = '\0';
	c->pathlen = (size_t)snprintf(c->path, sizeof(c->path), "%s", root);
}

static bool is_identifier(const char *s, size_t len)
{
	if (len == 0 || len > 40 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
		return false;
	for (size_t i = 1; i < len; i++) {
		char ch = s[i];
		if (!(ch == '_' || (ch >= '0' && ch <= '9') ||
		      ((ch | 32) >= 'a' && (ch | 32) <= 'z')))
			return false;
	}
	return true;
}

/* Append the key at @p k (in c->from) to the path; returns the length to restore. */
static size_t path_push(struct pvm_copy *c, int k)
{
	size_t old = c->pathlen, room = sizeof(c->path) - old, len;
	const char *s;
	int n = 0;

	if (room <= 1)
		return old;
	switch (lua_type(c->from, k)) {
	case LUA_TSTRING:
		s = lua_tolstring(c->from, k, &len);
		if (is_identifier(s, len))
			n = snprintf(c->path + old, room, ".%.*s", (int)len, s);
		else
			n = snprintf(c->path + old, room, "[\"%.*s\"]", (int)(len > 24 ? 24 : len),
				     s);
		break;
	case LUA_TNUMBER:
		n = snprintf(c->path + old, room, "[%.14g]", lua_tonumber(c->from, k));
		break;
	default:
		n = snprintf(c->path + old, room, "[%s]", luaL_typename(c->from, k));
		break;
	}
	if (n < 0)
		n = 0;
	c->pathlen = old + ((size_t)n < room ? (size_t)n : room - 1);
	return old;
}

static void path_pop(struct pvm_copy *c, size_t old)
{
	c->pathlen = old;
	c->path[old] = '\0';
}

static int copy_value(struct pvm_copy *c, int idx, int depth);

/* Copy the key/value pair on top of c->from into the table at @p t of c->to. */
static int copy_pair(struct pvm_copy *c, int t, int depth)
{
	int k = lua_gettop(c->from) - 1;
	int kt = lua_type(c->from, k);

	if (++c->items > c->vm->limits.max_items)
		return copy_fail(c, "more than %zu table entries", c->vm->limits.max_items);
	if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN)
		return copy_fail(c, "a %s key cannot be copied", lua_typename(c->from, kt));
	size_t old = path_push(c, k);
	if (copy_value(c, k, depth) != 0 || copy_value(c, k + 1, depth) != 0)
		return -1;
	path_pop(c, old);
	lua_rawset(c->to, t);
	return 0;
}

static int copy_table(struct pvm_copy *c, int idx, int depth)
{
	const void *p = lua_topointer(c->from, idx);

	if (depth >= c->vm->limits.max_depth)
		return copy_fail(c, "tables nested deeper than %d levels", c->vm->limits.max_depth);
	for (int i = 0; i < depth; i++) {
		if (c->ancestors[i] == p)
			return copy_fail(c, "the table contains itself (a cycle)");
	}
	c->ancestors[depth] = p;
	lua_newtable(c->to);
	int t = lua_gettop(c->to);
	lua_pushnil(c->from);
	while (lua_next(c->from, idx)) {
		if (copy_pair(c, t, depth + 1) != 0)
			return -1;
		lua_pop(c->from, 1);
	}
	return 0;
}

/* Push on c->to a copy of the value at @p idx (absolute) of c->from. Returns 0 or -1 (c->err
 * says why; both stacks may hold partial work the caller discards). */
static int copy_value(struct pvm_copy *c, int idx, int depth)
{
	size_t len;
	const char *s;

	switch (lua_type(c->from, idx)) {
	case LUA_TNIL:
		lua_pushnil(c->to);
		return 0;
	case LUA_TBOOLEAN:
		lua_pushboolean(c->to, lua_toboolean(c->from, idx));
		return 0;
	case LUA_TNUMBER:
		lua_pushnumber(c->to, lua_tonumber(c->from, idx));
		return 0;
	case LUA_TSTRING:
		s = lua_tolstring(c->from, idx, &len);
		if (len > c->vm->limits.max_string)
			return copy_fail(c, "a string of %zu bytes exceeds the limit of %zu", len,
					 c->vm->limits.max_string);
		lua_pushlstring(c->to, s, len);
		return 0;
	case LUA_TTABLE:
		return copy_table(c, idx, depth);
	default:
		return copy_fail(c,
				 "a %s value cannot be copied (only nil, booleans, numbers, "
				 "strings and tables of them)",
				 luaL_typename(c->from, idx));
	}
}

/* ---- load, info, call ---- */

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
	push_reg(P, &key_env);
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
	return RT_PVM_OK;
}

bool rt_pvm_loaded(const struct rt_pvm *vm)
{
	return vm->loaded;
}

void rt_pvm_unload(struct rt_pvm *vm)
{
	lua_State *P = vm->P;
	lua_settop(P, 0);
	// Overwriting an existing registry slot does not allocate.
	lua_pushlightuserdata(P, &key_policy);
	lua_pushnil(P);
	lua_rawset(P, LUA_REGISTRYINDEX);
	vm->loaded = false;
	lua_cpcall(P, op_collect, NULL);
	lua_settop(P, 0);
}

static int op_reserve(lua_State *P)
{
	struct rt_pvm *vm = lua_touserdata(P, 1);
	luaL_checkstack(P, PVM_STACK_NEED(vm->limits.max_depth), "policy copy");
	return 0;
}

int rt_pvm_push_info(struct rt_pvm *vm, lua_State *to)
{
	lua_State *P = vm->P;
	struct pvm_copy c;

	vm->err[0] = '\0';
	if (!vm->loaded)
		return set_fail(vm, RT_PVM_ENOENT, "no policy is loaded");
	luaL_checkstack(to, PVM_STACK_NEED(vm->limits.max_depth), "policy copy");
	lua_settop(P, 0);
	if (lua_cpcall(P, op_reserve, vm) != 0) {
		lua_settop(P, 0);
		return set_fail(vm, RT_PVM_ENOMEM, "out of memory");
	}
	int top = lua_gettop(to);
	push_reg(P, &key_policy); // P: [policy]
	copy_init(&c, vm, P, to, "policy");
	c.ancestors[0] = lua_topointer(P, 1);
	lua_createtable(to, 0, 2); // to: [info]
	lua_newtable(to);	   // to: [info, fields]
	lua_newtable(to);	   // to: [info, fields, hooks]
	lua_pushnil(P);
	while (lua_next(P, 1)) { // P: [policy, key, value]
		if (lua_type(P, -1) == LUA_TFUNCTION) {
			if (lua_type(P, -2) != LUA_TSTRING) {
				path_push(&c, 2);
				copy_fail(&c, "a function at a non-string key");
				goto fail;
			}
			size_t len;
			const char *name = lua_tolstring(P, -2, &len);
			lua_pushlstring(to, name, len);
			lua_pushboolean(to, 1);
			lua_rawset(to, top + 3);
		} else if (copy_pair(&c, top + 2, 1) != 0) {
			goto fail;
		}
		lua_pop(P, 1);
	}
	lua_setfield(to, top + 1, "hooks");
	lua_setfield(to, top + 1, "fields");
	lua_settop(P, 0);
	return RT_PVM_OK;
fail:
	lua_settop(P, 0);
	lua_settop(to, top);
	return set_fail(vm, RT_PVM_EINVAL, "%s", c.err);
}

bool rt_pvm_has_hook(struct rt_pvm *vm, const char *hook)
{
	lua_State *P = vm->P;
	bool found = false;

	if (!vm->loaded)
		return false;
	lua_settop(P, 0);
	push_reg(P, &key_policy);
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
	lua_State *from;
	int idx;
	int hint;
};

static int op_call(lua_State *P)
{
	struct call_args *a = lua_touserdata(P, 1);
	struct pvm_copy c;

	lua_settop(P, 0);
	push_reg(P, &key_policy);
	lua_pushstring(P, a->hook);
	lua_rawget(P, 1);
	if (!lua_isfunction(P, -1)) {
		a->hint = RT_PVM_ENOENT;
		return luaL_error(P, "the policy has no hook '%s'", a->hook);
	}
	if (a->idx) {
		copy_init(&c, a->vm, a->from, P, "input");
		if (copy_value(&c, a->idx, 0) != 0) {
			a->hint = RT_PVM_EINVAL;
			lua_pushstring(P, c.err);
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

int rt_pvm_call(struct rt_pvm *vm, const char *hook, lua_State *from, int idx, lua_State *to)
{
	lua_State *P = vm->P;
	struct call_args a = { vm, hook, from, idx, RT_PVM_EPOLICY };
	struct pvm_copy c;

	vm->err[0] = '\0';
	if (!vm->loaded)
		return set_fail(vm, RT_PVM_ENOENT, "no policy is loaded");
	if (idx < 0 && idx > LUA_REGISTRYINDEX)
		a.idx = lua_gettop(from) + idx + 1;
	int ftop = lua_gettop(from);
	luaL_checkstack(from, PVM_STACK_NEED(vm->limits.max_depth), "policy copy");
	luaL_checkstack(to, PVM_STACK_NEED(vm->limits.max_depth), "policy copy");

	pvm_arm(vm);
	int st = lua_cpcall(P, op_call, &a);
	pvm_disarm(vm);
	lua_settop(from, ftop);
	if (st != 0)
		return pvm_failed(vm, st, a.hint);

	int top = lua_gettop(to);
	lua_settop(P, 0);
	push_reg(P, &key_result);
	copy_init(&c, vm, P, to, "result");
	int rc = copy_value(&c, 1, 0);
	lua_settop(P, 0);
	lua_pushlightuserdata(P, &key_result);
	lua_pushnil(P);
	lua_rawset(P, LUA_REGISTRYINDEX);
	lua_settop(P, 0);
	if (rc != 0) {
		lua_settop(to, top);
		return set_fail(vm, RT_PVM_EINVAL, "%s", c.err);
	}
	return RT_PVM_OK;
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
