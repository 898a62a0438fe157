/* The `whizbang` command-line tool against a real whizbangd: commands,
 * human and JSON output, exit statuses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "e2e_util.h"

extern char **environ;

static struct e2e_server srv;

static void teardown(void)
{
	e2e_cleanup(&srv);
}

TestSuite(cli, .fini = teardown, .timeout = 120);

#define CLI_TIMEOUT_MS 20000

struct run {
	int status; /* exit status; 128 + signal when killed */
	char *out;
	char *err;
};

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

static void append_buf(char **buf, size_t *len, const char *p, size_t n)
{
	char *b = realloc(*buf, *len + n + 1);
	cr_assert_not_null(b);
	memcpy(b + *len, p, n);
	*len += n;
	b[*len] = '\0';
	*buf = b;
}

/* Runs $WHIZBANG_CLI with argv (NULL-terminated, program name excluded),
 * collecting stdout and stderr, for at most CLI_TIMEOUT_MS. */
static void run_argv(struct run *r, const char *const *args)
{
	const char *bin = getenv("WHIZBANG_CLI");
	cr_assert(bin != NULL && bin[0] != '\0', "WHIZBANG_CLI is not set");
	const char *argv[32];
	size_t n = 0;
	argv[n++] = bin;
	for (size_t i = 0; args[i] != NULL; i++) {
		cr_assert_lt(n, 31);
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
	pid_t pid;
	int rc = posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	close(err[1]);
	cr_assert_eq(rc, 0, "cannot spawn %s: %s", bin, strerror(rc));

	memset(r, 0, sizeof(*r));
	size_t olen = 0, elen = 0;
	append_buf(&r->out, &olen, "", 0);
	append_buf(&r->err, &elen, "", 0);
	struct pollfd p[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
	int open_fds = 2;
	int64_t deadline = e2e_now_ms() + CLI_TIMEOUT_MS;
	bool timed_out = false;
	while (open_fds > 0) {
		int64_t left = deadline - e2e_now_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
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
					append_buf(&r->out, &olen, buf, (size_t)m);
				else
					append_buf(&r->err, &elen, buf, (size_t)m);
			} else if (m == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
			}
		}
	}
	if (timed_out)
		kill(pid, SIGKILL);
	for (int i = 0; i < 2; i++)
		if (p[i].fd >= 0)
			close(p[i].fd);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	cr_assert(!timed_out, "the CLI ran for more than %d ms", CLI_TIMEOUT_MS);
	r->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs the CLI with --server ADDRESS and then the given arguments. */
#define CLI(r, ...)                                                                                \
	do {                                                                                       \
		const char *args_[] = {"--server", srv.address, __VA_ARGS__, NULL};                \
		run_argv((r), args_);                                                              \
	} while (0)

static void expect_ok(const struct run *r, const char *what)
{
	cr_assert_eq(r->status, 0, "%s: exit %d\nstdout: %s\nstderr: %s", what, r->status, r->out,
	             r->err);
}

static void expect_has(const char *text, const char *needle, const char *what)
{
	cr_assert(strstr(text, needle) != NULL, "%s: \"%s\" not in:\n%s", what, needle, text);
}

static size_t count_lines(const char *text)
{
	size_t n = 0;
	for (const char *p = text; *p != '\0'; p++)
		if (*p == '\n')
			n++;
	return n;
}

/* The line'th line (from 0) of text into out. */
static void nth_line(const char *text, size_t line, char *out, size_t len)
{
	const char *p = text;
	for (size_t i = 0; i < line && p != NULL; i++) {
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	cr_assert(p != NULL && *p != '\0', "no line %zu in:\n%s", line, text);
	const char *e = strchr(p, '\n');
	size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
	cr_assert_lt(n, len);
	memcpy(out, p, n);
	out[n] = '\0';
}

static void start(void)
{
	cr_assert_eq(e2e_start(&srv, NULL), 0, "whizbangd did not start");
}

static void stop_ok(void)
{
	cr_assert_eq(e2e_stop(&srv), 0, "whizbangd did not exit 0 on SIGTERM");
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
	start();
	struct run r;
	CLI(&r, "ping");
	expect_ok(&r, "ping");
	cr_assert_neq(r.out[0], '\0', "ping printed nothing");
	run_free(&r);
	CLI(&r, "--json", "ping");
	expect_ok(&r, "ping --json");
	expect_has(r.out, "\"pong\":true", "ping --json");
	run_free(&r);
	stop_ok();
}

Test(cli, append_data_file_metadata_and_read)
{
	start();
	struct run r;
	CLI(&r, "append", "orders-1", "--type", "Created", "--data", "hello world");
	expect_ok(&r, "append --data");
	expect_has(r.out, "version=0", "append output");
	expect_has(r.out, "position=1", "append output");
	run_free(&r);

	char path[160], mpath[160];
	snprintf(path, sizeof(path), "%s/data.txt", srv.dir);
	snprintf(mpath, sizeof(mpath), "%s/meta.json", srv.dir);
	const char file_data[] = "from a file\nline two\n";
	const char meta_data[] = "{\"source\": \"file\"}";
	write_file(path, file_data, strlen(file_data));
	write_file(mpath, meta_data, strlen(meta_data));
	char at[170], mat[170];
	snprintf(at, sizeof(at), "@%s", path);
	snprintf(mat, sizeof(mat), "@%s", mpath);
	CLI(&r, "append", "orders-1", "--type", "Updated", "--data", at, "--metadata", "meta-1");
	expect_ok(&r, "append --data @FILE");
	expect_has(r.out, "position=2", "append output");
	run_free(&r);
	CLI(&r, "append", "orders-1", "--type", "Shipped", "--data", "third", "--metadata", mat);
	expect_ok(&r, "append --metadata @FILE");
	run_free(&r);

	/* The bytes arrived exactly. */
	struct wb_client *c = e2e_client(&srv, "test_cli");
	cr_assert_not_null(c);
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

	CLI(&r, "read", "orders-1");
	expect_ok(&r, "read");
	cr_assert_eq(count_lines(r.out), 3, "read printed:\n%s", r.out);
	expect_has(r.out, "hello world", "read");
	expect_has(r.out, "from a file", "read");
	expect_has(r.out, "Shipped", "read");
	run_free(&r);

	CLI(&r, "read", "orders-1", "--backwards", "--limit", "1");
	expect_ok(&r, "read --backwards --limit 1");
	cr_assert_eq(count_lines(r.out), 1, "read --backwards --limit 1 printed:\n%s", r.out);
	expect_has(r.out, "third", "read --backwards --limit 1");
	run_free(&r);

	CLI(&r, "read", "orders-1", "--from", "1", "--limit", "1");
	expect_ok(&r, "read --from 1 --limit 1");
	cr_assert_eq(count_lines(r.out), 1);
	expect_has(r.out, "from a file", "read --from 1");
	run_free(&r);

	CLI(&r, "append", "orders-1", "--type", "T", "--data", "@/nonexistent/whizbang-e2e");
	cr_assert_neq(r.status, 0, "append --data @MISSING succeeded");
	expect_has(r.err, "/nonexistent/whizbang-e2e", "append --data @MISSING");
	run_free(&r);

	CLI(&r, "read", "no-such-stream");
	cr_assert_eq(r.status, 1, "read of a missing stream: exit %d", r.status);
	expect_has(r.err, "NOT_FOUND", "read of a missing stream");
	run_free(&r);
	stop_ok();
}

Test(cli, expected_version)
{
	start();
	struct run r;
	CLI(&r, "append", "once", "--type", "T", "--data", "1", "--expected-version", "no-stream");
	expect_ok(&r, "first no-stream append");
	run_free(&r);
	CLI(&r, "append", "once", "--type", "T", "--data", "2", "--expected-version", "no-stream");
	cr_assert_neq(r.status, 0, "a second no-stream append succeeded");
	cr_assert_neq(r.status, 2, "a refused append is not a usage error");
	expect_has(r.err, "WRONG_EXPECTED_VERSION", "second no-stream append");
	run_free(&r);
	CLI(&r, "append", "once", "--type", "T", "--data", "3", "--expected-version", "0");
	expect_ok(&r, "append at exact version 0");
	run_free(&r);
	CLI(&r, "append", "once", "--type", "T", "--data", "4", "--expected-version", "5");
	cr_assert_eq(r.status, 1);
	expect_has(r.err, "WRONG_EXPECTED_VERSION", "append at a wrong exact version");
	run_free(&r);
	CLI(&r, "append", "fresh", "--type", "T", "--data", "5", "--expected-version", "exists");
	cr_assert_eq(r.status, 1);
	expect_has(r.err, "WRONG_EXPECTED_VERSION", "exists on a new stream");
	run_free(&r);
	CLI(&r, "append", "once", "--type", "T", "--data", "6", "--expected-version", "any");
	expect_ok(&r, "append any");
	run_free(&r);
	CLI(&r, "--json", "stream-info", "once");
	expect_ok(&r, "stream-info");
	expect_has(r.out, "\"event_count\":3", "stream-info --json");
	run_free(&r);
	stop_ok();
}

Test(cli, client_supplied_id_and_retry)
{
	start();
	const char *uuid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
	struct run r;
	CLI(&r, "append", "ided", "--type", "T", "--data", "x", "--id", uuid);
	expect_ok(&r, "append --id");
	run_free(&r);
	CLI(&r, "--json", "append", "ided", "--type", "T", "--data", "x", "--id", uuid);
	expect_ok(&r, "retry of append --id");
	expect_has(r.out, "\"idempotent_replay\":true", "retry");
	expect_has(r.out, "\"position\":1", "retry");
	run_free(&r);
	CLI(&r, "--json", "read", "ided");
	expect_ok(&r, "read --json");
	cr_assert_eq(count_lines(r.out), 1);
	char want[64];
	snprintf(want, sizeof(want), "\"id\":\"%s\"", uuid);
	expect_has(r.out, want, "read --json");
	run_free(&r);
	CLI(&r, "append", "ided", "--type", "T", "--data", "x", "--id", "not-a-uuid");
	cr_assert_eq(r.status, 2, "a malformed --id: exit %d", r.status);
	run_free(&r);
	stop_ok();
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
	expect_has(line, want, "read-all --json line");
	snprintf(want, sizeof(want), "\"stream\":\"%s\"", specs[i].stream);
	expect_has(line, want, "read-all --json line");
	snprintf(want, sizeof(want), "\"type\":\"%s\"", specs[i].type);
	expect_has(line, want, "read-all --json line");
	if (json_data(i) != NULL)
		snprintf(want, sizeof(want), "%s", json_data(i));
	else
		snprintf(want, sizeof(want), "\"data\":\"%s\"", specs[i].data);
	expect_has(line, want, "read-all --json line");
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
		nth_line(out, k, line, sizeof(line));
		check_json_line(line, want[k]);
	}
}

static void fill_specs(void)
{
	for (size_t i = 0; i < NSPECS; i++) {
		struct run r;
		CLI(&r, "append", specs[i].stream, "--type", specs[i].type, "--data",
		    specs[i].data);
		expect_ok(&r, "append");
		run_free(&r);
	}
}

Test(cli, read_all_json_and_filters)
{
	start();
	fill_specs();
	struct run r;
	bool keep[NSPECS];

	CLI(&r, "--json", "read-all");
	expect_ok(&r, "read-all --json");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = true;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	run_free(&r);

	CLI(&r, "read-all", "--json", "--backwards", "--limit", "2");
	expect_ok(&r, "read-all --backwards --limit 2");
	check_json_selection(r.out, keep, true, 2);
	run_free(&r);

	CLI(&r, "read-all", "--json", "--from", "3", "--limit", "2");
	expect_ok(&r, "read-all --from 3 --limit 2");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = i >= 2;
	check_json_selection(r.out, keep, false, 2);
	run_free(&r);

	CLI(&r, "read-all", "--json", "--stream-prefix", "acct-");
	expect_ok(&r, "read-all --stream-prefix");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = strncmp(specs[i].stream, "acct-", 5) == 0;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	run_free(&r);

	CLI(&r, "read-all", "--json", "--type", "Opened", "--type", "Left");
	expect_ok(&r, "read-all --type --type");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] =
		        strcmp(specs[i].type, "Opened") == 0 || strcmp(specs[i].type, "Left") == 0;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	run_free(&r);

	CLI(&r, "read-all", "--json", "--stream-prefix", "acct-2", "--type", "Closed");
	expect_ok(&r, "read-all --stream-prefix --type");
	for (size_t i = 0; i < NSPECS; i++)
		keep[i] = i == 4;
	check_json_selection(r.out, keep, false, SIZE_MAX);
	run_free(&r);

	CLI(&r, "read-all", "--json", "--type", "NoSuchType");
	expect_ok(&r, "read-all with no match");
	cr_assert_eq(r.out[0], '\0', "read-all with no match printed:\n%s", r.out);
	run_free(&r);

	/* Human output names the events too. */
	CLI(&r, "read-all");
	expect_ok(&r, "read-all");
	cr_assert_eq(count_lines(r.out), NSPECS);
	expect_has(r.out, "acct-1", "read-all");
	expect_has(r.out, "epsilon", "read-all");
	run_free(&r);
	stop_ok();
}

