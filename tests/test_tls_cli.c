/* TLS through the `whizbang` CLI (libwhizbang's transport) against a real
 * whizbangd --tls=required, with certificates made by `whizbang certs` into
 * a temporary directory: a CA, a node certificate for 127.0.0.1 and
 * localhost, client certificates for alice and mallory, and a second CA
 * that signed nothing the server holds. Each refusal sits next to its
 * control, the same step done right: plaintext is refused where TLS works,
 * a wrong CA and a wrong name fail verification where the right ones pass,
 * EXTERNAL names the certificate's user where a certificate without it
 * names nobody, and SCRAM over TLS logs in where a wrong password does not.
 * Two tests use libwhizbang directly: TLS options that cannot work are
 * refused before connecting, and a server that never answers the handshake
 * times the connect out, having received a TLS record and nothing in
 * plaintext. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_util.h"
#include "e2e_util.h"

static char certdir[] = "/tmp/wb-tls-cli-XXXXXX";

static void clear_env(void)
{
	static const char *const vars[] = {"WHIZBANG_SERVER",   "WHIZBANG_SOCKET",
	                                   "WHIZBANG_PASSWORD", "WHIZBANG_NEW_PASSWORD",
	                                   "WHIZBANG_TOKEN",    NULL};
	for (size_t i = 0; vars[i] != NULL; i++)
		unsetenv(vars[i]);
}

static void fini(void)
{
	e2e_suite_fini();
	if (strcmp(certdir + strlen(certdir) - 6, "XXXXXX") != 0)
		e2e_remove_tree(certdir);
}

TestSuite(tls_cli, .init = clear_env, .fini = fini, .timeout = 300);

#define PW_BOB "Marigold-Sextant-4417"

/* certdir/name, in one of a few slots that stay valid through a test. */
static const char *file(int slot, const char *name)
{
	static char buf[12][300];
	snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", certdir, name);
	return buf[slot];
}

/* Runs the CLI with args into r and fails the test unless it exits with
 * status. */
#define RUN(r, status, what, ...)                                                                  \
	do {                                                                                       \
		cli_run((r), (const char *const[]){__VA_ARGS__, NULL});                            \
		cli_expect_status((r), (status), (what));                                          \
	} while (0)

/* The certificates, made by the CLI itself as OPERATIONS.md shows. */
static void make_certs(void)
{
	cr_assert_not_null(mkdtemp(certdir));
	struct cli_run r = {0};
	RUN(&r, 0, "certs create-ca", "certs", "create-ca", "--out-dir", certdir);
	RUN(&r, 0, "certs create-node", "certs", "create-node", "--ca-dir", certdir, "--out-dir",
	    certdir, "--ip", "127.0.0.1", "--dns", "localhost");
	RUN(&r, 0, "certs create-client alice", "certs", "create-client", "--ca-dir", certdir,
	    "--out-dir", certdir, "--user", "alice");
	RUN(&r, 0, "certs create-client mallory", "certs", "create-client", "--ca-dir", certdir,
	    "--out-dir", certdir, "--user", "mallory");
	const char *other = file(0, "other");
	cr_assert_eq(mkdir(other, 0700), 0);
	RUN(&r, 0, "certs create-ca (another CA)", "certs", "create-ca", "--out-dir", other,
	    "--name", "Another CA");
	cli_run_free(&r);
}

/* whizbangd --tls=required with the node certificate, asking clients for
 * theirs as client_cert says, and SCRAM made cheap. */
static void start(const char *client_cert)
{
	make_certs();
	static char a[4][400];
	snprintf(a[0], sizeof(a[0]), "--tls-cert-file=%s", file(1, "node.crt"));
	snprintf(a[1], sizeof(a[1]), "--tls-key-file=%s", file(1, "node.key"));
	snprintf(a[2], sizeof(a[2]), "--tls-ca-file=%s", file(1, "ca.crt"));
	snprintf(a[3], sizeof(a[3]), "--tls-client-cert=%s", client_cert);
	const char *args[] = {
	        "--tls=required",          a[0], a[1], a[2], a[3], "--metrics-listen=off",
	        "--scram-iterations=4096", NULL};
	e2e_suite_start(args);
}

/* whizbang://[USER@]HOST:PORT?PARAMS of the suite's server, where host is
 * "127.0.0.1" or another name of it. */
static const char *url(int slot, const char *user, const char *host, const char *params)
{
	static char buf[6][1600];
	const char *port = strchr(e2e_srv.address, ':') + 1;
	snprintf(buf[slot], sizeof(buf[slot]), "whizbang://%s%s%s:%s%s%s", user != NULL ? user : "",
	         user != NULL ? "@" : "", host, port, params[0] != '\0' ? "?" : "", params);
	return buf[slot];
}

