/* whizbangd's TLS as outside tools see it: Debian's `openssl s_client`
 * against a real server, and `sslscan`. Each refusal sits next to its
 * control: TLS 1.0 and 1.1 are refused where the same client flags get TLS
 * 1.2 (and 1.3); no ALPN, or another protocol's, is refused where
 * whizbang/1 is selected; a required client certificate that is missing is
 * refused where alice's is taken; an expired server certificate fails a
 * verifying client (s_client and whizbang alike) where a valid one passes;
 * renegotiation is refused where the same s_client renegotiates with
 * `openssl s_server -client_renegotiation`.
 *
 * sslscan offers no ALPN, which whizbangd requires, so on its own it sees
 * every protocol "disabled": a scan that passes without having reached the
 * server. The test therefore gives it ALPN, in two ways that change nothing
 * else: an LD_PRELOAD module (tests/alpn_shim.c) adds it to every SSL
 * sslscan makes with OpenSSL, and a proxy adds the extension to the
 * ClientHellos sslscan writes by hand (it reads only the ServerHello of
 * those). The scan must then see TLS 1.2 and 1.3 enabled and ciphers
 * accepted before its findings count; the checker of its output is shown
 * to flag a canned scan of a weak server. sslscan's Debian build has no
 * zlib, so it cannot test compression: s_client's "Compression: NONE"
 * stands for that. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netinet/in.h>

#include "cli_util.h"
#include "e2e_util.h"
#include "tls/wb_certs.h"

static char certdir[] = "/tmp/wb-tls-probe-XXXXXX";

static void fini(void)
{
	e2e_suite_fini();
	if (strcmp(certdir + strlen(certdir) - 6, "XXXXXX") != 0)
		e2e_remove_tree(certdir);
}

TestSuite(tls_probe, .fini = fini, .timeout = 300);

/* How long one run of a tool may take. */
#define TOOL_TIMEOUT_MS 60000

static const char *file(int slot, const char *name)
{
	static char buf[12][300];
	snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", certdir, name);
	return buf[slot];
}

static void save(const struct wb_certs_pair *p, const char *name)
{
	char crt[64], key[64], err[300];
	snprintf(crt, sizeof(crt), "%s.crt", name);
	snprintf(key, sizeof(key), "%s.key", name);
	cr_assert_eq(wb_certs_save(p, file(10, crt), file(11, key), true, err, sizeof(err)), 0,
	             "%s", err);
}

/* A CA; node (127.0.0.1, localhost) and expired (the same names, ended
 * yesterday), the server's; alice, a client's. */
