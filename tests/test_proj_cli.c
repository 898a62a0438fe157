/* Projections through the `whizbang` command-line tool against a real
 * whizbangd: apply, get, query with its cursor, indexes, explain, the
 * ledger's explosions and outcomes, verify, and the exit statuses. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "e2e_util.h"

TestSuite(proj_cli, .fini = e2e_suite_fini, .timeout = 120);

/* Applies ops through `whizbang apply`, requires success and returns the
 * sequence it printed ("committed N watermark=W"). */
static uint64_t apply_ok(struct cli_run *r, const char *ops)
{
	CLI_EXPECT(r, 0, ops, "apply", "--projection", "cli-test", ops);
	uint64_t seq = 0, wm = 0;
	const char *line = strstr(r->out, "committed ");
	cr_assert_not_null(line, "apply printed no sequence:\n%s", r->out);
	cr_assert_eq(sscanf(line, "committed %" SCNu64 " watermark=%" SCNu64, &seq, &wm), 2,
	             "apply printed: %s", r->out);
	cr_assert_geq(wm, seq, "apply answered before the watermark passed its sequence");
	return seq;
}

/* The next sequence a lease would get, from `whizbang --json watermark`. */
static uint64_t next_sequence(void)
{
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "watermark", "--json", "watermark");
	const char *p = strstr(r.out, "\"next_sequence\":");
	cr_assert_not_null(p, "watermark --json: %s", r.out);
	uint64_t next = strtoull(p + strlen("\"next_sequence\":"), NULL, 10);
	cli_run_free(&r);
	return next;
}

static const char three_orders[] =
        "upsert Order \"o-1\" {customer_id: \"c-42\", status: \"Pending\", total: 120}; "
        "upsert Order \"o-2\" {customer_id: \"c-42\", status: \"Pending\", total: 80}; "
        "upsert Order \"o-3\" {customer_id: \"c-7\", status: \"Pending\", total: 15}";

/* ---------------------------------------------------------------- tests */

Test(proj_cli, apply_upsert_then_get)
{
	struct cli_run r = cli_suite_start(NULL);
	uint64_t seq = apply_ok(&r, "upsert Order \"o-1\" {customer_id: \"c-42\", status: "
	                            "\"Pending\", total: 120, ratio: 0.5, paid: false, note: null, "
	                            "raw: x\"0aff\"}");
	cli_expect_has(r.out, "op 1 upsert: affected 1", "apply upsert");

	CLI_EXPECT(&r, 0, "get", "get", "Order", "o-1");
	char want[128];
	CLI_HAS(r.out, "get", "Order o-1\n", "version: 1\n");
	snprintf(want, sizeof(want), "created_sequence: %" PRIu64 "\n", seq);
	cli_expect_has(r.out, want, "get");
	snprintf(want, sizeof(want), "updated_sequence: %" PRIu64 "\n", seq);
	cli_expect_has(r.out, want, "get");
	/* Typed values: a string is quoted, an int bare, a double has a point. */
	CLI_HAS(r.out, "get", "  customer_id: \"c-42\"\n", "  total: 120\n", "  ratio: 0.5\n",
	        "  paid: false\n", "  note: null\n", "  raw: x\"0aff\"\n");
	/* Fields come sorted by name. */
	cr_assert_lt(strstr(r.out, "customer_id:"), strstr(r.out, "total:"), "fields unsorted:\n%s",
	             r.out);

	CLI_EXPECT(&r, 0, "get --json", "--json", "get", "Order", "o-1");
	CLI_HAS(r.out, "get --json", "{\"type\":\"Order\",\"id\":\"o-1\",\"version\":1,",
	        "\"customer_id\":\"c-42\"", "\"total\":120", "\"ratio\":0.5", "\"note\":null",
	        "\"raw\":{\"base64\":\"Cv8=\"}");

	/* A merge keeps the other fields and bumps the version. */
	uint64_t seq2 = apply_ok(&r, "upsert Order \"o-1\" merge {status: \"Paid\"}");
	CLI_EXPECT(&r, 0, "get after merge", "get", "Order", "o-1");
	CLI_HAS(r.out, "get after merge", "version: 2\n", "  status: \"Paid\"\n", "  total: 120\n");
	snprintf(want, sizeof(want), "created_sequence: %" PRIu64 "\n", seq);
	cli_expect_has(r.out, want, "get after merge");
	snprintf(want, sizeof(want), "updated_sequence: %" PRIu64 "\n", seq2);
	cli_expect_has(r.out, want, "get after merge");

	/* NOT_FOUND passes through: exit 1 with the code. */
	CLI_EXPECT(&r, 1, "get of a missing entity", "get", "Order", "o-404");
	cli_expect_has(r.err, "error: NOT_FOUND: ", "get of a missing entity");
	CLI_EXPECT(&r, 2, "get without an id", "get", "Order");
	cli_suite_stop(&r);
}

