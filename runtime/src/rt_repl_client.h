/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The REPL client (`moonstack repl SOCKET`): connects to a daemon's control socket, sends
 * lines and prints the replies; interactive sessions get libedit line editing and history.
 * Blocking on purpose: the client does nothing else. Wire protocol: see
 * lua/moonstack/control/server.lua.
 */
#ifndef MOONSTACK_RT_REPL_CLIENT_H
#define MOONSTACK_RT_REPL_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

#include <lua.h>

/** Exit codes of rt_repl_client_run() and rt_repl_session(). */
enum rt_repl_exit {
	RT_REPL_EXIT_OK = 0,   /**< done (end of input, Ctrl-D, \quit) */
	RT_REPL_EXIT_EVAL = 1, /**< with `expr`: the evaluation failed */
	RT_REPL_EXIT_IO = 2,   /**< cannot connect, connection lost, or a protocol error */
};

/** Options of a REPL session. Zero-initialise, then set what you need. */
struct rt_repl_opts {
	bool json;	  /**< switch the connection to JSON mode and print the raw JSON lines */
	const char *expr; /**< evaluate these lines, print the replies, exit (NULL: read input) */
	const char *history; /**< history file of interactive sessions (NULL: no file) */
	const char *name;    /**< prompt label (NULL: the socket path's last component) */
	double timeout;	     /**< seconds to wait for each reply; 0 waits forever */
	int interactive;     /**< 1: libedit on the terminal, 0: read `in`, -1: isatty(stdin) */
	FILE *in;	     /**< input when not interactive (NULL: stdin) */
	FILE *out;	     /**< replies (NULL: stdout) */
	FILE *err;	     /**< error replies and diagnostics (NULL: stderr) */
};

/**
 * Connect to the unix socket @p path. Returns the connected fd, or -1 with a message such
 * as "cannot connect to /x.sock: No such file or directory" in @p err (@p errlen bytes).
 */
int rt_repl_connect(const char *path, char *err, size_t errlen);

/**
 * Hold a session on the connected socket @p fd (not closed here): switch to JSON mode if
 * asked, then send each input line and print each reply until the input ends or the server
 * says bye. @p label names the server in diagnostics. Returns an rt_repl_exit code.
 */
int rt_repl_session(int fd, const char *label, const struct rt_repl_opts *opts);

/** Connect to @p path, run rt_repl_session(), close. Returns an rt_repl_exit code. */
int rt_repl_client_run(const char *path, const struct rt_repl_opts *opts);

/**
 * Binding `moonstack.native.replclient`: run(socket_path [, opts]) -> exit code, with opts
 * { json = bool, expr = string, history = string, name = string, timeout = seconds }.
 */
int luaopen_moonstack_native_replclient(lua_State *L);

#endif
