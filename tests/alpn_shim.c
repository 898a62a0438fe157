/* An LD_PRELOAD module for tests/test_tls_probe.c: every SSL that a
 * program makes offers ALPN "whizbang/1". whizbangd refuses a TLS client
 * that offers no ALPN (tls/wb_tls.h), and sslscan offers none, so without
 * this every handshake sslscan makes with OpenSSL (the ciphers of TLS 1.2,
 * renegotiation, heartbleed, the certificate) would be refused before it
 * could see anything. The ClientHellos sslscan writes by hand get their
 * ALPN from the test's proxy instead. Built without sanitizers: it is
 * loaded into a program that has none. */
#include <dlfcn.h>
#include <string.h>

#include <openssl/ssl.h>

static const unsigned char alpn[] = "\x0awhizbang/1";

SSL *SSL_new(SSL_CTX *ctx)
{
	static SSL *(*next)(SSL_CTX *);
	if (next == NULL) {
		/* ISO C has no cast from an object pointer to a function's. */
		void *sym = dlsym(RTLD_NEXT, "SSL_new");
		if (sym == NULL)
			return NULL;
		memcpy(&next, &sym, sizeof(next));
	}
	SSL *s = next(ctx);
	if (s != NULL)
		SSL_set_alpn_protos(s, alpn, sizeof(alpn) - 1);
	return s;
}
