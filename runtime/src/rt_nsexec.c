/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `moonstack ns-exec` (hidden): run a program in new namespaces, for the VMM's process backend
 * and the per-CVM Docker engine. Runs without the Lua runtime, then execs:
 *
 *   moonstack ns-exec [--net | --net-join PATH | --net-pid PID] [--mount] -- PROG [ARGS...]
 *
 *   --net        a new network namespace with only its loopback, up (the CVM's network)
 *   --net-join   enter an existing network namespace (a path or /proc/PID/ns/net)
 *   --mount      a new mount namespace with private propagation: what PROG and its children
 *                mount (dockerd's overlays, nsfs bind mounts) never shows on the host and is
 *                gone when the last of them exits
 *
 * A namespace that cannot be made is refused, never skipped: it prints
 * "moonstack ns-exec: CODE: message" and exits 126 (EPERM where namespaces are not permitted);
 * a program that cannot be executed exits 127. PROG is looked up in PATH.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moonstack/rt.h"
#include "netns/netns.h"

static int usage(void)
{
	fprintf(stderr, "usage: moonstack ns-exec [--net | --net-join PATH | --net-pid PID] "
			"[--mount] -- PROG [ARGS...]\n");
	return 2;
}

static int refuse(const struct netns_error *e)
{
	fprintf(stderr, "moonstack ns-exec: %s: %s\n", e->code, e->msg);
	return 126;
}

int rt_ns_exec_main(int argc, char **argv)
{
	int new_net = 0, new_mount = 0, i = 1, pid = 0;
	const char *join = NULL;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		} else if (strcmp(a, "--net") == 0) {
			new_net = 1;
		} else if (strcmp(a, "--mount") == 0) {
			new_mount = 1;
		} else if (strcmp(a, "--net-join") == 0 && i + 1 < argc) {
			join = argv[++i];
		} else if (strcmp(a, "--net-pid") == 0 && i + 1 < argc) {
			pid = atoi(argv[++i]);
			if (pid <= 0)
				return usage();
		} else {
			return usage();
		}
	}
	if (i >= argc || new_net + (join != NULL) + (pid > 0) > 1)
		return usage();
	struct netns_error e;
	if (new_mount && netns_unshare_mounts(&e) < 0)
		return refuse(&e);
	if (new_net && netns_unshare_net(&e) < 0)
		return refuse(&e);
	if (join || pid > 0) {
		int fd = join ? netns_open(join, &e) : netns_open_pid(pid, &e);
		if (fd < 0 || netns_enter(fd, &e) < 0)
			return refuse(&e);
		close(fd);
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "moonstack ns-exec: %s: cannot execute %s: %s\n",
		errno == ENOENT ? "ENOENT" : "EIO", argv[i], strerror(errno));
	return 127;
}
