/* The memory budget (--memory-budget, docs/OPERATIONS.md "The memory
 * budget") against a real whizbangd with a small budget: subscribers that
 * never read and connections that send most of a large frame and stop make
 * the server pause the heavy ones first, then, as more come, disconnect the
 * heaviest with RESOURCE_EXHAUSTED (request id 0) naming the budget, while
 * a client that reads its answers keeps being served; ListClients shows
 * who holds what, and once the offenders go what GetStats says is held
 * comes back to near zero. Every wait is bounded.
 *
 * Its negative control (meson test test_membudget_e2e_lie, should_fail):
 * with WB_MEMBUDGET_E2E_LIE set the server is given a budget of 64G, far
 * above what the offenders hold, so nobody is paused or disconnected and
 * the test must fail. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_util.h"
#include "e2e_util.h"
#include "frame.h"
#include "wb.h"
#include "wb_error.h"

TestSuite(membudget_e2e, .fini = e2e_suite_fini, .timeout = 240);

typedef Whizbang__V1__Request Request;
typedef Whizbang__V1__Response Response;

#define BUDGET (16u << 20)
#define PUSH_BUFFER (1u << 20)
#define BIG_FRAME (4u << 20) /* --max-frame's default */
#define BIG_SENT (3u << 20)  /* what each offender sends of it */
#define MAX_BIG 32
#define SUBSCRIBERS 4

static uint64_t next_id = 100;

/* A raw connection that said Hello. */
static int raw_client(void)
{
	int fd = e2e_raw_connect(&e2e_srv);
	cr_assert(fd >= 0);
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = 1;
	h.client_name = "membudget-offender";
	Request req = E2E_REQUEST(HELLO, hello, &h);
	Response *r;
	req.id = next_id++;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	return fd;
}

/* The well-behaved client's round: an append, a read of it, a ping, all
 * answered. */
static void served(struct wb_client *w, const char *when)
{
	static uint8_t data[512];
	memset(data, 'w', sizeof(data));
	struct wb_new_event ev = {.type = "Small", .data = data, .data_len = sizeof(data)};
	struct wb_append_result res;
	cr_assert_eq(wb_append(w, "well-behaved", WB_EXPECT_ANY, 0, &ev, 1, &res), 0,
	             "%s: the append was not answered: %s", when, wb_errmsg(w));
	struct wb_page page = {0};
	cr_assert_eq(wb_read_stream(w, "well-behaved", 0, false, 10, &page), 0,
	             "%s: the read was not answered: %s", when, wb_errmsg(w));
	cr_assert_gt(page.count, 0u);
	wb_page_free(&page);
	cr_assert_eq(wb_ping(w), 0, "%s: %s", when, wb_errmsg(w));
}

static Whizbang__V1__ServerStats *stats(struct wb_client *w)
{
	Whizbang__V1__ServerStats *st;
	cr_assert_eq(wb_stats(w, &st), 0, "%s", wb_errmsg(w));
	cr_assert_eq(st->memory_held, st->memory_input + st->memory_output +
	                                      st->memory_queued_reads + st->memory_writes);
	return st;
}

/* Whether fd has something to read (an answer, or the close) within ms. */
static bool readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n;
	do
		n = poll(&p, 1, ms);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

/* A connection that sends BIG_SENT bytes of a BIG_FRAME frame and stops:
 * its input buffer holds what the server read of it. What the kernel does
 * not take within a moment (the server stopped reading it) is let go. */
static int big_frame_sender(void)
{
	static uint8_t *buf;
	if (buf == NULL) {
		buf = calloc(1, FRAME_HEADER + BIG_SENT);
		cr_assert_not_null(buf);
		frame_put_header(buf, BIG_FRAME);
	}
	int fd = e2e_raw_connect(&e2e_srv);
	cr_assert(fd >= 0);
	/* Authenticated first: before Hello a frame may not pass 64K
	 * (--max-unauthenticated-frame). */
	cr_assert_eq(e2e_raw_hello(fd, 1), 0);
	int rc = e2e_send_all(fd, buf, FRAME_HEADER + BIG_SENT, 500);
	cr_assert(rc == 0 || rc == -ETIMEDOUT, "send: %s", strerror(-rc));
	return fd;
}

