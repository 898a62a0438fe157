/* The TLS engine (wb_tls.h): OpenSSL through a BIO pair, one per session.
 *
 * Happy path: the caller's received ciphertext goes into the pair's
 * network end (feed); OpenSSL reads it from the other end while it
 * handshakes (SSL_do_handshake) or decrypts (SSL_read), and writes its own
 * records there, which the caller takes from the network end (peek_out,
 * consume_out). Both directions of the pair are fixed-size rings, which is
 * what bounds a session's memory: a full ring takes no more, and the caller
 * backs off. Plaintext goes in one record at a time, and only when the
 * outgoing ring has room for a whole record, so SSL_write never stops
 * half-way through one and the caller keeps whatever was not taken.
 *
 * Failure modes: any fatal OpenSSL error (a certificate that does not
 * verify, a protocol version or ALPN refused, garbage bytes) turns the
 * session FAILED with a sentence built from OpenSSL's reason, the
 * verification result and, for what our own callbacks refuse, our reason;
 * the fatal alert OpenSSL queued is still there to be taken out. A
 * close_notify from the peer turns it CLOSED. */
#include "wb_tls.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ossl.h"

/* ALPN's wire form: the name prefixed by its length. */
static const unsigned char alpn_wire[] = "\x0a" WB_TLS_ALPN;
#define ALPN_WIRE_LEN (sizeof(alpn_wire) - 1)

/* TLS 1.2: forward secrecy and an AEAD only. TLS 1.3's suites are all
 * AEADs with forward secrecy; named anyway, so that a system-wide
 * configuration cannot add to them. */
#define CIPHERS_TLS12                                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define CIPHERS_TLS13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256:P-384"

/* Plaintext handed to one SSL_write, and the room the outgoing ring must
 * have for it: a record's header, explicit nonce, content type and tag
 * take at most 29 bytes with these ciphers. */
#define RECORD_PLAIN 16384u
#define RECORD_ROOM (RECORD_PLAIN + 256u)

/* A chain deeper than our CA, an intermediate and the leaf is not ours. */
#define VERIFY_DEPTH 4

struct wb_tls_ctx {
	atomic_uint refs;
	SSL_CTX *ssl_ctx;
	enum wb_tls_role role;
	bool verify_peer;
	/* Client: the expected server name; "" for none. */
	char server_name[WB_TLS_NAME_MAX + 1];
	bool server_name_is_ip;
	time_t not_after;
};

struct wb_tls_session {
	struct wb_tls_ctx *ctx;
	SSL *ssl;
	/* The pair's network end, ours; SSL owns the other. */
	BIO *net;
	enum wb_tls_state state;
	/* The handshake completed (version, cipher and peer are known). */
	bool opened;
	bool close_sent;
	/* Set by our callbacks when they refuse the handshake: the reason
	 * OpenSSL would only call "callback failed". A static string. */
	const char *refusal;
	char errmsg[256];
	/* The verification result when a checked certificate failed it. */
	long verify_failed;
	/* The verified peer's common name then its subjectAltNames, each
	 * NUL-terminated, in one allocation; NULL: no verified peer. */
	char *peer;
	const char *peer_san[WB_TLS_PEER_SANS];
	size_t n_peer_san;
};

/* ---------------------------------------------------------------- errors */

/* The session fails with what, OpenSSL's reason (or our callback's), and
 * the verification result when a peer's certificate was checked. The
 * first failure's message stays. Returns WB_E_IO. */
