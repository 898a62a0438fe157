/* Metrics over HTTPS with bearer tokens, and the Reload request, against a
 * real whizbangd with --tls=required (so the metrics listener on loopback
 * serves HTTPS too; a non-loopback address would, under auto, and tests
 * listen on loopback only). The HTTPS client is OpenSSL over a blocking
 * socket, verifying the server against the test's CA; its control is a
 * client with a stranger CA, which must fail. Checked: the health paths open,
 * /metrics 401 without a token, with a malformed one, with a token whose
 * role lacks admin:stats, and after the good token is revoked; 200 with it;
 * plain HTTP gets no HTTP answer; Reload (and a failed one) changes the
 * certificate of both listeners, or neither. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"
#include "tls/wb_certs.h"
#include "wb.h"
#include "wb_error.h"

#define TIMEOUT_MS 15000

static char certdir[] = "/tmp/wb-metrics-tls-XXXXXX";

static void fini(void)
{
	e2e_suite_fini();
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", certdir);
	(void)!system(cmd);
}

TestSuite(metrics_tls, .fini = fini, .timeout = 120);

static char paths[6][300];
static const char *path(int slot, const char *name)
{
	snprintf(paths[slot], sizeof(paths[slot]), "%s/%s", certdir, name);
	return paths[slot];
}

/* A CA named ca_name in ca.crt/ca.key when make_ca, and a node certificate
 * for 127.0.0.1 valid node_days, signed by the CA in memory, written over
 * node.crt/node.key. */
static struct wb_certs_pair *ca;
static void make_ca(const char *name)
{
	char err[300];
	if (strcmp(certdir + strlen(certdir) - 6, "XXXXXX") == 0)
		cr_assert_not_null(mkdtemp(certdir));
	struct wb_certs_validity v = wb_certs_days(3650);
	wb_certs_free(ca);
	cr_assert_eq(wb_certs_make_ca(name, &v, &ca, err, sizeof(err)), 0, "%s", err);
}

static void make_node(int days, const char *crt, const char *key)
{
	char err[300];
	const char *ips[] = {"127.0.0.1"};
	struct wb_certs_names names = {.ips = ips, .n_ips = 1};
	struct wb_certs_validity v = wb_certs_days((uint32_t)days);
	struct wb_certs_pair *node;
	cr_assert_eq(wb_certs_make_node(ca, &names, &v, &node, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wb_certs_save(node, crt, key, true, err, sizeof(err)), 0, "%s", err);
	wb_certs_free(node);
}

/* ---------------------------------------------------------------- HTTPS */

struct https {
	int status;     /* -1: no HTTP answer (handshake failed, refused, closed) */
	long cert_days; /* the served certificate's days left */
	char head[1024];
	char *body; /* free() it */
};

static int port_connect(int port)
{
	int fd = e2e_loopback_connect(port, 5);
	cr_assert(fd >= 0, "connect: %s", strerror(errno));
	return fd;
}

/* GET path over HTTPS, verifying the server against cafile and 127.0.0.1,
 * with "Authorization: Bearer bearer" when bearer is not NULL. */
static struct https https_get(int port, const char *cafile, const char *path_, const char *bearer)
{
	struct https h = {.status = -1};
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	cr_assert_not_null(ctx);
	cr_assert_eq(SSL_CTX_load_verify_locations(ctx, cafile, NULL), 1);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), "127.0.0.1");
	SSL *ssl = SSL_new(ctx);
	int fd = port_connect(port);
	SSL_set_fd(ssl, fd);
	char req[1024];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n%s%s%s\r\n",
	                 path_, bearer != NULL ? "Authorization: Bearer " : "",
	                 bearer ? bearer : "", bearer != NULL ? "\r\n" : "");
	size_t cap = 1u << 20, len = 0;
	char *buf = calloc(1, cap + 1);
	cr_assert_not_null(buf);
	if (SSL_connect(ssl) == 1 && SSL_write(ssl, req, n) == n) {
		const ASN1_TIME *na = X509_get0_notAfter(SSL_get0_peer_certificate(ssl));
		int days = 0, secs = 0;
		ASN1_TIME_diff(&days, &secs, NULL, na);
		h.cert_days = days;
		int r;
		while (len < cap && (r = SSL_read(ssl, buf + len, (int)(cap - len))) > 0)
			len += (size_t)r;
	}
	ERR_clear_error();
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	char *end = strstr(buf, "\r\n\r\n");
	if (end != NULL && sscanf(buf, "HTTP/1.%*d %d", &h.status) == 1) {
		snprintf(h.head, sizeof(h.head), "%.*s", (int)(end - buf), buf);
		memmove(buf, end + 4, len - (size_t)(end + 4 - buf) + 1);
	} else {
		h.status = -1;
	}
	h.body = buf;
	return h;
}

