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
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_util.h"
#include "e2e_util.h"

TestSuite(sub_cli, .fini = e2e_suite_fini, .timeout = 120);

static bool has_cb(const char *out, const void *needle)
{
	return strstr(out, needle) != NULL;
}

static bool lines_cb(const char *out, const void *want)
{
	return cli_count_of(out, "\"position\":") >= *(const size_t *)want;
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
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
	append_n(c, "order-1", "Placed", 3);
	append_n(c, "user-1", "Joined", 2);

	struct cli_child ch;
	const char *args[] = {"--server", e2e_srv.address, "--json", "subscribe",
	                      "--all",    "--credits",     "2",      NULL};
	cli_spawn(&ch, args);
	cr_assert(cli_pump(&ch, CLI_TIMEOUT_MS, has_cb, "\"caught_up\":true"),
	          "no caught-up line:\n%s\n%s", ch.out, ch.err);
	cr_assert_eq(cli_count_of(ch.out, "\"position\":"), 5, "before caught up:\n%s", ch.out);
	const char *cu = strstr(ch.out, "\"caught_up\":true");
	cr_assert_null(strstr(cu, "\"position\":"), "an event after the caught-up line:\n%s",
	               ch.out);

	append_n(c, "order-2", "Placed", 4);
	size_t want = 9;
	cr_assert(cli_pump(&ch, CLI_TIMEOUT_MS, lines_cb, &want), "live events missing:\n%s",
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
	int status = cli_finish(&ch);
	cr_assert_eq(status, 0, "exit %d after SIGINT\n%s", status, ch.err);
	cr_assert_eq(cli_count_of(ch.out, "\"position\":"), 9);
	cli_child_free(&ch);

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
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
	append_n(c, "acct-1", "Opened", 1);
	append_n(c, "acct-1", "Credited", 3);
	append_n(c, "other-1", "Credited", 2);
	wb_close(c);

	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "subscribe --stream --from 2 --count 2", "--json", "subscribe",
	           "--stream", "acct-1", "--from", "2", "--count", "2");
	cr_assert_eq(cli_count_of(r.out, "\"stream\":\"acct-1\""), 2, "%s", r.out);
	cli_expect_has(r.out, "\"version\":2", "from version 2");
	cli_expect_has(r.out, "\"version\":3", "then 3");
	cli_expect_not(r.out, "\"version\":1,", "nothing before the start");

	CLI_EXPECT(&r, 0, "subscribe --stream-prefix --type", "--json", "subscribe", "--all",
	           "--stream-prefix", "acct-", "--type", "Credited", "--count", "3");
	cr_assert_eq(cli_count_of(r.out, "\"type\":\"Credited\""), 3, "%s", r.out);
	cli_expect_not(r.out, "other-1", "prefix filter");
	cli_expect_not(r.out, "Opened", "type filter");

	CLI_EXPECT(&r, 0, "subscribe text", "subscribe", "--all", "--count", "1");
	cli_expect_has(r.out, "acct-1@0  Opened", "text form of an event");
	cli_run_free(&r);
}

/* Ledger entries, then the caught-up line. */
Test(sub_cli, subscribe_ledger)
{
	struct cli_run r = cli_suite_start(NULL);
	CLI_EXPECT(&r, 0, "apply", "apply", "--projection", "p", "upsert Order \"o-1\" {total: 1}");
	CLI_EXPECT(&r, 0, "subscribe --ledger", "--json", "subscribe", "--ledger", "--count", "1");
	cli_expect_has(r.out, "\"sequence\":1", "the first entry");
	cli_run_free(&r);
}

/* A hard delete ends a stream subscription with STREAM_DELETED: the CLI
 * says so and exits 1. */
Test(sub_cli, subscribe_ended_by_hard_delete)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
	append_n(c, "doomed", "E", 1);
	struct cli_child ch;
	const char *args[] = {"--server", e2e_srv.address, "--json", "subscribe",
	                      "--stream", "doomed",        NULL};
	cli_spawn(&ch, args);
	cr_assert(cli_pump(&ch, CLI_TIMEOUT_MS, has_cb, "\"caught_up\":true"), "%s\n%s", ch.out,
	          ch.err);
	cr_assert_eq(wb_delete_stream(c, "doomed", true, NULL), 0, "%s", wb_errmsg(c));
	int status = cli_finish(&ch);
	cr_assert_eq(status, 1, "exit %d\n%s", status, ch.err);
	cli_expect_has(ch.err, "STREAM_DELETED", "the reason");
	cli_child_free(&ch);
	wb_close(c);
}