static int session_fail(struct wb_tls_session *s, const char *what)
{
	if (s->state == WB_TLS_FAILED) {
		ERR_clear_error();
		return WB_E_IO;
	}
	char rbuf[128];
	const char *reason = ossl_take_reason(rbuf, sizeof(rbuf));
	if (s->refusal != NULL)
		reason = s->refusal;
	if (reason == NULL)
		reason = "the TLS library gave no reason";
	char verify[128] = "";
	long v = SSL_get_verify_result(s->ssl);
	if (SSL_get_verify_mode(s->ssl) != SSL_VERIFY_NONE && v != X509_V_OK) {
		snprintf(verify, sizeof(verify), " (%s)", X509_verify_cert_error_string(v));
		s->verify_failed = v;
	}
	snprintf(s->errmsg, sizeof(s->errmsg), "%s: %s%s", what, reason, verify);
	s->state = WB_TLS_FAILED;
	return WB_E_IO;
}

/* What the session's state answers to a caller that wants data: 0 while
 * handshaking or open. */
static int state_code(const struct wb_tls_session *s)
{
	switch (s->state) {
	case WB_TLS_FAILED:
		return WB_E_IO;
	case WB_TLS_CLOSED:
		return WB_E_CLOSED;
	default:
		return 0;
	}
}

/* After an SSL call that returned r <= 0: 0 when it only waits for bytes
 * to come or go; otherwise the session is closed or failed (what says
 * doing what) and the state's code is returned. */
static int after_ssl_call(struct wb_tls_session *s, int r, const char *what)
{
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		ERR_clear_error();
		s->state = WB_TLS_CLOSED;
		return WB_E_CLOSED;
	default:
		return session_fail(s, what);
	}
}

/* ---------------------------------------------------------------- callbacks */

/* Server: a client that offers no ALPN at all is refused here, before
 * anything else is negotiated (the ALPN callback below is not called
 * without the extension). */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
	(void)arg;
	const unsigned char *ext;
	size_t len;
	if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
	                              &len) == 1)
		return SSL_CLIENT_HELLO_SUCCESS;
	struct wb_tls_session *s = SSL_get_app_data(ssl);
	s->refusal = "the client offered no application protocol (ALPN " WB_TLS_ALPN " is needed)";
	*alert = SSL_AD_NO_APPLICATION_PROTOCOL;
	return SSL_CLIENT_HELLO_ERROR;
}

/* Server: selects whizbang/1, or refuses a client that offers ALPN
 * without it. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)arg;
	unsigned char *selected;
	unsigned char selected_len;
	if (SSL_select_next_proto(&selected, &selected_len, alpn_wire, ALPN_WIRE_LEN, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED) {
		*out = selected;
		*outlen = selected_len;
		return SSL_TLSEXT_ERR_OK;
	}
	struct wb_tls_session *s = SSL_get_app_data(ssl);
	s->refusal = "the client's application protocols (ALPN) do not include " WB_TLS_ALPN;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ---------------------------------------------------------------- contexts */

/* A config that contradicts itself: 0, or WB_E_INVAL with the reason. */
static int check_config(const struct wb_tls_config *cfg, char *errmsg, size_t errlen)
{
	if (cfg->role != WB_TLS_SERVER && cfg->role != WB_TLS_CLIENT)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "the TLS role is unknown");
	if ((cfg->cert_file == NULL) != (cfg->key_file == NULL))
		return ossl_fail(errmsg, errlen, WB_E_INVAL,
		                 "a TLS certificate needs its key and a key its certificate");
	if (cfg->role == WB_TLS_SERVER) {
		if (cfg->cert_file == NULL)
			return ossl_fail(errmsg, errlen, WB_E_INVAL,
			                 "a TLS server needs a certificate and its key");
		if (cfg->client_cert > WB_TLS_CLIENT_CERT_REQUIRED)
			return ossl_fail(errmsg, errlen, WB_E_INVAL,
			                 "the client certificate setting is unknown");
		if (cfg->client_cert != WB_TLS_CLIENT_CERT_NONE && cfg->ca_file == NULL)
			return ossl_fail(errmsg, errlen, WB_E_INVAL,
			                 "a TLS server that asks for client certificates needs the "
			                 "CA file to verify them");
		return 0;
	}
	if (cfg->skip_server_verify)
		return 0;
	if (cfg->ca_file == NULL)
		return ossl_fail(errmsg, errlen, WB_E_INVAL,
		                 "a TLS client needs the CA file to verify the server");
	if (cfg->server_name == NULL || cfg->server_name[0] == '\0')
		return ossl_fail(errmsg, errlen, WB_E_INVAL,
		                 "a TLS client needs the server's name (DNS name or address) to "
		                 "verify its certificate");
	return 0;
}