Test(proj_cli, update_by_where_prints_what_matched)
{
	struct cli_run r = cli_suite_start(NULL);
	apply_ok(&r, three_orders);
	apply_ok(&r, "update Order where customer_id == \"c-42\" set status = \"Paid\", inc "
	             "revision by 1");
	CLI_HAS(r.out, "apply update", "op 1 update: matched 2, affected 2", " via ");

	CLI_EXPECT(&r, 0, "get o-1", "get", "Order", "o-1");
	CLI_HAS(r.out, "get o-1", "version: 2\n", "  status: \"Paid\"\n", "  revision: 1\n");
	CLI_EXPECT(&r, 0, "get o-3", "get", "Order", "o-3");
	CLI_HAS(r.out, "o-3 does not match", "version: 1\n", "  status: \"Pending\"\n");
	cli_expect_not(r.out, "revision", "o-3 does not match");

	/* A clause that matches nothing is a no-op; --json shows the figures. */
	CLI_EXPECT(&r, 0, "apply --json", "--json", "apply", "--projection", "cli-test",
	           "update Order where customer_id == \"c-0\" set status = \"Lost\"");
	cli_expect_has(r.out, "\"applied\":true,\"apply_error\":\"OK\"", "apply --json");
	cli_expect_has(r.out, "{\"op\":1,\"kind\":\"update\",\"affected\":0,\"matched\":0,",
	               "apply --json");
	cli_suite_stop(&r);
}

Test(proj_cli, delete_by_where)
{
	struct cli_run r = cli_suite_start(NULL);
	apply_ok(&r, three_orders);
	apply_ok(&r, "delete Order where total < 100");
	cli_expect_has(r.out, "op 1 delete: matched 2, affected 2", "delete by where");
	CLI_EXPECT(&r, 1, "a deleted entity", "get", "Order", "o-2");
	cli_expect_has(r.err, "NOT_FOUND", "a deleted entity");
	CLI_EXPECT(&r, 1, "a deleted entity", "get", "Order", "o-3");
	CLI_EXPECT(&r, 0, "the entity the clause did not match", "get", "Order", "o-1");
	CLI_EXPECT(&r, 0, "query after delete", "query", "Order");
	cli_expect_has(r.out, "o-1  version=1  {", "query after delete");
	cli_expect_not(r.out, "o-2", "query after delete");
	cli_expect_has(r.out, "-- 1 entity, end\n", "query after delete");
	cli_suite_stop(&r);
}

