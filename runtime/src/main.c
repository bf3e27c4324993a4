/* SPDX-License-Identifier: Apache-2.0 */
/*
 * moonstack: entry point. Reads the runtime-wide options, sets up the runtime, hands the
 * command line to the Lua CLI (moonstack.cli), runs the loop until no work is left, and
 * shuts everything down in order. Subcommands live in Lua (lua/moonstack/commands/), except
 * the hidden `policy-worker` (rt_policyvm_worker.c) and `ns-exec` (rt_nsexec.c), which run
 * without the runtime.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moonstack/rt.h"

/* Consume the runtime-wide options that must act before Lua starts. */
static int parse_early(int *argc, char **argv, struct rt_options *opts)
{
	int out = 1;
	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--lua-dir") == 0) {
			if (i + 1 >= *argc) {
				fprintf(stderr, "moonstack: --lua-dir: missing DIR\n");
				return -1;
			}
			opts->lua_dir = argv[++i];
		} else if (strncmp(a, "--lua-dir=", 10) == 0) {
			opts->lua_dir = a + 10;
		} else if (strcmp(a, "--log-level") == 0 || strncmp(a, "--log-level=", 12) == 0) {
			const char *v = a[11] == '=' ? a + 12 : (i + 1 < *argc ? argv[++i] : NULL);
			int level = rt_log_level_parse(v);
			if (level < 0) {
				fprintf(stderr,
					"moonstack: --log-level: '%s' is not one of debug, info, "
					"warn, error\n",
					v ? v : "");
				return -1;
			}
			rt_log_set_level((enum rt_log_level)level);
		} else if (strcmp(a, "--log-json") == 0) {
			rt_log_set_json(true);
		} else {
			// The first non-runtime argument starts the command: copy the rest as is.
			for (; i < *argc; i++)
				argv[out++] = argv[i];
			break;
		}
	}
	*argc = out;
	argv[out] = NULL;
	return 0;
}

static void apply_env(struct rt_options *opts)
{
	const char *dir = getenv("MOONSTACK_LUA_DIR");
	if (!opts->lua_dir && dir && *dir)
		opts->lua_dir = dir;
	const char *level = getenv("MOONSTACK_LOG_LEVEL");
	if (level && rt_log_level_parse(level) >= 0)
		rt_log_set_level((enum rt_log_level)rt_log_level_parse(level));
	const char *json = getenv("MOONSTACK_LOG_JSON");
	if (json && strcmp(json, "1") == 0)
		rt_log_set_json(true);
}

struct cli_args {
	int argc;
	char **argv;
};

/* Protected trampoline: require('moonstack.cli').main(args) -> exit code or nil */
static int call_cli(lua_State *L)
{
	const struct cli_args *a = lua_touserdata(L, 1);
	lua_getglobal(L, "require");
	lua_pushstring(L, "moonstack.cli");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "main");
	lua_createtable(L, a->argc, 1);
	lua_pushstring(L, a->argv[0]);
	lua_rawseti(L, -2, 0);
	for (int i = 1; i < a->argc; i++) {
		lua_pushstring(L, a->argv[i]);
		lua_rawseti(L, -2, i);
	}
	lua_call(L, 1, 1);
	return 1;
}

int main(int argc, char **argv)
{
	struct rt_options opts = { 0 };

	signal(SIGPIPE, SIG_IGN);
	apply_env(&opts);
	if (parse_early(&argc, argv, &opts) != 0)
		return 2;
	// A policy worker (moonstack.policy.pool) needs no runtime, and starts fast without it.
	if (argc > 1 && strcmp(argv[1], "policy-worker") == 0)
		return rt_policy_worker_main(argc - 1, argv + 1);
	// Namespaces for a CVM's process tree or its Docker engine: set up, then exec.
	if (argc > 1 && strcmp(argv[1], "ns-exec") == 0)
		return rt_ns_exec_main(argc - 1, argv + 1);
	struct rt_runtime *rt = rt_create(&opts);
	if (!rt)
		return 70;
	lua_State *L = rt_state(rt);

	struct cli_args a = { argc, argv };
	lua_pushcfunction(L, call_cli);
	lua_pushlightuserdata(L, &a);
	// A startup error is fatal: report it with its traceback and do not run the loop.
	if (rt_pcall_log(L, 1, 1, "startup") != 0) {
		rt_request_exit(rt, 1);
	} else {
		if (lua_isnumber(L, -1) && !rt_exit_requested(rt))
			rt_set_exit_code(rt, (int)lua_tointeger(L, -1));
		lua_pop(L, 1);
	}
	rt_run(rt);
	int code = rt_exit_code(rt);
	rt_destroy(rt);
	return code;
}
