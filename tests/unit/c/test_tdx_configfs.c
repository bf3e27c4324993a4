/* SPDX-License-Identifier: Apache-2.0 */
/*
 * configfs-tsm (native/tdx/tdx_guest.h) against a fake tree in a temp dir. A thread plays the
 * kernel: when 64 bytes land in inblob it publishes a quote carrying them as report_data in
 * outblob and bumps generation (by one, or by two to play a racing writer). Covered: success
 * (twice, and from two threads at once), the entry created on demand, missing tsm root,
 * missing or foreign provider, path overrides, generation raced before and after the read,
 * no generation change (timeout), empty/short/oversized outblob, garbage generation, missing
 * inblob.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tdx/tdx.h"
#include "tdx_test_util.h"

#define REPORT "/sys/kernel/config/tsm/report"

struct kernel {
	char entry[2048];
	int gen_step;	    /* generation increment per request (1; 2 = a racing writer) */
	long out_len;	    /* bytes of outblob to publish (-1 = the whole quote) */
	bool make_provider; /* create provider & files once the entry dir appears (mkdir) */
	atomic_int stop;
	atomic_int served;
	pthread_t thread;
};

struct tree {
	char root[1024];
	char entry[2048];
};

static uint8_t *g_quote;
static size_t g_quote_len;

static int group_setup(void **state)
{
	g_quote = read_quote_vector("dcap-qvl/quote-from-tappd.hex", &g_quote_len);
	return 0;
}

static int group_teardown(void **state)
{
	free(g_quote);
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = ms * 1000000L };
	nanosleep(&ts, NULL);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096], tmp[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	assert_int_equal(rename(tmp, path), 0); /* readers never see a partial file */
}

static void write_text(const char *dir, const char *name, const char *text)
{
	write_file(dir, name, text, strlen(text));
}

static long read_generation(const char *entry)
{
	char path[4096], buf[64] = { 0 };
	snprintf(path, sizeof(path), "%s/generation", entry);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? atol(buf) : -1;
}

static void mkdirs(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			mkdir(buf, 0700);
			*p = '/';
		}
	}
	mkdir(buf, 0700);
}

static void populate(const char *entry, const char *provider)
{
	mkdirs(entry);
	if (provider)
		write_text(entry, "provider", provider);
	write_text(entry, "inblob", "");
	write_text(entry, "outblob", "");
	write_text(entry, "generation", "0\n");
}

/* A fresh tree: <tmp>/root with the tsm report dir, and the entry populated if @populate. */
static void make_tree(struct tree *t, bool with_report_dir, bool with_entry)
{
	const char *base = getenv("MOONSTACK_TEST_TMP");
	char tmpl[1024];

	if (base && *base)
		mkdirs(base);
	snprintf(tmpl, sizeof(tmpl), "%s/tdx-tsm.XXXXXX", base && *base ? base : "/tmp");
	assert_non_null(mkdtemp(tmpl));
	snprintf(t->root, sizeof(t->root), "%s", tmpl);
	snprintf(t->entry, sizeof(t->entry), "%s" REPORT "/com.intel.dcap", t->root);
	if (with_report_dir) {
		char report[2048];
		snprintf(report, sizeof(report), "%s" REPORT, t->root);
		mkdirs(report);
	}
	if (with_entry)
		populate(t->entry, "tdx_guest\n");
}

static void rm_tree(struct tree *t)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->root);
	assert_int_equal(system(cmd), 0);
}

