/* Catch-up subscriptions (issue 5) against a real whizbangd over raw
 * sockets: the switch-over from catch-up to live while several clients
 * append ($all, one stream, a filtered $all), credits, a subscriber that
 * grants nothing (and one that reads nothing) while 100 000 events are
 * appended, the ledger up to the watermark with its gaps, Unsubscribe, a
 * closing connection, and hostile requests. Every wait is bounded. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"
#include "wire.h"

#define RECV_MS 10000
/* How long "nothing more arrives" is watched for. */
#define QUIET_MS 300

TestSuite(sub_e2e, .fini = e2e_suite_fini, .timeout = 120);

typedef Whizbang__V1__Response Response;
typedef Whizbang__V1__Request Request;

/* ---------------------------------------------------------------- helpers */

/* What one subscription received. */
struct rsub {
	uint64_t req_id;
	uint64_t id;    /* from the SubscribeResult */
	uint64_t start; /* from the SubscribeResult */
	bool answered;
	int error;     /* an error Response tagged with req_id */
	uint64_t *pos; /* positions (events) or sequences (entries) */
	uint64_t *ver; /* versions (events) or kinds (entries) */
	uint64_t *reason;
	size_t n, cap;
	size_t caught_up;
	size_t caught_up_at; /* n when caught_up came */
};

static void rsub_free(struct rsub *s)
{
	free(s->pos);
	free(s->ver);
	free(s->reason);
	memset(s, 0, sizeof(*s));
}

static void rsub_add(struct rsub *s, uint64_t pos, uint64_t ver, uint64_t reason)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->pos = realloc(s->pos, s->cap * sizeof(*s->pos));
		s->ver = realloc(s->ver, s->cap * sizeof(*s->ver));
		s->reason = realloc(s->reason, s->cap * sizeof(*s->reason));
		cr_assert(s->pos && s->ver && s->reason);
	}
	s->pos[s->n] = pos;
	s->ver[s->n] = ver;
	s->reason[s->n] = reason;
	s->n++;
}

static void send_subscribe(int fd, uint64_t req_id, Whizbang__V1__Subscribe *sub)
{
	Request req = E2E_REQUEST(SUBSCRIBE, subscribe, sub);
	req.id = req_id;
	cr_assert_eq(e2e_send_request(fd, &req), 0, "send Subscribe");
}

/* The fields of a Subscribe that the tests set; the others keep their
 * defaults. */
struct sub_spec {
	Whizbang__V1__SubscriptionTarget target;
	const char *stream;
	const char *stream_prefix;
	const char *type; /* one event type, or NULL for any */
	Whizbang__V1__StartFrom from;
	uint64_t position;
	uint32_t credits;
};

/* Sends a Subscribe of spec with request id req_id. */
static void subscribe_spec(int fd, uint64_t req_id, struct sub_spec spec)
{
	Whizbang__V1__Subscribe sub = WHIZBANG__V1__SUBSCRIBE__INIT;
	char *types[1] = {(char *)spec.type};
	sub.target = spec.target;
	if (spec.stream != NULL)
		sub.stream = (char *)spec.stream;
	if (spec.stream_prefix != NULL)
		sub.stream_prefix = (char *)spec.stream_prefix;
	if (spec.type != NULL) {
		sub.n_event_types = 1;
		sub.event_types = types;
	}
	sub.from = spec.from;
	sub.position = spec.position;
	sub.credits = spec.credits;
	send_subscribe(fd, req_id, &sub);
}

static void send_credit(int fd, uint64_t req_id, uint64_t sub, uint32_t n)
{
	Whizbang__V1__Credit cr = WHIZBANG__V1__CREDIT__INIT;
	cr.subscription = sub;
	cr.n = n;
	Request req = E2E_REQUEST(CREDIT, credit, &cr);
	req.id = req_id;
	cr_assert_eq(e2e_send_request(fd, &req), 0, "send Credit");
}

static void send_unsubscribe(int fd, uint64_t req_id, uint64_t sub)
{
	Whizbang__V1__Unsubscribe u = WHIZBANG__V1__UNSUBSCRIBE__INIT;
	u.subscription = sub;
	Request req = E2E_REQUEST(UNSUBSCRIBE, unsubscribe, &u);
	req.id = req_id;
	cr_assert_eq(e2e_send_request(fd, &req), 0, "send Unsubscribe");
}

/* Receives one Response on fd and records it in the subscription it is
 * tagged for. Returns 0 (and *other NULL) when it was a subscription's,
 * 0 with *other set (the caller frees it) when it was not, or the
 * e2e_recv_response() error (WB_E_TIMEOUT...). */
static int recv_route(int fd, int timeout_ms, struct rsub **subs, size_t nsubs, Response **other)
{
	Response *r = NULL;
	*other = NULL;
	int rc = e2e_recv_response(fd, timeout_ms, &r);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < nsubs; i++) {
		struct rsub *s = subs[i];
		if (r->id != s->req_id)
			continue;
		if (e2e_error_code(r) != 0) {
			s->error = e2e_error_code(r);
		} else if (r->body_case == WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE) {
			cr_assert(!s->answered, "two SubscribeResults");
			s->answered = true;
			s->id = r->subscribe->subscription;
			s->start = r->subscribe->start;
		} else {
			cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM);
			Whizbang__V1__SubscriptionItem *it = r->subscription_item;
			cr_assert(s->answered, "an item before the SubscribeResult");
			cr_assert_eq(it->subscription, s->id);
			switch (it->item_case) {
			case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT:
				rsub_add(s, it->event->position, it->event->version, 0);
				break;
			case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_ENTRY:
				rsub_add(s, it->entry->sequence, (uint64_t)it->entry->kind,
				         (uint64_t)it->entry->reason);
				break;
			case WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_CAUGHT_UP:
				if (s->caught_up++ == 0)
					s->caught_up_at = s->n;
				break;
			default:
				cr_assert_fail("an empty SubscriptionItem");
			}
		}
		whizbang__v1__response__free_unpacked(r, NULL);
		return 0;
	}
	*other = r;
	return 0;
}

/* Receives until cond(arg) holds; fails the test after RECV_MS of silence
 * or on a response no subscription owns. */
static void recv_until(int fd, struct rsub **subs, size_t nsubs, bool (*cond)(void *), void *arg)
{
	while (!cond(arg)) {
		Response *other;
		int rc = recv_route(fd, RECV_MS, subs, nsubs, &other);
		cr_assert_eq(rc, 0, "receiving: %s", wb_error_name(rc));
		cr_assert_null(other, "an unexpected response (id %" PRIu64 ")",
		               other ? other->id : 0);
	}
}

