/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netns: Linux network (and mount) namespaces for the VMM's process backend. A CVM run as a
 * process tree gets a network namespace of its own (loopback up, nothing else), so its app can
 * listen on 0.0.0.0 without touching the host's ports; the VMM then maps host ports into it by
 * creating sockets *inside* that namespace (netns_socket) without any process of its own there.
 *
 * Every function returns a value >= 0 or a negative errno; when @p err is not NULL it gets a
 * stable code (EPERM, ENOENT, EINVAL, ENOTSUP, EIO) and a message naming what failed.
 */
#ifndef MOONSTACK_NETNS_H
#define MOONSTACK_NETNS_H

#include <stdint.h>

/** An error: a stable upper-case code and a message. */
struct netns_error {
	char code[16];
	char msg[256];
};

/** Open the network namespace at @p path (e.g. /proc/PID/ns/net or /run/netns/NAME): an
 *  O_CLOEXEC fd, checked to be a network namespace. */
int netns_open(const char *path, struct netns_error *err);

/** Open the network namespace of process @p pid. */
int netns_open_pid(int pid, struct netns_error *err);

/**
 * Create a new network namespace with its loopback up, without moving the caller: the calling
 * thread unshares, opens the new namespace, brings `lo` up and returns to its own namespace.
 * Returns an fd on the new namespace (it lives while the fd or a process in it does).
 */
int netns_create(struct netns_error *err);

/**
 * A socket (@p domain AF_INET/AF_INET6, @p type SOCK_STREAM/SOCK_DGRAM) created inside the
 * namespace @p nsfd: the calling thread enters it, creates the socket (non-blocking,
 * close-on-exec) and returns to its own namespace. The socket stays in @p nsfd's namespace for
 * its whole life: bind, listen and connect act there. If the thread cannot return to its own
 * namespace the process aborts (it would otherwise go on in the CVM's network).
 */
int netns_socket(int nsfd, int domain, int type, struct netns_error *err);

/** The inode identifying the namespace behind @p nsfd (equal inodes: same namespace). */
int netns_inode(int nsfd, uint64_t *ino, struct netns_error *err);

/** The calling thread's own network namespace inode. */
int netns_self_inode(uint64_t *ino, struct netns_error *err);

/** Bring the loopback interface of the caller's current network namespace up. */
int netns_lo_up(struct netns_error *err);

/** Move the calling thread into a new network namespace with its loopback up (for a process
 *  about to exec). */
int netns_unshare_net(struct netns_error *err);

/** Move the calling thread into the network namespace @p nsfd. */
int netns_enter(int nsfd, struct netns_error *err);

/** Move the calling process into a new mount namespace whose mounts are all private, so what
 *  it (and its children) mount is gone with them and never shows on the host. */
int netns_unshare_mounts(struct netns_error *err);

#endif