Test(proj_cli, apply_failure_is_all_or_nothing_and_exits_1)
{
	struct cli_run r = cli_suite_start(NULL);
	apply_ok(&r, three_orders);
	/* The increment of a string fails at op 2; op 1 must not take effect. */
	CLI_EXPECT(&r, 1, "a failing apply", "apply", "--projection", "cli-test",
	           "upsert Order \"o-9\" {total: 1}; update Order where customer_id == \"c-7\" inc "
	           "status "
	           "by 1");
	cli_expect_has(r.out, "committed ", "a failing apply is still committed");
	cli_expect_has(r.err, "not applied, no op took effect: failed at op 2 (update)",
	               "apply error");
	CLI_EXPECT(&r, 1, "the upsert of a failed entry", "get", "Order", "o-9");
	cli_expect_has(r.err, "NOT_FOUND", "the upsert of a failed entry");
	CLI(&r, "get", "Order", "o-3");
	cli_expect_has(r.out, "version: 1\n", "the update of a failed entry");

	CLI_EXPECT(&r, 0, "ledger", "ledger");
	cli_expect_has(r.out, "[failed at op 2: ", "ledger shows the failure");
	cli_expect_has(r.out, "[applied ok]", "ledger shows the success");
	CLI(&r, "--json", "ledger");
	CLI_HAS(r.out, "ledger --json", "\"applied\":true,\"apply_error\":\"", "\"failed_op\":2");
	cli_suite_stop(&r);
}

Test(proj_cli, index_create_list_drop_and_explain)
{
	struct cli_run r = cli_suite_start(NULL);
	apply_ok(&r, three_orders);

	CLI_EXPECT(&r, 0, "explain before the index", "explain", "Order",
	           "customer_id == \"c-42\"");
	CLI_HAS(r.out, "explain before the index", "strategy: scan\n", "type_entities: 3\n",
	        "refused: no\n");

	CLI_EXPECT(&r, 0, "index list, none", "index", "list");
	cli_expect_has(r.out, "(no indexes)", "index list, none");

	CLI_EXPECT(&r, 0, "index create", "index", "create", "Order", "customer_id");
	CLI_HAS(r.out, "index create", "created index Order.customer_id at sequence ",
	        " entries=3\n");

	CLI_EXPECT(&r, 0, "index list", "index", "list");
	cli_expect_has(r.out, "Order.customer_id  entries=3  created_sequence=", "index list");
	CLI_EXPECT(&r, 0, "index list of another type", "index", "list", "Customer");
	cli_expect_not(r.out, "Order.customer_id", "index list of another type");
	CLI_EXPECT(&r, 0, "index list --json", "--json", "index", "list", "Order");
	cli_expect_has(r.out, "{\"type\":\"Order\",\"field\":\"customer_id\",\"entries\":3,",
	               "index list --json");

	CLI_EXPECT(&r, 0, "explain with the index", "explain", "Order", "customer_id == \"c-42\"");
	cli_expect_has(r.out, "strategy: index\n", "explain with the index");
	cli_expect_has(r.out, "customer_id", "the plan names the index");
	CLI_EXPECT(&r, 0, "explain --json", "--json", "explain", "Order",
	           "customer_id == \"c-42\" and total > 10");
	cli_expect_has(r.out, "{\"strategy\":\"index\",\"plan\":", "explain --json");

	/* The index serves queries, and the plan says so. */
	CLI_EXPECT(&r, 0, "query through the index", "query", "Order", "customer_id == \"c-42\"");
	CLI_HAS(r.out, "query through the index", "o-1  version=1", "o-2  version=1");
	cli_expect_not(r.out, "o-3", "query through the index");
	cli_expect_has(r.out, "(index, examined ", "query through the index");

	/* Creating it again and dropping a missing one are errors. */
	CLI_EXPECT(&r, 1, "index create twice", "index", "create", "Order", "customer_id");
	cli_expect_has(r.err, "error: BAD_REQUEST: ", "index create twice");

	CLI_EXPECT(&r, 0, "index drop", "index", "drop", "Order", "customer_id");
	cli_expect_has(r.out, "dropped index Order.customer_id at sequence ", "index drop");
	CLI(&r, "index", "list");
	cli_expect_has(r.out, "(no indexes)", "index list after drop");
	CLI_EXPECT(&r, 1, "index drop twice", "index", "drop", "Order", "customer_id");
	cli_expect_has(r.err, "error: NOT_FOUND: ", "index drop twice");
	CLI(&r, "explain", "Order", "customer_id == \"c-42\"");
	cli_expect_has(r.out, "strategy: scan\n", "explain after the drop");

	CLI_EXPECT(&r, 2, "index create without a field", "index", "create", "Order");
	CLI_EXPECT(&r, 2, "an unknown index subcommand", "index", "rebuild", "Order", "x");
	cli_suite_stop(&r);
}