/* Receives until the response to req_id arrives (returned), routing the
 * subscriptions' items on the way. */
static Response *recv_answer(int fd, struct rsub **subs, size_t nsubs, uint64_t req_id)
{
	for (;;) {
		Response *other;
		int rc = recv_route(fd, RECV_MS, subs, nsubs, &other);
		cr_assert_eq(rc, 0, "waiting for the answer to %" PRIu64 ": %s", req_id,
		             wb_error_name(rc));
		if (other == NULL)
			continue;
		cr_assert_eq(other->id, req_id, "an unexpected response (id %" PRIu64 ")",
		             other->id);
		return other;
	}
}

/* Asserts that nothing arrives on fd for QUIET_MS: a Ping sent after the
 * wait comes back as the very next response. */
static void assert_quiet(int fd, struct rsub **subs, size_t nsubs, uint64_t ping_id)
{
	size_t before[8];
	for (size_t i = 0; i < nsubs; i++)
		before[i] = subs[i]->n + subs[i]->caught_up;
	Response *other = NULL;
	int rc = recv_route(fd, QUIET_MS, subs, nsubs, &other);
	cr_assert_eq(rc, WB_E_TIMEOUT, "something arrived when nothing should have");
	Request req = WHIZBANG__V1__REQUEST__INIT;
	Whizbang__V1__Ping ping;
	e2e_req_ping(&req, &ping, ping_id, 7);
	cr_assert_eq(e2e_send_request(fd, &req), 0);
	Response *r = recv_answer(fd, subs, nsubs, ping_id);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_PONG);
	whizbang__v1__response__free_unpacked(r, NULL);
	for (size_t i = 0; i < nsubs; i++)
		cr_assert_eq(subs[i]->n + subs[i]->caught_up, before[i],
		             "subscription %zu received after the quiet wait", i);
}

struct want {
	struct rsub *s;
	size_t n;
};

static bool have_n(void *arg)
{
	struct want *w = arg;
	return w->s->n >= w->n && w->s->caught_up > 0;
}

static bool have_n_items(void *arg)
{
	struct want *w = arg;
	return w->s->n >= w->n;
}

static bool answered(void *arg)
{
	struct rsub *s = arg;
	return s->answered || s->error != 0;
}

static void append_n(struct wb_client *c, const char *stream, const char *type, size_t n)
{
	struct wb_new_event ev[100];
	size_t done = 0;
	while (done < n) {
		size_t k = n - done < 100 ? n - done : 100;
		for (size_t i = 0; i < k; i++)
			ev[i] = (struct wb_new_event){.type = type, .data = "{}", .data_len = 2};
		struct wb_append_result ar;
		int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, ev, k, &ar);
		cr_assert_eq(rc, 0, "append: %s: %s", wb_error_name(rc), wb_errmsg(c));
		done += k;
	}
}

/* ---------------------------------------------------------------- appenders */

#define APPENDERS 4
/* Each appender runs until told to stop, at most this many appends. */
#define APPENDS_MAX 5000

static int appenders_stop;

struct appender {
	pthread_t th;
	int index;
	size_t appends;
	size_t events;
	int error;
	char msg[256];
};

/* Appends to stream "s-<index>" (and every third append to "other-<index>")
 * batches of 1..4 events of types A and B. */
static void *appender_main(void *arg)
{
	struct appender *a = arg;
	char name[32];
	snprintf(name, sizeof(name), "appender-%d", a->index);
	struct wb_client *c = e2e_client(&e2e_srv, name);
	if (c == NULL) {
		a->error = WB_E_IO;
		return NULL;
	}
	for (size_t i = 0; i < a->appends && !__atomic_load_n(&appenders_stop, __ATOMIC_SEQ_CST);
	     i++) {
		char stream[32];
		snprintf(stream, sizeof(stream), i % 3 == 2 ? "other-%d" : "s-%d", a->index);
		struct wb_new_event ev[4];
		size_t k = 1 + (i + (size_t)a->index) % 4;
		for (size_t j = 0; j < k; j++)
			ev[j] = (struct wb_new_event){
			        .type = (i + j) % 2 ? "A" : "B", .data = "x", .data_len = 1};
		struct wb_append_result ar;
		int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, ev, k, &ar);
		if (rc != 0) {
			a->error = rc;
			snprintf(a->msg, sizeof(a->msg), "%s", wb_errmsg(c));
			break;
		}
		a->events += k;
	}
	wb_close(c);
	return NULL;
}

static void appenders_start(struct appender *a, size_t n, size_t appends)
{
	for (size_t i = 0; i < n; i++) {
		a[i] = (struct appender){.index = (int)i, .appends = appends};
		cr_assert_eq(pthread_create(&a[i].th, NULL, appender_main, &a[i]), 0);
	}
}

static void appenders_join(struct appender *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		pthread_join(a[i].th, NULL);
		cr_assert_eq(a[i].error, 0, "appender %zu: %s: %s", i, wb_error_name(a[i].error),
		             a[i].msg);
	}
}

/* Asserts that s received exactly evs[0..n) (by position), in order, and
 * caught_up exactly once. */
static void assert_exactly(const struct rsub *s, const struct e2e_event *evs, size_t n,
                           const char *what)
{
	cr_assert_eq(s->error, 0, "%s: ended with %s", what, wb_error_name(s->error));
	cr_assert_eq(s->n, n, "%s: %zu events received, %zu stored", what, s->n, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(s->pos[i], evs[i].position,
		             "%s: item %zu is position %" PRIu64 ", expected %" PRIu64, what, i,
		             s->pos[i], evs[i].position);
		cr_assert_eq(s->ver[i], evs[i].version, "%s: item %zu version", what, i);
	}
	cr_assert_eq(s->caught_up, 1, "%s: caught_up came %zu times", what, s->caught_up);
}

/* ---------------------------------------------------------------- tests */

