/* The `whizbang` command-line tool against a real whizbangd: commands,
 * human and JSON output, exit statuses. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "e2e_util.h"

TestSuite(cli, .fini = e2e_suite_fini, .timeout = 120);

static size_t count_lines(const char *text)
{
	size_t n = 0;
	for (const char *p = text; *p != '\0'; p++)
		if (*p == '\n')
			n++;
	return n;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "cannot write %s", path);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* ---------------------------------------------------------------- tests */

Test(cli, ping)
{
	struct cli_run r = cli_suite_start(NULL);
	CLI_EXPECT(&r, 0, "ping", "ping");
	cr_assert_neq(r.out[0], '\0', "ping printed nothing");
	CLI_EXPECT(&r, 0, "ping --json", "--json", "ping");
	cli_expect_has(r.out, "\"pong\":true", "ping --json");
	cli_suite_stop(&r);
}

Test(cli, append_data_file_metadata_and_read)
{
	struct cli_run r = cli_suite_start(NULL);
	CLI_EXPECT(&r, 0, "append --data", "append", "orders-1", "--type", "Created", "--data",
	           "hello world");
	CLI_HAS(r.out, "append output", "version=0", "position=1");
	cli_run_free(&r);

	char path[160], mpath[160];
	snprintf(path, sizeof(path), "%s/data.txt", e2e_srv.dir);
	snprintf(mpath, sizeof(mpath), "%s/meta.json", e2e_srv.dir);
	const char file_data[] = "from a file\nline two\n";
	const char meta_data[] = "{\"source\": \"file\"}";
	write_file(path, file_data, strlen(file_data));
	write_file(mpath, meta_data, strlen(meta_data));
	char at[170], mat[170];
	snprintf(at, sizeof(at), "@%s", path);
	snprintf(mat, sizeof(mat), "@%s", mpath);
	CLI_EXPECT(&r, 0, "append --data @FILE", "append", "orders-1", "--type", "Updated",
	           "--data", at, "--metadata", "meta-1");
	cli_expect_has(r.out, "position=2", "append output");
	CLI_EXPECT(&r, 0, "append --metadata @FILE", "append", "orders-1", "--type", "Shipped",
	           "--data", "third", "--metadata", mat);
	cli_run_free(&r);

	/* The bytes arrived exactly. */
	struct wb_client *c = e2e_suite_client("test_cli");
	struct wb_page p;
	cr_assert_eq(wb_read_stream(c, "orders-1", 0, false, 0, &p), 0);
	cr_assert_eq(p.count, 3);
	cr_assert_eq(p.events[0].data_len, 11);
	cr_assert_eq(memcmp(p.events[0].data, "hello world", 11), 0);
	cr_assert_eq(p.events[0].metadata_len, 0);
	cr_assert_eq(p.events[1].data_len, strlen(file_data), "@FILE data is %zu bytes",
	             p.events[1].data_len);
	cr_assert_eq(memcmp(p.events[1].data, file_data, strlen(file_data)), 0);
	cr_assert_str_eq(p.events[1].type, "Updated");
	cr_assert_eq(p.events[1].metadata_len, 6);
	cr_assert_eq(memcmp(p.events[1].metadata, "meta-1", 6), 0);
	cr_assert_eq(p.events[2].metadata_len, strlen(meta_data));
	cr_assert_eq(memcmp(p.events[2].metadata, meta_data, strlen(meta_data)), 0);
	wb_page_free(&p);
	wb_close(c);

	CLI_EXPECT(&r, 0, "read", "read", "orders-1");
	cr_assert_eq(count_lines(r.out), 3, "read printed:\n%s", r.out);
	CLI_HAS(r.out, "read", "hello world", "from a file", "Shipped");
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read --backwards --limit 1", "read", "orders-1", "--backwards",
	           "--limit", "1");
	cr_assert_eq(count_lines(r.out), 1, "read --backwards --limit 1 printed:\n%s", r.out);
	cli_expect_has(r.out, "third", "read --backwards --limit 1");
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read --from 1 --limit 1", "read", "orders-1", "--from", "1", "--limit",
	           "1");
	cr_assert_eq(count_lines(r.out), 1);
	cli_expect_has(r.out, "from a file", "read --from 1");
	cli_run_free(&r);

	CLI(&r, "append", "orders-1", "--type", "T", "--data", "@/nonexistent/whizbang-e2e");
	cr_assert_neq(r.status, 0, "append --data @MISSING succeeded");
	cli_expect_has(r.err, "/nonexistent/whizbang-e2e", "append --data @MISSING");
	cli_run_free(&r);

	CLI(&r, "read", "no-such-stream");
	cr_assert_eq(r.status, 1, "read of a missing stream: exit %d", r.status);
	cli_expect_has(r.err, "NOT_FOUND", "read of a missing stream");
	cli_suite_stop(&r);
}

