/* Subscriptions, durable consumers and the stream life cycle through the
 * `whizbang` command-line tool against a real whizbangd: subscribe with its
 * credit window, caught-up line and SIGINT; consumer create, read, ack,
 * nack, parked, replay-parked, list and delete; stream-meta, delete,
 * scavenge and stream-info's new fields; usage errors. Then the client
 * library's push queue: pushes that arrive while a call waits are kept in
 * order, its bound fails the call clearly, a timeout of wb_next_item()
 * leaves the client usable, wb_unsubscribe() drops what is queued, and a
 * subscription the server ends reports its error. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e_util.h"

extern char **environ;

static struct e2e_server srv;

static void teardown(void)
{
	e2e_cleanup(&srv);
}

TestSuite(sub_cli, .fini = teardown, .timeout = 120);

#define CLI_TIMEOUT_MS 20000

/* ---------------------------------------------------------------- running the CLI */

struct run {
	int status; /* exit status; 128 + signal when killed */
	char *out;
	char *err;
};

static void append_buf(char **buf, size_t *len, const char *p, size_t n)
{
	char *b = realloc(*buf, *len + n + 1);
	cr_assert_not_null(b);
	memcpy(b + *len, p, n);
	*len += n;
	b[*len] = '\0';
	*buf = b;
}

/* A CLI child whose stdout and stderr are read as it runs. */
struct child {
	pid_t pid;
	int fds[2];
	char *out;
	size_t olen;
	char *err;
	size_t elen;
};

