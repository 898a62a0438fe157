/* The whole server in-process (tests/inproc.h): srv_init() on a loop in
 * this thread, real loopback clients driven between loop turns.
 *
 * The allocation sweeps make the Nth allocation fail (tests/fault.h), for
 * N = 1, 2, ... until a request no longer reaches N allocations, over every
 * kind of request and over srv_init() itself. Every failure must end in an
 * answer to the request (success or an error) or a closed connection, never
 * silence; the server must go on serving other connections; it must stop
 * cleanly with no handle left; and nothing may leak (ASan's leak check and
 * valgrind run this executable). The other tests check the figures and the
 * dispatch table that the reshaping of server/ introduced. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "dispatch.h"
#include "fault.h"
#include "inproc.h"
#include "optext.h"
#include "server.h"
#include "wb_error.h"
#include "wire.h"

#define WAIT_MS 5000
/* Allocations one request may need before the sweep gives up on it. */
#define SWEEP_MAX 600

typedef Whizbang__V1__Request Req;
typedef Whizbang__V1__Response Resp;

static struct inproc h;

static void setup(void)
{
	cr_assert_eq(inproc_prepare(&h), 0);
	h.cfg.lease_default_ms = 60000;
}

static void teardown(void)
{
	fault_disarm();
	cr_assert_eq(inproc_stop(&h, WAIT_MS), 0, "the server did not stop");
	cr_assert_eq(inproc_cleanup(&h), 0, "a handle was left on the loop");
}

TestSuite(server, .init = setup, .fini = teardown);

static struct iclient *client(void)
{
	struct iclient *c = iclient_new(h.port);
	cr_assert_not_null(c);
	cr_assert_eq(iclient_hello(&h.loop, c), 0);
	return c;
}

static Resp *call(struct iclient *c, Req *req, uint64_t id)
{
	Resp *r;
	int rc = iclient_call(&h.loop, c, req, id, &r);
	cr_assert_eq(rc, 0, "no answer to request %llu: %s", (unsigned long long)id,
	             wb_strerror(rc));
	return r;
}

static Resp *stats(struct iclient *c, uint64_t id)
{
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	Req req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_GET_STATS;
	req.get_stats = &g;
	Resp *r = call(c, &req, id);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_STATS);
	return r;
}

/* ---------------------------------------------------------------- requests */

/* Every request of the sweep, queued on c with id. x->seq and x->token are
 * a lease the commit-like requests use (leased by prepare()). */
struct ctx {
	struct iclient *aux; /* a connection the sweep does not fault */
	uint64_t seq, token;
	uint64_t ids;
};

/* Queues on c the request id whose body is msg, the member lower of case
 * UPPER (the assignment checks msg's type). */
#define QUEUE(c, id_, UPPER, lower, msg)                                                           \
	do {                                                                                       \
		Req r_ = WHIZBANG__V1__REQUEST__INIT;                                              \
		r_.id = (id_);                                                                     \
		r_.body_case = WHIZBANG__V1__REQUEST__BODY_##UPPER;                                \
		r_.lower = (msg);                                                                  \
		cr_assert_eq(iclient_queue((c), &r_), 0);                                          \
	} while (0)

static Whizbang__V1__OpList *ops(const char *text)
{
	Whizbang__V1__OpList *l;
	struct optext_error err;
	cr_assert_eq(optext_parse_ops(text, &l, &err), 0, "%s", text);
	return l;
}

static void q_append(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__NewEvent e = WHIZBANG__V1__NEW_EVENT__INIT;
	e.type = (char *)"Sweep";
	e.data.data = (uint8_t *)"{\"n\": 1}";
	e.data.len = 8;
	Whizbang__V1__NewEvent *evs[] = {&e, &e};
	Whizbang__V1__AppendEvents a = WHIZBANG__V1__APPEND_EVENTS__INIT;
	a.stream = (char *)"sweep-1";
	a.n_events = 2;
	a.events = evs;
	QUEUE(c, id, APPEND_EVENTS, append_events, &a);
}

static void q_read_stream(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__ReadStream r = WHIZBANG__V1__READ_STREAM__INIT;
	r.stream = (char *)"sweep-1";
	QUEUE(c, id, READ_STREAM, read_stream, &r);
}

static void q_read_all(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	char *types[] = {(char *)"Sweep"};
	Whizbang__V1__ReadAll r = WHIZBANG__V1__READ_ALL__INIT;
	r.stream_prefix = (char *)"sweep-";
	r.n_event_types = 1;
	r.event_types = types;
	QUEUE(c, id, READ_ALL, read_all, &r);
}