Test(proj_cli, query_pages_with_limit_and_after)
{
	struct cli_run r = cli_suite_start(NULL);
	apply_ok(&r, "upsert Item \"i-1\" {n: 1}; upsert Item \"i-2\" {n: 2}; upsert Item \"i-3\" "
	             "{n: 3}; upsert Item \"i-4\" {n: 4}; upsert Item \"i-5\" {n: 5}");

	CLI_EXPECT(&r, 0, "first page", "query", "Item", "--limit", "2");
	char line[256];
	cli_line_starting(r.out, "i-1", line, sizeof(line));
	cr_assert_str_eq(line, "i-1  version=1  {n: 1}");
	cli_expect_has(r.out, "i-2  version=1  {n: 2}\n", "first page");
	cli_expect_not(r.out, "i-3", "first page");
	CLI_HAS(r.out, "first page", "-- 2 entities, more after i-2 (--after i-2)\n", "-- plan: ");

	CLI_EXPECT(&r, 0, "second page", "query", "Item", "--limit", "2", "--after", "i-2");
	cli_expect_not(r.out, "i-2  ", "after is exclusive");
	CLI_HAS(r.out, "second page", "i-3  version=1", "i-4  version=1");
	cli_expect_not(r.out, "i-5", "second page");

	CLI_EXPECT(&r, 0, "last page", "query", "Item", "--after", "i-4", "--limit", "2");
	CLI_HAS(r.out, "last page", "i-5  version=1", "-- 1 entity, end\n");

	/* --all follows the cursor to the end, whatever the page size. */
	CLI_EXPECT(&r, 0, "--all", "query", "Item", "--all", "--limit", "2");
	for (int k = 1; k <= 5; k++) {
		char want[32];
		snprintf(want, sizeof(want), "i-%d  version=1", k);
		cli_expect_has(r.out, want, "--all");
	}
	cli_expect_has(r.out, "-- 5 entities, end\n", "--all");

	/* A where clause, and the JSON summary with the cursor. */
	CLI_EXPECT(&r, 0, "query with a clause", "query", "Item", "n >= 3 and n != 4", "--all");
	cli_expect_not(r.out, "i-1  ", "query with a clause");
	cli_expect_not(r.out, "i-4  ", "query with a clause");
	CLI_HAS(r.out, "query with a clause", "i-3  version=1", "i-5  version=1",
	        "(scan, examined ");
	CLI_EXPECT(&r, 0, "query --json", "--json", "query", "Item", "--limit", "2");
	cli_expect_has(r.out, "{\"type\":\"Item\",\"id\":\"i-1\",\"version\":1,", "query --json");
	cli_expect_has(r.out, "{\"entities\":2,\"end\":false,\"next_after\":\"i-2\",\"strategy\":",
	               "query --json");
	cli_suite_stop(&r);
}

Test(proj_cli, an_unindexed_scan_over_max_scan_is_refused)
{
	const char *extra[] = {"--max-scan", "3", NULL};
	struct cli_run r = cli_suite_start(extra);
	apply_ok(&r, "upsert Item \"i-1\" {n: 1}; upsert Item \"i-2\" {n: 2}; upsert Item \"i-3\" "
	             "{n: 3}; upsert Item \"i-4\" {n: 4}");
	CLI_EXPECT(&r, 0, "explain of a refused scan", "explain", "Item", "n == 2");
	CLI_HAS(r.out, "explain of a refused scan", "refused: yes", "max_scan: 3\n");
	CLI_EXPECT(&r, 1, "a refused query", "query", "Item", "n == 2");
	cli_expect_has(r.err, "error: QUERY_TOO_EXPENSIVE: ", "a refused query");
	/* An update by the same clause fails when applied, as a whole. */
	CLI_EXPECT(&r, 1, "a refused update", "apply", "--projection", "cli-test",
	           "update Item where n == 2 set m = 1");
	cli_expect_has(r.err, "error: QUERY_TOO_EXPENSIVE: not applied", "a refused update");

	CLI_EXPECT(&r, 0, "index create", "index", "create", "Item", "n");
	CLI_EXPECT(&r, 0, "the query through the index", "query", "Item", "n == 2");
	cli_expect_has(r.out, "i-2  version=1", "the query through the index");
	apply_ok(&r, "update Item where n == 2 set m = 1");
	cli_expect_has(r.out, "matched 1, affected 1", "the update through the index");
	cli_suite_stop(&r);
}

