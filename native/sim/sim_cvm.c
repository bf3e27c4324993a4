/* SPDX-License-Identifier: Apache-2.0 */
/* Per-CVM TD state: one key=value file per CVM under <dir>/cvms/, read and written under the
 * directory lock; RTMR extension (SHA-384 of the old value and the digest). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/sim_internal.h"

#define TD_FIELDS(X)     \
	X(td_attributes) \
	X(xfam)          \
	X(mrtd)          \
	X(mr_config_id)  \
	X(mr_owner)      \
	X(mr_owner_config)

bool sim_cvm_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > SIM_CVM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum =
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

void sim_td_defaults(struct sim_td *td)
{
	memset(td, 0, sizeof(*td));
	td->td_attributes[3] = 0x10; /* bit 28: SEPT_VE_DISABLE */
	td->xfam[0] = 0xE7;
	td->xfam[1] = 0x02;
	td->xfam[2] = 0x06;
}

static int cvm_path(struct sim *s, const char *name, char *out, size_t size)
{
	if (!sim_cvm_name_valid(name))
		return sim_fail(s, SIM_EINVAL,
				"invalid CVM name (want [A-Za-z0-9][A-Za-z0-9._-]*, "
				"at most %d characters)",
				SIM_CVM_NAME_MAX);
	int n = snprintf(out, size, "%s/cvms/%s.state", s->dir, name);
	if (n < 0 || (size_t)n >= size)
		return sim_fail(s, SIM_EINVAL, "path too long for CVM %s", name);
	return 0;
}

/* The state file of CVM `name` in `out`, then the platform lock (shared or exclusive):
 * returns the lock fd (>= 0) for sim_unlock, or a negative SIM_E* code. */
static int cvm_open(struct sim *s, const char *name, char *out, size_t size, bool exclusive)
{
	int rc = cvm_path(s, name, out, size);
	if (rc < 0)
		return rc;
	return sim_lock(s, exclusive);
}

static int write_td(struct sim *s, const char *path, const struct sim_td *td)
{
	struct sim_buf b = { 0 };
	sim_buf_puts(&b, "# moonstack TDX simulator: CVM state\nversion=1\n");
#define X(f)                                          \
	sim_buf_puts(&b, #f "=");                     \
	sim_buf_hex(&b, td->f, sizeof(td->f), false); \
	sim_buf_puts(&b, "\n");
	TD_FIELDS(X)
#undef X
	for (int i = 0; i < SIM_RTMR_COUNT; i++) {
		sim_buf_printf(&b, "rtmr%d=", i);
		sim_buf_hex(&b, td->rtmr[i], SIM_MR_LEN, false);
		sim_buf_puts(&b, "\n");
	}
	char *text = NULL;
	size_t len = 0;
	if (sim_buf_finish(&b, &text, &len) < 0)
		return sim_fail(s, SIM_ENOMEM, "out of memory");
	int rc = sim_write_atomic(s, path, text, len);
	free(text);
	return rc;
}

static int read_td(struct sim *s, const char *name, const char *path, struct sim_td *td)
{
	char *text = NULL;
	int rc = sim_read_file(path, &text, NULL);
	if (rc == -ENOENT)
		return sim_fail(s, SIM_ENOENT, "no CVM named %s", name);
	if (rc < 0)
		return sim_fail(s, SIM_EIO, "cannot read %s: %s", path, strerror(-rc));
	rc = 0;
#define X(f)                                                           \
	if (rc == 0 && sim_kv_hex(text, #f, td->f, sizeof(td->f)) < 0) \
		rc = -1;
	TD_FIELDS(X)
#undef X
	for (int i = 0; rc == 0 && i < SIM_RTMR_COUNT; i++) {
		char key[8];
		snprintf(key, sizeof(key), "rtmr%d", i);
		if (sim_kv_hex(text, key, td->rtmr[i], SIM_MR_LEN) < 0)
			rc = -1;
	}
	free(text);
	if (rc < 0)
		return sim_fail(s, SIM_ESTATE, "%s is corrupt", path);
	return 0;
}

int sim_cvm_create(struct sim *s, const char *name, const struct sim_td *td, bool replace)
{
	char path[4096];
	struct sim_td defaults;
	int rc = cvm_path(s, name, path, sizeof(path));
	if (rc < 0)
		return rc;
	if (!td) {
		sim_td_defaults(&defaults);
		td = &defaults;
	}
	int lock = sim_lock(s, true);
	if (lock < 0)
		return lock;
	if (!replace && access(path, F_OK) == 0)
		rc = sim_fail(s, SIM_EEXIST, "CVM %s exists already", name);
	else
		rc = write_td(s, path, td);
	sim_unlock(lock);
	return rc;
}

int sim_cvm_load(struct sim *s, const char *name, struct sim_td *out)
{
	char path[4096];
	int lock = cvm_open(s, name, path, sizeof(path), false);
	if (lock < 0)
		return lock;
	int rc = read_td(s, name, path, out);
	sim_unlock(lock);
	return rc;
}

int sim_cvm_remove(struct sim *s, const char *name)
{
	char path[4096];
	int rc = 0;
	int lock = cvm_open(s, name, path, sizeof(path), true);
	if (lock < 0)
		return lock;
	if (unlink(path) < 0)
		rc = errno == ENOENT
			     ? sim_fail(s, SIM_ENOENT, "no CVM named %s", name)
			     : sim_fail(s, SIM_EIO, "cannot remove %s: %s", path, strerror(errno));
	sim_unlock(lock);
	return rc;
}

int sim_extend_rtmr(struct sim *s, const char *name, unsigned index,
		    const uint8_t digest[SIM_MR_LEN], uint8_t out[SIM_MR_LEN])
{
	char path[4096];
	if (index >= SIM_RTMR_COUNT)
		return sim_fail(s, SIM_EINVAL, "RTMR index %u out of range 0..3", index);
	int lock = cvm_open(s, name, path, sizeof(path), true);
	if (lock < 0)
		return lock;
	struct sim_td td;
	int rc = read_td(s, name, path, &td);
	if (rc == 0) {
		uint8_t buf[2 * SIM_MR_LEN];
		unsigned int n = 0;
		memcpy(buf, td.rtmr[index], SIM_MR_LEN);
		memcpy(buf + SIM_MR_LEN, digest, SIM_MR_LEN);
		if (EVP_Digest(buf, sizeof(buf), td.rtmr[index], &n, EVP_sha384(), NULL) != 1)
			rc = sim_fail_ssl(s, "SHA-384");
	}
	if (rc == 0)
		rc = write_td(s, path, &td);
	if (rc == 0 && out)
		memcpy(out, td.rtmr[index], SIM_MR_LEN);
	sim_unlock(lock);
	return rc;
}
