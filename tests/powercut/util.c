/* The power-cut harness's shared pieces (pcut.h): the events the load
 * appends, whizbangd child processes, and a run's saved acknowledgements.
 *
 * A server child dies with the harness (PR_SET_PDEATHSIG), reads
 * /dev/null and writes its stdout and stderr to its log. Every wait is
 * bounded; a child that outlives its bound is killed and reported. */
#include "pcut.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t pcut_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pcut_sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ------------------------------------------------------------ events */

uint32_t pcut_batch_size(uint32_t thread, uint32_t seq)
{
	return 1 + (seq * 7 + thread) % PCUT_MAX_BATCH;
}

void pcut_event_id(uint32_t thread, uint32_t seq, uint32_t i, uint8_t id[16])
{
	memset(id, 0, 16);
	id[0] = 0x9c;
	id[1] = 0x75;
	id[2] = (uint8_t)thread;
	id[3] = (uint8_t)(seq >> 24);
	id[4] = (uint8_t)(seq >> 16);
	id[5] = (uint8_t)(seq >> 8);
	id[6] = (uint8_t)seq;
	id[7] = (uint8_t)i;
	id[15] = (uint8_t)(0x5a ^ id[2] ^ id[6] ^ id[7]);
}

bool pcut_event_parse(const uint8_t id[16], uint32_t *thread, uint32_t *seq, uint32_t *i)
{
	if (id[0] != 0x9c || id[1] != 0x75 || id[2] >= PCUT_APPENDERS ||
	    id[15] != (uint8_t)(0x5a ^ id[2] ^ id[6] ^ id[7]))
		return false;
	for (int k = 8; k < 15; k++)
		if (id[k] != 0)
			return false;
	*thread = id[2];
	*seq = (uint32_t)id[3] << 24 | (uint32_t)id[4] << 16 | (uint32_t)id[5] << 8 | id[6];
	*i = id[7];
	return *i < pcut_batch_size(*thread, *seq);
}

void pcut_event_stream(uint32_t thread, uint32_t seq, char *out, size_t len)
{
	snprintf(out, len, "pc-%u", (seq * 5 + thread * 2) % PCUT_STREAMS);
}

size_t pcut_event_data(uint32_t thread, uint32_t seq, uint32_t i, char *out, size_t len)
{
	int n = snprintf(out, len, "t=%u s=%u i=%u;", thread, seq, i);
	size_t at = n > 0 ? (size_t)n : 0;
	/* Every fifth append carries events that span LMDB pages. */
	size_t pad = seq % 5 == 0 ? 1500 + (seq % 3) * 1000 : 0;
	for (size_t k = 0; k < pad && at + 1 < len; k++)
		out[at++] = (char)('a' + (seq + i + k) % 26);
	out[at] = '\0';
	return at;
}

/* ------------------------------------------------------------ servers */

static int decode(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

static int read_port(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	int port = 0;
	if (fscanf(f, "%d", &port) != 1)
		port = 0;
	fclose(f);
	return port > 0 && port < 65536 ? port : 0;
}

int pcut_server_start(struct pcut_server *s, const char *bin, const char *data_dir,
                      const char *scratch, const char *const *extra, char *const *env,
                      int timeout_ms, int *status, char *why, size_t whylen)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->port_file, sizeof(s->port_file), "%s/port", scratch);
	snprintf(s->log_file, sizeof(s->log_file), "%s/server.log", scratch);
	const char *argv[64];
	size_t n = 0;
	argv[n++] = bin;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--metrics-listen";
	argv[n++] = "off";
	argv[n++] = "--data-dir";
	argv[n++] = data_dir;
	argv[n++] = "--port-file";
	argv[n++] = s->port_file;
	argv[n++] = "--log-level";
	argv[n++] = "warn";
	/* The load talks over TCP without credentials. */
	argv[n++] = "--anonymous-role=admin";
	for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	unlink(s->port_file);
	int logfd = open(s->log_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (logfd < 0) {
		snprintf(why, whylen, "cannot open %s: %s", s->log_file, strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(logfd);
		return -1;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, STDIN_FILENO);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		signal(SIGPIPE, SIG_DFL);
		if (env != NULL)
			execve(bin, (char *const *)argv, env);
		else
			execv(bin, (char *const *)argv);
		dprintf(STDERR_FILENO, "pcut: cannot exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	close(logfd);
	s->pid = pid;
	int64_t deadline = pcut_now_ms() + timeout_ms;
	for (;;) {
		int port = read_port(s->port_file);
		if (port > 0) {
			s->port = port;
			snprintf(s->address, sizeof(s->address), "127.0.0.1:%d", port);
			return 0;
		}
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			s->pid = 0;
			*status = st;
			return 1;
		}
		if (pcut_now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			s->pid = 0;
			snprintf(why, whylen,
			         "whizbangd neither listened nor exited within %d ms (a hang)",
			         timeout_ms);
			return -2;
		}
		pcut_sleep_ms(2);
	}
}

int pcut_server_signal(struct pcut_server *s, int sig, int timeout_ms)
{
	if (s->pid == 0)
		return -1;
	kill(s->pid, sig);
	int64_t deadline = pcut_now_ms() + timeout_ms;
	int st;
	for (;;) {
		pid_t r = waitpid(s->pid, &st, WNOHANG);
		if (r == s->pid)
			break;
		if (r < 0 && errno != EINTR) {
			s->pid = 0;
			return -1;
		}
		if (pcut_now_ms() >= deadline) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			s->pid = 0;
			return -1;
		}
		pcut_sleep_ms(2);
	}
	s->pid = 0;
	return decode(st);
}

void pcut_log_last(const char *log_file, char *out, size_t len)
{
	out[0] = '\0';
	FILE *f = fopen(log_file, "r");
	if (f == NULL)
		return;
	char line[2048];
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t n = strcspn(line, "\n");
		line[n] = '\0';
		if (n > 0)
			snprintf(out, len, "%s", line);
	}
	fclose(f);
}

/* ------------------------------------------------------------ saved runs */

int pcut_run_save(const struct pcut_run *run, const char *dir)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/acks", dir);
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		return -1;
	uint64_t n = run->nacks;
	bool ok = fwrite(&n, sizeof(n), 1, f) == 1 &&
	          fwrite(run->sent, sizeof(run->sent), 1, f) == 1 &&
	          fwrite(&run->ops, sizeof(run->ops), 1, f) == 1 &&
	          (n == 0 || fwrite(run->acks, sizeof(*run->acks), n, f) == n);
	return fclose(f) == 0 && ok ? 0 : -1;
}

int pcut_run_load(struct pcut_run *run, const char *dir)
{
	memset(run, 0, sizeof(*run));
	char path[1024];
	snprintf(path, sizeof(path), "%s/acks", dir);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	uint64_t n = 0;
	bool ok = fread(&n, sizeof(n), 1, f) == 1 &&
	          fread(run->sent, sizeof(run->sent), 1, f) == 1 &&
	          fread(&run->ops, sizeof(run->ops), 1, f) == 1 && n < (1u << 28);
	if (ok) {
		run->acks = calloc(n > 0 ? n : 1, sizeof(*run->acks));
		ok = run->acks != NULL &&
		     (n == 0 || fread(run->acks, sizeof(*run->acks), n, f) == n);
		run->nacks = n;
	}
	fclose(f);
	if (!ok)
		pcut_run_free(run);
	return ok ? 0 : -1;
}

void pcut_run_free(struct pcut_run *run)
{
	free(run->acks);
	memset(run, 0, sizeof(*run));
}