Test(proj_cli, parse_errors_exit_2_with_the_column_before_anything_is_sent)
{
	struct cli_run r = cli_suite_start(NULL);
	uint64_t before = next_sequence();

	CLI_EXPECT(&r, 2, "query with a bad clause", "query", "Order",
	           "status == \"x\" or total ==");
	cli_expect_has(r.err, "error: INVALID_EXPRESSION: column 26: expected a value after '=='",
	               "query with a bad clause");
	/* The caret stands under column 26 (two spaces of indent, 25 before). */
	cli_expect_has(r.err, "\n  status == \"x\" or total ==\n                           ^\n",
	               "the caret");

	CLI_EXPECT(&r, 2, "apply with a bad op", "apply", "--projection", "cli-test",
	           "upsert Order \"o-1\" {a: 1}; update Order where a == 1 sett b = 2");
	cli_expect_has(r.err, "error: INVALID_EXPRESSION: column 54: unknown keyword 'sett'",
	               "apply with a bad op");
	CLI_EXPECT(&r, 2, "explain with a bad clause", "--json", "explain", "Order", "a = 1");
	cli_expect_has(r.out, "{\"error\":\"INVALID_EXPRESSION\",\"message\":\"column 3: ",
	               "explain --json");
	cli_expect_has(r.out, "\"column\":3}", "explain --json");

	/* Nothing was leased: the next sequence is where it was. */
	cr_assert_eq(next_sequence(), before, "a bad apply leased a sequence");
	/* And no server is needed to find the error. */
	const char *nowhere[] = {"--server", "127.0.0.1:1",     "apply", "--projection",
	                         "p",        "delete Order wh", NULL};
	cli_run(&r, nowhere);
	cli_expect_status(&r, 2, "apply with a bad op and no server");
	cli_expect_has(r.err, "INVALID_EXPRESSION", "apply with a bad op and no server");

	CLI_EXPECT(&r, 2, "apply without --projection", "apply", "upsert Order \"o-1\" {}");
	CLI_EXPECT(&r, 2, "apply without ops", "apply", "--projection", "cli-test");
	cli_suite_stop(&r);
}

