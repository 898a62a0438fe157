/* Tests of the TLS engine (tls/wb_tls.h).
 *
 * Two ends talk through memory: a pump moves each end's ciphertext to the
 * other in pieces of a chosen size, writes what each end has to send and
 * reads what it received, until nothing moves. An end is a wb_tls session
 * or, where a test needs a peer that does what ours never would (offer TLS
 * 1.1, leave ALPN out, renegotiate), a raw OpenSSL SSL on a BIO pair built
 * here. Certificates come from wb_certs, made in the test's directory.
 *
 * Every case that must fail has its control beside it: the same ends with
 * only the one thing changed complete the handshake, so the failure comes
 * from that thing. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "fixture.h"
#include "wb_certs.h"
#include "wb_tls.h"

static struct fixture fx;
static char errmsg[512];

/* ---------------------------------------------------------------- certificates */

static char *path(const char *name)
{
	static char bufs[16][256];
	static unsigned next;
	return fixture_path(&fx, name, bufs[next++ % 16], sizeof(bufs[0]));
}

static const char *cert_of(const char *name)
{
	char n[64];
	snprintf(n, sizeof(n), "%s.crt", name);
	return path(n);
}

static const char *key_of(const char *name)
{
	char n[64];
	snprintf(n, sizeof(n), "%s.key", name);
	return path(n);
}

static void save(const struct wb_certs_pair *p, const char *name)
{
	int rc = wb_certs_save(p, cert_of(name), key_of(name), false, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "save %s: %s", name, errmsg);
}

static struct wb_certs_pair *ca, *ca2;

/* A node certificate of signer with DNS names dns (NULL-ended) and the
 * address 127.0.0.1, valid as v says, saved as name. */
static void make_node(const struct wb_certs_pair *signer, const char *name, const char *const *dns,
                      const struct wb_certs_validity *v)
{
	size_t n = 0;
	while (dns[n] != NULL)
		n++;
	static const char *const ips[] = {"127.0.0.1"};
	struct wb_certs_names names = {dns, n, ips, 1};
	struct wb_certs_pair *p = NULL;
	int rc = wb_certs_make_node(signer, &names, v, &p, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "make_node %s: %s", name, errmsg);
	save(p, name);
	wb_certs_free(p);
}

static void make_client(const struct wb_certs_pair *signer, const char *user, const char *name)
{
	struct wb_certs_validity v = wb_certs_days(30);
	struct wb_certs_pair *p = NULL;
	int rc = wb_certs_make_client(signer, user, &v, &p, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "make_client %s: %s", name, errmsg);
	save(p, name);
	wb_certs_free(p);
}

static const char *const node1_dns[] = {"node1.example", NULL};

/* Every test gets: ca (and ca2, another CA), node (node1.example and
 * 127.0.0.1, signed by ca), client-alice (by ca). */
static void setup(void)
{
	fixture_setup(&fx, "tls");
	struct wb_certs_validity year = wb_certs_days(365);
	cr_assert_eq(wb_certs_make_ca("Test CA", &year, &ca, errmsg, sizeof(errmsg)), 0, "%s",
	             errmsg);
	cr_assert_eq(wb_certs_make_ca("Other CA", &year, &ca2, errmsg, sizeof(errmsg)), 0, "%s",
	             errmsg);
	save(ca, "ca");
	save(ca2, "ca2");
	struct wb_certs_validity month = wb_certs_days(30);
	make_node(ca, "node", node1_dns, &month);
	make_client(ca, "alice", "client-alice");
}

static void teardown(void)
{
	wb_certs_free(ca);
	wb_certs_free(ca2);
	ca = ca2 = NULL;
	fixture_teardown(&fx);
}

TestSuite(tls, .init = setup, .fini = teardown, .timeout = 300);

/* ---------------------------------------------------------------- contexts */

static struct wb_tls_ctx *new_ctx(const struct wb_tls_config *cfg)
{
	struct wb_tls_ctx *ctx = NULL;
	int rc = wb_tls_ctx_new(cfg, &ctx, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "wb_tls_ctx_new: %s", errmsg);
	return ctx;
}

/* A server presenting the certificate name ("node"). */
static struct wb_tls_ctx *server_ctx(const char *name, enum wb_tls_client_cert cc)
{
	struct wb_tls_config cfg = {
	        .role = WB_TLS_SERVER,
	        .cert_file = cert_of(name),
	        .key_file = key_of(name),
	        .ca_file = cc != WB_TLS_CLIENT_CERT_NONE ? cert_of("ca") : NULL,
	        .client_cert = cc,
	};
	return new_ctx(&cfg);
}

/* A client trusting the CA file of ca_name, expecting server_name, with
 * the client certificate name (NULL: none). */
static struct wb_tls_ctx *client_ctx(const char *ca_name, const char *server_name, const char *name)
{
	struct wb_tls_config cfg = {
	        .role = WB_TLS_CLIENT,
	        .cert_file = name != NULL ? cert_of(name) : NULL,
	        .key_file = name != NULL ? key_of(name) : NULL,
	        .ca_file = cert_of(ca_name),
	        .server_name = server_name,
	};
	return new_ctx(&cfg);
}

/* ---------------------------------------------------------------- ends and the pump */

struct end {
	/* Ours... */
	struct wb_tls_session *s;
	/* ...or a raw OpenSSL peer on a BIO pair whose network end is net. */
	SSL_CTX *raw_ctx;
	SSL *ssl;
	BIO *net;
	bool raw_failed, raw_closed;
	char raw_reason[160];
	/* Plaintext still to send. */
	const uint8_t *out;
	size_t out_len;
	/* Plaintext received. */
	uint8_t *got;
	size_t n_got, cap_got;
	/* The last code wb_tls_session_read() returned. */
	int read_rc;
};

