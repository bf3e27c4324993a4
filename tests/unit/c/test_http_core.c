/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cmocka tests of the runtime's HTTP/TLS core through its C API alone (moonstack/rt_http.h and
 * moonstack/rt_tls.h, no lua_State): the TLS cache hands out the same parsed material and SSL_CTX
 * for the same PEM; SSL_CTX built from PEM complete a mutual-TLS handshake (a C proxy's use) and
 * expose the client certificate; an HTTPS server with a C handler answers (later, from a timer)
 * requests of the C client over mutual TLS on 127.0.0.1, sees the client certificate, and refuses
 * a client without one; a client trusting the wrong CA refuses the server.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "moonstack/rt_http.h"
#include "moonstack/rt_tls.h"

/* A self-signed certificate, its key, both as PEM. */
struct cred {
	char *cert_pem;
	char *key_pem;
	X509 *cert;
};

static char *bio_text(BIO *bio)
{
	char *data = NULL;
	long n = BIO_get_mem_data(bio, &data);
	char *copy = malloc((size_t)n + 1);
	assert_non_null(copy);
	memcpy(copy, data, (size_t)n);
	copy[n] = '\0';
	BIO_free(bio);
	return copy;
}

static void make_cred(struct cred *c, const char *cn, const char *san, long serial)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	assert_non_null(key);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	if (san) {
		X509V3_CTX v3;
		X509V3_set_ctx_nodb(&v3);
		X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
		X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
		assert_non_null(ext);
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	c->cert_pem = bio_text(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
	c->key_pem = bio_text(b);
	c->cert = x;
	EVP_PKEY_free(key);
}

static void free_cred(struct cred *c)
{
	free(c->cert_pem);
	free(c->key_pem);
	X509_free(c->cert);
}

static struct cred server_cred, client_cred;

static int make_creds(void **state)
{
	make_cred(&server_cred, "moonstack test server", "IP:127.0.0.1,DNS:localhost", 1);
	make_cred(&client_cred, "moonstack test client", NULL, 2);
	return 0;
}

static int free_creds(void **state)
{
	free_cred(&server_cred);
	free_cred(&client_cred);
	return 0;
}

/* A verification hook that accepts exactly @p user's certificate, and counts its calls. */
struct pin {
	X509 *expect;
	int calls;
};

static bool pin_verify(void *user, X509_STORE_CTX *store, bool ok, const char *why)
{
	struct pin *p = user;
	p->calls++;
	X509 *leaf = X509_STORE_CTX_get0_cert(store);
	return ok && leaf && X509_cmp(leaf, p->expect) == 0;
}

static void test_tls_cache_same_context(void **state)
{
	struct rt_tls_cache *cache = rt_tls_cache_new();
	assert_non_null(cache);
	char err[256] = "";
	struct rt_tls_config cfg = { .cert = server_cred.cert_pem, .key = server_cred.key_pem };

	SSL_CTX *a = rt_tls_cache_server_ctx(cache, &cfg, err, sizeof(err));
	assert_non_null(a);
	// the same PEM in another buffer: the same context
	char *cert_copy = strdup(server_cred.cert_pem);
	struct rt_tls_config same = { .cert = cert_copy, .key = server_cred.key_pem };
	SSL_CTX *b = rt_tls_cache_server_ctx(cache, &same, err, sizeof(err));
	assert_ptr_equal(a, b);
	// other settings: another context
	struct rt_tls_config other = cfg;
	other.require_peer = true;
	other.ca = client_cred.cert_pem;
	SSL_CTX *c = rt_tls_cache_server_ctx(cache, &other, err, sizeof(err));
	assert_non_null(c);
	assert_ptr_not_equal(a, c);
	struct rt_tls_config client = { .ca = server_cred.cert_pem };
	SSL_CTX *d = rt_tls_cache_client_ctx(cache, &client, err, sizeof(err));
	SSL_CTX *e = rt_tls_cache_client_ctx(cache, &client, err, sizeof(err));
	assert_non_null(d);
	assert_ptr_equal(d, e);
	assert_ptr_not_equal(a, d);

	const struct rt_tls_identity *id =
		rt_tls_cache_identity(cache, server_cred.cert_pem, server_cred.key_pem);
	assert_non_null(id);
	assert_int_equal(X509_cmp(id->leaf, server_cred.cert), 0);
	assert_ptr_equal(id, rt_tls_cache_identity(cache, cert_copy, server_cred.key_pem));
	X509_STORE *st = rt_tls_cache_store(cache, client_cred.cert_pem);
	assert_non_null(st);
	assert_ptr_equal(st, rt_tls_cache_store(cache, client_cred.cert_pem));
	assert_null(rt_tls_cache_store(cache, "no certificate here"));

	// a server needs a certificate; handed-out contexts outlive the cache
	struct rt_tls_config none = { 0 };
	assert_null(rt_tls_cache_server_ctx(cache, &none, err, sizeof(err)));
	assert_non_null(strstr(err, "EINVAL"));
	rt_tls_cache_free(cache);
	SSL *ssl = SSL_new(a);
	assert_non_null(ssl);
	SSL_free(ssl);
	SSL_CTX_free(a);
	SSL_CTX_free(b);
	SSL_CTX_free(c);
	SSL_CTX_free(d);
	SSL_CTX_free(e);
	free(cert_copy);
}

/* Drive a handshake between @p c and @p s over a BIO pair. Returns true if both completed. */
static bool handshake(SSL *c, SSL *s)
{
	BIO *bc, *bs;
	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(c, bc, bc);
	SSL_set_bio(s, bs, bs);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	int rc = 0, rs = 0;
	for (int i = 0; i < 50 && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(c);
		if (rs != 1)
			rs = SSL_do_handshake(s);
		if ((rc <= 0 && SSL_get_error(c, rc) == SSL_ERROR_SSL) ||
		    (rs <= 0 && SSL_get_error(s, rs) == SSL_ERROR_SSL))
			return false;
	}
	return rc == 1 && rs == 1;
}

static void test_tls_contexts_mutual_handshake(void **state)
{
	struct rt_tls_cache *cache = rt_tls_cache_new();
	char err[256] = "";
	struct pin server_pin = { .expect = client_cred.cert };
	struct pin client_pin = { .expect = server_cred.cert };
	struct rt_tls_config scfg = {
		.cert = server_cred.cert_pem,
		.key = server_cred.key_pem,
		.ca = client_cred.cert_pem,
		.require_peer = true,
		.verify = pin_verify,
		.verify_user = &server_pin,
	};
	struct rt_tls_config ccfg = {
		.cert = client_cred.cert_pem,
		.key = client_cred.key_pem,
		.ca = server_cred.cert_pem,
		.verify = pin_verify,
		.verify_user = &client_pin,
	};
	SSL_CTX *sctx = rt_tls_cache_server_ctx(cache, &scfg, err, sizeof(err));
	SSL_CTX *cctx = rt_tls_cache_client_ctx(cache, &ccfg, err, sizeof(err));
	assert_non_null(sctx);
	assert_non_null(cctx);

	SSL *s = SSL_new(sctx);
	SSL *c = rt_tls_client_ssl_new(cctx, "127.0.0.1");
	assert_true(handshake(c, s));
	assert_int_equal(server_pin.calls, 1); // once per handshake, at the leaf
	assert_int_equal(client_pin.calls, 1);

	// the peer certificate, registered for the natives that get its DER
	struct rt_tls_peer *peer = rt_tls_peer_take(s);
	assert_non_null(peer);
	size_t len = 0;
	const unsigned char *der = rt_tls_peer_der(peer, &len);
	assert_true(len > 0);
	X509 *x = rt_tls_peer_x509(der, len);
	assert_ptr_equal(x, rt_tls_peer_cert(peer)); // the handshake's own X509
	assert_int_equal(X509_cmp(x, client_cred.cert), 0);
	X509_free(x);
	unsigned char *copy = malloc(len);
	memcpy(copy, der, len);
	rt_tls_peer_release(peer);
	assert_null(rt_tls_peer_x509(copy, len));
	free(copy);
	SSL_free(s);
	SSL_free(c);

	// a host name the server certificate does not carry: the client refuses
	s = SSL_new(sctx);
	c = rt_tls_client_ssl_new(cctx, "other.example");
	assert_false(handshake(c, s));
	assert_int_equal(client_pin.calls, 2); // the hook saw the failed check...
	SSL_free(s);
	SSL_free(c);
	// ...and without the hook the check alone refuses
	struct rt_tls_config plain = { .ca = server_cred.cert_pem };
	SSL_CTX *pctx = rt_tls_cache_client_ctx(cache, &plain, err, sizeof(err));
	struct rt_tls_config open_server = { .cert = server_cred.cert_pem,
					     .key = server_cred.key_pem };
	SSL_CTX *octx = rt_tls_cache_server_ctx(cache, &open_server, err, sizeof(err));
	s = SSL_new(octx);
	c = rt_tls_client_ssl_new(pctx, "other.example");
	assert_false(handshake(c, s));
	SSL_free(s);
	SSL_free(c);
	s = SSL_new(octx);
	c = rt_tls_client_ssl_new(pctx, "localhost");
	assert_true(handshake(c, s));
	SSL_free(s);
	SSL_free(c);

	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	SSL_CTX_free(pctx);
	SSL_CTX_free(octx);
	rt_tls_cache_free(cache);
}

/* ---- an HTTPS server and the client, on the runtime's loop ---- */

struct http_test {
	struct rt_runtime *rt;
	struct rt_http_server *srv;
	struct pin server_pin;
	struct pin client_pin;
	int requests;
	bool request_ok; /* method, path, query, body, headers as sent */
	bool peer_ok;	 /* the client certificate, through both accessors */
	bool released;	 /* the server's release ran */
	struct rt_http_exchange *pending;
	uv_timer_t later;
	int step; /* requests completed */
	int status[3];
	char body[3][64];
	char reply_header[64];
	char code[3][32];
	struct rt_http_req *reqs[3];
	bool timed_out;
	uv_timer_t watchdog;
};

static const char *find_header(const char *h, size_t len, const char *name)
{
	for (size_t off = 0; off < len;) {
		const char *n = h + off;
		const char *v = n + strlen(n) + 1;
		if (strcmp(n, name) == 0)
			return v;
		off = (size_t)(v - h) + strlen(v) + 1;
	}
	return NULL;
}

static void answer_later(uv_timer_t *t)
{
	struct http_test *ht = t->data;
	static const char headers[] = "content-type\0text/plain\0x-reply\0later\0";
	rt_http_exchange_respond(ht->pending, 201, headers, sizeof(headers) - 1, "done", 4);
	rt_http_exchange_unref(ht->pending);
	ht->pending = NULL;
	uv_close((uv_handle_t *)t, NULL);
}

static int on_request(void *user, struct rt_http_exchange *ex, const struct rt_http_request *req)
{
	struct http_test *ht = user;
	ht->requests++;
	char *h = rt_http_exchange_header(ex, "X-Test", NULL);
	ht->request_ok = strcmp(req->method, "POST") == 0 && strcmp(req->path, "/echo") == 0 &&
			 strcmp(req->query, "a=1") == 0 && req->body_len == 5 &&
			 memcmp(req->body, "hello", 5) == 0 && h && strcmp(h, "yes") == 0 &&
			 strcmp(req->server, "c-test") == 0;
	free(h);
	// the client certificate, as DER and as the handshake's X509
	X509 *x = req->peer_cert ? rt_tls_peer_x509(req->peer_cert, req->peer_cert_len) : NULL;
	ht->peer_ok =
		x && x == rt_http_exchange_peer_x509(ex) && X509_cmp(x, client_cred.cert) == 0;
	X509_free(x);
	// answer from a timer, after the handler returned
	rt_http_exchange_ref(ex);
	ht->pending = ex;
	uv_timer_init(rt_loop(ht->rt), &ht->later);
	ht->later.data = ht;
	uv_timer_start(&ht->later, answer_later, 10, 0);
	return 0;
}

static void release_server(void *user)
{
	((struct http_test *)user)->released = true;
}

static void send_request(struct http_test *ht);

static void on_done(void *user, const struct rt_http_response *res, const char *code,
		    const char *msg)
{
	struct http_test *ht = user;
	int i = ht->step++;
	if (res) {
		ht->status[i] = res->status;
		snprintf(ht->body[i], sizeof(ht->body[i]), "%.*s", (int)res->body_len, res->body);
		const char *v = find_header(res->headers, res->headers_len, "x-reply");
		if (i == 0 && v)
			snprintf(ht->reply_header, sizeof(ht->reply_header), "%s", v);
	} else {
		snprintf(ht->code[i], sizeof(ht->code[i]), "%s", code);
	}
	if (ht->step < 3)
		send_request(ht);
	else
		rt_http_server_close(ht->srv);
}

/* 0: mutual TLS, 1: no client certificate, 2: the wrong CA for the server */
static void send_request(struct http_test *ht)
{
	static const char headers[] = "x-test\0yes\0";
	static const char want[] = "X-Reply\0";
	struct rt_http_client_opts o;
	rt_http_client_opts_init(&o);
	o.method = "POST";
	o.address = "127.0.0.1";
	o.port = rt_http_server_port(ht->srv);
	o.path = "/echo?a=1";
	o.body = "hello";
	o.body_len = 5;
	o.headers = headers;
	o.headers_len = sizeof(headers) - 1;
	o.want_headers = want;
	o.want_headers_len = sizeof(want) - 1;
	o.timeout_ms = 5000;
	o.use_tls = true;
	o.tls.ca = ht->step == 2 ? client_cred.cert_pem : server_cred.cert_pem;
	if (ht->step == 0) {
		o.tls.cert = client_cred.cert_pem;
		o.tls.key = client_cred.key_pem;
		o.tls.verify = pin_verify;
		o.tls.verify_user = &ht->client_pin;
	}
	char err[256] = "";
	int rc = rt_http_client_request(ht->rt, &o, on_done, ht, &ht->reqs[ht->step], err,
					sizeof(err));
	if (rc != 0)
		rt_log(RT_LOG_ERROR, "test", "request: %s", err);
}

static void watchdog(uv_timer_t *t)
{
	struct http_test *ht = t->data;
	ht->timed_out = true;
	rt_request_exit(ht->rt, 1);
}

static void test_https_server_and_client(void **state)
{
	struct rt_options opts = { 0 };
	struct http_test ht = { 0 };
	ht.rt = rt_create(&opts);
	assert_non_null(ht.rt);
	ht.server_pin.expect = client_cred.cert;
	ht.client_pin.expect = server_cred.cert;

	struct rt_http_server_config cfg;
	rt_http_server_config_init(&cfg);
	cfg.name = "c-test";
	cfg.host = "127.0.0.1";
	cfg.port = 0; // any free port
	cfg.tls.cert = server_cred.cert_pem;
	cfg.tls.key = server_cred.key_pem;
	cfg.tls.ca = client_cred.cert_pem;
	cfg.tls.require_peer = true;
	cfg.tls.verify = pin_verify;
	cfg.tls.verify_user = &ht.server_pin;
	cfg.on_request = on_request;
	cfg.user = &ht;
	cfg.release = release_server;
	char err[256] = "";
	assert_int_equal(rt_http_server_start(ht.rt, &cfg, &ht.srv, err, sizeof(err)), 0);
	assert_true(rt_http_server_port(ht.srv) > 0);
	assert_string_equal(rt_http_server_host(ht.srv), "127.0.0.1");

	// the port is taken now: a second server on it is refused, and calls nothing
	struct rt_http_server *dup = NULL;
	cfg.port = rt_http_server_port(ht.srv);
	assert_int_equal(rt_http_server_start(ht.rt, &cfg, &dup, err, sizeof(err)), -EADDRINUSE);
	assert_null(dup);
	assert_non_null(strstr(err, "EADDRINUSE"));

	uv_timer_init(rt_loop(ht.rt), &ht.watchdog);
	ht.watchdog.data = &ht;
	uv_timer_start(&ht.watchdog, watchdog, 20000, 0);
	uv_unref((uv_handle_t *)&ht.watchdog);
	send_request(&ht);
	rt_run(ht.rt); // until the server is closed and the context gone
	assert_false(ht.timed_out);

	assert_int_equal(ht.step, 3);
	assert_int_equal(ht.requests, 1);
	assert_true(ht.request_ok);
	assert_true(ht.peer_ok);
	assert_int_equal(ht.server_pin.calls, 1);
	assert_int_equal(ht.client_pin.calls, 1);
	assert_int_equal(ht.status[0], 201);
	assert_string_equal(ht.body[0], "done");
	assert_string_equal(ht.reply_header, "later");
	assert_string_equal(ht.code[0], "");
	assert_true(ht.code[1][0] != '\0'); // no client certificate: the server hangs up
	assert_string_equal(ht.code[2], "ECERT");
	assert_true(rt_http_server_closed(ht.srv));
	assert_int_equal(rt_http_server_requests(ht.srv), 1);

	assert_false(ht.released);
	rt_http_server_unref(ht.srv);
	assert_true(ht.released);
	for (int i = 0; i < 3; i++)
		rt_http_req_unref(ht.reqs[i]);
	rt_destroy(ht.rt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_cache_same_context),
		cmocka_unit_test(test_tls_contexts_mutual_handshake),
		cmocka_unit_test(test_https_server_and_client),
	};
	return cmocka_run_group_tests(tests, make_creds, free_creds);
}