Test(sub_cli, usage_errors)
{
	struct cli_run r = {0};
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
		cli_run(&r, args);
		cr_assert_eq(r.status, 2, "case %zu (%s %s): exit %d\n%s", k, cases[k][0],
		             cases[k][1] != NULL ? cases[k][1] : "", r.status, r.err);
		cli_expect_has(r.err, "usage:", "usage text");
	}
	cli_run_free(&r);
}

/* ---------------------------------------------------------------- consumers */

Test(sub_cli, consumer_life)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "empty list", "consumer", "list");
	cli_expect_has(r.out, "(no consumer groups)", "empty list");

	CLI_EXPECT(&r, 0, "consumer create", "consumer", "create", "billing", "--all",
	           "--stream-prefix", "inv-", "--ack-timeout", "30s", "--max-deliveries", "5");
	cli_expect_has(r.out, "billing  all prefix=inv-", "create prints the group");
	cli_expect_has(r.out, "ack_timeout=30s max_deliveries=5", "its settings");
	CLI_EXPECT(&r, 1, "create twice", "consumer", "create", "billing", "--all");

	append_n(c, "inv-1", "Issued", 3);
	append_n(c, "x-1", "Other", 1);

	CLI_EXPECT(&r, 0, "read --ack", "--json", "consumer", "read", "billing", "--count", "2",
	           "--ack");
	cr_assert_eq(cli_count_of(r.out, "\"delivery\":1"), 2, "%s", r.out);
	cli_expect_has(r.out, "\"acked\":2,\"checkpoint\":", "ack summary");

	/* Not acked: back to the group when the reader leaves. */
	CLI_EXPECT(&r, 0, "read without ack", "--json", "consumer", "read", "billing", "--count",
	           "5", "--wait-ms", "500");
	cr_assert_eq(cli_count_of(r.out, "\"stream\":\"inv-1\""), 1, "%s", r.out);
	cli_expect_has(r.out, "\"version\":2", "the third event");
	cli_expect_not(r.out, "x-1", "the prefix filter");
	char id[37] = "";
	const char *p = strstr(r.out, "\"id\":\"");
	cr_assert_not_null(p);
	memcpy(id, p + 6, 36);

	CLI_EXPECT(&r, 0, "read again", "consumer", "read", "billing", "--count", "1");
	cli_expect_has(r.out, "delivery=2", "redelivered");
	cli_expect_has(r.out, id, "the same event");

	CLI_EXPECT(&r, 0, "nack park", "consumer", "nack", "billing", id, "--action", "park",
	           "--reason", "bad total");
	cli_expect_has(r.out, "nacked 1, checkpoint", "nack summary");
	CLI_EXPECT(&r, 0, "parked", "consumer", "parked", "billing");
	cli_expect_has(r.out, id, "the parked event");
	cli_expect_has(r.out, ": bad total", "its reason");
	CLI_EXPECT(&r, 0, "parked --json", "--json", "consumer", "parked", "billing");
	cli_expect_has(r.out, "\"reason\":\"bad total\"", "reason in JSON");

	CLI_EXPECT(&r, 0, "replay-parked", "consumer", "replay-parked", "billing");
	cli_expect_has(r.out, "replayed 1", "replayed");
	CLI_EXPECT(&r, 0, "read replayed", "--json", "consumer", "read", "billing", "--count", "1");
	cli_expect_has(r.out, id, "the replayed event");
	CLI_EXPECT(&r, 0, "ack by id", "--json", "consumer", "ack", "billing", id);
	cli_expect_has(r.out, "\"acked\":1,\"checkpoint\":4",
	               "checkpoint past all four (x-1 does not match)");

	CLI_EXPECT(&r, 0, "list --json", "--json", "consumer", "list");
	cli_expect_has(r.out, "\"name\":\"billing\"", "the group");
	cli_expect_has(r.out, "\"checkpoint\":4", "its checkpoint");
	cli_expect_has(r.out, "\"parked\":0", "nothing parked");

	CLI_EXPECT(&r, 0, "delete", "consumer", "delete", "billing");
	cli_expect_has(r.out, "deleted billing", "delete");
	CLI_EXPECT(&r, 1, "delete twice", "consumer", "delete", "billing");
	cli_expect_has(r.err, "NOT_FOUND", "delete twice");
	CLI_EXPECT(&r, 1, "read a deleted group", "consumer", "read", "billing");
	cli_run_free(&r);
	wb_close(c);
}

/* ---------------------------------------------------------------- stream life cycle */

