/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Network and mount namespaces (netns.h): open, create without moving the caller, sockets
 * created inside a namespace, loopback up, and the unshare/setns steps of `moonstack ns-exec`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/nsfs.h>

#include "netns/netns.h"

static const char *code_of(int e)
{
	switch (e) {
	case EPERM:
	case EACCES:
		return "EPERM";
	case ENOENT:
	case ESRCH:
		return "ENOENT";
	case EINVAL:
		return "EINVAL";
	case ENOSYS:
	case EOPNOTSUPP:
		return "ENOTSUP";
	case EMFILE:
	case ENFILE:
		return "EMFILE";
	default:
		return "EIO";
	}
}

/* Record errno @p e with a message; returns -e. */
__attribute__((format(printf, 3, 4))) static int fail(struct netns_error *err, int e,
						      const char *fmt, ...)
{
	if (err) {
		snprintf(err->code, sizeof(err->code), "%s", code_of(e));
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < sizeof(err->msg))
			snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(e));
	}
	return -e;
}

int netns_open(const char *path, struct netns_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errno, "cannot open the network namespace %s", path);
	int type = ioctl(fd, NS_GET_NSTYPE);
	if (type != CLONE_NEWNET) {
		int e = type < 0 ? errno : EINVAL;
		close(fd);
		if (e == ENOTTY || e == EINVAL)
			return fail(err, EINVAL, "%s is not a network namespace", path);
		return fail(err, e, "cannot check the namespace %s", path);
	}
	return fd;
}

int netns_open_pid(int pid, struct netns_error *err)
{
	char path[64];
	if (pid <= 0)
		return fail(err, EINVAL, "invalid pid %d", pid);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	return netns_open(path, err);
}

static int self_fd(struct netns_error *err)
{
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, errno, "cannot open this thread's network namespace");
	return fd;
}

/* Back to @p self or abort: going on inside another namespace is never acceptable. */
static void return_to(int self)
{
	if (setns(self, CLONE_NEWNET) != 0) {
		fprintf(stderr,
			"moonstack: netns: cannot return to the own network namespace: %s\n",
			strerror(errno));
		abort();
	}
	close(self);
}

int netns_lo_up(struct netns_error *err)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fail(err, errno, "cannot open a socket to configure lo");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
	if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	int e = errno;
	close(s);
	if (rc != 0)
		return fail(err, e, "cannot bring lo up");
	return 0;
}

int netns_create(struct netns_error *err)
{
	int self = self_fd(err);
	if (self < 0)
		return self;
	if (unshare(CLONE_NEWNET) != 0) {
		int e = errno;
		close(self);
		return fail(err, e, "cannot create a network namespace");
	}
	int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int rc = fd < 0 ? fail(err, errno, "cannot open the new network namespace")
			: netns_lo_up(err);
	return_to(self);
	if (rc < 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

int netns_socket(int nsfd, int domain, int type, struct netns_error *err)
{
	int self = self_fd(err);
	if (self < 0)
		return self;
	if (setns(nsfd, CLONE_NEWNET) != 0) {
		int e = errno;
		close(self);
		return fail(err, e, "cannot enter the network namespace");
	}
	int s = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int e = errno;
	return_to(self);
	if (s < 0)
		return fail(err, e, "cannot create a socket in the network namespace");
	return s;
}

int netns_inode(int nsfd, uint64_t *ino, struct netns_error *err)
{
	struct stat st;
	if (fstat(nsfd, &st) != 0)
		return fail(err, errno, "cannot stat the namespace");
	*ino = (uint64_t)st.st_ino;
	return 0;
}

int netns_self_inode(uint64_t *ino, struct netns_error *err)
{
	struct stat st;
	if (stat("/proc/thread-self/ns/net", &st) != 0)
		return fail(err, errno, "cannot stat this thread's network namespace");
	*ino = (uint64_t)st.st_ino;
	return 0;
}

int netns_unshare_net(struct netns_error *err)
{
	if (unshare(CLONE_NEWNET) != 0)
		return fail(err, errno, "cannot create a network namespace");
	return netns_lo_up(err);
}

int netns_enter(int nsfd, struct netns_error *err)
{
	if (setns(nsfd, CLONE_NEWNET) != 0)
		return fail(err, errno, "cannot enter the network namespace");
	return 0;
}

int netns_unshare_mounts(struct netns_error *err)
{
	if (unshare(CLONE_NEWNS) != 0)
		return fail(err, errno, "cannot create a mount namespace");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return fail(err, errno, "cannot make the mounts private");
	return 0;
}