Test(proj_cli, ledger_shows_explosions_and_outcomes)
{
	struct cli_run r = cli_suite_start(NULL);
	/* Ten ids in byte order: the ledger shows eight, then how many more. */
	char ops[1024] = "";
	for (int k = 1; k <= 10; k++)
		snprintf(ops + strlen(ops), sizeof(ops) - strlen(ops),
		         "%supsert Order \"o-%02d\" {customer_id: \"c-%d\"}", k > 1 ? "; " : "", k,
		         k <= 2 ? 42 : 1);
	uint64_t s0 = apply_ok(&r, ops);
	uint64_t s1 =
	        apply_ok(&r, "update Order where customer_id == \"c-42\" set status = \"Paid\"");
	uint64_t s2 =
	        apply_ok(&r, "update Order where customer_id == \"c-1\" set status = \"New\"");
	uint64_t s3 = apply_ok(&r, "delete Order where customer_id == \"c-none\"");

	char from[24];
	snprintf(from, sizeof(from), "%" PRIu64, s0);
	CLI_EXPECT(&r, 0, "ledger", "ledger", "--from", from);
	char prefix[64], line[4096];
	snprintf(prefix, sizeof(prefix), "%" PRIu64 "  committed  cli-test  ", s1);
	cli_line_starting(r.out, prefix, line, sizeof(line));
	cli_expect_has(line, "update Order where customer_id == \"c-42\" set status = \"Paid\"",
	               "ledger entry");
	cli_expect_has(line, "  [applied ok]", "ledger entry");
	cli_expect_has(r.out, "    op 1: matched 2 [o-01, o-02] via ", "the explosion");
	cli_expect_has(r.out,
	               "    op 1: matched 8 [o-03, o-04, o-05, o-06, o-07, o-08, o-09, o-10] via ",
	               "eight ids in full");
	cli_expect_has(r.out, "    op 1: no-op (matched 0, ", "an empty explosion");
	snprintf(prefix, sizeof(prefix), "%" PRIu64 "  committed  ", s2);
	cli_line_starting(r.out, prefix, line, sizeof(line));
	cli_expect_has(line, "customer_id == \"c-1\"", "ledger entry");
	snprintf(prefix, sizeof(prefix), "%" PRIu64 "  committed  ", s3);
	cli_line_starting(r.out, prefix, line, sizeof(line));
	cli_expect_has(line, "delete Order where customer_id == \"c-none\"  [applied ok]",
	               "an entry whose clause matched nothing");

	/* More than eight: the first eight and a count, all with --ids. */
	apply_ok(&r, "update Order where exists(customer_id) set seen = true");
	CLI(&r, "ledger", "--from", from);
	cli_expect_has(r.out,
	               "    op 1: matched 10 [o-01, o-02, o-03, o-04, o-05, o-06, o-07, o-08, … 2 "
	               "more] via ",
	               "a long explosion");
	CLI(&r, "ledger", "--from", from, "--ids");
	cli_expect_has(
	        r.out,
	        "    op 1: matched 10 [o-01, o-02, o-03, o-04, o-05, o-06, o-07, o-08, o-09, "
	        "o-10] via ",
	        "ledger --ids");

	CLI_EXPECT(&r, 0, "ledger --json", "--json", "ledger", "--from", from);
	cli_expect_has(r.out, "\"applied\":true,\"apply_error\":\"OK\"", "ledger --json");
	cli_expect_has(r.out, "\"explosions\":[{\"op\":1,\"count\":2,\"created\":false,",
	               "ledger --json");
	cli_expect_has(r.out, "\"ids\":[\"o-01\",\"o-02\"],\"more\":0}", "ledger --json");
	cli_expect_has(r.out,
	               "\"ids\":[\"o-01\",\"o-02\",\"o-03\",\"o-04\",\"o-05\",\"o-06\",\"o-07\","
	               "\"o-08\"],\"more\":2}",
	               "ledger --json, a long explosion");
	cli_suite_stop(&r);
}

Test(proj_cli, verify_reports_a_match)
{
	struct cli_run r = cli_suite_start(NULL);
	apply_ok(&r, three_orders);
	CLI_EXPECT(&r, 0, "index create", "index", "create", "Order", "customer_id");
	apply_ok(&r, "update Order where customer_id == \"c-42\" inc total by 1.5");
	apply_ok(&r, "delete Order \"o-3\"");

	CLI_EXPECT(&r, 0, "verify", "verify");
	CLI_HAS(r.out, "verify", "verify: match\n", "entities: 2\n");
	char live[256], replay[256];
	cli_line_starting(r.out, "live_digest: ", live, sizeof(live));
	cli_line_starting(r.out, "replay_digest: ", replay, sizeof(replay));
	cr_assert_gt(strlen(live), strlen("live_digest: "), "an empty digest");
	cr_assert_str_eq(live + strlen("live_digest: "), replay + strlen("replay_digest: "));
	cli_expect_not(r.out, "first_difference", "verify");

	CLI_EXPECT(&r, 0, "verify --json", "--json", "verify");
	CLI_HAS(r.out, "verify --json", "{\"match\":true,\"live_digest\":\"",
	        "\"first_difference\":\"\"}");
	CLI_EXPECT(&r, 2, "verify with an argument", "verify", "extra");
	cli_suite_stop(&r);
}
