/* SPDX-License-Identifier: Apache-2.0 */
/*
 * /dev/tdx_guest ioctls (tdx_guest.h): GET_REPORT0, EXTEND_RTMR and GET_QUOTE, marshalled into the
 * kernel ABI structs and issued through an ops table so tests can stand in for the kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tdx/tdx_guest.h"

/* The request codes are the kernel's macros, spelled out; check them. */
_Static_assert(sizeof(struct tdx_report_req) == 1088, "tdx_report_req is 1088 bytes");
_Static_assert(sizeof(struct tdx_extend_rtmr_req) == 49, "tdx_extend_rtmr_req is 49 bytes");
_Static_assert(sizeof(struct tdx_quote_req) == 16, "tdx_quote_req is 16 bytes");
_Static_assert(sizeof(struct tdx_quote_hdr) == 24, "tdx_quote_hdr is 24 bytes");
_Static_assert(_IOWR('T', 1, struct tdx_report_req) == TDX_CMD_GET_REPORT0, "GET_REPORT0");
_Static_assert(_IOR('T', 3, struct tdx_extend_rtmr_req) == TDX_CMD_EXTEND_RTMR, "EXTEND_RTMR");
_Static_assert(_IOW('T', 3, struct tdx_extend_rtmr_req) == TDX_CMD_EXTEND_RTMR_W, "EXTEND _IOW");
_Static_assert(_IOR('T', 4, struct tdx_quote_req) == TDX_CMD_GET_QUOTE, "GET_QUOTE");

