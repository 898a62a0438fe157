/* The whizbangd a benchmark runs against: spawned on 127.0.0.1:0 with a fresh
 * data directory, found through its port file, and stopped with SIGTERM.
 *
 * The happy path: fork, exec whizbangd with --port-file, poll the file every
 * 10 ms until it holds a whole line, and hand back "127.0.0.1:<port>". At the
 * end, SIGTERM and wait for the exit status.
 *
 * Failure modes: a binary that is missing or not executable is refused before
 * the fork. A server that exits before it listens, or writes no port file
 * within 10 s, fails the start (the child is left for bench_server_stop()).
 * A server that does not exit within 20 s of SIGTERM is killed, and the stop
 * reports -1. A child of a benchmark that dies gets SIGTERM from the kernel
 * (PR_SET_PDEATHSIG), so no server outlives its benchmark. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "wb.h"
#include "wb_error.h"

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 20000

static int default_whizbangd(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return WB_E_IO;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash == NULL)
		return WB_E_IO;
	*slash = '\0';
	char guess[PATH_MAX + 32];
	snprintf(guess, sizeof(guess), "%s/../server/whizbangd", self);
	char resolved[PATH_MAX];
	const char *path = realpath(guess, resolved) != NULL ? resolved : guess;
	if ((size_t)snprintf(out, len, "%s", path) >= len)
		return WB_E_INVAL;
	return 0;
}

void bench_describe_status(int status, char *out, size_t len)
{
	if (WIFEXITED(status))
		snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, len, "was killed by signal %d (%s)", WTERMSIG(status),
		         strsignal(WTERMSIG(status)));
	else
		snprintf(out, len, "ended with wait status %d", status);
}

void bench_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Reads the port file; 0 with *port set once it holds a whole line. */
static int read_port(const char *path, unsigned *port)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return WB_E_AGAIN;
	char line[32];
	bool ok = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	size_t n = ok ? strlen(line) : 0;
	if (n < 2 || line[n - 1] != '\n')
		return WB_E_AGAIN;
	line[n - 1] = '\0';
	uint64_t v;
	if (bench_parse_u64(line, 1, 65535, &v) != 0)
		return WB_E_INVAL;
	*port = (unsigned)v;
	return 0;
}