Test(sub_e2e, switch_over_while_appending_delivers_every_event_once_in_order)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "seed");
	/* Stored before the subscriptions: the catch-up part. */
	append_n(c, "s-1", "A", 300);
	append_n(c, "other-9", "B", 300);
	append_n(c, "s-2", "B", 300);

	struct appender a[APPENDERS];
	__atomic_store_n(&appenders_stop, 0, __ATOMIC_SEQ_CST);
	appenders_start(a, APPENDERS, APPENDS_MAX);

	/* Three subscriptions on one connection, started while the appenders
	 * run; small credits granted as they are used up, so the pump is
	 * paused and resumed all along. */
	int fd = e2e_suite_raw_hello();
	struct rsub all = {.req_id = 10}, one = {.req_id = 11}, filt = {.req_id = 12};
	struct rsub *subs[] = {&all, &one, &filt};
	subscribe_spec(fd, all.req_id, (struct sub_spec){.credits = 500});
	subscribe_spec(fd, one.req_id,
	               (struct sub_spec){.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM,
	                                 .stream = "s-1",
	                                 .credits = 500});
	subscribe_spec(fd, filt.req_id,
	               (struct sub_spec){.stream_prefix = "s-", .type = "A", .credits = 500});

	/* Keep granting while receiving, until the appenders are done and
	 * every subscription reached the end after them. */
	uint64_t credit_id = 100;
	size_t granted[3] = {500, 500, 500};
	bool joined = false;
	size_t total = 0;
	for (;;) {
		Response *other = NULL;
		int rc = recv_route(fd, joined ? 1000 : RECV_MS, subs, 3, &other);
		if (rc == WB_E_TIMEOUT && joined)
			break; /* quiet after everything was appended */
		cr_assert_eq(rc, 0, "receiving: %s", wb_error_name(rc));
		if (other != NULL) {
			cr_assert_eq(other->body_case, WHIZBANG__V1__RESPONSE__BODY_CREDIT,
			             "unexpected response %d", (int)other->body_case);
			whizbang__v1__response__free_unpacked(other, NULL);
		}
		for (size_t i = 0; i < 3; i++) {
			cr_assert_leq(subs[i]->n, granted[i], "more items than credits granted");
			if (subs[i]->answered && granted[i] - subs[i]->n < 100) {
				send_credit(fd, credit_id++, subs[i]->id, 400);
				granted[i] += 400;
			}
		}
		/* Stop the appenders once every subscription switched to
		 * live and received live events while they still ran. */
		bool live = true;
		for (size_t i = 0; i < 3; i++)
			live = live && subs[i]->caught_up > 0 &&
			       subs[i]->n >= subs[i]->caught_up_at + 50;
		if (!joined && live) {
			__atomic_store_n(&appenders_stop, 1, __ATOMIC_SEQ_CST);
			appenders_join(a, APPENDERS);
			joined = true;
		}
		cr_assert_lt(++total, 2000000, "the appenders never stopped");
	}
	if (!joined)
		appenders_join(a, APPENDERS);

	struct e2e_event *evs;
	size_t n;
	const char *const ftypes[] = {"A"};
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &evs, &n), 0);
	assert_exactly(&all, evs, n, "$all");
	cr_assert_gt(all.caught_up_at, 0);
	e2e_events_free(evs, n);
	cr_assert_eq(e2e_read_stream(c, "s-1", 0, &evs, &n), 0);
	assert_exactly(&one, evs, n, "stream s-1");
	cr_assert_geq(one.caught_up_at, 300, "caught_up before the stored events");
	e2e_events_free(evs, n);
	cr_assert_eq(e2e_read_all(c, 0, "s-", ftypes, 1, &evs, &n), 0);
	cr_assert_gt(n, 300);
	assert_exactly(&filt, evs, n, "filtered $all");
	e2e_events_free(evs, n);
	printf("switch-over: $all %zu events (caught_up after %zu), s-1 %zu, filtered %zu\n", all.n,
	       all.caught_up_at, one.n, filt.n);

	/* Live after the switch-over: one more append reaches all three it
	 * matches, once. */
	size_t before[3] = {all.n, one.n, filt.n};
	append_n(c, "s-1", "A", 1);
	struct want w1 = {&all, before[0] + 1}, w2 = {&one, before[1] + 1},
	            w3 = {&filt, before[2] + 1};
	recv_until(fd, subs, 3, have_n_items, &w1);
	recv_until(fd, subs, 3, have_n_items, &w2);
	recv_until(fd, subs, 3, have_n_items, &w3);
	assert_quiet(fd, subs, 3, 999);
	cr_assert_eq(all.caught_up + one.caught_up + filt.caught_up, 3);

	for (size_t i = 0; i < 3; i++)
		rsub_free(subs[i]);
	close(fd);
	e2e_suite_stop_client(c);
}

Test(sub_e2e, start_positions_and_a_stream_that_does_not_exist_yet)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "w");
	append_n(c, "x", "T", 10);
	int fd = e2e_suite_raw_hello();
	struct rsub end = {.req_id = 5}, later = {.req_id = 6}, from = {.req_id = 7},
	            sfrom = {.req_id = 8};
	struct rsub *subs[] = {&end, &later, &from, &sfrom};
	subscribe_spec(
	        fd, end.req_id,
	        (struct sub_spec){.from = WHIZBANG__V1__START_FROM__FROM_END, .credits = 100});
	subscribe_spec(fd, later.req_id,
	               (struct sub_spec){.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM,
	                                 .stream = "later",
	                                 .credits = 100});
	subscribe_spec(fd, from.req_id,
	               (struct sub_spec){.from = WHIZBANG__V1__START_FROM__FROM_POSITION,
	                                 .position = 8,
	                                 .credits = 100});
	subscribe_spec(fd, sfrom.req_id,
	               (struct sub_spec){.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM,
	                                 .stream = "x",
	                                 .from = WHIZBANG__V1__START_FROM__FROM_POSITION,
	                                 .position = 9,
	                                 .credits = 100});

	struct want w[4] = {{&end, 0}, {&later, 0}, {&from, 3}, {&sfrom, 1}};
	for (size_t i = 0; i < 4; i++)
		recv_until(fd, subs, 4, have_n, &w[i]);
	cr_assert_eq(end.start, 11);
	cr_assert_eq(later.start, 0);
	cr_assert_eq(from.start, 8);
	cr_assert_eq(sfrom.start, 9);
	cr_assert_eq(end.n, 0);
	cr_assert_eq(later.n, 0);
	cr_assert_eq(from.n, 3);
	cr_assert_eq(from.pos[0], 8);
	cr_assert_eq(sfrom.ver[0], 9);

	append_n(c, "later", "T", 3);
	struct want w2[3] = {{&end, 3}, {&later, 3}, {&from, 6}};
	for (size_t i = 0; i < 3; i++)
		recv_until(fd, subs, 4, have_n_items, &w2[i]);
	cr_assert_eq(end.pos[0], 11);
	for (uint64_t v = 0; v < 3; v++)
		cr_assert_eq(later.ver[v], v);
	assert_quiet(fd, subs, 4, 50);
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(subs[i]->caught_up, 1);
		rsub_free(subs[i]);
	}
	close(fd);
	e2e_suite_stop_client(c);
}