/* The settings that always hold (wb_tls.h). 0, or WB_E_INVAL / WB_E_NOMEM
 * with the reason. */
static int apply_settings(SSL_CTX *c, enum wb_tls_role role, char *errmsg, size_t errlen)
{
	SSL_CTX_set_security_level(c, 2);
	if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(c, CIPHERS_TLS12) != 1 ||
	    SSL_CTX_set_ciphersuites(c, CIPHERS_TLS13) != 1 ||
	    SSL_CTX_set1_groups_list(c, GROUPS) != 1)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "the TLS settings were refused");
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
	                               SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(c, 0);
	SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
	                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_default_passwd_cb(c, ossl_no_passphrase_cb);
	X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(c), X509_V_FLAG_X509_STRICT);
	SSL_CTX_set_verify_depth(c, VERIFY_DEPTH);
	if (role == WB_TLS_SERVER) {
		SSL_CTX_set_client_hello_cb(c, client_hello_cb, NULL);
		SSL_CTX_set_alpn_select_cb(c, alpn_select_cb, NULL);
		return 0;
	}
	/* Unlike everything else, 0 is success here. */
	if (SSL_CTX_set_alpn_protos(c, alpn_wire, (unsigned)ALPN_WIRE_LEN) != 0)
		return ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for the ALPN list");
	return 0;
}

/* Loads the certificate chain and its key, which must match. */
static int load_identity(SSL_CTX *c, const char *cert_file, const char *key_file, char *errmsg,
                         size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot load the certificate chain %s",
		                 cert_file);
	EVP_PKEY *key;
	int rc = ossl_read_key(key_file, &key, errmsg, errlen);
	if (rc != 0)
		return rc;
	if (X509_check_private_key(SSL_CTX_get0_certificate(c), key) != 1) {
		ERR_clear_error();
		rc = ossl_fail(errmsg, errlen, WB_E_INVAL,
		               "the private key %s does not match the certificate %s", key_file,
		               cert_file);
	} else if (SSL_CTX_use_PrivateKey(c, key) != 1) {
		rc = ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot use the private key %s",
		               key_file);
	}
	EVP_PKEY_free(key);
	return rc;
}

/* The CAs peers are verified against and, for a server that asks for
 * client certificates, the CA names it sends them. */
static int load_cas(SSL_CTX *c, const struct wb_tls_config *cfg, char *errmsg, size_t errlen)
{
	if (SSL_CTX_load_verify_locations(c, cfg->ca_file, NULL) != 1)
		return ossl_fail(errmsg, errlen, WB_E_INVAL, "cannot load the CA file %s",
		                 cfg->ca_file);
	if (cfg->role == WB_TLS_SERVER && cfg->client_cert != WB_TLS_CLIENT_CERT_NONE) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
		if (names == NULL)
			return ossl_fail(errmsg, errlen, WB_E_INVAL,
			                 "cannot read the CA names of %s", cfg->ca_file);
		SSL_CTX_set_client_CA_list(c, names);
	}
	return 0;
}