Test(cli, expected_version)
{
	struct cli_run r = cli_suite_start(NULL);
	CLI_EXPECT(&r, 0, "first no-stream append", "append", "once", "--type", "T", "--data", "1",
	           "--expected-version", "no-stream");
	CLI(&r, "append", "once", "--type", "T", "--data", "2", "--expected-version", "no-stream");
	cr_assert_neq(r.status, 0, "a second no-stream append succeeded");
	cr_assert_neq(r.status, 2, "a refused append is not a usage error");
	cli_expect_has(r.err, "WRONG_EXPECTED_VERSION", "second no-stream append");
	CLI_EXPECT(&r, 0, "append at exact version 0", "append", "once", "--type", "T", "--data",
	           "3", "--expected-version", "0");
	CLI(&r, "append", "once", "--type", "T", "--data", "4", "--expected-version", "5");
	cr_assert_eq(r.status, 1);
	cli_expect_has(r.err, "WRONG_EXPECTED_VERSION", "append at a wrong exact version");
	CLI(&r, "append", "fresh", "--type", "T", "--data", "5", "--expected-version", "exists");
	cr_assert_eq(r.status, 1);
	cli_expect_has(r.err, "WRONG_EXPECTED_VERSION", "exists on a new stream");
	CLI_EXPECT(&r, 0, "append any", "append", "once", "--type", "T", "--data", "6",
	           "--expected-version", "any");
	CLI_EXPECT(&r, 0, "stream-info", "--json", "stream-info", "once");
	cli_expect_has(r.out, "\"event_count\":3", "stream-info --json");
	cli_suite_stop(&r);
}

Test(cli, client_supplied_id_and_retry)
{
	e2e_suite_start(NULL);
	const char *uuid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "append --id", "append", "ided", "--type", "T", "--data", "x", "--id",
	           uuid);
	CLI_EXPECT(&r, 0, "retry of append --id", "--json", "append", "ided", "--type", "T",
	           "--data", "x", "--id", uuid);
	CLI_HAS(r.out, "retry", "\"idempotent_replay\":true", "\"position\":1");
	CLI_EXPECT(&r, 0, "read --json", "--json", "read", "ided");
	cr_assert_eq(count_lines(r.out), 1);
	char want[64];
	snprintf(want, sizeof(want), "\"id\":\"%s\"", uuid);
	cli_expect_has(r.out, want, "read --json");
	CLI(&r, "append", "ided", "--type", "T", "--data", "x", "--id", "not-a-uuid");
	cr_assert_eq(r.status, 2, "a malformed --id: exit %d", r.status);
	cli_suite_stop(&r);
}

struct spec {
	const char *stream, *type, *data;
};

static const struct spec specs[] = {
        {"acct-1", "Opened", "alpha"},          {"acct-2", "Opened", "beta"},
        {"user-1", "Joined", "gamma"},          {"acct-1", "Deposited", "delta"},
        {"acct-2", "Closed", "say \"hi\"\\\n"}, {"user-1", "Left", "epsilon"},
};
#define NSPECS (sizeof(specs) / sizeof(specs[0]))

/* The JSON form of specs[i].data as the CLI must print it. */
static const char *json_data(size_t i)
{
	return i == 4 ? "\"data\":\"say \\\"hi\\\"\\\\\\n\"" : NULL;
}

static void check_json_line(const char *line, size_t i)
{
	char want[160];
	cr_assert(line[0] == '{' && line[strlen(line) - 1] == '}', "not a JSON object: %s", line);
	snprintf(want, sizeof(want), "\"position\":%zu,", i + 1);
	cli_expect_has(line, want, "read-all --json line");
	snprintf(want, sizeof(want), "\"stream\":\"%s\"", specs[i].stream);
	cli_expect_has(line, want, "read-all --json line");
	snprintf(want, sizeof(want), "\"type\":\"%s\"", specs[i].type);
	cli_expect_has(line, want, "read-all --json line");
	if (json_data(i) != NULL)
		snprintf(want, sizeof(want), "%s", json_data(i));
	else
		snprintf(want, sizeof(want), "\"data\":\"%s\"", specs[i].data);
	cli_expect_has(line, want, "read-all --json line");
}