Test(sub_e2e, never_more_items_than_credits)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "w");
	append_n(c, "c", "T", 100);
	int fd = e2e_suite_raw_hello();
	struct rsub s = {.req_id = 3};
	struct rsub *subs[] = {&s};
	subscribe_spec(fd, s.req_id, (struct sub_spec){.credits = 10});
	struct want w = {&s, 10};
	recv_until(fd, subs, 1, have_n_items, &w);
	assert_quiet(fd, subs, 1, 4);
	cr_assert_eq(s.n, 10, "more than the 10 credits granted");
	cr_assert_eq(s.caught_up, 0);

	/* Credits add up; the answer says how many are left. */
	send_credit(fd, 5, s.id, 25);
	Response *r = recv_answer(fd, subs, 1, 5);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_CREDIT);
	cr_assert_leq(r->credit->credits, 25);
	whizbang__v1__response__free_unpacked(r, NULL);
	w.n = 35;
	recv_until(fd, subs, 1, have_n_items, &w);
	assert_quiet(fd, subs, 1, 6);
	cr_assert_eq(s.n, 35);

	/* Live events wait for credits too. */
	append_n(c, "c", "T", 50);
	assert_quiet(fd, subs, 1, 7);
	cr_assert_eq(s.n, 35);
	send_credit(fd, 8, s.id, 1000);
	r = recv_answer(fd, subs, 1, 8);
	whizbang__v1__response__free_unpacked(r, NULL);
	w.n = 150;
	recv_until(fd, subs, 1, have_n, &w);
	for (size_t i = 0; i < s.n; i++)
		cr_assert_eq(s.pos[i], i + 1);
	cr_assert_eq(s.caught_up, 1);
	cr_assert_eq(s.caught_up_at, 150);
	/* caught_up took no credit: 1000 - 115 are left. */
	send_credit(fd, 9, s.id, 0);
	r = recv_answer(fd, subs, 1, 9);
	cr_assert_eq(r->credit->credits, 1000 - 115);
	whizbang__v1__response__free_unpacked(r, NULL);
	rsub_free(&s);
	close(fd);
	e2e_suite_stop_client(c);
}

/* A figure of /proc/PID/status in KiB ("VmRSS", "RssAnon"). */
static long status_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	long kib = -1;
	size_t flen = strlen(field);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, flen) == 0 && line[flen] == ':' &&
		    sscanf(line + flen + 1, "%ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* What the server may grow by while 100 000 events pile up behind the slow
 * subscribers: the store's mapped pages plus the output bound. Under
 * AddressSanitizer (the test and the server are built alike) freed memory
 * sits in its quarantine (up to 256 MiB) and every allocation has redzones,
 * so only a looser bound means anything there. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_BOUND_KIB (320 * 1024)
#define HEAP_BOUND_KIB (288 * 1024)
#else
#define RSS_BOUND_KIB (64 * 1024)
#define HEAP_BOUND_KIB (16 * 1024)
#endif

#define SLOW_EVENTS 100000u
#define SLOW_THREADS 2

struct bulk {
	pthread_t th;
	int index;
	int error;
};

static void *bulk_main(void *arg)
{
	struct bulk *b = arg;
	struct wb_client *c = e2e_client(&e2e_srv, "bulk");
	if (c == NULL) {
		b->error = WB_E_IO;
		return NULL;
	}
	char data[64];
	memset(data, 'd', sizeof(data));
	struct wb_new_event ev[100];
	for (size_t i = 0; i < 100; i++)
		ev[i] = (struct wb_new_event){
		        .type = "Bulk", .data = data, .data_len = sizeof(data)};
	char stream[32];
	snprintf(stream, sizeof(stream), "bulk-%d", b->index);
	for (size_t i = 0; i < SLOW_EVENTS / SLOW_THREADS / 100; i++) {
		struct wb_append_result ar;
		int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, ev, 100, &ar);
		if (rc != 0) {
			b->error = rc;
			break;
		}
	}
	wb_close(c);
	return NULL;
}

Test(sub_e2e, slow_consumers_cost_bounded_memory_and_then_get_everything)
{
	const char *args[] = {"--max-output-per-connection", "1M", NULL};
	e2e_suite_start(args);
	/* One subscriber grants nothing; the other grants plenty but does
	 * not read its socket. */
	int fd0 = e2e_suite_raw_hello(), fd1 = e2e_suite_raw_hello();
	struct rsub s0 = {.req_id = 2}, s1 = {.req_id = 2};
	struct rsub *subs0[] = {&s0}, *subs1[] = {&s1};
	Whizbang__V1__Subscribe sub = WHIZBANG__V1__SUBSCRIBE__INIT;
	send_subscribe(fd0, 2, &sub);
	recv_until(fd0, subs0, 1, answered, &s0);
	sub.credits = SLOW_EVENTS;
	send_subscribe(fd1, 2, &sub);
	recv_until(fd1, subs1, 1, answered, &s1);
	struct want w0 = {&s0, 0}, w1 = {&s1, 0};
	recv_until(fd0, subs0, 1, have_n, &w0); /* an empty log: caught up */
	recv_until(fd1, subs1, 1, have_n, &w1);

	struct wb_client *pinger = e2e_suite_client("pinger");
	cr_assert_eq(wb_ping(pinger), 0);
	long before = status_kib(e2e_srv.pid, "VmRSS");
	long anon_before = status_kib(e2e_srv.pid, "RssAnon");
	struct bulk b[SLOW_THREADS];
	for (int i = 0; i < SLOW_THREADS; i++) {
		b[i] = (struct bulk){.index = i};
		cr_assert_eq(pthread_create(&b[i].th, NULL, bulk_main, &b[i]), 0);
	}
	/* Other clients are served meanwhile. */
	int pings = 0;
	for (; pings < 20; pings++) {
		cr_assert_eq(wb_ping(pinger), 0, "ping during the appends: %s", wb_errmsg(pinger));
		e2e_sleep_ms(20);
	}
	for (int i = 0; i < SLOW_THREADS; i++) {
		pthread_join(b[i].th, NULL);
		cr_assert_eq(b[i].error, 0, "bulk appender: %s", wb_error_name(b[i].error));
	}
	cr_assert_eq(wb_ping(pinger), 0);
	e2e_sleep_ms(200);
	long after = status_kib(e2e_srv.pid, "VmRSS");
	long anon_after = status_kib(e2e_srv.pid, "RssAnon");
	printf("slow consumers: server VmRSS %ld KiB before, %ld KiB after %u events appended "
	       "(growth %ld KiB; of it anonymous memory %ld -> %ld KiB, the rest is the "
	       "store's mapped pages)\n",
	       before, after, SLOW_EVENTS, after - before, anon_before, anon_after);
	cr_assert_gt(before, 0);
	cr_assert_lt(after - before, RSS_BOUND_KIB, "the server grew by %ld KiB", after - before);
	cr_assert_lt(anon_after - anon_before, HEAP_BOUND_KIB, "the heap grew by %ld KiB",
	             anon_after - anon_before);

	/* Now both receive everything, in order, then caught_up. */
	send_credit(fd0, 3, s0.id, SLOW_EVENTS);
	Response *r = recv_answer(fd0, subs0, 1, 3);
	whizbang__v1__response__free_unpacked(r, NULL);
	w0.n = SLOW_EVENTS;
	w1.n = SLOW_EVENTS;
	recv_until(fd0, subs0, 1, have_n_items, &w0);
	recv_until(fd1, subs1, 1, have_n_items, &w1);
	cr_assert_eq(s0.n, SLOW_EVENTS);
	cr_assert_eq(s1.n, SLOW_EVENTS);
	for (size_t i = 0; i < SLOW_EVENTS; i++) {
		cr_assert_eq(s0.pos[i], i + 1, "zero-credit subscriber: item %zu", i);
		cr_assert_eq(s1.pos[i], i + 1, "non-reading subscriber: item %zu", i);
	}
	long end = status_kib(e2e_srv.pid, "VmRSS");
	printf("slow consumers: VmRSS %ld KiB after delivering both\n", end);
	/* Their caught_up came only once, at the start (the log was empty). */
	assert_quiet(fd0, subs0, 1, 4);
	assert_quiet(fd1, subs1, 1, 4);
	cr_assert_eq(s0.caught_up, 1);
	cr_assert_eq(s1.caught_up, 1);
	rsub_free(&s0);
	rsub_free(&s1);
	close(fd0);
	close(fd1);
	wb_close(pinger);
	e2e_suite_stop();
}

