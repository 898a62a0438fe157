/* Metrics and health (issue 6) against a real whizbangd: /metrics in the
 * Prometheus text format moves with load (appends, batches, requests by
 * type, errors by code, histograms, leases and watermark, per projection),
 * /health/live and /health/ready, 404 and 405, --metrics-listen off, and
 * /health/ready turning 503 while a shutdown is held up by a client that
 * does not read. HTTP is spoken over a raw socket (HTTP/1.0, so the server
 * closes after the answer); every wait is bounded. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "e2e_util.h"
#include "wb_error.h"

#define TIMEOUT_MS 15000
#define MAX_BODY (4u << 20)

TestSuite(metrics, .fini = e2e_suite_fini, .timeout = 120);

/* ---------------------------------------------------------------- HTTP */

struct http {
	int status; /* -1: no answer (refused, closed, timed out) */
	char *body; /* NUL-terminated; free() it */
	size_t len;
	char head[2048];
};

/* One request over a fresh connection; reads until the server closes. */
static struct http http(int port, const char *method, const char *path)
{
	struct http h = {.status = -1};
	int fd = e2e_loopback_connect(port, 5);
	if (fd < 0) {
		return h;
	}
	char req[256];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method,
	                 path);
	if (e2e_send_all(fd, req, (size_t)n, 5000) != 0) {
		close(fd);
		return h;
	}
	char *buf = malloc(MAX_BODY + 1);
	cr_assert_not_null(buf);
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, MAX_BODY - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		cr_assert(len < MAX_BODY, "an HTTP answer above %u bytes", MAX_BODY);
	}
	close(fd);
	buf[len] = '\0';
	char *end = strstr(buf, "\r\n\r\n");
	int status;
	if (end == NULL || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
		free(buf);
		return h;
	}
	size_t hl = (size_t)(end - buf);
	snprintf(h.head, sizeof(h.head), "%.*s", (int)(hl < 2000 ? hl : 2000), buf);
	h.status = status;
	h.len = len - hl - 4;
	h.body = malloc(h.len + 1);
	cr_assert_not_null(h.body);
	memcpy(h.body, end + 4, h.len + 1);
	free(buf);
	return h;
}

static int status_of(int port, const char *method, const char *path)
{
	struct http h = http(port, method, path);
	free(h.body);
	return h.status;
}

/* The value of one series (name with its labels, exactly as written), or
 * -1 when the scrape has no such series. */
static double series(const char *body, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = body; p != NULL && *p != '\0';) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static char *scrape(int port)
{
	struct http h = http(port, "GET", "/metrics");
	cr_assert_eq(h.status, 200, "GET /metrics: %d", h.status);
	cr_assert(strstr(h.head, "text/plain; version=0.0.4") != NULL, "%s", h.head);
	return h.body;
}

/* Scrapes until name reaches at least min (the figures are published by a
 * timer on the loop, every half second). Returns the scrape; free() it. */
static char *scrape_until(int port, const char *name, double min)
{
	int64_t deadline = e2e_now_ms() + TIMEOUT_MS;
	for (;;) {
		char *body = scrape(port);
		double v = series(body, name);
		if (v >= min)
			return body;
		cr_assert(e2e_now_ms() < deadline, "%s stayed at %g, below %g", name, v, min);
		free(body);
		e2e_sleep_ms(100);
	}
}

static int start(void)
{
	const char *args[] = {"--metrics-listen", "127.0.0.1:0", "--shutdown-timeout-ms", "30000",
	                      NULL};
	e2e_suite_start(args);
	return e2e_metrics_port(&e2e_srv);
}

static void wait_ready(int port)
{
	int64_t deadline = e2e_now_ms() + TIMEOUT_MS;
	while (status_of(port, "GET", "/health/ready") != 200)
		cr_assert(e2e_now_ms() < deadline, "/health/ready never answered 200");
}

/* Checks a histogram: buckets cumulative, +Inf equal to _count. */
static void check_histogram(const char *body, const char *name, double count)
{
	char key[160];
	double prev = 0;
	const char *p = body;
	snprintf(key, sizeof(key), "%s_bucket{le=\"", name);
	size_t buckets = 0;
	while ((p = strstr(p, key)) != NULL) {
		const char *v = strstr(p, "} ");
		cr_assert_not_null(v);
		double x = strtod(v + 2, NULL);
		cr_assert(x >= prev, "%s buckets are not cumulative", name);
		prev = x;
		p = v;
		buckets++;
	}
	cr_assert(buckets >= 2, "%s has %zu buckets", name, buckets);
	snprintf(key, sizeof(key), "%s_bucket{le=\"+Inf\"}", name);
	cr_assert_eq(series(body, key), count, "%s +Inf", name);
	snprintf(key, sizeof(key), "%s_count", name);
	cr_assert_eq(series(body, key), count, "%s_count", name);
	snprintf(key, sizeof(key), "# TYPE %s histogram", name);
	cr_assert(strstr(body, key) != NULL, "no %s", key);
}