int wb_tls_ctx_new(const struct wb_tls_config *cfg, struct wb_tls_ctx **out, char *errmsg,
                   size_t errlen)
{
	ERR_clear_error();
	int rc = check_config(cfg, errmsg, errlen);
	if (rc != 0)
		return rc;
	const char *name = cfg->server_name != NULL ? cfg->server_name : "";
	if (strlen(name) > WB_TLS_NAME_MAX)
		return ossl_fail(errmsg, errlen, WB_E_INVAL,
		                 "the server name is longer than %u bytes", WB_TLS_NAME_MAX);
	struct wb_tls_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return ossl_fail(errmsg, errlen, WB_E_NOMEM, "no memory for a TLS context");
	ctx->role = cfg->role;
	ctx->ssl_ctx =
	        SSL_CTX_new(cfg->role == WB_TLS_SERVER ? TLS_server_method() : TLS_client_method());
	if (ctx->ssl_ctx == NULL) {
		rc = ossl_fail(errmsg, errlen, WB_E_NOMEM, "cannot make a TLS context");
		goto err_after_alloc;
	}
	rc = apply_settings(ctx->ssl_ctx, cfg->role, errmsg, errlen);
	if (rc != 0)
		goto err_after_ssl_ctx;
	if (cfg->cert_file != NULL) {
		rc = load_identity(ctx->ssl_ctx, cfg->cert_file, cfg->key_file, errmsg, errlen);
		if (rc != 0)
			goto err_after_ssl_ctx;
		ctx->not_after = ossl_not_after(SSL_CTX_get0_certificate(ctx->ssl_ctx));
	}
	if (cfg->ca_file != NULL) {
		rc = load_cas(ctx->ssl_ctx, cfg, errmsg, errlen);
		if (rc != 0)
			goto err_after_ssl_ctx;
	}
	if (cfg->role == WB_TLS_SERVER) {
		ctx->verify_peer = cfg->client_cert != WB_TLS_CLIENT_CERT_NONE;
		int mode = !ctx->verify_peer ? SSL_VERIFY_NONE
		           : cfg->client_cert == WB_TLS_CLIENT_CERT_REQUIRED
		                   ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
		                   : SSL_VERIFY_PEER;
		SSL_CTX_set_verify(ctx->ssl_ctx, mode, NULL);
	} else {
		ctx->verify_peer = !cfg->skip_server_verify;
		SSL_CTX_set_verify(ctx->ssl_ctx,
		                   ctx->verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
		snprintf(ctx->server_name, sizeof(ctx->server_name), "%s", name);
		unsigned char addr[16];
		ctx->server_name_is_ip =
		        inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
	}
	atomic_init(&ctx->refs, 1u);
	*out = ctx;
	return 0;

err_after_ssl_ctx:
	SSL_CTX_free(ctx->ssl_ctx);
err_after_alloc:
	free(ctx);
	return rc;
}

struct wb_tls_ctx *wb_tls_ctx_ref(struct wb_tls_ctx *ctx)
{
	atomic_fetch_add_explicit(&ctx->refs, 1u, memory_order_relaxed);
	return ctx;
}

void wb_tls_ctx_unref(struct wb_tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (atomic_fetch_sub_explicit(&ctx->refs, 1u, memory_order_acq_rel) != 1u)
		return;
	SSL_CTX_free(ctx->ssl_ctx);
	free(ctx);
}

time_t wb_tls_ctx_not_after(const struct wb_tls_ctx *ctx)
{
	return ctx->not_after;
}

/* ---------------------------------------------------------------- the peer */

/* Names as they are collected: each NUL-terminated in buf, the common name
 * first. */
struct names {
	char buf[(1 + WB_TLS_PEER_SANS) * (WB_TLS_NAME_MAX + sizeof("DNS:"))];
	size_t used;
	size_t n;
	size_t at[1 + WB_TLS_PEER_SANS];
};

/* Adds prefix and v[0..len) as one name; a name longer than
 * WB_TLS_NAME_MAX, with a NUL, or past the last slot is skipped. */
static void names_add(struct names *nm, const char *prefix, const char *v, size_t len)
{
	size_t plen = strlen(prefix);
	if (len > WB_TLS_NAME_MAX || memchr(v, '\0', len) != NULL ||
	    nm->n == sizeof(nm->at) / sizeof(nm->at[0]))
		return;
	nm->at[nm->n++] = nm->used;
	memcpy(nm->buf + nm->used, prefix, plen);
	memcpy(nm->buf + nm->used + plen, v, len);
	nm->used += plen + len;
	nm->buf[nm->used++] = '\0';
}

/* The subject's common name when there is exactly one; "" otherwise. */
static void add_common_name(struct names *nm, X509 *cert)
{
	const X509_NAME *subject = X509_get_subject_name(cert);
	int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	unsigned char *utf8 = NULL;
	int len = -1;
	if (i >= 0 && X509_NAME_get_index_by_NID(subject, NID_commonName, i) < 0)
		len = ASN1_STRING_to_UTF8(
		        &utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
	if (len >= 0 && (size_t)len <= WB_TLS_NAME_MAX && memchr(utf8, '\0', (size_t)len) == NULL)
		names_add(nm, "", (const char *)utf8, (size_t)len);
	else
		names_add(nm, "", "", 0);
	OPENSSL_free(utf8);
}

static void add_alt_names(struct names *nm, X509 *cert)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int k = 0; gens != NULL && k < sk_GENERAL_NAME_num(gens); k++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, k);
		if (g->type == GEN_DNS) {
			names_add(nm, "DNS:", (const char *)ASN1_STRING_get0_data(g->d.dNSName),
			          (size_t)ASN1_STRING_length(g->d.dNSName));
		} else if (g->type == GEN_IPADD) {
			int len = ASN1_STRING_length(g->d.iPAddress);
			char text[INET6_ADDRSTRLEN];
			if ((len == 4 || len == 16) &&
			    inet_ntop(len == 4 ? AF_INET : AF_INET6,
			              ASN1_STRING_get0_data(g->d.iPAddress), text,
			              sizeof(text)) != NULL)
				names_add(nm, "IP:", text, strlen(text));
		}
	}
	GENERAL_NAMES_free(gens);
}

