/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Client certificates the TLS layer decoded, kept while a request holds them. A handler hands
 * `req.peer_cert` (DER) to moonstack.x509 to read it (an RA-TLS check does, for every KMS
 * request); OpenSSL 3.0 decodes a certificate's key through its decoder framework, about
 * 0.2 ms, and libssl has already done that once in the handshake. rt_tls_peer_x509() gives the
 * natives the handshake's X509 for exactly the same DER, so it is decoded once per request.
 * Any TLS user (the HTTP server, a C proxy) registers the peers it holds with rt_tls_peer_take().
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "moonstack/rt_tls.h"

/* A peer certificate: the handshake's X509 and its DER. */
struct rt_tls_peer {
	X509 *x509;
	unsigned char *der;
	size_t len;
	struct rt_tls_peer *prev, *next; /* the live entries rt_tls_peer_x509() searches */
};

/* The live entries (a few: one per request in flight with a client certificate). */
static struct rt_tls_peer *live;

struct rt_tls_peer *rt_tls_peer_take(SSL *ssl)
{
	X509 *x = ssl ? SSL_get1_peer_certificate(ssl) : NULL;
	if (!x)
		return NULL;
	struct rt_tls_peer *p = calloc(1, sizeof(*p));
	unsigned char *der = NULL;
	int n = p ? i2d_X509(x, &der) : -1;
	if (n <= 0 || !(p->der = malloc((size_t)n))) {
		OPENSSL_free(der);
		X509_free(x);
		free(p);
		return NULL;
	}
	memcpy(p->der, der, (size_t)n);
	OPENSSL_free(der);
	p->len = (size_t)n;
	p->x509 = x;
	p->next = live;
	if (live)
		live->prev = p;
	live = p;
	return p;
}

void rt_tls_peer_release(struct rt_tls_peer *p)
{
	if (!p)
		return;
	if (p->prev)
		p->prev->next = p->next;
	else
		live = p->next;
	if (p->next)
		p->next->prev = p->prev;
	X509_free(p->x509);
	free(p->der);
	free(p);
}

const unsigned char *rt_tls_peer_der(const struct rt_tls_peer *p, size_t *len)
{
	*len = p->len;
	return p->der;
}

X509 *rt_tls_peer_cert(const struct rt_tls_peer *p)
{
	return p->x509;
}

X509 *rt_tls_peer_x509(const void *der, size_t len)
{
	for (struct rt_tls_peer *p = live; p; p = p->next) {
		if (p->len == len && memcmp(p->der, der, len) == 0 && X509_up_ref(p->x509) == 1)
			return p->x509;
	}
	return NULL;
}