/* ---------------------------------------------------------------- tests */

Test(metrics, figures_move_with_load)
{
	int port = start();
	cr_assert_eq(status_of(port, "GET", "/health/live"), 200);
	wait_ready(port);

	char *before = scrape(port);
	cr_assert_eq(series(before, "whizbang_append_events_total"), 0);
	cr_assert_eq(series(before, "whizbang_requests_by_type_total{type=\"append_events\"}"), 0);
	cr_assert_eq(series(before, "whizbang_ready"), 1);
	cr_assert(series(before, "whizbang_map_size") > 0);
	cr_assert(series(before, "whizbang_map_used") > 0);
	cr_assert(strstr(before, "# HELP whizbang_append_events_total ") != NULL);
	cr_assert(strstr(before, "# TYPE whizbang_append_events_total counter") != NULL);
	cr_assert(strstr(before, "# TYPE whizbang_watermark gauge") != NULL);
	free(before);

	struct wb_client *c = e2e_suite_client("metrics");
	/* 10 appends of 3 events, one by one: each is a batch of its own. */
	for (int i = 0; i < 10; i++) {
		struct wb_new_event ev[3];
		for (int k = 0; k < 3; k++)
			ev[k] = (struct wb_new_event){.type = "t", .data = "{}", .data_len = 2};
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, "s", WB_EXPECT_ANY, 0, ev, 3, &r), 0, "%s", wb_errmsg(c));
	}
	/* One refused append: an error by code. */
	struct wb_new_event ev1 = {.type = "t", .data = "{}", .data_len = 2};
	struct wb_append_result r1;
	cr_assert_eq(wb_append(c, "s", WB_EXPECT_NO_STREAM, 0, &ev1, 1, &r1),
	             WB_WRONG_EXPECTED_VERSION);
	/* Two leases of projection "orders", committed. */
	struct wb_lease_args la = {.projection = "orders", .duration_ms = 30000, .count = 2};
	struct wb_lease_grant g[2];
	size_t ng = 0;
	cr_assert_eq(wb_lease(c, &la, g, 2, &ng), 0, "%s", wb_errmsg(c));
	cr_assert_eq(ng, 2);
	for (size_t i = 0; i < ng; i++)
		cr_assert_eq(wb_commit(c, g[i].sequence, g[i].token, NULL, false, false, NULL), 0,
		             "%s", wb_errmsg(c));

	char *m = scrape_until(port, "whizbang_leases_committed_total", 2);
	cr_assert_eq(series(m, "whizbang_append_events_total"), 30);
	cr_assert_eq(series(m, "whizbang_batch_events_total"), 30);
	cr_assert_eq(series(m, "whizbang_last_position"), 30);
	cr_assert_eq(series(m, "whizbang_requests_by_type_total{type=\"append_events\"}"), 11);
	cr_assert_eq(series(m, "whizbang_requests_by_type_total{type=\"lease\"}"), 1);
	cr_assert_eq(series(m, "whizbang_requests_by_type_total{type=\"commit\"}"), 2);
	cr_assert_eq(series(m, "whizbang_requests_by_type_total{type=\"hello\"}"), 1);
	cr_assert_eq(series(m, "whizbang_errors_by_code_total{code=\"WRONG_EXPECTED_VERSION\"}"),
	             1);
	cr_assert_eq(series(m, "whizbang_errors_by_code_total{code=\"NOT_FOUND\"}"), 0);
	cr_assert_eq(series(m, "whizbang_connections_current"), 1);
	cr_assert(series(m, "whizbang_connections_total") >= 1);
	cr_assert_eq(series(m, "whizbang_leases_active"), 0);
	cr_assert(series(m, "whizbang_watermark") >= 2);
	cr_assert_eq(series(m, "whizbang_projection_committed_total{projection=\"orders\"}"), 2);
	cr_assert_eq(series(m, "whizbang_projection_leases_active{projection=\"orders\"}"), 0);
	cr_assert(series(m, "whizbang_batch_bytes_total") > 0);
	/* Every append and commit went through the writer: at least 12
	 * batches (the refused append may make a 13th), each counted once in
	 * both histograms. */
	double batches = series(m, "whizbang_batches_total");
	cr_assert(batches >= 12, "%g batches", batches);
	check_histogram(m, "whizbang_batch_size", batches);
	check_histogram(m, "whizbang_batch_commit_seconds", batches);
	cr_assert_eq(series(m, "whizbang_batch_size_sum"),
	             series(m, "whizbang_batch_requests_total"));
	cr_assert(series(m, "whizbang_batch_commit_seconds_sum") > 0);
	free(m);

	wb_close(c);
	m = scrape_until(port, "whizbang_connections_total", 1);
	free(m);
	e2e_suite_stop();
}