static struct end ours(struct wb_tls_ctx *ctx)
{
	struct end e = {0};
	cr_assert_eq(wb_tls_session_new(ctx, &e.s), 0);
	return e;
}

/* A raw end on c, which it takes. */
static struct end raw(SSL_CTX *c, bool server)
{
	struct end e = {.raw_ctx = c};
	e.ssl = SSL_new(c);
	cr_assert_not_null(e.ssl);
	BIO *inner;
	cr_assert_eq(BIO_new_bio_pair(&inner, 65536, &e.net, 65536), 1);
	SSL_set_bio(e.ssl, inner, inner);
	if (server)
		SSL_set_accept_state(e.ssl);
	else
		SSL_set_connect_state(e.ssl);
	return e;
}

static void end_free(struct end *e)
{
	wb_tls_session_free(e->s);
	SSL_free(e->ssl);
	BIO_free(e->net);
	SSL_CTX_free(e->raw_ctx);
	free(e->got);
	memset(e, 0, sizeof(*e));
}

/* Records why a raw end's SSL call r failed, unless it only waits. */
static void raw_check(struct end *e, int r)
{
	int err = SSL_get_error(e->ssl, r);
	if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		return;
	if (err == SSL_ERROR_ZERO_RETURN) {
		e->raw_closed = true;
		return;
	}
	unsigned long code = ERR_peek_error();
	const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;
	if (!e->raw_failed)
		snprintf(e->raw_reason, sizeof(e->raw_reason), "%s",
		         reason != NULL ? reason : "no reason");
	ERR_clear_error();
	e->raw_failed = true;
}

static void got_append(struct end *e, const uint8_t *p, size_t n)
{
	if (e->n_got + n > e->cap_got) {
		e->cap_got = (e->n_got + n) * 2;
		e->got = realloc(e->got, e->cap_got);
		cr_assert_not_null(e->got);
	}
	memcpy(e->got + e->n_got, p, n);
	e->n_got += n;
}

/* Drives a raw end: its handshake, its plaintext out and in. */
static void raw_step(struct end *e)
{
	if (e->raw_failed || e->raw_closed)
		return;
	ERR_clear_error();
	if (!SSL_is_init_finished(e->ssl)) {
		int r = SSL_do_handshake(e->ssl);
		if (r != 1) {
			raw_check(e, r);
			return;
		}
	}
	while (e->out_len > 0) {
		int w = SSL_write(e->ssl, e->out, e->out_len > 16384 ? 16384 : (int)e->out_len);
		if (w <= 0) {
			raw_check(e, w);
			break;
		}
		e->out += w;
		e->out_len -= (size_t)w;
	}
	uint8_t buf[16384];
	for (;;) {
		int r = SSL_read(e->ssl, buf, sizeof(buf));
		if (r <= 0) {
			raw_check(e, r);
			break;
		}
		got_append(e, buf, (size_t)r);
	}
}

/* Drives one of ours: its plaintext out and in. */
static void our_step(struct end *e)
{
	while (e->out_len > 0) {
		size_t took = 0;
		int rc = wb_tls_session_write(e->s, e->out, e->out_len, &took);
		cr_assert_leq(took, e->out_len);
		e->out += took;
		e->out_len -= took;
		if (rc != 0 || took == 0)
			break;
	}
	uint8_t buf[8192];
	for (;;) {
		size_t n = 0;
		e->read_rc = wb_tls_session_read(e->s, buf, sizeof(buf), &n);
		if (n == 0)
			break;
		got_append(e, buf, n);
	}
}

static void step(struct end *e)
{
	if (e->s != NULL)
		our_step(e);
	else
		raw_step(e);
}

static void peek(struct end *e, const uint8_t **p, size_t *n)
{
	if (e->s != NULL) {
		wb_tls_session_peek_out(e->s, p, n);
		cr_assert_leq(*n, WB_TLS_OUT_BUF, "more ciphertext buffered than the bound");
		return;
	}
	char *b;
	int k = BIO_nread0(e->net, &b);
	*p = (const uint8_t *)b;
	*n = k > 0 ? (size_t)k : 0;
}

static void consume(struct end *e, size_t n)
{
	if (e->s != NULL) {
		wb_tls_session_consume_out(e->s, n);
		return;
	}
	char *b;
	cr_assert_eq(BIO_nread(e->net, &b, (int)n), (int)n);
}

static size_t feed(struct end *e, const uint8_t *p, size_t n)
{
	if (e->s != NULL) {
		size_t took = 0;
		wb_tls_session_feed(e->s, p, n, &took);
		cr_assert_leq(took, n);
		if (wb_tls_session_state(e->s) != WB_TLS_CLOSED)
			cr_assert_leq(took, WB_TLS_IN_BUF, "more ciphertext taken than the bound");
		return took;
	}
	size_t room = BIO_ctrl_get_write_guarantee(e->net);
	size_t take = n < room ? n : room;
	if (take > 0)
		cr_assert_eq(BIO_write(e->net, p, (int)take), (int)take);
	return take;
}

/* Moves up to chunk bytes at a time of from's ciphertext to to; whether
 * anything moved. */
static bool move(struct end *from, struct end *to, size_t chunk)
{
	bool moved = false;
	for (;;) {
		const uint8_t *p;
		size_t n;
		peek(from, &p, &n);
		if (n == 0)
			return moved;
		size_t took = feed(to, p, n < chunk ? n : chunk);
		if (took == 0)
			return moved;
		consume(from, took);
		moved = true;
		step(to);
	}
}