static void *kernel_main(void *arg)
{
	struct kernel *k = arg;
	char inblob[4096];
	struct stat st;

	snprintf(inblob, sizeof(inblob), "%s/inblob", k->entry);
	while (!atomic_load(&k->stop)) {
		if (k->make_provider && stat(k->entry, &st) == 0) {
			char provider[4096];
			snprintf(provider, sizeof(provider), "%s/provider", k->entry);
			if (stat(provider, &st) != 0)
				populate(k->entry, "tdx_guest\n");
		}
		if (stat(inblob, &st) == 0 && st.st_size == 64) {
			uint8_t rd[64];
			int fd = open(inblob, O_RDONLY);
			assert_int_equal(read(fd, rd, 64), 64);
			close(fd);
			assert_int_equal(truncate(inblob, 0), 0);
			uint8_t *q = malloc(g_quote_len);
			memcpy(q, g_quote, g_quote_len);
			memcpy(q + 568, rd, 64);
			size_t n = k->out_len < 0 ? g_quote_len : (size_t)k->out_len;
			if (n > g_quote_len) {
				q = realloc(q, n);
				memset(q + g_quote_len, 0, n - g_quote_len);
			}
			write_file(k->entry, "outblob", q, n);
			free(q);
			char gen[32];
			snprintf(gen, sizeof(gen), "%ld\n",
				 read_generation(k->entry) + k->gen_step);
			atomic_fetch_add(&k->served, 1);
			write_text(k->entry, "generation", gen);
		}
		sleep_ms(1);
	}
	return NULL;
}

static void kernel_start(struct kernel *k, const char *entry)
{
	snprintf(k->entry, sizeof(k->entry), "%s", entry);
	if (!k->gen_step)
		k->gen_step = 1;
	atomic_store(&k->stop, 0);
	atomic_store(&k->served, 0);
	assert_int_equal(pthread_create(&k->thread, NULL, kernel_main, k), 0);
}

static void kernel_stop(struct kernel *k)
{
	atomic_store(&k->stop, 1);
	pthread_join(k->thread, NULL);
}

static struct tdx_tsm_opts fast_opts(const char *root)
{
	struct tdx_tsm_opts o = { .root = root,
				  .poll_ms = 1,
				  .timeout_ms = 2000,
				  .busy_sleep_ms = 1,
				  .provider_retries = 3,
				  .provider_wait_ms = 5 };
	return o;
}

static void fill_rd(uint8_t rd[64], uint8_t seed)
{
	for (int i = 0; i < 64; i++)
		rd[i] = (uint8_t)(seed + i);
}

/* Expect tdx_tsm_get_quote to fail with @code and a message containing @needle. */
static void expect_fail(const struct tdx_tsm_opts *o, int rc_want, const char *code,
			const char *needle)
{
	uint8_t rd[64], *quote = (uint8_t *)"x";
	size_t len = 1;
	struct tdx_error err = { 0 };

	fill_rd(rd, 1);
	int rc = tdx_tsm_get_quote(o, rd, &quote, &len, &err);
	if (rc == 0)
		fail_msg("expected %s, got a quote", code);
	assert_int_equal(rc, rc_want);
	assert_string_equal(err.code, code);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' lacks '%s'", err.msg, needle);
	assert_null(quote);
	assert_int_equal(len, 0);
}

static enum tdx_tsm_step steps[8];
static int nsteps;

static void record_step(void *ud, enum tdx_tsm_step s, const char *entry)
{
	if (nsteps < 8)
		steps[nsteps++] = s;
	assert_string_equal(entry, (const char *)ud);
}

static void test_success(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = -1 };
	uint8_t rd[64], *quote;
	size_t len;
	struct tdx_error err = { 0 };

	make_tree(&t, true, true);
	kernel_start(&k, t.entry);
	struct tdx_tsm_opts o = fast_opts(t.root);
	o.hook = record_step;
	o.hook_ud = t.entry;
	nsteps = 0;
	for (int round = 1; round <= 2; round++) {
		fill_rd(rd, (uint8_t)(round * 16));
		if (tdx_tsm_get_quote(&o, rd, &quote, &len, &err))
			fail_msg("round %d: %s", round, err.msg);
		assert_int_equal(len, g_quote_len);
		assert_memory_equal(quote + 568, rd, 64); /* our report data reached the "kernel" */
		assert_memory_equal(quote, g_quote, 568);
		assert_memory_equal(quote + 632, g_quote + 632, len - 632);
		free(quote);
		assert_int_equal(read_generation(t.entry), round);
	}
	assert_int_equal(atomic_load(&k.served), 2);
	assert_int_equal(nsteps, 8);
	enum tdx_tsm_step want[] = { TDX_TSM_LOCKED, TDX_TSM_WRITTEN, TDX_TSM_GENERATION,
				     TDX_TSM_READ };
	for (int i = 0; i < 8; i++)
		assert_int_equal(steps[i], want[i % 4]);
	kernel_stop(&k);
	rm_tree(&t);
}