static void spawn_cli(struct child *ch, const char *const *args)
{
	const char *bin = getenv("WHIZBANG_CLI");
	cr_assert(bin != NULL && bin[0] != '\0', "WHIZBANG_CLI is not set");
	const char *argv[40];
	size_t n = 0;
	argv[n++] = bin;
	for (size_t i = 0; args[i] != NULL; i++) {
		cr_assert_lt(n, 39);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	int out[2], err[2];
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
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
	cr_assert_eq(rc, 0, "cannot spawn %s: %s", bin, strerror(rc));
	ch->fds[0] = out[0];
	ch->fds[1] = err[0];
	append_buf(&ch->out, &ch->olen, "", 0);
	append_buf(&ch->err, &ch->elen, "", 0);
}

/* Reads what the child writes until done(ch->out) holds, both pipes close,
 * or timeout_ms pass. Returns whether done held. */
static bool pump_child(struct child *ch, int timeout_ms, bool (*done)(const char *, const void *),
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

/* Reads the child's output to the end and reaps it; its exit status. */
static int finish_child(struct child *ch)
{
	bool ended = pump_child(ch, CLI_TIMEOUT_MS, NULL, NULL);
	if (!ended)
		kill(ch->pid, SIGKILL);
	for (int i = 0; i < 2; i++)
		if (ch->fds[i] >= 0)
			close(ch->fds[i]);
	int status;
	while (waitpid(ch->pid, &status, 0) < 0 && errno == EINTR)
		;
	cr_assert(ended, "the CLI ran for more than %d ms\nstdout: %s\nstderr: %s", CLI_TIMEOUT_MS,
	          ch->out, ch->err);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void child_free(struct child *ch)
{
	free(ch->out);
	free(ch->err);
	memset(ch, 0, sizeof(*ch));
}

/* Runs the CLI to its end, collecting stdout and stderr. */
static void run_argv(struct run *r, const char *const *args)
{
	struct child ch;
	spawn_cli(&ch, args);
	free(r->out);
	free(r->err);
	r->status = finish_child(&ch);
	r->out = ch.out;
	r->err = ch.err;
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* Runs the CLI with --server ADDRESS and then the given arguments. */
#define CLI(r, ...)                                                                                \
	do {                                                                                       \
		const char *args_[] = {"--server", srv.address, __VA_ARGS__, NULL};                \
		run_argv((r), args_);                                                              \
	} while (0)

static void expect_status(const struct run *r, int status, const char *what)
{
	cr_assert_eq(r->status, status, "%s: exit %d, want %d\nstdout: %s\nstderr: %s", what,
	             r->status, status, r->out, r->err);
}

static void expect_has(const char *text, const char *needle, const char *what)
{
	cr_assert(strstr(text, needle) != NULL, "%s: \"%s\" not in:\n%s", what, needle, text);
}

static void expect_not(const char *text, const char *needle, const char *what)
{
	cr_assert(strstr(text, needle) == NULL, "%s: \"%s\" unexpectedly in:\n%s", what, needle,
	          text);
}

static size_t count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
		n++;
	return n;
}

static bool has_cb(const char *out, const void *needle)
{
	return strstr(out, needle) != NULL;
}

static bool lines_cb(const char *out, const void *want)
{
	return count_of(out, "\"position\":") >= *(const size_t *)want;
}

static void start(void)
{
	cr_assert_eq(e2e_start(&srv, NULL), 0, "whizbangd did not start");
}

static struct wb_client *client(void)
{
	struct wb_client *c = e2e_client(&srv, "test_sub_cli");
	cr_assert_not_null(c);
	return c;
}

static void append_n(struct wb_client *c, const char *stream, const char *type, int n)
{
	for (int k = 0; k < n; k++) {
		char data[32];
		snprintf(data, sizeof(data), "{\"k\":%d}", k);
		struct wb_new_event ev = {.type = type, .data = data, .data_len = strlen(data)};
		struct wb_append_result res;
		int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, &ev, 1, &res);
		cr_assert_eq(rc, 0, "append to %s: %s", stream, wb_errmsg(c));
	}
}

/* The positions of the JSON events in text, in order. */
static size_t positions(const char *text, uint64_t *out, size_t max)
{
	size_t n = 0;
	for (const char *p = strstr(text, "\"position\":"); p != NULL && n < max;
	     p = strstr(p + 1, "\"position\":"))
		out[n++] = strtoull(p + strlen("\"position\":"), NULL, 10);
	return n;
}

/* ---------------------------------------------------------------- subscribe */

/* Stored events, the caught-up line, then live ones, each once and in
 * order, with a window of 2 credits (refilled one at a time); SIGINT
 * unsubscribes and exits 0. */
Test(sub_cli, subscribe_all_catch_up_live_and_sigint)
{
	start();
	struct wb_client *c = client();
	append_n(c, "order-1", "Placed", 3);
	append_n(c, "user-1", "Joined", 2);

	struct child ch;
	const char *args[] = {"--server", srv.address, "--json", "subscribe",
	                      "--all",    "--credits", "2",      NULL};
	spawn_cli(&ch, args);
	cr_assert(pump_child(&ch, CLI_TIMEOUT_MS, has_cb, "\"caught_up\":true"),
	          "no caught-up line:\n%s\n%s", ch.out, ch.err);
	cr_assert_eq(count_of(ch.out, "\"position\":"), 5, "before caught up:\n%s", ch.out);
	const char *cu = strstr(ch.out, "\"caught_up\":true");
	cr_assert_null(strstr(cu, "\"position\":"), "an event after the caught-up line:\n%s",
	               ch.out);

	append_n(c, "order-2", "Placed", 4);
	size_t want = 9;
	cr_assert(pump_child(&ch, CLI_TIMEOUT_MS, lines_cb, &want), "live events missing:\n%s",
	          ch.out);
	uint64_t pos[16];
	size_t n = positions(ch.out, pos, 16);
	cr_assert_eq(n, 9, "events:\n%s", ch.out);
	for (size_t k = 0; k < n; k++)
		cr_assert_eq(pos[k], k + 1, "event %zu at position %" PRIu64 ":\n%s", k, pos[k],
		             ch.out);

	/* The subscription is live: the CLI must still be there. */
	cr_assert_eq(waitpid(ch.pid, NULL, WNOHANG), 0, "subscribe exited on its own");
	cr_assert_eq(kill(ch.pid, SIGINT), 0);
	int status = finish_child(&ch);
	cr_assert_eq(status, 0, "exit %d after SIGINT\n%s", status, ch.err);
	cr_assert_eq(count_of(ch.out, "\"position\":"), 9);
	child_free(&ch);

	/* The server freed the subscription with the connection or before. */
	uint64_t conns = 0;
	for (int k = 0; k < 100; k++) {
		cr_assert_eq(e2e_connections(c, &conns), 0);
		if (conns == 1)
			break;
		e2e_sleep_ms(20);
	}
	cr_assert_eq(conns, 1, "the CLI's connection is still open");
	wb_close(c);
}

/* One stream from a version, filters on $all, --count, text output. */
Test(sub_cli, subscribe_stream_filters_and_count)
{
	start();
	struct wb_client *c = client();
	append_n(c, "acct-1", "Opened", 1);
	append_n(c, "acct-1", "Credited", 3);
	append_n(c, "other-1", "Credited", 2);
	wb_close(c);

	struct run r = {0};
	CLI(&r, "--json", "subscribe", "--stream", "acct-1", "--from", "2", "--count", "2");
	expect_status(&r, 0, "subscribe --stream --from 2 --count 2");
	cr_assert_eq(count_of(r.out, "\"stream\":\"acct-1\""), 2, "%s", r.out);
	expect_has(r.out, "\"version\":2", "from version 2");
	expect_has(r.out, "\"version\":3", "then 3");
	expect_not(r.out, "\"version\":1,", "nothing before the start");

	CLI(&r, "--json", "subscribe", "--all", "--stream-prefix", "acct-", "--type", "Credited",
	    "--count", "3");
	expect_status(&r, 0, "subscribe --stream-prefix --type");
	cr_assert_eq(count_of(r.out, "\"type\":\"Credited\""), 3, "%s", r.out);
	expect_not(r.out, "other-1", "prefix filter");
	expect_not(r.out, "Opened", "type filter");

	CLI(&r, "subscribe", "--all", "--count", "1");
	expect_status(&r, 0, "subscribe text");
	expect_has(r.out, "acct-1@0  Opened", "text form of an event");
	run_free(&r);
}

/* Ledger entries, then the caught-up line. */
Test(sub_cli, subscribe_ledger)
{
	start();
	struct run r = {0};
	CLI(&r, "apply", "--projection", "p", "upsert Order \"o-1\" {total: 1}");
	expect_status(&r, 0, "apply");
	CLI(&r, "--json", "subscribe", "--ledger", "--count", "1");
	expect_status(&r, 0, "subscribe --ledger");
	expect_has(r.out, "\"sequence\":1", "the first entry");
	run_free(&r);
}

/* A hard delete ends a stream subscription with STREAM_DELETED: the CLI
 * says so and exits 1. */
Test(sub_cli, subscribe_ended_by_hard_delete)
{
	start();
	struct wb_client *c = client();
	append_n(c, "doomed", "E", 1);
	struct child ch;
	const char *args[] = {"--server", srv.address, "--json", "subscribe",
	                      "--stream", "doomed",    NULL};
	spawn_cli(&ch, args);
	cr_assert(pump_child(&ch, CLI_TIMEOUT_MS, has_cb, "\"caught_up\":true"), "%s\n%s", ch.out,
	          ch.err);
	cr_assert_eq(wb_delete_stream(c, "doomed", true, NULL), 0, "%s", wb_errmsg(c));
	int status = finish_child(&ch);
	cr_assert_eq(status, 1, "exit %d\n%s", status, ch.err);
	expect_has(ch.err, "STREAM_DELETED", "the reason");
	child_free(&ch);
	wb_close(c);
}

Test(sub_cli, usage_errors)
{
	struct run r = {0};
	const char *const cases[][8] = {
	        {"subscribe", NULL},
	        {"subscribe", "--all", "--ledger", NULL},
	        {"subscribe", "--all", "--from", "middle", NULL},
	        {"subscribe", "--stream", "s", "--type", "T", NULL},
	        {"subscribe", "--all", "--credits", "0", NULL},
	        {"consumer", NULL},
	        {"consumer", "frob", "g", NULL},
	        {"consumer", "create", "--all", NULL},
	        {"consumer", "create", "g", "--ledger", NULL},
	        {"consumer", "create", "g", "--all", "--ack-timeout", "soon", NULL},
	        {"consumer", "read", NULL},
	        {"consumer", "ack", "g", NULL},
	        {"consumer", "ack", "g", "not-a-uuid", NULL},
	        {"consumer", "nack", "g", "0190a5c0-0000-7000-8000-000000000000", NULL},
	        {"consumer", "nack", "g", "0190a5c0-0000-7000-8000-000000000000", "--action",
	         "drop", NULL},
	        {"stream-meta", NULL},
	        {"stream-meta", "s", "--max-age", "1y", NULL},
	        {"delete", NULL},
	        {"scavenge", "now", NULL},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		/* No server: a usage error is found before connecting. */
		const char *args[10] = {"--server", "127.0.0.1:1"};
		size_t n = 2;
		for (size_t j = 0; cases[k][j] != NULL; j++)
			args[n++] = cases[k][j];
		args[n] = NULL;
		run_argv(&r, args);
		cr_assert_eq(r.status, 2, "case %zu (%s %s): exit %d\n%s", k, cases[k][0],
		             cases[k][1] != NULL ? cases[k][1] : "", r.status, r.err);
		expect_has(r.err, "usage:", "usage text");
	}
	run_free(&r);
}

/* ---------------------------------------------------------------- consumers */

Test(sub_cli, consumer_life)
{
	start();
	struct wb_client *c = client();
	struct run r = {0};
	CLI(&r, "consumer", "list");
	expect_status(&r, 0, "empty list");
	expect_has(r.out, "(no consumer groups)", "empty list");

	CLI(&r, "consumer", "create", "billing", "--all", "--stream-prefix", "inv-",
	    "--ack-timeout", "30s", "--max-deliveries", "5");
	expect_status(&r, 0, "consumer create");
	expect_has(r.out, "billing  all prefix=inv-", "create prints the group");
	expect_has(r.out, "ack_timeout=30s max_deliveries=5", "its settings");
	CLI(&r, "consumer", "create", "billing", "--all");
	expect_status(&r, 1, "create twice");

	append_n(c, "inv-1", "Issued", 3);
	append_n(c, "x-1", "Other", 1);

	CLI(&r, "--json", "consumer", "read", "billing", "--count", "2", "--ack");
	expect_status(&r, 0, "read --ack");
	cr_assert_eq(count_of(r.out, "\"delivery\":1"), 2, "%s", r.out);
	expect_has(r.out, "\"acked\":2,\"checkpoint\":", "ack summary");

	/* Not acked: back to the group when the reader leaves. */
	CLI(&r, "--json", "consumer", "read", "billing", "--count", "5", "--wait-ms", "500");
	expect_status(&r, 0, "read without ack");
	cr_assert_eq(count_of(r.out, "\"stream\":\"inv-1\""), 1, "%s", r.out);
	expect_has(r.out, "\"version\":2", "the third event");
	expect_not(r.out, "x-1", "the prefix filter");
	char id[37] = "";
	const char *p = strstr(r.out, "\"id\":\"");
	cr_assert_not_null(p);
	memcpy(id, p + 6, 36);

	CLI(&r, "consumer", "read", "billing", "--count", "1");
	expect_status(&r, 0, "read again");
	expect_has(r.out, "delivery=2", "redelivered");
	expect_has(r.out, id, "the same event");

	CLI(&r, "consumer", "nack", "billing", id, "--action", "park", "--reason", "bad total");
	expect_status(&r, 0, "nack park");
	expect_has(r.out, "nacked 1, checkpoint", "nack summary");
	CLI(&r, "consumer", "parked", "billing");
	expect_status(&r, 0, "parked");
	expect_has(r.out, id, "the parked event");
	expect_has(r.out, ": bad total", "its reason");
	CLI(&r, "--json", "consumer", "parked", "billing");
	expect_status(&r, 0, "parked --json");
	expect_has(r.out, "\"reason\":\"bad total\"", "reason in JSON");

	CLI(&r, "consumer", "replay-parked", "billing");
	expect_status(&r, 0, "replay-parked");
	expect_has(r.out, "replayed 1", "replayed");
	CLI(&r, "--json", "consumer", "read", "billing", "--count", "1");
	expect_status(&r, 0, "read replayed");
	expect_has(r.out, id, "the replayed event");
	CLI(&r, "--json", "consumer", "ack", "billing", id);
	expect_status(&r, 0, "ack by id");
	expect_has(r.out, "\"acked\":1,\"checkpoint\":4",
	           "checkpoint past all four (x-1 does not match)");

	CLI(&r, "--json", "consumer", "list");
	expect_status(&r, 0, "list --json");
	expect_has(r.out, "\"name\":\"billing\"", "the group");
	expect_has(r.out, "\"checkpoint\":4", "its checkpoint");
	expect_has(r.out, "\"parked\":0", "nothing parked");

	CLI(&r, "consumer", "delete", "billing");
	expect_status(&r, 0, "delete");
	expect_has(r.out, "deleted billing", "delete");
	CLI(&r, "consumer", "delete", "billing");
	expect_status(&r, 1, "delete twice");
	expect_has(r.err, "NOT_FOUND", "delete twice");
	CLI(&r, "consumer", "read", "billing");
	expect_status(&r, 1, "read a deleted group");
	run_free(&r);
	wb_close(c);
}

/* ---------------------------------------------------------------- stream life cycle */

Test(sub_cli, stream_meta_delete_scavenge)
{
	start();
	struct wb_client *c = client();
	append_n(c, "m", "E", 5);
	append_n(c, "soft", "E", 2);
	append_n(c, "hard", "E", 2);
	struct run r = {0};

	CLI(&r, "stream-meta", "m");
	expect_status(&r, 0, "stream-meta");
	expect_has(r.out, "max_count: unset\nmax_age: unset\ntruncate_before: unset", "unset");
	CLI(&r, "stream-meta", "m", "--max-count", "2");
	expect_status(&r, 0, "set max-count");
	expect_has(r.out, "max_count: 2", "set");
	CLI(&r, "stream-meta", "m", "--max-age", "7d");
	expect_status(&r, 0, "set max-age");
	expect_has(r.out, "max_count: 2\nmax_age: 7d", "max-count kept");
	CLI(&r, "--json", "stream-meta", "m");
	expect_status(&r, 0, "stream-meta --json");
	expect_has(r.out,
	           "{\"stream\":\"m\",\"max_count\":2,\"max_age_ms\":604800000,"
	           "\"truncate_before\":0}",
	           "json");
	CLI(&r, "--json", "read", "m");
	expect_status(&r, 0, "read m");
	cr_assert_eq(count_of(r.out, "\"position\":"), 2, "%s", r.out);
	CLI(&r, "stream-info", "m");
	expect_status(&r, 0, "stream-info");
	expect_has(r.out, "deleted: no\ntombstoned: no\nmax_count: 2\nmax_age: 7d", "new fields");

	CLI(&r, "delete", "soft");
	expect_status(&r, 0, "soft delete");
	expect_has(r.out, "deleted soft (soft) at version 1", "soft delete");
	CLI(&r, "--json", "delete", "hard", "--hard");
	expect_status(&r, 0, "hard delete");
	expect_has(r.out, "{\"stream\":\"hard\",\"hard\":true,\"last_version\":1}", "hard");
	CLI(&r, "append", "hard", "--type", "E", "--data", "x");
	expect_status(&r, 1, "append to a hard-deleted stream");
	expect_has(r.err, "STREAM_DELETED", "append after hard delete");
	CLI(&r, "--json", "stream-info", "hard");
	cr_assert(r.status == 1 || strstr(r.out, "\"tombstoned\":true") != NULL,
	          "stream-info of a hard-deleted stream:\n%s\n%s", r.out, r.err);

	/* Three events of m hidden by max-count, two of soft and two of hard. */
	CLI(&r, "--json", "scavenge");
	expect_status(&r, 0, "scavenge");
	expect_has(r.out, "\"events_removed\":7", "scavenge");
	CLI(&r, "scavenge");
	expect_status(&r, 0, "scavenge again");
	expect_has(r.out, "events_removed: 0", "nothing more");
	expect_not(r.err, "scavenging:", "no progress without a terminal");
	CLI(&r, "--json", "read", "m");
	cr_assert_eq(count_of(r.out, "\"position\":"), 2, "%s", r.out);

	/* Soft-deleted streams take appends again, versions continuing. */
	CLI(&r, "append", "soft", "--type", "E", "--data", "again");
	expect_status(&r, 0, "append after soft delete");
	expect_has(r.out, "version=2", "versions continue");
	run_free(&r);
	wb_close(c);
}

/* ---------------------------------------------------------------- the client's push queue */

/* Pings c until at least n responses are queued (the pushes arrive while
 * each ping waits for its Pong), for at most 10 s. Returns the last ping's
 * result. */
static int ping_until_queued(struct wb_client *c, size_t n)
{
	int64_t deadline = e2e_now_ms() + 10000;
	int rc;
	do {
		e2e_sleep_ms(20);
		rc = wb_ping(c);
	} while (rc == 0 && wb_queued(c) < n && e2e_now_ms() < deadline);
	return rc;
}

Test(sub_cli, queue_keeps_pushes_in_order_across_calls)
{
	start();
	struct wb_client *sub = client(), *w = client();
	struct wb_subscribe_args a = {
	        .target = WB_TARGET_ALL, .from = WB_FROM_START, .credits = 10};
	uint64_t id;
	cr_assert_eq(wb_subscribe(sub, &a, &id), 0, "%s", wb_errmsg(sub));
	append_n(w, "q", "E", 5);
	/* The pushes arrive while the pings wait for their Pongs. */
	cr_assert_eq(ping_until_queued(sub, 6), 0, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_queued(sub), 6, "queued %zu", wb_queued(sub));
	uint64_t next = 1;
	bool caught_up = false;
	for (;;) {
		Whizbang__V1__SubscriptionItem *it;
		int rc = wb_next_item(sub, 0, &it);
		if (rc == WB_E_TIMEOUT)
			break;
		cr_assert_eq(rc, 0, "%s", wb_errmsg(sub));
		cr_assert_eq(it->subscription, id);
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP) {
			caught_up = true;
		} else {
			cr_assert_eq(it->item_case, WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT);
			cr_assert_eq(it->event->position, next,
			             "position %" PRIu64 ", want %" PRIu64, it->event->position,
			             next);
			next++;
		}
		wb_item_free(it);
	}
	cr_assert(caught_up);
	cr_assert_eq(next, 6, "%" PRIu64 " events", next - 1);
	cr_assert_eq(wb_queued(sub), 0);
	/* A timeout of wb_next_item() is an answer: the client still works. */
	cr_assert_eq(wb_ping(sub), 0, "%s", wb_errmsg(sub));
	/* Credits: 5 of 10 used. */
	uint64_t left = 0;
	cr_assert_eq(wb_credit_n(sub, id, 0, &left), 0, "%s", wb_errmsg(sub));
	cr_assert_eq(left, 5);
	wb_close(sub);
	wb_close(w);
}

Test(sub_cli, queue_bound_fails_the_call)
{
	start();
	char msg[256];
	struct wb_options o = {.client_name = "bound", .timeout_ms = 10000, .max_queued = 3};
	struct wb_client *sub, *w = client();
	cr_assert_eq(wb_connect(&sub, srv.address, &o, msg, sizeof(msg)), 0, "%s", msg);
	struct wb_subscribe_args a = {.target = WB_TARGET_ALL, .from = WB_FROM_END, .credits = 10};
	uint64_t id;
	cr_assert_eq(wb_subscribe(sub, &a, &id), 0, "%s", wb_errmsg(sub));
	append_n(w, "q", "E", 6);
	int rc = ping_until_queued(sub, SIZE_MAX);
	cr_assert_eq(rc, WB_RESOURCE_EXHAUSTED, "ping: %d %s", rc, wb_errmsg(sub));
	cr_assert(strstr(wb_errmsg(sub), "max_queued 3") != NULL, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_ping(sub), WB_E_CLOSED, "unusable after a lost push");
	wb_close(sub);
	wb_close(w);
}

Test(sub_cli, unsubscribe_drops_queued_pushes)
{
	start();
	struct wb_client *sub = client(), *w = client();
	struct wb_subscribe_args a = {.target = WB_TARGET_STREAM, .stream = "u", .credits = 10};
	uint64_t id;
	cr_assert_eq(wb_subscribe(sub, &a, &id), 0, "%s", wb_errmsg(sub));
	append_n(w, "u", "E", 3);
	cr_assert_eq(ping_until_queued(sub, 4), 0, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_queued(sub), 4, "caught_up and 3 events, not %zu", wb_queued(sub));
	cr_assert_eq(wb_unsubscribe(sub, id), 0, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_queued(sub), 0, "%zu left", wb_queued(sub));
	append_n(w, "u", "E", 1);
	Whizbang__V1__SubscriptionItem *it = NULL;
	cr_assert_eq(wb_next_item(sub, 300, &it), WB_E_TIMEOUT, "an item after unsubscribe");
	cr_assert_null(it);
	cr_assert_eq(wb_credit(sub, id, 1), WB_NOT_FOUND, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_ping(sub), 0, "%s", wb_errmsg(sub));
	wb_close(sub);
	wb_close(w);
}

Test(sub_cli, ended_subscription_reports_its_error)
{
	start();
	struct wb_client *sub = client(), *w = client();
	append_n(w, "gone", "E", 1);
	struct wb_subscribe_args a = {.target = WB_TARGET_STREAM, .stream = "gone", .credits = 10};
	uint64_t id;
	cr_assert_eq(wb_subscribe(sub, &a, &id), 0, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_delete_stream(w, "gone", true, NULL), 0, "%s", wb_errmsg(w));
	int rc = 0;
	for (int k = 0; k < 10 && rc == 0; k++) {
		Whizbang__V1__SubscriptionItem *it;
		rc = wb_next_item(sub, 5000, &it);
		if (rc == 0)
			wb_item_free(it);
	}
	cr_assert_eq(rc, WB_STREAM_DELETED, "%d %s", rc, wb_errmsg(sub));
	cr_assert(strstr(wb_errmsg(sub), "ended") != NULL, "%s", wb_errmsg(sub));
	cr_assert_eq(wb_ping(sub), 0, "usable after: %s", wb_errmsg(sub));
	wb_close(sub);
	wb_close(w);
}

/* wb_recv() hands out answers and leaves the pushes to wb_next_item(). */
Test(sub_cli, recv_skips_pushes)
{
	start();
	struct wb_client *sub = client(), *w = client();
	struct wb_subscribe_args a = {.target = WB_TARGET_ALL, .credits = 10};
	uint64_t id;
	cr_assert_eq(wb_subscribe(sub, &a, &id), 0, "%s", wb_errmsg(sub));
	append_n(w, "r", "E", 3);
	e2e_sleep_ms(100);
	Whizbang__V1__Request req;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, 0, 42);
	uint64_t ping_id;
	cr_assert_eq(wb_send(sub, &req, &ping_id), 0, "%s", wb_errmsg(sub));
	Whizbang__V1__Response *r;
	cr_assert_eq(wb_recv(sub, &r), 0, "%s", wb_errmsg(sub));
	cr_assert_eq(r->id, ping_id);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_PONG);
	whizbang__v1__response__free_unpacked(r, NULL);
	size_t events = 0;
	while (events < 3) {
		Whizbang__V1__SubscriptionItem *it;
		int rc = wb_next_item(sub, 5000, &it);
		cr_assert_eq(rc, 0, "%s", wb_errmsg(sub));
		if (it->item_case == WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT) {
			cr_assert_eq(it->event->position, events + 1);
			events++;
		}
		wb_item_free(it);
	}
	wb_close(sub);
	wb_close(w);
}