/* Runs a and b until nothing moves. */
static void pump(struct end *a, struct end *b, size_t chunk)
{
	for (long round = 0; round < 10000000; round++) {
		step(a);
		step(b);
		bool moved = move(a, b, chunk);
		moved |= move(b, a, chunk);
		if (!moved)
			return;
	}
	cr_assert_fail("the pump never settled");
}

static enum wb_tls_state state(const struct end *e)
{
	return wb_tls_session_state(e->s);
}

/* Both of ours completed the handshake. */
static void assert_open(const struct end *client, const struct end *server)
{
	cr_assert_eq(state(client), WB_TLS_OPEN, "client: %s", wb_tls_session_errmsg(client->s));
	cr_assert_eq(state(server), WB_TLS_OPEN, "server: %s", wb_tls_session_errmsg(server->s));
}

static void assert_failed(const struct end *e, const char *needle)
{
	cr_assert_eq(state(e), WB_TLS_FAILED, "state %d", (int)state(e));
	const char *msg = wb_tls_session_errmsg(e->s);
	cr_assert_not_null(strstr(msg, needle), "\"%s\" does not say \"%s\"", msg, needle);
}

/* A client of ctx and a server of sctx, pumped with chunk. */
static void handshake(struct end *c, struct end *s, struct wb_tls_ctx *cctx,
                      struct wb_tls_ctx *sctx, size_t chunk)
{
	*c = ours(cctx);
	*s = ours(sctx);
	pump(c, s, chunk);
}

/* Sends msg[0..n) from one end to the other and checks it arrived whole. */
static void round_trip(struct end *from, struct end *to, const uint8_t *msg, size_t n, size_t chunk)
{
	to->n_got = 0;
	from->out = msg;
	from->out_len = n;
	pump(from, to, chunk);
	cr_assert_eq(from->out_len, 0, "%zu bytes not sent", from->out_len);
	cr_assert_eq(to->n_got, n, "received %zu of %zu bytes", to->n_got, n);
	cr_assert(memcmp(to->got, msg, n) == 0, "the bytes differ");
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n);
	cr_assert_not_null(p);
	for (size_t k = 0; k < n; k++)
		p[k] = (uint8_t)fixture_splitmix(&seed);
	return p;
}

/* ---------------------------------------------------------------- the happy path */

Test(tls, handshake_round_trip_and_close)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	struct end c, s;
	handshake(&c, &s, cctx, sctx, 65536);
	assert_open(&c, &s);
	/* TLS 1.3 by default, with an AEAD suite. */
	cr_assert_str_eq(wb_tls_session_version(c.s), "TLSv1.3");
	cr_assert_str_eq(wb_tls_session_version(s.s), "TLSv1.3");
	cr_assert_str_eq(wb_tls_session_cipher(c.s), wb_tls_session_cipher(s.s));
	cr_assert_not_null(strstr(wb_tls_session_cipher(c.s), "TLS_"));
	/* The client knows the server's names; the server has no peer. */
	cr_assert_str_eq(wb_tls_session_peer_cn(c.s), "node1.example");
	cr_assert_str_eq(wb_tls_session_peer_san(c.s, 0), "DNS:node1.example");
	cr_assert_str_eq(wb_tls_session_peer_san(c.s, 1), "IP:127.0.0.1");
	cr_assert_null(wb_tls_session_peer_san(c.s, 2));
	cr_assert_str_eq(wb_tls_session_peer_cn(s.s), "");
	cr_assert_null(wb_tls_session_peer_san(s.s, 0));

	round_trip(&c, &s, (const uint8_t *)"hello", 5, 65536);
	round_trip(&s, &c, (const uint8_t *)"world!", 6, 65536);

	/* The client closes: the server reads the close_notify and closes
	 * too; each end then refuses to write. */
	wb_tls_session_close(c.s);
	cr_assert_eq(state(&c), WB_TLS_CLOSED);
	pump(&c, &s, 65536);
	cr_assert_eq(state(&s), WB_TLS_CLOSED);
	cr_assert_eq(s.read_rc, WB_E_CLOSED);
	wb_tls_session_close(s.s);
	size_t took = 1;
	cr_assert_eq(wb_tls_session_write(s.s, (const uint8_t *)"x", 1, &took), WB_E_CLOSED);
	cr_assert_eq(took, 0);
	cr_assert_eq(wb_tls_session_write(c.s, (const uint8_t *)"x", 1, &took), WB_E_CLOSED);
	cr_assert_eq(wb_tls_session_errmsg(s.s)[0], '\0');

	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(cctx);
	wb_tls_ctx_unref(sctx);
}

Test(tls, a_large_message_and_small_pieces)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	/* 128 KiB each way: eight full records and more, which is what a large
	 * message adds (1 MiB took 13 s under valgrind for nothing more), in
	 * pieces larger than, just over, and well under a record. */
	size_t big = 1u << 17;
	uint8_t *msg = random_bytes(big, 1);
	static const size_t chunks[] = {65536, 16389, 1000};
	/* Under valgrind (ten times slower) the piece just over a record's
	 * size alone: the other two add no path the first does not take. */
	size_t first = fixture_under_valgrind() ? 1 : 0;
	size_t end = fixture_under_valgrind() ? 2 : sizeof(chunks) / sizeof(chunks[0]);
	for (size_t k = first; k < end; k++) {
		struct end c, s;
		handshake(&c, &s, cctx, sctx, chunks[k]);
		assert_open(&c, &s);
		round_trip(&c, &s, msg, big, chunks[k]);
		round_trip(&s, &c, msg, big, chunks[k]);
		end_free(&c);
		end_free(&s);
	}
	/* The handshake and 40 KiB (three records) split into pieces of
	 * every small size, down to one byte. */
	for (size_t chunk = 1; chunk <= 13; chunk++) {
		struct end c, s;
		handshake(&c, &s, cctx, sctx, chunk);
		assert_open(&c, &s);
		round_trip(&c, &s, msg, 40000, chunk);
		round_trip(&s, &c, msg + 1, 40000, chunk);
		end_free(&c);
		end_free(&s);
	}
	free(msg);
	wb_tls_ctx_unref(cctx);
	wb_tls_ctx_unref(sctx);
}

