/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's quote generation service (tdx_guest.h): the GET_QUOTE_REQ/RESP framing of QGS
 * message version 1.0 (a u32 big-endian length, then a little-endian header and body), one
 * exchange over any connected stream, and the vsock (or unix socket) connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "tdx/tdx_guest.h"

#define QGS_MAJOR	   1
#define QGS_MINOR	   0
#define QGS_GET_QUOTE_REQ  0
#define QGS_GET_QUOTE_RESP 1
#define QGS_HEADER_LEN	   16

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

void tdx_qgs_encode_request(const uint8_t tdreport[TDX_TDREPORT_LEN],
			    uint8_t out[4 + TDX_QGS_REQUEST_LEN])
{
	uint32_t size = TDX_QGS_REQUEST_LEN;
	uint8_t *m = out + 4;

	out[0] = (uint8_t)(size >> 24);
	out[1] = (uint8_t)(size >> 16);
	out[2] = (uint8_t)(size >> 8);
	out[3] = (uint8_t)size;
	put_le16(m, QGS_MAJOR);
	put_le16(m + 2, QGS_MINOR);
	put_le32(m + 4, QGS_GET_QUOTE_REQ);
	put_le32(m + 8, size);
	put_le32(m + 12, 0); /* error_code */
	put_le32(m + 16, TDX_TDREPORT_LEN);
	put_le32(m + 20, 0); /* id_list_size */
	memcpy(m + 24, tdreport, TDX_TDREPORT_LEN);
}

int tdx_qgs_decode_response(const uint8_t *msg, size_t len, const uint8_t **quote,
			    size_t *quote_len, struct tdx_error *err)
{
	if (len < QGS_HEADER_LEN + 8)
		return tdx_fail(err, -EPROTO, "EPROTO", len,
				"QGS reply: %zu bytes, shorter than its header (24)", len);
	uint16_t major = le16(msg);
	uint32_t type = le32(msg + 4), size = le32(msg + 8), code = le32(msg + 12);
	if (major != QGS_MAJOR)
		return tdx_fail(err, -EPROTO, "EPROTO", 0,
				"QGS reply: major version %u (1 expected)", major);
	if (type != QGS_GET_QUOTE_RESP)
		return tdx_fail(err, -EPROTO, "EPROTO", 4,
				"QGS reply: message type %u (1 = GET_QUOTE_RESP expected)", type);
	if (size != len)
		return tdx_fail(err, -EPROTO, "EPROTO", 8,
				"QGS reply: header size %u but the message has %zu bytes", size,
				len);
	if (code != 0)
		return tdx_fail(err, -EPROTO, "EPROTO", 12, "QGS reply: error_code 0x%x", code);
	uint32_t id_size = le32(msg + 16), qsize = le32(msg + 20);
	if ((uint64_t)QGS_HEADER_LEN + 8 + id_size + qsize != len)
		return tdx_fail(err, -EPROTO, "EPROTO", 16,
				"QGS reply: selected_id_size %u + quote_size %u do not fill the "
				"%zu-byte message",
				id_size, qsize, len);
	if (qsize <= TDX_QUOTE_MIN_LEN)
		return tdx_fail(err, -EPROTO, "EPROTO", 20,
				"QGS reply: quote of %u bytes is too short", qsize);
	*quote = msg + QGS_HEADER_LEN + 8 + id_size;
	*quote_len = qsize;
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for @events on @fd until @deadline; 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int rc = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

static int io_all(int fd, uint8_t *buf, size_t len, bool writing, long long deadline)
{
	size_t done = 0;

	while (done < len) {
		int rc = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
		if (rc)
			return rc;
		ssize_t n = writing ? send(fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
				    : recv(fd, buf + done, len - done, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		done += (size_t)n;
	}
	return 0;
}

static int io_fail(struct tdx_error *err, int rc, const char *what)
{
	if (rc == -ETIMEDOUT)
		return tdx_fail(err, rc, "ETIMEDOUT", TDX_NO_OFFSET,
				"quote service: timed out while %s", what);
	if (rc == -ECONNRESET)
		return tdx_fail(err, -EIO, "EIO", TDX_NO_OFFSET,
				"quote service: connection closed while %s", what);
	return tdx_fail(err, rc, "EIO", TDX_NO_OFFSET, "quote service: %s while %s", strerror(-rc),
			what);
}

int tdx_qgs_exchange(int fd, const uint8_t tdreport[TDX_TDREPORT_LEN], int timeout_ms,
		     uint8_t **quote, size_t *len, struct tdx_error *err)
{
	uint8_t req[4 + TDX_QGS_REQUEST_LEN], hdr[4];
	long long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
	const uint8_t *q;
	size_t qlen;
	int rc;

	*quote = NULL;
	*len = 0;
	tdx_qgs_encode_request(tdreport, req);
	if ((rc = io_all(fd, req, sizeof(req), true, deadline)))
		return io_fail(err, rc, "sending the request");
	if ((rc = io_all(fd, hdr, 4, false, deadline)))
		return io_fail(err, rc, "reading the reply length");
	uint32_t size =
		(uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (size == 0 || size > TDX_QGS_MAX_RESPONSE)
		return tdx_fail(err, -EPROTO, "EPROTO", 0,
				"quote service: reply length %u out of range (1..%d)", size,
				TDX_QGS_MAX_RESPONSE);
	uint8_t *msg = malloc(size);
	if (!msg)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
	if ((rc = io_all(fd, msg, size, false, deadline))) {
		free(msg);
		return io_fail(err, rc, "reading the reply");
	}
	rc = tdx_qgs_decode_response(msg, size, &q, &qlen, err);
	if (!rc) {
		memmove(msg, q, qlen);
		*quote = msg;
		*len = qlen;
	} else {
		free(msg);
	}
	return rc;
}

int tdx_qgs_connect_vsock(uint32_t cid, uint32_t port, int timeout_ms, struct tdx_error *err)
{
	struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return tdx_fail(err, -errno, tdx_errno_code(-errno), TDX_NO_OFFSET,
				"vsock socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int rc = -errno;
		if (rc == -EINPROGRESS) {
			rc = wait_fd(fd, POLLOUT, now_ms() + (timeout_ms > 0 ? timeout_ms : 30000));
			int so = 0;
			socklen_t sl = sizeof(so);
			if (!rc && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so)
				rc = -so;
		}
		if (rc) {
			close(fd);
			return tdx_fail(err, rc, tdx_errno_code(rc), TDX_NO_OFFSET,
					"connect vsock %u:%u: %s", cid, port, strerror(-rc));
		}
	}
	return fd;
}

int tdx_qgs_connect_unix(const char *path, struct tdx_error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	if (!path || strlen(path) >= sizeof(addr.sun_path))
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET, "bad unix socket path");
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return tdx_fail(err, -errno, "EIO", TDX_NO_OFFSET, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int rc = -errno;
		close(fd);
		return tdx_fail(err, rc, tdx_errno_code(rc), TDX_NO_OFFSET, "connect %s: %s", path,
				strerror(-rc));
	}
	return fd;
}