/* Checks that out holds exactly the JSON lines of the specs selected by
 * keep, in order (or in reverse). */
static void check_json_selection(const char *out, const bool keep[NSPECS], bool reverse,
                                 size_t limit)
{
	size_t want[NSPECS], n = 0;
	for (size_t k = 0; k < NSPECS; k++) {
		size_t i = reverse ? NSPECS - 1 - k : k;
		if (keep[i] && n < limit)
			want[n++] = i;
	}
	cr_assert_eq(count_lines(out), n, "want %zu lines, got:\n%s", n, out);
	for (size_t k = 0; k < n; k++) {
		char line[1024];
		cli_nth_line(out, k, line, sizeof(line));
		check_json_line(line, want[k]);
	}
}

static void fill_specs(void)
{
	for (size_t i = 0; i < NSPECS; i++) {
		struct cli_run r = {0};
		CLI_EXPECT(&r, 0, "append", "append", specs[i].stream, "--type", specs[i].type,
		           "--data", specs[i].data);
		cli_run_free(&r);
	}
}

Test(cli, read_all_json_and_filters)
{
	e2e_suite_start(NULL);
	fill_specs();
	struct cli_run r = {0};
	bool keep[NSPECS];

	CLI_EXPECT(&r, 0, "read-all --json", "--json", "read-all");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = true;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read-all --backwards --limit 2", "read-all", "--json", "--backwards",
	           "--limit", "2");
	check_json_selection(r.out, keep, true, 2);
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read-all --from 3 --limit 2", "read-all", "--json", "--from", "3",
	           "--limit", "2");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = i >= 2;
	check_json_selection(r.out, keep, false, 2);
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read-all --stream-prefix", "read-all", "--json", "--stream-prefix",
	           "acct-");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = strncmp(specs[i].stream, "acct-", 5) == 0;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read-all --type --type", "read-all", "--json", "--type", "Opened",
	           "--type", "Left");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] =
		        strcmp(specs[i].type, "Opened") == 0 || strcmp(specs[i].type, "Left") == 0;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read-all --stream-prefix --type", "read-all", "--json",
	           "--stream-prefix", "acct-2", "--type", "Closed");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = i == 4;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	cli_run_free(&r);

	CLI_EXPECT(&r, 0, "read-all with no match", "read-all", "--json", "--type", "NoSuchType");
	cr_assert_eq(r.out[0], '\0', "read-all with no match printed:\n%s", r.out);
	cli_run_free(&r);

	/* Human output names the events too. */
	CLI_EXPECT(&r, 0, "read-all", "read-all");
	cr_assert_eq(count_lines(r.out), NSPECS);
	CLI_HAS(r.out, "read-all", "acct-1", "epsilon");
	cli_suite_stop(&r);
}

Test(cli, stream_info)
{
	e2e_suite_start(NULL);
	fill_specs();
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "stream-info", "stream-info", "acct-1");
	CLI_HAS(r.out, "stream-info", "last_version: 1", "event_count: 2", "first_position: 1",
	        "last_position: 4");
	CLI_EXPECT(&r, 0, "stream-info --json", "--json", "stream-info", "user-1");
	CLI_HAS(r.out, "stream-info --json", "\"stream\":\"user-1\"", "\"last_version\":1",
	        "\"first_position\":3", "\"last_position\":6");
	CLI(&r, "stream-info", "nobody");
	cr_assert_eq(r.status, 1);
	cli_expect_has(r.err, "NOT_FOUND", "stream-info of a missing stream");
	cli_suite_stop(&r);
}

Test(cli, usage_errors_exit_2)
{
	struct cli_run r = cli_suite_start(NULL);
	CLI(&r, "frobnicate");
	cr_assert_eq(r.status, 2, "unknown command: exit %d", r.status);
	cli_expect_has(r.err, "frobnicate", "unknown command");
	CLI(&r, "read", "s", "--no-such-option");
	cr_assert_eq(r.status, 2, "unknown option: exit %d", r.status);
	CLI(&r, "append", "s", "--type", "T");
	cr_assert_eq(r.status, 2, "append without --data: exit %d", r.status);
	CLI(&r, "read");
	cr_assert_eq(r.status, 2, "read without a stream: exit %d", r.status);
	cli_run_free(&r);
	const char *none[] = {NULL};
	cli_run(&r, none);
	cr_assert_eq(r.status, 2, "no command: exit %d", r.status);
	cli_run_free(&r);
	/* None of that reached the store. */
	CLI_EXPECT(&r, 0, "read-all", "read-all");
	cr_assert_eq(r.out[0], '\0');
	cli_suite_stop(&r);
}

