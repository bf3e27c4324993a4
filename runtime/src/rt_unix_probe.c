/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Is a daemon serving a unix socket path? The one liveness probe: the HTTP listeners (before
 * they replace a stale socket file) and the control socket (moonstack.native.runtime's
 * unix_socket_state) both ask it, so they never disagree on what "someone is serving" means.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "moonstack/rt_base.h"

int rt_unix_socket_probe(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = rc == 0 ? 0 : errno;
	close(fd);
	if (rc == 0 || e == EAGAIN) // EAGAIN: a full backlog, so someone listens
		return 1;
	if (e == ECONNREFUSED || e == ENOENT)
		return 0;
	return -e;
}