Test(metrics, paths_and_methods)
{
	int port = start();
	wait_ready(port);
	cr_assert_eq(status_of(port, "GET", "/nope"), 404);
	cr_assert_eq(status_of(port, "GET", "/metrics/extra"), 404);
	struct http h = http(port, "POST", "/metrics");
	cr_assert_eq(h.status, 405);
	cr_assert(strstr(h.head, "Allow: GET, HEAD") != NULL, "%s", h.head);
	free(h.body);
	cr_assert_eq(status_of(port, "DELETE", "/health/live"), 405);
	h = http(port, "HEAD", "/metrics");
	cr_assert_eq(h.status, 200);
	cr_assert_eq(h.len, 0, "HEAD answered a body of %zu bytes", h.len);
	free(h.body);
	cr_assert_eq(status_of(port, "HEAD", "/health/ready"), 200);
	e2e_suite_stop();
}

Test(metrics, off_serves_nothing)
{
	const char *args[] = {"--metrics-listen", "off", NULL};
	e2e_suite_start(args);
	char path[160];
	snprintf(path, sizeof(path), "%s.metrics", e2e_srv.port_file);
	cr_assert_neq(access(path, F_OK), 0, "%s exists with metrics off", path);
	cr_assert_eq(e2e_log_count(&e2e_srv, "metrics_listening"), 0);
	struct wb_client *c = e2e_suite_client("off");
	e2e_suite_stop_client(c);
}

/* A client that asks for far more than the kernel's socket buffers hold and
 * never reads keeps output pending, and the shutdown waits for it (up to
 * --shutdown-timeout-ms): meanwhile the server is live but not ready. */
Test(metrics, ready_turns_503_during_shutdown)
{
	int port = start();
	wait_ready(port);

	struct wb_client *c = e2e_suite_client("loader");
	size_t big = 1u << 20;
	char *data = malloc(big);
	cr_assert_not_null(data);
	memset(data, 'x', big);
	for (int i = 0; i < 16; i++) {
		struct wb_new_event ev = {.type = "big", .data = data, .data_len = big};
		struct wb_append_result r;
		cr_assert_eq(wb_append(c, "big", WB_EXPECT_ANY, 0, &ev, 1, &r), 0, "%s",
		             wb_errmsg(c));
	}
	free(data);
	wb_close(c);

	int fd = e2e_suite_raw_hello();
	for (uint64_t id = 2; id < 12; id++) {
		Whizbang__V1__ReadAll ra = WHIZBANG__V1__READ_ALL__INIT;
		ra.from_position = 1;
		Whizbang__V1__Request req = E2E_REQUEST(READ_ALL, read_all, &ra);
		req.id = id;
		cr_assert_eq(e2e_send_request(fd, &req), 0);
	}
	/* Until the server has answered (into its output) it counts the reads. */
	free(scrape_until(port, "whizbang_requests_by_type_total{type=\"read_all\"}", 3));
	cr_assert_eq(status_of(port, "GET", "/health/ready"), 200);

	cr_assert_eq(kill(e2e_srv.pid, SIGTERM), 0);
	int64_t deadline = e2e_now_ms() + TIMEOUT_MS;
	while (status_of(port, "GET", "/health/ready") != 503)
		cr_assert(e2e_now_ms() < deadline, "/health/ready never answered 503");
	cr_assert_eq(status_of(port, "GET", "/health/live"), 200);
	char *m = scrape(port);
	cr_assert_eq(series(m, "whizbang_append_events_total"), 16);
	free(m);
	cr_assert_eq(kill(e2e_srv.pid, 0), 0, "the server exited with a reader still stalled");

	close(fd);
	e2e_suite_wait_exit();
}