static int sys_open(void *ud, const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int sys_ioctl(void *ud, int fd, unsigned long req, void *arg)
{
	int rc;

	do {
		rc = ioctl(fd, req, arg);
	} while (rc < 0 && errno == EINTR);
	return rc < 0 ? -errno : 0;
}

static void sys_close(void *ud, int fd)
{
	close(fd);
}

const struct tdx_guest_ops tdx_guest_sys_ops = {
	.open = sys_open,
	.ioctl = sys_ioctl,
	.close = sys_close,
	.ud = NULL,
};

static const struct tdx_guest_ops *ops_of(const struct tdx_guest_dev *dev)
{
	return dev && dev->ops ? dev->ops : &tdx_guest_sys_ops;
}

static const char *path_of(const struct tdx_guest_dev *dev)
{
	return dev && dev->path ? dev->path : TDX_GUEST_DEVICE;
}

static int open_dev(const struct tdx_guest_dev *dev, struct tdx_error *err)
{
	const struct tdx_guest_ops *ops = ops_of(dev);
	int fd = ops->open(ops->ud, path_of(dev));

	if (fd < 0)
		return tdx_fail(err, fd, tdx_errno_code(fd), TDX_NO_OFFSET, "open %s: %s",
				path_of(dev), strerror(-fd));
	return fd;
}

static int ioctl_fail(const struct tdx_guest_dev *dev, const char *what, int rc,
		      struct tdx_error *err)
{
	const char *hint =
		rc == -ENOTTY ? " (not a TDX guest device, or the ioctl is unsupported)" : "";
	return tdx_fail(err, rc, tdx_errno_code(rc), TDX_NO_OFFSET, "%s on %s: %s%s", what,
			path_of(dev), strerror(-rc), hint);
}

int tdx_guest_get_report(const struct tdx_guest_dev *dev,
			 const uint8_t report_data[TDX_REPORT_DATA_LEN],
			 uint8_t tdreport[TDX_TDREPORT_LEN], struct tdx_error *err)
{
	const struct tdx_guest_ops *ops = ops_of(dev);
	struct tdx_report_req req;
	int fd = open_dev(dev, err);

	if (fd < 0)
		return fd;
	memset(&req, 0, sizeof(req));
	memcpy(req.reportdata, report_data, TDX_REPORT_DATA_LEN);
	int rc = ops->ioctl(ops->ud, fd, TDX_CMD_GET_REPORT0, &req);
	ops->close(ops->ud, fd);
	if (rc)
		return ioctl_fail(dev, "TDX_CMD_GET_REPORT0", rc, err);
	memcpy(tdreport, req.tdreport, TDX_TDREPORT_LEN);
	return 0;
}

int tdx_guest_extend_rtmr(const struct tdx_guest_dev *dev, unsigned index,
			  const uint8_t digest[TDX_MR_LEN], struct tdx_error *err)
{
	const struct tdx_guest_ops *ops = ops_of(dev);
	struct tdx_extend_rtmr_req req;

	if (index >= TDX_RTMR_COUNT)
		return tdx_fail(err, -EINVAL, "EINVAL", TDX_NO_OFFSET,
				"RTMR index %u out of range (0..3)", index);
	int fd = open_dev(dev, err);
	if (fd < 0)
		return fd;
	memcpy(req.data, digest, TDX_MR_LEN);
	req.index = (uint8_t)index;
	int rc = ops->ioctl(ops->ud, fd, TDX_CMD_EXTEND_RTMR, &req);
	if (rc == -ENOTTY)
		rc = ops->ioctl(ops->ud, fd, TDX_CMD_EXTEND_RTMR_W, &req);
	ops->close(ops->ud, fd);
	if (rc == -EINVAL)
		return tdx_fail(err, rc, "EINVAL", TDX_NO_OFFSET,
				"TDX_CMD_EXTEND_RTMR on %s: RTMR %u cannot be extended",
				path_of(dev), index);
	if (rc)
		return ioctl_fail(dev, "TDX_CMD_EXTEND_RTMR", rc, err);
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int tdx_guest_get_quote(const struct tdx_guest_dev *dev, const uint8_t tdreport[TDX_TDREPORT_LEN],
			uint8_t **quote, size_t *len, struct tdx_error *err)
{
	const struct tdx_guest_ops *ops = ops_of(dev);
	const uint8_t *q;
	size_t qlen;

	*quote = NULL;
	*len = 0;
	struct tdx_quote_hdr *hdr = calloc(1, TDX_GET_QUOTE_BUF_LEN);
	if (!hdr)
		return tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
	hdr->version = TDX_GET_QUOTE_VERSION;
	hdr->status = 0;
	hdr->in_len = 4 + TDX_QGS_REQUEST_LEN;
	hdr->out_len = 0;
	tdx_qgs_encode_request(tdreport, hdr->data);
	struct tdx_quote_req req = { .buf = (uint64_t)(uintptr_t)hdr,
				     .len = TDX_GET_QUOTE_BUF_LEN };
	int fd = open_dev(dev, err);
	if (fd < 0) {
		free(hdr);
		return fd;
	}
	int rc = ops->ioctl(ops->ud, fd, TDX_CMD_GET_QUOTE, &req);
	ops->close(ops->ud, fd);
	const size_t room = TDX_GET_QUOTE_BUF_LEN - sizeof(*hdr);
	if (rc)
		rc = ioctl_fail(dev, "TDX_CMD_GET_QUOTE", rc, err);
	else if (hdr->status != 0)
		rc = tdx_fail(err, -EPROTO, "EPROTO", TDX_NO_OFFSET,
			      "GetQuote failed: status 0x%016llx%s",
			      (unsigned long long)hdr->status,
			      hdr->status == TDX_GET_QUOTE_IN_FLIGHT ? " (still in flight)" : "");
	else if (hdr->out_len < 4 || hdr->out_len > room || be32(hdr->data) != hdr->out_len - 4)
		rc = tdx_fail(err, -EPROTO, "EPROTO", TDX_NO_OFFSET,
			      "GetQuote reply: out_len %u and message length %u disagree",
			      hdr->out_len, hdr->out_len >= 4 ? be32(hdr->data) : 0);
	else
		rc = tdx_qgs_decode_response(hdr->data + 4, hdr->out_len - 4, &q, &qlen, err);
	if (!rc) {
		*quote = malloc(qlen);
		if (!*quote)
			rc = tdx_fail(err, -ENOMEM, "ENOMEM", TDX_NO_OFFSET, "out of memory");
		else {
			memcpy(*quote, q, qlen);
			*len = qlen;
		}
	}
	free(hdr);
	return rc;
}
