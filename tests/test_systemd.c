/* whizbangd under systemd (issue 6), without systemd: the units pass
 * `systemd-analyze verify`; a real whizbangd started with a fake notify
 * socket (a Unix datagram socket of the test's own) sends READY=1 only once
 * its port answers, WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1 on
 * SIGTERM; and a listening socket passed as fd 3 with LISTEN_FDS=1 is the
 * one it serves.
 *
 * The server is spawned here rather than by e2e_start() because the test
 * sets the child's environment and file descriptors; the rest of the
 * harness (stop, raw sockets, clean-up) is e2e_util's. Every wait is
 * bounded. When whizbangd was built without libsystemd the notify and
 * socket tests are skipped, saying so. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e_util.h"
#include "server/wb_systemd.h"

extern char **environ;

#define WAIT_MS 15000
#define WATCHDOG_USEC "200000" /* keep-alives every 100 ms */

static int notify_fd = -1;

static void teardown(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
	e2e_suite_fini();
}

TestSuite(systemd, .fini = teardown, .timeout = 120);

/* ---------------------------------------------------------------- helpers */

static void make_dir(void)
{
	cr_assert_eq(e2e_prepare(&e2e_srv), 0, "no directory for whizbangd (reason above)");
}

static bool built_with_systemd(void)
{
#ifdef WB_HAVE_SYSTEMD
	return true;
#else
	return false;
#endif
}

/* Writes "NAME=<pid>" into buf without allocating (after fork). */
static void pid_var(char *buf, const char *name, pid_t pid)
{
	char digits[16];
	size_t n = 0, len = strlen(name);
	memcpy(buf, name, len);
	buf[len++] = '=';
	do {
		digits[n++] = (char)('0' + pid % 10);
		pid /= 10;
	} while (pid > 0);
	while (n > 0)
		buf[len++] = digits[--n];
	buf[len] = '\0';
}