static void lease_n(struct wb_client *c, size_t n, struct wb_lease_grant *g)
{
	struct wb_lease_args a = {.projection = "subs", .duration_ms = 30000, .count = (uint32_t)n};
	size_t got = 0;
	int rc = wb_lease(c, &a, g, n, &got);
	cr_assert_eq(rc, 0, "lease: %s: %s", wb_error_name(rc), wb_errmsg(c));
	cr_assert_eq(got, n);
}

Test(sub_e2e, ledger_entries_in_sequence_order_up_to_the_watermark)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "leaser");
	struct wb_lease_grant g[6];
	lease_n(c, 6, g);
	cr_assert_eq(wb_commit(c, g[0].sequence, g[0].token, NULL, true, false, NULL), 0);
	cr_assert_eq(wb_release(c, g[1].sequence, g[1].token, "test"), 0);

	int fd = e2e_suite_raw_hello();
	struct rsub s = {.req_id = 9};
	struct rsub *subs[] = {&s};
	struct sub_spec ledger = {.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER,
	                          .credits = 100};
	subscribe_spec(fd, s.req_id, ledger);
	struct want w = {&s, 2};
	recv_until(fd, subs, 1, have_n, &w);
	cr_assert_eq(s.start, 1);
	cr_assert_eq(s.caught_up_at, 2);

	/* 4 and 5 are durable but above the lease of 3: the watermark waits,
	 * and so does the subscription. */
	cr_assert_eq(wb_commit(c, g[3].sequence, g[3].token, NULL, false, false, NULL), 0);
	cr_assert_eq(wb_release(c, g[4].sequence, g[4].token, NULL), 0);
	assert_quiet(fd, subs, 1, 10);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(wb_commit(c, g[2].sequence, g[2].token, NULL, true, false, NULL), 0);
	w.n = 5;
	recv_until(fd, subs, 1, have_n_items, &w);
	cr_assert_eq(wb_commit(c, g[5].sequence, g[5].token, NULL, true, false, NULL), 0);
	w.n = 6;
	recv_until(fd, subs, 1, have_n_items, &w);
	const uint64_t kinds[6] = {WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	                           WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	                           WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	                           WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	                           WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	                           WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED};
	for (size_t i = 0; i < 6; i++) {
		cr_assert_eq(s.pos[i], g[i].sequence, "entry %zu", i);
		cr_assert_eq(s.ver[i], kinds[i], "entry %zu kind", i);
	}
	cr_assert_eq(s.reason[1], WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED);
	assert_quiet(fd, subs, 1, 11);
	cr_assert_eq(s.caught_up, 1);

	/* FROM_END on the ledger starts after the watermark. */
	struct rsub e = {.req_id = 12};
	struct rsub *subs2[] = {&s, &e};
	ledger.from = WHIZBANG__V1__START_FROM__FROM_END;
	subscribe_spec(fd, e.req_id, ledger);
	struct want we = {&e, 0};
	recv_until(fd, subs2, 2, have_n, &we);
	cr_assert_eq(e.start, g[5].sequence + 1);
	rsub_free(&s);
	rsub_free(&e);
	close(fd);
	e2e_suite_stop_client(c);
}

Test(sub_e2e, unsubscribe_stops_pushes_and_closing_frees)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "w");
	int fd = e2e_suite_raw_hello();
	struct rsub s = {.req_id = 4};
	struct rsub *subs[] = {&s};
	subscribe_spec(fd, s.req_id, (struct sub_spec){.credits = 1000});
	append_n(c, "u", "T", 5);
	struct want w = {&s, 5};
	recv_until(fd, subs, 1, have_n, &w);
	send_unsubscribe(fd, 5, s.id);
	Response *r = recv_answer(fd, subs, 1, 5);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_UNSUBSCRIBE);
	whizbang__v1__response__free_unpacked(r, NULL);
	size_t had = s.n;
	append_n(c, "u", "T", 5);
	assert_quiet(fd, subs, 1, 6);
	cr_assert_eq(s.n, had, "pushed after Unsubscribe");
	/* The id is gone: Credit and Unsubscribe answer NOT_FOUND. */
	send_credit(fd, 7, s.id, 5);
	r = recv_answer(fd, subs, 1, 7);
	cr_assert_eq(e2e_error_code(r), WB_NOT_FOUND);
	whizbang__v1__response__free_unpacked(r, NULL);
	send_unsubscribe(fd, 8, s.id);
	r = recv_answer(fd, subs, 1, 8);
	cr_assert_eq(e2e_error_code(r), WB_NOT_FOUND);
	whizbang__v1__response__free_unpacked(r, NULL);
	rsub_free(&s);

	/* Many subscriptions on a connection that closes mid-delivery, a
	 * few times over: the server stays healthy. */
	for (int round = 0; round < 5; round++) {
		int fd2 = e2e_suite_raw_hello();
		for (uint64_t i = 0; i < 20; i++) {
			subscribe_spec(fd2, 10 + i, (struct sub_spec){.credits = 100000});
		}
		append_n(c, "u", "T", 100);
		close(fd2);
	}
	cr_assert_eq(wb_ping(c), 0);
	append_n(c, "u", "T", 1);
	/* Only this client's connection is left (the raw one above too). */
	uint64_t conns = 0;
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(e2e_connections(c, &conns), 0);
		if (conns == 2)
			break;
		e2e_sleep_ms(20);
	}
	cr_assert_eq(conns, 2);
	close(fd);
	e2e_suite_stop_client(c);
}

