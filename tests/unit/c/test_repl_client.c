/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The REPL client's protocol handling (rt_repl_client.c) against a scripted peer on a
 * socketpair: replies split into tiny writes, long replies, JSON mode, continuation, errors,
 * garbage, a peer that hangs up or never answers, and the connect error message.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt_repl_client.h"

/* One exchange of the scripted peer: the request line it expects, and its reply. */
struct step {
	const char *expect; /* request line without '\n' */
	const char *reply;  /* NULL: hang up without replying; "" with `hang`: never answer */
	size_t reply_len;   /* 0: strlen(reply) */
	size_t chunk;	    /* write the reply this many bytes at a time (0: at once) */
	int hang;
};

struct peer {
	int fd;
	const struct step *steps;
	int nsteps;
	int done;      /* steps completed */
	char got[256]; /* the first request that differed from the script */
};

static int read_request(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return 0;
		}
		n++;
	}
	buf[n] = '\0';
	return -1;
}

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	char req[256];
	for (int i = 0; i < p->nsteps; i++) {
		const struct step *s = &p->steps[i];
		if (read_request(p->fd, req, sizeof(req)) != 0)
			break;
		if (strcmp(req, s->expect) != 0) {
			snprintf(p->got, sizeof(p->got), "%s", req);
			break;
		}
		if (s->hang) {
			char c;
			/* wait until the client gives up and closes its end */
			while (read(p->fd, &c, 1) > 0) {
			}
			p->done++;
			break;
		}
		if (!s->reply) {
			p->done++;
			break;
		}
		size_t len = s->reply_len ? s->reply_len : strlen(s->reply);
		size_t chunk = s->chunk ? s->chunk : len;
		for (size_t off = 0; off < len; off += chunk) {
			size_t n = len - off < chunk ? len - off : chunk;
			if (send(p->fd, s->reply + off, n, MSG_NOSIGNAL) != (ssize_t)n)
				break;
			if (s->chunk)
				usleep(50);
		}
		p->done++;
	}
	shutdown(p->fd, SHUT_WR);
	return NULL;
}

struct result {
	int code;
	char *out;
	size_t out_len;
	char *err;
	size_t err_len;
	int steps_done;
	char got[256];
};

/* Run a session with @p input on stdin-like input against the scripted peer. */
static struct result run(const char *input, struct rt_repl_opts o, const struct step *steps,
			 int nsteps)
{
	int sv[2];
	struct result r = { 0 };
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct peer p = { .fd = sv[1], .steps = steps, .nsteps = nsteps };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, peer_main, &p), 0);

	/* (fmemopen wants a size > 0; with `expr` set the input is not read) */
	FILE *in = fmemopen((void *)input, strlen(input) ? strlen(input) : 1, "r");
	assert_non_null(in);
	FILE *out = open_memstream(&r.out, &r.out_len);
	FILE *err = open_memstream(&r.err, &r.err_len);
	o.in = in;
	o.out = out;
	o.err = err;
	o.interactive = 0;
	r.code = rt_repl_session(sv[0], "test.sock", &o);
	close(sv[0]);
	pthread_join(th, NULL);
	close(sv[1]);
	fclose(in);
	fclose(out);
	fclose(err);
	r.steps_done = p.done;
	memcpy(r.got, p.got, sizeof(r.got));
	return r;
}

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
}

static void test_text_frames_in_tiny_pieces(void **state)
{
	const struct step steps[] = {
		{ .expect = "1+1", .reply = "ok 2\n2\n", .chunk = 1 },
		{ .expect = "x = 5", .reply = "ok 0\n", .chunk = 1 },
		{ .expect = "error('e')", .reply = "error 13\nrepl:1: boom\n", .chunk = 3 },
		{ .expect = "3", .reply = "ok 2\n3\n", .chunk = 2 },
	};
	struct result r = run("1+1\nx = 5\nerror('e')\n3\n", (struct rt_repl_opts){ 0 }, steps, 4);
	assert_string_equal(r.got, "");
	assert_int_equal(r.steps_done, 4);
	assert_int_equal(r.code, RT_REPL_EXIT_OK); /* errors from piped input do not count */
	assert_string_equal(r.out, "2\n3\n");
	assert_string_equal(r.err, "repl:1: boom\n");
	result_free(&r);
}

static void test_long_reply(void **state)
{
	size_t body = 3 * 1000 * 1000;
	char *reply = malloc(body + 32);
	int h = sprintf(reply, "ok %zu\n", body);
	for (size_t i = 0; i < body; i++)
		reply[h + i] = (char)('a' + i % 26);
	reply[h + body - 1] = '\n';
	const struct step steps[] = {
		{ .expect = "big", .reply = reply, .reply_len = h + body, .chunk = 70000 },
	};
	struct result r = run("big\n", (struct rt_repl_opts){ 0 }, steps, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_OK);
	assert_int_equal(r.out_len, body);
	assert_memory_equal(r.out, reply + h, body);
	free(reply);
	result_free(&r);
}