static int https_status(int port, const char *cafile, const char *path_, const char *bearer)
{
	struct https h = https_get(port, cafile, path_, bearer);
	free(h.body);
	return h.status;
}

/* Polls until path answers want (the token lists reach the HTTP thread
 * with the next snapshot, every 500 ms). */
static void await_status(int port, const char *path_, const char *bearer, int want)
{
	int64_t deadline = e2e_now_ms() + TIMEOUT_MS;
	int got;
	while ((got = https_status(port, path(0, "ca.crt"), path_, bearer)) != want) {
		cr_assert(e2e_now_ms() < deadline, "%s answered %d, not %d", path_, got, want);
		e2e_sleep_ms(50);
	}
}

/* The server, TLS required; an admin client over its Unix socket. */
static struct wb_client *start(int node_days)
{
	make_ca("metrics test CA");
	make_node(node_days, path(2, "node.crt"), path(3, "node.key"));
	char err[300];
	cr_assert_eq(
	        wb_certs_save(ca, path(0, "ca.crt"), path(1, "ca.key"), true, err, sizeof(err)), 0,
	        "%s", err);
	const char *args[] = {"--tls",
	                      "required",
	                      "--tls-cert-file",
	                      path(2, "node.crt"),
	                      "--tls-key-file",
	                      path(3, "node.key"),
	                      "--metrics-listen",
	                      "127.0.0.1:0",
	                      NULL};
	e2e_suite_start(args);
	char address[200];
	snprintf(address, sizeof(address), "unix:%s/whizbangd.sock", e2e_srv.data_dir);
	struct wb_options opts = {.client_name = "metrics-tls", .timeout_ms = TIMEOUT_MS};
	struct wb_client *c = NULL;
	cr_assert_eq(wb_connect(&c, address, &opts, err, sizeof(err)), 0, "%s", err);
	return c;
}

static char *token(struct wb_client *c, const char *role, char id[64])
{
	Whizbang__V1__CreateTokenResult *r;
	cr_assert_eq(wb_create_token(c, role, 0, "metrics test", &r), 0, "%s", wb_errmsg(c));
	char *t = strdup(r->token);
	snprintf(id, 64, "%s", r->id);
	wb_token_result_free(r);
	return t;
}

