/* SPDX-License-Identifier: Apache-2.0 */
/* The policy VM's private layout and the entry points its three files share. */
#ifndef MOONSTACK_RT_POLICYVM_INTERNAL_H
#define MOONSTACK_RT_POLICYVM_INTERNAL_H

#include <lauxlib.h>

#include "rt_policyvm.h"

/* Registry keys (their addresses) for the read-only globals and the mark that metatables of
 * read-only proxies carry. */
extern char rt_pvm_key_env, rt_pvm_key_readonly;

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
struct rt_pvm_copy {
	struct rt_pvm *vm;
	lua_State *from, *to;
	size_t items;
	const void *ancestors[RT_PVM_MAX_DEPTH];
	size_t pathlen;
	char path[192];
	char err[400];
};

/* The VM that owns @p P (its allocator's userdata). */
static inline struct rt_pvm *rt_pvm_of(lua_State *P)
{
	void *ud;
	lua_getallocf(P, &ud);
	return ud;
}

/* Push registry[key] on P without allocating. */
static inline void rt_pvm_push_reg(lua_State *P, void *key)
{
	lua_pushlightuserdata(P, key);
	lua_rawget(P, LUA_REGISTRYINDEX);
}

/* Hand one printed line to the VM's print sink. */
void rt_pvm_emit(struct rt_pvm *vm, const char *line, size_t len);

/* lua_CFunction run under lua_cpcall: open the sandboxed libraries and the read-only globals. */
int rt_pvm_open_sandbox(lua_State *P);

/* Start a copy from @p from to @p to; @p root names the value in messages ("input"). */
void rt_pvm_copy_init(struct rt_pvm_copy *c, struct rt_pvm *vm, lua_State *from, lua_State *to,
		      const char *root);

/* Push on c->to a copy of the value at @p idx (absolute) of c->from, at nesting @p depth.
 * Returns 0 or -1 (c->err says why; both stacks may hold partial work to discard). */
int rt_pvm_copy_value(struct rt_pvm_copy *c, int idx, int depth);

/* Copy the key/value pair on top of c->from into the table at @p t of c->to; values are at
 * nesting @p depth. Returns 0 or -1. */
int rt_pvm_copy_pair(struct rt_pvm_copy *c, int t, int depth);

/* Record a copy failure at the current path; returns -1. */
int rt_pvm_copy_fail(struct rt_pvm_copy *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append the key at @p k (in c->from) to the path; returns the length to restore. */
size_t rt_pvm_path_push(struct rt_pvm_copy *c, int k);

#endif
