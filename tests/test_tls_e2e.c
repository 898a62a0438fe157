/* TLS served by a real whizbangd: a client of tls/wb_tls.h over a plain
 * blocking socket does the handshake and talks frames through it. Checked:
 * the policy (required refuses plaintext on TCP and keeps the Unix socket
 * plaintext; auto takes both from loopback), the certificate the client
 * sees and its reload on SIGHUP while an old connection keeps working, the
 * handshake timeout, a client without our CA, and EXTERNAL: a verified
 * client certificate's CN logs in as that user. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "e2e_util.h"
#include "frame.h"
#include "tls/wb_certs.h"
#include "tls/wb_tls.h"
#include "wb_error.h"
#include "wire.h"

static char certdir[] = "/tmp/wb-tls-e2e-XXXXXX";

static void fini(void)
{
	e2e_suite_fini();
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
	(void)!system(cmd);
}

TestSuite(tls_e2e, .fini = fini, .timeout = 240);

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

static char path_buf[8][300];
static const char *path(int slot, const char *name)
{
	snprintf(path_buf[slot], sizeof(path_buf[slot]), "%s/%s", certdir, name);
	return path_buf[slot];
}

/* A CA, a node certificate for 127.0.0.1 and a client certificate for
 * alice, in certdir (ca.crt, node.crt, client-alice.crt, ...). days is the
 * node certificate's validity. */