Test(cli, server_not_running)
{
	/* A port that nothing listens on: bind one, then close it. */
	int port;
	close(e2e_loopback_socket(false, &port));
	char address[32];
	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	const char *cmds[][4] = {{"ping", NULL}, {"read", "s", NULL}, {"read-all", NULL}};
	for (size_t k = 0; k < 3; k++) {
		const char *args[8] = {"--server", address, "--timeout-ms", "5000"};
		size_t n = 4;
		for (size_t i = 0; cmds[k][i] != NULL; i++)
			args[n++] = cmds[k][i];
		args[n] = NULL;
		struct cli_run r = {0};
		cli_run(&r, args);
		cr_assert_eq(r.status, 1, "%s with no server: exit %d", cmds[k][0], r.status);
		CLI_HAS(r.err, "no server", "error:", address, "refused");
		cli_run_free(&r);
	}
}

/* More events than one page holds: read and read-all page through them,
 * and --limit spans pages. */
Test(cli, reads_page_through_long_streams)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "test_cli");
	enum { N = 2500, CHUNK = 500 };
	static char text[N][16];
	static struct wb_new_event evs[CHUNK];
	for (int base = 0; base < N; base += CHUNK) {
		for (int i = 0; i < CHUNK; i++) {
			snprintf(text[base + i], sizeof(text[0]), "n%05d", base + i);
			evs[i] = (struct wb_new_event){
			        .type = "Many", .data = text[base + i], .data_len = 6};
		}
		struct wb_append_result res;
		cr_assert_eq(wb_append(c, "many", WB_EXPECT_ANY, 0, evs, CHUNK, &res), 0);
	}
	wb_close(c);
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "read of 2500 events", "read", "many");
	cr_assert_eq(count_lines(r.out), N, "read printed %zu lines", count_lines(r.out));
	CLI_HAS(r.out, "read", "n00000", "n02499");
	CLI_EXPECT(&r, 0, "read-all --limit 1500", "read-all", "--limit", "1500", "--json");
	cr_assert_eq(count_lines(r.out), 1500, "read-all --limit 1500 printed %zu lines",
	             count_lines(r.out));
	char line[1024];
	cli_nth_line(r.out, 1499, line, sizeof(line));
	cli_expect_has(line, "\"position\":1500,", "line 1500");
	CLI_EXPECT(&r, 0, "read --backwards --limit 1200", "read", "many", "--backwards", "--limit",
	           "1200");
	cr_assert_eq(count_lines(r.out), 1200);
	cli_nth_line(r.out, 0, line, sizeof(line));
	cli_expect_has(line, "n02499", "first line backwards");
	cli_nth_line(r.out, 1199, line, sizeof(line));
	cli_expect_has(line, "n01300", "last line backwards");
	cli_suite_stop(&r);
}

Test(cli, append_several_events_stats_and_server_from_environment)
{
	struct cli_run r = cli_suite_start(NULL);
	CLI_EXPECT(&r, 0, "append with three --data", "--json", "append", "multi", "--type", "T",
	           "--data", "one", "--data", "two", "--data", "three");
	CLI_HAS(r.out, "append of three", "\"first_position\":1", "\"position\":3",
	        "\"version\":2");
	CLI_EXPECT(&r, 0, "stats", "stats");
	CLI_HAS(r.out, "stats", "connections_current", "last_position");
	cli_run_free(&r);

	/* $WHIZBANG_SERVER stands in for --server. */
	cr_assert_eq(setenv("WHIZBANG_SERVER", e2e_srv.address, 1), 0);
	const char *args[] = {"read", "multi", NULL};
	cli_run(&r, args);
	unsetenv("WHIZBANG_SERVER");
	cli_expect_status(&r, 0, "read with $WHIZBANG_SERVER");
	cr_assert_eq(count_lines(r.out), 3);
	cli_expect_has(r.out, "three", "read with $WHIZBANG_SERVER");
	cli_suite_stop(&r);
}