struct worker {
	const struct tdx_tsm_opts *o;
	uint8_t rd[64];
	int rc;
	uint8_t *quote;
	size_t len;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->rc = tdx_tsm_get_quote(w->o, w->rd, &w->quote, &w->len, NULL);
	return NULL;
}

static void test_concurrent_callers_are_serialised(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = -1 };
	struct worker w[3];
	pthread_t th[3];

	make_tree(&t, true, true);
	kernel_start(&k, t.entry);
	struct tdx_tsm_opts o = fast_opts(t.root);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ .o = &o };
		fill_rd(w[i].rd, (uint8_t)(100 + i));
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].rc, 0);
		assert_memory_equal(w[i].quote + 568, w[i].rd, 64);
		free(w[i].quote);
	}
	assert_int_equal(read_generation(t.entry), 3);
	kernel_stop(&k);
	rm_tree(&t);
}

static void test_entry_created_on_demand(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = -1, .make_provider = true };
	uint8_t rd[64], *quote;
	size_t len;
	struct tdx_error err = { 0 };
	struct stat st;

	make_tree(&t, true, false);
	assert_int_equal(stat(t.entry, &st), -1);
	kernel_start(&k, t.entry);
	struct tdx_tsm_opts o = fast_opts(t.root);
	o.provider_retries = 200; /* the "kernel" needs a moment to create the attributes */
	fill_rd(rd, 7);
	if (tdx_tsm_get_quote(&o, rd, &quote, &len, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(stat(t.entry, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_memory_equal(quote + 568, rd, 64);
	free(quote);
	kernel_stop(&k);
	rm_tree(&t);
}

static void test_no_tsm_root(void **state)
{
	struct tree t;

	make_tree(&t, false, false);
	struct tdx_tsm_opts o = fast_opts(t.root);
	expect_fail(&o, -ENOENT, "ENOENT", "configfs-tsm is not available");
	rm_tree(&t);
}

static void test_provider_missing_or_foreign(void **state)
{
	struct tree t;
	char out[4096];
	struct tdx_error err = { 0 };

	make_tree(&t, true, false);
	populate(t.entry, NULL); /* no provider file */
	struct tdx_tsm_opts o = fast_opts(t.root);
	expect_fail(&o, -ENOENT, "ENOENT", "no provider file");
	write_text(t.entry, "provider", "sev_guest\n");
	expect_fail(&o, -ENOTSUP, "ENOTSUP", "'sev_guest', not tdx_guest");
	write_text(t.entry, "provider", "tdx_guest_sim\n");
	assert_int_equal(tdx_tsm_entry(&o, out, sizeof(out), &err), 0);
	assert_string_equal(out, t.entry);
	rm_tree(&t);
}

static void test_path_override(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = -1 };
	struct tdx_tsm_opts o = fast_opts(NULL);
	char longpath[300], file[2100];
	uint8_t rd[64], *quote;
	size_t len;
	struct tdx_error err = { 0 };

	o.entry = "";
	expect_fail(&o, -EINVAL, "EINVAL", "empty path override");
	o.entry = "relative/com.intel.dcap";
	expect_fail(&o, -EINVAL, "EINVAL", "must be absolute");
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	o.entry = longpath;
	expect_fail(&o, -EINVAL, "EINVAL", "longer than 239");

	make_tree(&t, true, true);
	o.entry = "/nonexistent/moonstack-tdx-test";
	expect_fail(&o, -ENOENT, "ENOENT", "No such file");
	snprintf(file, sizeof(file), "%s/provider", t.entry);
	o.entry = file;
	expect_fail(&o, -EINVAL, "EINVAL", "not a directory");
	/* a valid override wins over the root and is used as is */
	o.entry = t.entry;
	o.root = "/nonexistent-root";
	kernel_start(&k, t.entry);
	fill_rd(rd, 9);
	if (tdx_tsm_get_quote(&o, rd, &quote, &len, &err))
		fail_msg("%s", err.msg);
	assert_memory_equal(quote + 568, rd, 64);
	free(quote);
	kernel_stop(&k);
	rm_tree(&t);
}

static void test_generation_raced_before_read(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = -1, .gen_step = 2 };

	make_tree(&t, true, true);
	kernel_start(&k, t.entry);
	struct tdx_tsm_opts o = fast_opts(t.root);
	expect_fail(&o, -EBUSY, "EBUSY", "went from 0 to 2: another writer raced us");
	kernel_stop(&k);
	rm_tree(&t);
}

/* The hook plays another process writing inblob right after our read of outblob. */
static void bump_after_read(void *ud, enum tdx_tsm_step s, const char *entry)
{
	if (s == TDX_TSM_READ) {
		char gen[32];
		snprintf(gen, sizeof(gen), "%ld\n", read_generation(entry) + 1);
		write_text(entry, "generation", gen);
	}
}

static void test_generation_changed_under_us(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = -1 };

	make_tree(&t, true, true);
	kernel_start(&k, t.entry);
	struct tdx_tsm_opts o = fast_opts(t.root);
	o.hook = bump_after_read;
	expect_fail(&o, -EBUSY, "EBUSY", "changed from 1 to 2 while the quote was read");
	kernel_stop(&k);
	rm_tree(&t);
}

