/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Binding `moonstack.native.tls`: a TLS engine over memory BIOs, for Lua code that owns its
 * sockets (luv) and needs what the libwebsockets-based HTTP stack does not give: one connection
 * kept for several exchanges, the peer's leaf certificate, and the session's exported keying
 * material (RFC 5705 / RFC 8446 §7.5; RFC 9266 `EXPORTER-Channel-Binding`). Used by the attested
 * TLS server and client (lua/moonstack/atls).
 *
 *   local tls = require('moonstack.native.tls')
 *   local ctx = tls.context({ mode = 'server', cert = PEM, key = PEM })
 *   local ctx = tls.context({ mode = 'client', ca = PEM?, insecure = false })
 *   local e = ctx:engine(server_name?)        -- one connection (client: SNI + host check)
 *   e:feed(ciphertext)                        -- bytes from the network
 *   e:handshake() -> true | false (needs bytes) | nil, 'ETLS: ...', 'ETLS'
 *   e:read() -> plaintext ('' when none yet) | false (peer closed) | nil, msg, code
 *   e:write(plaintext) -> true | nil, msg, code
 *   e:take() -> ciphertext to send ('' when none)
 *   e:exporter(label, len[, context]) -> bytes | nil, msg, code   (after the handshake)
 *   e:peer_cert() -> leaf DER | nil;  e:own_cert() -> our leaf DER | nil
 *   e:version() -> 'TLSv1.3' ...;  e:close_notify();  e:free()
 *
 * Expected failures return nil, "CODE: message", CODE; misuse raises. Input is bounded by
 * the caller (it feeds what it read); the engine keeps at most what OpenSSL buffers.
 */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "moonstack/rt.h"
#include "rt_natives.h"

#define CTX_CLASS    "moonstack.tls.Context"
#define ENGINE_CLASS "moonstack.tls.Engine"

/* The most bytes an exporter may return here (RFC 9266 uses 32). */
#define TLS_EXPORTER_MAX 1024

struct l_ctx {
	SSL_CTX *ctx;
	int server;
};

struct l_engine {
	SSL *ssl;
	BIO *in;  /* network -> engine (owned by ssl) */
	BIO *out; /* engine -> network (owned by ssl) */
	int server;
};

static int fail_ssl(lua_State *L, const char *what)
{
	char buf[256];
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "unknown error");
	ERR_clear_error();
	return rt_push_fail(L, "ETLS", "%s: %s", what, buf);
}

static X509 *pem_cert(BIO *b)
{
	return PEM_read_bio_X509(b, NULL, NULL, NULL);
}

/* Load the certificate chain (leaf first) and key from PEM strings into @p ctx. */
static int load_identity(lua_State *L, SSL_CTX *ctx, const char *cert, size_t clen, const char *key,
			 size_t klen)
{
	BIO *b = BIO_new_mem_buf(cert, (int)clen);
	X509 *leaf = b ? pem_cert(b) : NULL;
	if (!leaf || SSL_CTX_use_certificate(ctx, leaf) != 1) {
		X509_free(leaf);
		BIO_free(b);
		return fail_ssl(L, "tls.context: cert");
	}
	X509_free(leaf);
	X509 *extra;
	while ((extra = pem_cert(b)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
			X509_free(extra);
			BIO_free(b);
			return fail_ssl(L, "tls.context: cert chain");
		}
	}
	ERR_clear_error(); // the end of the PEM list
	BIO_free(b);
	b = BIO_new_mem_buf(key, (int)klen);
	EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!pk || SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		EVP_PKEY_free(pk);
		return fail_ssl(L, "tls.context: key");
	}
	EVP_PKEY_free(pk);
	return 0;
}

/* Add every certificate of PEM text @p ca to the trust store of @p ctx. */
static int load_ca(lua_State *L, SSL_CTX *ctx, const char *ca, size_t len)
{
	BIO *b = BIO_new_mem_buf(ca, (int)len);
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	int n = 0;
	X509 *c;
	while (b && (c = pem_cert(b)) != NULL) {
		X509_STORE_add_cert(store, c);
		X509_free(c);
		n++;
	}
	ERR_clear_error();
	BIO_free(b);
	if (n == 0)
		return rt_push_fail(L, "EINVAL", "tls.context: ca: no PEM certificate");
	return 0;
}

