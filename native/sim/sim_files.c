/* SPDX-License-Identifier: Apache-2.0 */
/* Files of the simulator state directory: atomic 0600 writes, whole-file reads, the
 * directory lock, directory creation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/sim_internal.h"

int sim_path(struct sim *s, char *out, size_t size, const char *name)
{
	int n = snprintf(out, size, "%s/%s", s->dir, name);
	if (n < 0 || (size_t)n >= size)
		return sim_fail(s, SIM_EINVAL, "path too long: %s/%s", s->dir, name);
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void fsync_parent(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	if (n == 0 || n >= sizeof(dir))
		return;
	memcpy(dir, path, n);
	dir[n] = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int sim_write_atomic(struct sim *s, const char *path, const void *data, size_t len)
{
	char tmp[4200];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return sim_fail(s, SIM_EINVAL, "path too long: %s", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sim_fail(s, SIM_EIO, "cannot create %s: %s", tmp, strerror(errno));
	/* O_CREAT keeps the mode of a leftover temporary file: force 0600. */
	int rc = fchmod(fd, 0600) < 0 ? -errno : 0;
	if (rc == 0)
		rc = write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return sim_fail(s, SIM_EIO, "cannot write %s: %s", path, strerror(-rc));
	}
	fsync_parent(path);
	return 0;
}

int sim_read_file(const char *path, char **data, size_t *len)
{
	*data = NULL;
	if (len)
		*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > 16 * 1024 * 1024) {
		close(fd);
		return -EINVAL;
	}
	size_t size = (size_t)st.st_size, got = 0;
	char *buf = malloc(size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != size) {
		free(buf);
		return -EIO;
	}
	buf[got] = '\0';
	*data = buf;
	if (len)
		*len = got;
	return 0;
}

int sim_mkdirs(const char *dir)
{
	char path[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(path))
		return -EINVAL;
	memcpy(path, dir, n + 1);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return -errno;
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int sim_lock(struct sim *s, bool exclusive)
{
	char path[4096];
	int rc = sim_path(s, path, sizeof(path), "lock");
	if (rc < 0)
		return rc;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sim_fail(s, SIM_EIO, "cannot open %s: %s", path, strerror(errno));
	while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
		if (errno == EINTR)
			continue;
		int e = errno;
		close(fd);
		return sim_fail(s, SIM_EIO, "cannot lock %s: %s", path, strerror(e));
	}
	return fd;
}

void sim_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* releases the flock */
}