static void q_stream_info(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__GetStreamInfo r = WHIZBANG__V1__GET_STREAM_INFO__INIT;
	r.stream = (char *)"sweep-1";
	QUEUE(c, id, GET_STREAM_INFO, get_stream_info, &r);
}

static void q_stats(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__GetStats g = WHIZBANG__V1__GET_STATS__INIT;
	QUEUE(c, id, GET_STATS, get_stats, &g);
}

static void q_set_meta(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__StreamMetadata m = WHIZBANG__V1__STREAM_METADATA__INIT;
	m.max_count = 1000;
	Whizbang__V1__SetStreamMetadata r = WHIZBANG__V1__SET_STREAM_METADATA__INIT;
	r.stream = (char *)"sweep-1";
	r.metadata = &m;
	QUEUE(c, id, SET_STREAM_METADATA, set_stream_metadata, &r);
}

static void q_get_meta(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__GetStreamMetadata r = WHIZBANG__V1__GET_STREAM_METADATA__INIT;
	r.stream = (char *)"sweep-1";
	QUEUE(c, id, GET_STREAM_METADATA, get_stream_metadata, &r);
}

static void q_delete_stream(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__DeleteStream r = WHIZBANG__V1__DELETE_STREAM__INIT;
	r.stream = (char *)"sweep-gone";
	QUEUE(c, id, DELETE_STREAM, delete_stream, &r);
}

static void q_scavenge(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__Scavenge s = WHIZBANG__V1__SCAVENGE__INIT;
	QUEUE(c, id, SCAVENGE, scavenge, &s);
}

static void q_lease(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__Lease l = WHIZBANG__V1__LEASE__INIT;
	l.projection = (char *)"sweep";
	l.count = 2;
	l.on_disconnect = WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_RELEASE;
	QUEUE(c, id, LEASE, lease, &l);
}

/* Leases one sequence for the next request, on its connection before the
 * fault is armed: released when that connection closes, so a commit that
 * failed leaves a gap, not a lease that holds the watermark. */
static void prepare_lease(struct ctx *x, struct iclient *c)
{
	Whizbang__V1__Lease l = WHIZBANG__V1__LEASE__INIT;
	l.projection = (char *)"sweep";
	l.count = 1;
	l.on_disconnect = WHIZBANG__V1__ON_DISCONNECT__ON_DISCONNECT_RELEASE;
	Req req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_LEASE;
	req.lease = &l;
	Resp *r = call(c, &req, ++x->ids);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_LEASE);
	x->seq = r->lease->leases[0]->sequence;
	x->token = r->lease->leases[0]->token;
	whizbang__v1__response__free_unpacked(r, NULL);
}

static void q_commit(struct ctx *x, struct iclient *c, uint64_t id)
{
	Whizbang__V1__OpList *l = ops("upsert Order \"o-1\" {status: \"New\", total: 5}; "
	                              "update Order where status == \"New\" set status = \"Seen\"");
	Whizbang__V1__Commit cm = WHIZBANG__V1__COMMIT__INIT;
	cm.sequence = x->seq;
	cm.token = x->token;
	cm.n_ops = l->n_ops;
	cm.ops = l->ops;
	cm.ack = WHIZBANG__V1__ACK__ACK_APPLIED;
	QUEUE(c, id, COMMIT, commit, &cm);
	optext_free_ops(l);
}

static void q_stage(struct ctx *x, struct iclient *c, uint64_t id)
{
	Whizbang__V1__OpList *l = ops("upsert Order \"o-2\" {status: \"Staged\"}");
	Whizbang__V1__Stage st = WHIZBANG__V1__STAGE__INIT;
	st.sequence = x->seq;
	st.token = x->token;
	st.n_ops = l->n_ops;
	st.ops = l->ops;
	QUEUE(c, id, STAGE, stage, &st);
	optext_free_ops(l);
}

static void q_extend(struct ctx *x, struct iclient *c, uint64_t id)
{
	Whizbang__V1__Extend e = WHIZBANG__V1__EXTEND__INIT;
	e.sequence = x->seq;
	e.token = x->token;
	e.duration_ms = 30000;
	QUEUE(c, id, EXTEND, extend, &e);
}

static void q_release(struct ctx *x, struct iclient *c, uint64_t id)
{
	Whizbang__V1__Release r = WHIZBANG__V1__RELEASE__INIT;
	r.sequence = x->seq;
	r.token = x->token;
	QUEUE(c, id, RELEASE, release, &r);
}

