/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Server lifecycle: one lws vhost per listening server, on TCP or on a unix socket created
 * 0600 (no window with a wider mode), refusing to steal a socket a live daemon still serves.
 * Closing is deferred to the next loop turn so a handler may close its own server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rt_http_internal.h"

/* Started servers, closing ones included until freed (see reclaim_endpoint). */
static struct rt_http_server *listening;

static void unlist(struct rt_http_server *srv)
{
	for (struct rt_http_server **p = &listening; *p; p = &(*p)->next_listening) {
		if (*p == srv) {
			*p = srv->next_listening;
			return;
		}
	}
}

static int reclaim_endpoint(struct rt_http_server *srv, char *err, size_t errlen);
static int unix_iface(const struct rt_http_server *srv, char *out, size_t len);

void rt_http_server_unref(struct rt_http_server *srv)
{
	if (!srv || --srv->refs > 0)
		return;
	unlist(srv);
	if (srv->release)
		srv->release(srv->user);
	rt_tls_opts_free(&srv->tls);
	for (int i = 0; i < srv->n_ws_paths; i++)
		free(srv->ws_paths[i]);
	free(srv->ws_paths);
	if (srv->protocols) {
		for (int i = 1; srv->protocols[i].name; i++)
			free((char *)srv->protocols[i].name);
		free(srv->protocols);
	}
	free(srv->name);
	free(srv->unix_path);
	free(srv->host);
	free(srv);
}

static void vhost_finalize(struct lws_vhost *vh, void *arg)
{
	struct rt_http_server *srv = arg;
	srv->vhost = NULL;
	srv->closed = true;
	if (!srv->ctx_released) {
		srv->ctx_released = true;
		rt_http_ctx_release(srv->ctx);
	}
	rt_http_server_unref(srv);
}

static int prepare_unix_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "ENAMETOOLONG: unix socket path too long (max %zu): %s",
			 sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "EEXIST: %s exists and is not a socket", path);
		return -EEXIST;
	}
	if (rt_unix_socket_probe(path) == 1) {
		snprintf(err, errlen, "EADDRINUSE: another process is serving %s", path);
		return -EADDRINUSE;
	}
	unlink(path); // stale socket from a previous run
	return 0;
}

/*
 * Is host:port taken? lws lets a second vhost share the listening socket of an earlier one
 * on the same port (name-based virtual hosting), so a server started twice on one port would
 * silently share it: probe with a bind first. Names that are not IP literals are left to lws.
 */
static int probe_tcp_port(const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char service[8];
	snprintf(service, sizeof(service), "%d", port);
	if (getaddrinfo(host, service, &hints, &res) != 0)
		return 0;
	int rc = 0;
	for (struct addrinfo *a = res; a && !rc; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); // as lws does
		if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 && errno == EADDRINUSE) {
			snprintf(err, errlen, "EADDRINUSE: %s:%d is already in use",
				 host ? host : "*", port);
			rc = -EADDRINUSE;
		}
		close(fd);
	}
	freeaddrinfo(res);
	return rc;
}

/*
 * lws binds to interface names or numeric addresses only: a host name such as "localhost" would
 * leave the server without a listener. Resolve it here (once, at start) to its first address.
 */
static int numeric_host(struct rt_http_server *srv, char *err, size_t errlen)
{
	unsigned char buf[sizeof(struct in6_addr)];
	if (!srv->host || inet_pton(AF_INET, srv->host, buf) == 1 ||
	    inet_pton(AF_INET6, srv->host, buf) == 1)
		return 0;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char numeric[INET6_ADDRSTRLEN] = "";
	int gai = getaddrinfo(srv->host, NULL, &hints, &res);
	if (gai == 0 && res)
		getnameinfo(res->ai_addr, res->ai_addrlen, numeric, sizeof(numeric), NULL, 0,
			    NI_NUMERICHOST);
	if (res)
		freeaddrinfo(res);
	if (!numeric[0]) {
		snprintf(err, errlen, "EADDRNOTAVAIL: cannot resolve the listen host %s: %s",
			 srv->host, gai ? gai_strerror(gai) : "no address");
		return -EADDRNOTAVAIL;
	}
	char *copy = strdup(numeric);
	if (!copy) {
		snprintf(err, errlen, "ENOMEM: out of memory");
		return -ENOMEM;
	}
	free(srv->host);
	srv->host = copy;
	return 0;
}