/* A session buffers at most its bounds: writing with nobody taking the
 * ciphertext out, and feeding with nobody reading the plaintext, stop
 * taking bytes instead of growing. */
Test(tls, buffers_are_bounded)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	struct end c, s;
	handshake(&c, &s, cctx, sctx, 65536);
	assert_open(&c, &s);
	size_t big = 1u << 20;
	uint8_t *msg = random_bytes(big, 2);

	size_t took = 0;
	cr_assert_eq(wb_tls_session_write(c.s, msg, big, &took), 0);
	cr_assert_gt(took, 0);
	cr_assert_lt(took, WB_TLS_OUT_BUF);
	size_t more = 1;
	cr_assert_eq(wb_tls_session_write(c.s, msg + took, big - took, &more), 0);
	cr_assert_eq(more, 0, "a full session took %zu more bytes", more);

	/* Take the client's ciphertext out by hand; feed it all to the
	 * server without reading. */
	const uint8_t *p;
	size_t n, ct_len = 0;
	uint8_t *ct = malloc(2 * WB_TLS_OUT_BUF);
	cr_assert_not_null(ct);
	for (wb_tls_session_peek_out(c.s, &p, &n); n > 0; wb_tls_session_peek_out(c.s, &p, &n)) {
		memcpy(ct + ct_len, p, n);
		ct_len += n;
		wb_tls_session_consume_out(c.s, n);
	}
	cr_assert_gt(ct_len, took);
	size_t fed = 0;
	cr_assert_eq(wb_tls_session_feed(s.s, ct, ct_len, &fed), 0);
	cr_assert_eq(fed, WB_TLS_IN_BUF);
	size_t again = 1;
	cr_assert_eq(wb_tls_session_feed(s.s, ct + fed, ct_len - fed, &again), 0);
	cr_assert_eq(again, 0, "a full session took %zu more bytes", again);
	/* Reading makes room, and everything arrives. */
	uint8_t *got = malloc(took);
	size_t n_got = 0;
	cr_assert_not_null(got);
	while (n_got < took) {
		size_t r = 0;
		cr_assert_eq(wb_tls_session_read(s.s, got + n_got, took - n_got, &r), 0);
		size_t f = 0;
		if (fed < ct_len) {
			cr_assert_eq(wb_tls_session_feed(s.s, ct + fed, ct_len - fed, &f), 0);
			fed += f;
		}
		cr_assert(r > 0 || f > 0, "no progress at %zu of %zu", n_got, took);
		n_got += r;
	}
	cr_assert(memcmp(got, msg, took) == 0);
	free(got);
	free(ct);
	free(msg);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(cctx);
	wb_tls_ctx_unref(sctx);
}

/* ---------------------------------------------------------------- raw peers */

/* A raw client of version at most max_version, offering alpn (wire form,
 * NULL: no ALPN), verifying nothing. Below TLS 1.2 OpenSSL itself needs
 * security level 0 to offer the version at all. */
static struct end raw_client(int max_version, const unsigned char *alpn, unsigned alpn_len)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(c);
	SSL_CTX_set_security_level(c, 0);
	cr_assert_eq(SSL_CTX_set_cipher_list(c, "DEFAULT:@SECLEVEL=0"), 1);
	cr_assert_eq(SSL_CTX_set_min_proto_version(c, 0), 1);
	cr_assert_eq(SSL_CTX_set_max_proto_version(c, max_version), 1);
	if (alpn != NULL)
		cr_assert_eq(SSL_CTX_set_alpn_protos(c, alpn, alpn_len), 0);
	return raw(c, false);
}

#define ALPN_OURS ((const unsigned char *)"\x0awhizbang/1")
#define ALPN_OURS_LEN 11u

static int select_ours_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, ALPN_OURS, ALPN_OURS_LEN, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* A raw server presenting node, selecting whizbang/1 or no protocol at
 * all, allowing client renegotiation or not. */
static struct end raw_server(bool select_alpn, bool allow_reneg)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	cr_assert_not_null(c);
	cr_assert_eq(SSL_CTX_use_certificate_chain_file(c, cert_of("node")), 1);
	cr_assert_eq(SSL_CTX_use_PrivateKey_file(c, key_of("node"), SSL_FILETYPE_PEM), 1);
	if (select_alpn)
		SSL_CTX_set_alpn_select_cb(c, select_ours_cb, NULL);
	if (allow_reneg)
		SSL_CTX_set_options(c, SSL_OP_ALLOW_CLIENT_RENEGOTIATION);
	return raw(c, true);
}

