/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Quotes through configfs-tsm (tdx_guest.h): <entry>/{inblob,outblob,generation,provider} with
 * dstack's exact sequence and generation checks, so a concurrent writer (another process
 * sharing the entry) is detected instead of returning someone else's quote.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tdx/tdx_guest.h"

#define REPORT_DIR	  "/sys/kernel/config/tsm/report"
#define PATH_MAX_OVERRIDE 240
#define OUTBLOB_BUF	  8192

static unsigned opt(unsigned v, unsigned def)
{
	return v ? v : def;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int join(char *out, size_t outlen, const char *a, const char *b, struct tdx_error *err)
{
	if ((size_t)snprintf(out, outlen, "%s/%s", a, b) >= outlen)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "path too long: %s/%s", a,
				b);
	return 0;
}

/* Read a small text file into @buf (NUL-terminated, whitespace trimmed); bytes or -errno. */
static int read_small(const char *path, char *buf, size_t buflen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	do {
		n = read(fd, buf, buflen - 1);
	} while (n < 0 && errno == EINTR);
	int e = errno;
	close(fd);
	if (n < 0)
		return -e;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	return (int)n;
}

static int check_provider(const char *entry, unsigned retries, unsigned wait_ms,
			  struct tdx_error *err)
{
	char path[4096], text[128];
	int n = -ENOENT;

	if (join(path, sizeof(path), entry, "provider", err))
		return -EINVAL;
	for (unsigned i = 0; i < retries; i++) {
		n = read_small(path, text, sizeof(text));
		if (n != -ENOENT)
			break;
		if (i + 1 < retries)
			sleep_ms(wait_ms);
	}
	if (n == -ENOENT)
		return tdx_fail(err, -ENOENT, "ENOENT", TDX_NO_OFFSET,
				"configfs-tsm: no provider file in %s", entry);
	if (n < 0)
		return tdx_fail(err, n, tdx_errno_code(n), TDX_NO_OFFSET, "read %s: %s", path,
				strerror(-n));
	if (strncmp(text, "tdx_guest", 9) != 0)
		return tdx_fail(err, -ENOTSUP, "ENOTSUP", TDX_NO_OFFSET,
				"configfs-tsm: provider of %s is '%s', not tdx_guest", entry, text);
	return 0;
}

int tdx_tsm_entry(const struct tdx_tsm_opts *opts, char *out, size_t outlen, struct tdx_error *err)
{
	static const struct tdx_tsm_opts defaults;
	struct stat st;
	char report[4096];

	if (!opts)
		opts = &defaults;
	unsigned retries = opt(opts->provider_retries, 5);
	unsigned wait = opt(opts->provider_wait_ms, 20);
	if (opts->entry) {
		const char *e = opts->entry;
		if (!*e)
			return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
					"configfs-tsm: empty path override");
		if (e[0] != '/')
			return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
					"configfs-tsm: path override must be absolute: %s", e);
		if (strlen(e) >= PATH_MAX_OVERRIDE)
			return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
					"configfs-tsm: path override longer than %d characters",
					PATH_MAX_OVERRIDE - 1);
		if (stat(e, &st) < 0)
			return tdx_fail(err, -errno, tdx_errno_code(-errno), TDX_NO_OFFSET,
					"configfs-tsm: %s: %s", e, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
					"configfs-tsm: %s is not a directory", e);
		if (strlen(e) >= outlen)
			return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "path too long");
		strcpy(out, e);
		return check_provider(out, retries, wait, err);
	}
	const char *root = opts->root ? opts->root : "";
	if ((size_t)snprintf(report, sizeof(report), "%s%s", root, REPORT_DIR) >= sizeof(report))
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "root path too long");
	int rc = join(out, outlen, report, opts->entry_name ? opts->entry_name : "com.intel.dcap",
		      err);
	if (rc)
		return rc;
	if (stat(out, &st) < 0) {
		if (errno != ENOENT)
			return tdx_fail(err, -errno, tdx_errno_code(-errno), TDX_NO_OFFSET,
					"configfs-tsm: %s: %s", out, strerror(errno));
		if (mkdir(out, 0700) < 0 && errno != EEXIST) {
			int e = errno;
			if (e == ENOENT)
				return tdx_fail(err, -ENOENT, "ENOENT", TDX_NO_OFFSET,
						"configfs-tsm is not available: %s does not exist",
						report);
			return tdx_fail(err, -e, tdx_errno_code(-e), TDX_NO_OFFSET,
					"configfs-tsm: mkdir %s: %s", out, strerror(e));
		}
	} else if (!S_ISDIR(st.st_mode)) {
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
				"configfs-tsm: %s is not a directory", out);
	}
	return check_provider(out, retries, wait, err);
}