static int listen_now(struct rt_http_server *srv, struct rt_runtime *rt, char *err, size_t errlen)
{
	int rc;
	if (!srv->unix_path && (rc = numeric_host(srv, err, errlen)) != 0)
		return rc;
	if ((rc = reclaim_endpoint(srv, err, errlen)) != 0)
		return rc;
	if (srv->unix_path && (rc = prepare_unix_path(srv->unix_path, err, errlen)) != 0)
		return rc;
	if (!srv->unix_path && srv->port &&
	    (rc = probe_tcp_port(srv->host, srv->port, err, errlen)) != 0)
		return rc;

	srv->ctx = rt_http_ctx_acquire(rt);
	if (!srv->ctx) {
		snprintf(err, errlen, "EIO: cannot create the libwebsockets context");
		return -EIO;
	}
	struct lws_context_creation_info vi;
	memset(&vi, 0, sizeof(vi));
	vi.vhost_name = srv->name;
	vi.protocols = srv->protocols;
	vi.user = srv;
	vi.finalize = vhost_finalize;
	vi.finalize_arg = srv;
	vi.keepalive_timeout = 10; // dstack's guest agent keeps idle connections 10 s
	vi.timeout_secs = 30;
	vi.server_string = "moonstack";
	vi.alpn = "http/1.1";
	vi.options = LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
	if (srv->unix_path) {
		vi.options |= LWS_SERVER_OPTION_UNIX_SOCK;
		// lws keeps this pointer for the vhost's lifetime: it lives in srv.
		if (unix_iface(srv, srv->lws_iface, sizeof(srv->lws_iface)) != 0) {
			srv->ctx_released = true;
			rt_http_ctx_release(srv->ctx);
			snprintf(err, errlen, "ENAMETOOLONG: unix socket path too long: %s",
				 srv->unix_path);
			return -ENAMETOOLONG;
		}
		vi.iface = srv->lws_iface;
		vi.port = 0;
	} else {
		vi.iface = srv->host;
		vi.port = srv->port;
		/* lws opens an IPv6 socket unless told otherwise, and does not bind it to an IPv4
		 * address: a host of 127.0.0.1 would listen on every interface. */
		struct in_addr v4;
		if (srv->host && inet_pton(AF_INET, srv->host, &v4) == 1)
			vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	}
	if (srv->tls.cert) {
		vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		vi.server_ssl_cert_mem = srv->tls.cert;
		vi.server_ssl_cert_mem_len = (unsigned int)strlen(srv->tls.cert);
		vi.server_ssl_private_key_mem = srv->tls.key;
		vi.server_ssl_private_key_mem_len = (unsigned int)strlen(srv->tls.key);
	}
	srv->refs++; // the vhost's, dropped in vhost_finalize
	mode_t old = srv->unix_path ? umask(0177) : 0;
	rt_http_sock_listen_begin();
	srv->vhost = lws_create_vhost(srv->ctx->lws, &vi);
	srv->listen_fd = srv->vhost ? rt_http_sock_listen_end() : -1;
	if (srv->unix_path)
		umask(old);
	if (!srv->vhost) {
		srv->refs--;
		srv->ctx_released = true;
		rt_http_ctx_release(srv->ctx);
		snprintf(err, errlen,
			 "EADDRNOTAVAIL: cannot listen on %s%s%d (see the lws log above)",
			 srv->unix_path ? srv->unix_path : (srv->host ? srv->host : "*"),
			 srv->unix_path ? "" : ":", srv->unix_path ? 0 : srv->port);
		if (srv->unix_path)
			snprintf(err, errlen, "EADDRNOTAVAIL: cannot listen on %s", srv->unix_path);
		return -EADDRNOTAVAIL;
	}
	srv->next_listening = listening;
	listening = srv;
	if (srv->unix_path) {
		// lws creates the socket 0660; the umask kept it 0600 until now.
		if (chmod(srv->unix_path, srv->unix_mode) != 0) {
			snprintf(err, errlen, "EPERM: chmod %s: %s", srv->unix_path,
				 strerror(errno));
			rt_http_server_close(srv);
			return -EPERM;
		}
	} else {
		srv->port = lws_get_vhost_listen_port(srv->vhost);
		char probe[160];
		// lws reports the port it was given even when it could not bind it (an address no
		// interface holds): it is ours only if binding it now fails with EADDRINUSE
		if (srv->port <= 0 ||
		    probe_tcp_port(srv->host, srv->port, probe, sizeof(probe)) == 0) {
			snprintf(err, errlen,
				 "EADDRNOTAVAIL: cannot listen on %s (see the lws log above)",
				 srv->host ? srv->host : "*");
			rt_http_server_close(srv);
			return -EADDRNOTAVAIL;
		}
	}
	return 0;
}

