/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /dev/tdx_guest ioctls and the host quote service (native/tdx/tdx_guest.h). A fake ops table
 * plays the kernel and checks the exact request codes and byte layouts the real path hands to
 * ioctl(2) (GET_REPORT0, EXTEND_RTMR with its _IOW fallback, GET_QUOTE's GHCI buffer); the
 * real ops are exercised against a missing device and a regular file. A thread on the other
 * end of a socketpair plays QGS: the request bytes are checked field by field, and good and
 * broken replies (wrong type, error code, sizes, oversized, short quote, hang-up, silence) are
 * fed back.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "tdx/tdx.h"
#include "tdx_test_util.h"

static uint8_t *g_quote;
static size_t g_quote_len;

static int group_setup(void **state)
{
	g_quote = read_quote_vector("dcap-qvl/tdx_quote", &g_quote_len);
	return 0;
}

static int group_teardown(void **state)
{
	free(g_quote);
	return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

/* Check a framed GET_QUOTE_REQ (u32 BE length + message) for @tdreport, byte by byte. */
static void check_request(const uint8_t *req, const uint8_t *tdreport)
{
	static const uint8_t head[] = {
		0x00, 0x00, 0x04, 0x18, /* BE length 1048 */
		0x01, 0x00, 0x00, 0x00, /* major 1, minor 0 */
		0x00, 0x00, 0x00, 0x00, /* type 0 = GET_QUOTE_REQ */
		0x18, 0x04, 0x00, 0x00, /* size 1048 */
		0x00, 0x00, 0x00, 0x00, /* error_code */
		0x00, 0x04, 0x00, 0x00, /* report_size 1024 */
		0x00, 0x00, 0x00, 0x00, /* id_list_size */
	};
	assert_memory_equal(req, head, sizeof(head));
	assert_memory_equal(req + sizeof(head), tdreport, 1024);
}

/* A GET_QUOTE_RESP message (no length prefix) with @id_size id bytes and @quote. */
static size_t make_response(uint8_t *out, uint32_t type, uint32_t code, uint32_t id_size,
			    const uint8_t *quote, size_t qlen)
{
	size_t len = 16 + 8 + id_size + qlen;
	out[0] = 1;
	out[1] = 0;
	out[2] = 0;
	out[3] = 0;
	put_le32(out + 4, type);
	put_le32(out + 8, (uint32_t)len);
	put_le32(out + 12, code);
	put_le32(out + 16, id_size);
	put_le32(out + 20, (uint32_t)qlen);
	memset(out + 24, 0xAB, id_size);
	if (qlen)
		memcpy(out + 24 + id_size, quote, qlen);
	return len;
}

/* ---- ioctls through a fake kernel ---- */

struct fake {
	int opens, closes, calls;
	unsigned long reqs[4];
	int fail_first; /* -errno returned by the first ioctl (0 = none) */
	int fail_all;	/* -errno returned by every ioctl (0 = none) */
	uint8_t last_arg[64];
	uint64_t quote_status; /* GET_QUOTE: status the "host" sets */
	int quote_bad_len;     /* GET_QUOTE: make the reply's lengths disagree */
};

static int fake_open(void *ud, const char *path)
{
	struct fake *f = ud;
	if (strcmp(path, "/dev/fake_tdx") != 0)
		return -ENOENT;
	f->opens++;
	return 42;
}

static void fake_close(void *ud, int fd)
{
	struct fake *f = ud;
	assert_int_equal(fd, 42);
	f->closes++;
}

static int fake_ioctl(void *ud, int fd, unsigned long req, void *arg)
{
	struct fake *f = ud;

	assert_int_equal(fd, 42);
	f->reqs[f->calls < 4 ? f->calls : 3] = req;
	f->calls++;
	if (f->fail_all)
		return f->fail_all;
	if (f->calls == 1 && f->fail_first)
		return f->fail_first;
	if (req == TDX_CMD_GET_REPORT0) {
		uint8_t *b = arg; /* reportdata[64] then tdreport[1024] */
		memcpy(f->last_arg, b, 64);
		fill(b + 64, 1024, b[0]);
		return 0;
	}
	if (req == TDX_CMD_EXTEND_RTMR || req == TDX_CMD_EXTEND_RTMR_W) {
		memcpy(f->last_arg, arg, 49); /* data[48] then index */
		return f->last_arg[48] > 3 ? -EINVAL : 0;
	}
	if (req == TDX_CMD_GET_QUOTE) {
		uint8_t *a = arg;
		uint64_t buf, len;
		memcpy(&buf, a, 8);
		memcpy(&len, a + 8, 8);
		uint8_t *b = (uint8_t *)(uintptr_t)buf;
		assert_true(len >= 24 + 4 + 1048);
		uint64_t version, status;
		memcpy(&version, b, 8);
		memcpy(&status, b + 8, 8);
		assert_int_equal(version, 1);
		assert_int_equal(status, 0);
		assert_int_equal(le32(b + 16), 4 + 1048); /* in_len */
		assert_int_equal(le32(b + 20), 0);	  /* out_len */
		uint8_t tdreport[1024];
		fill(tdreport, 1024, 3);
		check_request(b + 24, tdreport);
		/* the host answers in place */
		size_t n = make_response(b + 28, 1, 0, 4, g_quote, g_quote_len);
		put_be32(b + 24, (uint32_t)n + (f->quote_bad_len ? 1 : 0));
		put_le32(b + 20, (uint32_t)(4 + n));
		memcpy(b + 8, &f->quote_status, 8);
		return 0;
	}
	return -ENOTTY;
}

static struct tdx_guest_dev fake_dev(struct fake *f, struct tdx_guest_ops *ops)
{
	*ops = (struct tdx_guest_ops){ fake_open, fake_ioctl, fake_close, f };
	return (struct tdx_guest_dev){ .path = "/dev/fake_tdx", .ops = ops };
}

static void test_abi_layouts(void **state)
{
	assert_int_equal(sizeof(struct tdx_report_req), 1088);
	assert_int_equal(offsetof(struct tdx_report_req, tdreport), 64);
	assert_int_equal(sizeof(struct tdx_extend_rtmr_req), 49);
	assert_int_equal(offsetof(struct tdx_extend_rtmr_req, index), 48);
	assert_int_equal(sizeof(struct tdx_quote_req), 16);
	assert_int_equal(offsetof(struct tdx_quote_req, len), 8);
	assert_int_equal(offsetof(struct tdx_quote_hdr, status), 8);
	assert_int_equal(offsetof(struct tdx_quote_hdr, in_len), 16);
	assert_int_equal(offsetof(struct tdx_quote_hdr, out_len), 20);
	assert_int_equal(offsetof(struct tdx_quote_hdr, data), 24);
	/* the request codes of the spec (dstack's tdx-attest) */
	assert_int_equal(TDX_CMD_GET_REPORT0, 0xC4405401u);
	assert_int_equal(TDX_CMD_EXTEND_RTMR, 0x80315403u);
	assert_int_equal(TDX_CMD_EXTEND_RTMR_W, 0x40315403u);
}

static void test_get_report(void **state)
{
	struct fake f = { 0 };
	struct tdx_guest_ops ops;
	struct tdx_guest_dev dev = fake_dev(&f, &ops);
	uint8_t rd[64], report[1024], want[1024];
	struct tdx_error err = { 0 };

	fill(rd, 64, 0x40);
	assert_int_equal(tdx_guest_get_report(&dev, rd, report, &err), 0);
	assert_int_equal(f.calls, 1);
	assert_int_equal(f.reqs[0], 0xC4405401u);
	assert_memory_equal(f.last_arg, rd, 64);
	fill(want, 1024, 0x40);
	assert_memory_equal(report, want, 1024);
	assert_int_equal(f.opens, 1);
	assert_int_equal(f.closes, 1);
	/* errors map to codes */
	f.fail_all = -EACCES;
	assert_int_equal(tdx_guest_get_report(&dev, rd, report, &err), -EACCES);
	assert_string_equal(err.code, "EDENIED");
	f.fail_all = -ENOTTY;
	assert_int_equal(tdx_guest_get_report(&dev, rd, report, &err), -ENOTTY);
	assert_string_equal(err.code, "ENOTSUP");
	assert_non_null(strstr(err.msg, "TDX_CMD_GET_REPORT0 on /dev/fake_tdx"));
	assert_int_equal(f.opens, f.closes);
	dev.path = "/dev/other";
	assert_int_equal(tdx_guest_get_report(&dev, rd, report, &err), -ENOENT);
	assert_string_equal(err.code, "ENOENT");
}

static void test_extend_rtmr(void **state)
{
	struct fake f = { 0 };
	struct tdx_guest_ops ops;
	struct tdx_guest_dev dev = fake_dev(&f, &ops);
	uint8_t digest[48];
	struct tdx_error err = { 0 };

	fill(digest, 48, 0x11);
	assert_int_equal(tdx_guest_extend_rtmr(&dev, 3, digest, &err), 0);
	assert_int_equal(f.calls, 1);
	assert_int_equal(f.reqs[0], 0x80315403u);
	assert_memory_equal(f.last_arg, digest, 48);
	assert_int_equal(f.last_arg[48], 3);
	/* a module that only knows the _IOW code */
	f = (struct fake){ .fail_first = -ENOTTY };
	assert_int_equal(tdx_guest_extend_rtmr(&dev, 2, digest, &err), 0);
	assert_int_equal(f.calls, 2);
	assert_int_equal(f.reqs[1], 0x40315403u);
	assert_int_equal(f.last_arg[48], 2);
	assert_int_equal(f.opens, 1);
	assert_int_equal(f.closes, 1);
	/* rejected by the module; out of range before any ioctl */
	f = (struct fake){ .fail_all = -EINVAL };
	assert_int_equal(tdx_guest_extend_rtmr(&dev, 0, digest, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "RTMR 0 cannot be extended"));
	f = (struct fake){ 0 };
	assert_int_equal(tdx_guest_extend_rtmr(&dev, 4, digest, &err), -EINVAL);
	assert_int_equal(f.calls, 0);
	assert_non_null(strstr(err.msg, "out of range"));
}

static void test_get_quote_ioctl(void **state)
{
	struct fake f = { 0 };
	struct tdx_guest_ops ops;
	struct tdx_guest_dev dev = fake_dev(&f, &ops);
	uint8_t tdreport[1024], *quote;
	size_t len;
	struct tdx_error err = { 0 };

	fill(tdreport, 1024, 3);
	if (tdx_guest_get_quote(&dev, tdreport, &quote, &len, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(f.reqs[0], TDX_CMD_GET_QUOTE);
	assert_int_equal(len, g_quote_len);
	assert_memory_equal(quote, g_quote, len);
	free(quote);
	f = (struct fake){ .quote_status = 0x8000000000000001ull };
	assert_int_equal(tdx_guest_get_quote(&dev, tdreport, &quote, &len, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "status 0x8000000000000001"));
	assert_null(quote);
	f = (struct fake){ .quote_status = 0xFFFFFFFFFFFFFFFFull };
	assert_int_equal(tdx_guest_get_quote(&dev, tdreport, &quote, &len, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "in flight"));
	f = (struct fake){ .quote_bad_len = 1 };
	assert_int_equal(tdx_guest_get_quote(&dev, tdreport, &quote, &len, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "disagree"));
}

static void test_real_ops(void **state)
{
	struct tdx_guest_dev dev = { .path = "/nonexistent/tdx_guest" };
	uint8_t rd[64] = { 0 }, report[1024], digest[48] = { 0 };
	struct tdx_error err = { 0 };
	char path[] = "/tmp/tdx-guest-test.XXXXXX";

	assert_int_equal(tdx_guest_get_report(&dev, rd, report, &err), -ENOENT);
	assert_string_equal(err.code, "ENOENT");
	assert_non_null(strstr(err.msg, "/nonexistent/tdx_guest"));
	/* a regular file is no TDX device: the kernel says ENOTTY */
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	dev.path = path;
	assert_int_equal(tdx_guest_get_report(&dev, rd, report, &err), -ENOTTY);
	assert_string_equal(err.code, "ENOTSUP");
	assert_non_null(strstr(err.msg, "not a TDX guest device"));
	assert_int_equal(tdx_guest_extend_rtmr(&dev, 3, digest, &err), -ENOTTY);
	unlink(path);
}

/* ---- QGS over a socketpair ---- */

enum qgs_mode {
	QGS_OK,
	QGS_WRONG_TYPE,
	QGS_ERROR_CODE,
	QGS_SIZE_MISMATCH,
	QGS_TOO_BIG,
	QGS_SHORT_QUOTE,
	QGS_HANG_UP,
	QGS_SILENT,
};

struct qgs {
	int fd;
	enum qgs_mode mode;
	uint8_t tdreport[1024];
	pthread_t thread;
};

static bool read_n(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

static void *qgs_main(void *arg)
{
	struct qgs *s = arg;
	uint8_t req[4 + 1048];
	uint8_t *resp = malloc(8 + 16 + 8 + 64 + g_quote_len + 32);

	assert_true(read_n(s->fd, req, sizeof(req)));
	check_request(req, s->tdreport);
	size_t n = 0;
	switch (s->mode) {
	case QGS_OK:
		n = make_response(resp + 4, 1, 0, 16, g_quote, g_quote_len);
		break;
	case QGS_WRONG_TYPE:
		n = make_response(resp + 4, 0, 0, 0, g_quote, g_quote_len);
		break;
	case QGS_ERROR_CODE:
		n = make_response(resp + 4, 1, 0xE001, 0, g_quote, 0);
		break;
	case QGS_SIZE_MISMATCH:
		n = make_response(resp + 4, 1, 0, 0, g_quote, g_quote_len);
		put_le32(resp + 4 + 20, (uint32_t)g_quote_len - 1);
		break;
	case QGS_SHORT_QUOTE:
		n = make_response(resp + 4, 1, 0, 0, g_quote, 1000);
		break;
	case QGS_TOO_BIG:
		put_be32(resp, 16 * 1024 + 1);
		assert_int_equal(write(s->fd, resp, 4), 4);
		break;
	case QGS_HANG_UP:
		put_be32(resp, 5000);
		assert_int_equal(write(s->fd, resp, 4), 4);
		break;
	case QGS_SILENT:
		break;
	}
	if (n) {
		put_be32(resp, (uint32_t)n);
		assert_int_equal(write(s->fd, resp, 4 + n), (ssize_t)(4 + n));
	}
	if (s->mode == QGS_SILENT) {
		uint8_t b;
		(void)read(s->fd, &b, 1); /* wait until the client gives up */
	}
	close(s->fd);
	free(resp);
	return NULL;
}

static int qgs_exchange(enum qgs_mode mode, int timeout_ms, uint8_t **quote, size_t *len,
			struct tdx_error *err)
{
	int sv[2];
	struct qgs s = { .mode = mode };

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s.fd = sv[1];
	fill(s.tdreport, 1024, 0x77);
	assert_int_equal(pthread_create(&s.thread, NULL, qgs_main, &s), 0);
	int rc = tdx_qgs_exchange(sv[0], s.tdreport, timeout_ms, quote, len, err);
	close(sv[0]);
	pthread_join(s.thread, NULL);
	return rc;
}

static void qgs_fails(enum qgs_mode mode, int rc_want, const char *code, const char *needle)
{
	uint8_t *quote = (uint8_t *)"x";
	size_t len = 1;
	struct tdx_error err = { 0 };

	assert_int_equal(qgs_exchange(mode, 300, &quote, &len, &err), rc_want);
	assert_string_equal(err.code, code);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' lacks '%s'", err.msg, needle);
	assert_null(quote);
}

static void test_qgs_exchange(void **state)
{
	uint8_t *quote;
	size_t len;
	struct tdx_error err = { 0 };

	if (qgs_exchange(QGS_OK, 2000, &quote, &len, &err))
		fail_msg("%s", err.msg);
	assert_int_equal(len, g_quote_len);
	assert_memory_equal(quote, g_quote, len);
	free(quote);
	qgs_fails(QGS_WRONG_TYPE, -EPROTO, "EPROTO", "message type 0");
	qgs_fails(QGS_ERROR_CODE, -EPROTO, "EPROTO", "error_code 0xe001");
	qgs_fails(QGS_SIZE_MISMATCH, -EPROTO, "EPROTO", "do not fill");
	qgs_fails(QGS_SHORT_QUOTE, -EPROTO, "EPROTO", "quote of 1000 bytes is too short");
	qgs_fails(QGS_TOO_BIG, -EPROTO, "EPROTO", "reply length 16385 out of range");
	qgs_fails(QGS_HANG_UP, -EIO, "EIO", "connection closed while reading the reply");
	qgs_fails(QGS_SILENT, -ETIMEDOUT, "ETIMEDOUT", "reading the reply length");
}

static void test_qgs_request_encoding(void **state)
{
	uint8_t tdreport[1024], out[4 + TDX_QGS_REQUEST_LEN];
	const uint8_t *q;
	size_t qlen;
	struct tdx_error err = { 0 };
	uint8_t msg[64];

	assert_int_equal(TDX_QGS_REQUEST_LEN, 1048);
	fill(tdreport, 1024, 0x77);
	tdx_qgs_encode_request(tdreport, out);
	check_request(out, tdreport);
	/* decoding checks the header before anything else */
	assert_int_equal(tdx_qgs_decode_response(msg, 10, &q, &qlen, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "shorter than its header"));
	make_response(msg, 1, 0, 0, NULL, 0);
	msg[0] = 2;
	assert_int_equal(tdx_qgs_decode_response(msg, 24, &q, &qlen, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "major version 2"));
}

static void *unix_server(void *arg)
{
	int lfd = *(int *)arg;
	struct qgs s = { .mode = QGS_OK };
	s.fd = accept(lfd, NULL, NULL);
	assert_true(s.fd >= 0);
	fill(s.tdreport, 1024, 0x55);
	qgs_main(&s);
	return NULL;
}

static void test_qgs_connect(void **state)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/tdx-qgs.XXXXXX";
	uint8_t tdreport[1024], *quote;
	size_t len;
	struct tdx_error err = { 0 };
	pthread_t th;

	assert_non_null(mkdtemp(dir));
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/qgs.sock", dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(pthread_create(&th, NULL, unix_server, &lfd), 0);
	int fd = tdx_qgs_connect_unix(addr.sun_path, &err);
	assert_true(fd >= 0);
	fill(tdreport, 1024, 0x55);
	assert_int_equal(tdx_qgs_exchange(fd, tdreport, 2000, &quote, &len, &err), 0);
	assert_memory_equal(quote, g_quote, len);
	free(quote);
	close(fd);
	pthread_join(th, NULL);
	close(lfd);
	unlink(addr.sun_path);
	rmdir(dir);
	assert_int_equal(tdx_qgs_connect_unix(addr.sun_path, &err), -ENOENT);
	assert_string_equal(err.code, "ENOENT");
	/* vsock: there is no host side here; the failure is reported, not hung on */
	fd = tdx_qgs_connect_vsock(TDX_QGS_HOST_CID, TDX_QGS_PORT, 300, &err);
	if (fd >= 0)
		close(fd); /* a real TDX guest with a QGS would get here */
	else
		assert_non_null(strstr(err.msg, "vsock"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_abi_layouts),
		cmocka_unit_test(test_get_report),
		cmocka_unit_test(test_extend_rtmr),
		cmocka_unit_test(test_get_quote_ioctl),
		cmocka_unit_test(test_real_ops),
		cmocka_unit_test(test_qgs_exchange),
		cmocka_unit_test(test_qgs_request_encoding),
		cmocka_unit_test(test_qgs_connect),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