Test(tls, tls_1_1_is_refused)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct end c = raw_client(TLS1_1_VERSION, ALPN_OURS, ALPN_OURS_LEN);
	struct end s = ours(sctx);
	pump(&c, &s, 65536);
	assert_failed(&s, "unsupported protocol");
	cr_assert(c.raw_failed, "the client went on");
	end_free(&c);
	end_free(&s);

	/* Control: the same client allowed TLS 1.2 gets TLS 1.2 with an
	 * ECDHE AEAD suite, though it offers every cipher. */
	c = raw_client(TLS1_2_VERSION, ALPN_OURS, ALPN_OURS_LEN);
	s = ours(sctx);
	pump(&c, &s, 65536);
	cr_assert_eq(state(&s), WB_TLS_OPEN, "%s", wb_tls_session_errmsg(s.s));
	cr_assert(!c.raw_failed, "%s", c.raw_reason);
	cr_assert_str_eq(wb_tls_session_version(s.s), "TLSv1.2");
	const char *cipher = wb_tls_session_cipher(s.s);
	cr_assert(strncmp(cipher, "ECDHE-", 6) == 0 &&
	                  (strstr(cipher, "GCM") != NULL || strstr(cipher, "CHACHA20") != NULL),
	          "%s", cipher);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(sctx);
}

Test(tls, a_client_without_our_alpn_is_refused)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct end c = raw_client(TLS1_3_VERSION, NULL, 0);
	struct end s = ours(sctx);
	pump(&c, &s, 65536);
	assert_failed(&s, "offered no application protocol");
	cr_assert(c.raw_failed);
	cr_assert_str_eq(c.raw_reason, "tlsv1 alert no application protocol");
	end_free(&c);
	end_free(&s);

	c = raw_client(TLS1_3_VERSION, (const unsigned char *)"\x02h2\x08http/1.1", 12);
	s = ours(sctx);
	pump(&c, &s, 65536);
	assert_failed(&s, "do not include whizbang/1");
	cr_assert(c.raw_failed);
	end_free(&c);
	end_free(&s);

	/* Control: the same client offering whizbang/1 among others. */
	c = raw_client(TLS1_3_VERSION, (const unsigned char *)"\x02h2\x0awhizbang/1", 14);
	s = ours(sctx);
	pump(&c, &s, 65536);
	cr_assert_eq(state(&s), WB_TLS_OPEN, "%s", wb_tls_session_errmsg(s.s));
	cr_assert(!c.raw_failed, "%s", c.raw_reason);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(sctx);
}

Test(tls, a_server_that_does_not_select_our_alpn_fails_the_client)
{
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	struct end c = ours(cctx);
	struct end s = raw_server(false, false);
	pump(&c, &s, 65536);
	assert_failed(&c, "did not select the application protocol whizbang/1");
	end_free(&c);
	end_free(&s);

	/* Control: the same server selecting it. */
	c = ours(cctx);
	s = raw_server(true, false);
	pump(&c, &s, 65536);
	cr_assert_eq(state(&c), WB_TLS_OPEN, "%s", wb_tls_session_errmsg(c.s));
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(cctx);
}

/* A TLS 1.2 client that completed its handshake with s asks to
 * renegotiate; whether the renegotiation completed. */
static bool renegotiate(struct end *c, struct end *s)
{
	pump(c, s, 65536);
	cr_assert(!c->raw_failed, "%s", c->raw_reason);
	cr_assert_str_eq(SSL_get_version(c->ssl), "TLSv1.2");
	cr_assert_eq(SSL_renegotiate(c->ssl), 1);
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r != 1)
		raw_check(c, r);
	pump(c, s, 65536);
	return !c->raw_failed && SSL_is_init_finished(c->ssl) && !SSL_renegotiate_pending(c->ssl);
}

Test(tls, renegotiation_is_refused)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct end c = raw_client(TLS1_2_VERSION, ALPN_OURS, ALPN_OURS_LEN);
	struct end s = ours(sctx);
	cr_assert(!renegotiate(&c, &s));
	cr_assert(c.raw_failed);
	cr_assert_str_eq(c.raw_reason, "no renegotiation");
	end_free(&c);
	end_free(&s);

	/* Control: the same client renegotiates with a server that allows
	 * it, so the refusal above is our server's. */
	c = raw_client(TLS1_2_VERSION, ALPN_OURS, ALPN_OURS_LEN);
	s = raw_server(true, true);
	cr_assert(renegotiate(&c, &s), "%s", c.raw_reason);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(sctx);
}

/* ---------------------------------------------------------------- verification */

Test(tls, a_client_trusting_another_ca_fails)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *wrong = client_ctx("ca2", "node1.example", NULL);
	struct wb_tls_ctx *right = client_ctx("ca", "node1.example", NULL);
	struct end c, s;
	handshake(&c, &s, wrong, sctx, 65536);
	assert_failed(&c, "certificate verify failed (unable to get local issuer certificate)");
	assert_failed(&s, "unknown ca");
	cr_assert_eq(wb_tls_session_verify(c.s), WB_TLS_VERIFY_UNTRUSTED);
	/* The server verified nothing (it asks for no client certificate). */
	cr_assert_eq(wb_tls_session_verify(s.s), WB_TLS_VERIFY_OK);
	end_free(&c);
	end_free(&s);
	handshake(&c, &s, right, sctx, 65536);
	assert_open(&c, &s);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(wrong);
	wb_tls_ctx_unref(right);
	wb_tls_ctx_unref(sctx);
}