static void test_generation_never_moves(void **state)
{
	struct tree t;

	make_tree(&t, true, true); /* no kernel */
	struct tdx_tsm_opts o = fast_opts(t.root);
	o.timeout_ms = 50;
	expect_fail(&o, -ETIMEDOUT, "ETIMEDOUT", "generation stayed at 0 for 50 ms");
	rm_tree(&t);
}

static void test_bad_outblob(void **state)
{
	struct tree t;
	struct kernel k = { .out_len = 0 };

	make_tree(&t, true, true);
	kernel_start(&k, t.entry);
	struct tdx_tsm_opts o = fast_opts(t.root);
	expect_fail(&o, -EIO, "EIO", "is empty");
	k.out_len = 500;
	expect_fail(&o, -EIO, "EIO", "outblob has 500 bytes");
	k.out_len = 1020;
	expect_fail(&o, -EIO, "EIO", "outblob has 1020 bytes");
	k.out_len = 8192;
	expect_fail(&o, -EIO, "EIO", "outblob has 8192 bytes");
	k.out_len = 9000; /* one read of at most 8 KiB */
	expect_fail(&o, -EIO, "EIO", "outblob has 8192 bytes");
	kernel_stop(&k);
	rm_tree(&t);
}

static void test_bad_files(void **state)
{
	struct tree t;
	char path[4096];

	make_tree(&t, true, true);
	struct tdx_tsm_opts o = fast_opts(t.root);
	write_text(t.entry, "generation", "abc\n");
	expect_fail(&o, -EIO, "EIO", "is not a number: 'abc'");
	write_text(t.entry, "generation", "0\n");
	snprintf(path, sizeof(path), "%s/inblob", t.entry);
	assert_int_equal(unlink(path), 0);
	expect_fail(&o, -ENOENT, "ENOENT", "inblob");
	rm_tree(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success),
		cmocka_unit_test(test_concurrent_callers_are_serialised),
		cmocka_unit_test(test_entry_created_on_demand),
		cmocka_unit_test(test_no_tsm_root),
		cmocka_unit_test(test_provider_missing_or_foreign),
		cmocka_unit_test(test_path_override),
		cmocka_unit_test(test_generation_raced_before_read),
		cmocka_unit_test(test_generation_changed_under_us),
		cmocka_unit_test(test_generation_never_moves),
		cmocka_unit_test(test_bad_outblob),
		cmocka_unit_test(test_bad_files),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