/* Sends sub on fd and returns the error code of the answer (0: accepted). */
static int subscribe_code(int fd, uint64_t id, Whizbang__V1__Subscribe *sub, char *msg,
                          size_t msglen)
{
	send_subscribe(fd, id, sub);
	Response *r = NULL;
	/* An accepted one may push caught_up before anything else of ours. */
	for (;;) {
		cr_assert_eq(e2e_recv_response(fd, RECV_MS, &r), 0);
		if (r->body_case != WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM)
			break;
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	cr_assert_eq(r->id, id);
	int code = e2e_error_code(r);
	if (msg != NULL)
		snprintf(msg, msglen, "%s",
		         code != 0 && r->error->message ? r->error->message : "");
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

Test(sub_e2e, hostile_requests_get_clear_errors)
{
	e2e_suite_start(NULL);
	int fd = e2e_suite_raw_hello();
	char msg[512];
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = 7;
	cr_assert_eq(subscribe_code(fd, 2, &s, msg, sizeof(msg)), WB_BAD_REQUEST);
	cr_assert_not_null(strstr(msg, "target"), "%s", msg);

	s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	cr_assert_eq(subscribe_code(fd, 3, &s, msg, sizeof(msg)), WB_BAD_REQUEST, "empty stream");
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = '\0';
	s.stream = longname;
	cr_assert_eq(subscribe_code(fd, 4, &s, msg, sizeof(msg)), WB_BAD_REQUEST, "256 bytes");
	longname[255] = '\0';
	cr_assert_eq(subscribe_code(fd, 5, &s, NULL, 0), 0, "255 bytes is a valid name");

	s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
	s.stream = (char *)"x";
	cr_assert_eq(subscribe_code(fd, 6, &s, msg, sizeof(msg)), WB_BAD_REQUEST,
	             "a stream on $all");
	s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER;
	s.stream_prefix = (char *)"p";
	cr_assert_eq(subscribe_code(fd, 7, &s, msg, sizeof(msg)), WB_BAD_REQUEST,
	             "a filter on the ledger");
	s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
	char *types[65];
	for (size_t i = 0; i < 65; i++)
		types[i] = (char *)"T";
	s.n_event_types = 65;
	s.event_types = types;
	cr_assert_eq(subscribe_code(fd, 8, &s, msg, sizeof(msg)), WB_BAD_REQUEST, "65 types");
	s.n_event_types = 1;
	types[0] = (char *)"";
	cr_assert_eq(subscribe_code(fd, 9, &s, msg, sizeof(msg)), WB_BAD_REQUEST, "empty type");
	s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
	s.from = 9;
	cr_assert_eq(subscribe_code(fd, 10, &s, msg, sizeof(msg)), WB_BAD_REQUEST, "from 9");

	/* Credits cap instead of overflowing. */
	s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
	s.credits = UINT32_MAX;
	send_subscribe(fd, 20, &s);
	struct rsub r = {.req_id = 20};
	struct rsub *subs[] = {&r};
	recv_until(fd, subs, 1, answered, &r);
	uint64_t last = 0;
	for (uint64_t i = 0; i < 4; i++) {
		send_credit(fd, 21 + i, r.id, UINT32_MAX);
		Response *a = recv_answer(fd, subs, 1, 21 + i);
		cr_assert_eq(e2e_error_code(a), 0);
		cr_assert_geq(a->credit->credits, last, "credits went down: overflow");
		cr_assert_geq(a->credit->credits, (uint64_t)UINT32_MAX * (i + 2));
		last = a->credit->credits;
		whizbang__v1__response__free_unpacked(a, NULL);
	}
	rsub_free(&r);

	/* Another connection's subscription is not ours. */
	int other = e2e_suite_raw_hello();
	send_credit(other, 2, 1, 5);
	Response *a = NULL;
	cr_assert_eq(e2e_recv_response(other, RECV_MS, &a), 0);
	cr_assert_eq(e2e_error_code(a), WB_NOT_FOUND);
	whizbang__v1__response__free_unpacked(a, NULL);

	/* At most 64 per connection. */
	int code = 0;
	uint64_t id = 100;
	size_t ok = 0;
	for (; id < 200; id++) {
		s = (Whizbang__V1__Subscribe)WHIZBANG__V1__SUBSCRIBE__INIT;
		s.from = WHIZBANG__V1__START_FROM__FROM_END;
		code = subscribe_code(other, id, &s, msg, sizeof(msg));
		if (code != 0)
			break;
		ok++;
	}
	cr_assert_eq(ok, 64);
	cr_assert_eq(code, WB_RESOURCE_EXHAUSTED, "%s", msg);
	printf("hostile: the 65th subscription: %s\n", msg);
	close(other);
	close(fd);
	struct wb_client *c = e2e_suite_client("after");
	cr_assert_eq(wb_ping(c), 0);
	e2e_suite_stop_client(c);
}

/* Deletes the stream over a raw connection of its own. */
static void delete_stream(const char *stream, bool hard)
{
	int fd = e2e_suite_raw_hello();
	Whizbang__V1__DeleteStream d = WHIZBANG__V1__DELETE_STREAM__INIT;
	d.stream = (char *)stream;
	d.hard = hard;
	Request req = E2E_REQUEST(DELETE_STREAM, delete_stream, &d);
	req.id = 2;
	Response *r = NULL;
	cr_assert_eq(e2e_raw_call(fd, &req, &r), 0);
	cr_assert_eq(e2e_error_code(r), 0, "DeleteStream: %s", r->error ? r->error->message : "");
	whizbang__v1__response__free_unpacked(r, NULL);
	close(fd);
}

Test(sub_e2e, stream_subscriptions_follow_deletes)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "w");
	append_n(c, "d", "T", 3);
	delete_stream("d", false);
	int fd = e2e_suite_raw_hello();
	struct rsub s = {.req_id = 3}, late = {.req_id = 4};
	struct rsub *subs[] = {&s, &late};
	struct sub_spec d = {.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM,
	                     .stream = "d",
	                     .credits = 100};
	subscribe_spec(fd, s.req_id, d);
	/* A soft-deleted stream hides versions 0..2: nothing to catch up. */
	struct want w = {&s, 0};
	recv_until(fd, subs, 1, have_n, &w);
	cr_assert_eq(s.start, 3);
	cr_assert_eq(s.n, 0);
	/* Written again, versions continue from 3. */
	append_n(c, "d", "T", 2);
	w.n = 2;
	recv_until(fd, subs, 1, have_n_items, &w);
	cr_assert_eq(s.ver[0], 3);
	cr_assert_eq(s.ver[1], 4);
	/* A hard delete ends it with STREAM_DELETED and refuses new ones. */
	delete_stream("d", true);
	for (int i = 0; i < 100 && s.error == 0; i++) {
		Response *other = NULL;
		cr_assert_eq(recv_route(fd, RECV_MS, subs, 1, &other), 0);
		cr_assert_null(other);
	}
	cr_assert_eq(s.error, WB_STREAM_DELETED);
	subscribe_spec(fd, late.req_id, d);
	recv_until(fd, subs, 2, answered, &late);
	cr_assert_eq(late.error, WB_STREAM_DELETED);
	/* The ended subscription is gone. */
	send_credit(fd, 9, s.id, 1);
	Response *r = recv_answer(fd, subs, 2, 9);
	cr_assert_eq(e2e_error_code(r), WB_NOT_FOUND);
	whizbang__v1__response__free_unpacked(r, NULL);
	rsub_free(&s);
	rsub_free(&late);
	close(fd);
	e2e_suite_stop_client(c);
}