/* Keeps the verified peer's names in s; a peer that sent no certificate,
 * or one that was not verified, has none. 0 or WB_E_NOMEM. */
static int keep_peer(struct wb_tls_session *s)
{
	X509 *cert = SSL_get0_peer_certificate(s->ssl);
	if (cert == NULL || !s->ctx->verify_peer || SSL_get_verify_result(s->ssl) != X509_V_OK)
		return 0;
	struct names *nm = malloc(sizeof(*nm));
	if (nm == NULL)
		return WB_E_NOMEM;
	nm->used = nm->n = 0;
	add_common_name(nm, cert);
	add_alt_names(nm, cert);
	s->peer = malloc(nm->used);
	if (s->peer == NULL) {
		free(nm);
		return WB_E_NOMEM;
	}
	memcpy(s->peer, nm->buf, nm->used);
	for (size_t k = 1; k < nm->n; k++)
		s->peer_san[s->n_peer_san++] = s->peer + nm->at[k];
	free(nm);
	return 0;
}

/* ---------------------------------------------------------------- sessions */

/* The handshake completed: ALPN agreed, the peer's names kept. */
static void handshake_done(struct wb_tls_session *s)
{
	const unsigned char *proto;
	unsigned len;
	SSL_get0_alpn_selected(s->ssl, &proto, &len);
	if (len != ALPN_WIRE_LEN - 1 || memcmp(proto, alpn_wire + 1, len) != 0) {
		s->refusal =
		        "the server did not select the application protocol " WB_TLS_ALPN " (ALPN)";
		session_fail(s, "handshake failed");
		return;
	}
	if (keep_peer(s) != 0) {
		s->refusal = "no memory for the peer's names";
		session_fail(s, "handshake failed");
		return;
	}
	s->opened = true;
	s->state = WB_TLS_OPEN;
}

/* Moves the handshake on as far as the bytes fed and the room for output
 * allow. */
static void advance(struct wb_tls_session *s)
{
	if (s->state != WB_TLS_HANDSHAKING)
		return;
	ERR_clear_error();
	int r = SSL_do_handshake(s->ssl);
	if (r == 1)
		handshake_done(s);
	else
		after_ssl_call(s, r, "handshake failed");
}