static int l_context(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "mode");
	const char *mode = luaL_optstring(L, -1, "client");
	int server = strcmp(mode, "server") == 0;
	if (!server && strcmp(mode, "client") != 0)
		return luaL_error(L, "tls.context: mode must be 'server' or 'client'");
	lua_pop(L, 1);
	struct l_ctx *c = lua_newuserdata(L, sizeof(*c));
	c->ctx = NULL;
	c->server = server;
	luaL_getmetatable(L, CTX_CLASS);
	lua_setmetatable(L, -2);
	int ud = lua_gettop(L);
	c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!c->ctx)
		return fail_ssl(L, "tls.context");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(c->ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (server) {
		size_t clen, klen;
		lua_getfield(L, 1, "cert");
		const char *cert = lua_tolstring(L, -1, &clen);
		lua_getfield(L, 1, "key");
		const char *key = lua_tolstring(L, -1, &klen);
		if (!cert || !key)
			return luaL_error(L, "tls.context: a server needs cert and key (PEM text)");
		int rc = load_identity(L, c->ctx, cert, clen, key, klen);
		if (rc)
			return rc;
		lua_pop(L, 2);
		SSL_CTX_set_options(c->ctx,
				    SSL_OP_NO_TICKET); // no resumption: one session per handshake
		SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_OFF);
	} else {
		lua_getfield(L, 1, "insecure");
		int insecure = lua_toboolean(L, -1);
		lua_pop(L, 1);
		size_t len;
		lua_getfield(L, 1, "ca");
		const char *ca = lua_tolstring(L, -1, &len);
		if (ca) {
			int rc = load_ca(L, c->ctx, ca, len);
			if (rc)
				return rc;
		} else if (!insecure) {
			SSL_CTX_set_default_verify_paths(c->ctx);
		}
		lua_pop(L, 1);
		SSL_CTX_set_verify(c->ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
	}
	lua_settop(L, ud);
	return 1;
}

static struct l_ctx *check_ctx(lua_State *L)
{
	struct l_ctx *c = luaL_checkudata(L, 1, CTX_CLASS);
	if (!c->ctx)
		luaL_error(L, "tls: the context is freed");
	return c;
}

static int l_ctx_gc(lua_State *L)
{
	struct l_ctx *c = luaL_checkudata(L, 1, CTX_CLASS);
	SSL_CTX_free(c->ctx);
	c->ctx = NULL;
	return 0;
}

static int l_ctx_engine(lua_State *L)
{
	struct l_ctx *c = check_ctx(L);
	const char *name = luaL_optstring(L, 2, NULL);
	struct l_engine *e = lua_newuserdata(L, sizeof(*e));
	memset(e, 0, sizeof(*e));
	e->server = c->server;
	luaL_getmetatable(L, ENGINE_CLASS);
	lua_setmetatable(L, -2);
	e->ssl = SSL_new(c->ctx);
	e->in = BIO_new(BIO_s_mem());
	e->out = BIO_new(BIO_s_mem());
	if (!e->ssl || !e->in || !e->out) {
		BIO_free(e->in);
		BIO_free(e->out);
		e->in = e->out = NULL;
		return fail_ssl(L, "tls.engine");
	}
	BIO_set_mem_eof_return(e->in, -1);
	SSL_set_bio(e->ssl, e->in, e->out);
	if (c->server) {
		SSL_set_accept_state(e->ssl);
	} else {
		SSL_set_connect_state(e->ssl);
		if (name && *name) {
			SSL_set_tlsext_host_name(e->ssl, name);
			X509_VERIFY_PARAM *p = SSL_get0_param(e->ssl);
			X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (!X509_VERIFY_PARAM_set1_host(p, name, 0) &&
			    !X509_VERIFY_PARAM_set1_ip_asc(p, name))
				return fail_ssl(L, "tls.engine: server name");
			if (X509_VERIFY_PARAM_set1_ip_asc(p, name))
				X509_VERIFY_PARAM_set1_host(p, NULL, 0);
			ERR_clear_error();
		}
	}
	return 1;
}

static struct l_engine *check_engine(lua_State *L)
{
	struct l_engine *e = luaL_checkudata(L, 1, ENGINE_CLASS);
	if (!e->ssl)
		luaL_error(L, "tls: the engine is freed");
	return e;
}

static int l_engine_free(lua_State *L)
{
	struct l_engine *e = luaL_checkudata(L, 1, ENGINE_CLASS);
	SSL_free(e->ssl); // frees both BIOs
	e->ssl = NULL;
	return 0;
}

static int l_feed(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	size_t len;
	const char *p = luaL_checklstring(L, 2, &len);
	if (len > 0 && BIO_write(e->in, p, (int)len) != (int)len)
		return fail_ssl(L, "tls.feed");
	lua_pushboolean(L, 1);
	return 1;
}

/* The failure of an SSL call that returned @p rc: 0 = wants more bytes, else pushed. */
static int ssl_fail(lua_State *L, struct l_engine *e, int rc, const char *what)
{
	int err = SSL_get_error(e->ssl, rc);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return 0;
	if (err == SSL_ERROR_SSL && SSL_get_verify_result(e->ssl) != X509_V_OK) {
		const char *why = X509_verify_cert_error_string(SSL_get_verify_result(e->ssl));
		ERR_clear_error();
		return rt_push_fail(L, "ETLS", "%s: certificate verify failed: %s", what, why);
	}
	return fail_ssl(L, what);
}