struct drainer {
	pthread_t th;
	int fd;
	size_t frames;
};

/* Reads frames (slowly) until the server closes the connection. */
static void *drain_main(void *arg)
{
	struct drainer *d = arg;
	for (;;) {
		Response *r = NULL;
		if (e2e_recv_response(d->fd, 30000, &r) != 0)
			break;
		if (++d->frames % 100 == 0)
			e2e_sleep_ms(2); /* slow enough to be mid-catch-up at the stop */
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	return NULL;
}

Test(sub_e2e, shutdown_with_subscriptions_mid_catch_up_is_clean)
{
	const char *args[] = {"--shutdown-timeout-ms", "3000", "--max-output-per-connection", "64K",
	                      NULL};
	struct wb_client *c = e2e_suite_start_client(args, "w");
	/* 20 MiB: more than loopback's socket buffers hold. */
	static char data[4096];
	memset(data, 'b', sizeof(data));
	struct wb_new_event ev[50];
	for (size_t i = 0; i < 50; i++)
		ev[i] = (struct wb_new_event){.type = "T", .data = data, .data_len = sizeof(data)};
	for (int i = 0; i < 100; i++) {
		struct wb_append_result ar;
		cr_assert_eq(wb_append(c, "big", WB_EXPECT_ANY, 0, ev, 50, &ar), 0);
	}
	wb_close(c);
	/* One reads as fast as it can (the pump is busy for it), one does
	 * not read at all (paused on its output), one waits at the end. */
	int fds[3] = {e2e_suite_raw_hello(), e2e_suite_raw_hello(), e2e_suite_raw_hello()};
	for (int i = 0; i < 3; i++) {
		Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
		s.credits = 1000000;
		if (i == 2)
			s.from = WHIZBANG__V1__START_FROM__FROM_END;
		send_subscribe(fds[i], 2, &s);
	}
	struct drainer d = {.fd = fds[0]};
	cr_assert_eq(pthread_create(&d.th, NULL, drain_main, &d), 0);
	e2e_sleep_ms(50);
	cr_assert_eq(kill(e2e_srv.pid, SIGTERM), 0);
	/* The server waits for queued output to be written, and the client
	 * that never reads would hold it past --shutdown-timeout-ms (server/server.c
	 * waits for writes in flight even after the timeout): it goes away
	 * first. */
	e2e_sleep_ms(200);
	close(fds[1]);
	fds[1] = -1;
	e2e_suite_wait_exit();
	pthread_join(d.th, NULL);
	printf("shutdown: the reading subscriber had %zu frames when the server closed\n",
	       d.frames);
	cr_assert_gt(d.frames, 0);
	close(fds[0]);
	close(fds[2]);
}

Test(sub_e2e, a_selective_filter_crosses_a_long_run_of_other_events)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "w");
	/* 25 000 events the filter skips (more than one pump examines), then
	 * one it matches. */
	append_n(c, "noise", "T", 25000);
	append_n(c, "wanted-1", "Hit", 1);
	int fd = e2e_suite_raw_hello();
	struct rsub s = {.req_id = 3};
	struct rsub *subs[] = {&s};
	subscribe_spec(fd, s.req_id,
	               (struct sub_spec){.stream_prefix = "wanted-", .type = "Hit", .credits = 10});
	struct want w = {&s, 1};
	recv_until(fd, subs, 1, have_n, &w);
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.pos[0], 25001);
	cr_assert_eq(s.caught_up_at, 1);
	/* And live: more noise, then a match. */
	append_n(c, "noise", "Hit", 500);
	append_n(c, "wanted-2", "Miss", 5);
	append_n(c, "wanted-2", "Hit", 1);
	w.n = 2;
	recv_until(fd, subs, 1, have_n_items, &w);
	cr_assert_eq(s.pos[1], 25507);
	assert_quiet(fd, subs, 1, 4);
	cr_assert_eq(s.caught_up, 1);
	rsub_free(&s);
	close(fd);
	e2e_suite_stop_client(c);
}

/* Many subscriptions of one client identity (one address, three
 * connections) share one subscription's push work a pump pass, and the
 * pass starts one subscription further each time (srv_sub.c): every one
 * of them still gets every event once, in order, then caught_up once,
 * and then live events. */
#define SHARE_FDS 3
#define SHARE_SUBS 8
#define SHARE_EVENTS 3000