/* The CA parameter of the suite's CA. */
static const char *ca_param(void)
{
	static char buf[400];
	snprintf(buf, sizeof(buf), "tlsCaFile=%s", file(2, "ca.crt"));
	return buf;
}

/* whizbang+unix:// of the suite's server: its administrator. */
static const char *admin_url(void)
{
	static char buf[300];
	snprintf(buf, sizeof(buf), "whizbang+unix://%s/whizbangd.sock", e2e_srv.data_dir);
	return buf;
}

Test(tls_cli, the_url_runs_commands_over_tls_and_plaintext_is_refused)
{
	start("none");
	struct cli_run r = {0};
	const char *u = url(0, NULL, "127.0.0.1", ca_param());
	RUN(&r, 0, "whoami over TLS", "--server", u, "whoami");
	CLI_HAS(r.out, "whoami over TLS", "server: 127.0.0.1:", "tls: TLSv1.3 TLS_");
	RUN(&r, 0, "append over TLS", "--server", u, "append", "orders-1", "--type", "Placed",
	    "--data", "{\"total\": 120}");
	cli_expect_has(r.out, "appended orders-1 version=0", "append over TLS");
	RUN(&r, 0, "read over TLS", "--server", u, "read", "orders-1");
	CLI_HAS(r.out, "read over TLS", "orders-1@0", "Placed", "{\"total\": 120}");
	RUN(&r, 0, "whoami --json over TLS", "--server", u, "--json", "whoami");
	CLI_HAS(r.out, "whoami --json", "\"tls\":{\"version\":\"TLSv1.3\"");

	/* The flags named after the parameters do the same with HOST:PORT. */
	RUN(&r, 0, "read with --tls-ca-file", "--server", e2e_srv.address, "--tls-ca-file",
	    file(2, "ca.crt"), "read", "orders-1");
	cli_expect_has(r.out, "orders-1@0", "read with --tls-ca-file");

	/* The control: the same commands without TLS are refused by the
	 * server, which says why. */
	size_t refused = e2e_log_count(&e2e_srv, "reason=plaintext_not_allowed");
	RUN(&r, 1, "whoami in plaintext", "--server", e2e_srv.address, "whoami");
	cli_expect_has(r.err, "UNAUTHENTICATED", "whoami in plaintext");
	cli_expect_has(r.err, "connect with TLS", "whoami in plaintext");
	cli_expect_not(r.out, "user:", "whoami in plaintext");
	RUN(&r, 1, "read in plaintext", "--server", url(1, NULL, "127.0.0.1", ""), "read",
	    "orders-1");
	cli_expect_has(r.err, "connect with TLS", "read in plaintext");
	cli_expect_not(r.out, "orders-1@0", "read in plaintext");
	cr_assert_eq(e2e_log_count(&e2e_srv, "reason=plaintext_not_allowed"), refused + 2);

	/* reload, by the administrator (who else may is the access matrix's). */
	RUN(&r, 0, "reload as admin", "--server", admin_url(), "reload");
	cli_expect_has(r.out, "reloaded: the TLS certificate served now expires at", "reload");
	RUN(&r, 0, "reload --json", "--server", admin_url(), "--json", "reload");
	cli_expect_has(r.out, "{\"tls\":true,\"tls_not_after\":", "reload --json");
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=reload_requested"), 2u);
	cli_suite_stop(&r);
}

Test(tls_cli, a_wrong_ca_fails_verification_and_never_falls_back_to_plaintext)
{
	start("none");
	struct cli_run r = {0};
	char other[400];
	snprintf(other, sizeof(other), "tlsCaFile=%s/other/ca.crt", certdir);
	size_t refused = e2e_log_count(&e2e_srv, "reason=plaintext_not_allowed");
	RUN(&r, 1, "a CA that did not sign the server's certificate", "--server",
	    url(0, NULL, "127.0.0.1", other), "append", "orders-1", "--type", "Placed", "--data",
	    "x");
	CLI_HAS(r.err, "the wrong CA", "UNAUTHENTICATED", "certificate verify failed", "no CA in",
	        "/other/ca.crt");
	/* The server saw a TLS client that gave up (unknown CA), and no
	 * plaintext attempt after it. */
	cr_assert_eq(e2e_log_count(&e2e_srv, "reason=plaintext_not_allowed"), refused);
	int64_t deadline = e2e_now_ms() + 5000;
	while (e2e_log_count(&e2e_srv, "alert unknown ca") == 0 && e2e_now_ms() < deadline)
		e2e_sleep_ms(20);
	cr_assert_gt(e2e_log_count(&e2e_srv, "alert unknown ca"), 0u, "the server logged no alert");
	/* Nothing was appended. */
	RUN(&r, 1, "read after the refused append", "--server", admin_url(), "read", "orders-1");
	cli_expect_has(r.err, "NOT_FOUND", "read after the refused append");
	/* The control: the right CA. */
	RUN(&r, 0, "the right CA", "--server", url(1, NULL, "127.0.0.1", ca_param()), "append",
	    "orders-1", "--type", "Placed", "--data", "x");
	cli_suite_stop(&r);
}