Test(cli, stream_info)
{
	start();
	fill_specs();
	struct run r;
	CLI(&r, "stream-info", "acct-1");
	expect_ok(&r, "stream-info");
	expect_has(r.out, "last_version: 1", "stream-info");
	expect_has(r.out, "event_count: 2", "stream-info");
	expect_has(r.out, "first_position: 1", "stream-info");
	expect_has(r.out, "last_position: 4", "stream-info");
	run_free(&r);
	CLI(&r, "--json", "stream-info", "user-1");
	expect_ok(&r, "stream-info --json");
	expect_has(r.out, "\"stream\":\"user-1\"", "stream-info --json");
	expect_has(r.out, "\"last_version\":1", "stream-info --json");
	expect_has(r.out, "\"first_position\":3", "stream-info --json");
	expect_has(r.out, "\"last_position\":6", "stream-info --json");
	run_free(&r);
	CLI(&r, "stream-info", "nobody");
	cr_assert_eq(r.status, 1);
	expect_has(r.err, "NOT_FOUND", "stream-info of a missing stream");
	run_free(&r);
	stop_ok();
}

Test(cli, usage_errors_exit_2)
{
	start();
	struct run r;
	CLI(&r, "frobnicate");
	cr_assert_eq(r.status, 2, "unknown command: exit %d", r.status);
	expect_has(r.err, "frobnicate", "unknown command");
	run_free(&r);
	CLI(&r, "read", "s", "--no-such-option");
	cr_assert_eq(r.status, 2, "unknown option: exit %d", r.status);
	run_free(&r);
	CLI(&r, "append", "s", "--type", "T");
	cr_assert_eq(r.status, 2, "append without --data: exit %d", r.status);
	run_free(&r);
	CLI(&r, "read");
	cr_assert_eq(r.status, 2, "read without a stream: exit %d", r.status);
	run_free(&r);
	const char *none[] = {NULL};
	run_argv(&r, none);
	cr_assert_eq(r.status, 2, "no command: exit %d", r.status);
	run_free(&r);
	/* None of that reached the store. */
	CLI(&r, "read-all");
	expect_ok(&r, "read-all");
	cr_assert_eq(r.out[0], '\0');
	run_free(&r);
	stop_ok();
}