static int read_generation(const char *entry, unsigned long long *gen, struct tdx_error *err)
{
	char path[4096], text[64], *end;
	int n;

	if (join(path, sizeof(path), entry, "generation", err))
		return -EINVAL;
	n = read_small(path, text, sizeof(text));
	if (n < 0)
		return tdx_fail(err, n, tdx_errno_code(n), TDX_NO_OFFSET, "read %s: %s", path,
				strerror(-n));
	errno = 0;
	*gen = strtoull(text, &end, 10);
	if (n == 0 || *end || errno || !isdigit((unsigned char)text[0]))
		return tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET,
				"configfs-tsm: %s is not a number: '%s'", path, text);
	return 0;
}

static int write_inblob(const char *path, const struct tdx_tsm_opts *opts,
			const uint8_t report_data[TDX_REPORT_DATA_LEN], struct tdx_error *err)
{
	unsigned tries = opt(opts->busy_retries, 3);
	int e = 0;

	for (unsigned i = 0; i < tries; i++) {
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return tdx_fail(err, -errno, tdx_errno_code(-errno), TDX_NO_OFFSET,
					"open %s: %s", path, strerror(errno));
		ssize_t n;
		do {
			n = write(fd, report_data, TDX_REPORT_DATA_LEN);
		} while (n < 0 && errno == EINTR);
		e = errno;
		close(fd);
		if (n == TDX_REPORT_DATA_LEN)
			return 0;
		if (n >= 0)
			return tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET,
					"write %s: short write (%zd of 64 bytes)", path, n);
		if (e != EBUSY)
			return tdx_fail(err, -e, tdx_errno_code(-e), TDX_NO_OFFSET, "write %s: %s",
					path, strerror(e));
		if (i + 1 < tries)
			sleep_ms(opt(opts->busy_sleep_ms, 10000));
	}
	return tdx_fail(err, -EBUSY, "EBUSY", TDX_NO_OFFSET,
			"configfs-tsm: %s stayed busy after %u tries", path, tries);
}

static int read_outblob(const char *path, const struct tdx_tsm_opts *opts, uint8_t *buf,
			size_t *len, struct tdx_error *err)
{
	unsigned tries = opt(opts->busy_retries, 3);

	for (unsigned i = 0; i < tries; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return tdx_fail(err, -errno, tdx_errno_code(-errno), TDX_NO_OFFSET,
					"open %s: %s", path, strerror(errno));
		ssize_t n = read(fd, buf, OUTBLOB_BUF); /* one read(), as dstack */
		int e = errno;
		close(fd);
		if (n > 0) {
			*len = (size_t)n;
			return 0;
		}
		if (n == 0)
			return tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET,
					"configfs-tsm: %s is empty (no quote)", path);
		if (e != EBUSY && e != EINTR && e != ETIMEDOUT)
			return tdx_fail(err, -e, tdx_errno_code(-e), TDX_NO_OFFSET, "read %s: %s",
					path, strerror(e));
		if (i + 1 < tries)
			sleep_ms(opt(opts->busy_sleep_ms, 10000));
	}
	return tdx_fail(err, -EBUSY, "EBUSY", TDX_NO_OFFSET,
			"configfs-tsm: %s stayed busy after %u tries", path, tries);
}

static void step(const struct tdx_tsm_opts *opts, enum tdx_tsm_step s, const char *entry)
{
	if (opts->hook)
		opts->hook(opts->hook_ud, s, entry);
}