/* GET /metrics on port: the body (free() it), or NULL. */
static char *scrape(int port)
{
	int fd = e2e_loopback_connect(port, 5);
	if (fd < 0)
		return NULL;
	static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	if (e2e_send_all(fd, req, sizeof(req) - 1, 5000) != 0) {
		close(fd);
		return NULL;
	}
	size_t cap = 1u << 20, len = 0;
	char *buf = malloc(cap + 1);
	cr_assert_not_null(buf);
	ssize_t n;
	while (len < cap && (n = read(fd, buf + len, cap - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* The value of the series name in a scrape, or -1 when it is not there. */
static double series(const char *body, const char *name)
{
	char needle[128];
	snprintf(needle, sizeof(needle), "\n%s ", name);
	const char *p = strstr(body, needle);
	return p != NULL ? strtod(p + strlen(needle), NULL) : -1;
}

/* Scrapes until the series name is at least min (the figures are
 * published every half second); fails the test after 15 s. */
static void metric_at_least(int port, const char *name, double min)
{
	double v = -1;
	for (int i = 0; i < 150 && v < min; i++) {
		char *body = scrape(port);
		v = body != NULL ? series(body, name) : -1;
		free(body);
		if (v < min)
			e2e_sleep_ms(100);
	}
	cr_assert_geq(v, min, "%s is %g", name, v);
}

Test(membudget_e2e, the_heavy_are_paused_then_the_heaviest_disconnected_and_memory_comes_back)
{
	bool lie = getenv("WB_MEMBUDGET_E2E_LIE") != NULL;
	char budget[32];
	snprintf(budget, sizeof(budget), "--memory-budget=%s", lie ? "64G" : "16M");
	const char *args[] = {"--anonymous-role=admin",
	                      budget,
	                      "--push-buffer=1M",
	                      "--frame-timeout-ms=120000",
	                      "--metrics-listen=127.0.0.1:0",
	                      NULL};
	struct wb_client *w = e2e_suite_start_client(args, "membudget-writer");
	int metrics = e2e_metrics_port(&e2e_srv);
	Whizbang__V1__ServerStats *st = stats(w);
	cr_assert_eq(st->memory_budget, lie ? 64ull << 30 : BUDGET);
	cr_assert_eq(st->output_budget, st->memory_budget);
	wb_stats_free(st);

	/* 16 MiB of events: more than the sockets' buffers take. */
	cr_assert_eq(e2e_append_mib(w, "big", 16), 0, "%s", wb_errmsg(w));

	/* Subscribers that never read: each holds up to --push-buffer. */
	int subs[SUBSCRIBERS];
	for (size_t i = 0; i < SUBSCRIBERS; i++) {
		subs[i] = raw_client();
		Whizbang__V1__Subscribe sb = WHIZBANG__V1__SUBSCRIBE__INIT;
		sb.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
		sb.credits = 100000;
		Request req = E2E_REQUEST(SUBSCRIBE, subscribe, &sb);
		req.id = next_id++;
		cr_assert_eq(e2e_send_request(subs[i], &req), 0);
	}
	e2e_sleep_ms(300);
	served(w, "with subscribers that do not read");

	/* Connections sending large frames, one at a time, until the server
	 * disconnects one: first it pauses (7/8 of the budget), and the
	 * client that reads is served throughout. */
	int big[MAX_BIG];
	size_t nbig = 0;
	bool paused_first = false;
	uint64_t disconnects = 0;
	while (nbig < MAX_BIG && disconnects == 0) {
		big[nbig++] = big_frame_sender();
		e2e_sleep_ms(50);
		served(w, "while the offenders grow");
		st = stats(w);
		if (st->memory_pauses > 0 && st->memory_disconnects == 0)
			paused_first = true;
		disconnects = st->memory_disconnects;
		if (!lie)
			cr_assert_lt(st->memory_held, BUDGET + BIG_FRAME,
			             "the server holds %llu bytes",
			             (unsigned long long)st->memory_held);
		wb_stats_free(st);
	}
	cr_assert(paused_first, "the server did not pause anyone before it disconnected");
	cr_assert_geq(disconnects, 1u,
	              "%zu connections sent large frames and nobody was "
	              "disconnected",
	              nbig);
	cr_assert_geq(e2e_log_count(&e2e_srv, "event=memory_disconnect "), 1u);

	/* The one disconnected was one of the heaviest: a large frame's
	 * sender, told why (request id 0) before the close. */
	size_t told = 0;
	for (size_t i = 0; i < nbig; i++) {
		if (!readable(big[i], 50))
			continue;
		Response *r;
		cr_assert_eq(e2e_recv_response(big[i], 2000, &r), 0,
		             "offender %zu: no answer before the close", i);
		cr_assert_eq(r->id, 0u);
		cr_assert_eq(e2e_error_code(r), WB_RESOURCE_EXHAUSTED);
		cr_assert_not_null(strstr(r->error->message, "--memory-budget"), "%s",
		                   r->error->message);
		cr_assert_not_null(strstr(r->error->message, "held the most"), "%s",
		                   r->error->message);
		whizbang__v1__response__free_unpacked(r, NULL);
		cr_assert(e2e_wait_closed(big[i], 5000), "offender %zu stayed open", i);
		told++;
	}
	cr_assert_geq(told, 1u);
	served(w, "after the disconnect");
	/* /metrics says so too. */
	metric_at_least(metrics, "whizbang_memory_disconnects_total", 1);
	metric_at_least(metrics, "whizbang_memory_pauses_total", 1);
	metric_at_least(metrics, "whizbang_memory_budget", BUDGET);
	metric_at_least(metrics, "whizbang_memory_input", 1u << 20);

	/* Who holds what: the subscribers their pushes (at most the push
	 * buffer and an item), the senders their frames, each entry's
	 * memory the sum of its kinds, all of it what GetStats counts. */
	Whizbang__V1__ClientList *l;
	cr_assert_eq(wb_list_clients(w, &l), 0, "%s", wb_errmsg(w));
	uint64_t sum = 0, inputs = 0, biggest_input = 0;
	for (size_t i = 0; i < l->n_clients; i++) {
		const Whizbang__V1__ClientInfo *ci = l->clients[i];
		cr_assert_eq(ci->memory,
		             ci->input_buffer + ci->output_buffer + ci->queued_reads + ci->writes);
		sum += ci->memory;
		if (ci->subscriptions > 0)
			cr_assert_leq(ci->output_buffer, PUSH_BUFFER + E2E_BIG_EVENT + 4096,
			              "a subscriber holds %llu bytes",
			              (unsigned long long)ci->output_buffer);
		else if (!ci->self)
			inputs += ci->input_buffer;
		biggest_input = ci->input_buffer > biggest_input ? ci->input_buffer : biggest_input;
	}
	wb_client_list_free(l);
	cr_assert_geq(biggest_input, 1u << 20, "no sender holds its large frame");
	cr_assert_geq(inputs, 4u << 20, "the senders hold %llu bytes", (unsigned long long)inputs);
	st = stats(w);
	cr_assert_leq(sum, st->memory_held + (1u << 20), "ListClients %llu, GetStats %llu",
	              (unsigned long long)sum, (unsigned long long)st->memory_held);
	cr_assert_geq(sum + (1u << 20), st->memory_held, "ListClients %llu, GetStats %llu",
	              (unsigned long long)sum, (unsigned long long)st->memory_held);
	wb_stats_free(st);
	/* And `whizbang clients` shows it. */
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "clients", "clients");
	CLI_HAS(r.out, "clients", "buffers=", "reads=", "writes=", "held=");
	CLI_EXPECT(&r, 0, "clients --json", "--json", "clients");
	CLI_HAS(r.out, "clients --json", "\"queued_reads\":", "\"writes\":", "\"memory\":");
	cli_run_free(&r);

	/* The offenders go: what is held comes back to near zero. */
	for (size_t i = 0; i < nbig; i++)
		close(big[i]);
	for (size_t i = 0; i < SUBSCRIBERS; i++)
		close(subs[i]);
	uint64_t held = UINT64_MAX;
	for (int i = 0; i < 200 && held > (256u << 10); i++) {
		e2e_sleep_ms(50);
		st = stats(w);
		held = st->memory_held;
		wb_stats_free(st);
	}
	st = stats(w);
	cr_assert_leq(st->memory_held, 256u << 10, "%llu bytes still held",
	              (unsigned long long)st->memory_held);
	cr_assert_leq(st->memory_input, 128u << 10);
	cr_assert_leq(st->memory_output, 128u << 10);
	cr_assert_eq(st->memory_queued_reads, 0u);
	cr_assert_eq(st->memory_writes, 0u);
	wb_stats_free(st);
	served(w, "after the offenders went");
	wb_close(w);
	e2e_suite_stop();
}

/* The old name of the setting is refused with the new one, as a flag. */
Test(membudget_e2e, max_output_total_is_refused_naming_memory_budget)
{
	struct e2e_server s = {0};
	const char *args[] = {"--max-output-total=1G", NULL};
	cr_assert_neq(e2e_start(&s, args), 0, "the server started with --max-output-total");
	char path[160];
	snprintf(path, sizeof(path), "%s", s.log_file);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	char text[4096];
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	cr_assert_not_null(strstr(text, "--max-output-total was renamed --memory-budget"), "%s",
	                   text);
	e2e_cleanup(&s);
}
