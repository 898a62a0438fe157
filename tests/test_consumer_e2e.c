/* Durable consumer groups (issue 5) against a real whizbangd, over raw
 * sockets (tests/e2e_util.h) with appends through libwhizbang: competing
 * members, credits, ack-timeout redelivery, parking after max_deliveries,
 * nack retry/park/skip, listing and replaying parked events, a member that
 * disconnects, a server restart, deletion and hostile requests. Ack
 * timeouts are 200 ms; every wait is bounded. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "e2e_util.h"

#define RECV_MS 3000
#define MAX_SEEN 10400

TestSuite(consumer_e2e, .fini = e2e_suite_fini, .timeout = 60);

typedef Whizbang__V1__Request Req;
typedef Whizbang__V1__Response Resp;

/* ---------------------------------------------------------------- helpers */

/* Appends n events to stream, each with type, and returns the first
 * position. */
static uint64_t append(struct wb_client *c, const char *stream, const char *type, size_t n)
{
	struct wb_new_event evs[64];
	cr_assert_leq(n, 64);
	for (size_t i = 0; i < n; i++)
		evs[i] = (struct wb_new_event){.type = type, .data = "x", .data_len = 1};
	struct wb_append_result r;
	int rc = wb_append(c, stream, WB_EXPECT_ANY, 0, evs, n, &r);
	cr_assert_eq(rc, 0, "append: %s", wb_errmsg(c));
	return r.first_position;
}

/* A raw connection: its own request ids, and the pushes it has received. */
struct item {
	uint8_t id[16];
	uint64_t position;
	uint32_t delivery;
	char stream[64];
};

struct peer {
	int fd;
	uint64_t next_id;
	uint64_t join_id;
	uint64_t sub;
	struct item items[MAX_SEEN];
	size_t nitems, taken;
	bool joined;
	bool ended; /* the group's deletion ended the subscription */
};

static struct peer *peer_new(void)
{
	struct peer *p = calloc(1, sizeof(*p));
	cr_assert_not_null(p);
	p->fd = e2e_suite_raw_hello();
	p->next_id = 100;
	return p;
}

