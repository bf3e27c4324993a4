/* SPDX-License-Identifier: Apache-2.0 */
/* The policy VM's private layout and the entry points its files share. */
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
	uint64_t id_key; /* secret that tostring() mixes into object identities */
	unsigned prints, suppressed;
	rt_pvm_print_fn print_fn;
	void *print_ud;
	char trip_msg[256];
	char err[512];
};

/* An encoding in progress (rt_policyvm_wire.c): a plain value of L into the wire format. */
struct rt_pvm_enc {
	lua_State *L;
	const struct rt_pvm_wire_limits *lim;
	struct rt_pvm_buf *out;
	size_t base; /* out->len when the encoding started: max_bytes counts from here */
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

/* Start an encoding of values of @p L into @p out; @p root names the value in messages. */
void rt_pvm_enc_init(struct rt_pvm_enc *e, lua_State *L, const struct rt_pvm_wire_limits *lim,
		     struct rt_pvm_buf *out, const char *root);

/* Encode the value at @p idx of e->L, at nesting @p depth. Returns 0 or -1 (e->err says why;
 * the stack of e->L may hold partial work to discard, and out a partial encoding). */
int rt_pvm_enc_value(struct rt_pvm_enc *e, int idx, int depth);

/* Encode the key/value pair on top of e->L (key at -2); values are at nesting @p depth. */
int rt_pvm_enc_pair(struct rt_pvm_enc *e, int depth);

/* Record an encoding failure at the current path; returns -1. */
int rt_pvm_enc_fail(struct rt_pvm_enc *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append the key at @p k (in e->L) to the path; returns the length to restore. */
size_t rt_pvm_path_push(struct rt_pvm_enc *e, int k);

#endif