int wb_tls_session_new(struct wb_tls_ctx *ctx, struct wb_tls_session **out)
{
	ERR_clear_error();
	struct wb_tls_session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return WB_E_NOMEM;
	s->ssl = SSL_new(ctx->ssl_ctx);
	if (s->ssl == NULL)
		goto err_after_alloc;
	BIO *inner;
	if (BIO_new_bio_pair(&inner, WB_TLS_OUT_BUF, &s->net, WB_TLS_IN_BUF) != 1)
		goto err_after_ssl;
	SSL_set_bio(s->ssl, inner, inner);
	SSL_set_app_data(s->ssl, s);
	if (ctx->role == WB_TLS_SERVER) {
		SSL_set_accept_state(s->ssl);
	} else {
		SSL_set_connect_state(s->ssl);
		const char *name = ctx->server_name;
		/* SNI carries a DNS name only. */
		if (name[0] != '\0' && !ctx->server_name_is_ip &&
		    SSL_set_tlsext_host_name(s->ssl, name) != 1)
			goto err_after_ssl;
		if (ctx->verify_peer) {
			X509_VERIFY_PARAM *param = SSL_get0_param(s->ssl);
			X509_VERIFY_PARAM_set_hostflags(param,
			                                X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			int ok = ctx->server_name_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name)
			                                : SSL_set1_host(s->ssl, name);
			if (ok != 1)
				goto err_after_ssl;
		}
	}
	s->ctx = wb_tls_ctx_ref(ctx);
	*out = s;
	return 0;

err_after_ssl:
	/* The pair's inner end, when made, went to the SSL. */
	SSL_free(s->ssl);
	BIO_free(s->net);
err_after_alloc:
	ERR_clear_error();
	free(s);
	return WB_E_NOMEM;
}

void wb_tls_session_free(struct wb_tls_session *s)
{
	if (s == NULL)
		return;
	SSL_free(s->ssl);
	BIO_free(s->net);
	free(s->peer);
	wb_tls_ctx_unref(s->ctx);
	free(s);
}

int wb_tls_session_feed(struct wb_tls_session *s, const uint8_t *p, size_t n, size_t *consumed)
{
	*consumed = 0;
	if (s->state == WB_TLS_FAILED)
		return WB_E_IO;
	if (s->state == WB_TLS_CLOSED) {
		*consumed = n;
		return WB_E_CLOSED;
	}
	size_t room = BIO_ctrl_get_write_guarantee(s->net);
	size_t take = n < room ? n : room;
	/* The ring is at most WB_TLS_IN_BUF bytes, so take fits an int. */
	if (take > 0 && BIO_write(s->net, p, (int)take) != (int)take)
		return session_fail(s, "buffering received bytes failed");
	*consumed = take;
	advance(s);
	return state_code(s);
}

int wb_tls_session_read(struct wb_tls_session *s, uint8_t *buf, size_t cap, size_t *n)
{
	*n = 0;
	advance(s);
	if (s->state != WB_TLS_OPEN)
		return state_code(s);
	if (cap == 0)
		return 0;
	ERR_clear_error();
	int r = SSL_read(s->ssl, buf, cap < INT_MAX ? (int)cap : INT_MAX);
	if (r > 0) {
		*n = (size_t)r;
		return 0;
	}
	return after_ssl_call(s, r, "reading failed");
}