Test(metrics_tls, metrics_need_a_live_token_whose_role_may_read_stats)
{
	struct wb_client *c = start(30);
	int port = e2e_metrics_port(&e2e_srv);
	char ops_id[64], reader_id[64];
	char *ops = token(c, "ops", ops_id);
	char *reader = token(c, "reader", reader_id);
	const char *ca_file = path(0, "ca.crt");

	/* Health needs no token. */
	await_status(port, "/health/ready", NULL, 200);
	cr_assert_eq(https_status(port, ca_file, "/health/live", NULL), 200);
	/* The token that may read stats is served once a snapshot has it. */
	await_status(port, "/metrics", ops, 200);
	struct https h = https_get(port, ca_file, "/metrics", ops);
	cr_assert_eq(h.status, 200);
	cr_assert_not_null(strstr(h.body, "\nwhizbang_uptime_ms "), "%.300s", h.body);
	free(h.body);

	/* No token, a malformed one, a stranger's, a role without admin:stats:
	 * the same 401, with the scheme named. */
	const char *bad[] = {NULL, "", "not-a-token",
	                     "wbt_AAAAAAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	                     reader};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = https_get(port, ca_file, "/metrics", bad[i]);
		cr_assert_eq(h.status, 401, "bearer %zu answered %d", i, h.status);
		cr_assert_not_null(strstr(h.head, "WWW-Authenticate: Bearer"), "%s", h.head);
		cr_assert_null(strstr(h.body, "whizbang_"), "%s", h.body);
		free(h.body);
	}
	/* Counted, and shown to who may see it. */
	int64_t deadline = e2e_now_ms() + TIMEOUT_MS;
	for (;;) {
		h = https_get(port, ca_file, "/metrics", ops);
		static const char key[] = "\nwhizbang_metrics_unauthorized_total ";
		const char *s = strstr(h.body, key);
		double v = s != NULL ? atof(s + sizeof(key) - 1) : 0;
		free(h.body);
		if (v >= 5)
			break;
		cr_assert(e2e_now_ms() < deadline, "metrics_unauthorized_total stayed at %g", v);
		e2e_sleep_ms(100);
	}

	/* Plain HTTP to the HTTPS port gets no HTTP answer. */
	int fd = port_connect(port);
	const char plain[] = "GET /health/live HTTP/1.0\r\n\r\n";
	cr_assert_eq(e2e_send_all(fd, plain, sizeof(plain) - 1, 5000), 0);
	char buf[256] = "";
	ssize_t got = read(fd, buf, sizeof(buf) - 1);
	cr_assert(got <= 0 || strncmp(buf, "HTTP/", 5) != 0, "plain HTTP was answered: %s", buf);
	close(fd);

	/* The client's control: a client that trusts another CA fails. */
	struct wb_certs_pair *ours = ca;
	ca = NULL;
	make_ca("a stranger CA");
	char err[300];
	cr_assert_eq(wb_certs_save(ca, path(4, "stranger.crt"), path(5, "stranger.key"), true, err,
	                           sizeof(err)),
	             0, "%s", err);
	wb_certs_free(ca);
	ca = ours;
	cr_assert_eq(https_status(port, path(4, "stranger.crt"), "/health/live", NULL), -1);

	/* A revoked token stops working. */
	cr_assert_eq(wb_revoke_token(c, ops_id), 0, "%s", wb_errmsg(c));
	await_status(port, "/metrics", ops, 401);
	free(ops);
	free(reader);
	wb_close(c);
}

Test(metrics_tls, reload_changes_the_certificate_of_both_listeners_or_of_neither)
{
	struct wb_client *c = start(30);
	int port = e2e_metrics_port(&e2e_srv);
	const char *ca_file = path(0, "ca.crt");
	await_status(port, "/health/ready", NULL, 200);
	struct https h = https_get(port, ca_file, "/health/live", NULL);
	cr_assert(h.cert_days >= 29 && h.cert_days <= 30, "%ld days", h.cert_days);
	free(h.body);

	/* A new certificate in the files; Reload serves it on both. */
	make_node(400, path(2, "node.crt"), path(3, "node.key"));
	bool tls = false;
	int64_t not_after = 0;
	cr_assert_eq(wb_reload(c, &tls, &not_after), 0, "%s", wb_errmsg(c));
	cr_assert(tls);
	int64_t days = (not_after - (int64_t)time(NULL)) / 86400;
	cr_assert(days >= 399 && days <= 400, "%lld days", (long long)days);
	h = https_get(port, ca_file, "/health/live", NULL);
	cr_assert_eq(h.status, 200);
	cr_assert(h.cert_days >= 399 && h.cert_days <= 400, "metrics serve %ld days", h.cert_days);
	free(h.body);
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(c, &st), 0, "%s", wb_errmsg(c));
	cr_assert(st->tls_cert_days_left >= 399, "%lld", (long long)st->tls_cert_days_left);
	wb_stats_free(st);

	/* Files that do not load: INTERNAL with the reason; both keep theirs. */
	FILE *f = fopen(path(2, "node.crt"), "w");
	cr_assert_not_null(f);
	fputs("not a certificate\n", f);
	fclose(f);
	cr_assert_eq(wb_reload(c, &tls, &not_after), WB_INTERNAL);
	cr_assert_not_null(strstr(wb_errmsg(c), "did not load"), "%s", wb_errmsg(c));
	h = https_get(port, ca_file, "/health/live", NULL);
	cr_assert_eq(h.status, 200);
	cr_assert(h.cert_days >= 399, "metrics serve %ld days", h.cert_days);
	free(h.body);
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=reload_failed"), 1u);
	wb_close(c);
}
