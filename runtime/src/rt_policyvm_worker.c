/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `moonstack policy-worker` (hidden; started by moonstack.policy.pool): one policy VM in its
 * own process, so that a policy that crashes (a C stack overflow through string.gsub) or runs
 * a C call for minutes (a backtracking pattern) takes down or stalls only this process, which
 * the daemon kills at the deadline and replaces (DESIGN.md §5.2).
 *
 * Options (the VM limits, rt_policyvm.h): --memory, --instructions, --time-ms, --depth,
 * --items, --string, --bytes (integers), and --parent PID: the worker exits if that process
 * is no longer its parent, and the kernel kills it when the parent dies (PR_SET_PDEATHSIG).
 * It runs at nice 10, so a policy burning a CPU yields it to the daemon, and dumps no core.
 *
 * Protocol on stdin (requests) and stdout (replies): frames of a u32 payload length (little
 * endian) and the payload; each request gets exactly one reply, in order. A reply is one
 * value in the wire format: { ok = bool, code = 'E...'?, error = msg?, info = {...}? or
 * result = {...}?, output = { printed lines } }. The first frame, unasked, is { ok = true,
 * ready = true, pid = N }. Requests (the first payload byte, enum rt_pvm_op):
 *   'L' u16 name length, chunk name, source   load the policy -> info = { fields, hooks }
 *   'C' u8 hook length, hook, wire input       run a hook      -> result = the decision
 * The worker exits 0 at the end of stdin, 1 on a malformed frame or a failed write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/prctl.h>
#include <sys/resource.h>

#include "moonstack/rt.h"
#include "rt_policyvm.h"

/* The worker's nice value: below the daemon it serves. */
#define WORKER_NICE 10
/* Lines a run may print, plus the "(N more lines suppressed)" note. */
#define WORKER_LINES (RT_PVM_PRINT_LINES + 1)

struct worker {
	struct rt_pvm *vm;
	size_t frame_max;
	int nlines;
	char *lines[WORKER_LINES];
	size_t lens[WORKER_LINES];
};

static void on_print(void *ud, const char *line, size_t len)
{
	struct worker *w = ud;
	if (w->nlines >= WORKER_LINES)
		return;
	char *copy = malloc(len ? len : 1);
	if (!copy)
		return;
	memcpy(copy, line, len);
	w->lines[w->nlines] = copy;
	w->lens[w->nlines++] = len;
}

/* Read exactly @p n bytes: 1 done, 0 end of input before the first byte, -1 otherwise. */
static int read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 && got == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

static int write_full(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t r = write(fd, buf, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		buf += r;
		n -= (size_t)r;
	}
	return 0;
}

static void put_key(struct rt_pvm_buf *b, const char *key)
{
	rt_pvm_wire_string(b, key, strlen(key));
}

/* Send { ok, code?, error?, <key> = value?, output } and forget the printed lines. @p value
 * holds one encoded value (used only when @p status is RT_PVM_OK). */
/* Finish the frame in `r` (its first 4 bytes are the length, filled here), write it to stdout
 * and free it. Returns 0 or -1. */
static int send_frame(struct rt_pvm_buf *r)
{
	int rc = -1;
	if (!r->oom) {
		rt_pvm_put_le32(r->data, (uint32_t)(r->len - sizeof(uint32_t)));
		rc = write_full(STDOUT_FILENO, r->data, r->len);
	}
	rt_pvm_buf_free(r);
	return rc;
}

static int send_reply(struct worker *w, int status, const char *key, const struct rt_pvm_buf *value)
{
	struct rt_pvm_buf r = { 0 };
	uint32_t len = 0;

	rt_pvm_buf_put(&r, &len, sizeof(len));
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_OPEN);
	put_key(&r, "ok");
	rt_pvm_wire_byte(&r, status == RT_PVM_OK ? RT_PVM_WIRE_TRUE : RT_PVM_WIRE_FALSE);
	if (status != RT_PVM_OK) {
		const char *code = rt_pvm_status_code(status), *err = rt_pvm_error(w->vm);
		put_key(&r, "code");
		rt_pvm_wire_string(&r, code, strlen(code));
		put_key(&r, "error");
		rt_pvm_wire_string(&r, err, strlen(err));
	} else if (key && value) {
		put_key(&r, key);
		rt_pvm_buf_put(&r, value->data, value->len);
	}
	put_key(&r, "output");
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_OPEN);
	for (int i = 0; i < w->nlines; i++) {
		rt_pvm_wire_number(&r, i + 1);
		rt_pvm_wire_string(&r, w->lines[i], w->lens[i]);
		free(w->lines[i]);
	}
	w->nlines = 0;
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_CLOSE);
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_CLOSE);
	return send_frame(&r);
}

static int send_ready(void)
{
	struct rt_pvm_buf r = { 0 };
	uint32_t len = 0;

	rt_pvm_buf_put(&r, &len, sizeof(len));
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_OPEN);
	put_key(&r, "ok");
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_TRUE);
	put_key(&r, "ready");
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_TRUE);
	put_key(&r, "pid");
	rt_pvm_wire_number(&r, (double)getpid());
	rt_pvm_wire_byte(&r, RT_PVM_WIRE_CLOSE);
	return send_frame(&r);
}