Test(tls_cli, a_wrong_server_name_fails_and_the_right_one_works)
{
	start("none");
	struct cli_run r = {0};
	char params[600];
	snprintf(params, sizeof(params), "%s&tlsServerName=db9.example.com", ca_param());
	RUN(&r, 1, "a name the certificate does not carry", "--server",
	    url(0, NULL, "127.0.0.1", params), "whoami");
	CLI_HAS(r.err, "the wrong name", "UNAUTHENTICATED", "hostname mismatch",
	        "does not carry the name db9.example.com");
	/* The same through the flag. */
	RUN(&r, 1, "--tls-server-name", "--server", e2e_srv.address, "--tls-ca-file",
	    file(2, "ca.crt"), "--tls-server-name", "db9.example.com", "whoami");
	cli_expect_has(r.err, "hostname mismatch", "--tls-server-name");
	/* A flag that contradicts the URL is refused before connecting. */
	RUN(&r, 1, "a flag against the URL", "--server", url(1, NULL, "127.0.0.1", params),
	    "--tls-server-name", "localhost", "whoami");
	cli_expect_has(r.err, "--tls-server-name and the server's URL's tlsServerName differ",
	               "a flag against the URL");
	/* The controls: a name it carries, given, or the host connected to. */
	snprintf(params, sizeof(params), "%s&tlsServerName=localhost", ca_param());
	RUN(&r, 0, "tlsServerName=localhost", "--server", url(2, NULL, "127.0.0.1", params),
	    "whoami");
	cli_expect_has(r.out, "tls: TLSv1.3", "tlsServerName=localhost");
	RUN(&r, 0, "connected to localhost", "--server", url(3, NULL, "localhost", ca_param()),
	    "whoami");
	RUN(&r, 0, "--tls-server-name 127.0.0.1", "--server", e2e_srv.address, "--tls-ca-file",
	    file(2, "ca.crt"), "--tls-server-name", "127.0.0.1", "whoami");
	cli_suite_stop(&r);
}

Test(tls_cli, a_client_certificate_logs_in_its_user_with_external)
{
	start("optional");
	struct cli_run r = {0};
	/* The administrator makes alice on the socket, with no password. */
	RUN(&r, 0, "user add alice", "--server", admin_url(), "user", "add", "alice", "--role",
	    "writer", "--no-password");
	cli_expect_has(r.out, "added alice  roles=writer  password=no", "user add alice");
	char params[1200];
	snprintf(params, sizeof(params), "%s&tlsCertFile=%s&tlsKeyFile=%s&authMechanism=EXTERNAL",
	         ca_param(), file(3, "client-alice.crt"), file(4, "client-alice.key"));
	RUN(&r, 0, "EXTERNAL as alice", "--server", url(0, NULL, "127.0.0.1", params), "whoami");
	CLI_HAS(r.out, "EXTERNAL as alice", "user: alice\n", "roles: writer\n", "tls: TLSv1.3");
	RUN(&r, 0, "append as alice", "--server", url(0, NULL, "127.0.0.1", params), "append",
	    "orders-7", "--type", "Placed", "--data", "by alice");
	/* The same through the flags. */
	RUN(&r, 0, "EXTERNAL through the flags", "--server", e2e_srv.address, "--tls-ca-file",
	    file(2, "ca.crt"), "--tls-cert-file", file(3, "client-alice.crt"), "--tls-key-file",
	    file(4, "client-alice.key"), "--auth-mechanism", "EXTERNAL", "--json", "whoami");
	cli_expect_has(r.out, "\"user\":\"alice\"", "EXTERNAL through the flags");

	/* The controls: the certificate without EXTERNAL logs nobody in (the
	 * anonymous role, admin here, and no user), and a certificate of a
	 * user the server does not know is refused. */
	snprintf(params, sizeof(params), "%s&tlsCertFile=%s&tlsKeyFile=%s", ca_param(),
	         file(3, "client-alice.crt"), file(4, "client-alice.key"));
	RUN(&r, 0, "the certificate alone", "--server", url(1, NULL, "127.0.0.1", params),
	    "whoami");
	cli_expect_has(r.out, "user: (none: not authenticated)", "the certificate alone");
	snprintf(params, sizeof(params), "%s&tlsCertFile=%s&tlsKeyFile=%s&authMechanism=EXTERNAL",
	         ca_param(), file(3, "client-mallory.crt"), file(4, "client-mallory.key"));
	RUN(&r, 1, "EXTERNAL as an unknown user", "--server", url(2, NULL, "127.0.0.1", params),
	    "whoami");
	cli_expect_has(r.err, "UNAUTHENTICATED: authentication failed",
	               "EXTERNAL as an unknown user");
	/* EXTERNAL without a certificate is refused before anything is sent. */
	RUN(&r, 1, "EXTERNAL without a certificate", "--server",
	    url(3, NULL, "127.0.0.1", ca_param()), "--auth-mechanism", "EXTERNAL", "whoami");
	cli_expect_has(r.err, "EXTERNAL needs TLS with a client certificate",
	               "EXTERNAL without a certificate");
	/* Alice's events are there, written as alice. */
	RUN(&r, 0, "read as the administrator", "--server", admin_url(), "read", "orders-7");
	cli_expect_has(r.out, "by alice", "read as the administrator");
	cli_suite_stop(&r);
}