struct closer {
	uv_timer_t timer;
	struct rt_http_server *srv;
	struct rt_runtime *rt;
};

static void closer_closed(uv_handle_t *h)
{
	struct closer *c = h->data;
	struct rt_http_server *srv = c->srv;
	if (!srv->ctx_released) {
		srv->ctx_released = true;
		rt_http_ctx_release(srv->ctx);
	}
	rt_shutdown_work_done(c->rt);
	rt_http_server_unref(srv);
	free(c);
}

/* Close @p fd's wsi (asynchronously) if it is one of @p srv's vhost. True if so. */
static bool kill_if_ours(int fd, struct rt_http_server *srv)
{
	struct lws *wsi = fd >= 0 ? wsi_from_fd(srv->ctx->lws, fd) : NULL;
	if (!wsi || lws_get_vhost(wsi) != srv->vhost)
		return false; // gone, or handed over to another vhost on the same endpoint
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	return true;
}

/* rt_http_sock_each_conn() callback: close @p fd if it is an idle HTTP connection of @p ud's
 * vhost (websockets get their close frame first; requests in progress finish). */
static void kill_idle_conn(int fd, void *ud)
{
	struct rt_http_server *srv = ud;
	struct lws *wsi = wsi_from_fd(srv->ctx->lws, fd);
	struct rt_http_pss *pss =
		wsi && lws_get_vhost(wsi) == srv->vhost ? lws_wsi_user(wsi) : NULL;
	if (pss && !pss->ex && !pss->ws)
		kill_if_ours(fd, srv);
}

/* Destroy @p srv's vhost now: websockets asked to close (the Lua server closes its clients
 * with 1001) get their close frame first, since destroying the vhost drops the connections. */
static void destroy_vhost(struct rt_http_server *srv)
{
	if (!srv->vhost || srv->vhost_destroyed)
		return;
	srv->vhost_destroyed = true;
	for (int i = 0; srv->protocols && srv->protocols[i].name; i++) {
		const struct lws_protocols *p =
			lws_vhost_name_to_protocol(srv->vhost, srv->protocols[i].name);
		if (p)
			lws_callback_all_protocol_vhost_args(srv->vhost, p, LWS_CALLBACK_USER, NULL,
							     0);
	}
	lws_vhost_destroy(srv->vhost);
	// lws closes the vhost's listener and connections only in a check it runs every 30 s, and
	// the vhost is freed when the last of them is: close the listener and idle connections now
	// (a connection with a request in progress closes after its response, see send_response)
	kill_if_ours(srv->listen_fd, srv);
	rt_http_sock_each_conn(kill_idle_conn, srv);
	lws_cancel_service(srv->ctx->lws); // on a foreign loop, lws needs a nudge
}

static void closer_cb(uv_timer_t *t)
{
	struct closer *c = t->data;
	destroy_vhost(c->srv);
	uv_close((uv_handle_t *)t, closer_closed);
}