static void make_certs(const char *ca_name, int node_days)
{
	char err[300];
	if (strcmp(certdir + strlen(certdir) - 6, "XXXXXX") == 0)
		cr_assert_not_null(mkdtemp(certdir));
	struct wb_certs_pair *ca, *node, *client;
	struct wb_certs_validity ten_years = wb_certs_days(3650), month = wb_certs_days(30),
	                         node_v = wb_certs_days((uint32_t)node_days);
	cr_assert_eq(wb_certs_make_ca(ca_name, &ten_years, &ca, err, sizeof(err)), 0, "%s", err);
	const char *ips[] = {"127.0.0.1"};
	const char *dns[] = {"localhost"};
	struct wb_certs_names names = {.dns = dns, .n_dns = 1, .ips = ips, .n_ips = 1};
	cr_assert_eq(wb_certs_make_node(ca, &names, &node_v, &node, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(wb_certs_make_client(ca, "alice", &month, &client, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(
	        wb_certs_save(ca, path(0, "ca.crt"), path(1, "ca.key"), true, err, sizeof(err)), 0,
	        "%s", err);
	cr_assert_eq(wb_certs_save(node, path(2, "node.crt"), path(3, "node.key"), true, err,
	                           sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(wb_certs_save(client, path(4, "alice.crt"), path(5, "alice.key"), true, err,
	                           sizeof(err)),
	             0, "%s", err);
	wb_certs_free(ca);
	wb_certs_free(node);
	wb_certs_free(client);
}

struct tconn {
	int fd;
	struct wb_tls_ctx *ctx;
	struct wb_tls_session *s;
	uint8_t in[1 << 20];
	size_t in_len;
};

static int pump_out(struct tconn *t)
{
	for (;;) {
		const uint8_t *p;
		size_t n;
		wb_tls_session_peek_out(t->s, &p, &n);
		if (n == 0)
			return 0;
		if (e2e_send_all(t->fd, p, n, 5000) != 0)
			return -1;
		wb_tls_session_consume_out(t->s, n);
	}
}

/* Reads what arrives within timeout_ms into the session and its plaintext
 * into t->in. -1 when the peer closed or nothing came. */
static int pump_in(struct tconn *t, int timeout_ms)
{
	struct pollfd pfd = {t->fd, POLLIN, 0};
	if (poll(&pfd, 1, timeout_ms) <= 0)
		return -1;
	uint8_t buf[16384];
	ssize_t n = recv(t->fd, buf, sizeof(buf), 0);
	if (n <= 0)
		return -1;
	size_t off = 0;
	while (off < (size_t)n) {
		size_t took = 0;
		int rc = wb_tls_session_feed(t->s, buf + off, (size_t)n - off, &took);
		off += took;
		size_t got;
		do {
			got = 0;
			(void)wb_tls_session_read(t->s, t->in + t->in_len,
			                          sizeof(t->in) - t->in_len, &got);
			t->in_len += got;
		} while (got > 0);
		if (rc != 0)
			return -1;
	}
	return pump_out(t);
}

/* A TLS connection to the suite's server: 0 once open, -1 when the
 * handshake failed. With client_cert, it presents alice's certificate. */
static int tls_connect(struct tconn *t, const char *ca, bool client_cert)
{
	memset(t, 0, sizeof(*t));
	struct wb_tls_config cfg = {
	        .role = WB_TLS_CLIENT,
	        .ca_file = ca,
	        .server_name = "127.0.0.1",
	        .cert_file = client_cert ? path(6, "alice.crt") : NULL,
	        .key_file = client_cert ? path(7, "alice.key") : NULL,
	};
	char err[300];
	cr_assert_eq(wb_tls_ctx_new(&cfg, &t->ctx, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wb_tls_session_new(t->ctx, &t->s), 0);
	t->fd = e2e_suite_raw();
	if (pump_out(t) != 0)
		return -1;
	while (wb_tls_session_state(t->s) == WB_TLS_HANDSHAKING)
		if (pump_in(t, 5000) != 0)
			return -1;
	return wb_tls_session_state(t->s) == WB_TLS_OPEN ? 0 : -1;
}

static void tls_close(struct tconn *t)
{
	wb_tls_session_free(t->s);
	wb_tls_ctx_unref(t->ctx);
	close(t->fd);
}

/* One request and its answer through t; NULL when the connection ended. */
static Response *tls_call(struct tconn *t, Request *req)
{
	size_t len;
	uint8_t *frame = wire_pack_frame(&req->base, &len);
	size_t took = 0;
	cr_assert_eq(wb_tls_session_write(t->s, frame, len, &took), 0);
	cr_assert_eq(took, len);
	free(frame);
	if (pump_out(t) != 0)
		return NULL;
	for (;;) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		enum frame_status st =
		        frame_decode(t->in, t->in_len, 1u << 20, &payload, &plen, &used);
		if (st == FRAME_OK) {
			Response *r = whizbang__v1__response__unpack(NULL, plen, payload);
			memmove(t->in, t->in + used, t->in_len - used);
			t->in_len -= used;
			return r;
		}
		cr_assert_neq(st, FRAME_ERROR);
		if (pump_in(t, 5000) != 0)
			return NULL;
	}
}

static int hello_code(struct tconn *t, const char *mechanism, char *user, size_t ulen)
{
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.mechanism = (char *)mechanism;
	Request req = E2E_REQUEST(HELLO, hello, &h);
	req.id = 1;
	Response *r = tls_call(t, &req);
	cr_assert_not_null(r, "no answer to Hello over TLS");
	int code = e2e_error_code(r);
	if (code == 0 && user != NULL)
		snprintf(user, ulen, "%s", r->hello->user);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

static void start(const char *policy, const char *client_cert)
{
	static char a[6][400];
	snprintf(a[0], sizeof(a[0]), "--tls=%s", policy);
	snprintf(a[1], sizeof(a[1]), "--tls-cert-file=%s", path(2, "node.crt"));
	snprintf(a[2], sizeof(a[2]), "--tls-key-file=%s", path(3, "node.key"));
	snprintf(a[3], sizeof(a[3]), "--tls-ca-file=%s", path(0, "ca.crt"));
	snprintf(a[4], sizeof(a[4]), "--tls-client-cert=%s", client_cert);
	const char *args[] = {a[0],
	                      a[1],
	                      a[2],
	                      a[3],
	                      a[4],
	                      "--metrics-listen=off",
	                      "--tls-handshake-timeout-ms=300",
	                      NULL};
	e2e_suite_start(args);
}

Test(tls_e2e, required_serves_tls_and_refuses_plaintext_on_tcp_only)
{
	make_certs("CA one", 30);
	start("required", "none");
	struct tconn *t = malloc(sizeof(*t));
	cr_assert_eq(tls_connect(t, path(0, "ca.crt"), false), 0, "handshake");
	cr_assert_str_eq(wb_tls_session_version(t->s), "TLSv1.3");
	cr_assert_eq(hello_code(t, "", NULL, 0), 0);
	Whizbang__V1__Ping p = WHIZBANG__V1__PING__INIT;
	p.nonce = 42;
	Request req = E2E_REQUEST(PING, ping, &p);
	req.id = 2;
	Response *r = tls_call(t, &req);
	cr_assert_not_null(r);
	cr_assert_eq(r->pong->nonce, 42u);
	whizbang__v1__response__free_unpacked(r, NULL);
	tls_close(t);

	/* Plaintext over TCP: refused with a reason, then closed. */
	int fd = e2e_suite_raw();
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	Request hreq = E2E_REQUEST(HELLO, hello, &h);
	cr_assert_eq(e2e_raw_call(fd, &hreq, &r), 0);
	cr_assert_eq(e2e_error_code(r), WB_UNAUTHENTICATED);
	cr_assert_not_null(strstr(r->error->message, "TLS"));
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert(e2e_wait_closed(fd, 5000));
	close(fd);

	/* The Unix socket stays plaintext (the control: the same Hello). */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s/whizbangd.sock", e2e_srv.data_dir);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(e2e_raw_hello(fd, 1), 0);
	close(fd);
	free(t);
	e2e_suite_stop();
}

Test(tls_e2e, auto_takes_both_from_loopback_and_a_stranger_ca_fails)
{
	make_certs("CA one", 30);
	start("auto", "none");
	struct tconn *t = malloc(sizeof(*t));
	cr_assert_eq(tls_connect(t, path(0, "ca.crt"), false), 0);
	cr_assert_eq(hello_code(t, "", NULL, 0), 0);
	tls_close(t);
	int fd = e2e_suite_raw();
	cr_assert_eq(e2e_raw_hello(fd, 1), 0, "plaintext from loopback under auto");
	close(fd);

	/* A client that trusts another CA does not get through. */
	char other[400];
	snprintf(other, sizeof(other), "%s/other-ca.crt", certdir);
	char err[300];
	struct wb_certs_pair *ca2;
	struct wb_certs_validity ten = wb_certs_days(10);
	cr_assert_eq(wb_certs_make_ca("CA two", &ten, &ca2, err, sizeof(err)), 0);
	char otherkey[400];
	snprintf(otherkey, sizeof(otherkey), "%s/other-ca.key", certdir);
	cr_assert_eq(wb_certs_save(ca2, other, otherkey, true, err, sizeof(err)), 0, "%s", err);
	wb_certs_free(ca2);
	cr_assert_neq(tls_connect(t, other, false), 0, "a stranger's CA was accepted");
	tls_close(t);
	free(t);
	e2e_suite_stop();
}

Test(tls_e2e, sighup_reloads_the_certificate_and_open_connections_keep_working)
{
	make_certs("CA one", 30);
	start("required", "none");
	struct tconn *old = malloc(sizeof(*old)), *t = malloc(sizeof(*t));
	cr_assert_eq(tls_connect(old, path(0, "ca.crt"), false), 0);
	cr_assert_eq(hello_code(old, "", NULL, 0), 0);

	/* New files under the same names: another CA, a 300-day certificate. */
	make_certs("CA two", 300);
	cr_assert_eq(kill(e2e_srv.pid, SIGHUP), 0);
	int64_t deadline = e2e_now_ms() + 5000;
	while (e2e_log_count(&e2e_srv, "event=tls_loaded") < 2 && e2e_now_ms() < deadline)
		e2e_sleep_ms(20);
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=tls_loaded"), 2u);

	/* The new connection sees the new certificate (it chains to CA two);
	 * the old one goes on. */
	cr_assert_eq(tls_connect(t, path(0, "ca.crt"), false), 0);
	cr_assert_eq(hello_code(t, "", NULL, 0), 0);
	Whizbang__V1__Ping p = WHIZBANG__V1__PING__INIT;
	Request req = E2E_REQUEST(PING, ping, &p);
	req.id = 3;
	Response *r = tls_call(old, &req);
	cr_assert_not_null(r, "the open connection broke at the reload");
	whizbang__v1__response__free_unpacked(r, NULL);
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	Request sreq = E2E_REQUEST(GET_STATS, get_stats, &g);
	sreq.id = 4;
	r = tls_call(t, &sreq);
	cr_assert_not_null(r);
	cr_assert(r->stats->tls);
	cr_assert(r->stats->tls_cert_days_left >= 298 && r->stats->tls_cert_days_left <= 300,
	          "days left %lld", (long long)r->stats->tls_cert_days_left);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* A reload that fails keeps the certificate served. */
	FILE *f = fopen(path(2, "node.crt"), "w");
	fputs("not a certificate\n", f);
	fclose(f);
	cr_assert_eq(kill(e2e_srv.pid, SIGHUP), 0);
	deadline = e2e_now_ms() + 5000;
	while (e2e_log_count(&e2e_srv, "event=reload_failed") < 1 && e2e_now_ms() < deadline)
		e2e_sleep_ms(20);
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=reload_failed"), 1u);
	tls_close(t);
	cr_assert_eq(tls_connect(t, path(0, "ca.crt"), false), 0);
	tls_close(t);
	tls_close(old);
	free(t);
	free(old);
	e2e_suite_stop();
}

Test(tls_e2e, a_client_that_never_finishes_its_handshake_is_closed)
{
	make_certs("CA one", 30);
	start("required", "none");
	int fd = e2e_suite_raw();
	/* The start of a TLS record, and then nothing. */
	uint8_t rec[] = {0x16, 0x03, 0x01, 0x00, 0x40};
	cr_assert_eq(e2e_send_all(fd, rec, sizeof(rec), 1000), 0);
	cr_assert(e2e_wait_closed(fd, 5000), "still open after the handshake timeout");
	close(fd);
	cr_assert_gt(e2e_log_count(&e2e_srv, "tls_handshake_timeout"), 0u);
	e2e_suite_stop();
}

Test(tls_e2e, external_logs_in_the_user_a_verified_certificate_names)
{
	make_certs("CA one", 30);
	start("required", "optional");
	/* alice must exist: the administrator makes her over the socket. */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%.90s/whizbangd.sock", e2e_srv.data_dir);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(e2e_raw_hello(fd, 1), 0);
	Whizbang__V1__PutUser pu = WHIZBANG__V1__PUT_USER__INIT;
	pu.name = "alice";
	char *roles[] = {"reader"};
	pu.n_roles = 1;
	pu.roles = roles;
	Request preq = E2E_REQUEST(PUT_USER, put_user, &pu);
	preq.id = 2;
	Response *r;
	cr_assert_eq(e2e_raw_call(fd, &preq, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	close(fd);

	struct tconn *t = malloc(sizeof(*t));
	char user[80];
	cr_assert_eq(tls_connect(t, path(0, "ca.crt"), true), 0);
	cr_assert_eq(hello_code(t, "EXTERNAL", user, sizeof(user)), 0);
	cr_assert_str_eq(user, "alice");
	tls_close(t);
	/* The control: without a certificate EXTERNAL names nobody. */
	cr_assert_eq(tls_connect(t, path(0, "ca.crt"), false), 0);
	cr_assert_eq(hello_code(t, "EXTERNAL", NULL, 0), WB_UNAUTHENTICATED);
	tls_close(t);
	free(t);
	e2e_suite_stop();
}

/* ------------------------------------------------------------ reload under load */

/* Certificate reloads under load: LOAD_THREADS client threads (libwhizbang,
 * one client each) append over TLS, half on the connection they keep and
 * half on a new connection, and so a new handshake, for every append, while
 * the test writes a new certificate from the same CA over the served files
 * and sends SIGHUP, LOAD_RELOADS times. No request may fail, every
 * acknowledged append must be readable, the log must show each reload, and
 * a new connection must verify the last certificate against the CA.
 *
 * The negative control (tests/meson.build runs it, and it must fail): with
 * WB_TLS_E2E_STRANGER set the new certificates come from another CA, so
 * the reconnecting threads' handshakes fail verification. */
#define LOAD_THREADS 4
#define LOAD_RELOADS 5
/* Each thread's bounds: requests, and time (the test stops it sooner). */
#define LOAD_MAX_REQUESTS 3000
#define LOAD_MAX_MS 20000

struct loader {
	pthread_t thread;
	bool reconnect; /* a new connection for every append */
	char stream[32];
	char ca_file[300];
	char address[32];
	unsigned connects;
	uint64_t acked;
	uint64_t failed;
	char first_error[400];
};

static atomic_bool load_stop;
static atomic_uint_fast64_t load_acked;

static void load_failed(struct loader *l, const char *what, int rc, const char *msg)
{
	if (l->failed++ == 0)
		snprintf(l->first_error, sizeof(l->first_error), "%s: %s (%s)", what,
		         wb_strerror(rc), msg);
}

/* One loader's work; never asserts (criterion's asserts belong to the
 * test's own thread): what happened is in *l when it returns. */
static void *load_cb(void *arg)
{
	struct loader *l = arg;
	struct wb_options o = {
	        .client_name = "tls-reload-load",
	        .timeout_ms = 10000,
	        .tls = true,
	        .tls_ca_file = l->ca_file,
	        .tls_server_name = "127.0.0.1",
	};
	struct wb_client *c = NULL;
	int64_t deadline = e2e_now_ms() + LOAD_MAX_MS;
	for (unsigned i = 0;
	     i < LOAD_MAX_REQUESTS && !atomic_load(&load_stop) && e2e_now_ms() < deadline; i++) {
		if (c == NULL) {
			char err[300];
			int rc = wb_connect(&c, l->address, &o, err, sizeof(err));
			if (rc != 0) {
				load_failed(l, "connect", rc, err);
				c = NULL;
				continue;
			}
			l->connects++;
		}
		char data[32];
		int len = snprintf(data, sizeof(data), "{\"n\":%u}", i);
		struct wb_new_event ev = {.type = "load", .data = data, .data_len = (size_t)len};
		struct wb_append_result res;
		int rc = wb_append(c, l->stream, WB_EXPECT_ANY, 0, &ev, 1, &res);
		if (rc != 0) {
			load_failed(l, "append", rc, wb_errmsg(c));
			wb_close(c);
			c = NULL;
			continue;
		}
		l->acked++;
		atomic_fetch_add(&load_acked, 1);
		if (l->reconnect) {
			wb_close(c);
			c = NULL;
		}
	}
	wb_close(c);
	return NULL;
}

/* Waits up to 10 s for load_acked to reach at least n. */
static void wait_acked(uint64_t n)
{
	int64_t deadline = e2e_now_ms() + 10000;
	while (atomic_load(&load_acked) < n && e2e_now_ms() < deadline)
		e2e_sleep_ms(5);
}

Test(tls_e2e, certificate_reloads_under_load_fail_no_request)
{
	make_certs("CA one", 30);
	start("required", "none");
	bool stranger = getenv("WB_TLS_E2E_STRANGER") != NULL;
	char err[300];
	struct wb_certs_pair *ca;
	struct wb_certs_validity ten_years = wb_certs_days(3650);
	if (stranger)
		cr_assert_eq(wb_certs_make_ca("Stranger CA", &ten_years, &ca, err, sizeof(err)), 0,
		             "%s", err);
	else
		cr_assert_eq(wb_certs_load_ca(path(0, "ca.crt"), path(1, "ca.key"), &ca, err,
		                              sizeof(err)),
		             0, "%s", err);

	atomic_store(&load_stop, false);
	atomic_store(&load_acked, 0);
	struct loader *ls = calloc(LOAD_THREADS, sizeof(*ls));
	cr_assert_not_null(ls);
	for (int i = 0; i < LOAD_THREADS; i++) {
		struct loader *l = &ls[i];
		l->reconnect = i % 2 == 1;
		snprintf(l->stream, sizeof(l->stream), "load-%d", i);
		snprintf(l->ca_file, sizeof(l->ca_file), "%s", path(0, "ca.crt"));
		snprintf(l->address, sizeof(l->address), "%s", e2e_srv.address);
		cr_assert_eq(pthread_create(&l->thread, NULL, load_cb, l), 0);
	}

	/* The load runs before the first reload and goes on through them. */
	wait_acked(2 * LOAD_THREADS);
	uint64_t acked_before = atomic_load(&load_acked);
	const char *ips[] = {"127.0.0.1"};
	const char *dns[] = {"localhost"};
	struct wb_certs_names names = {.dns = dns, .n_dns = 1, .ips = ips, .n_ips = 1};
	time_t last_not_after = 0;
	uint32_t last_days = 0;
	for (int i = 1; i <= LOAD_RELOADS; i++) {
		/* A validity of its own for each: the served one shows which. */
		last_days = 100u + (uint32_t)i;
		struct wb_certs_validity v = wb_certs_days(last_days);
		struct wb_certs_pair *node;
		cr_assert_eq(wb_certs_make_node(ca, &names, &v, &node, err, sizeof(err)), 0, "%s",
		             err);
		cr_assert_eq(wb_certs_save(node, path(2, "node.crt"), path(3, "node.key"), true,
		                           err, sizeof(err)),
		             0, "%s", err);
		last_not_after = wb_certs_not_after(node);
		wb_certs_free(node);
		cr_assert_eq(kill(e2e_srv.pid, SIGHUP), 0);
		/* The next files are written once this reload has read these. */
		int64_t deadline = e2e_now_ms() + 10000;
		while (e2e_log_count(&e2e_srv, "event=tls_loaded") < (size_t)i + 1 &&
		       e2e_now_ms() < deadline)
			e2e_sleep_ms(2);
		cr_assert_eq(e2e_log_count(&e2e_srv, "event=tls_loaded"), (size_t)i + 1,
		             "reload %d is not in the log", i);
		e2e_sleep_ms(30);
	}
	uint64_t acked_during = atomic_load(&load_acked) - acked_before;
	/* And after the last one, before the load stops. */
	wait_acked(atomic_load(&load_acked) + 2 * LOAD_THREADS);
	atomic_store(&load_stop, true);
	uint64_t acked = 0, failed = 0;
	for (int i = 0; i < LOAD_THREADS; i++) {
		cr_assert_eq(pthread_join(ls[i].thread, NULL), 0);
		acked += ls[i].acked;
		failed += ls[i].failed;
	}
	for (int i = 0; i < LOAD_THREADS; i++)
		cr_expect_eq(ls[i].failed, 0u,
		             "thread %d (%s): %llu of its requests failed, first %s", i,
		             ls[i].reconnect ? "reconnecting" : "one connection",
		             (unsigned long long)ls[i].failed, ls[i].first_error);
	cr_assert_eq(failed, 0u, "%llu requests failed across the reloads",
	             (unsigned long long)failed);
	cr_assert_gt(acked_during, 0u, "no request was answered while the certificate changed");
	for (int i = 0; i < LOAD_THREADS; i++) {
		if (ls[i].reconnect)
			cr_assert_eq(ls[i].connects, ls[i].acked, "thread %d", i);
		else
			cr_assert_eq(ls[i].connects, 1u, "thread %d reconnected", i);
	}
	cr_assert_eq(e2e_log_count(&e2e_srv, "event=reload_failed"), 0u);
	char needle[64];
	snprintf(needle, sizeof(needle), "not_after=%lld", (long long)last_not_after);
	cr_assert_eq(e2e_log_count(&e2e_srv, needle), 1u, "the last certificate's load (%s)",
	             needle);

	/* A new connection verifies the last certificate against the CA, and
	 * every acknowledged append is there to read. */
	struct wb_options o = {.client_name = "tls-reload-check",
	                       .timeout_ms = E2E_CLIENT_TIMEOUT_MS,
	                       .tls = true,
	                       .tls_ca_file = path(0, "ca.crt"),
	                       .tls_server_name = "127.0.0.1"};
	struct wb_client *c;
	cr_assert_eq(wb_connect(&c, e2e_srv.address, &o, err, sizeof(err)), 0, "%s", err);
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(c, &st), 0, "%s", wb_errmsg(c));
	cr_assert(st->tls);
	cr_assert(st->tls_cert_days_left >= (int64_t)last_days - 2 &&
	                  st->tls_cert_days_left <= (int64_t)last_days,
	          "days left %lld, the last certificate's %u", (long long)st->tls_cert_days_left,
	          last_days);
	wb_stats_free(st);
	uint64_t stored = 0;
	for (int i = 0; i < LOAD_THREADS; i++) {
		struct e2e_event *evs;
		size_t n;
		cr_assert_eq(e2e_read_stream(c, ls[i].stream, 0, &evs, &n), 0, "%s", wb_errmsg(c));
		cr_assert_eq(n, ls[i].acked, "%s: %zu events, %llu acknowledged", ls[i].stream, n,
		             (unsigned long long)ls[i].acked);
		stored += n;
		e2e_events_free(evs, n);
	}
	cr_assert_eq(stored, acked);
	wb_close(c);
	wb_certs_free(ca);
	free(ls);
	e2e_suite_stop();
}
