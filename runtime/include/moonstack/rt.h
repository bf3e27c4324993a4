/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one header natives and runtime bindings include: the runtime object, the protected-call
 * contract, logging, and small helpers for writing luv-style bindings.
 */
#ifndef MOONSTACK_RT_H
#define MOONSTACK_RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>
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

/** The main state. */
lua_State *rt_state(struct rt_runtime *rt);

/** The runtime that owns @p L (the main state or a coroutine of it). Never NULL. */
struct rt_runtime *rt_from_lua(lua_State *L);

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

/**
 * Message handler for lua_pcall: turns the error into a string (honouring __tostring on error
 * objects) and appends a traceback. Error objects that are tables are kept as tables, with
 * the traceback stored in their `traceback` field.
 */
int rt_traceback(lua_State *L);

/**
 * Call the function below @p nargs arguments in protected mode with rt_traceback() as the
 * handler. Returns the lua_pcall status; on error the error value is left on the stack.
 */
int rt_pcall(lua_State *L, int nargs, int nresults);

/**
 * Like rt_pcall(), but on error log it (with @p what as context), count it as a callback
 * error, and pop it. LUA_ERRMEM is fatal. Returns the lua_pcall status.
 */
int rt_pcall_log(lua_State *L, int nargs, int nresults, const char *what);

/** The callback runner luv uses (luv_CFpcall): errors are logged and the loop goes on. */
int rt_luv_pcall(lua_State *L, int nargs, int nresults, int flags);

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

/**
 * Create (or fetch) the metatable @p tname with @p methods as its __index and @p meta as
 * metamethods. Leaves nothing on the stack.
 */
void rt_newclass(lua_State *L, const char *tname, const luaL_Reg *methods, const luaL_Reg *meta);

/** Write @p len bytes as hex (lowercase, or uppercase if @p upper) and a NUL to @p out, which
 *  must hold 2 * len + 1 bytes. */
void rt_hex_encode(const uint8_t *in, size_t len, char *out, bool upper);

/** Decode exactly 2 * @p outlen hex digits (either case) into @p out. Returns 0, or -1 if the
 *  length differs or a character is not a hex digit. */
int rt_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t outlen);

/** Length (1..4) of the valid UTF-8 sequence at @p s, with @p avail bytes available, or 0 if it
 *  is not valid UTF-8 (overlong forms, surrogates and code points past U+10FFFF are invalid). */
size_t rt_utf8_seq_len(const unsigned char *s, size_t avail);

/** Push nil, "CODE: message", "CODE" (the expected-failure contract). Returns 3. */
int rt_push_fail(lua_State *L, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/** Push nil, "ENAME: strerror", "ENAME" for a libuv error. Returns 3. */
int rt_push_uv_fail(lua_State *L, int uverr);

/**
 * `moonstack policy-worker ARGS...` (hidden; @p argv[0] is "policy-worker"): serve one policy
 * VM over stdin/stdout for a daemon that can kill it (runtime/src/rt_policyvm_worker.c has the
 * options and the protocol). Runs without the Lua runtime. Returns the exit code.
 */
int rt_policy_worker_main(int argc, char **argv);

struct x509_st;

/**
 * The OpenSSL certificate a TLS handshake of this process decoded from exactly the DER @p der
 * (@p len bytes) — a client certificate an HTTP request in flight holds (`req.peer_cert`) — with
 * a new reference (X509_free() it); NULL if there is none. Natives reading `req.peer_cert` use it
 * to skip decoding the certificate a second time.
 */
struct x509_st *rt_tls_peer_x509(const void *der, size_t len);

#endif