/*
 * The interface string lws gets for a unix socket. lws 4.1 lets a new vhost share the listener
 * of any vhost with the same interface string, a dying one included (its listener stays until
 * lws's deferred free, up to a second later). Spell the same path differently ("dir/./name",
 * one "./" per server still holding the path) so a restarted server binds its own socket.
 */
static int unix_iface(const struct rt_http_server *srv, char *out, size_t len)
{
	int holders = 0;
	for (const struct rt_http_server *o = listening; o; o = o->next_listening)
		if (o != srv && o->unix_path && strcmp(o->unix_path, srv->unix_path) == 0)
			holders++;
	const char *slash = strrchr(srv->unix_path, '/');
	size_t dirlen = slash ? (size_t)(slash - srv->unix_path) + 1 : 0;
	size_t need = strlen(srv->unix_path) + 2 * (size_t)holders + 1;
	if (need > len)
		return -1;
	memcpy(out, srv->unix_path, dirlen);
	size_t n = dirlen;
	for (int i = 0; i < holders; i++, n += 2)
		memcpy(out + n, "./", 2);
	strcpy(out + n, srv->unix_path + dirlen);
	return 0;
}

static bool same_endpoint(const struct rt_http_server *a, const struct rt_http_server *b)
{
	if (a->unix_path || b->unix_path)
		return a->unix_path && b->unix_path && strcmp(a->unix_path, b->unix_path) == 0;
	return a->port && a->port == b->port &&
	       ((!a->host && !b->host) || (a->host && b->host && strcmp(a->host, b->host) == 0));
}

/*
 * lws hands a new vhost the listening socket of any vhost on the same interface and port, a
 * closing one included: a server restarted on its endpoint would share the dying listener
 * (and its unlinked unix path). Finish destroying such a closed server's vhost first.
 */
static int reclaim_endpoint(struct rt_http_server *srv, char *err, size_t errlen)
{
	for (struct rt_http_server *o = listening; o; o = o->next_listening) {
		if (o == srv || !o->closed || !o->vhost || o->vhost_destroyed ||
		    !same_endpoint(o, srv))
			continue;
		if (o->dispatching) {
			snprintf(
				err, errlen,
				"EBUSY: the server closing on this endpoint is still in a handler");
			return -EBUSY;
		}
		destroy_vhost(o);
	}
	return 0;
}

void rt_http_server_close(struct rt_http_server *srv)
{
	if (!srv || srv->closed)
		return;
	srv->closed = true;
	if (srv->unix_path && srv->vhost)
		unlink(srv->unix_path);
	if (!srv->vhost || srv->ctx_released)
		return;
	struct closer *c = calloc(1, sizeof(*c));
	if (!c)
		return; // the context teardown will destroy the vhost
	c->srv = srv;
	c->rt = srv->ctx->rt;
	c->timer.data = c;
	srv->refs++;
	rt_shutdown_work_begin(c->rt);
	uv_timer_init(rt_loop(c->rt), &c->timer);
	uv_timer_start(&c->timer, closer_cb, 0, 0);
}

void rt_http_server_config_init(struct rt_http_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->unix_mode = 0600;
	cfg->max_body = RT_HTTP_DEFAULT_MAX_BODY;
	cfg->max_ws_message = RT_WS_DEFAULT_MAX_MESSAGE;
}

static char *dup_opt(const char *s, bool *oom)
{
	char *copy = s ? strdup(s) : NULL;
	if (s && !copy)
		*oom = true;
	return copy;
}

