/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libwebsockets context on the runtime's loop. It lives while servers or client requests
 * use it: an idle lws context keeps the loop alive, so the last user destroys it, in the two
 * stages lws needs on a foreign loop (destroy, let the loop drain, destroy again).
 */
#include <string.h>

#include "rt_http_internal.h"

/* The context currently accepting users, per runtime (one runtime per process in practice). */
static struct rt_http_ctx *live_ctx;

/* Request targets longer than RT_HTTP_MAX_URI are cut by lws (rt_http_server.c answers 414)
 * instead of filling the header space; 0: no limit but the header space. */
static struct lws_token_limits token_limits;

static void init_token_limits(void)
{
	static const enum lws_token_indexes targets[] = {
		WSI_TOKEN_GET_URI, WSI_TOKEN_POST_URI,	WSI_TOKEN_OPTIONS_URI,
		WSI_TOKEN_PUT_URI, WSI_TOKEN_PATCH_URI, WSI_TOKEN_DELETE_URI,
		WSI_TOKEN_CONNECT, WSI_TOKEN_HEAD_URI,	WSI_TOKEN_HTTP_URI_ARGS,
	};
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		token_limits.token_limit[targets[i]] = RT_HTTP_MAX_URI;
}

static void lws_log_emit(int level, const char *line)
{
	enum rt_log_level l = level == LLL_ERR	    ? RT_LOG_ERROR
			      : level == LLL_WARN   ? RT_LOG_WARN
			      : level == LLL_NOTICE ? RT_LOG_INFO
						    : RT_LOG_DEBUG;
	char msg[1024];
	size_t n = strlen(line);
	if (n >= sizeof(msg))
		n = sizeof(msg) - 1;
	memcpy(msg, line, n);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	msg[n] = '\0';
	// lws prefixes its own timestamp and level letter: keep only the message.
	const char *p = msg;
	const char *close = strchr(p, ']');
	if (p[0] == '[' && close)
		p = close + 1;
	while (*p == ' ')
		p++;
	if (p[0] && p[1] == ':' && p[2] == ' ')
		p += 3;
	// the only sign that lws drops a request whose header section does not fit
	if (!strcmp(p, "Ran out of header data space") ||
	    !strcmp(p, "More hdr frags than we can deal with")) {
		rt_http_sock_header_overflow();
		l = RT_LOG_DEBUG; // a client's doing, answered 431: not worth an error line
	} else if (!strncmp(p, "header ", 7) && strstr(p, " exceeds limit ")) {
		l = RT_LOG_DEBUG; // a request target cut at RT_HTTP_MAX_URI, answered 414
	}
	rt_log_emit(l, "lws", p, NULL);
}

static void reaper_closed(uv_handle_t *h)
{
	struct rt_http_ctx *ctx = h->data;
	rt_shutdown_work_done(ctx->rt);
	rt_tls_cache_free(ctx->tls_cache);
	free(ctx);
}

/*
 * Loop turns after the first destroy: lws closes its libuv handles asynchronously and, once
 * they are closed, finishes by itself (clearing ctx->lws through pcontext). Only if it has not
 * after the loop turned a few times is the second destroy call made.
 */
static void reaper_cb(uv_timer_t *t)
{
	struct rt_http_ctx *ctx = t->data;
	if (ctx->lws && ++ctx->reaper_turns < 5)
		return; // repeating timer: look again next turn
	if (ctx->lws) {
		rt_log(RT_LOG_DEBUG, "http", "finishing the lws context destroy");
		lws_context_destroy(ctx->lws); // stage 2
		ctx->lws = NULL;
	}
	uv_timer_stop(&ctx->reaper);
	uv_close((uv_handle_t *)&ctx->reaper, reaper_closed);
}

static void ctx_shutdown_hook(void *ud, int stage);

static void ctx_begin_destroy(struct rt_http_ctx *ctx)
{
	if (ctx->destroying)
		return;
	ctx->destroying = true;
	if (live_ctx == ctx)
		live_ctx = NULL;
	rt_off_shutdown(ctx->rt, ctx_shutdown_hook, ctx);
	rt_shutdown_work_begin(ctx->rt);
	if (ctx->lws)
		lws_context_destroy(ctx->lws); // stage 1: lws closes its handles
	uv_timer_start(&ctx->reaper, reaper_cb, 0, 1);
}

/* Runtime shutdown with users still around (servers never closed): tear down anyway. */
static void ctx_shutdown_hook(void *ud, int stage)
{
	struct rt_http_ctx *ctx = ud;
	if (stage == 0)
		ctx_begin_destroy(ctx);
}

struct rt_http_ctx *rt_http_ctx_acquire(struct rt_runtime *rt)
{
	if (live_ctx && !live_ctx->destroying) {
		live_ctx->users++;
		return live_ctx;
	}
	struct rt_http_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		return NULL;
	ctx->rt = rt;
	rt_http_sock_init(rt);
	uv_timer_init(rt_loop(rt), &ctx->reaper);
	ctx->reaper.data = ctx;

	int lws_levels = LLL_ERR | LLL_WARN;
	if (rt_log_get_level() == RT_LOG_DEBUG)
		lws_levels |= LLL_NOTICE;
	lws_set_log_level(lws_levels, lws_log_emit);

	init_token_limits();
	static void *loops[1];
	loops[0] = rt_loop(rt);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
		       LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.foreign_loops = loops;
	info.pcontext = &ctx->lws;
	info.user = ctx;
	// lws sends client certificate verification to the context's protocol 0.
	info.protocols = rt_http_client_protocols;
	/* Reads larger than a TLS record (16 KiB of plaintext): lws reads pt_serv_buf_size -
	 * LWS_PRE at a time, and plaintext left inside OpenSSL after a read is serviced only once
	 * per loop turn on libuv, then waits for the next socket event; a client that has sent its
	 * whole body waits for the answer, so a body ending in such leftovers stalled until it gave
	 * up. A buffer larger than any record leaves nothing behind. */
	info.pt_serv_buf_size = RT_HTTP_READ_BUFFER;
	info.max_http_header_data = RT_HTTP_HEADER_SPACE;
	info.token_limits = &token_limits; // a longer target is cut there, and answered 414
	ctx->lws = lws_create_context(&info);
	if (!ctx->lws) {
		rt_shutdown_work_begin(rt); // balanced by reaper_closed
		uv_close((uv_handle_t *)&ctx->reaper, reaper_closed);
		return NULL;
	}
	rt_on_shutdown(rt, ctx_shutdown_hook, ctx);
	ctx->users = 1;
	live_ctx = ctx;
	return ctx;
}

void rt_http_ctx_release(struct rt_http_ctx *ctx)
{
	if (!ctx || ctx->users <= 0)
		return;
	if (--ctx->users == 0)
		ctx_begin_destroy(ctx);
}

struct rt_tls_cache *rt_http_ctx_tls_cache(struct rt_http_ctx *ctx)
{
	if (!ctx->tls_cache)
		ctx->tls_cache = rt_tls_cache_new();
	return ctx->tls_cache;
}