static void q_read_ledger(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__ReadLedger r = WHIZBANG__V1__READ_LEDGER__INIT;
	r.from_sequence = 1;
	QUEUE(c, id, READ_LEDGER, read_ledger, &r);
}

static void q_wait(struct ctx *x, struct iclient *c, uint64_t id)
{
	Whizbang__V1__WaitForWatermark w = WHIZBANG__V1__WAIT_FOR_WATERMARK__INIT;
	w.sequence = x->seq + 1000; /* never reached: it times out */
	w.timeout_ms = 20;
	QUEUE(c, id, WAIT_FOR_WATERMARK, wait_for_watermark, &w);
}

static void q_create_index(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__CreateIndex ci = WHIZBANG__V1__CREATE_INDEX__INIT;
	ci.type = (char *)"Order";
	ci.field = (char *)"status";
	QUEUE(c, id, CREATE_INDEX, create_index, &ci);
}

static void q_get_entity(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__GetEntity g = WHIZBANG__V1__GET_ENTITY__INIT;
	g.type = (char *)"Order";
	g.id = (char *)"o-1";
	QUEUE(c, id, GET_ENTITY, get_entity, &g);
}

static void q_query(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__Expr *e;
	struct optext_error err;
	cr_assert_eq(optext_parse_where("status in (\"Seen\", \"New\") and total >= 1", &e, &err),
	             0);
	Whizbang__V1__Where w = WHIZBANG__V1__WHERE__INIT;
	w.expr = e;
	Whizbang__V1__QueryEntities q = WHIZBANG__V1__QUERY_ENTITIES__INIT;
	q.type = (char *)"Order";
	q.where = &w;
	QUEUE(c, id, QUERY_ENTITIES, query_entities, &q);
	optext_free_expr(e);
}

static void q_list_indexes(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__ListIndexes l = WHIZBANG__V1__LIST_INDEXES__INIT;
	QUEUE(c, id, LIST_INDEXES, list_indexes, &l);
}

static void q_subscribe(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	s.stream_prefix = (char *)"sweep-";
	s.credits = 100;
	QUEUE(c, id, SUBSCRIBE, subscribe, &s);
}

static void q_subscribe_ledger(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__Subscribe s = WHIZBANG__V1__SUBSCRIBE__INIT;
	s.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_LEDGER;
	s.credits = 100;
	QUEUE(c, id, SUBSCRIBE, subscribe, &s);
}

static void q_create_consumer(struct ctx *x, struct iclient *c, uint64_t id)
{
	char name[32];
	snprintf(name, sizeof(name), "g-%llu", (unsigned long long)++x->ids);
	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	cfg.name = name;
	cfg.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	QUEUE(c, id, CREATE_CONSUMER, create_consumer, &cc);
}

static void prepare_group(struct ctx *x, struct iclient *c)
{
	(void)c;
	Whizbang__V1__ConsumerConfig cfg = WHIZBANG__V1__CONSUMER_CONFIG__INIT;
	cfg.name = (char *)"sweep-group";
	cfg.target = WHIZBANG__V1__SUBSCRIPTION_TARGET__TARGET_ALL;
	Whizbang__V1__CreateConsumer cc = WHIZBANG__V1__CREATE_CONSUMER__INIT;
	cc.config = &cfg;
	Req req = WHIZBANG__V1__REQUEST__INIT;
	req.body_case = WHIZBANG__V1__REQUEST__BODY_CREATE_CONSUMER;
	req.create_consumer = &cc;
	Resp *r = call(x->aux, &req, ++x->ids);
	whizbang__v1__response__free_unpacked(r, NULL); /* created, or existed */
}

static void q_join(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__JoinConsumer j = WHIZBANG__V1__JOIN_CONSUMER__INIT;
	j.name = (char *)"sweep-group";
	j.credits = 10;
	QUEUE(c, id, JOIN_CONSUMER, join_consumer, &j);
}

static void q_list_consumers(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__ListConsumers l = WHIZBANG__V1__LIST_CONSUMERS__INIT;
	QUEUE(c, id, LIST_CONSUMERS, list_consumers, &l);
}

static void q_list_parked(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	Whizbang__V1__ListParked l = WHIZBANG__V1__LIST_PARKED__INIT;
	l.name = (char *)"sweep-group";
	QUEUE(c, id, LIST_PARKED, list_parked, &l);
}