Test(tls, a_server_of_another_name_fails)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	static const char *const wrong[] = {"node2.example", "example", "127.0.0.2", "::1"};
	for (size_t k = 0; k < sizeof(wrong) / sizeof(wrong[0]); k++) {
		struct wb_tls_ctx *cctx = client_ctx("ca", wrong[k], NULL);
		struct end c, s;
		handshake(&c, &s, cctx, sctx, 65536);
		assert_failed(&c, "certificate verify failed");
		cr_assert(strstr(wb_tls_session_errmsg(c.s), "mismatch") != NULL, "%s: %s",
		          wrong[k], wb_tls_session_errmsg(c.s));
		cr_assert_eq(wb_tls_session_verify(c.s), WB_TLS_VERIFY_NAME, "%s", wrong[k]);
		end_free(&c);
		end_free(&s);
		wb_tls_ctx_unref(cctx);
	}
	/* Control: the names it carries, the DNS name and the address. */
	static const char *const right[] = {"node1.example", "NODE1.example", "127.0.0.1"};
	for (size_t k = 0; k < sizeof(right) / sizeof(right[0]); k++) {
		struct wb_tls_ctx *cctx = client_ctx("ca", right[k], NULL);
		struct end c, s;
		handshake(&c, &s, cctx, sctx, 65536);
		assert_open(&c, &s);
		end_free(&c);
		end_free(&s);
		wb_tls_ctx_unref(cctx);
	}
	wb_tls_ctx_unref(sctx);
}

Test(tls, an_expired_server_certificate_fails)
{
	struct wb_certs_validity past = {.not_before_s = -2 * 86400, .not_after_s = -86400};
	make_node(ca, "expired", node1_dns, &past);
	struct wb_tls_ctx *expired = server_ctx("expired", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *fresh = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	cr_assert_lt(wb_tls_ctx_not_after(expired), time(NULL));
	struct end c, s;
	handshake(&c, &s, cctx, expired, 65536);
	assert_failed(&c, "certificate verify failed (certificate has expired)");
	cr_assert_eq(wb_tls_session_verify(c.s), WB_TLS_VERIFY_EXPIRED);
	end_free(&c);
	end_free(&s);
	handshake(&c, &s, cctx, fresh, 65536);
	assert_open(&c, &s);
	/* Control: an open session answers OK. */
	cr_assert_eq(wb_tls_session_verify(c.s), WB_TLS_VERIFY_OK);
	end_free(&c);
	end_free(&s);
	/* One whose validity begins tomorrow: a clock behind, in the words. */
	struct wb_certs_validity future = {.not_before_s = 86400, .not_after_s = 2 * 86400};
	make_node(ca, "future", node1_dns, &future);
	struct wb_tls_ctx *later = server_ctx("future", WB_TLS_CLIENT_CERT_NONE);
	handshake(&c, &s, cctx, later, 65536);
	assert_failed(&c, "certificate is not yet valid");
	cr_assert_eq(wb_tls_session_verify(c.s), WB_TLS_VERIFY_NOT_YET_VALID);
	wb_tls_ctx_unref(later);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(cctx);
	wb_tls_ctx_unref(fresh);
	wb_tls_ctx_unref(expired);
}

Test(tls, a_required_client_certificate)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_REQUIRED);
	struct wb_tls_ctx *none = client_ctx("ca", "node1.example", NULL);
	struct wb_tls_ctx *alice = client_ctx("ca", "node1.example", "client-alice");
	/* A server's certificate is no client certificate (extendedKeyUsage). */
	struct wb_tls_ctx *as_node = client_ctx("ca", "node1.example", "node");
	struct end c, s;
	handshake(&c, &s, none, sctx, 65536);
	assert_failed(&s, "peer did not return a certificate");
	assert_failed(&c, "certificate required");
	end_free(&c);
	end_free(&s);
	handshake(&c, &s, as_node, sctx, 65536);
	assert_failed(&s, "(unsuitable certificate purpose)");
	end_free(&c);
	end_free(&s);
	/* Control: with its certificate, the client is alice. */
	handshake(&c, &s, alice, sctx, 65536);
	assert_open(&c, &s);
	cr_assert_str_eq(wb_tls_session_peer_cn(s.s), "alice");
	cr_assert_null(wb_tls_session_peer_san(s.s, 0));
	round_trip(&c, &s, (const uint8_t *)"as alice", 8, 65536);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(none);
	wb_tls_ctx_unref(alice);
	wb_tls_ctx_unref(as_node);
	wb_tls_ctx_unref(sctx);
}

Test(tls, an_optional_client_certificate)
{
	make_client(ca2, "mallory", "client-mallory");
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_OPTIONAL);
	struct wb_tls_ctx *none = client_ctx("ca", "node1.example", NULL);
	struct wb_tls_ctx *alice = client_ctx("ca", "node1.example", "client-alice");
	struct wb_tls_ctx *mallory = client_ctx("ca", "node1.example", "client-mallory");
	struct end c, s;
	/* Without one: open, and nobody. */
	handshake(&c, &s, none, sctx, 65536);
	assert_open(&c, &s);
	cr_assert_str_eq(wb_tls_session_peer_cn(s.s), "");
	end_free(&c);
	end_free(&s);
	/* With one: open, and alice. */
	handshake(&c, &s, alice, sctx, 65536);
	assert_open(&c, &s);
	cr_assert_str_eq(wb_tls_session_peer_cn(s.s), "alice");
	end_free(&c);
	end_free(&s);
	/* One that does not verify is refused, not ignored. */
	handshake(&c, &s, mallory, sctx, 65536);
	assert_failed(&s, "certificate verify failed");
	cr_assert_eq(wb_tls_session_verify(s.s), WB_TLS_VERIFY_UNTRUSTED);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(none);
	wb_tls_ctx_unref(alice);
	wb_tls_ctx_unref(mallory);
	wb_tls_ctx_unref(sctx);
}

/* ---------------------------------------------------------------- reload */