static void test_expr_exit_codes_and_continuation(void **state)
{
	const struct step ok_steps[] = {
		{ .expect = "for i = 1, 2 do", .reply = "more 0\n" },
		{ .expect = "print(i)", .reply = "more 0\n" },
		{ .expect = "end", .reply = "ok 4\n1\n2\n" },
	};
	struct result r = run("", (struct rt_repl_opts){ .expr = "for i = 1, 2 do\nprint(i)\nend" },
			      ok_steps, 3);
	assert_int_equal(r.code, RT_REPL_EXIT_OK);
	assert_string_equal(r.out, "1\n2\n");
	result_free(&r);

	const struct step err_steps[] = { { .expect = "error('x')", .reply = "error 2\nx\n" } };
	r = run("", (struct rt_repl_opts){ .expr = "error('x')" }, err_steps, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_EVAL);
	assert_string_equal(r.err, "x\n");
	result_free(&r);

	const struct step more_steps[] = { { .expect = "for", .reply = "more 0\n" } };
	r = run("", (struct rt_repl_opts){ .expr = "for" }, more_steps, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_EVAL);
	assert_non_null(strstr(r.err, "incomplete chunk"));
	result_free(&r);
}

static void test_json_mode(void **state)
{
	const struct step steps[] = {
		{ .expect = "\\json", .reply = "{\"ok\":true,\"mode\":\"json\"}\n", .chunk = 5 },
		{ .expect = "1+1", .reply = "{\"ok\":true,\"results\":[2]}\n", .chunk = 1 },
		{ .expect = "error('x')", .reply = "{\"ok\":false,\"error\":\"x\"}\n" },
	};
	struct result r =
		run("", (struct rt_repl_opts){ .json = true, .expr = "1+1\nerror('x')" }, steps, 3);
	assert_string_equal(r.got, "");
	assert_int_equal(r.code, RT_REPL_EXIT_EVAL);
	assert_string_equal(r.out,
			    "{\"ok\":true,\"results\":[2]}\n{\"ok\":false,\"error\":\"x\"}\n");
	result_free(&r);
}

static void test_bye_ends_the_session(void **state)
{
	const struct step steps[] = { { .expect = "\\quit", .reply = "bye 0\n" } };
	struct result r = run("\\quit\nnever sent\n", (struct rt_repl_opts){ 0 }, steps, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_OK);
	assert_int_equal(r.steps_done, 1);
	assert_string_equal(r.got, "");
	result_free(&r);
}

static void test_garbage_and_hangups(void **state)
{
	const struct step http[] = {
		{ .expect = "1", .reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" },
	};
	struct result r = run("1\n", (struct rt_repl_opts){ 0 }, http, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_IO);
	assert_non_null(strstr(r.err, "test.sock: not a moonstack control socket"));
	result_free(&r);

	const struct step cut[] = { { .expect = "1", .reply = "ok 10\n12345" } };
	r = run("1\n", (struct rt_repl_opts){ 0 }, cut, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_IO);
	assert_non_null(strstr(r.err, "test.sock closed the connection"));
	result_free(&r);

	const struct step gone[] = { { .expect = "1", .reply = NULL } };
	r = run("1\n", (struct rt_repl_opts){ 0 }, gone, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_IO);
	result_free(&r);
}

static void test_timeout(void **state)
{
	const struct step steps[] = { { .expect = "slow", .hang = 1 } };
	struct result r = run("slow\n", (struct rt_repl_opts){ .timeout = 0.2 }, steps, 1);
	assert_int_equal(r.code, RT_REPL_EXIT_IO);
	assert_non_null(strstr(r.err, "no reply from test.sock: timed out"));
	result_free(&r);
}

static void test_connect_error(void **state)
{
	char err[256];
	assert_int_equal(rt_repl_connect("/nonexistent/moonstack.sock", err, sizeof(err)), -1);
	assert_string_equal(err, "cannot connect to /nonexistent/moonstack.sock: No such file or "
				 "directory");
	char longpath[200];
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	assert_int_equal(rt_repl_connect(longpath, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "socket path too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_frames_in_tiny_pieces),
		cmocka_unit_test(test_long_reply),
		cmocka_unit_test(test_expr_exit_codes_and_continuation),
		cmocka_unit_test(test_json_mode),
		cmocka_unit_test(test_bye_ends_the_session),
		cmocka_unit_test(test_garbage_and_hangups),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_connect_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