Test(tls_cli, a_required_client_certificate_that_is_missing_is_refused)
{
	start("required");
	struct cli_run r = {0};
	RUN(&r, 1, "no client certificate", "--server", url(0, NULL, "127.0.0.1", ca_param()),
	    "whoami");
	/* TLS 1.3: the refusal comes after the client's side of the
	 * handshake, as the first read fails. */
	CLI_HAS(r.err, "no client certificate", "E_IO", "certificate required");
	char params[1200];
	snprintf(params, sizeof(params), "%s&tlsCertFile=%s&tlsKeyFile=%s", ca_param(),
	         file(3, "client-alice.crt"), file(4, "client-alice.key"));
	RUN(&r, 0, "the control: with one", "--server", url(1, NULL, "127.0.0.1", params),
	    "whoami");
	cli_suite_stop(&r);
}

Test(tls_cli, scram_over_tls)
{
	start("none");
	struct cli_run r = {0};
	setenv("WHIZBANG_NEW_PASSWORD", PW_BOB, 1);
	RUN(&r, 0, "user add bob", "--server", admin_url(), "user", "add", "bob", "--role",
	    "reader", "--iterations", "4096");
	unsetenv("WHIZBANG_NEW_PASSWORD");
	setenv("WHIZBANG_PASSWORD", PW_BOB, 1);
	RUN(&r, 0, "bob over TLS", "--server", url(0, "bob", "127.0.0.1", ca_param()), "whoami");
	CLI_HAS(r.out, "bob over TLS", "user: bob\n", "roles: reader\n", "tls: TLSv1.3");
	RUN(&r, 0, "bob through --user", "--server", e2e_srv.address, "--tls-ca-file",
	    file(2, "ca.crt"), "--user", "bob", "--auth-mechanism", "SCRAM-SHA-256", "whoami");
	cli_expect_has(r.out, "user: bob\n", "bob through --user");
	/* The control: a wrong password over the same TLS. */
	setenv("WHIZBANG_PASSWORD", "Not-Bobs-Password-1", 1);
	RUN(&r, 1, "a wrong password over TLS", "--server", url(1, "bob", "127.0.0.1", ca_param()),
	    "whoami");
	cli_expect_has(r.err, "UNAUTHENTICATED: authentication failed", "a wrong password");
	unsetenv("WHIZBANG_PASSWORD");
	/* Neither the password nor anything of it is in the server's log. */
	cr_assert_eq(e2e_log_count(&e2e_srv, PW_BOB), 0u);
	cli_suite_stop(&r);
}

/* ---------------------------------------------------------------- the library alone */

