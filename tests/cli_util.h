/* Running the `whizbang` command-line tool ($WHIZBANG_CLI, set by meson
 * test) from an end-to-end test: to its end (cli_run(), CLI()), or as a
 * child whose output is read while it runs (cli_spawn(), cli_pump(),
 * cli_finish()), for the commands that do not end by themselves.
 *
 * The CLI's stdin is /dev/null; its stdout and stderr are collected whole.
 * Every wait is bounded. Like e2e_util's suite helpers these assert: a CLI
 * that cannot be spawned, or that runs longer than CLI_TIMEOUT_MS, fails the
 * test (and is killed). */
#ifndef WB_TEST_CLI_UTIL_H
#define WB_TEST_CLI_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "e2e_util.h"

/* How long one CLI run may take before the test fails. */
#define CLI_TIMEOUT_MS 20000
/* The most arguments a run takes (program name excluded). */
#define CLI_MAX_ARGS 38

/* A finished run. Zero it before its first use. */
struct cli_run {
	int status; /* exit status; 128 + the signal when one ended it */
	char *out;  /* all of stdout, NUL-terminated */
	char *err;  /* all of stderr, NUL-terminated */
};

/* Runs $WHIZBANG_CLI with args (NULL-terminated, program name excluded) to
 * its end and fills r. What r held from an earlier run is freed first, so
 * one struct serves a sequence of runs; free the last with cli_run_free(). */
void cli_run(struct cli_run *r, const char *const *args);

/* Frees what r holds and zeroes it. */
void cli_run_free(struct cli_run *r);

/* Runs the CLI with --server <e2e_srv's address> and then the given
 * arguments, into r (cli_run()). */
#define CLI(r, ...)                                                                                \
	do {                                                                                       \
		const char *cli_args_[] = {"--server", e2e_srv.address, __VA_ARGS__, NULL};        \
		cli_run((r), cli_args_);                                                           \
	} while (0)

/* The start of a test of the CLI: e2e_srv started with extra_args
 * (e2e_suite_start()), and an empty struct cli_run for its runs:
 *
 *	struct cli_run r = cli_suite_start(NULL);
 */
#define cli_suite_start(extra_args) (e2e_suite_start(extra_args), (struct cli_run){0})

/* Its end: frees r and stops e2e_srv (e2e_suite_stop(), which fails the
 * test unless the server exits cleanly). */
#define cli_suite_stop(r) (cli_run_free(r), e2e_suite_stop())

/* CLI() followed by cli_expect_status(): runs the CLI with --server and the
 * given arguments into r, and fails the test unless it exits with status;
 * what names the step. */
#define CLI_EXPECT(r, status, what, ...)                                                           \
	do {                                                                                       \
		CLI((r), __VA_ARGS__);                                                             \
		cli_expect_status((r), (status), (what));                                          \
	} while (0)

/* Fails the test unless text holds every one of the needles given after
 * what (cli_expect_has(), in order): the message names what and the needle
 * that is missing. */
#define CLI_HAS(text, what, ...)                                                                   \
	cli_expect_all((text), (what), (const char *const[]){__VA_ARGS__, NULL})
void cli_expect_all(const char *text, const char *what, const char *const *needles);

/* A CLI child whose stdout and stderr are read as it runs. out and err
 * hold what has been read so far, NUL-terminated. */
struct cli_child {
	pid_t pid;
	int fds[2]; /* stdout, stderr; -1 once closed */
	char *out;
	size_t olen;
	char *err;
	size_t elen;
};

/* Starts $WHIZBANG_CLI with args (as cli_run()) and returns without waiting;
 * ch is overwritten. End it with cli_finish(), then cli_child_free(). */
void cli_spawn(struct cli_child *ch, const char *const *args);

/* Reads what the child writes until done(ch->out, arg) holds, both its
 * pipes close, or timeout_ms pass. Returns whether done held (with done
 * NULL: whether both pipes closed). */
bool cli_pump(struct cli_child *ch, int timeout_ms, bool (*done)(const char *out, const void *arg),
              const void *arg);

/* Reads the child's output to its end and reaps it; returns its exit status
 * (128 + the signal when one ended it). A child still writing after
 * CLI_TIMEOUT_MS is killed and fails the test. ch->out and ch->err stay
 * for the caller. */
int cli_finish(struct cli_child *ch);

/* Frees what ch holds and zeroes it. */
void cli_child_free(struct cli_child *ch);

/* Fails the test unless r exited with status; the message names what and
 * shows both outputs. */
void cli_expect_status(const struct cli_run *r, int status, const char *what);

/* Fails the test unless text holds needle; the message names what and
 * shows text. */
void cli_expect_has(const char *text, const char *needle, const char *what);

/* Fails the test when text holds needle. */
void cli_expect_not(const char *text, const char *needle, const char *what);

/* How many times needle occurs in text (overlapping ones included). */
size_t cli_count_of(const char *text, const char *needle);

/* Copies line number line (from 0) of text, without its newline, into out
 * (len bytes). Fails the test, showing text, when there is no such line or
 * it does not fit. */
void cli_nth_line(const char *text, size_t line, char *out, size_t len);

/* Copies the first line of text that starts with prefix into out, as
 * cli_nth_line() does. */
void cli_line_starting(const char *text, const char *prefix, char *out, size_t len);

#endif