static int handle_load(struct worker *w, const char *p, size_t n)
{
	struct rt_pvm_buf info = { 0 };
	char name[256];
	uint16_t namelen;

	if (n < sizeof(namelen))
		return -1;
	memcpy(&namelen, p, sizeof(namelen));
	if (namelen >= sizeof(name) || n - sizeof(namelen) < namelen)
		return -1;
	memcpy(name, p + sizeof(namelen), namelen);
	name[namelen] = '\0';
	const char *src = p + sizeof(namelen) + namelen;
	size_t srclen = n - sizeof(namelen) - namelen;

	if (rt_pvm_loaded(w->vm))
		rt_pvm_unload(w->vm);
	int st = rt_pvm_load(w->vm, src, srclen, name);
	if (st == RT_PVM_OK) {
		st = rt_pvm_info_wire(w->vm, &info);
		if (st != RT_PVM_OK)
			rt_pvm_unload(w->vm);
	}
	int rc = send_reply(w, st, "info", &info);
	rt_pvm_buf_free(&info);
	return rc;
}

static int handle_call(struct worker *w, const char *p, size_t n)
{
	struct rt_pvm_buf result = { 0 };
	char hook[256];

	if (n < 1 || n - 1 < (unsigned char)p[0])
		return -1;
	size_t hooklen = (unsigned char)p[0];
	memcpy(hook, p + 1, hooklen);
	hook[hooklen] = '\0';
	int st = rt_pvm_call_wire(w->vm, hook, p + 1 + hooklen, n - 1 - hooklen, &result);
	int rc = send_reply(w, st, "result", &result);
	rt_pvm_buf_free(&result);
	return rc;
}

/* Serve requests until the end of stdin: 0, or -1 on a protocol or I/O error. */
static int serve(struct worker *w)
{
	for (;;) {
		unsigned char head[4];
		int rc = read_full(STDIN_FILENO, head, sizeof(head));
		if (rc == 0)
			return 0;
		uint32_t len = rt_pvm_get_le32(head);
		if (rc < 0 || len < 1 || len > w->frame_max)
			return -1;
		char *frame = malloc(len);
		if (!frame || read_full(STDIN_FILENO, frame, len) != 1) {
			free(frame);
			return -1;
		}
		switch (frame[0]) {
		case RT_PVM_OP_LOAD:
			rc = handle_load(w, frame + 1, len - 1);
			break;
		case RT_PVM_OP_CALL:
			rc = handle_call(w, frame + 1, len - 1);
			break;
		default:
			rc = -1;
			break;
		}
		free(frame);
		if (rc != 0)
			return -1;
	}
}

static int parse_u64(const char *s, unsigned long long *out)
{
	char *end;
	errno = 0;
	*out = strtoull(s ? s : "", &end, 10);
	return s && *s && *end == '\0' && errno == 0 ? 0 : -1;
}

int rt_policy_worker_main(int argc, char **argv)
{
	struct rt_pvm_limits limits = { 0 };
	struct worker w = { 0 };
	unsigned long long parent = 0, v;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (i + 1 >= argc || parse_u64(argv[i + 1], &v) != 0) {
			fprintf(stderr, "moonstack policy-worker: bad option %s\n", opt);
			return 2;
		}
		i++;
		if (strcmp(opt, "--memory") == 0)
			limits.memory_limit = (size_t)v;
		else if (strcmp(opt, "--instructions") == 0)
			limits.instruction_limit = v;
		else if (strcmp(opt, "--time-ms") == 0)
			limits.time_limit_ms = v;
		else if (strcmp(opt, "--depth") == 0 && v <= RT_PVM_MAX_DEPTH)
			limits.max_depth = (int)v;
		else if (strcmp(opt, "--items") == 0)
			limits.max_items = (size_t)v;
		else if (strcmp(opt, "--string") == 0)
			limits.max_string = (size_t)v;
		else if (strcmp(opt, "--bytes") == 0)
			limits.max_bytes = (size_t)v;
		else if (strcmp(opt, "--parent") == 0)
			parent = v;
		else {
			fprintf(stderr, "moonstack policy-worker: bad option %s\n", opt);
			return 2;
		}
	}
	// Never outlive the daemon, even when stuck in a C call that never reads stdin.
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (parent && (unsigned long long)getppid() != parent)
		return 0;
	// A crash is expected here (that is why this process exists): no core files.
	struct rlimit no_core = { 0, 0 };
	setrlimit(RLIMIT_CORE, &no_core);
	// A policy stuck in a C call burns a CPU until the daemon kills it: let the daemon (and
	// whatever else runs) go first meanwhile.
	setpriority(PRIO_PROCESS, 0, WORKER_NICE);
	// The daemon decides when a worker ends: not the terminal's ^C or hangup.
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	close_range(3, ~0u, 0);

	w.vm = rt_pvm_create(&limits);
	if (!w.vm) {
		fprintf(stderr, "moonstack policy-worker: cannot create the policy VM\n");
		return 1;
	}
	rt_pvm_get_limits(w.vm, &limits);
	w.frame_max = rt_pvm_frame_max(&limits);
	rt_pvm_set_print(w.vm, on_print, &w);
	int rc = send_ready() == 0 ? serve(&w) : -1;
	for (int i = 0; i < w.nlines; i++)
		free(w.lines[i]);
	rt_pvm_destroy(w.vm);
	return rc == 0 ? 0 : 1;
}
