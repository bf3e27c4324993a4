/* SPDX-License-Identifier: Apache-2.0 */
/*
 * RTMRs: SHA-384 extend and replay of event logs (tdx_eventlog.h), and extending/reading them
 * through the in-tree driver's sysfs measurement files (tdx_guest.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tdx/tdx_eventlog.h"
#include "tdx/tdx_guest.h"

void tdx_rtmr_extend(uint8_t mr[TDX_MR_LEN], const uint8_t digest[TDX_MR_LEN])
{
	uint8_t buf[2 * TDX_MR_LEN];

	memcpy(buf, mr, TDX_MR_LEN);
	memcpy(buf + TDX_MR_LEN, digest, TDX_MR_LEN);
	tdx_sha384(buf, sizeof(buf), mr);
}

int tdx_event_digest(const struct tdx_event *ev, uint8_t digest[TDX_MR_LEN], struct tdx_error *err)
{
	if (ev->event_type == TDX_RUNTIME_EVENT_TYPE)
		return tdx_runtime_digest(ev->version, ev->name, ev->name_len, ev->payload,
					  ev->payload_len, digest, err);
	if (ev->digest_len != TDX_MR_LEN)
		return tdx_fail(err, -EBADMSG, "EEVENTLOG", TDX_NO_OFFSET,
				"the event has a %zu-byte digest (48 needed)", ev->digest_len);
	memcpy(digest, ev->digest, TDX_MR_LEN);
	return 0;
}

int tdx_replay(const struct tdx_event *ev, size_t n, const char *until,
	       uint8_t rtmr[TDX_RTMR_COUNT][TDX_MR_LEN], struct tdx_error *err)
{
	uint8_t d[TDX_MR_LEN];
	size_t until_len = until ? strlen(until) : 0;

	memset(rtmr, 0, TDX_RTMR_COUNT * TDX_MR_LEN);
	for (size_t i = 0; i < n; i++) {
		const struct tdx_event *e = &ev[i];
		if (e->imr >= TDX_RTMR_COUNT)
			return tdx_fail(err, -EBADMSG, "EEVENTLOG", TDX_NO_OFFSET,
					"event %zu: imr %u is not an RTMR (0..3)", i, e->imr);
		int rc = tdx_event_digest(e, d, err);
		if (rc) {
			if (err) {
				char msg[sizeof(err->msg)];
				memcpy(msg, err->msg, sizeof(msg));
				int k = snprintf(err->msg, sizeof(err->msg), "event %zu: ", i);
				if (k > 0 && (size_t)k < sizeof(err->msg))
					snprintf(err->msg + k, sizeof(err->msg) - (size_t)k, "%.*s",
						 (int)(sizeof(err->msg) - (size_t)k - 1), msg);
			}
			return rc;
		}
		tdx_rtmr_extend(rtmr[e->imr], d);
		if (until && e->event_type == TDX_RUNTIME_EVENT_TYPE && e->name_len == until_len &&
		    memcmp(e->name, until, until_len) == 0)
			break;
	}
	return 0;
}

static int mr_path(const char *dir, const char *name, char *out, size_t outlen,
		   struct tdx_error *err)
{
	if (!dir || !*dir)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
				"no sysfs measurements directory");
	if ((size_t)snprintf(out, outlen, "%s/%s:sha384", dir, name) >= outlen)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "path too long");
	return 0;
}

static int sys_fail(struct tdx_error *err, int e, const char *what, const char *path)
{
	if (e == EINVAL)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "%s %s: invalid RTMR index",
				what, path);
	return tdx_fail(err, -e, tdx_errno_code(-e), TDX_NO_OFFSET, "%s %s: %s", what, path,
			strerror(e));
}

int tdx_sysfs_extend_rtmr(const char *dir, unsigned index, const uint8_t digest[TDX_MR_LEN],
			  struct tdx_error *err)
{
	char path[4096], name[16];
	int rc;

	if (index >= TDX_RTMR_COUNT)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
				"RTMR index %u out of range (0..3)", index);
	snprintf(name, sizeof(name), "rtmr%u", index);
	if ((rc = mr_path(dir, name, path, sizeof(path), err)))
		return rc;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_fail(err, errno, "open", path);
	ssize_t n;
	do {
		n = write(fd, digest, TDX_MR_LEN);
	} while (n < 0 && errno == EINTR);
	int e = errno;
	close(fd);
	if (n < 0)
		return sys_fail(err, e, "write", path);
	if (n != TDX_MR_LEN)
		return tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET,
				"write %s: short write (%zd of 48)", path, n);
	return 0;
}

int tdx_sysfs_read_mr(const char *dir, const char *name, uint8_t out[TDX_MR_LEN],
		      struct tdx_error *err)
{
	char path[4096];
	uint8_t buf[TDX_MR_LEN + 1];
	int rc;

	if (!name || (strcmp(name, "mrtd") != 0 && strcmp(name, "rtmr0") != 0 &&
		      strcmp(name, "rtmr1") != 0 && strcmp(name, "rtmr2") != 0 &&
		      strcmp(name, "rtmr3") != 0))
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
				"measurement must be mrtd or rtmr0..rtmr3");
	if ((rc = mr_path(dir, name, path, sizeof(path), err)))
		return rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sys_fail(err, errno, "open", path);
	size_t got = 0;
	while (got < sizeof(buf)) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return sys_fail(err, e, "read", path);
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (got != TDX_MR_LEN)
		return tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET, "read %s: %zu bytes, expected 48",
				path, got);
	memcpy(out, buf, TDX_MR_LEN);
	return 0;
}