int wb_tls_session_write(struct wb_tls_session *s, const uint8_t *p, size_t n, size_t *consumed)
{
	*consumed = 0;
	advance(s);
	if (s->state == WB_TLS_HANDSHAKING)
		return WB_E_AGAIN;
	if (s->state != WB_TLS_OPEN)
		return state_code(s);
	BIO *out = SSL_get_wbio(s->ssl);
	size_t done = 0;
	int rc = 0;
	while (done < n && BIO_ctrl_get_write_guarantee(out) >= RECORD_ROOM) {
		size_t chunk = n - done < RECORD_PLAIN ? n - done : RECORD_PLAIN;
		ERR_clear_error();
		int w = SSL_write(s->ssl, p + done, (int)chunk);
		if (w <= 0) {
			rc = after_ssl_call(s, w, "writing failed");
			break;
		}
		done += (size_t)w;
	}
	*consumed = done;
	return rc;
}

void wb_tls_session_peek_out(struct wb_tls_session *s, const uint8_t **p, size_t *n)
{
	advance(s);
	char *buf;
	int k = BIO_nread0(s->net, &buf);
	if (k <= 0) {
		*p = NULL;
		*n = 0;
		return;
	}
	*p = (const uint8_t *)buf;
	*n = (size_t)k;
}

void wb_tls_session_consume_out(struct wb_tls_session *s, size_t n)
{
	char *buf;
	if (n > 0)
		BIO_nread(s->net, &buf, (int)(n < WB_TLS_OUT_BUF ? n : WB_TLS_OUT_BUF));
}

void wb_tls_session_close(struct wb_tls_session *s)
{
	if (s->state == WB_TLS_FAILED || s->close_sent)
		return;
	if (s->opened) {
		/* 0 (our close_notify is queued, the peer's not yet read) and 1
		 * are both fine: we do not wait for the peer's. */
		ERR_clear_error();
		SSL_shutdown(s->ssl);
		ERR_clear_error();
	}
	s->close_sent = true;
	s->state = WB_TLS_CLOSED;
}

enum wb_tls_state wb_tls_session_state(const struct wb_tls_session *s)
{
	return s->state;
}

const char *wb_tls_session_errmsg(const struct wb_tls_session *s)
{
	return s->state == WB_TLS_FAILED ? s->errmsg : "";
}

enum wb_tls_verify wb_tls_session_verify(const struct wb_tls_session *s)
{
	if (s->state != WB_TLS_FAILED)
		return WB_TLS_VERIFY_OK;
	switch (s->verify_failed) {
	case X509_V_OK:
		return WB_TLS_VERIFY_OK;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
	case X509_V_ERR_CERT_UNTRUSTED:
		return WB_TLS_VERIFY_UNTRUSTED;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return WB_TLS_VERIFY_NAME;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		return WB_TLS_VERIFY_EXPIRED;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return WB_TLS_VERIFY_NOT_YET_VALID;
	default:
		return WB_TLS_VERIFY_OTHER;
	}
}

const char *wb_tls_session_version(const struct wb_tls_session *s)
{
	return s->opened ? SSL_get_version(s->ssl) : "";
}

const char *wb_tls_session_cipher(const struct wb_tls_session *s)
{
	return s->opened ? SSL_get_cipher_name(s->ssl) : "";
}

const char *wb_tls_session_peer_cn(const struct wb_tls_session *s)
{
	return s->peer != NULL ? s->peer : "";
}

const char *wb_tls_session_peer_san(const struct wb_tls_session *s, size_t i)
{
	return i < s->n_peer_san ? s->peer_san[i] : NULL;
}

/* ---------------------------------------------------------------- one port, both */

enum wb_tls_looks wb_tls_looks_like_tls(const uint8_t *p, size_t n)
{
	/* A handshake record (22) of TLS 1.x or SSL 3 (3.0 to 3.4). */
	static const uint8_t lo[3] = {0x16, 0x03, 0x00};
	static const uint8_t hi[3] = {0x16, 0x03, 0x04};
	for (size_t k = 0; k < sizeof(lo); k++) {
		if (k == n)
			return WB_TLS_LOOKS_AGAIN;
		if (p[k] < lo[k] || p[k] > hi[k])
			return WB_TLS_LOOKS_PLAIN;
	}
	return WB_TLS_LOOKS_TLS;
}