Test(sub_cli, stream_meta_delete_scavenge)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
	append_n(c, "m", "E", 5);
	append_n(c, "soft", "E", 2);
	append_n(c, "hard", "E", 2);
	struct cli_run r = {0};

	CLI_EXPECT(&r, 0, "stream-meta", "stream-meta", "m");
	cli_expect_has(r.out, "max_count: unset\nmax_age: unset\ntruncate_before: unset", "unset");
	CLI_EXPECT(&r, 0, "set max-count", "stream-meta", "m", "--max-count", "2");
	cli_expect_has(r.out, "max_count: 2", "set");
	CLI_EXPECT(&r, 0, "set max-age", "stream-meta", "m", "--max-age", "7d");
	cli_expect_has(r.out, "max_count: 2\nmax_age: 7d", "max-count kept");
	CLI_EXPECT(&r, 0, "stream-meta --json", "--json", "stream-meta", "m");
	cli_expect_has(r.out,
	               "{\"stream\":\"m\",\"max_count\":2,\"max_age_ms\":604800000,"
	               "\"truncate_before\":0}",
	               "json");
	CLI_EXPECT(&r, 0, "read m", "--json", "read", "m");
	cr_assert_eq(cli_count_of(r.out, "\"position\":"), 2, "%s", r.out);
	CLI_EXPECT(&r, 0, "stream-info", "stream-info", "m");
	cli_expect_has(r.out, "deleted: no\ntombstoned: no\nmax_count: 2\nmax_age: 7d",
	               "new fields");

	CLI_EXPECT(&r, 0, "soft delete", "delete", "soft");
	cli_expect_has(r.out, "deleted soft (soft) at version 1", "soft delete");
	CLI_EXPECT(&r, 0, "hard delete", "--json", "delete", "hard", "--hard");
	cli_expect_has(r.out, "{\"stream\":\"hard\",\"hard\":true,\"last_version\":1}", "hard");
	CLI_EXPECT(&r, 1, "append to a hard-deleted stream", "append", "hard", "--type", "E",
	           "--data", "x");
	cli_expect_has(r.err, "STREAM_DELETED", "append after hard delete");
	CLI(&r, "--json", "stream-info", "hard");
	cr_assert(r.status == 1 || strstr(r.out, "\"tombstoned\":true") != NULL,
	          "stream-info of a hard-deleted stream:\n%s\n%s", r.out, r.err);

	/* Three events of m hidden by max-count, two of soft and two of hard. */
	CLI_EXPECT(&r, 0, "scavenge", "--json", "scavenge");
	cli_expect_has(r.out, "\"events_removed\":7", "scavenge");
	CLI_EXPECT(&r, 0, "scavenge again", "scavenge");
	cli_expect_has(r.out, "events_removed: 0", "nothing more");
	cli_expect_not(r.err, "scavenging:", "no progress without a terminal");
	CLI(&r, "--json", "read", "m");
	cr_assert_eq(cli_count_of(r.out, "\"position\":"), 2, "%s", r.out);

	/* Soft-deleted streams take appends again, versions continuing. */
	CLI_EXPECT(&r, 0, "append after soft delete", "append", "soft", "--type", "E", "--data",
	           "again");
	cli_expect_has(r.out, "version=2", "versions continue");
	cli_run_free(&r);
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
	e2e_suite_start(NULL);
	struct wb_client *sub = e2e_suite_client("test_sub_cli"),
	                 *w = e2e_suite_client("test_sub_cli");
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
	e2e_suite_start(NULL);
	char msg[256];
	struct wb_options o = {.client_name = "bound", .timeout_ms = 10000, .max_queued = 3};
	struct wb_client *sub, *w = e2e_suite_client("test_sub_cli");
	cr_assert_eq(wb_connect(&sub, e2e_srv.address, &o, msg, sizeof(msg)), 0, "%s", msg);
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
	e2e_suite_start(NULL);
	struct wb_client *sub = e2e_suite_client("test_sub_cli"),
	                 *w = e2e_suite_client("test_sub_cli");
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
	e2e_suite_start(NULL);
	struct wb_client *sub = e2e_suite_client("test_sub_cli"),
	                 *w = e2e_suite_client("test_sub_cli");
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
	e2e_suite_start(NULL);
	struct wb_client *sub = e2e_suite_client("test_sub_cli"),
	                 *w = e2e_suite_client("test_sub_cli");
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
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
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
	struct wb_client *c = e2e_suite_start_client(NULL, "test_sub_cli");
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