Test(tls, a_session_outlives_the_context_swapped_out)
{
	struct wb_certs_validity v60 = wb_certs_days(60);
	static const char *const new_dns[] = {"node1.example", "new.example", NULL};
	make_node(ca, "node-new", new_dns, &v60);
	struct wb_tls_ctx *current = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	time_t now = time(NULL);
	cr_assert_lt(llabs((long long)(wb_tls_ctx_not_after(current) - (now + 30 * 86400))), 60);

	struct end c1, s1;
	handshake(&c1, &s1, cctx, current, 65536);
	assert_open(&c1, &s1);

	/* Reload: the server takes the new context and drops the old. */
	struct wb_tls_ctx *old = current;
	current = server_ctx("node-new", WB_TLS_CLIENT_CERT_NONE);
	wb_tls_ctx_unref(old);
	cr_assert_lt(llabs((long long)(wb_tls_ctx_not_after(current) - (now + 60 * 86400))), 60);

	/* The old session still works both ways. */
	round_trip(&c1, &s1, (const uint8_t *)"before", 6, 65536);
	round_trip(&s1, &c1, (const uint8_t *)"after", 5, 65536);
	cr_assert_null(wb_tls_session_peer_san(c1.s, 2), "the old certificate");

	/* A new session gets the new certificate. */
	struct end c2, s2;
	handshake(&c2, &s2, cctx, current, 65536);
	assert_open(&c2, &s2);
	cr_assert_str_eq(wb_tls_session_peer_san(c2.s, 1), "DNS:new.example");
	round_trip(&c2, &s2, (const uint8_t *)"new", 3, 65536);

	/* The old context goes with its last session (valgrind checks). */
	end_free(&s1);
	end_free(&c1);
	end_free(&c2);
	end_free(&s2);
	wb_tls_ctx_unref(current);
	wb_tls_ctx_unref(cctx);
}

/* ---------------------------------------------------------------- bad input */

Test(tls, garbage_fails_the_session_with_a_message)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	static const char *const texts[] = {
	        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	        "\x00\x00\x00\x05hello",
	        "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
	};
	for (size_t k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
		struct end s = ours(sctx);
		size_t len = k == 0 ? strlen(texts[k]) : k == 1 ? 9 : 10, took = 0;
		cr_assert_eq(wb_tls_session_feed(s.s, (const uint8_t *)texts[k], len, &took),
		             WB_E_IO, "text %zu", k);
		cr_assert_eq(state(&s), WB_TLS_FAILED);
		cr_assert_gt(strlen(wb_tls_session_errmsg(s.s)), 10);
		/* A failed session takes nothing more and says so again. */
		cr_assert_eq(wb_tls_session_feed(s.s, (const uint8_t *)"x", 1, &took), WB_E_IO);
		cr_assert_eq(took, 0);
		size_t n = 1;
		uint8_t buf[16];
		cr_assert_eq(wb_tls_session_read(s.s, buf, sizeof(buf), &n), WB_E_IO);
		cr_assert_eq(n, 0);
		end_free(&s);
	}
	/* Random bytes at either end, after a real first flight or not:
	 * never open, never a crash, a message whenever failed. */
	uint64_t seed = 7;
	for (int k = 0; k < 200; k++) {
		bool client = k % 2 == 1;
		struct end e = ours(client ? cctx : sctx);
		size_t len = 1 + fixture_splitmix(&seed) % 600, took;
		uint8_t *junk = random_bytes(len, fixture_splitmix(&seed));
		if (k % 4 >= 2)
			junk[0] = 0x16; /* looks like a handshake record */
		const uint8_t *p;
		size_t n;
		wb_tls_session_peek_out(e.s, &p, &n);
		wb_tls_session_consume_out(e.s, n);
		wb_tls_session_feed(e.s, junk, len, &took);
		uint8_t buf[64];
		wb_tls_session_read(e.s, buf, sizeof(buf), &n);
		enum wb_tls_state st = state(&e);
		cr_assert(st == WB_TLS_FAILED || st == WB_TLS_HANDSHAKING, "state %d", (int)st);
		if (st == WB_TLS_FAILED)
			cr_assert_neq(wb_tls_session_errmsg(e.s)[0], '\0');
		free(junk);
		end_free(&e);
	}
	wb_tls_ctx_unref(sctx);
	wb_tls_ctx_unref(cctx);
}

Test(tls, nothing_is_written_before_the_handshake)
{
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	struct end c = ours(cctx), s = ours(sctx);
	size_t took = 1;
	cr_assert_eq(wb_tls_session_write(c.s, (const uint8_t *)"early", 5, &took), WB_E_AGAIN);
	cr_assert_eq(took, 0);
	cr_assert_str_eq(wb_tls_session_version(c.s), "");
	/* A client's hello is ready at once; a server says nothing first. */
	const uint8_t *p;
	size_t n;
	wb_tls_session_peek_out(s.s, &p, &n);
	cr_assert_eq(n, 0);
	wb_tls_session_peek_out(c.s, &p, &n);
	cr_assert_gt(n, 0);
	/* Closing during the handshake sends nothing more. */
	wb_tls_session_close(s.s);
	cr_assert_eq(state(&s), WB_TLS_CLOSED);
	wb_tls_session_peek_out(s.s, &p, &n);
	cr_assert_eq(n, 0);
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(sctx);
	wb_tls_ctx_unref(cctx);
}

/* ---------------------------------------------------------------- contexts */

