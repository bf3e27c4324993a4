/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parsed TLS material reused across connections. OpenSSL 3.0 decodes every public or private key
 * through its provider decoder framework (about 0.2 ms per certificate and 0.6 ms per PEM private
 * key here), and moonstack.http.client opens one connection per request: without this cache each
 * request would parse its trust anchors and its client identity again. Whole SSL_CTX built from
 * PEM (rt_tls_ctx.c) are kept too, for C users such as a proxy. Entries are keyed by the SHA-256
 * of their PEM text and settings, a few of each kind, least recently used out.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "rt_tls_internal.h"

#define CACHE_SLOTS 8

struct entry {
	unsigned char id[32]; /* SHA-256 of a kind tag and the PEM text(s) */
	uint64_t used;	      /* 0 = free */
	struct rt_tls_identity identity;
	X509_STORE *store;
	SSL_CTX *ssl_ctx; /* the cache's reference */
};

struct rt_tls_cache {
	struct entry identities[CACHE_SLOTS];
	struct entry stores[CACHE_SLOTS];
	struct entry contexts[CACHE_SLOTS];
	uint64_t clock;
};

static void entry_clear(struct entry *e)
{
	X509_free(e->identity.leaf);
	sk_X509_pop_free(e->identity.chain, X509_free);
	EVP_PKEY_free(e->identity.key);
	X509_STORE_free(e->store);
	SSL_CTX_free(e->ssl_ctx);
	memset(e, 0, sizeof(*e));
}

/* Hash a text, telling NULL from "" (a present text is hashed with its NUL). */
static bool digest_text(EVP_MD_CTX *md, const char *s)
{
	unsigned char present = s != NULL;
	return EVP_DigestUpdate(md, &present, 1) == 1 &&
	       (!s || EVP_DigestUpdate(md, s, strlen(s) + 1) == 1);
}

static bool digest(const char *tag, const char *a, const char *b, unsigned char out[32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && digest_text(md, tag) &&
		  digest_text(md, a) && digest_text(md, b) &&
		  EVP_DigestFinal_ex(md, out, NULL) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

/* The key of an SSL_CTX: its kind, the PEM texts, the flags and the hook. */
static bool digest_config(const char *tag, const struct rt_tls_config *cfg, unsigned char out[32])
{
	unsigned char flags[3] = { cfg->require_peer, cfg->insecure, cfg->skip_hostname };
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && digest_text(md, tag) &&
		  digest_text(md, cfg->cert) && digest_text(md, cfg->key) &&
		  digest_text(md, cfg->ca) && EVP_DigestUpdate(md, flags, sizeof(flags)) == 1 &&
		  EVP_DigestUpdate(md, &cfg->verify, sizeof(cfg->verify)) == 1 &&
		  EVP_DigestUpdate(md, &cfg->verify_user, sizeof(cfg->verify_user)) == 1 &&
		  EVP_DigestFinal_ex(md, out, NULL) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

/* The entry of @p id in @p slots, or the slot to fill (free or least recently used, cleared)
 * with *hit = false. */
static struct entry *lookup(struct rt_tls_cache *c, struct entry *slots, const unsigned char id[32],
			    bool *hit)
{
	struct entry *victim = &slots[0];
	for (int i = 0; i < CACHE_SLOTS; i++) {
		struct entry *e = &slots[i];
		if (e->used && CRYPTO_memcmp(e->id, id, 32) == 0) {
			e->used = ++c->clock;
			*hit = true;
			return e;
		}
		if (e->used < victim->used)
			victim = e;
	}
	entry_clear(victim);
	*hit = false;
	return victim;
}

struct rt_tls_cache *rt_tls_cache_new(void)
{
	return calloc(1, sizeof(struct rt_tls_cache));
}

void rt_tls_cache_free(struct rt_tls_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < CACHE_SLOTS; i++) {
		entry_clear(&c->identities[i]);
		entry_clear(&c->stores[i]);
		entry_clear(&c->contexts[i]);
	}
	free(c);
}

static bool parse_identity(const char *cert_pem, const char *key_pem, struct rt_tls_identity *out)
{
	BIO *bio = BIO_new_mem_buf(cert_pem, -1);
	out->leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	out->chain = sk_X509_new_null();
	X509 *x;
	while (out->leaf && out->chain && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(out->chain, x))
			X509_free(x);
	BIO_free(bio);
	bio = BIO_new_mem_buf(key_pem, -1);
	out->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error(); // the certificate loop ends with a "no start line" error
	return out->leaf && out->chain && out->key;
}

const struct rt_tls_identity *rt_tls_cache_identity(struct rt_tls_cache *c, const char *cert_pem,
						    const char *key_pem)
{
	unsigned char id[32];
	bool hit;
	if (!c || !cert_pem || !key_pem || !digest("identity", cert_pem, key_pem, id))
		return NULL;
	struct entry *e = lookup(c, c->identities, id, &hit);
	if (hit)
		return &e->identity;
	if (!parse_identity(cert_pem, key_pem, &e->identity)) {
		entry_clear(e);
		return NULL;
	}
	memcpy(e->id, id, 32);
	e->used = ++c->clock;
	return &e->identity;
}

X509_STORE *rt_tls_cache_store(struct rt_tls_cache *c, const char *ca_pem)
{
	unsigned char id[32];
	bool hit;
	if (!c || !ca_pem || !digest("store", ca_pem, NULL, id))
		return NULL;
	struct entry *e = lookup(c, c->stores, id, &hit);
	if (hit)
		return e->store;
	e->store = X509_STORE_new();
	if (!e->store || rt_tls_add_ca_pem(e->store, ca_pem) <= 0) {
		entry_clear(e);
		return NULL;
	}
	memcpy(e->id, id, 32);
	e->used = ++c->clock;
	return e->store;
}

/* The SSL_CTX of kind @p tag for @p cfg, from @p c or built by @p build (a new reference). */
static SSL_CTX *cached_ctx(struct rt_tls_cache *c, const char *tag, const struct rt_tls_config *cfg,
			   SSL_CTX *(*build)(struct rt_tls_cache *, const struct rt_tls_config *,
					     char *, size_t),
			   char *err, size_t errlen)
{
	unsigned char id[32];
	bool hit;
	if (!c || !cfg || !digest_config(tag, cfg, id)) {
		snprintf(err, errlen, "ENOMEM: cannot key the TLS context");
		return NULL;
	}
	struct entry *e = lookup(c, c->contexts, id, &hit);
	if (!hit) {
		e->ssl_ctx = build(c, cfg, err, errlen);
		if (!e->ssl_ctx) {
			entry_clear(e);
			return NULL;
		}
		memcpy(e->id, id, 32);
		e->used = ++c->clock;
	}
	SSL_CTX_up_ref(e->ssl_ctx);
	return e->ssl_ctx;
}

SSL_CTX *rt_tls_cache_server_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen)
{
	return cached_ctx(c, "server", cfg, rt_tls_build_server_ctx, err, errlen);
}

SSL_CTX *rt_tls_cache_client_ctx(struct rt_tls_cache *c, const struct rt_tls_config *cfg, char *err,
				 size_t errlen)
{
	return cached_ctx(c, "client", cfg, rt_tls_build_client_ctx, err, errlen);
}