struct progress {
	size_t calls;
	uint64_t last_position;
	bool increasing;
};

static void progress_cb(void *arg, const struct wb_scavenge_result *p)
{
	struct progress *pr = arg;
	if (pr->calls != 0 && p->position <= pr->last_position)
		pr->increasing = false;
	pr->last_position = p->position;
	pr->calls++;
}

/* 2 500 events: the server scavenges 1 000 per chunk and reports after each. */
Test(sub_cli, scavenge_progress_reports)
{
	start();
	struct wb_client *c = client();
	static const char data[] = "{}";
	struct wb_new_event evs[100];
	for (size_t k = 0; k < 100; k++)
		evs[k] = (struct wb_new_event){.type = "E", .data = data, .data_len = 2};
	for (int k = 0; k < 25; k++) {
		struct wb_append_result res;
		cr_assert_eq(wb_append(c, "many", WB_EXPECT_ANY, 0, evs, 100, &res), 0, "%s",
		             wb_errmsg(c));
	}
	cr_assert_eq(wb_delete_stream(c, "many", false, NULL), 0, "%s", wb_errmsg(c));
	struct progress pr = {.increasing = true};
	struct wb_scavenge_result res;
	cr_assert_eq(wb_scavenge(c, progress_cb, &pr, &res), 0, "%s", wb_errmsg(c));
	cr_assert_geq(pr.calls, 2, "%zu progress reports", pr.calls);
	cr_assert(pr.increasing, "progress went backwards");
	cr_assert_leq(pr.last_position, 2500);
	cr_assert_eq(res.events_removed, 2500);
	cr_assert_eq(res.last_position, 2500);
	wb_close(c);
}

Test(sub_cli, scavenge_progress_callback)
{
	start();
	struct wb_client *c = client();
	append_n(c, "big", "E", 300);
	struct wb_stream_metadata md = {.max_count = 1};
	cr_assert_eq(wb_set_stream_metadata(c, "big", &md), 0, "%s", wb_errmsg(c));
	struct wb_stream_metadata got;
	cr_assert_eq(wb_get_stream_metadata(c, "big", &got), 0, "%s", wb_errmsg(c));
	cr_assert_eq(got.max_count, 1);
	struct wb_scavenge_result res;
	cr_assert_eq(wb_scavenge(c, NULL, NULL, &res), 0, "%s", wb_errmsg(c));
	cr_assert_eq(res.events_removed, 299);
	cr_assert_gt(res.bytes_reclaimed, 0);
	struct wb_stream_info si;
	cr_assert_eq(wb_stream_info(c, "big", &si), 0, "%s", wb_errmsg(c));
	cr_assert_eq(si.metadata.max_count, 1);
	cr_assert(!si.deleted && !si.tombstoned);
	wb_close(c);
}