/* Copy @p cfg into @p srv. Returns 0 or -ENOMEM (what was copied is freed with srv). */
static int copy_config(struct rt_http_server *srv, const struct rt_http_server_config *cfg)
{
	bool oom = false;
	srv->unix_path = dup_opt(cfg->unix_path, &oom);
	srv->host = dup_opt(cfg->host, &oom);
	srv->name = dup_opt(cfg->name ? cfg->name : cfg->unix_path ? "unix" : "http", &oom);
	srv->port = cfg->port;
	srv->unix_mode = cfg->unix_mode;
	srv->max_body = cfg->max_body;
	srv->max_ws_message = cfg->max_ws_message;
	if (cfg->n_ws_paths > 0) {
		srv->ws_paths = calloc((size_t)cfg->n_ws_paths + 1, sizeof(char *));
		oom = oom || !srv->ws_paths;
		for (int i = 0; srv->ws_paths && i < cfg->n_ws_paths; i++)
			srv->ws_paths[srv->n_ws_paths++] = dup_opt(cfg->ws_paths[i], &oom);
	}
	// protocols: [0] ours (HTTP, and websockets without a subprotocol), then named ones.
	int n = cfg->n_ws_protocols > 0 ? cfg->n_ws_protocols : 0;
	srv->protocols = calloc((size_t)n + 2, sizeof(struct lws_protocols));
	if (!srv->protocols)
		return -ENOMEM;
	srv->protocols[0].name = "moonstack";
	srv->protocols[0].callback = rt_http_server_callback;
	srv->protocols[0].per_session_data_size = sizeof(struct rt_http_pss);
	for (int i = 1; i <= n; i++) {
		char *name = dup_opt(cfg->ws_protocols[i - 1], &oom);
		if (!name)
			break; // the list ends at the first NULL name
		srv->protocols[i].name = name;
		srv->protocols[i].callback = rt_http_server_callback;
		srv->protocols[i].per_session_data_size = sizeof(struct rt_http_pss);
	}
	if (rt_tls_opts_copy(&srv->tls, &cfg->tls) != 0)
		oom = true;
	return oom ? -ENOMEM : 0;
}

int rt_http_server_start(struct rt_runtime *rt, const struct rt_http_server_config *cfg,
			 struct rt_http_server **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!cfg->on_request || (cfg->unix_path && cfg->host) ||
	    (cfg->tls.cert == NULL) != (cfg->tls.key == NULL)) {
		snprintf(err, errlen, "EINVAL: %s",
			 !cfg->on_request	       ? "a server needs a request handler"
			 : cfg->unix_path && cfg->host ? "'unix' and 'host' are exclusive"
						       : "tls.cert and tls.key go together");
		return -EINVAL;
	}
	struct rt_http_server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "ENOMEM: out of memory");
		return -ENOMEM;
	}
	srv->refs = 1; // the caller's
	srv->listen_fd = -1;
	int rc = copy_config(srv, cfg);
	if (rc != 0)
		snprintf(err, errlen, "ENOMEM: out of memory");
	else
		rc = listen_now(srv, rt, err, errlen);
	if (rc != 0) {
		srv->closed = true;
		rt_http_server_unref(srv); // a pending close may hold it a little longer
		return rc;
	}
	// Handlers from here only: a failed start calls nothing, release included.
	srv->on_request = cfg->on_request;
	srv->on_ws = cfg->on_ws;
	srv->ws_filter = cfg->ws_filter;
	srv->user = cfg->user;
	srv->release = cfg->release;
	if (srv->unix_path)
		rt_log(RT_LOG_DEBUG, "http", "%s listening on unix:%s", srv->name, srv->unix_path);
	else
		rt_log(RT_LOG_DEBUG, "http", "%s listening on %s:%d", srv->name,
		       srv->host ? srv->host : "*", srv->port);
	*out = srv;
	return 0;
}

int rt_http_server_port(const struct rt_http_server *srv)
{
	return srv->unix_path ? 0 : srv->port;
}

const char *rt_http_server_unix_path(const struct rt_http_server *srv)
{
	return srv->unix_path;
}

const char *rt_http_server_host(const struct rt_http_server *srv)
{
	return srv->host;
}

const char *rt_http_server_name(const struct rt_http_server *srv)
{
	return srv->name;
}

unsigned long rt_http_server_requests(const struct rt_http_server *srv)
{
	return srv->requests;
}

bool rt_http_server_closed(const struct rt_http_server *srv)
{
	return srv->closed;
}