Test(tls_cli, tls_options_that_cannot_work_are_refused_before_connecting)
{
	make_certs();
	/* A port with a listener that is never accepted from: a refusal that
	 * came after connecting would have had to connect. */
	int port;
	int fd = e2e_loopback_socket(true, &port);
	char address[64];
	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	struct {
		struct wb_options o;
		const char *address;
		int code;
		const char *words;
	} cases[] = {
	        {{.tls = true}, address, WB_E_INVAL, "needs the CA file"},
	        {{.tls_ca_file = file(2, "ca.crt")}, address, WB_E_INVAL, "set tls too"},
	        {{.tls = true, .tls_ca_file = file(2, "ca.crt")},
	         "unix:/tmp/none.sock",
	         WB_E_INVAL,
	         "does not apply to a Unix socket"},
	        {{.tls = true, .tls_ca_file = file(5, "nothing.crt")},
	         address,
	         WB_E_INVAL,
	         "cannot load the CA file"},
	        {{.tls = true,
	          .tls_ca_file = file(2, "ca.crt"),
	          .tls_cert_file = file(3, "client-alice.crt")},
	         address,
	         WB_E_INVAL,
	         "needs its key"},
	        {{.tls = true, .tls_ca_file = file(2, "ca.crt"), .external = true},
	         address,
	         WB_E_INVAL,
	         "EXTERNAL needs TLS with a client certificate"},
	        {{.tls = true,
	          .tls_ca_file = file(2, "ca.crt"),
	          .tls_cert_file = file(3, "client-alice.crt"),
	          .tls_key_file = file(4, "client-mallory.key")},
	         address,
	         WB_E_INVAL,
	         "does not match"},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct wb_client *c = NULL;
		char msg[512] = "";
		cases[k].o.timeout_ms = 2000;
		int rc = wb_connect(&c, cases[k].address, &cases[k].o, msg, sizeof(msg));
		cr_expect_eq(rc, cases[k].code, "case %zu: %s (%s)", k, wb_error_name(rc), msg);
		cr_expect_not_null(strstr(msg, cases[k].words), "case %zu: \"%s\"", k, msg);
		cr_expect_null(c);
	}
	/* Nothing reached the listener: its queue is empty. */
	int flags = fcntl(fd, F_GETFL);
	cr_assert_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
	cr_assert_lt(accept(fd, NULL, NULL), 0, "a case connected");
	cr_assert(errno == EAGAIN || errno == EWOULDBLOCK);
	/* The control: the same listener sees a connect that gets that far. */
	struct wb_options ok = {.tls = true, .tls_ca_file = file(2, "ca.crt"), .timeout_ms = 300};
	struct wb_client *c = NULL;
	char msg[512];
	cr_assert_eq(wb_connect(&c, address, &ok, msg, sizeof(msg)), WB_E_TIMEOUT, "%s", msg);
	int peer = accept(fd, NULL, NULL);
	cr_assert_geq(peer, 0, "the control did not connect");
	close(peer);
	close(fd);
}

Test(tls_cli, a_handshake_that_never_finishes_times_out_having_sent_only_tls)
{
	make_certs();
	int port;
	int fd = e2e_loopback_socket(true, &port);
	char address[64];
	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	struct wb_options o = {.tls = true, .tls_ca_file = file(2, "ca.crt"), .timeout_ms = 700};
	struct wb_client *c = NULL;
	char msg[512] = "";
	int64_t t0 = e2e_now_ms();
	int rc = wb_connect(&c, address, &o, msg, sizeof(msg));
	int64_t took = e2e_now_ms() - t0;
	cr_assert_eq(rc, WB_E_TIMEOUT, "%s: %s", wb_error_name(rc), msg);
	cr_assert_not_null(strstr(msg, "the TLS handshake did not finish within 700 ms"), "%s",
	                   msg);
	cr_assert(took >= 650 && took < 5000, "took %lld ms", (long long)took);
	/* What the client sent: a TLS handshake record, and that is all. */
	int peer = accept(fd, NULL, NULL);
	cr_assert_geq(peer, 0);
	uint8_t buf[4096];
	size_t n = 0;
	for (;;) {
		struct pollfd p = {.fd = peer, .events = POLLIN};
		if (poll(&p, 1, 1000) <= 0)
			break;
		ssize_t got = recv(peer, buf + n, sizeof(buf) - n, 0);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	cr_assert_geq(n, 5u);
	cr_assert_eq(buf[0], 0x16, "the first byte is 0x%02x, not a handshake record", buf[0]);
	cr_assert_eq(buf[1], 0x03);
	size_t record = 5u + ((size_t)buf[3] << 8 | buf[4]);
	cr_assert_eq(n, record, "%zu bytes after the ClientHello's record of %zu", n - record,
	             record);
	close(peer);
	/* No second connection tried plaintext. */
	int flags = fcntl(fd, F_GETFL);
	cr_assert_eq(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
	cr_assert_lt(accept(fd, NULL, NULL), 0, "the client connected again");
	close(fd);
}