Test(tls, a_key_that_does_not_match_is_refused)
{
	struct wb_tls_config cfg = {
	        .role = WB_TLS_SERVER,
	        .cert_file = cert_of("node"),
	        .key_file = key_of("client-alice"),
	};
	struct wb_tls_ctx *ctx = NULL;
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_null(ctx);
	cr_assert_not_null(strstr(errmsg, "does not match the certificate"), "%s", errmsg);
	cr_assert_not_null(strstr(errmsg, "client-alice.key"), "%s", errmsg);
	cr_assert_null(strstr(errmsg, "PRIVATE KEY"), "%s", errmsg);
	/* Control: its own key. */
	cfg.key_file = key_of("node");
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), 0, "%s", errmsg);
	wb_tls_ctx_unref(ctx);
}

Test(tls, contexts_that_cannot_work_are_refused)
{
	struct wb_tls_ctx *ctx = NULL;
	struct wb_tls_config cfg = {.role = WB_TLS_SERVER};
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "needs a certificate"), "%s", errmsg);
	cfg.cert_file = cert_of("node");
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cfg.key_file = key_of("node");
	cfg.client_cert = WB_TLS_CLIENT_CERT_REQUIRED;
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "CA file"), "%s", errmsg);
	cfg.ca_file = path("missing.crt");
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "missing.crt"), "%s", errmsg);
	cfg.cert_file = path("missing.crt");
	cr_assert_eq(wb_tls_ctx_new(&cfg, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "missing.crt"), "%s", errmsg);

	struct wb_tls_config client = {.role = WB_TLS_CLIENT, .ca_file = cert_of("ca")};
	cr_assert_eq(wb_tls_ctx_new(&client, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "server's name"), "%s", errmsg);
	client.server_name = "node1.example";
	client.ca_file = NULL;
	cr_assert_eq(wb_tls_ctx_new(&client, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_null(ctx);

	/* An encrypted key is refused without asking for a passphrase. */
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert_not_null(key);
	FILE *f = fopen(path("enc.key"), "w");
	cr_assert_not_null(f);
	cr_assert_eq(PEM_write_PrivateKey(f, key, EVP_aes_256_cbc(), NULL, 0, NULL, "secret"), 1);
	fclose(f);
	EVP_PKEY_free(key);
	struct wb_tls_config enc = {
	        .role = WB_TLS_SERVER, .cert_file = cert_of("node"), .key_file = path("enc.key")};
	cr_assert_eq(wb_tls_ctx_new(&enc, &ctx, errmsg, sizeof(errmsg)), WB_E_INVAL);
	cr_assert_not_null(strstr(errmsg, "is encrypted"), "%s", errmsg);
	cr_assert_null(strstr(errmsg, "secret"), "%s", errmsg);

	/* Controls: the same client made whole, and one that skips
	 * verification (it needs neither). */
	client.ca_file = cert_of("ca");
	cr_assert_eq(wb_tls_ctx_new(&client, &ctx, errmsg, sizeof(errmsg)), 0, "%s", errmsg);
	cr_assert_eq(wb_tls_ctx_not_after(ctx), 0, "a client without a certificate");
	wb_tls_ctx_unref(ctx);
	struct wb_tls_config skip = {.role = WB_TLS_CLIENT, .skip_server_verify = true};
	cr_assert_eq(wb_tls_ctx_new(&skip, &ctx, errmsg, sizeof(errmsg)), 0, "%s", errmsg);
	struct end c = ours(ctx);
	struct wb_tls_ctx *sctx = server_ctx("node", WB_TLS_CLIENT_CERT_NONE);
	struct end s = ours(sctx);
	pump(&c, &s, 65536);
	assert_open(&c, &s);
	cr_assert_str_eq(wb_tls_session_peer_cn(c.s), "", "an unverified peer has no name");
	end_free(&c);
	end_free(&s);
	wb_tls_ctx_unref(ctx);
	wb_tls_ctx_unref(sctx);
}

/* ---------------------------------------------------------------- one port, both */

Test(tls, looks_like_tls)
{
	struct wb_tls_ctx *cctx = client_ctx("ca", "node1.example", NULL);
	struct end c = ours(cctx);
	const uint8_t *hello;
	size_t n;
	wb_tls_session_peek_out(c.s, &hello, &n);
	cr_assert_gt(n, 3);
	for (size_t k = 0; k <= n; k++)
		cr_assert_eq(wb_tls_looks_like_tls(hello, k),
		             k < 3 ? WB_TLS_LOOKS_AGAIN : WB_TLS_LOOKS_TLS, "prefix %zu", k);
	/* A plaintext frame's header: 0x00 first. */
	static const uint8_t frame[] = {0x00, 0x00, 0x01, 0x00};
	for (size_t k = 1; k <= sizeof(frame); k++)
		cr_assert_eq(wb_tls_looks_like_tls(frame, k), WB_TLS_LOOKS_PLAIN);
	cr_assert_eq(wb_tls_looks_like_tls(frame, 0), WB_TLS_LOOKS_AGAIN);
	cr_assert_eq(wb_tls_looks_like_tls((const uint8_t *)"GET", 3), WB_TLS_LOOKS_PLAIN);
	cr_assert_eq(wb_tls_looks_like_tls((const uint8_t *)"\x16\x04", 2), WB_TLS_LOOKS_PLAIN);
	cr_assert_eq(wb_tls_looks_like_tls((const uint8_t *)"\x16\x03\x05", 3), WB_TLS_LOOKS_PLAIN);
	cr_assert_eq(wb_tls_looks_like_tls((const uint8_t *)"\x17\x03\x03", 3), WB_TLS_LOOKS_PLAIN);
	end_free(&c);
	wb_tls_ctx_unref(cctx);
}
