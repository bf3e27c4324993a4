/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy VM: a second, memory-capped lua_State for operators' auth and routing policies
 * (DESIGN.md §5.2, anchors.md §3.6). Only base (without load*, dofile, require, get/setfenv,
 * collectgarbage, newproxy, coroutine), string (without dump), table and math are opened; the
 * globals and library tables are read-only; only text chunks load; the JIT engine is off so a
 * count hook enforces an instruction budget and a wall-clock deadline on every run; values
 * cross the boundary as deep copies of plain data (nil, booleans, numbers, strings and tables
 * of them) with depth and size limits.
 *
 * This guards against operator mistakes (a loop that never ends, a typo writing a global, a
 * table that grows without bound), not against hostile code: LuaJIT is not a security
 * boundary, and C library functions (e.g. string.find with a pathological pattern) run
 * without budget checks until they return.
 *
 * One VM holds at most one policy. The API is not thread-safe; use a VM from one thread.
 */
#ifndef MOONSTACK_RT_POLICYVM_H
#define MOONSTACK_RT_POLICYVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/** Default memory cap of a VM, in bytes (16 MiB). */
#define RT_PVM_DEFAULT_MEMORY (16u << 20)
/** Smallest accepted memory cap (the bare state with its libraries needs about 30 KiB). */
#define RT_PVM_MIN_MEMORY (128u << 10)
/** Default instruction budget of one run (load or call). */
#define RT_PVM_DEFAULT_INSTRUCTIONS 10000000u
/** Default wall-clock deadline of one run, in milliseconds. */
#define RT_PVM_DEFAULT_TIME_MS 50u
/** Default and largest nesting depth of a copied value. */
#define RT_PVM_DEFAULT_DEPTH 32
#define RT_PVM_MAX_DEPTH     64
/** Default number of table entries one copy may hold. */
#define RT_PVM_DEFAULT_ITEMS 10000u
/** Default length of one copied string, in bytes (1 MiB). */
#define RT_PVM_DEFAULT_STRING (1u << 20)
/** Lines print() may emit per run; later ones are counted and reported as suppressed. */
#define RT_PVM_PRINT_LINES 32
/** Longest line print() emits, in bytes (longer lines are cut). */
#define RT_PVM_PRINT_MAX 512

/** Limits of a VM. Zero fields take the defaults above. */
struct rt_pvm_limits {
	size_t memory_limit;	    /**< bytes the state may hold */
	uint64_t instruction_limit; /**< VM instructions per run */
	uint64_t time_limit_ms;	    /**< wall-clock milliseconds per run */
	int max_depth;		    /**< nesting of copied tables, 1..RT_PVM_MAX_DEPTH */
	size_t max_items;	    /**< table entries per copy */
	size_t max_string;	    /**< bytes per copied string */
};

/** Results of VM operations. Every failure also sets rt_pvm_error(). */
enum rt_pvm_status {
	RT_PVM_OK = 0,
	RT_PVM_EPOLICY,	  /**< the policy failed: syntax or runtime error, bad return value */
	RT_PVM_ETIMEDOUT, /**< the instruction budget or the deadline ran out */
	RT_PVM_ENOMEM,	  /**< the memory cap was reached */
	RT_PVM_EINVAL,	  /**< bytecode, a value that cannot cross, a policy already loaded */
	RT_PVM_ENOENT,	  /**< no policy loaded, or the policy has no such hook */
};

/** Receives each line a policy prints (@p line is not NUL-terminated past @p len). */
typedef void (*rt_pvm_print_fn)(void *ud, const char *line, size_t len);

/** A policy VM. */
struct rt_pvm;

/**
 * Create a VM with @p limits (NULL for all defaults; zero fields take defaults, out-of-range
 * fields are clamped: memory to at least RT_PVM_MIN_MEMORY, depth to 1..RT_PVM_MAX_DEPTH).
 * Returns NULL when memory runs out (including when the cap is too small for the libraries).
 */
struct rt_pvm *rt_pvm_create(const struct rt_pvm_limits *limits);

/** Close the VM's state and free it. NULL is a no-op. */
void rt_pvm_destroy(struct rt_pvm *vm);

/** The limits in effect (defaults filled in). */
void rt_pvm_get_limits(const struct rt_pvm *vm, struct rt_pvm_limits *out);

/** Send print() output to @p fn (NULL: log it with rt_log at info level, component "policy"). */
void rt_pvm_set_print(struct rt_pvm *vm, rt_pvm_print_fn fn, void *ud);

/**
 * Compile @p src (text only: a chunk starting with the bytecode signature byte is refused
 * with RT_PVM_EINVAL), turn the JIT off for it, and run it with the read-only globals as its
 * environment under the run limits. The chunk must return a table (the policy), which the VM
 * keeps. @p chunkname follows Lua conventions ("@file.lua", "=name"); NULL means "=policy".
 * Returns RT_PVM_OK or a failure status (RT_PVM_EINVAL if a policy is already loaded).
 */
int rt_pvm_load(struct rt_pvm *vm, const char *src, size_t len, const char *chunkname);

/** Whether a policy is loaded. */
bool rt_pvm_loaded(const struct rt_pvm *vm);

/** Drop the loaded policy (if any) and collect its garbage; the VM can load another one. */
void rt_pvm_unload(struct rt_pvm *vm);

/**
 * Describe the loaded policy on @p to: pushes a table { fields = {...}, hooks = {...} } where
 * `fields` holds a deep copy of every non-function entry of the policy table and `hooks`
 * maps the name of every function-valued entry to true. Returns RT_PVM_OK (one value pushed)
 * or a failure status (nothing pushed): RT_PVM_ENOENT if no policy is loaded, RT_PVM_EINVAL if
 * a value cannot be copied. May raise in @p to only when @p to runs out of memory.
 */
int rt_pvm_push_info(struct rt_pvm *vm, lua_State *to);

/** Whether the loaded policy has a function-valued entry named @p hook. */
bool rt_pvm_has_hook(struct rt_pvm *vm, const char *hook);

/**
 * Run the policy's function @p hook with a deep copy of the value at @p idx of @p from (idx 0:
 * an empty table) as its only argument, under the run limits, and push a deep copy of its
 * result, which must be a table, on @p to. Returns RT_PVM_OK (one value pushed on @p to) or a
 * failure status (nothing pushed; the stack of @p from is left as it was). After a timeout or
 * an out-of-memory failure the VM's garbage is collected and the VM stays usable.
 * May raise in @p from or @p to only when they run out of memory or stack space.
 */
int rt_pvm_call(struct rt_pvm *vm, const char *hook, lua_State *from, int idx, lua_State *to);

/** The message of the last failure ("" if none). Valid until the next operation. */
const char *rt_pvm_error(const struct rt_pvm *vm);

/** Bytes the VM's state holds now. */
size_t rt_pvm_memory(const struct rt_pvm *vm);

/** Most bytes the VM's state held at once since it was created. */
size_t rt_pvm_memory_peak(const struct rt_pvm *vm);

/** Instructions counted in the last run (a multiple of the hook interval, so approximate). */
uint64_t rt_pvm_last_instructions(const struct rt_pvm *vm);

/** The stable code of @p status: "OK", "EPOLICY", "ETIMEDOUT", "ENOMEM", "EINVAL", "ENOENT". */
const char *rt_pvm_status_code(int status);

#endif