int bench_server_start(struct bench_server *s, const char *whizbangd, const char *log_level,
                       const char *root, uint64_t map_size, const char *const *extra, char *errmsg,
                       size_t errlen)
{
	char exe[BENCH_PATH_MAX];
	if (whizbangd != NULL)
		snprintf(exe, sizeof(exe), "%s", whizbangd);
	else if (default_whizbangd(exe, sizeof(exe)) != 0) {
		snprintf(errmsg, errlen,
		         "cannot find whizbangd next to this program; use --whizbangd");
		return WB_E_INVAL;
	}
	if (access(exe, X_OK) != 0) {
		snprintf(errmsg, errlen,
		         "%s: %s (build it with `meson compile -C build`, or pass "
		         "--whizbangd PATH or --server HOST:PORT)",
		         exe, strerror(errno));
		return WB_E_INVAL;
	}
	snprintf(s->data, sizeof(s->data), "%s/server", root);
	snprintf(s->port_file, sizeof(s->port_file), "%s/server.port", root);
	if (mkdir(s->data, 0755) != 0) {
		snprintf(errmsg, errlen, "mkdir %s: %s", s->data, strerror(errno));
		return WB_E_IO;
	}
	char map_arg[32];
	snprintf(map_arg, sizeof(map_arg), "%llu", (unsigned long long)map_size);
	char *level = (char *)(log_level != NULL ? log_level : "warn");
	/* clang-format off */
	char *argv[13 + BENCH_SERVER_EXTRA_MAX + 1] = {
		exe,
		"--listen", "127.0.0.1:0",
		"--data-dir", s->data,
		"--port-file", s->port_file,
		"--log-level", level,
		"--map-size", map_arg,
		/* the load generators talk over TCP without credentials */
		"--anonymous-role", "admin",
	};
	/* clang-format on */
	size_t argc = 13;
	for (size_t k = 0; extra != NULL && extra[k] != NULL; k++) {
		if (k == BENCH_SERVER_EXTRA_MAX) {
			snprintf(errmsg, errlen, "more than %d arguments for whizbangd",
			         BENCH_SERVER_EXTRA_MAX);
			return WB_E_INVAL;
		}
		argv[argc++] = (char *)extra[k];
	}
	argv[argc] = NULL;

	fflush(NULL);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(errmsg, errlen, "fork: %s", strerror(errno));
		return WB_E_IO;
	}
	if (pid == 0) {
		/* A benchmark killed with ^C must not leave a server behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		if (s->log_file != NULL) {
			int fd = open(s->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
			if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
				fprintf(stderr, "whizbang-bench: %s: %s\n", s->log_file,
				        strerror(errno));
				_exit(127);
			}
		}
		execv(exe, argv);
		fprintf(stderr, "whizbang-bench: exec %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	s->pid = pid;

	for (long waited = 0; waited < START_TIMEOUT_MS; waited += 10) {
		unsigned port;
		int rc = read_port(s->port_file, &port);
		if (rc == 0) {
			snprintf(s->address, sizeof(s->address), "127.0.0.1:%u", port);
			return 0;
		}
		if (rc != WB_E_AGAIN) {
			snprintf(errmsg, errlen, "%s does not hold a port number", s->port_file);
			return rc;
		}
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			s->pid = 0;
			char how[96];
			bench_describe_status(status, how, sizeof(how));
			snprintf(errmsg, errlen, "whizbangd %s before it listened", how);
			return WB_E_IO;
		}
		bench_sleep_ms(10);
	}
	snprintf(errmsg, errlen, "whizbangd wrote no port file within %d ms", START_TIMEOUT_MS);
	return WB_E_TIMEOUT;
}

int bench_server_stop(struct bench_server *s)
{
	if (s->pid <= 0)
		return 0;
	kill(s->pid, SIGTERM);
	int status = -1;
	for (long waited = 0; waited < STOP_TIMEOUT_MS; waited += 10) {
		pid_t r = waitpid(s->pid, &status, WNOHANG);
		if (r == s->pid) {
			s->pid = 0;
			return status;
		}
		if (r < 0 && errno != EINTR) {
			s->pid = 0;
			return -1;
		}
		bench_sleep_ms(10);
	}
	fprintf(stderr,
	        "whizbang-bench: whizbangd did not exit within %d ms of SIGTERM; killing it\n",
	        STOP_TIMEOUT_MS);
	kill(s->pid, SIGKILL);
	waitpid(s->pid, &status, 0);
	s->pid = 0;
	return -1;
}

int bench_server_finish(struct bench_server *s, double *cpu_s)
{
	int status = bench_server_stop(s);
	*cpu_s = bench_cpu_seconds(RUSAGE_CHILDREN);
	if (status != 0) {
		char how[96] = "could not be stopped";
		if (status > 0)
			bench_describe_status(status, how, sizeof(how));
		fprintf(stderr, "whizbang-bench: whizbangd %s after SIGTERM\n", how);
	}
	return status;
}

void bench_json_exit_status(struct bench_jw *j, const char *key, bool spawned, int status)
{
	if (!spawned)
		bench_j_lit(j, key, "null");
	else if (status >= 0 && WIFEXITED(status))
		bench_j_u64(j, key, (uint64_t)WEXITSTATUS(status));
	else if (status >= 0 && WIFSIGNALED(status))
		bench_j_u64(j, key, 128u + (uint64_t)WTERMSIG(status));
	else
		bench_j_lit(j, key, "-1");
}

int bench_connect(struct wb_client **out, const char *address, const char *name, uint32_t index,
                  char *errmsg, size_t errlen)
{
	return bench_connect_secure(out, address, name, index, NULL, errmsg, errlen);
}

int bench_connect_secure(struct wb_client **out, const char *address, const char *name,
                         uint32_t index, const struct bench_secure *sec, char *errmsg,
                         size_t errlen)
{
	struct wb_options wo = {.client_name = name, .timeout_ms = BENCH_CLIENT_TIMEOUT_MS};
	if (sec != NULL && sec->tls_ca_file != NULL) {
		wo.tls = true;
		wo.tls_ca_file = sec->tls_ca_file;
	}
	if (sec != NULL && sec->user != NULL) {
		wo.user = sec->user;
		wo.password = sec->password;
	}
	if (sec != NULL && sec->token != NULL)
		wo.token = sec->token;
	char why[600];
	int rc = wb_connect(out, address, &wo, why, sizeof(why));
	if (rc != 0) {
		*out = NULL;
		snprintf(errmsg, errlen, "%s #%u: %s", name, index, why);
	}
	return rc;
}

int bench_target_open(struct bench_target *t, const char *address, const char *whizbangd,
                      const char *log_level, const char *root, uint64_t map_size,
                      const char *const *extra, char *errmsg, size_t errlen)
{
	*t = (struct bench_target){.address = address};
	if (address == NULL) {
		int rc = bench_server_start(&t->srv, whizbangd, log_level, root, map_size, extra,
		                            errmsg, errlen);
		if (rc != 0) {
			bench_server_stop(&t->srv);
			return rc;
		}
		t->address = t->srv.address;
	}
	int rc = bench_connect(&t->ctl, t->address, "whizbang-bench-control", 0, errmsg, errlen);
	if (rc != 0)
		bench_server_stop(&t->srv);
	return rc;
}
