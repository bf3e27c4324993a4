/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The runtime without Lua: the runtime object and its libuv loop, the shutdown sequence, logging
 * and small byte helpers. C code that never touches a lua_State (the HTTP/TLS core, a C proxy)
 * includes this; moonstack/rt.h adds the Lua side (states, protected calls, binding helpers).
 */
#ifndef MOONSTACK_RT_BASE_H
#define MOONSTACK_RT_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/** Log levels, in increasing severity. */
enum rt_log_level {
	RT_LOG_DEBUG = 0,
	RT_LOG_INFO,
	RT_LOG_WARN,
	RT_LOG_ERROR,
};

/** A function run while the runtime shuts down (see rt_on_shutdown()). */
typedef void (*rt_shutdown_fn)(void *ud, int stage);

/** Options for rt_create(). Zero-initialise, then set what you need. */
struct rt_options {
	const char *lua_dir; /**< load Lua modules from this directory first (dev mode), or NULL */
};

/** The runtime: one libuv loop and the main lua_State bound to it. */
struct rt_runtime;

/**
 * Create the runtime: initialise the loop, open the main state, bind luv to the loop with
 * rt_luv_pcall() as its callback runner, preload natives, cjson and luv, install the module
 * loader. Returns NULL (and logs why) on failure.
 */
struct rt_runtime *rt_create(const struct rt_options *opts);

/**
 * Shut the runtime down and free it: shutdown hooks (stage 0), close every handle, drain the
 * loop, shutdown hooks (stage 1), lua_close(), uv_loop_close().
 */
void rt_destroy(struct rt_runtime *rt);

/** Run the loop until no work is left or rt_request_exit() is called. */
void rt_run(struct rt_runtime *rt);

/** The runtime's loop. */
uv_loop_t *rt_loop(struct rt_runtime *rt);

/** Ask the loop to stop and the process to exit with @p code once shut down. */
void rt_request_exit(struct rt_runtime *rt, int code);

/** The exit code set by rt_request_exit() or rt_set_exit_code(), 0 by default. */
int rt_exit_code(const struct rt_runtime *rt);

/** Set the exit code without stopping the loop. */
void rt_set_exit_code(struct rt_runtime *rt, int code);

/** Whether rt_request_exit() was called. */
bool rt_exit_requested(const struct rt_runtime *rt);

/** Number of errors raised in callbacks and logged so far (they do not stop the loop). */
unsigned long rt_callback_errors(const struct rt_runtime *rt);

/**
 * Register @p fn to run at shutdown: once with stage 0 before handles are closed (destroy
 * foreign-loop users such as lws here), once with stage 1 after the loop has drained.
 * Returns 0 or -ENOMEM.
 */
int rt_on_shutdown(struct rt_runtime *rt, rt_shutdown_fn fn, void *ud);

/**
 * Announce asynchronous shutdown work (e.g. a library closing its handles over several loop
 * turns). rt_destroy() turns the loop until every begun piece of work is done.
 */
void rt_shutdown_work_begin(struct rt_runtime *rt);

/** Mark one piece of work announced with rt_shutdown_work_begin() as done. */
void rt_shutdown_work_done(struct rt_runtime *rt);

/** Remove a hook registered with rt_on_shutdown() (no-op if absent). */
void rt_off_shutdown(struct rt_runtime *rt, rt_shutdown_fn fn, void *ud);

/** Set the minimum level that is written. */
void rt_log_set_level(enum rt_log_level level);

/** The current minimum level. */
enum rt_log_level rt_log_get_level(void);

/** Choose JSON lines (true) or text lines (false, the default). */
void rt_log_set_json(bool json);

/** Whether JSON lines are written. */
bool rt_log_is_json(void);

/** Parse "debug", "info", "warn", "error"; returns -1 for anything else. */
int rt_log_level_parse(const char *name);

/** Name of @p level ("debug", ...). */
const char *rt_log_level_name(enum rt_log_level level);

/**
 * Write one log record to stderr. @p fields_json is NULL or the text of a JSON object whose
 * members are added to the record (it is trusted to be valid JSON).
 */
void rt_log_emit(enum rt_log_level level, const char *component, const char *msg,
		 const char *fields_json);

/** printf-style convenience over rt_log_emit(). */
void rt_log(enum rt_log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** Write @p len bytes as hex (lowercase, or uppercase if @p upper) and a NUL to @p out, which
 *  must hold 2 * len + 1 bytes. */
void rt_hex_encode(const uint8_t *in, size_t len, char *out, bool upper);

/** Decode exactly 2 * @p outlen hex digits (either case) into @p out. Returns 0, or -1 if the
 *  length differs or a character is not a hex digit. */
int rt_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t outlen);

/** Length (1..4) of the valid UTF-8 sequence at @p s, with @p avail bytes available, or 0 if it
 *  is not valid UTF-8 (overlong forms, surrogates and code points past U+10FFFF are invalid). */
size_t rt_utf8_seq_len(const unsigned char *s, size_t avail);

/** Whether a process accepts connections on the unix socket at @p path: 1 live (a full
 *  backlog counts), 0 stale or absent (ECONNREFUSED, ENOENT), or -errno when it cannot tell
 *  (ENAMETOOLONG, EACCES, ...). Never blocks. */
int rt_unix_socket_probe(const char *path);

#endif