static bool all_have(struct rsub (*subs)[SHARE_SUBS], size_t n)
{
	for (size_t f = 0; f < SHARE_FDS; f++)
		for (size_t i = 0; i < SHARE_SUBS; i++)
			if (subs[f][i].error != 0 || subs[f][i].n < n || subs[f][i].caught_up == 0)
				return false;
	return true;
}

Test(sub_e2e, many_subscriptions_of_one_identity_share_the_pump_and_each_gets_everything)
{
	struct wb_client *c = e2e_suite_start_client(NULL, "seed");
	append_n(c, "share-a", "A", SHARE_EVENTS / 2);
	append_n(c, "share-b", "B", SHARE_EVENTS / 2);

	int fd[SHARE_FDS];
	struct rsub subs[SHARE_FDS][SHARE_SUBS];
	struct rsub *ptr[SHARE_FDS][SHARE_SUBS];
	memset(subs, 0, sizeof(subs));
	for (size_t f = 0; f < SHARE_FDS; f++) {
		fd[f] = e2e_suite_raw_hello();
		for (size_t i = 0; i < SHARE_SUBS; i++) {
			subs[f][i].req_id = 10 + i;
			ptr[f][i] = &subs[f][i];
			subscribe_spec(fd[f], subs[f][i].req_id,
			               (struct sub_spec){.credits = 100000});
		}
	}
	/* Read the connections in turn until every subscription has all. */
	for (int idle = 0; !all_have(subs, SHARE_EVENTS); idle++) {
		/* 100 turns of 60 ms without a byte: some were left behind. */
		cr_assert_lt(idle, 100, "the subscriptions stopped before all caught up");
		for (size_t f = 0; f < SHARE_FDS; f++) {
			/* Only a connection with bytes waiting: a receive cut off
			 * by its timeout mid-frame would lose the frame. */
			struct pollfd p = {.fd = fd[f], .events = POLLIN};
			if (poll(&p, 1, 20) != 1)
				continue;
			idle = 0;
			Response *other = NULL;
			int rc = recv_route(fd[f], RECV_MS, ptr[f], SHARE_SUBS, &other);
			cr_assert_eq(rc, 0, "receiving: %s", wb_error_name(rc));
			cr_assert_null(other, "an unexpected response");
		}
	}
	struct e2e_event *evs;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &evs, &n), 0);
	cr_assert_eq(n, SHARE_EVENTS);
	for (size_t f = 0; f < SHARE_FDS; f++)
		for (size_t i = 0; i < SHARE_SUBS; i++)
			assert_exactly(&subs[f][i], evs, n, "a subscription of the identity");
	e2e_events_free(evs, n);

	/* Live: one more event reaches all of them, once. */
	append_n(c, "share-a", "A", 1);
	for (size_t f = 0; f < SHARE_FDS; f++) {
		for (size_t i = 0; i < SHARE_SUBS; i++) {
			struct want w = {&subs[f][i], SHARE_EVENTS + 1};
			recv_until(fd[f], ptr[f], SHARE_SUBS, have_n_items, &w);
		}
		assert_quiet(fd[f], ptr[f], SHARE_SUBS, 999);
		for (size_t i = 0; i < SHARE_SUBS; i++)
			rsub_free(&subs[f][i]);
		close(fd[f]);
	}
	e2e_suite_stop_client(c);
}

/* What the kernel holds for a subscriber counts against --push-buffer: one
 * that never reads is pushed about the buffer (and what its own socket
 * took), not the buffer and the sender's socket buffers (4 MiB on
 * loopback). Once it reads, it gets everything, in order: the pump looks
 * again by itself while a subscriber waits on its peer. */
static uint64_t bytes_out_of(struct wb_client *admin, const char *name)
{
	Whizbang__V1__ClientList *l = NULL;
	cr_assert_eq(wb_list_clients(admin, &l), 0, "%s", wb_errmsg(admin));
	uint64_t out = 0;
	bool found = false;
	for (size_t i = 0; i < l->n_clients; i++)
		if (strcmp(l->clients[i]->client_name, name) == 0) {
			out = l->clients[i]->bytes_out;
			found = true;
		}
	wb_client_list_free(l);
	cr_assert(found, "no connection named %s", name);
	return out;
}

Test(sub_e2e, a_subscriber_that_does_not_read_is_pushed_its_buffer_and_then_everything)
{
	/* The negative control (test_sub_e2e_lie) gives the server a push
	 * buffer eight times the one the bound below is made of. */
	const char *args[] = {"--push-buffer", getenv("WB_SUB_E2E_LIE") != NULL ? "2M" : "256K",
	                      NULL};
	struct wb_client *c = e2e_suite_start_client(args, "seed");
	cr_assert_eq(e2e_append_mib(c, "bulk", 12), 0, "%s", wb_errmsg(c));
	struct e2e_event *evs;
	size_t n;
	cr_assert_eq(e2e_read_all(c, 0, NULL, NULL, 0, &evs, &n), 0);

	int fd = e2e_raw_connect(&e2e_srv);
	cr_assert(fd >= 0);
	Whizbang__V1__Hello h = WHIZBANG__V1__HELLO__INIT;
	h.protocol_version = WB_PROTOCOL_VERSION;
	h.client_name = (char *)"never-reads";
	Request hr = E2E_REQUEST(HELLO, hello, &h);
	hr.id = 1;
	Response *r = NULL;
	cr_assert_eq(e2e_raw_call(fd, &hr, &r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	struct rsub s = {.req_id = 10};
	struct rsub *subs[] = {&s};
	subscribe_spec(fd, s.req_id, (struct sub_spec){.credits = 10000000});

	/* Pushed until it holds the buffer: the figure stops growing. */
	uint64_t out = 0, last = UINT64_MAX;
	for (int i = 0; i < 100 && out != last; i++) {
		last = out;
		e2e_sleep_ms(200);
		out = bytes_out_of(c, "never-reads");
	}
	cr_assert_eq(out, last, "the pushes to a subscriber that does not read never stopped");
	/* 256K, the socket's own receive buffer (at most a few hundred KiB
	 * unread), an item over: well under a MiB. Without counting the
	 * kernel, about 4 MiB. */
	cr_assert_lt(out, 1024 * 1024, "a subscriber that does not read was pushed %llu bytes",
	             (unsigned long long)out);

	/* Reading now: every event, once, in order, then caught_up. */
	struct want w = {&s, n};
	recv_until(fd, subs, 1, have_n, &w);
	assert_exactly(&s, evs, n, "the late reader");
	e2e_events_free(evs, n);
	rsub_free(&s);
	close(fd);
	e2e_suite_stop_client(c);
}