static bool systemd_var(const char *entry)
{
	static const char *const names[] = {"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
	                                    "LISTEN_FDS=",    "LISTEN_PID=",    "LISTEN_FDNAMES="};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(entry, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

struct spawn_opts {
	const char *notify_path;   /* NOTIFY_SOCKET, or NULL */
	const char *watchdog_usec; /* WATCHDOG_USEC, or NULL */
	bool watchdog_pid_other;   /* WATCHDOG_PID names another process */
	int listen_fd;             /* passed as fd 3 with LISTEN_FDS=1, or -1 */
};

/* Starts $WHIZBANGD on 127.0.0.1 port 0 in e2e_srv.dir with the environment of
 * o (whatever systemd variables the test itself inherited are dropped).
 * Does not wait for it. */
static void spawn(const struct spawn_opts *o)
{
	struct e2e_server *s = &e2e_srv;
	const char *bin = getenv("WHIZBANGD");
	cr_assert(bin != NULL && bin[0] != '\0', "WHIZBANGD is not set (run through meson test)");
	const char *argv[] = {
	        bin,         "--listen",         "127.0.0.1:0", "--data-dir",
	        s->data_dir, "--port-file",      s->port_file,  "--log-level",
	        "info",      "--metrics-listen", "off",         "--anonymous-role=admin",
	        NULL};

	/* The child's environment is made here: after fork only
	 * async-signal-safe work is done. */
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **envp = calloc(n + 8, sizeof(*envp));
	cr_assert_not_null(envp);
	size_t e = 0;
	for (size_t i = 0; i < n; i++)
		if (!systemd_var(environ[i]))
			envp[e++] = environ[i];
	char notify_var[160], usec_var[64];
	static char pid_buf[2][64];
	if (o->notify_path != NULL) {
		snprintf(notify_var, sizeof(notify_var), "NOTIFY_SOCKET=%s", o->notify_path);
		envp[e++] = notify_var;
	}
	if (o->watchdog_usec != NULL) {
		snprintf(usec_var, sizeof(usec_var), "WATCHDOG_USEC=%s", o->watchdog_usec);
		envp[e++] = usec_var;
		envp[e++] = pid_buf[0]; /* WATCHDOG_PID, filled in the child */
	}
	if (o->listen_fd >= 0) {
		envp[e++] = (char *)"LISTEN_FDS=1";
		envp[e++] = pid_buf[1]; /* LISTEN_PID, filled in the child */
	}
	envp[e] = NULL;

	int logfd = open(s->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	cr_assert_geq(logfd, 0, "open %s: %s", s->log_file, strerror(errno));
	/* Above fd 3, so the dup2() calls below cannot clobber each other. */
	int hi_log = fcntl(logfd, F_DUPFD_CLOEXEC, 10);
	cr_assert_geq(hi_log, 0);
	close(logfd);
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (e2e_child_stdio(parent, hi_log) != 0)
			_exit(127);
		pid_t self = getpid();
		pid_var(pid_buf[0], "WATCHDOG_PID", o->watchdog_pid_other ? parent : self);
		pid_var(pid_buf[1], "LISTEN_PID", self);
		if (o->listen_fd >= 0 && dup2(o->listen_fd, 3) != 3) /* clears CLOEXEC */
			_exit(126);
		execve(bin, (char *const *)argv, envp);
		dprintf(STDERR_FILENO, "cannot exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(hi_log);
	free(envp);
	s->pid = pid;
}

/* Binds the fake notify socket at DIR/notify; returns its path. */
static const char *open_notify(void)
{
	static char path[108];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(path, sizeof(path), "%s/notify", e2e_srv.dir);
	cr_assert_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(notify_fd, 0);
	cr_assert_eq(bind(notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", path,
	             strerror(errno));
	return path;
}

/* Receives one notification into buf within timeout_ms: true, or false
 * when none came. */
static bool recv_notify(char *buf, size_t len, int timeout_ms)
{
	int64_t deadline = e2e_now_ms() + timeout_ms;
	for (;;) {
		int64_t left = deadline - e2e_now_ms();
		if (left < 0)
			left = 0;
		struct pollfd p = {.fd = notify_fd, .events = POLLIN};
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		ssize_t n = recv(notify_fd, buf, len - 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		cr_assert_geq(n, 0, "recv: %s", strerror(errno));
		buf[n] = '\0';
		return true;
	}
}

/* True when msg holds line (notifications are newline-separated
 * assignments). */
static bool has_line(const char *msg, const char *line)
{
	size_t len = strlen(line);
	for (const char *p = msg; p != NULL && *p != '\0';) {
		const char *nl = strchr(p, '\n');
		size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (n == len && memcmp(p, line, len) == 0)
			return true;
		p = nl != NULL ? nl + 1 : NULL;
	}
	return false;
}

/* Connects to e2e_srv.port, says Hello and pings: the server is serving. */
static void ping_server(void)
{
	int fd = e2e_suite_raw_hello();
	Whizbang__V1__Request req;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, 2, 4242);
	Whizbang__V1__Response *r = NULL;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0, "no answer to Ping");
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_PONG);
	cr_assert_eq(r->pong->nonce, 4242);
	whizbang__v1__response__free_unpacked(r, NULL);
	close(fd);
}

static void require_systemd(void)
{
	if (!built_with_systemd())
		cr_skip_test("whizbangd was built without libsystemd (install libsystemd-dev and "
		             "reconfigure): readiness, watchdog and socket activation are off");
}

/* Sends SIGTERM, collects notifications until STOPPING=1, and checks the
 * server then exits 0 and sends no keep-alive after it. */
static void stop_expect_stopping(void)
{
	char msg[512];
	cr_assert_eq(kill(e2e_srv.pid, SIGTERM), 0);
	bool stopping = false;
	int64_t deadline = e2e_now_ms() + WAIT_MS;
	while (!stopping && recv_notify(msg, sizeof(msg), (int)(deadline - e2e_now_ms())))
		stopping = has_line(msg, "STOPPING=1");
	cr_assert(stopping, "no STOPPING=1 within %d ms of SIGTERM", WAIT_MS);
	e2e_suite_wait_exit();
	while (recv_notify(msg, sizeof(msg), 0))
		cr_assert(!has_line(msg, "WATCHDOG=1"), "a keep-alive after STOPPING=1");
}

/* ---------------------------------------------------------------- tests */

/* The units as meson configured them (build/deploy/) pass
 * `systemd-analyze verify`. ExecStart is pointed at the built whizbangd in a
 * copy, since verify insists the binary exists and nothing is installed. */
Test(systemd, units_verify)
{
	if (system("command -v systemd-analyze >/dev/null 2>&1") != 0)
		cr_skip_test("systemd-analyze is not installed: the units are not verified");
	const char *bin = getenv("WHIZBANGD");
	cr_assert(bin != NULL && bin[0] == '/', "WHIZBANGD is not an absolute path");
	/* WHIZBANGD is BUILD/server/whizbangd. */
	char build[512];
	snprintf(build, sizeof(build), "%s", bin);
	for (int i = 0; i < 2; i++) {
		char *slash = strrchr(build, '/');
		cr_assert_not_null(slash);
		*slash = '\0';
	}
	make_dir();

	char in_path[600], out_path[600];
	snprintf(in_path, sizeof(in_path), "%s/deploy/whizbangd.service", build);
	snprintf(out_path, sizeof(out_path), "%s/whizbangd.service", e2e_srv.dir);
	FILE *in = fopen(in_path, "r");
	cr_assert_not_null(in, "no configured unit at %s", in_path);
	FILE *out = fopen(out_path, "w");
	cr_assert_not_null(out);
	char line[1024];
	bool type_notify = false, exec_start = false;
	while (fgets(line, sizeof(line), in) != NULL) {
		if (strncmp(line, "ExecStart=", 10) == 0) {
			/* Only the binary changes; the arguments stay. */
			const char *args = strchr(line + 10, ' ');
			fprintf(out, "ExecStart=%s%s", bin, args != NULL ? args : "\n");
			exec_start = true;
			continue;
		}
		if (strcmp(line, "Type=notify\n") == 0)
			type_notify = true;
		fputs(line, out);
	}
	fclose(in);
	cr_assert_eq(fclose(out), 0);
	cr_assert(exec_start, "the service has no ExecStart=");
	cr_assert(type_notify, "the service is not Type=notify");

	char cmd[2048];
	snprintf(cmd, sizeof(cmd),
	         "cp '%s/deploy/whizbangd.socket' '%s/' && "
	         "systemd-analyze verify --man=no '%s' '%s/whizbangd.socket' >'%s/verify.log' 2>&1",
	         build, e2e_srv.dir, out_path, e2e_srv.dir, e2e_srv.dir);
	int rc = system(cmd);
	if (rc != 0) {
		snprintf(cmd, sizeof(cmd), "cat '%s/verify.log' >&2", e2e_srv.dir);
		(void)system(cmd);
	}
	cr_assert_eq(rc, 0, "systemd-analyze verify failed (its output is above)");
}

/* READY=1 once the port answers, WATCHDOG=1 repeatedly at about half of
 * WATCHDOG_USEC, STOPPING=1 on SIGTERM. */
Test(systemd, ready_watchdog_stopping)
{
	require_systemd();
	make_dir();
	struct spawn_opts o = {
	        .notify_path = open_notify(), .watchdog_usec = WATCHDOG_USEC, .listen_fd = -1};
	spawn(&o);

	char msg[512];
	cr_assert(recv_notify(msg, sizeof(msg), WAIT_MS), "no notification within %d ms", WAIT_MS);
	cr_assert(has_line(msg, "READY=1"), "the first notification is not READY=1: '%s'", msg);
	int64_t ready_ms = e2e_now_ms();
	/* The listener was open before READY=1 was sent: the port file is there
	 * and the port answers now, with no retry. */
	e2e_srv.port = e2e_read_port(&e2e_srv);
	cr_assert_gt(e2e_srv.port, 0, "READY=1 came before the port file");
	snprintf(e2e_srv.address, sizeof(e2e_srv.address), "127.0.0.1:%d", e2e_srv.port);
	ping_server();

	int pings = 0;
	while (pings < 5 && recv_notify(msg, sizeof(msg), 5000)) {
		cr_assert(!has_line(msg, "READY=1"), "READY=1 sent twice");
		if (has_line(msg, "WATCHDOG=1"))
			pings++;
	}
	int64_t took = e2e_now_ms() - ready_ms;
	cr_assert_eq(pings, 5, "only %d keep-alives", pings);
	/* Five intervals of 100 ms: not much sooner (the interval is half the
	 * timeout, not less), and not anywhere near the 200 ms timeout each. */
	cr_assert_geq(took, 400, "5 keep-alives in %lld ms: faster than every 100 ms",
	              (long long)took);
	ping_server(); /* still serving while it pings */

	stop_expect_stopping();
}

/* WATCHDOG_USEC meant for another process (WATCHDOG_PID), or absent: READY=1
 * and STOPPING=1 still, but no keep-alives. */
Test(systemd, watchdog_for_another_pid)
{
	require_systemd();
	make_dir();
	struct spawn_opts o = {.notify_path = open_notify(),
	                       .watchdog_usec = WATCHDOG_USEC,
	                       .watchdog_pid_other = true,
	                       .listen_fd = -1};
	spawn(&o);
	char msg[512];
	cr_assert(recv_notify(msg, sizeof(msg), WAIT_MS), "no READY=1 within %d ms", WAIT_MS);
	cr_assert(has_line(msg, "READY=1"), "not READY=1: '%s'", msg);
	while (recv_notify(msg, sizeof(msg), 600))
		cr_assert(!has_line(msg, "WATCHDOG=1"), "a keep-alive for another pid's watchdog");
	stop_expect_stopping();
}

/* A listening socket passed as fd 3 (LISTEN_FDS=1, LISTEN_PID=the child) is
 * the one whizbangd serves, not a port of its own. */
Test(systemd, socket_activation)
{
	require_systemd();
	make_dir();
	int port;
	int lfd = e2e_loopback_socket(true, &port);
	int hi = fcntl(lfd, F_DUPFD_CLOEXEC, 10);
	cr_assert_geq(hi, 0);
	close(lfd);

	struct spawn_opts o = {.listen_fd = hi};
	spawn(&o);
	/* The test's copy goes: only whizbangd holds the socket now. */
	close(hi);
	cr_assert_eq(e2e_wait_port(&e2e_srv), 0, "whizbangd did not start (log above)");
	cr_assert_eq(e2e_srv.port, port, "whizbangd listens on %d, not on the passed socket's %d",
	             e2e_srv.port, port);
	ping_server();
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=socket_activation fd=3"), 1,
	              "the log does not say the passed socket is used");
	e2e_suite_stop();
}
