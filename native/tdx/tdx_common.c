/* SPDX-License-Identifier: Apache-2.0 */
/* Shared helpers of the tdx native: the error record, errno codes, hex, hashes, the quote lock. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "tdx/tdx.h"

int tdx_fail(struct tdx_error *err, int rc, const char *code, size_t offset, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return rc;
	err->code = code;
	err->offset = offset;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return rc;
}

const char *tdx_errno_code(int rc)
{
	switch (-rc) {
	case ENOENT:
	case ENOTDIR:
		return "ENOENT";
	case EPERM:
	case EACCES:
		return "EDENIED";
	case EBUSY:
	case EAGAIN:
		return "EBUSY";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case EINVAL:
		return "EINVAL";
	case ENOMEM:
		return "ENOMEM";
	case ENOTTY:
	case ENOTSUP:
	case EAFNOSUPPORT:
	case ENODEV:
	case ENXIO:
		return "ENOTSUP";
	case EPROTO:
		return "EPROTO";
	case ECONNREFUSED:
	case ECONNRESET:
	case EPIPE:
		return "ECONNREFUSED";
	default:
		return "EIO";
	}
}

void tdx_hex(const uint8_t *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static int digest(const EVP_MD *md, const void *data, size_t len, uint8_t *out)
{
	unsigned int n = 0;

	return EVP_Digest(data, len, out, &n, md, NULL) == 1 ? 0 : -ENOMEM;
}

int tdx_sha384(const void *data, size_t len, uint8_t out[TDX_MR_LEN])
{
	return digest(EVP_sha384(), data, len, out);
}

int tdx_sha256(const void *data, size_t len, uint8_t out[32])
{
	return digest(EVP_sha256(), data, len, out);
}

static pthread_mutex_t quote_mutex = PTHREAD_MUTEX_INITIALIZER;

void tdx_quote_lock(void)
{
	pthread_mutex_lock(&quote_mutex);
}

void tdx_quote_unlock(void)
{
	pthread_mutex_unlock(&quote_mutex);
}