/* The sequence proper, with the entry resolved and the process-wide lock held. */
static int get_quote(const struct tdx_tsm_opts *opts, const char *entry,
		     const uint8_t report_data[TDX_REPORT_DATA_LEN], uint8_t *buf, size_t *len,
		     struct tdx_error *err)
{
	char inblob[4096], outblob[4096];
	unsigned long long g1, g2, g3;
	int rc;

	if ((rc = join(inblob, sizeof(inblob), entry, "inblob", err)) ||
	    (rc = join(outblob, sizeof(outblob), entry, "outblob", err)))
		return rc;
	/* 1. inter-process lock on inblob */
	int lock = open(inblob, O_WRONLY | O_CLOEXEC);
	if (lock < 0)
		return tdx_fail(err, -errno, tdx_errno_code(-errno), TDX_NO_OFFSET, "open %s: %s",
				inblob, strerror(errno));
	while ((rc = flock(lock, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (rc < 0) {
		rc = tdx_fail(err, -errno, "EIO", TDX_NO_OFFSET, "flock %s: %s", inblob,
			      strerror(errno));
		goto out;
	}
	step(opts, TDX_TSM_LOCKED, entry);
	/* 2-3. generation before, then the report data */
	if ((rc = read_generation(entry, &g1, err)) ||
	    (rc = write_inblob(inblob, opts, report_data, err)))
		goto out;
	step(opts, TDX_TSM_WRITTEN, entry);
	/* 4. wait for the kernel to bump the generation, by exactly one */
	long long deadline = now_ms() + opt(opts->timeout_ms, 5000);
	for (;;) {
		if ((rc = read_generation(entry, &g2, err)))
			goto out;
		if (g2 != g1)
			break;
		if (now_ms() >= deadline) {
			rc = tdx_fail(err, -ETIMEDOUT, "ETIMEDOUT", TDX_NO_OFFSET,
				      "configfs-tsm: generation stayed at %llu for %u ms", g1,
				      opt(opts->timeout_ms, 5000));
			goto out;
		}
		sleep_ms(opt(opts->poll_ms, 10));
	}
	if (g2 != g1 + 1) {
		rc = tdx_fail(err, -EBUSY, "EBUSY", TDX_NO_OFFSET,
			      "configfs-tsm: generation went from %llu to %llu: another writer "
			      "raced us",
			      g1, g2);
		goto out;
	}
	step(opts, TDX_TSM_GENERATION, entry);
	/* 5. one read of the quote */
	if ((rc = read_outblob(outblob, opts, buf, len, err)))
		goto out;
	step(opts, TDX_TSM_READ, entry);
	/* 6. nobody wrote meanwhile */
	if ((rc = read_generation(entry, &g3, err)))
		goto out;
	if (g3 != g2) {
		rc = tdx_fail(err, -EBUSY, "EBUSY", TDX_NO_OFFSET,
			      "configfs-tsm: generation changed from %llu to %llu while the quote "
			      "was read",
			      g2, g3);
		goto out;
	}
	/* 7. plausible size */
	if (*len <= TDX_QUOTE_MIN_LEN || *len >= TDX_QUOTE_MAX_LEN)
		rc = tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET,
			      "configfs-tsm: outblob has %zu bytes (a quote has %d..%d)", *len,
			      TDX_QUOTE_MIN_LEN + 1, TDX_QUOTE_MAX_LEN - 1);
out:
	close(lock); /* releases the flock */
	return rc;
}

int tdx_tsm_get_quote(const struct tdx_tsm_opts *opts,
		      const uint8_t report_data[TDX_REPORT_DATA_LEN], uint8_t **quote, size_t *len,
		      struct tdx_error *err)
{
	static const struct tdx_tsm_opts defaults;
	char entry[4096];
	int rc;

	*quote = NULL;
	*len = 0;
	if (!opts)
		opts = &defaults;
	uint8_t *buf = malloc(OUTBLOB_BUF);
	if (!buf)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
	tdx_quote_lock();
	rc = tdx_tsm_entry(opts, entry, sizeof(entry), err);
	if (!rc)
		rc = get_quote(opts, entry, report_data, buf, len, err);
	tdx_quote_unlock();
	if (rc) {
		free(buf);
		*len = 0;
		return rc;
	}
	*quote = buf;
	return 0;
}
