/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy VM: a second, memory-capped lua_State for operators' auth and routing policies
 * (DESIGN.md §5.2, anchors.md §3.6). Only base (without load*, dofile, require, get/setfenv,
 * collectgarbage, newproxy, coroutine), string (without dump), table and math are opened; the
 * globals and library tables are read-only; only text chunks load; the JIT engine is off so a
 * count hook enforces an instruction budget and a wall-clock deadline on every run, and a run
 * that returns after its deadline (from a long C call) fails too; values cross the boundary
 * in the policy wire format (plain data: nil, booleans, numbers, strings and tables of them)
 * with depth, entry, string and total size limits.
 *
 * This guards against operator mistakes (a loop that never ends, a typo writing a global, a
 * table that grows without bound), not against hostile code: LuaJIT is not a security
 * boundary, a C library function (string.find with a pathological pattern) runs without
 * budget checks until it returns, and some recursions through C functions overflow the C
 * stack. The daemons therefore run policies in worker processes (rt_pvm_worker_main(),
 * moonstack.policy.pool) that they kill at the deadline.
 *
 * Wire format (one value; numbers and lengths in host byte order, for a pipe on one host):
 *   'n' nil | 'f' false | 't' true | 'd' double(8) | 's' u32 length, bytes |
 *   '{' (key value)* '}'    keys are booleans, numbers (not NaN) or strings; values not nil
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
/** Default size of one copied value in the wire format, in bytes (4 MiB). */
#define RT_PVM_DEFAULT_BYTES (4u << 20)
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
	size_t max_bytes;	    /**< bytes per copied value, in the wire format */
};

/** Fill the zero fields of @p l with the defaults and clamp the others (as rt_pvm_create()). */
void rt_pvm_limits_defaults(struct rt_pvm_limits *l);

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

/* ---- the wire format ---- */

/** Tags of the wire format (see the top of this file). */
enum rt_pvm_wire_tag {
	RT_PVM_WIRE_NIL = 'n',
	RT_PVM_WIRE_FALSE = 'f',
	RT_PVM_WIRE_TRUE = 't',
	RT_PVM_WIRE_NUMBER = 'd',
	RT_PVM_WIRE_STRING = 's',
	RT_PVM_WIRE_OPEN = '{',
	RT_PVM_WIRE_CLOSE = '}',
};

/** Limits of one encoding or decoding (the copy limits of rt_pvm_limits). */
struct rt_pvm_wire_limits {
	int max_depth;	   /**< nesting of tables, the outermost at depth 0 */
	size_t max_items;  /**< table entries in all */
	size_t max_string; /**< bytes per string */
	size_t max_bytes;  /**< bytes of the whole encoding */
};

/** A growable byte buffer (malloc). Zero-initialise; `oom` is set once a growth failed. */
struct rt_pvm_buf {
	char *data;
	size_t len, cap;
	bool oom;
};

/** Append @p n bytes; false (and b->oom) when memory runs out. */
bool rt_pvm_buf_put(struct rt_pvm_buf *b, const void *p, size_t n);

/** Free the buffer's memory and zero it. */
void rt_pvm_buf_free(struct rt_pvm_buf *b);

/** Append a one-byte tag (nil, false, true, table open or close). */
void rt_pvm_wire_byte(struct rt_pvm_buf *b, char tag);

/** Append a string value. */
void rt_pvm_wire_string(struct rt_pvm_buf *b, const char *s, size_t len);

/** Append a number value. */
void rt_pvm_wire_number(struct rt_pvm_buf *b, double v);

/** The copy limits of @p l as wire limits. */
void rt_pvm_wire_limits_of(const struct rt_pvm_limits *l, struct rt_pvm_wire_limits *out);

/**
 * Append to @p out the encoding of the value at @p idx of @p L within @p lim; @p root names
 * the value in messages ("input"). Returns 0, or -1 with a message naming the path of the
 * offending value in @p err. Never raises and never allocates in @p L.
 */
int rt_pvm_encode(lua_State *L, int idx, const struct rt_pvm_wire_limits *lim, const char *root,
		  struct rt_pvm_buf *out, char *err, size_t errlen);

/**
 * Push on @p L the value encoded in @p data (exactly one value, nothing after it) within
 * @p lim. Returns 0, or -1 with a message in @p err (nothing pushed). Raises in @p L only when
 * it runs out of memory or stack space.
 */
int rt_pvm_decode(lua_State *L, const char *data, size_t len, const struct rt_pvm_wire_limits *lim,
		  char *err, size_t errlen);

/**
 * rt_pvm_call() with the input and the result in the wire format: decode @p in (the VM's
 * copy limits; NULL or empty: an empty table) as the argument of @p hook, run it, and append
 * the encoding of its result (a table) to @p out. Returns RT_PVM_OK or a failure status
 * (nothing appended). Never raises.
 */
int rt_pvm_call_wire(struct rt_pvm *vm, const char *hook, const char *in, size_t inlen,
		     struct rt_pvm_buf *out);

/**
 * rt_pvm_push_info() in the wire format: append the encoding of { fields = {...}, hooks =
 * {...} } to @p out. Returns RT_PVM_OK, RT_PVM_ENOENT or RT_PVM_EINVAL. Never raises.
 */
int rt_pvm_info_wire(struct rt_pvm *vm, struct rt_pvm_buf *out);

/* ---- worker processes ---- */

/** Largest policy source a worker accepts, in bytes (1 MiB, the host's MAX_SOURCE). */
#define RT_PVM_MAX_SOURCE (1u << 20)

/** Requests to a worker (the first byte of a frame's payload). */
enum rt_pvm_op {
	RT_PVM_OP_LOAD = 'L', /**< u16 name length, chunk name, source: load the policy */
	RT_PVM_OP_CALL = 'C', /**< u8 hook length, hook, wire input: run a hook */
};

/** Store @p v at @p p as 4 little-endian bytes (the length prefix of a worker frame). */
static inline void rt_pvm_put_le32(void *p, uint32_t v)
{
	unsigned char *b = p;
	b[0] = (unsigned char)v;
	b[1] = (unsigned char)(v >> 8);
	b[2] = (unsigned char)(v >> 16);
	b[3] = (unsigned char)(v >> 24);
}

/** Read 4 little-endian bytes at @p p. */
static inline uint32_t rt_pvm_get_le32(const void *p)
{
	const unsigned char *b = p;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/**
 * The largest frame payload either side of a worker pipe accepts with the copy limits @p l:
 * a source or a value of max_bytes, plus the printed lines and the envelope.
 */
size_t rt_pvm_frame_max(const struct rt_pvm_limits *l);

#endif