static void peer_free(struct peer *p)
{
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

/* Keeps a push; returns true when r was one. */
static bool keep_push(struct peer *p, Resp *r)
{
	if (!p->joined || r->id != p->join_id)
		return false;
	if (r->body_case == WHIZBANG__V1__RESPONSE__BODY_SUBSCRIPTION_ITEM) {
		Whizbang__V1__SubscriptionItem *it = r->subscription_item;
		cr_assert_eq(it->subscription, p->sub);
		cr_assert_eq(it->item_case, WHIZBANG__V1__SUBSCRIPTION_ITEM__ITEM_EVENT);
		cr_assert_lt(p->nitems, MAX_SEEN);
		struct item *x = &p->items[p->nitems++];
		cr_assert_eq(it->event->id.len, 16);
		memcpy(x->id, it->event->id.data, 16);
		x->position = it->event->position;
		x->delivery = it->delivery;
		snprintf(x->stream, sizeof(x->stream), "%s", it->event->stream);
	} else if (r->error != NULL && r->error->code != 0) {
		p->ended = true;
	}
	whizbang__v1__response__free_unpacked(r, NULL);
	return true;
}

/* Sends req and returns its answer, keeping pushes that come before it. */
static Resp *call(struct peer *p, Req *req)
{
	req->id = p->next_id++;
	cr_assert_eq(e2e_send_request(p->fd, req), 0);
	for (;;) {
		Resp *r = NULL;
		int rc = e2e_recv_response(p->fd, RECV_MS, &r);
		cr_assert_eq(rc, 0, "no answer to request %llu: %s", (unsigned long long)req->id,
		             wb_error_name(rc));
		if (keep_push(p, r))
			continue;
		cr_assert_eq(r->id, req->id, "answer to %llu, expected %llu",
		             (unsigned long long)r->id, (unsigned long long)req->id);
		return r;
	}
}

static int code_of(Resp *r)
{
	int code = e2e_error_code(r);
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

/* Collects what was pushed up to now (a Ping answer follows every push
 * queued before it). */
static void sync_peer(struct peer *p)
{
	Whizbang__V1__Ping ping = WHIZBANG__V1__PING__INIT;
	Req req = E2E_REQUEST(PING, ping, &ping);
	Resp *r = call(p, &req);
	cr_assert_eq(e2e_error_code(r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
}

/* Waits until p has received at least n items in all (or ms pass). */
static size_t wait_items(struct peer *p, size_t n, int ms)
{
	int64_t end = e2e_now_ms() + ms;
	for (;;) {
		sync_peer(p);
		if (p->nitems >= n || e2e_now_ms() >= end)
			return p->nitems;
		e2e_sleep_ms(10);
	}
}

static struct cons_args {
	const char *name;
	Whizbang__V1__SubscriptionTarget target;
	const char *stream;
	const char *prefix;
	const char *type;
	uint64_t ack_timeout_ms;
	uint32_t max_deliveries;
} defaults = {.ack_timeout_ms = 200, .max_deliveries = 10};

static int create(struct peer *p, struct cons_args a)
{
	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	cfg.name = (char *)a.name;
	cfg.target = a.target;
	cfg.stream = (char *)(a.stream != NULL ? a.stream : "");
	cfg.stream_prefix = (char *)(a.prefix != NULL ? a.prefix : "");
	char *types[1] = {(char *)a.type};
	if (a.type != NULL) {
		cfg.n_event_types = 1;
		cfg.event_types = types;
	}
	cfg.ack_timeout_ms = a.ack_timeout_ms;
	cfg.max_deliveries = a.max_deliveries;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	Req req = E2E_REQUEST(CREATE_CONSUMER, create_consumer, &cc);
	Resp *r = call(p, &req);
	if (e2e_error_code(r) == 0)
		cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_CONSUMER);
	return code_of(r);
}

/* The arguments of a group whose ack timeout never passes during a test. */
static struct cons_args slow_args(const char *name)
{
	struct cons_args a = defaults;
	a.name = name;
	a.ack_timeout_ms = 30000;
	return a;
}

static int create_slow(struct peer *p, const char *name)
{
	return create(p, slow_args(name));
}

static int create_named(struct peer *p, const char *name)
{
	struct cons_args a = defaults;
	a.name = name;
	return create(p, a);
}

static int join(struct peer *p, const char *name, uint32_t credits)
{
	Whizbang__V1__JoinConsumer j = WHIZBANG__V1__JOIN_CONSUMER__INIT;
	j.name = (char *)name;
	j.credits = credits;
	Req req = E2E_REQUEST(JOIN_CONSUMER, join_consumer, &j);
	p->join_id = p->next_id; /* pushes carry it */
	Resp *r = call(p, &req);
	int code = e2e_error_code(r);
	if (code == 0) {
		cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE);
		p->sub = r->subscribe->subscription;
		p->joined = true;
	} else {
		p->join_id = 0;
	}
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

/* A new peer, joined with credits to a new group name whose ack timeout
 * never passes during a test (create_slow()). */
static struct peer *slow_member(const char *name, uint32_t credits)
{
	struct peer *p = peer_new();
	cr_assert_eq(create_slow(p, name), 0);
	cr_assert_eq(join(p, name, credits), 0);
	return p;
}

/* The start of a test: e2e_srv, a client of it in *w, and a member of a new
 * slow group "g" with credits, which holds the n events (at most 64) just
 * appended to stream "s". */
static struct peer *start_member(struct wb_client **w, uint32_t credits, size_t n)
{
	*w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = slow_member("g", credits);
	append(*w, "s", "T", n);
	cr_assert_eq(wait_items(p, n, 2000), n);
	return p;
}

/* Gives pushes that must not come ms to arrive, then asserts that p holds
 * n items in all. */
static void expect_items_after(struct peer *p, int ms, size_t n, const char *why)
{
	e2e_sleep_ms(ms);
	sync_peer(p);
	cr_assert_eq(p->nitems, n, "%s: %zu items, expected %zu", why, p->nitems, n);
}

/* The end of a test with one peer and one client. */
static void done(struct wb_client *w, struct peer *p)
{
	peer_free(p);
	wb_close(w);
	e2e_suite_stop();
}

static uint64_t credit(struct peer *p, uint64_t sub, uint32_t n, int *code)
{
	Whizbang__V1__Credit cr = WHIZBANG__V1__CREDIT__INIT;
	cr.subscription = sub;
	cr.n = n;
	Req req = E2E_REQUEST(CREDIT, credit, &cr);
	Resp *r = call(p, &req);
	*code = e2e_error_code(r);
	uint64_t credits = *code == 0 ? r->credit->credits : 0;
	whizbang__v1__response__free_unpacked(r, NULL);
	return credits;
}

/* Acks (nack < 0) or nacks items[from..from+n) of p; returns the error code
 * and the checkpoint the answer names. */
static int settle(struct peer *p, const char *name, const struct item *items, size_t n, int nack,
                  const char *reason, uint64_t *checkpoint)
{
	ProtobufCBinaryData *ids = calloc(n > 0 ? n : 1, sizeof(*ids));
	for (size_t i = 0; i < n; i++) {
		ids[i].data = (uint8_t *)items[i].id;
		ids[i].len = 16;
	}
	Req req = WHIZBANG__V1__REQUEST__INIT;
	Whizbang__V1__AckEvents a = WHIZBANG__V1__ACK_EVENTS__INIT;
	Whizbang__V1__NackEvents k = WHIZBANG__V1__NACK_EVENTS__INIT;
	if (nack < 0) {
		a.name = (char *)name;
		a.n_ids = n;
		a.ids = ids;
		req.body_case = WHIZBANG__V1__REQUEST__BODY_ACK;
		req.ack = &a;
	} else {
		k.name = (char *)name;
		k.n_ids = n;
		k.ids = ids;
		k.action = (Whizbang__V1__NackAction)nack;
		k.reason = (char *)(reason != NULL ? reason : "");
		req.body_case = WHIZBANG__V1__REQUEST__BODY_NACK;
		req.nack = &k;
	}
	Resp *r = call(p, &req);
	free(ids);
	int code = e2e_error_code(r);
	if (code == 0 && checkpoint != NULL)
		*checkpoint = nack < 0 ? r->ack->checkpoint : r->nack->checkpoint;
	whizbang__v1__response__free_unpacked(r, NULL);
	return code;
}

static uint64_t ack_all(struct peer *p, const char *name)
{
	uint64_t cp = 0;
	cr_assert_eq(settle(p, name, p->items, p->nitems, -1, NULL, &cp), 0);
	return cp;
}

/* The group's info from ListConsumers (asserts it is there). */
static Whizbang__V1__ConsumerInfo info_of(struct peer *p, const char *name, bool *found)
{
	Whizbang__V1__ListConsumers l = WHIZBANG__V1__LIST_CONSUMERS__INIT;
	Req req = E2E_REQUEST(LIST_CONSUMERS, list_consumers, &l);
	Resp *r = call(p, &req);
	cr_assert_eq(e2e_error_code(r), 0);
	Whizbang__V1__ConsumerInfo out = WHIZBANG__V1__CONSUMER_INFO__INIT;
	*found = false;
	for (size_t i = 0; i < r->consumers->n_consumers; i++)
		if (strcmp(r->consumers->consumers[i]->config->name, name) == 0) {
			out = *r->consumers->consumers[i];
			out.config = NULL;
			*found = true;
		}
	whizbang__v1__response__free_unpacked(r, NULL);
	return out;
}

static Whizbang__V1__ConsumerInfo info(struct peer *p, const char *name)
{
	bool found;
	Whizbang__V1__ConsumerInfo i = info_of(p, name, &found);
	cr_assert(found, "group %s is not listed", name);
	return i;
}

/* ListParked: the positions (up to 64), and the first reason. */
static size_t list_parked(struct peer *p, const char *name, uint64_t *pos, uint32_t *deliveries,
                          char *reason, size_t reason_len)
{
	Whizbang__V1__ListParked lp = WHIZBANG__V1__LIST_PARKED__INIT;
	lp.name = (char *)name;
	lp.max_count = 64;
	Req req = E2E_REQUEST(LIST_PARKED, list_parked, &lp);
	Resp *r = call(p, &req);
	cr_assert_eq(e2e_error_code(r), 0);
	size_t n = r->parked->n_events;
	for (size_t i = 0; i < n; i++) {
		pos[i] = r->parked->events[i]->event->position;
		if (deliveries != NULL)
			deliveries[i] = r->parked->events[i]->deliveries;
		if (i == 0 && reason != NULL)
			snprintf(reason, reason_len, "%s", r->parked->events[i]->reason);
	}
	cr_assert(r->parked->end);
	whizbang__v1__response__free_unpacked(r, NULL);
	return n;
}

static uint64_t replay(struct peer *p, const char *name)
{
	Whizbang__V1__ReplayParked rp = WHIZBANG__V1__REPLAY_PARKED__INIT;
	rp.name = (char *)name;
	Req req = E2E_REQUEST(REPLAY_PARKED, replay_parked, &rp);
	Resp *r = call(p, &req);
	cr_assert_eq(e2e_error_code(r), 0);
	uint64_t n = r->replay_parked->replayed;
	whizbang__v1__response__free_unpacked(r, NULL);
	return n;
}

static int cmp_pos(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------- tests */

Test(consumer_e2e, competing_members_share_all_events)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *ctl = peer_new();
	cr_assert_eq(create_named(ctl, "work"), 0);
	cr_assert_eq(create_slow(ctl, "work-slow"), 0);
	struct peer *m[3];
	for (int i = 0; i < 3; i++) {
		m[i] = peer_new();
		cr_assert_eq(join(m[i], "work-slow", 1000), 0);
	}
	for (int b = 0; b < 5; b++)
		append(w, b % 2 ? "orders-1" : "orders-2", "Placed", 40);
	int64_t end = e2e_now_ms() + 10000;
	size_t total = 0;
	while (total < 200 && e2e_now_ms() < end) {
		total = 0;
		for (int i = 0; i < 3; i++) {
			sync_peer(m[i]);
			total += m[i]->nitems;
		}
	}
	cr_assert_eq(total, 200, "members got %zu of 200 events", total);
	uint64_t pos[200];
	size_t n = 0;
	for (int i = 0; i < 3; i++) {
		cr_assert_gt(m[i]->nitems, 0, "member %d got nothing (round-robin)", i);
		for (size_t j = 0; j < m[i]->nitems; j++) {
			cr_assert_eq(m[i]->items[j].delivery, 1);
			pos[n++] = m[i]->items[j].position;
		}
	}
	qsort(pos, n, sizeof(pos[0]), cmp_pos);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(pos[i], i + 1, "events are distinct and complete");
	/* nothing more arrives: each is with one member at a time */
	e2e_sleep_ms(100);
	for (int i = 0; i < 3; i++) {
		size_t before = m[i]->nitems;
		sync_peer(m[i]);
		cr_assert_eq(m[i]->nitems, before);
	}
	uint64_t cp = 0;
	for (int i = 0; i < 3; i++)
		cp = ack_all(m[i], "work-slow") > cp ? ack_all(m[i], "work-slow") : cp;
	cr_assert_eq(cp, 200, "the checkpoint covers every event once all are acked");
	Whizbang__V1__ConsumerInfo in = info(ctl, "work-slow");
	cr_assert_eq(in.checkpoint, 200);
	cr_assert_eq(in.members, 3);
	cr_assert_eq(in.in_flight, 0);
	cr_assert_eq(in.delivered, 200);
	cr_assert_eq(in.redelivered, 0);
	for (int i = 0; i < 3; i++)
		peer_free(m[i]);
	done(w, ctl);
}

Test(consumer_e2e, credits_bound_the_pushes)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = slow_member("g", 2);
	append(w, "s", "T", 10);
	expect_items_after(p, 100, 2, "two credits, two pushes");
	int code;
	cr_assert_eq(credit(p, p->sub, 3, &code), 3);
	cr_assert_eq(code, 0);
	cr_assert_eq(wait_items(p, 5, 2000), 5);
	expect_items_after(p, 50, 5, "five credits, five pushes");
	/* huge grants are capped, not summed without bound */
	uint64_t c1 = credit(p, p->sub, UINT32_MAX, &code);
	uint64_t c2 = credit(p, p->sub, UINT32_MAX, &code);
	cr_assert_eq(code, 0);
	cr_assert_leq(c2, 1000000);
	cr_assert_leq(c1, c2);
	cr_assert_eq(wait_items(p, 10, 2000), 10);
	credit(p, 424242, 1, &code);
	cr_assert_eq(code, WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	done(w, p);
}

Test(consumer_e2e, ack_timeout_redelivers)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = peer_new();
	cr_assert_eq(create_named(p, "g"), 0);
	cr_assert_eq(join(p, "g", 100), 0);
	int64_t t0 = e2e_now_ms(); /* before the first delivery */
	append(w, "s", "T", 3);
	cr_assert_eq(wait_items(p, 3, 2000), 3);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(p->items[i].delivery, 1);
	cr_assert_eq(wait_items(p, 6, 3000), 6, "the unacked events come back");
	cr_assert_geq(e2e_now_ms() - t0, 200, "not before the ack timeout");
	for (int i = 3; i < 6; i++) {
		cr_assert_eq(p->items[i].delivery, 2);
		cr_assert_eq(p->items[i].position, p->items[i - 3].position);
	}
	uint64_t cp = 0;
	cr_assert_eq(settle(p, "g", p->items + 3, 3, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 3);
	expect_items_after(p, 400, 6, "acked events are not redelivered");
	Whizbang__V1__ConsumerInfo in = info(p, "g");
	cr_assert_eq(in.redelivered, 3);
	cr_assert_eq(in.checkpoint, 3);
	done(w, p);
}

Test(consumer_e2e, parks_after_max_deliveries_then_replays)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = peer_new();
	struct cons_args a = defaults;
	a.name = "g";
	a.max_deliveries = 2;
	cr_assert_eq(create(p, a), 0);
	cr_assert_eq(join(p, "g", 100), 0);
	append(w, "s", "T", 2);
	cr_assert_eq(wait_items(p, 2, 2000), 2);
	/* ack the second, never the first */
	uint64_t cp = 99;
	cr_assert_eq(settle(p, "g", p->items + 1, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 0, "the first is not settled yet");
	cr_assert_eq(wait_items(p, 3, 3000), 3);
	cr_assert_eq(p->items[2].position, 1);
	cr_assert_eq(p->items[2].delivery, 2);
	/* after the second timeout it is parked, and the checkpoint passes it */
	int64_t end = e2e_now_ms() + 3000;
	Whizbang__V1__ConsumerInfo in;
	do {
		e2e_sleep_ms(50);
		in = info(p, "g");
	} while ((in.parked != 1 || in.checkpoint != 2) && e2e_now_ms() < end);
	cr_assert_eq(in.parked, 1);
	cr_assert_eq(in.checkpoint, 2);
	sync_peer(p);
	cr_assert_eq(p->nitems, 3, "a parked event is not delivered a third time");
	uint64_t pos[64];
	uint32_t dels[64];
	char reason[256] = "";
	cr_assert_eq(list_parked(p, "g", pos, dels, reason, sizeof(reason)), 1);
	cr_assert_eq(pos[0], 1);
	cr_assert_eq(dels[0], 2);
	cr_assert_not_null(strstr(reason, "max_deliveries"), "reason: %s", reason);

	cr_assert_eq(replay(p, "g"), 1);
	cr_assert_eq(wait_items(p, 4, 2000), 4);
	cr_assert_eq(p->items[3].position, 1);
	cr_assert_eq(p->items[3].delivery, 1, "a replay starts counting again");
	cr_assert_eq(list_parked(p, "g", pos, NULL, NULL, 0), 0, "being replayed: not listed");
	cr_assert_eq(settle(p, "g", p->items + 3, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 2);
	in = info(p, "g");
	cr_assert_eq(in.parked, 0);
	cr_assert_eq(list_parked(p, "g", pos, NULL, NULL, 0), 0);
	cr_assert_eq(replay(p, "g"), 0);
	done(w, p);
}

Test(consumer_e2e, nack_retry_park_skip)
{
	struct wb_client *w;
	struct peer *p = start_member(&w, 100, 3);
	uint64_t cp = 99;
	cr_assert_eq(
	        settle(p, "g", p->items + 0, 1, WHIZBANG__V1__NACK_ACTION__NACK_RETRY, NULL, &cp),
	        0);
	cr_assert_eq(cp, 0);
	cr_assert_eq(wait_items(p, 4, 2000), 4, "a retried event comes back at once");
	cr_assert_eq(p->items[3].position, 1);
	cr_assert_eq(p->items[3].delivery, 2);
	cr_assert_eq(settle(p, "g", p->items + 1, 1, WHIZBANG__V1__NACK_ACTION__NACK_PARK,
	                    "bad payload", &cp),
	             0);
	cr_assert_eq(
	        settle(p, "g", p->items + 2, 1, WHIZBANG__V1__NACK_ACTION__NACK_SKIP, NULL, &cp),
	        0);
	cr_assert_eq(cp, 0, "position 1 is still in flight");
	cr_assert_eq(settle(p, "g", p->items + 3, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 3);
	uint64_t pos[64];
	char reason[64];
	cr_assert_eq(list_parked(p, "g", pos, NULL, reason, sizeof(reason)), 1);
	cr_assert_eq(pos[0], 2);
	cr_assert_str_eq(reason, "bad payload");
	/* settling again is harmless */
	cr_assert_eq(settle(p, "g", p->items, 4, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 3);
	done(w, p);
}

Test(consumer_e2e, member_disconnect_hands_events_back)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	/* only the disconnect can bring them back */
	struct peer *a = slow_member("g", 5);
	append(w, "s", "T", 10);
	cr_assert_eq(wait_items(a, 5, 2000), 5);
	cr_assert_eq(settle(a, "g", a->items, 2, -1, NULL, NULL), 0);
	peer_free(a); /* 3 in flight, unacked */
	struct peer *b = peer_new();
	cr_assert_eq(join(b, "g", 100), 0);
	cr_assert_eq(wait_items(b, 8, 3000), 8);
	uint64_t pos[8];
	size_t redelivered = 0;
	for (size_t i = 0; i < 8; i++) {
		pos[i] = b->items[i].position;
		redelivered += b->items[i].delivery == 2;
	}
	qsort(pos, 8, sizeof(pos[0]), cmp_pos);
	for (size_t i = 0; i < 8; i++)
		cr_assert_eq(pos[i], i + 3);
	cr_assert_eq(redelivered, 3);
	cr_assert_eq(ack_all(b, "g"), 10, "nothing lost");
	done(w, b);
}

Test(consumer_e2e, restart_resumes_from_durable_checkpoint)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = peer_new();
	struct cons_args a = slow_args("g");
	a.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	a.stream = "orders";
	cr_assert_eq(create(p, a), 0);
	cr_assert_eq(create_named(p, "all"), 0);
	cr_assert_eq(join(p, "g", 100), 0);
	append(w, "orders", "T", 10);
	append(w, "other", "T", 5);
	append(w, "orders", "T", 10);
	cr_assert_eq(wait_items(p, 20, 2000), 20);
	for (size_t i = 0; i < 20; i++)
		cr_assert_str_eq(p->items[i].stream, "orders");
	uint64_t cp = 0;
	cr_assert_eq(settle(p, "g", p->items, 10, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 10, "positions 1..10 are orders 0..9");
	/* and some above the checkpoint, not contiguous: not durable */
	cr_assert_eq(settle(p, "g", p->items + 15, 5, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 10);
	done(w, p);

	e2e_suite_restart();
	p = peer_new();
	Whizbang__V1__ConsumerInfo in = info(p, "g");
	cr_assert_eq(in.checkpoint, 10);
	in = info(p, "all");
	cr_assert_eq(in.checkpoint, 0);
	cr_assert_eq(join(p, "g", 100), 0);
	cr_assert_eq(wait_items(p, 10, 3000), 10, "everything above the checkpoint again");
	for (size_t i = 0; i < 10; i++) {
		cr_assert_eq(p->items[i].position, 16 + i);
		cr_assert_eq(p->items[i].delivery, 1);
	}
	cr_assert_eq(ack_all(p, "g"), 25);
	peer_free(p);
	e2e_suite_stop();

	e2e_suite_restart();
	p = peer_new();
	in = info(p, "g");
	cr_assert_eq(in.checkpoint, 25);
	cr_assert_eq(join(p, "g", 100), 0);
	expect_items_after(p, 200, 0, "nothing acked is delivered again");
	peer_free(p);
	e2e_suite_stop();
}

Test(consumer_e2e, filters_and_parked_survive_restart)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = peer_new();
	struct cons_args a = slow_args("billing");
	a.prefix = "order-";
	a.type = "Paid";
	cr_assert_eq(create(p, a), 0);
	cr_assert_eq(join(p, "billing", 100), 0);
	append(w, "order-1", "Placed", 3);
	append(w, "order-1", "Paid", 2);
	append(w, "customer-1", "Paid", 2);
	append(w, "order-2", "Paid", 1);
	cr_assert_eq(wait_items(p, 3, 2000), 3);
	expect_items_after(p, 50, 3, "only order-* Paid events");
	cr_assert_eq(p->items[0].position, 4);
	cr_assert_eq(p->items[1].position, 5);
	cr_assert_eq(p->items[2].position, 8);
	uint64_t cp = 0;
	cr_assert_eq(
	        settle(p, "billing", p->items, 1, WHIZBANG__V1__NACK_ACTION__NACK_PARK, "x", &cp),
	        0);
	cr_assert_eq(cp, 4);
	cr_assert_eq(settle(p, "billing", p->items + 1, 2, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 8);
	/* an event the group never delivered (wrong stream) is refused */
	struct peer *o = peer_new();
	struct cons_args b = defaults;
	b.name = "other";
	b.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	b.stream = "customer-1";
	cr_assert_eq(create(o, b), 0);
	cr_assert_eq(settle(o, "other", p->items, 1, -1, NULL, NULL),
	             WHIZBANG__V1__ERROR_CODE__BAD_REQUEST);
	peer_free(o);
	done(w, p);
	e2e_suite_restart();
	p = peer_new();
	uint64_t pos[64];
	char reason[16];
	cr_assert_eq(list_parked(p, "billing", pos, NULL, reason, sizeof(reason)), 1);
	cr_assert_eq(pos[0], 4);
	Whizbang__V1__ConsumerInfo in = info(p, "billing");
	cr_assert_eq(in.parked, 1);
	cr_assert_eq(in.checkpoint, 8);
	cr_assert_eq(replay(p, "billing"), 1);
	cr_assert_eq(join(p, "billing", 100), 0);
	cr_assert_eq(wait_items(p, 1, 2000), 1);
	cr_assert_eq(p->items[0].position, 4);
	peer_free(p);
	e2e_suite_stop();
}

Test(consumer_e2e, delete_ends_members_and_drops_everything)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *ctl = peer_new();
	struct peer *m = peer_new();
	cr_assert_eq(create_slow(ctl, "g"), 0);
	cr_assert_eq(join(m, "g", 100), 0);
	append(w, "s", "T", 2);
	cr_assert_eq(wait_items(m, 2, 2000), 2);
	cr_assert_eq(settle(m, "g", m->items, 1, WHIZBANG__V1__NACK_ACTION__NACK_PARK, "r", NULL),
	             0);
	Whizbang__V1__DeleteConsumer d = WHIZBANG__V1__DELETE_CONSUMER__INIT;
	d.name = "g";
	Req req = E2E_REQUEST(DELETE_CONSUMER, delete_consumer, &d);
	Resp *r = call(ctl, &req);
	cr_assert_eq(e2e_error_code(r), 0);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_DELETE_CONSUMER);
	whizbang__v1__response__free_unpacked(r, NULL);
	cr_assert_eq(code_of(call(ctl, &req)), WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	sync_peer(m);
	cr_assert(m->ended, "the member was told its subscription ended");
	append(w, "s", "T", 2);
	expect_items_after(m, 100, 2, "no pushes after the delete");
	bool found;
	info_of(ctl, "g", &found);
	cr_assert(!found);
	struct peer *j = peer_new();
	cr_assert_eq(join(j, "g", 1), WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	cr_assert_eq(settle(j, "g", m->items, 1, -1, NULL, NULL),
	             WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	/* the same name again starts afresh: no parked events, checkpoint 0 */
	cr_assert_eq(create_named(ctl, "g"), 0);
	uint64_t pos[64];
	cr_assert_eq(list_parked(ctl, "g", pos, NULL, NULL, 0), 0);
	cr_assert_eq(info(ctl, "g").checkpoint, 0);
	peer_free(j);
	peer_free(m);
	done(w, ctl);
	e2e_suite_restart();
	ctl = peer_new();
	cr_assert_eq(info(ctl, "g").parked, 0);
	peer_free(ctl);
	e2e_suite_stop();
}

Test(consumer_e2e, hostile_requests)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = peer_new();
	const int BAD = WHIZBANG__V1__ERROR_CODE__BAD_REQUEST;
	cr_assert_eq(create_named(p, ""), BAD);
	char longname[300];
	memset(longname, 'n', 256);
	longname[256] = '\0';
	cr_assert_eq(create_named(p, longname), BAD);
	cr_assert_eq(create_named(p, "tab\tname"), BAD);
	/* A name may hold spaces, quotes and '=', but cannot pose as fields of
	 * a log line: it is logged quoted. */
	cr_assert_eq(create_named(p, "x level=error \"y"), 0);
	cr_assert_eq(e2e_log_count(&e2e_srv, "group=\"x level=error \\\"y\" checkpoint="), 1);
	cr_assert_eq(create_slow(p, "g"), 0);
	cr_assert_eq(create_named(p, "g"), BAD, "already exists");
	struct cons_args a = defaults;
	a.name = "h";
	a.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER;
	cr_assert_eq(create(p, a), BAD);
	a.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_STREAM;
	cr_assert_eq(create(p, a), BAD, "a stream group needs its stream");
	a = defaults;
	a.name = "h";
	a.ack_timeout_ms = 1;
	cr_assert_eq(create(p, a), BAD);
	a.ack_timeout_ms = 200;
	a.max_deliveries = 1000000;
	cr_assert_eq(create(p, a), BAD);

	cr_assert_eq(join(p, "g", 10), 0);
	append(w, "s", "T", 1);
	cr_assert_eq(wait_items(p, 1, 2000), 1);
	/* ids that are not 16 bytes */
	uint8_t short_id[15] = {0};
	ProtobufCBinaryData bad_id = {15, short_id};
	Whizbang__V1__AckEvents ack = WHIZBANG__V1__ACK_EVENTS__INIT;
	ack.name = "g";
	ack.n_ids = 1;
	ack.ids = &bad_id;
	Req req = E2E_REQUEST(ACK, ack, &ack);
	cr_assert_eq(code_of(call(p, &req)), BAD);
	/* too many ids */
	ProtobufCBinaryData *many = calloc(1001, sizeof(*many));
	for (size_t i = 0; i < 1001; i++) {
		many[i].data = p->items[0].id;
		many[i].len = 16;
	}
	ack.n_ids = 1001;
	ack.ids = many;
	cr_assert_eq(code_of(call(p, &req)), BAD);
	free(many);
	/* an id that is no event */
	struct item ghost;
	memset(&ghost, 0, sizeof(ghost));
	memset(ghost.id, 0xee, 16);
	cr_assert_eq(settle(p, "g", &ghost, 1, -1, NULL, NULL),
	             WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	cr_assert_eq(settle(p, "nope", p->items, 1, -1, NULL, NULL),
	             WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	cr_assert_eq(settle(p, "g", p->items, 1, 7, NULL, NULL), BAD, "not a NackAction");
	/* a connection that is not a member may settle (documented) */
	struct peer *q = peer_new();
	uint64_t cp = 0;
	cr_assert_eq(settle(q, "g", p->items, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 1);
	int code;
	credit(q, p->sub, 1, &code);
	cr_assert_eq(code, WHIZBANG__V1__ERROR_CODE__NOT_FOUND,
	             "another connection's subscription");
	/* unsubscribe: pushes end */
	Whizbang__V1__Unsubscribe u = WHIZBANG__V1__UNSUBSCRIBE__INIT;
	u.subscription = p->sub;
	req = (Req)WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_UNSUBSCRIBE;
	req.unsubscribe = &u;
	cr_assert_eq(code_of(call(p, &req)), 0);
	cr_assert_eq(code_of(call(p, &req)), WHIZBANG__V1__ERROR_CODE__NOT_FOUND);
	append(w, "s", "T", 1);
	expect_items_after(p, 100, 1, "no pushes after Unsubscribe");
	peer_free(q);
	done(w, p);
}

Test(consumer_e2e, window_bounds_what_is_in_flight)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = slow_member("g", UINT32_MAX);
	for (int i = 0; i < 160; i++)
		append(w, "s", "T", 64); /* 10 240 events */
	/* 10 000 in flight at most: the rest waits for the oldest to settle */
	cr_assert_eq(wait_items(p, 10000, 10000), 10000);
	expect_items_after(p, 200, 10000, "at most the window in flight");
	Whizbang__V1__ConsumerInfo in = info(p, "g");
	cr_assert_eq(in.in_flight, 10000);
	cr_assert_eq(in.checkpoint, 0);
	/* acking one above the oldest frees nothing; acking the oldest frees two */
	uint64_t cp = 99;
	cr_assert_eq(settle(p, "g", p->items + 1, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 0);
	expect_items_after(p, 100, 10000, "acking above the oldest frees nothing");
	cr_assert_eq(settle(p, "g", p->items, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 2);
	cr_assert_eq(wait_items(p, 10002, 3000), 10002);
	cr_assert_eq(p->items[10001].position, 10002);
	done(w, p);
}

Test(consumer_e2e, parked_above_checkpoint_stays_parked_after_restart)
{
	struct wb_client *w;
	struct peer *p = start_member(&w, 100, 3);
	uint64_t cp = 99;
	cr_assert_eq(
	        settle(p, "g", p->items + 1, 1, WHIZBANG__V1__NACK_ACTION__NACK_PARK, "p", &cp), 0);
	cr_assert_eq(cp, 0, "position 1 is unsettled");
	done(w, p);
	e2e_suite_restart();
	p = peer_new();
	cr_assert_eq(join(p, "g", 100), 0);
	cr_assert_eq(wait_items(p, 2, 2000), 2);
	expect_items_after(p, 100, 2, "the parked event is not delivered again");
	cr_assert_eq(p->items[0].position, 1);
	cr_assert_eq(p->items[1].position, 3);
	cr_assert_eq(ack_all(p, "g"), 3);
	uint64_t pos[64];
	cr_assert_eq(list_parked(p, "g", pos, NULL, NULL, 0), 1);
	cr_assert_eq(pos[0], 2);
	peer_free(p);
	e2e_suite_stop();
}

/* A figure, not a benchmark: 4 members take 16 000 events, each acking
 * what it received in one Ack per round and granting as many credits
 * again. Prints the rate; asserts only that everything is settled. */
Test(consumer_e2e, figures_four_members_ack_in_batches)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *m[4];
	struct cons_args a = slow_args("rate");
	for (int i = 0; i < 4; i++) {
		m[i] = peer_new();
		if (i == 0)
			cr_assert_eq(create(m[0], a), 0);
		cr_assert_eq(join(m[i], "rate", 500), 0);
	}
	for (int i = 0; i < 250; i++)
		append(w, "s", "T", 64);
	int64_t t0 = e2e_now_ms();
	size_t settled = 0;
	uint64_t cp = 0;
	int64_t end = t0 + 30000;
	while (settled < 16000 && e2e_now_ms() < end) {
		for (int i = 0; i < 4; i++) {
			struct peer *p = m[i];
			sync_peer(p);
			size_t n = p->nitems - p->taken;
			if (n == 0)
				continue;
			if (n > 1000)
				n = 1000;
			cr_assert_eq(settle(p, "rate", p->items + p->taken, n, -1, NULL, &cp), 0);
			p->taken += n;
			settled += n;
			int code;
			credit(p, p->sub, (uint32_t)n, &code);
			cr_assert_eq(code, 0);
		}
	}
	int64_t ms = e2e_now_ms() - t0;
	cr_assert_eq(settled, 16000);
	Whizbang__V1__ConsumerInfo in = info(m[0], "rate");
	cr_assert_eq(in.checkpoint, 16000);
	cr_assert_eq(in.redelivered, 0);
	printf("consumer figures: 16000 events delivered to 4 members and acked in %lld ms "
	       "(%.0f events/s); per member %zu %zu %zu %zu\n",
	       (long long)ms, ms > 0 ? 16000.0 * 1000.0 / (double)ms : 0.0, m[0]->nitems,
	       m[1]->nitems, m[2]->nitems, m[3]->nitems);
	for (int i = 0; i < 4; i++)
		peer_free(m[i]);
	wb_close(w);
	e2e_suite_stop();
}

Test(consumer_e2e, acked_checkpoint_survives_sigkill)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *p = slow_member("g", 1000);
	for (int i = 0; i < 8; i++)
		append(w, "s", "T", 64);
	cr_assert_eq(wait_items(p, 512, 3000), 512);
	uint64_t cp = 0;
	for (size_t i = 0; i < 300; i += 50)
		cr_assert_eq(settle(p, "g", p->items + i, 50, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 300);
	/* an answer names only what is durable: kill at once */
	e2e_kill(&e2e_srv);
	peer_free(p);
	wb_close(w);
	e2e_suite_restart();
	p = peer_new();
	cr_assert_eq(info(p, "g").checkpoint, 300);
	cr_assert_eq(join(p, "g", 1000), 0);
	cr_assert_eq(wait_items(p, 212, 3000), 212);
	cr_assert_eq(p->items[0].position, 301, "delivery resumes right above it");
	cr_assert_eq(ack_all(p, "g"), 512);
	peer_free(p);
	e2e_suite_stop();
}

/* A member that grants plenty but does not read its socket holds at most
 * the output bound (plus the kernel's buffers) in flight, not every event:
 * the rest stays queued for it, or for the others. */
Test(consumer_e2e, output_bound_limits_a_member_that_does_not_read)
{
	const char *args[] = {"--max-output-per-connection", "64K", NULL};
	struct wb_client *w = e2e_suite_start_client(args, "consumer-e2e");
	struct peer *p = peer_new();
	int small = 65536;
	setsockopt(p->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	struct cons_args a = slow_args("g");
	cr_assert_eq(create(p, a), 0);
	cr_assert_eq(join(p, "g", 100000), 0);
	static char data[8192];
	memset(data, 'd', sizeof(data));
	struct wb_new_event evs[50];
	for (int i = 0; i < 50; i++)
		evs[i] = (struct wb_new_event){.type = "T", .data = data, .data_len = sizeof(data)};
	struct wb_append_result ar;
	for (int i = 0; i < 40; i++) /* 2000 events, 16 MiB */
		cr_assert_eq(wb_append(w, "s", WB_EXPECT_ANY, 0, evs, 50, &ar), 0, "%s",
		             wb_errmsg(w));
	e2e_sleep_ms(300);
	struct peer *ctl = peer_new();
	Whizbang__V1__ConsumerInfo in = info(ctl, "g");
	printf("consumer output bound: %llu of 2000 events in flight to a member that does not "
	       "read\n",
	       (unsigned long long)in.in_flight);
	cr_assert_lt(in.in_flight, 1500, "in flight: %llu", (unsigned long long)in.in_flight);
	cr_assert_gt(in.in_flight, 0);
	/* once it reads, it gets them all */
	cr_assert_eq(wait_items(p, 2000, 20000), 2000);
	for (size_t i = 0; i < 2000; i++)
		cr_assert_eq(p->items[i].position, i + 1);
	peer_free(ctl);
	done(w, p);
}

Test(consumer_e2e, timed_out_event_goes_to_a_member_with_credits)
{
	struct wb_client *w = e2e_suite_start_client(NULL, "consumer-e2e");
	struct peer *a = peer_new();
	cr_assert_eq(create_named(a, "g"), 0);
	cr_assert_eq(join(a, "g", 1), 0);
	append(w, "s", "T", 1);
	cr_assert_eq(wait_items(a, 1, 2000), 1);
	struct peer *b = peer_new();
	cr_assert_eq(join(b, "g", 10), 0);
	/* a has no credits left: after the timeout, b gets it */
	cr_assert_eq(wait_items(b, 1, 3000), 1);
	cr_assert_eq(b->items[0].position, 1);
	cr_assert_eq(b->items[0].delivery, 2);
	uint64_t cp = 0;
	cr_assert_eq(settle(b, "g", b->items, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 1);
	/* a's late ack is harmless */
	cr_assert_eq(settle(a, "g", a->items, 1, -1, NULL, &cp), 0);
	cr_assert_eq(cp, 1);
	sync_peer(a);
	cr_assert_eq(a->nitems, 1);
	peer_free(a);
	done(w, b);
}

/* A consumer group's window counts against --memory-budget: near it a full
 * window stops growing (the member gets fewer in flight than the window
 * allows) while other clients are served, and deleting the group gives
 * the memory back. */
static Whizbang__V1__ServerStats *stats_of(struct wb_client *w)
{
	Whizbang__V1__ServerStats *st = NULL;
	cr_assert_eq(wb_stats(w, &st), 0, "%s", wb_errmsg(w));
	return st;
}

Test(consumer_e2e, windows_count_against_the_memory_budget)
{
	/* The negative control (test_consumer_e2e_lie) runs with a budget far
	 * above what the window takes: it grows to the window, and the test
	 * must fail. */
	bool lie = getenv("WB_CONSUMER_E2E_LIE") != NULL;
	const char *args[] = {"--max-frame=64K",
	                      lie ? "--memory-budget=64G" : "--memory-budget=256K", NULL};
	struct wb_client *w = e2e_suite_start_client(args, "consumer-e2e");
	struct peer *p = slow_member("g", UINT32_MAX);
	for (int i = 0; i < 160; i++)
		append(w, "s", "T", 64); /* 10 240 events */
	/* Deliveries stop where the window could not grow: fewer than the
	 * 10 000 it allows. */
	size_t got = wait_items(p, 10000, 3000);
	expect_items_after(p, 300, got, "the window grew near the budget");
	cr_assert_lt(got, 10000, "all %zu in flight: the window grew past the budget", got);
	Whizbang__V1__ServerStats *st = stats_of(w);
	cr_assert_geq(st->memory_consumers, got * 40, "memory_consumers %llu for %zu in flight",
	              (unsigned long long)st->memory_consumers, got);
	cr_assert_geq(st->memory_held, st->memory_consumers);
	cr_assert_eq(st->memory_disconnects, 0, "a connection was closed for a window");
	whizbang__v1__server_stats__free_unpacked(st, NULL);
	/* Others are served meanwhile. */
	append(w, "other", "T", 1);

	/* Acking frees room: the member gets more. */
	for (size_t i = 0; i < got; i += 500)
		cr_assert_eq(
		        settle(p, "g", p->items + i, got - i < 500 ? got - i : 500, -1, NULL, NULL),
		        0);
	cr_assert_gt(wait_items(p, got + 1, 3000), got, "acks freed no room");

	/* The group deleted: the memory comes back. */
	Whizbang__V1__DeleteConsumer dc = WHIZBANG__V1__DELETE_CONSUMER__INIT;
	dc.name = (char *)"g";
	Req req = E2E_REQUEST(DELETE_CONSUMER, delete_consumer, &dc);
	cr_assert_eq(code_of(call(p, &req)), 0);
	st = stats_of(w);
	cr_assert_eq(st->memory_consumers, 0, "%llu bytes kept after the group was deleted",
	             (unsigned long long)st->memory_consumers);
	whizbang__v1__server_stats__free_unpacked(st, NULL);
	done(w, p);
}