static int l_handshake(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	if (SSL_is_init_finished(e->ssl)) {
		lua_pushboolean(L, 1);
		return 1;
	}
	int rc = SSL_do_handshake(e->ssl);
	if (rc == 1) {
		lua_pushboolean(L, 1);
		return 1;
	}
	int n = ssl_fail(L, e, rc, "tls handshake");
	if (n)
		return n;
	lua_pushboolean(L, 0);
	return 1;
}

static int l_read(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	size_t total = 0;
	for (;;) {
		char *p = luaL_prepbuffer(&b);
		int rc = SSL_read(e->ssl, p, LUAL_BUFFERSIZE);
		if (rc > 0) {
			luaL_addsize(&b, (size_t)rc);
			total += (size_t)rc;
			if (total >= 1024 * 1024)
				break;
			continue;
		}
		int err = SSL_get_error(e->ssl, rc);
		if (err == SSL_ERROR_ZERO_RETURN) {
			if (total > 0)
				break;
			lua_pushboolean(L, 0);
			return 1;
		}
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			break;
		return fail_ssl(L, "tls read");
	}
	luaL_pushresult(&b);
	return 1;
}

static int l_write(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	size_t len;
	const char *p = luaL_checklstring(L, 2, &len);
	size_t off = 0;
	while (off < len) {
		size_t chunk = len - off > 16384 ? 16384 : len - off;
		int rc = SSL_write(e->ssl, p + off, (int)chunk);
		if (rc <= 0) {
			int n = ssl_fail(L, e, rc, "tls write");
			if (n)
				return n;
			return rt_push_fail(L, "ETLS", "tls write: the handshake is not finished");
		}
		off += (size_t)rc;
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_take(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	char *data;
	long n = BIO_get_mem_data(e->out, &data);
	lua_pushlstring(L, n > 0 ? data : "", n > 0 ? (size_t)n : 0);
	(void)BIO_reset(e->out);
	return 1;
}

static int l_exporter(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	size_t llen, clen = 0;
	const char *label = luaL_checklstring(L, 2, &llen);
	lua_Integer n = luaL_checkinteger(L, 3);
	const char *context = luaL_optlstring(L, 4, NULL, &clen);
	if (n < 1 || n > TLS_EXPORTER_MAX)
		return luaL_error(L, "tls.exporter: length must be 1..%d", TLS_EXPORTER_MAX);
	if (!SSL_is_init_finished(e->ssl))
		return rt_push_fail(L, "ETLS", "tls.exporter: the handshake is not finished");
	unsigned char out[TLS_EXPORTER_MAX];
	if (SSL_export_keying_material(e->ssl, out, (size_t)n, label, llen,
				       (const unsigned char *)context, clen, context != NULL) != 1)
		return fail_ssl(L, "tls.exporter");
	lua_pushlstring(L, (const char *)out, (size_t)n);
	OPENSSL_cleanse(out, sizeof(out));
	return 1;
}

static int push_der(lua_State *L, X509 *x)
{
	unsigned char *der = NULL;
	int n = x ? i2d_X509(x, &der) : -1;
	if (n <= 0) {
		lua_pushnil(L);
		return 1;
	}
	lua_pushlstring(L, (const char *)der, (size_t)n);
	OPENSSL_free(der);
	return 1;
}

static int l_peer_cert(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	X509 *x = SSL_get1_peer_certificate(e->ssl);
	push_der(L, x);
	X509_free(x);
	return 1;
}

static int l_own_cert(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	return push_der(L, SSL_get_certificate(e->ssl));
}

static int l_version(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	lua_pushstring(L, SSL_get_version(e->ssl));
	return 1;
}

static int l_close_notify(lua_State *L)
{
	struct l_engine *e = check_engine(L);
	if (SSL_is_init_finished(e->ssl))
		SSL_shutdown(e->ssl);
	ERR_clear_error();
	return 0;
}

static const luaL_Reg ctx_methods[] = {
	{ "engine", l_ctx_engine },
	{ "free", l_ctx_gc },
	{ NULL, NULL },
};

static const luaL_Reg ctx_meta[] = {
	{ "__gc", l_ctx_gc },
	{ NULL, NULL },
};

static const luaL_Reg engine_methods[] = {
	{ "feed", l_feed },	      { "handshake", l_handshake },
	{ "read", l_read },	      { "write", l_write },
	{ "take", l_take },	      { "exporter", l_exporter },
	{ "peer_cert", l_peer_cert }, { "own_cert", l_own_cert },
	{ "version", l_version },     { "close_notify", l_close_notify },
	{ "free", l_engine_free },    { NULL, NULL },
};

static const luaL_Reg engine_meta[] = {
	{ "__gc", l_engine_free },
	{ NULL, NULL },
};

static const luaL_Reg functions[] = {
	{ "context", l_context },
	{ NULL, NULL },
};

int luaopen_moonstack_native_tls(lua_State *L)
{
	rt_newclass(L, CTX_CLASS, ctx_methods, ctx_meta);
	rt_newclass(L, ENGINE_CLASS, engine_methods, engine_meta);
	lua_newtable(L);
	luaL_register(L, NULL, functions);
	return 1;
}