static void q_garbage(struct ctx *x, struct iclient *c, uint64_t id)
{
	(void)x;
	(void)id;
	static const uint8_t junk[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
	cr_assert_eq(iclient_queue_raw(c, junk, sizeof(junk)), 0);
}

struct step {
	const char *name;
	void (*prepare)(struct ctx *x, struct iclient *c);
	void (*queue)(struct ctx *x, struct iclient *c, uint64_t id);
	/* the answer expected when nothing fails (0: any body; an error is
	 * always acceptable) */
	Whizbang__V1__Response__BodyCase body;
};

static const struct step steps[] = {
        {"AppendEvents", NULL, q_append, WHIZBANG__V1__RESPONSE__BODY_APPEND_EVENTS},
        {"ReadStream", NULL, q_read_stream, WHIZBANG__V1__RESPONSE__BODY_READ_STREAM},
        {"ReadAll", NULL, q_read_all, WHIZBANG__V1__RESPONSE__BODY_READ_ALL},
        {"GetStreamInfo", NULL, q_stream_info, WHIZBANG__V1__RESPONSE__BODY_STREAM_INFO},
        {"GetStats", NULL, q_stats, WHIZBANG__V1__RESPONSE__BODY_STATS},
        {"SetStreamMetadata", NULL, q_set_meta, WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA},
        {"GetStreamMetadata", NULL, q_get_meta, WHIZBANG__V1__RESPONSE__BODY_STREAM_METADATA},
        {"DeleteStream", NULL, q_delete_stream, 0},
        {"Scavenge", NULL, q_scavenge, WHIZBANG__V1__RESPONSE__BODY_SCAVENGE},
        {"Lease", NULL, q_lease, WHIZBANG__V1__RESPONSE__BODY_LEASE},
        {"Extend", prepare_lease, q_extend, WHIZBANG__V1__RESPONSE__BODY_EXTEND},
        {"Stage", prepare_lease, q_stage, WHIZBANG__V1__RESPONSE__BODY_STAGE},
        {"Commit", prepare_lease, q_commit, WHIZBANG__V1__RESPONSE__BODY_COMMIT},
        {"Release", prepare_lease, q_release, WHIZBANG__V1__RESPONSE__BODY_RELEASE},
        {"ReadLedger", NULL, q_read_ledger, WHIZBANG__V1__RESPONSE__BODY_READ_LEDGER},
        {"WaitForWatermark", prepare_lease, q_wait, WHIZBANG__V1__RESPONSE__BODY_WATERMARK},
        {"CreateIndex", NULL, q_create_index, WHIZBANG__V1__RESPONSE__BODY_INDEX},
        {"GetEntity", NULL, q_get_entity, 0},
        {"QueryEntities", NULL, q_query, WHIZBANG__V1__RESPONSE__BODY_QUERY},
        {"ListIndexes", NULL, q_list_indexes, WHIZBANG__V1__RESPONSE__BODY_INDEXES},
        {"Subscribe $all", NULL, q_subscribe, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE},
        {"Subscribe ledger", NULL, q_subscribe_ledger, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE},
        {"CreateConsumer", NULL, q_create_consumer, WHIZBANG__V1__RESPONSE__BODY_CONSUMER},
        {"JoinConsumer", prepare_group, q_join, WHIZBANG__V1__RESPONSE__BODY_SUBSCRIBE},
        {"ListConsumers", prepare_group, q_list_consumers, WHIZBANG__V1__RESPONSE__BODY_CONSUMERS},
        {"ListParked", prepare_group, q_list_parked, WHIZBANG__V1__RESPONSE__BODY_PARKED},
        {"a frame that does not decode", NULL, q_garbage, 0},
};

/* One request with the nth allocation failing. Returns whether an
 * allocation failed (false: the request needs fewer than n). */
static bool sweep_one(struct ctx *x, const struct step *s, size_t n)
{
	struct iclient *c = client();
	if (s->prepare != NULL)
		s->prepare(x, c);
	const uint64_t id = 100;
	s->queue(x, c, id);
	fault_arm(n, false);
	/* Answers of other requests (pushes) are skipped; what counts is the
	 * first frame tagged with the request's id, or 0 for a frame that did
	 * not decode. */
	uint64_t want = s->queue == q_garbage ? 0 : id;
	int rc;
	uint8_t *frame = NULL;
	size_t len = 0;
	static uint8_t payload[ICLIENT_BUF];
	for (;;) {
		rc = iclient_wait(&h.loop, c, WAIT_MS);
		if (rc != 0)
			break;
		iclient_take(c, payload, sizeof(payload), &len);
		/* The id is field 1: read it without allocating. */
		uint64_t got = 0;
		if (len >= 2 && payload[0] == 0x08) {
			unsigned shift = 0;
			for (size_t i = 1; i < len && shift < 64; i++, shift += 7) {
				got |= (uint64_t)(payload[i] & 0x7f) << shift;
				if ((payload[i] & 0x80) == 0)
					break;
			}
		}
		/* A request that could not even be decoded (no memory) is
		 * answered on id 0. */
		if (got == want || got == 0) {
			frame = payload;
			break;
		}
	}
	bool failed = fault_failed() > 0;
	fault_disarm();
	cr_assert_neq(rc, WB_E_TIMEOUT,
	              "%s with allocation %zu failing: neither answered nor closed in %d ms",
	              s->name, n, WAIT_MS);
	if (frame != NULL) {
		Resp *r = wire_unpack_response(frame, len, len * 128 + 65536);
		cr_assert_not_null(r, "%s, allocation %zu: the answer does not decode", s->name, n);
		if (!failed && s->body != 0)
			cr_assert(r->error != NULL || r->body_case == s->body,
			          "%s: answered with body %d", s->name, (int)r->body_case);
		if (failed && r->error != NULL)
			cr_assert_neq(r->error->code, WHIZBANG__V1__ERROR_CODE__OK);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	iclient_free(c);
	/* Others are still served. */
	cr_assert_eq(iclient_ping(&h.loop, x->aux, ++x->ids), 0,
	             "%s, allocation %zu: the server stopped serving", s->name, n);
	return failed;
}

/* Every kind of request with each of its allocations failing in turn. */
static void sweep_all(void)
{
	cr_assert_eq(inproc_start(&h), 0, "%s", h.errmsg);
	struct ctx x = {0};
	x.aux = client();
	/* Something to read, to explode and to scavenge. */
	q_append(&x, x.aux, ++x.ids);
	Resp *r;
	cr_assert_eq(iclient_recv(&h.loop, x.aux, WAIT_MS, &r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	size_t total = 0;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		size_t n = 1;
		while (sweep_one(&x, &steps[i], n)) {
			n++;
			cr_assert_leq(n, SWEEP_MAX, "%s: more than %d allocations", steps[i].name,
			              SWEEP_MAX);
		}
		cr_assert_gt(n, 1, "%s: no allocation failed: the sweep tested nothing",
		             steps[i].name);
		total += n - 1;
	}
	cr_log_info("%zu failed allocations over %zu kinds of request", total,
	            sizeof(steps) / sizeof(steps[0]));
	iclient_free(x.aux);
}

/* Sync mode: the writer thread's allocations fail too, and each failure is
 * answered as an error of its batch. */
Test(server, every_failed_allocation_is_answered_or_closed, .timeout = 600)
{
	snprintf(h.cfg.durability, sizeof(h.cfg.durability), "sync");
	sweep_all();
}

/* Log mode: the loop thread's allocations fail (a durable record that the
 * writer cannot apply stops the process, by design: a restart replays it). */
Test(server, log_mode_failed_loop_allocation_is_answered_or_closed, .timeout = 600)
{
	fault_scope_thread(true);
	sweep_all();
	fault_scope_thread(false);
}

Test(server, start_fails_cleanly_at_every_allocation, .timeout = 300)
{
	size_t n = 1;
	for (;; n++) {
		fault_arm(n, false);
		int rc = inproc_start(&h);
		bool failed = fault_failed() > 0;
		fault_disarm();
		if (rc == 0)
			break;
		cr_assert(failed, "srv_init failed without a failed allocation: %s", h.errmsg);
		cr_assert(rc > 0 && rc < 200, "srv_init returned %d, not a WB_ code", rc);
		cr_assert_neq(h.errmsg[0], '\0', "srv_init failed (%s) without saying why",
		              wb_error_name(rc));
		/* Nothing is left running on the loop. */
		uv_run(&h.loop, UV_RUN_NOWAIT);
		cr_assert(!uv_loop_alive(&h.loop), "allocation %zu: a handle was left running", n);
		cr_assert_leq(n, SWEEP_MAX);
	}
	cr_assert_gt(n, 1, "srv_init never failed: the sweep tested nothing");
	struct iclient *c = client();
	cr_assert_eq(iclient_ping(&h.loop, c, 5), 0);
	iclient_free(c);
}

/* requests_total counts requests received: frames, decodable or not, and
 * nothing the server sends (answers, subscription items, errors). */
Test(server, requests_total_counts_requests_received)
{
	cr_assert_eq(inproc_start(&h), 0, "%s", h.errmsg);
	struct iclient *c = client(); /* Hello: 1 */
	Resp *r = stats(c, 2);        /* 2 */
	uint64_t before = r->stats->requests_total;
	whizbang__v1__response__free_unpacked(r, NULL);
	struct ctx x = {.aux = c};
	q_append(&x, c, 3); /* 3 */
	cr_assert_eq(iclient_recv(&h.loop, c, WAIT_MS, &r), 0);
	whizbang__v1__response__free_unpacked(r, NULL);
	q_subscribe(&x, c, 4); /* 4: its answer and 2 items and caught_up */
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(iclient_recv(&h.loop, c, WAIT_MS, &r), 0);
		whizbang__v1__response__free_unpacked(r, NULL);
	}
	q_garbage(&x, c, 5); /* 5: answered BAD_REQUEST */
	cr_assert_eq(iclient_recv(&h.loop, c, WAIT_MS, &r), 0);
	cr_assert_not_null(r->error);
	whizbang__v1__response__free_unpacked(r, NULL);
	r = stats(c, 6); /* 6 */
	cr_assert_eq(r->stats->requests_total - before, 4, "requests_total grew by %llu, not 4",
	             (unsigned long long)(r->stats->requests_total - before));
	cr_assert_eq(r->stats->requests_total, 6);
	whizbang__v1__response__free_unpacked(r, NULL);
	iclient_free(c);
}

static bool handle_nothing(void *state, struct conn *c, Req *req)
{
	(void)state;
	(void)c;
	(void)req;
	return false;
}

static const struct srv_handler append_handler[] = {
        {WHIZBANG__V1__REQUEST__BODY_APPEND_EVENTS, handle_nothing}};
static const struct srv_handler hello_handler[] = {
        {WHIZBANG__V1__REQUEST__BODY_HELLO, handle_nothing}};
static const struct srv_handler credit_handler[] = {
        {WHIZBANG__V1__REQUEST__BODY_CREDIT, handle_nothing}};

static bool owns_none(void *state, const struct conn *c, uint64_t id)
{
	(void)state;
	(void)c;
	(void)id;
	return false;
}

/* The table refuses what would make a request ambiguous. */
Test(server, dispatch_table_refuses_conflicts)
{
	const struct srv_module a = {.name = "a", .handlers = append_handler, .nhandlers = 1};
	const struct srv_module b = {.name = "b", .handlers = append_handler, .nhandlers = 1};
	const struct srv_module hl = {.name = "hello", .handlers = hello_handler, .nhandlers = 1};
	const struct srv_module c1 = {.name = "c1",
	                              .handlers = credit_handler,
	                              .nhandlers = 1,
	                              .owns_subscription = owns_none};
	const struct srv_module c2 = c1;
	const struct srv_module c3 = {.name = "c3", .handlers = credit_handler, .nhandlers = 1};
	void *states[2] = {NULL, NULL};
	const struct dispatch_env env = {0};
	struct dispatch *d;
	char err[256];

	const struct srv_module *twice[] = {&a, &b};
	cr_assert_eq(dispatch_init(&d, &env, twice, states, 2, err, sizeof(err)), WB_E_INVAL);
	cr_assert(strstr(err, "claimed twice") != NULL, "%s", err);
	const struct srv_module *core[] = {&hl};
	cr_assert_eq(dispatch_init(&d, &env, core, states, 1, err, sizeof(err)), WB_E_INVAL);
	const struct srv_module *unowned[] = {&c1, &c3};
	cr_assert_eq(dispatch_init(&d, &env, unowned, states, 2, err, sizeof(err)), WB_E_INVAL);
	const struct srv_module *alone[] = {&c3};
	cr_assert_eq(dispatch_init(&d, &env, alone, states, 1, err, sizeof(err)), WB_E_INVAL);
	cr_assert(strstr(err, "names a subscription") != NULL, "%s", err);
	/* Shared by modules that own subscriptions: fine. */
	const struct srv_module *shared[] = {&c1, &c2};
	cr_assert_eq(dispatch_init(&d, &env, shared, states, 2, err, sizeof(err)), 0, "%s", err);
	dispatch_free(d);
	cr_assert_eq(inproc_start(&h), 0, "%s", h.errmsg);
}