static void make_certs(void)
{
	cr_assert_not_null(mkdtemp(certdir));
	char err[300];
	struct wb_certs_pair *ca, *node, *expired, *alice;
	struct wb_certs_validity ten = wb_certs_days(3650), month = wb_certs_days(30);
	struct wb_certs_validity past = {.not_before_s = -3 * 86400, .not_after_s = -86400};
	cr_assert_eq(wb_certs_make_ca("Probe CA", &ten, &ca, err, sizeof(err)), 0, "%s", err);
	const char *dns[] = {"localhost"}, *ips[] = {"127.0.0.1"};
	struct wb_certs_names names = {.dns = dns, .n_dns = 1, .ips = ips, .n_ips = 1};
	cr_assert_eq(wb_certs_make_node(ca, &names, &month, &node, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(wb_certs_make_node(ca, &names, &past, &expired, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(wb_certs_make_client(ca, "alice", &month, &alice, err, sizeof(err)), 0, "%s",
	             err);
	save(ca, "ca");
	save(node, "node");
	save(expired, "expired");
	save(alice, "alice");
	wb_certs_free(ca);
	wb_certs_free(node);
	wb_certs_free(expired);
	wb_certs_free(alice);
}

/* The suite's server, --tls=required with the certificate cert ("node" or
 * "expired") and client certificates as client_cert says. */
static void start(const char *cert, const char *client_cert)
{
	static char a[4][400];
	snprintf(a[0], sizeof(a[0]), "--tls-cert-file=%s/%s.crt", certdir, cert);
	snprintf(a[1], sizeof(a[1]), "--tls-key-file=%s/%s.key", certdir, cert);
	snprintf(a[2], sizeof(a[2]), "--tls-ca-file=%s", file(0, "ca.crt"));
	snprintf(a[3], sizeof(a[3]), "--tls-client-cert=%s", client_cert);
	const char *args[] = {"--tls=required",       a[0], a[1], a[2], a[3],
	                      "--metrics-listen=off", NULL};
	e2e_suite_start(args);
}

/* ---------------------------------------------------------------- a tool as a child */

/* A child whose standard output and error go, merged, into out. */
struct proc {
	pid_t pid;
	int in;  /* its standard input; -1 once closed */
	int out; /* -1 once it closed */
	char *buf;
	size_t len;
	size_t cap;
};

extern char **environ;

/* Starts argv[0] (from $PATH) with argv; with preload, LD_PRELOAD=preload.
 * The environment is made before the fork: the child of a process with
 * threads may only exec. */
static void proc_start(struct proc *p, const char *const *argv, const char *preload)
{
	static char *env[512];
	static char ld[600];
	size_t ne = 0;
	for (char **e = environ; *e != NULL && ne < 510; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
			env[ne++] = *e;
	if (preload != NULL) {
		snprintf(ld, sizeof(ld), "LD_PRELOAD=%s", preload);
		env[ne++] = ld;
	}
	env[ne] = NULL;
	int in[2], out[2];
	cr_assert_eq(pipe(in), 0);
	cr_assert_eq(pipe(out), 0);
	memset(p, 0, sizeof(*p));
	p->pid = fork();
	cr_assert_geq(p->pid, 0);
	if (p->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		dup2(out[1], 2);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execvpe(argv[0], (char *const *)argv, env);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
	p->cap = 65536;
	p->buf = calloc(1, p->cap);
	cr_assert_not_null(p->buf);
}

/* Reads what the child wrote until its output from offset from on holds
 * needle (NULL: until it closes it) or timeout_ms pass; whether that
 * happened. */
static bool proc_read_until(struct proc *p, size_t from, const char *needle, int timeout_ms)
{
	int64_t deadline = e2e_now_ms() + timeout_ms;
	while (p->out >= 0 && (needle == NULL || strstr(p->buf + from, needle) == NULL)) {
		int64_t left = deadline - e2e_now_ms();
		struct pollfd pf = {.fd = p->out, .events = POLLIN};
		if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
			return false;
		if (p->len + 4096 + 1 > p->cap) {
			p->cap *= 2;
			p->buf = realloc(p->buf, p->cap);
			cr_assert_not_null(p->buf);
		}
		ssize_t n = read(p->out, p->buf + p->len, p->cap - p->len - 1);
		if (n <= 0) {
			close(p->out);
			p->out = -1;
			break;
		}
		p->len += (size_t)n;
		p->buf[p->len] = '\0';
	}
	return needle == NULL ? p->out < 0 : strstr(p->buf + from, needle) != NULL;
}

static void proc_write(struct proc *p, const char *text)
{
	cr_assert_eq(write(p->in, text, strlen(text)), (ssize_t)strlen(text));
}

/* Closes the child's input, reads its output to the end and reaps it: its
 * exit status, 128 + the signal that ended it. A child still running after
 * timeout_ms is killed and fails the test. */
static int proc_finish(struct proc *p, int timeout_ms)
{
	if (p->in >= 0)
		close(p->in);
	p->in = -1;
	bool ended = proc_read_until(p, 0, NULL, timeout_ms);
	if (!ended)
		kill(p->pid, SIGKILL);
	int st;
	cr_assert_eq(waitpid(p->pid, &st, 0), p->pid);
	cr_assert(ended, "%s still ran after %d ms; its output:\n%s", "the tool", timeout_ms,
	          p->buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void proc_free(struct proc *p)
{
	if (p->out >= 0)
		close(p->out);
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

/* ---------------------------------------------------------------- s_client */

/* `openssl s_client` against the suite's server with the given options,
 * its input closed at once (so it ends after the handshake); its status,
 * and its output into *out (to proc_free()). */
static int s_client(struct proc *out, const char *const *opts)
{
	const char *argv[32] = {"openssl",       "s_client", "-connect",
	                        e2e_srv.address, "-CAfile",  file(0, "ca.crt")};
	size_t n = 6;
	for (size_t k = 0; opts[k] != NULL; k++)
		argv[n++] = opts[k];
	argv[n] = NULL;
	proc_start(out, argv, NULL);
	return proc_finish(out, TOOL_TIMEOUT_MS);
}

#define S_CLIENT(p, ...) s_client((p), (const char *const[]){__VA_ARGS__, NULL})

static void expect_has(const struct proc *p, const char *needle, const char *what)
{
	cr_expect_not_null(strstr(p->buf, needle), "%s: \"%s\" not in:\n%s", what, needle, p->buf);
}

/* Waits until the server's log holds needle (it is written as the
 * connection fails, which s_client may see first). */
static void expect_logged(const char *needle)
{
	int64_t deadline = e2e_now_ms() + 5000;
	while (e2e_log_count(&e2e_srv, needle) == 0 && e2e_now_ms() < deadline)
		e2e_sleep_ms(20);
	cr_expect_gt(e2e_log_count(&e2e_srv, needle), 0u, "the server's log lacks \"%s\"", needle);
}

Test(tls_probe, tls_1_0_and_1_1_are_refused_1_2_and_1_3_accepted)
{
	make_certs();
	start("node", "none");
	struct proc p;
	/* SECLEVEL=0 lets the client itself offer TLS 1.0 and 1.1 (Debian's
	 * OpenSSL will not otherwise), so that the refusal is the server's. */
	static const char *const old[] = {"-tls1", "-tls1_1"};
	for (size_t k = 0; k < 2; k++) {
		int rc = S_CLIENT(&p, old[k], "-cipher", "DEFAULT@SECLEVEL=0", "-alpn",
		                  "whizbang/1");
		cr_expect_eq(rc, 1, "%s: status %d", old[k], rc);
		expect_has(&p, "alert protocol version", old[k]);
		proc_free(&p);
	}
	expect_logged("reason=handshake failed: unsupported protocol");
	/* The controls: the same client flags with TLS 1.2 and 1.3. */
	int rc = S_CLIENT(&p, "-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0", "-alpn", "whizbang/1",
	                  "-verify_return_error");
	cr_expect_eq(rc, 0, "TLS 1.2: status %d\n%s", rc, p.buf);
	expect_has(&p, "New, TLSv1.2, Cipher is ECDHE-", "TLS 1.2");
	expect_has(&p, "ALPN protocol: whizbang/1", "TLS 1.2");
	expect_has(&p, "Verify return code: 0 (ok)", "TLS 1.2");
	/* Forward secrecy and an AEAD, and no compression. */
	expect_has(&p, "Cipher    : ECDHE-ECDSA-AES128-GCM-SHA256", "TLS 1.2");
	expect_has(&p, "Compression: NONE", "TLS 1.2");
	proc_free(&p);
	rc = S_CLIENT(&p, "-tls1_3", "-alpn", "whizbang/1", "-verify_return_error");
	cr_expect_eq(rc, 0, "TLS 1.3: status %d\n%s", rc, p.buf);
	expect_has(&p, "New, TLSv1.3, Cipher is TLS_", "TLS 1.3");
	expect_has(&p, "ALPN protocol: whizbang/1", "TLS 1.3");
	proc_free(&p);
	e2e_suite_stop();
}

Test(tls_probe, alpn_whizbang_1_is_required)
{
	make_certs();
	start("node", "none");
	struct proc p;
	int rc = S_CLIENT(&p, "-tls1_3");
	cr_expect_eq(rc, 1, "no ALPN: status %d", rc);
	expect_has(&p, "alert no application protocol", "no ALPN");
	proc_free(&p);
	expect_logged("the client offered no application protocol");
	rc = S_CLIENT(&p, "-tls1_2", "-alpn", "h2,http/1.1");
	cr_expect_eq(rc, 1, "another ALPN: status %d", rc);
	expect_has(&p, "alert no application protocol", "another ALPN");
	proc_free(&p);
	expect_logged("do not include whizbang/1");
	/* The controls: whizbang/1 alone, and among others. */
	rc = S_CLIENT(&p, "-tls1_3", "-alpn", "whizbang/1");
	cr_expect_eq(rc, 0, "whizbang/1: status %d", rc);
	expect_has(&p, "ALPN protocol: whizbang/1", "whizbang/1");
	proc_free(&p);
	rc = S_CLIENT(&p, "-tls1_2", "-alpn", "h2,whizbang/1");
	cr_expect_eq(rc, 0, "h2 and whizbang/1: status %d", rc);
	expect_has(&p, "ALPN protocol: whizbang/1", "h2 and whizbang/1");
	proc_free(&p);
	e2e_suite_stop();
}

Test(tls_probe, a_required_client_certificate_that_is_missing_is_refused)
{
	make_certs();
	start("node", "required");
	struct proc p;
	int rc = S_CLIENT(&p, "-tls1_2", "-alpn", "whizbang/1");
	cr_expect_eq(rc, 1, "TLS 1.2 without a certificate: status %d", rc);
	expect_has(&p, "alert handshake failure", "TLS 1.2 without a certificate");
	proc_free(&p);
	expect_logged("peer did not return a certificate");
	/* TLS 1.3: s_client's side of the handshake ends first; the refusal
	 * comes after, so it waits for it (-ign_eof). */
	rc = S_CLIENT(&p, "-tls1_3", "-alpn", "whizbang/1", "-ign_eof");
	cr_expect_neq(rc, 0, "TLS 1.3 without a certificate: status %d", rc);
	expect_has(&p, "alert certificate required", "TLS 1.3 without a certificate");
	proc_free(&p);
	/* The controls: alice's certificate, in both. */
	rc = S_CLIENT(&p, "-tls1_2", "-alpn", "whizbang/1", "-cert", file(1, "alice.crt"), "-key",
	              file(2, "alice.key"));
	cr_expect_eq(rc, 0, "TLS 1.2 with alice's certificate: status %d\n%s", rc, p.buf);
	proc_free(&p);
	rc = S_CLIENT(&p, "-tls1_3", "-alpn", "whizbang/1", "-cert", file(1, "alice.crt"), "-key",
	              file(2, "alice.key"));
	cr_expect_eq(rc, 0, "TLS 1.3 with alice's certificate: status %d\n%s", rc, p.buf);
	proc_free(&p);
	e2e_suite_stop();
}

Test(tls_probe, an_expired_server_certificate_fails_a_verifying_client)
{
	make_certs();
	start("expired", "none");
	struct proc p;
	int rc = S_CLIENT(&p, "-tls1_3", "-alpn", "whizbang/1", "-verify_return_error");
	cr_expect_eq(rc, 1, "s_client: status %d", rc);
	expect_has(&p, "certificate has expired", "s_client");
	proc_free(&p);
	/* libwhizbang says so too, and what to do. */
	struct cli_run r = {0};
	char url[600];
	snprintf(url, sizeof(url), "whizbang://%s?tlsCaFile=%s", e2e_srv.address,
	         file(0, "ca.crt"));
	cli_run(&r, (const char *const[]){"--server", url, "ping", NULL});
	cli_expect_status(&r, 1, "whizbang against an expired certificate");
	CLI_HAS(r.err, "whizbang against an expired certificate", "UNAUTHENTICATED",
	        "certificate has expired", "needs a new certificate");
	e2e_suite_stop();
	/* The controls: the same clients against the valid certificate. */
	start("node", "none");
	rc = S_CLIENT(&p, "-tls1_3", "-alpn", "whizbang/1", "-verify_return_error");
	cr_expect_eq(rc, 0, "s_client: status %d\n%s", rc, p.buf);
	expect_has(&p, "Verify return code: 0 (ok)", "s_client");
	proc_free(&p);
	snprintf(url, sizeof(url), "whizbang://%s?tlsCaFile=%s", e2e_srv.address,
	         file(0, "ca.crt"));
	cli_run(&r, (const char *const[]){"--server", url, "ping", NULL});
	cli_expect_status(&r, 0, "whizbang against a valid certificate");
	cli_suite_stop(&r);
}

/* s_client -tls1_2 to address: once the handshake is done, "R" asks it to
 * renegotiate; its output into *p, its status returned. */
static int renegotiate(struct proc *p, const char *address)
{
	const char *argv[] = {"openssl", "s_client",   "-connect", address,           "-tls1_2",
	                      "-alpn",   "whizbang/1", "-CAfile",  file(0, "ca.crt"), NULL};
	proc_start(p, argv, NULL);
	/* The session's summary ends the handshake's output. */
	cr_assert(proc_read_until(p, 0, "Extended master secret", TOOL_TIMEOUT_MS), "%s", p->buf);
	size_t at = (size_t)(strstr(p->buf, "Extended master secret") - p->buf);
	cr_assert(proc_read_until(p, at, "---\n", TOOL_TIMEOUT_MS), "%s", p->buf);
	size_t before = p->len;
	proc_write(p, "R\n");
	/* Either the renegotiation's verification, or the refusal; or the
	 * end of its output. */
	int64_t deadline = e2e_now_ms() + 10000;
	while (e2e_now_ms() < deadline && strstr(p->buf + before, "verify return:1") == NULL &&
	       strstr(p->buf + before, "error") == NULL && p->out >= 0)
		proc_read_until(p, p->len, "\n", 200);
	return proc_finish(p, TOOL_TIMEOUT_MS);
}

Test(tls_probe, renegotiation_is_refused)
{
	make_certs();
	start("node", "none");
	struct proc p;
	int rc = renegotiate(&p, e2e_srv.address);
	expect_has(&p, "RENEGOTIATING", "whizbangd");
	const char *after = strstr(p.buf, "RENEGOTIATING");
	cr_expect(after != NULL && strstr(after, "no renegotiation") != NULL,
	          "whizbangd renegotiated:\n%s", p.buf);
	cr_expect_neq(rc, 0, "s_client against whizbangd: status %d", rc);
	proc_free(&p);
	e2e_suite_stop();

	/* The control: the same s_client renegotiates with a server that
	 * allows it, with the same certificate. */
	const char *argv[] = {"openssl",
	                      "s_server",
	                      "-accept",
	                      "127.0.0.1:0",
	                      "-naccept",
	                      "1",
	                      "-alpn",
	                      "whizbang/1",
	                      "-cert",
	                      file(3, "node.crt"),
	                      "-key",
	                      file(4, "node.key"),
	                      "-client_renegotiation",
	                      NULL};
	struct proc srv;
	proc_start(&srv, argv, NULL);
	cr_assert(proc_read_until(&srv, 0, "ACCEPT 127.0.0.1:", 10000), "%s", srv.buf);
	const char *at = strstr(srv.buf, "ACCEPT ") + strlen("ACCEPT ");
	cr_assert(proc_read_until(&srv, (size_t)(at - srv.buf), "\n", 10000));
	at = strstr(srv.buf, "ACCEPT ") + strlen("ACCEPT ");
	char address[64];
	snprintf(address, sizeof(address), "%.*s", (int)strcspn(at, "\r\n"), at);
	rc = renegotiate(&p, address);
	after = strstr(p.buf, "RENEGOTIATING");
	cr_expect(after != NULL && strstr(after, "verify return:1") != NULL &&
	                  strstr(after, "no renegotiation") == NULL,
	          "s_server -client_renegotiation did not renegotiate:\n%s", p.buf);
	cr_expect_eq(rc, 0, "s_client against s_server: status %d", rc);
	proc_free(&p);
	kill(srv.pid, SIGTERM);
	proc_finish(&srv, 10000);
	proc_free(&srv);
}

/* ---------------------------------------------------------------- sslscan's findings */

/* What a scan says. */
struct scan {
	unsigned problems;
	char why[4096];
	size_t used;
	bool tls12, tls13; /* enabled */
	size_t accepted;   /* ciphers accepted */
	bool compression_tested;
};

__attribute__((format(printf, 2, 3))) static void problem(struct scan *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (s->used < sizeof(s->why)) {
		int w = vsnprintf(s->why + s->used, sizeof(s->why) - s->used, fmt, ap);
		if (w > 0)
			s->used += (size_t)w;
	}
	va_end(ap);
	if (s->used < sizeof(s->why) - 1)
		s->why[s->used++] = '\n';
	s->why[s->used < sizeof(s->why) ? s->used : sizeof(s->why) - 1] = '\0';
	s->problems++;
}

/* Reads sslscan --no-colour's output line by line: a protocol below TLS
 * 1.2 enabled, a cipher under 128 bits or of a broken kind (RC4, DES and
 * 3DES, NULL, EXPORT, anonymous, MD5), compression enabled, insecure
 * renegotiation and heartbleed are problems. */
static void scan_check(const char *out, struct scan *s)
{
	memset(s, 0, sizeof(*s));
	static const char *const weak_protocols[] = {"SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"};
	static const char *const weak_ciphers[] = {"RC4", "DES",   "NULL", "EXP",
	                                           "ADH", "AECDH", "anon", "MD5"};
	for (const char *line = out; *line != '\0';) {
		size_t len = strcspn(line, "\n");
		char l[512];
		snprintf(l, sizeof(l), "%.*s", (int)(len < sizeof(l) - 1 ? len : sizeof(l) - 1),
		         line);
		line += len + (line[len] == '\n');
		char proto[32], state[32], kind[32], name[128];
		unsigned bits;
		if (sscanf(l, "%31s %31s", proto, state) == 2 && strcmp(state, "enabled") == 0) {
			for (size_t k = 0; k < 4; k++)
				if (strcmp(proto, weak_protocols[k]) == 0)
					problem(s, "%s is enabled", proto);
			s->tls12 |= strcmp(proto, "TLSv1.2") == 0;
			s->tls13 |= strcmp(proto, "TLSv1.3") == 0;
		}
		if (sscanf(l, "%31s %31s %u bits %127s", kind, proto, &bits, name) == 4 &&
		    (strcmp(kind, "Accepted") == 0 || strcmp(kind, "Preferred") == 0)) {
			s->accepted++;
			if (bits < 128)
				problem(s, "%s %s has %u bits", proto, name, bits);
			for (size_t k = 0; k < sizeof(weak_ciphers) / sizeof(weak_ciphers[0]); k++)
				if (strstr(name, weak_ciphers[k]) != NULL)
					problem(s, "%s %s is %s", proto, name, weak_ciphers[k]);
		}
		if (strstr(l, "Compression enabled") != NULL)
			problem(s, "%s", l);
		if (strstr(l, "Compression disabled") != NULL)
			s->compression_tested = true;
		if (strstr(l, "Insecure session renegotiation") != NULL)
			problem(s, "%s", l);
		if (strstr(l, "vulnerable to heartbleed") != NULL &&
		    strstr(l, "not vulnerable") == NULL)
			problem(s, "%s", l);
	}
}

/* What sslscan says of a server like ours: its output for the real one. */
static const char clean_scan[] =
        "  SSL/TLS Protocols:\n"
        "SSLv2     disabled\nSSLv3     disabled\nTLSv1.0   disabled\nTLSv1.1   disabled\n"
        "TLSv1.2   enabled\nTLSv1.3   enabled\n\n"
        "  TLS renegotiation:\nSession renegotiation not supported\n\n"
        "  TLS Compression:\nCompression disabled\n\n"
        "  Heartbleed:\nTLSv1.3 not vulnerable to heartbleed\n"
        "TLSv1.2 not vulnerable to heartbleed\n\n"
        "  Supported Server Cipher(s):\n"
        "Preferred TLSv1.3  128 bits  TLS_AES_128_GCM_SHA256        Curve 25519 DHE 253\n"
        "Accepted  TLSv1.3  256 bits  TLS_CHACHA20_POLY1305_SHA256  Curve 25519 DHE 253\n"
        "Preferred TLSv1.2  128 bits  ECDHE-ECDSA-AES128-GCM-SHA256 Curve 25519 DHE 253\n";

Test(tls_probe, the_scan_checker_flags_a_weak_server)
{
	struct scan s;
	scan_check(clean_scan, &s);
	cr_assert_eq(s.problems, 0u, "%s", s.why);
	cr_assert(s.tls12 && s.tls13 && s.accepted == 3 && s.compression_tested);
	/* One line changed is one problem found. */
	char *one = strdup(clean_scan);
	memcpy(strstr(one, "TLSv1.1   disabled"), "TLSv1.1   enabled ", 18);
	scan_check(one, &s);
	cr_assert_eq(s.problems, 1u, "%s", s.why);
	cr_assert_not_null(strstr(s.why, "TLSv1.1 is enabled"), "%s", s.why);
	free(one);
	/* A weak server: every kind of finding. */
	static const char weak[] =
	        "SSLv3     enabled\nTLSv1.0   enabled\nTLSv1.2   enabled\n"
	        "Insecure session renegotiation supported\n"
	        "Compression enabled (CRIME)\n"
	        "TLSv1.2 vulnerable to heartbleed\n"
	        "Preferred TLSv1.2  256 bits  ECDHE-RSA-AES256-GCM-SHA384   Curve 25519 DHE 253\n"
	        "Accepted  TLSv1.2  112 bits  DES-CBC3-SHA\n"
	        "Accepted  TLSv1.2  128 bits  RC4-SHA\n"
	        "Accepted  TLSv1.2  0 bits    NULL-SHA256\n"
	        "Accepted  TLSv1.0  40 bits   EXP-RC4-MD5\n"
	        "Accepted  TLSv1.2  128 bits  ADH-AES128-GCM-SHA256\n";
	scan_check(weak, &s);
	static const char *const found[] = {
	        "SSLv3 is enabled",    "TLSv1.0 is enabled",       "Insecure session renegotiation",
	        "Compression enabled", "vulnerable to heartbleed", "DES-CBC3-SHA has 112 bits",
	        "DES-CBC3-SHA is DES", "RC4-SHA is RC4",           "NULL-SHA256 has 0 bits",
	        "NULL-SHA256 is NULL", "EXP-RC4-MD5 is EXP",       "ADH-AES128-GCM-SHA256 is ADH",
	};
	for (size_t k = 0; k < sizeof(found) / sizeof(found[0]); k++)
		cr_expect_not_null(strstr(s.why, found[k]), "\"%s\" not found in:\n%s", found[k],
		                   s.why);
	cr_assert_geq(s.problems, 12u, "%s", s.why);
}

/* ---------------------------------------------------------------- the ALPN proxy */

/* Adds ALPN whizbang/1 to the ClientHello in the TLS record rec[0..*len)
 * (room for cap bytes) when it has none; anything else is left as it is. */
static void add_alpn(uint8_t *rec, size_t *len, size_t cap)
{
	static const uint8_t ext[] = {0x00, 0x10, 0x00, 0x0d, 0x00, 0x0b, 0x0a, 'w', 'h',
	                              'i',  'z',  'b',  'a',  'n',  'g',  '/',  '1'};
	size_t n = *len;
	if (n < 5 + 4 + 34 + 1 || rec[0] != 0x16 || rec[5] != 0x01)
		return;
	size_t p = 5 + 4 + 2 + 32;
	p += 1 + rec[p];
	if (p + 2 > n)
		return;
	p += 2 + ((size_t)rec[p] << 8 | rec[p + 1]);
	if (p + 1 > n)
		return;
	p += 1 + rec[p];
	if (p == n) {
		/* No extensions at all: an empty list first. */
		if (n + 2 > cap)
			return;
		rec[n] = rec[n + 1] = 0;
		n += 2;
	}
	if (p + 2 > n)
		return;
	size_t elen = (size_t)rec[p] << 8 | rec[p + 1];
	if (p + 2 + elen != n || n + sizeof(ext) > cap)
		return;
	for (size_t q = p + 2; q + 4 <= n;) {
		if (rec[q] == 0x00 && rec[q + 1] == 0x10)
			return;
		q += 4 + ((size_t)rec[q + 2] << 8 | rec[q + 3]);
	}
	memcpy(rec + n, ext, sizeof(ext));
	n += sizeof(ext);
	elen += sizeof(ext);
	rec[p] = (uint8_t)(elen >> 8);
	rec[p + 1] = (uint8_t)elen;
	size_t body = n - 5, hs = body - 4;
	rec[3] = (uint8_t)(body >> 8);
	rec[4] = (uint8_t)body;
	rec[6] = (uint8_t)(hs >> 16);
	rec[7] = (uint8_t)(hs >> 8);
	rec[8] = (uint8_t)hs;
	*len = n;
}

struct relay {
	int client;
	int server_port;
};

static bool read_exact(int fd, uint8_t *p, size_t n)
{
	for (size_t got = 0; got < n;) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		if (poll(&pf, 1, 10000) <= 0)
			return false;
		ssize_t k = recv(fd, p + got, n - got, 0);
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

/* One connection through the proxy: its first record with ALPN added, then
 * every byte both ways as it comes, until either side closes or is idle
 * for 10 s. */
static void *relay_main(void *arg)
{
	struct relay *r = arg;
	int c = r->client;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)r->server_port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	free(r);
	if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto done;
	static _Thread_local uint8_t buf[1 << 17];
	uint8_t first;
	struct pollfd pf = {.fd = c, .events = POLLIN};
	if (poll(&pf, 1, 10000) <= 0 || recv(c, &first, 1, MSG_PEEK) != 1)
		goto done;
	if (first == 0x16) {
		if (!read_exact(c, buf, 5))
			goto done;
		size_t len = 5 + ((size_t)buf[3] << 8 | buf[4]);
		if (!read_exact(c, buf + 5, len - 5))
			goto done;
		add_alpn(buf, &len, sizeof(buf));
		if (send(s, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
			goto done;
	}
	for (;;) {
		struct pollfd p[2] = {{.fd = c, .events = POLLIN}, {.fd = s, .events = POLLIN}};
		if (poll(p, 2, 10000) <= 0)
			break;
		int from = (p[0].revents != 0) ? c : s, to = from == c ? s : c;
		ssize_t k = recv(from, buf, sizeof(buf), 0);
		if (k <= 0 || send(to, buf, (size_t)k, MSG_NOSIGNAL) != k)
			break;
	}
done:
	if (s >= 0)
		close(s);
	close(c);
	return NULL;
}

struct proxy {
	int fd;
	int port;
	int server_port;
	atomic_bool stop;
	pthread_t thread;
};

static void *proxy_main(void *arg)
{
	struct proxy *px = arg;
	while (!atomic_load(&px->stop)) {
		struct pollfd pf = {.fd = px->fd, .events = POLLIN};
		if (poll(&pf, 1, 100) <= 0)
			continue;
		int c = accept(px->fd, NULL, NULL);
		if (c < 0)
			continue;
		struct relay *r = malloc(sizeof(*r));
		pthread_t t;
		if (r == NULL) {
			close(c);
			continue;
		}
		*r = (struct relay){.client = c, .server_port = px->server_port};
		if (pthread_create(&t, NULL, relay_main, r) != 0) {
			free(r);
			close(c);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

/* sslscan --no-colour of address, with preload when not NULL. */
static char *sslscan(const char *address, const char *preload)
{
	struct proc p;
	const char *argv[] = {"sslscan", "--no-colour", address, NULL};
	proc_start(&p, argv, preload);
	int rc = proc_finish(&p, TOOL_TIMEOUT_MS);
	cr_assert_eq(rc, 0, "sslscan: status %d\n%s", rc, p.buf);
	char *out = p.buf;
	p.buf = NULL;
	proc_free(&p);
	return out;
}

/* Whether a program is on $PATH. */
static bool on_path(const char *name)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

Test(tls_probe, sslscan_finds_nothing_weak)
{
	if (!on_path("sslscan"))
		cr_skip_test(
		        "sslscan is not installed (deploy/install-deps.sh --test installs it)");
	const char *shim = getenv("WB_ALPN_SHIM");
	cr_assert(shim != NULL && shim[0] != '\0', "WB_ALPN_SHIM is not set (run through meson)");
	make_certs();
	start("node", "none");

	/* Without ALPN sslscan reaches nothing: every protocol "disabled" and
	 * no cipher, which the checker must not take for a pass. */
	char *direct = sslscan(e2e_srv.address, NULL);
	struct scan s;
	scan_check(direct, &s);
	cr_assert(!s.tls12 && !s.tls13 && s.accepted == 0, "sslscan reached the server alone:\n%s",
	          direct);
	free(direct);

	struct proxy px = {.server_port = e2e_srv.port};
	px.fd = e2e_loopback_socket(true, &px.port);
	atomic_init(&px.stop, false);
	cr_assert_eq(pthread_create(&px.thread, NULL, proxy_main, &px), 0);
	char address[64];
	snprintf(address, sizeof(address), "127.0.0.1:%d", px.port);
	char *out = sslscan(address, shim);
	atomic_store(&px.stop, true);
	pthread_join(px.thread, NULL);
	close(px.fd);

	scan_check(out, &s);
	cr_assert(s.tls12 && s.tls13, "the scan did not see TLS 1.2 and 1.3 enabled:\n%s", out);
	cr_assert_geq(s.accepted, 3u, "the scan saw %zu ciphers:\n%s", s.accepted, out);
	cr_assert_eq(s.problems, 0u, "%s\nin:\n%s", s.why, out);
	/* Renegotiation: not supported at all. */
	cr_assert_not_null(strstr(out, "Session renegotiation not supported"), "%s", out);
	cr_assert_not_null(strstr(out, "TLSv1.3 not vulnerable to heartbleed"), "%s", out);
	if (!s.compression_tested)
		cr_log_info("sslscan could not test compression (its OpenSSL has no zlib); "
		            "tls_probe's s_client run shows \"Compression: NONE\"");
	free(out);
	e2e_suite_stop();
}
