/* Running the command-line tool from a test (see cli_util.h).
 *
 * Happy path: two pipes, posix_spawn with stdin on /dev/null, poll both
 * pipes into growing buffers until they close, waitpid. Failure modes: a
 * spawn that fails or a child that is still writing at the deadline fails
 * the test; the child is killed and reaped first, so none is left behind. */
#include "cli_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void append_buf(char **buf, size_t *len, const char *p, size_t n)
{
	char *b = realloc(*buf, *len + n + 1);
	cr_assert_not_null(b);
	memcpy(b + *len, p, n);
	*len += n;
	b[*len] = '\0';
	*buf = b;
}

void cli_spawn(struct cli_child *ch, const char *const *args)
{
	const char *bin = getenv("WHIZBANG_CLI");
	cr_assert(bin != NULL && bin[0] != '\0',
	          "WHIZBANG_CLI is not set (run through meson test)");
	const char *argv[CLI_MAX_ARGS + 2];
	size_t n = 0;
	argv[n++] = bin;
	for (size_t i = 0; args[i] != NULL; i++) {
		cr_assert_leq(n, CLI_MAX_ARGS, "more than %d CLI arguments", CLI_MAX_ARGS);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	int out[2], err[2];
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
	memset(ch, 0, sizeof(*ch));
	int rc = posix_spawn(&ch->pid, bin, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	close(err[1]);
	if (rc != 0) {
		close(out[0]);
		close(err[0]);
	}
	cr_assert_eq(rc, 0, "cannot spawn %s: %s", bin, strerror(rc));
	ch->fds[0] = out[0];
	ch->fds[1] = err[0];
	append_buf(&ch->out, &ch->olen, "", 0);
	append_buf(&ch->err, &ch->elen, "", 0);
}

bool cli_pump(struct cli_child *ch, int timeout_ms, bool (*done)(const char *out, const void *arg),
              const void *arg)
{
	int64_t deadline = e2e_now_ms() + timeout_ms;
	for (;;) {
		if (done != NULL && done(ch->out, arg))
			return true;
		struct pollfd p[2] = {{.fd = ch->fds[0], .events = POLLIN},
		                      {.fd = ch->fds[1], .events = POLLIN}};
		if (p[0].fd < 0 && p[1].fd < 0)
			return done == NULL;
		int64_t left = deadline - e2e_now_ms();
		if (left <= 0)
			return false;
		int k = poll(p, 2, (int)left);
		if (k < 0 && errno == EINTR)
			continue;
		cr_assert_geq(k, 0, "poll: %s", strerror(errno));
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || p[i].revents == 0)
				continue;
			char buf[4096];
			ssize_t m = read(p[i].fd, buf, sizeof(buf));
			if (m > 0) {
				if (i == 0)
					append_buf(&ch->out, &ch->olen, buf, (size_t)m);
				else
					append_buf(&ch->err, &ch->elen, buf, (size_t)m);
			} else if (m == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(ch->fds[i]);
				ch->fds[i] = -1;
			}
		}
	}
}

int cli_finish(struct cli_child *ch)
{
	bool ended = cli_pump(ch, CLI_TIMEOUT_MS, NULL, NULL);
	if (!ended)
		kill(ch->pid, SIGKILL);
	for (int i = 0; i < 2; i++) {
		if (ch->fds[i] >= 0)
			close(ch->fds[i]);
		ch->fds[i] = -1;
	}
	int status;
	while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR)
		;
	cr_assert(ended, "the CLI ran for more than %d ms\nstdout: %s\nstderr: %s", CLI_TIMEOUT_MS,
	          ch->out, ch->err);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void cli_child_free(struct cli_child *ch)
{
	free(ch->out);
	free(ch->err);
	memset(ch, 0, sizeof(*ch));
}

void cli_run(struct cli_run *r, const char *const *args)
{
	cli_run_free(r);
	struct cli_child ch;
	cli_spawn(&ch, args);
	r->status = cli_finish(&ch);
	r->out = ch.out;
	r->err = ch.err;
}

void cli_run_free(struct cli_run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

void cli_expect_status(const struct cli_run *r, int status, const char *what)
{
	cr_assert_eq(r->status, status, "%s: exit %d, want %d\nstdout: %s\nstderr: %s", what,
	             r->status, status, r->out, r->err);
}

void cli_expect_has(const char *text, const char *needle, const char *what)
{
	cr_assert(strstr(text, needle) != NULL, "%s: \"%s\" not in:\n%s", what, needle, text);
}

void cli_expect_all(const char *text, const char *what, const char *const *needles)
{
	for (; *needles != NULL; needles++)
		cli_expect_has(text, *needles, what);
}

void cli_expect_not(const char *text, const char *needle, const char *what)
{
	cr_assert(strstr(text, needle) == NULL, "%s: \"%s\" unexpectedly in:\n%s", what, needle,
	          text);
}

size_t cli_count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* The start of the line after the one p is in, or NULL when that one is
 * the last. */
static const char *next_line(const char *p)
{
	p = strchr(p, '\n');
	return p != NULL ? p + 1 : NULL;
}

/* Copies the line that starts at p (NULL or "": none, which fails the test
 * with what) into out. */
static void copy_line(const char *p, const char *text, char *out, size_t len, const char *what)
{
	cr_assert(p != NULL && *p != '\0', "no %s in:\n%s", what, text);
	const char *e = strchr(p, '\n');
	size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
	cr_assert_lt(n, len, "the %s is %zu bytes, more than %zu", what, n, len - 1);
	memcpy(out, p, n);
	out[n] = '\0';
}

void cli_nth_line(const char *text, size_t line, char *out, size_t len)
{
	const char *p = text;
	for (size_t i = 0; i < line && p != NULL; i++)
		p = next_line(p);
	char what[48];
	snprintf(what, sizeof(what), "line %zu", line);
	copy_line(p, text, out, len, what);
}

void cli_line_starting(const char *text, const char *prefix, char *out, size_t len)
{
	const char *p = text;
	while (p != NULL && strncmp(p, prefix, strlen(prefix)) != 0)
		p = next_line(p);
	char what[256];
	snprintf(what, sizeof(what), "line starting \"%s\"", prefix);
	copy_line(p, text, out, len, what);
}