Test(cli, server_not_running)
{
	/* A port that nothing listens on: bind one, then close it. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	char address[32];
	snprintf(address, sizeof(address), "127.0.0.1:%u", ntohs(sa.sin_port));
	const char *cmds[][4] = {{"ping", NULL}, {"read", "s", NULL}, {"read-all", NULL}};
	for (size_t k = 0; k < 3; k++) {
		const char *args[8] = {"--server", address, "--timeout-ms", "5000"};
		size_t n = 4;
		for (size_t i = 0; cmds[k][i] != NULL; i++)
			args[n++] = cmds[k][i];
		args[n] = NULL;
		struct run r;
		run_argv(&r, args);
		cr_assert_eq(r.status, 1, "%s with no server: exit %d", cmds[k][0], r.status);
		expect_has(r.err, "error:", "no server");
		expect_has(r.err, address, "no server");
		expect_has(r.err, "refused", "no server");
		run_free(&r);
	}
}

/* More events than one page holds: read and read-all page through them,
 * and --limit spans pages. */
Test(cli, reads_page_through_long_streams)
{
	start();
	struct wb_client *c = e2e_client(&srv, "test_cli");
	cr_assert_not_null(c);
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
	struct run r;
	CLI(&r, "read", "many");
	expect_ok(&r, "read of 2500 events");
	cr_assert_eq(count_lines(r.out), N, "read printed %zu lines", count_lines(r.out));
	expect_has(r.out, "n00000", "read");
	expect_has(r.out, "n02499", "read");
	run_free(&r);
	CLI(&r, "read-all", "--limit", "1500", "--json");
	expect_ok(&r, "read-all --limit 1500");
	cr_assert_eq(count_lines(r.out), 1500, "read-all --limit 1500 printed %zu lines",
	             count_lines(r.out));
	char line[1024];
	nth_line(r.out, 1499, line, sizeof(line));
	expect_has(line, "\"position\":1500,", "line 1500");
	run_free(&r);
	CLI(&r, "read", "many", "--backwards", "--limit", "1200");
	expect_ok(&r, "read --backwards --limit 1200");
	cr_assert_eq(count_lines(r.out), 1200);
	nth_line(r.out, 0, line, sizeof(line));
	expect_has(line, "n02499", "first line backwards");
	nth_line(r.out, 1199, line, sizeof(line));
	expect_has(line, "n01300", "last line backwards");
	run_free(&r);
	stop_ok();
}

Test(cli, append_several_events_stats_and_server_from_environment)
{
	start();
	struct run r;
	CLI(&r, "--json", "append", "multi", "--type", "T", "--data", "one", "--data", "two",
	    "--data", "three");
	expect_ok(&r, "append with three --data");
	expect_has(r.out, "\"first_position\":1", "append of three");
	expect_has(r.out, "\"position\":3", "append of three");
	expect_has(r.out, "\"version\":2", "append of three");
	run_free(&r);
	CLI(&r, "stats");
	expect_ok(&r, "stats");
	expect_has(r.out, "connections_current", "stats");
	expect_has(r.out, "last_position", "stats");
	run_free(&r);

	/* $WHIZBANG_SERVER stands in for --server. */
	cr_assert_eq(setenv("WHIZBANG_SERVER", srv.address, 1), 0);
	const char *args[] = {"read", "multi", NULL};
	run_argv(&r, args);
	unsetenv("WHIZBANG_SERVER");
	expect_ok(&r, "read with $WHIZBANG_SERVER");
	cr_assert_eq(count_lines(r.out), 3);
	expect_has(r.out, "three", "read with $WHIZBANG_SERVER");
	run_free(&r);
	stop_ok();
}
