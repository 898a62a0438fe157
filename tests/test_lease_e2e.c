/* Sequence leases, the ledger and the watermark (issue 3) against a real
 * whizbangd with short lease settings, through libwhizbang and the CLI:
 * grants, commits with both acks, a commit above a pending lower lease,
 * watermark waits, release, expiry in sequence order, staged recovery,
 * commits after expiry (failed and resequenced), the lease errors, the
 * lifetime cap, leases of a closing connection, the figures, the limits,
 * and a SIGKILL with leases outstanding. Every wait is bounded. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "e2e_util.h"

/* The per-call timeout of this file's clients: a server that never answers
 * fails a test in seconds rather than stalling the file. */
#define CLIENT_TIMEOUT_MS 5000
#define MAX_GRANTS 16

TestSuite(lease_e2e, .fini = e2e_suite_fini, .timeout = 60);

/* ---------------------------------------------------------------- helpers */

/* Starts whizbangd with the short lease settings and extra (NULL-terminated,
 * may be NULL) after them. */
static void start(const char *const *extra)
{
	const char *args[E2E_MAX_EXTRA + 1];
	size_t n = 0;
	args[n++] = "--lease-default";
	args[n++] = "300ms";
	args[n++] = "--lease-max";
	args[n++] = "2s";
	args[n++] = "--lease-max-lifetime";
	args[n++] = "3s";
	for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
		cr_assert_lt(n, E2E_MAX_EXTRA);
		args[n++] = extra[i];
	}
	args[n] = NULL;
	e2e_suite_start(args);
}

/* start(extra) and a client named name: how most tests begin. */
static struct wb_client *start_client(const char *const *extra, const char *name);

static struct wb_client *client(const char *name)
{
	struct wb_options opts = {.client_name = name, .timeout_ms = CLIENT_TIMEOUT_MS};
	struct wb_client *c = NULL;
	char msg[512] = "";
	int rc = wb_connect(&c, e2e_srv.address, &opts, msg, sizeof(msg));
	cr_assert_eq(rc, 0, "wb_connect: %s: %s", wb_error_name(rc), msg);
	return c;
}

static struct wb_client *start_client(const char *const *extra, const char *name)
{
	start(extra);
	return client(name);
}

#define ASSERT_OK(c, call)                                                                         \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		cr_assert_eq(rc_, 0, "%s: %s: %s", #call, wb_error_name(rc_), wb_errmsg(c));       \
	} while (0)

#define ASSERT_ERR(c, code, call)                                                                  \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		cr_assert_eq(rc_, (code), "%s: expected %s, got %s: %s", #call,                    \
		             wb_error_name(code), wb_error_name(rc_), wb_errmsg(c));               \
	} while (0)

/* Leases count sequences of projection for duration_ms (0: adaptive) into
 * g[], which holds MAX_GRANTS, for the operation op_id from source position
 * source, and checks that count consecutive sequences were granted. */
static void lease_for(struct wb_client *c, const char *projection, uint32_t count,
                      uint64_t duration_ms, const char *op_id, uint64_t source,
                      struct wb_lease_grant *g)
{
	struct wb_lease_args a = {
	        .projection = projection,
	        .duration_ms = duration_ms,
	        .count = count,
	        .operation_id = op_id,
	        .source_position = source,
	};
	size_t n = 0;
	ASSERT_OK(c, wb_lease(c, &a, g, MAX_GRANTS, &n));
	cr_assert_eq(n, count, "%zu grants, asked for %u", n, count);
	for (size_t i = 1; i < n; i++)
		cr_assert_eq(g[i].sequence, g[0].sequence + i, "grants are not consecutive");
}

/* The same for the operation "op". */
static void lease(struct wb_client *c, const char *projection, uint32_t count, uint64_t duration_ms,
                  struct wb_lease_grant *g)
{
	lease_for(c, projection, count, duration_ms, "op", 0, g);
}

static uint64_t watermark(struct wb_client *c)
{
	uint64_t w = 0;
	ASSERT_OK(c, wb_watermark(c, &w, NULL));
	return w;
}

/* Waits (bounded) until the watermark reaches seq; fails the test if not. */
static void await_watermark(struct wb_client *c, uint64_t seq, uint64_t timeout_ms)
{
	uint64_t w = 0;
	bool reached = false;
	ASSERT_OK(c, wb_wait_watermark(c, seq, timeout_ms, &w, &reached));
	cr_assert(reached,
	          "the watermark stayed at %" PRIu64 ", below %" PRIu64 " for %" PRIu64 " ms", w,
	          seq, timeout_ms);
	cr_assert_geq(w, seq);
}

/* One op list of one upsert: type, id and one string field. */
struct test_ops {
	Whizbang__V1__OpList list;
	Whizbang__V1__Op op;
	Whizbang__V1__Op *opp;
	Whizbang__V1__Upsert up;
	Whizbang__V1__Field field;
	Whizbang__V1__Field *fieldp;
	Whizbang__V1__Value value;
	char type[32], id[32], text[64];
};

static void make_ops(struct test_ops *t, const char *type, const char *id, const char *text)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->type, sizeof(t->type), "%s", type);
	snprintf(t->id, sizeof(t->id), "%s", id);
	snprintf(t->text, sizeof(t->text), "%s", text);
	whizbang__v1__value__init(&t->value);
	t->value.kind_case = WHIZBANG__V1__VALUE__KIND_STRING_VALUE;
	t->value.string_value = t->text;
	whizbang__v1__field__init(&t->field);
	t->field.name = (char *)"status";
	t->field.value = &t->value;
	t->fieldp = &t->field;
	whizbang__v1__upsert__init(&t->up);
	t->up.type = t->type;
	t->up.id = t->id;
	t->up.n_fields = 1;
	t->up.fields = &t->fieldp;
	whizbang__v1__op__init(&t->op);
	t->op.kind_case = WHIZBANG__V1__OP__KIND_UPSERT;
	t->op.upsert = &t->up;
	t->opp = &t->op;
	whizbang__v1__op_list__init(&t->list);
	t->list.n_ops = 1;
	t->list.ops = &t->opp;
}

/* True when the entry carries exactly the ops of t (compared as packed
 * bytes). */
static bool same_ops(const Whizbang__V1__LedgerEntry *e, const struct test_ops *t)
{
	Whizbang__V1__OpList got = WHIZBANG__V1__OP_LIST__INIT;
	got.n_ops = e->n_ops;
	got.ops = e->ops;
	size_t a = whizbang__v1__op_list__get_packed_size(&got);
	size_t b = whizbang__v1__op_list__get_packed_size(&t->list);
	if (a != b)
		return false;
	uint8_t *pa = malloc(a + 1), *pb = malloc(b + 1);
	cr_assert(pa != NULL && pb != NULL);
	whizbang__v1__op_list__pack(&got, pa);
	whizbang__v1__op_list__pack(&t->list, pb);
	bool same = memcmp(pa, pb, a) == 0;
	free(pa);
	free(pb);
	return same;
}

/* The whole ledger from `from` up to the watermark (one page: these tests
 * stay under the server's max_read_count). */
static Whizbang__V1__ReadLedgerResult *ledger(struct wb_client *c, uint64_t from)
{
	Whizbang__V1__ReadLedgerResult *res = NULL;
	ASSERT_OK(c, wb_read_ledger(c, from, 0, &res));
	cr_assert(res->end, "the ledger did not fit one page");
	for (size_t i = 0; i < res->n_entries; i++) {
		cr_assert_eq(res->entries[i]->sequence, from + i,
		             "ledger entry %zu is sequence %" PRIu64 ", not %" PRIu64, i,
		             res->entries[i]->sequence, from + i);
		cr_assert_leq(res->entries[i]->sequence, res->watermark,
		              "an entry above the watermark was read");
	}
	return res;
}

static const Whizbang__V1__LedgerEntry *entry(const Whizbang__V1__ReadLedgerResult *res,
                                              uint64_t seq)
{
	for (size_t i = 0; i < res->n_entries; i++)
		if (res->entries[i]->sequence == seq)
			return res->entries[i];
	cr_assert_fail("sequence %" PRIu64 " is not in the ledger (watermark %" PRIu64 ")", seq,
	               res->watermark);
	return NULL;
}

static void expect_entry(const Whizbang__V1__LedgerEntry *e, Whizbang__V1__EntryKind kind,
                         Whizbang__V1__EntryReason reason)
{
	cr_assert_eq(e->kind, kind, "sequence %" PRIu64 " is of kind %d, not %d", e->sequence,
	             (int)e->kind, (int)kind);
	cr_assert_eq(e->reason, reason, "sequence %" PRIu64 " has reason %d, not %d", e->sequence,
	             (int)e->reason, (int)reason);
}

/* Expects e to be of kind and reason, for projection and operation op_id. */
static void expect_entry_of(const Whizbang__V1__LedgerEntry *e, Whizbang__V1__EntryKind kind,
                            Whizbang__V1__EntryReason reason, const char *projection,
                            const char *op_id)
{
	expect_entry(e, kind, reason);
	cr_assert_str_eq(e->projection, projection, "sequence %" PRIu64, e->sequence);
	cr_assert_str_eq(e->operation_id, op_id, "sequence %" PRIu64, e->sequence);
}

/* Reads the ledger from g[0]'s sequence, which must hold exactly the n
 * sequences of g[], each as expect_entry_of() says. Returns the page for
 * more checks; free it with wb_ledger_free(). */
static Whizbang__V1__ReadLedgerResult *expect_entries(struct wb_client *c,
                                                      const struct wb_lease_grant *g, size_t n,
                                                      Whizbang__V1__EntryKind kind,
                                                      Whizbang__V1__EntryReason reason,
                                                      const char *projection, const char *op_id)
{
	Whizbang__V1__ReadLedgerResult *res = ledger(c, g[0].sequence);
	cr_assert_eq(res->n_entries, n, "%zu ledger entries, expected %zu", res->n_entries, n);
	for (size_t i = 0; i < n; i++)
		expect_entry_of(entry(res, g[i].sequence), kind, reason, projection, op_id);
	return res;
}

static Whizbang__V1__ServerStats *stats(struct wb_client *c)
{
	Whizbang__V1__ServerStats *s = NULL;
	ASSERT_OK(c, wb_stats(c, &s));
	return s;
}

static int64_t llabs64(int64_t v)
{
	return v < 0 ? -v : v;
}

/* ---------------------------------------------------------------- grants and commits */

Test(lease_e2e, lease_count_gives_consecutive_sequences_and_distinct_tokens)
{
	struct wb_client *c = start_client(NULL, "grants");
	uint64_t next = 0;
	ASSERT_OK(c, wb_watermark(c, NULL, &next));
	struct wb_lease_grant g[MAX_GRANTS];
	uint64_t before = e2e_wall_us() / 1000;
	lease(c, "grants", 3, 1500, g);
	uint64_t after = e2e_wall_us() / 1000;
	cr_assert_eq(g[0].sequence, next, "the first grant is not the announced next sequence");
	for (int i = 0; i < 3; i++) {
		cr_assert_neq(g[i].token, 0);
		for (int j = 0; j < i; j++)
			cr_assert_neq(g[i].token, g[j].token, "two grants share a token");
		cr_assert_eq(g[i].duration_ms, 1500);
		cr_assert_geq(g[i].expires_at_ms + 50, before + 1500);
		cr_assert_leq(g[i].expires_at_ms, after + 1500 + 50);
	}
	ASSERT_OK(c, wb_watermark(c, NULL, &next));
	cr_assert_eq(next, g[2].sequence + 1);

	/* Adaptive with no history: --lease-default; above --lease-max: capped. */
	lease(c, "grants-adaptive", 1, 0, g);
	cr_assert_eq(g[0].duration_ms, 300);
	lease(c, "grants", 1, 60000, g);
	cr_assert_eq(g[0].duration_ms, 2000);

	/* No room for the grants: refused before sending, the client stays usable. */
	struct wb_lease_args a = {.projection = "grants", .count = 4};
	size_t n = 0;
	ASSERT_ERR(c, WB_E_INVAL, wb_lease(c, &a, g, 3, &n));
	a.projection = "";
	ASSERT_ERR(c, WB_E_INVAL, wb_lease(c, &a, g, MAX_GRANTS, &n));
	ASSERT_OK(c, wb_ping(c));
	e2e_suite_stop_client(c);
}

Test(lease_e2e, commit_durable_then_applied_stores_the_ops)
{
	struct wb_client *c = start_client(NULL, "commit");
	struct wb_lease_grant g[MAX_GRANTS];
	lease_for(c, "orders", 2, 2000, "op-17", 42, g);
	struct test_ops x, y;
	make_ops(&x, "Order", "o-1", "Paid");
	make_ops(&y, "Order", "o-2", "Cancelled");
	uint64_t t0 = e2e_wall_us();

	struct wb_commit_result r;
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token, &x.list, false, false, &r));
	cr_assert_eq(r.sequence, g[0].sequence);
	cr_assert(!r.resequenced);
	cr_assert_eq(r.watermark, g[0].sequence, "nothing is below it: the watermark passes it");
	ASSERT_OK(c, wb_commit(c, g[1].sequence, g[1].token, &y.list, true, false, &r));
	cr_assert_eq(r.sequence, g[1].sequence);
	cr_assert_geq(r.watermark, g[1].sequence, "an APPLIED answer came before the watermark");

	Whizbang__V1__ReadLedgerResult *res =
	        expect_entries(c, g, 2, WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	                       WHIZBANG__V1__ENTRY_REASON__REASON_NONE, "orders", "op-17");
	for (int i = 0; i < 2; i++) {
		const Whizbang__V1__LedgerEntry *e = entry(res, g[i].sequence);
		cr_assert_eq(e->source_position, 42);
		cr_assert(same_ops(e, i == 0 ? &x : &y),
		          "the stored ops differ from the committed");
		cr_assert_geq(e->time_us + 1000, t0);
		cr_assert_leq(e->time_us, e2e_wall_us() + 1000);
	}
	wb_ledger_free(res);

	/* Finished: the same commit again is a retry, answered as the first;
	 * a commit of other ops is refused. A commit with no ops is valid. */
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token, &x.list, false, false, &r));
	cr_assert_eq(r.sequence, g[0].sequence);
	ASSERT_ERR(c, WB_LEASE_NOT_FOUND,
	           wb_commit(c, g[0].sequence, g[0].token, &y.list, false, false, &r));
	lease(c, "orders", 1, 2000, g);
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token, NULL, false, false, &r));
	res = ledger(c, g[0].sequence);
	cr_assert_eq(entry(res, g[0].sequence)->n_ops, 0);
	wb_ledger_free(res);
	e2e_suite_stop_client(c);
}

/* Polls the client's socket: true when bytes arrive within ms. */
static bool answer_within(struct wb_client *c, int ms)
{
	struct pollfd p = {.fd = wb_fd(c), .events = POLLIN};
	int n;
	do
		n = poll(&p, 1, ms);
	while (n < 0 && errno == EINTR);
	return n > 0;
}

/* Receives the answer to a pipelined Commit and checks it. */
static void recv_commit(struct wb_client *c, uint64_t id, uint64_t seq)
{
	Whizbang__V1__Response *r = NULL;
	ASSERT_OK(c, wb_recv(c, &r));
	cr_assert_eq(r->id, id);
	cr_assert_eq(e2e_error_code(r), 0, "the commit failed: %s",
	             r->error != NULL ? r->error->message : "");
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_COMMIT);
	cr_assert_eq(r->commit->sequence, seq);
	cr_assert_geq(r->commit->watermark, seq, "APPLIED answered below the watermark");
	whizbang__v1__response__free_unpacked(r, NULL);
}

Test(lease_e2e, commit_above_a_pending_lease_is_durable_at_once_and_applied_later)
{
	start(NULL);
	struct wb_client *c1 = client("worker-1"), *c2 = client("worker-2");
	struct wb_lease_grant g[MAX_GRANTS];
	lease(c1, "orders", 3, 2000, g);
	uint64_t low = g[0].sequence;
	struct test_ops x;
	make_ops(&x, "Order", "o-1", "Paid");

	/* DURABLE above the pending lower lease: answered at once. */
	int64_t t0 = e2e_now_ms();
	struct wb_commit_result r;
	ASSERT_OK(c1, wb_commit(c1, g[1].sequence, g[1].token, &x.list, false, false, &r));
	cr_assert_lt(e2e_now_ms() - t0, 1000, "a DURABLE commit waited for a lower lease");
	cr_assert_eq(r.sequence, g[1].sequence);
	cr_assert_eq(r.watermark, low - 1);
	Whizbang__V1__ServerStats *s = stats(c2);
	cr_assert_eq(s->entries_waiting, 1);
	cr_assert_eq(s->leases_active, 2);
	wb_stats_free(s);

	/* APPLIED above it: no answer until the lower lease commits. */
	uint64_t id;
	ASSERT_OK(c1, wb_commit_send(c1, g[2].sequence, g[2].token, &x.list, true, false, &id));
	ASSERT_OK(c1, wb_flush(c1));
	cr_assert(!answer_within(c1, 300), "APPLIED answered while a lower lease is open");
	cr_assert_eq(watermark(c2), low - 1);
	ASSERT_OK(c2, wb_commit(c2, low, g[0].token, &x.list, false, false, &r));
	cr_assert(answer_within(c1, 2000), "APPLIED did not answer after the lower commit");
	recv_commit(c1, id, g[2].sequence);
	cr_assert_eq(watermark(c2), g[2].sequence);

	/* The same when the lower lease is released instead. */
	lease(c1, "orders", 2, 2000, g);
	ASSERT_OK(c1, wb_commit_send(c1, g[1].sequence, g[1].token, NULL, true, false, &id));
	ASSERT_OK(c1, wb_flush(c1));
	cr_assert(!answer_within(c1, 200), "APPLIED answered while a lower lease is open");
	ASSERT_OK(c2, wb_release(c2, g[0].sequence, g[0].token, "nothing to do"));
	cr_assert(answer_within(c1, 2000), "APPLIED did not answer after the lower release");
	recv_commit(c1, id, g[1].sequence);

	/* Pipelined leases answer through wb_recv() too. */
	struct wb_lease_args a = {.projection = "orders", .duration_ms = 2000, .count = 2};
	uint64_t ids[2];
	ASSERT_OK(c1, wb_lease_send(c1, &a, &ids[0]));
	ASSERT_OK(c1, wb_lease_send(c1, &a, &ids[1]));
	uint64_t seqs[4];
	for (int i = 0; i < 2; i++) {
		Whizbang__V1__Response *resp = NULL;
		ASSERT_OK(c1, wb_recv(c1, &resp));
		cr_assert_eq(resp->body_case, WHIZBANG__V1__RESPONSE__BODY_LEASE);
		cr_assert_eq(resp->lease->n_leases, 2);
		int k = resp->id == ids[0] ? 0 : 2;
		seqs[k] = resp->lease->leases[0]->sequence;
		seqs[k + 1] = resp->lease->leases[1]->sequence;
		whizbang__v1__response__free_unpacked(resp, NULL);
	}
	cr_assert_eq(seqs[1], seqs[0] + 1);
	cr_assert_eq(seqs[3], seqs[2] + 1);
	cr_assert(seqs[2] == seqs[0] + 2 || seqs[0] == seqs[2] + 2);
	wb_close(c1);
	wb_close(c2);
	e2e_suite_stop();
}

Test(lease_e2e, applied_commit_still_waiting_at_shutdown_is_answered)
{
	/* A small reservation keeps the restart's gaps within one ledger page. */
	struct wb_client *c =
	        start_client((const char *[]){"--lease-reserve-chunk", "8", NULL}, "shutdown");
	struct wb_lease_grant g[MAX_GRANTS];
	lease(c, "orders", 2, 2000, g);
	uint64_t id;
	ASSERT_OK(c, wb_commit_send(c, g[1].sequence, g[1].token, NULL, true, false, &id));
	ASSERT_OK(c, wb_flush(c));
	cr_assert(!answer_within(c, 200), "APPLIED answered while a lower lease is open");
	cr_assert_eq(kill(e2e_srv.pid, SIGTERM), 0);
	Whizbang__V1__Response *r = NULL;
	ASSERT_OK(c, wb_recv(c, &r));
	cr_assert_eq(r->id, id);
	cr_assert_eq(e2e_error_code(r), WB_SHUTTING_DOWN, "the waiting commit got %s",
	             wb_error_name(e2e_error_code(r)));
	whizbang__v1__response__free_unpacked(r, NULL);
	e2e_suite_wait_exit();
	wb_close(c);

	/* The commit was durable: it survives the restart; the open lease does not. */
	e2e_suite_restart();
	c = client("after-shutdown");
	Whizbang__V1__ReadLedgerResult *res = ledger(c, g[0].sequence);
	expect_entry(entry(res, g[0].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	             WHIZBANG__V1__ENTRY_REASON__GAP_RESTART);
	expect_entry(entry(res, g[1].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	             WHIZBANG__V1__ENTRY_REASON__REASON_NONE);
	wb_ledger_free(res);
	e2e_suite_stop_client(c);
}

Test(lease_e2e, watermark_waits_reach_or_time_out)
{
	start(NULL);
	struct wb_client *c1 = client("waits-1"), *c2 = client("waits-2");
	struct wb_lease_grant g[MAX_GRANTS];
	lease(c1, "waits", 1, 2000, g);
	uint64_t s = g[0].sequence;

	/* Timed out: not an error, reached is false. */
	uint64_t w = 0;
	bool reached = true;
	int64_t t0 = e2e_now_ms();
	ASSERT_OK(c1, wb_wait_watermark(c1, s, 250, &w, &reached));
	int64_t took = e2e_now_ms() - t0;
	cr_assert(!reached);
	cr_assert_eq(w, s - 1);
	cr_assert_geq(took, 240, "the wait ended after %" PRId64 " ms", took);
	cr_assert_lt(took, 2000);
	/* 0 answers at once. */
	ASSERT_OK(c1, wb_wait_watermark(c1, s, 0, &w, &reached));
	cr_assert(!reached);

	/* A wait longer than the client's own timeout still gets its answer. */
	struct wb_options opts = {.client_name = "short", .timeout_ms = 300};
	struct wb_client *shorty = NULL;
	char msg[256];
	cr_assert_eq(wb_connect(&shorty, e2e_srv.address, &opts, msg, sizeof(msg)), 0, "%s", msg);
	t0 = e2e_now_ms();
	ASSERT_OK(shorty, wb_wait_watermark(shorty, s, 700, &w, &reached));
	cr_assert(!reached);
	cr_assert_geq(e2e_now_ms() - t0, 690);
	wb_close(shorty);

	/* Reached: a pipelined wait answers when the commit lands. */
	Whizbang__V1__WaitForWatermark wf = WHIZBANG__V1__WAIT_FOR_WATERMARK__INIT;
	wf.sequence = s;
	wf.timeout_ms = 4000;
	Whizbang__V1__Request req = E2E_REQUEST(WAIT_FOR_WATERMARK, wait_for_watermark, &wf);
	uint64_t id;
	ASSERT_OK(c2, wb_send(c2, &req, &id));
	ASSERT_OK(c2, wb_flush(c2));
	cr_assert(!answer_within(c2, 200), "the wait answered before the commit");
	t0 = e2e_now_ms();
	ASSERT_OK(c1, wb_commit(c1, s, g[0].token, NULL, false, false, NULL));
	Whizbang__V1__Response *r = NULL;
	ASSERT_OK(c2, wb_recv(c2, &r));
	cr_assert_lt(e2e_now_ms() - t0, 2000);
	cr_assert_eq(r->id, id);
	cr_assert_eq(r->body_case, WHIZBANG__V1__RESPONSE__BODY_WATERMARK);
	cr_assert(r->watermark->reached);
	cr_assert_geq(r->watermark->watermark, s);
	whizbang__v1__response__free_unpacked(r, NULL);

	/* Already reached: at once. */
	t0 = e2e_now_ms();
	ASSERT_OK(c1, wb_wait_watermark(c1, s, 5000, &w, &reached));
	cr_assert(reached);
	cr_assert_lt(e2e_now_ms() - t0, 1000);
	wb_close(c1);
	wb_close(c2);
	e2e_suite_stop();
}

/* ---------------------------------------------------------------- gaps and recovery */

Test(lease_e2e, release_becomes_a_released_gap)
{
	struct wb_client *c = start_client(NULL, "release");
	struct wb_lease_grant g[MAX_GRANTS];
	lease_for(c, "relp", 2, 2000, "op-rel", 0, g);
	ASSERT_OK(c, wb_release(c, g[0].sequence, g[0].token, "gave up"));
	cr_assert_eq(watermark(c), g[0].sequence, "the release did not move the watermark");
	ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_release(c, g[0].sequence, g[0].token, NULL));
	ASSERT_ERR(c, WB_LEASE_NOT_FOUND,
	           wb_commit(c, g[0].sequence, g[0].token, NULL, false, false, NULL));
	ASSERT_OK(c, wb_release(c, g[1].sequence, g[1].token, NULL));
	cr_assert_eq(watermark(c), g[1].sequence);

	Whizbang__V1__ReadLedgerResult *res =
	        expect_entries(c, g, 2, WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	                       WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED, "relp", "op-rel");
	for (int i = 0; i < 2; i++)
		cr_assert_eq(entry(res, g[i].sequence)->n_ops, 0);
	wb_ledger_free(res);
	Whizbang__V1__ServerStats *s = stats(c);
	cr_assert_eq(s->leases_released, 2);
	cr_assert_eq(s->gaps, 2);
	wb_stats_free(s);
	e2e_suite_stop_client(c);
}

Test(lease_e2e, expiry_writes_gaps_in_sequence_order_with_the_original_expiry)
{
	struct wb_client *c = start_client(NULL, "expiry");
	/* The lowest lease expires last: the watermark waits for it. */
	struct wb_lease_grant slow[MAX_GRANTS], fast[MAX_GRANTS];
	lease(c, "exp", 1, 700, slow);
	lease(c, "exp", 3, 200, fast);
	uint64_t first = slow[0].sequence, last = fast[2].sequence;
	int64_t t0 = e2e_now_ms();
	await_watermark(c, last, 4000);
	cr_assert_geq(e2e_now_ms() - t0, 600, "the watermark passed a lease before its expiry");

	Whizbang__V1__ReadLedgerResult *res = ledger(c, first);
	cr_assert_eq(res->n_entries, 4);
	const Whizbang__V1__LedgerEntry *e0 = entry(res, first);
	expect_entry(e0, WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	             WHIZBANG__V1__ENTRY_REASON__GAP_EXPIRED);
	cr_assert_leq(
	        llabs64((int64_t)e0->original_expiry_us - (int64_t)slow[0].expires_at_ms * 1000),
	        100000, "the gap's original expiry is not the lease's");
	uint64_t prev_time = 0;
	for (int i = 0; i < 3; i++) {
		const Whizbang__V1__LedgerEntry *e = entry(res, fast[i].sequence);
		expect_entry_of(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
		                WHIZBANG__V1__ENTRY_REASON__GAP_EXPIRED, "exp", "op");
		cr_assert_leq(llabs64((int64_t)e->original_expiry_us -
		                      (int64_t)fast[i].expires_at_ms * 1000),
		              100000, "the gap's original expiry is not the lease's");
		cr_assert_geq(e->time_us + 5000, e->original_expiry_us,
		              "a gap was written before its lease expired");
		/* Finalised in ascending order, and before the lower lease. */
		cr_assert_geq(e->time_us, prev_time, "expired leases were finalised out of order");
		cr_assert_lt(e->time_us, e0->time_us);
		prev_time = e->time_us;
	}
	cr_assert_gt(e0->original_expiry_us, entry(res, fast[2].sequence)->original_expiry_us);
	wb_ledger_free(res);

	/* Every call on an expired lease says so or finds none. */
	ASSERT_ERR(c, WB_LEASE_EXPIRED,
	           wb_commit(c, first, slow[0].token, NULL, false, false, NULL));
	int rc = wb_extend(c, first, slow[0].token, 100, NULL);
	cr_assert(rc == WB_LEASE_EXPIRED || rc == WB_LEASE_NOT_FOUND, "extend: %s",
	          wb_error_name(rc));
	e2e_suite_stop_client(c);
}

Test(lease_e2e, staged_work_is_recovered_when_the_lease_expires)
{
	struct wb_client *c = start_client(NULL, "stage");
	struct wb_lease_grant g[MAX_GRANTS];
	lease(c, "staging", 2, 300, g);
	struct test_ops x, y, z;
	make_ops(&x, "Order", "o-1", "Staged");
	make_ops(&y, "Order", "o-2", "First");
	make_ops(&z, "Order", "o-2", "Second");
	ASSERT_OK(c, wb_stage(c, g[0].sequence, g[0].token, &x.list));
	ASSERT_OK(c, wb_stage(c, g[1].sequence, g[1].token, &y.list));
	ASSERT_OK(c, wb_stage(c, g[1].sequence, g[1].token, &z.list)); /* replaces y */
	cr_assert_lt(watermark(c), g[0].sequence, "staging finished the lease");
	await_watermark(c, g[1].sequence, 3000);

	Whizbang__V1__ReadLedgerResult *res = ledger(c, g[0].sequence);
	const Whizbang__V1__LedgerEntry *e = entry(res, g[0].sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED,
	             WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED);
	cr_assert(same_ops(e, &x), "the recovered ops are not the staged ones");
	cr_assert_neq(e->original_expiry_us, 0);
	cr_assert_str_eq(e->projection, "staging");
	e = entry(res, g[1].sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED,
	             WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED);
	cr_assert(same_ops(e, &z), "the recovered ops are not the last staged ones");
	wb_ledger_free(res);

	Whizbang__V1__ServerStats *s = stats(c);
	cr_assert_eq(s->leases_recovered, 2);
	cr_assert_eq(s->leases_expired, 0);
	cr_assert_eq(s->gaps, 0, "a recovered entry was counted as a gap");
	wb_stats_free(s);

	/* A commit after the recovery is refused, naming what happened. */
	ASSERT_ERR(c, WB_LEASE_EXPIRED,
	           wb_commit(c, g[0].sequence, g[0].token, &y.list, false, false, NULL));
	cr_assert(strstr(wb_errmsg(c), "staged") != NULL, "message: %s", wb_errmsg(c));
	e2e_suite_stop_client(c);
}

Test(lease_e2e, commit_after_expiry_fails_or_is_resequenced)
{
	struct wb_client *c = start_client(NULL, "reseq");
	struct wb_lease_grant g[MAX_GRANTS];
	lease_for(c, "reseqp", 1, 200, "op-late", 7, g);
	uint64_t s = g[0].sequence;
	await_watermark(c, s, 3000);
	struct test_ops x;
	make_ops(&x, "Order", "o-late", "Late");

	ASSERT_ERR(c, WB_LEASE_EXPIRED, wb_commit(c, s, g[0].token, &x.list, false, false, NULL));
	cr_assert(strstr(wb_errmsg(c), "gap (expired)") != NULL, "message: %s", wb_errmsg(c));
	ASSERT_ERR(c, WB_LEASE_TOKEN_MISMATCH,
	           wb_commit(c, s, g[0].token ^ 1, &x.list, false, true, NULL));

	struct wb_commit_result r = {0};
	ASSERT_OK(c, wb_commit(c, s, g[0].token, &x.list, false, true, &r));
	cr_assert(r.resequenced);
	cr_assert_eq(r.original_sequence, s);
	cr_assert_gt(r.sequence, s);
	await_watermark(c, r.sequence, 2000);

	Whizbang__V1__ReadLedgerResult *res = ledger(c, s);
	expect_entry(entry(res, s), WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	             WHIZBANG__V1__ENTRY_REASON__GAP_EXPIRED);
	const Whizbang__V1__LedgerEntry *e = entry(res, r.sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED,
	             WHIZBANG__V1__ENTRY_REASON__RECOVERED_RESEQUENCED);
	cr_assert_eq(e->original_sequence, s);
	cr_assert(same_ops(e, &x), "the resequenced entry lost its ops");
	cr_assert_str_eq(e->projection, "reseqp");
	cr_assert_str_eq(e->operation_id, "op-late");
	cr_assert_eq(e->source_position, 7);
	wb_ledger_free(res);

	/* Leasing still works after a resequenced commit. */
	lease(c, "reseqp", 1, 2000, g);
	cr_assert_gt(g[0].sequence, r.sequence);
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token, NULL, true, false, &r));
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- errors and limits */

Test(lease_e2e, wrong_token_and_unknown_sequence)
{
	struct wb_client *c = start_client(NULL, "errors");
	struct wb_lease_grant g[MAX_GRANTS];
	lease(c, "errs", 1, 2000, g);
	uint64_t s = g[0].sequence, bad = g[0].token ^ 0x8000000000000001u;
	struct test_ops x;
	make_ops(&x, "Order", "o-1", "Paid");
	ASSERT_ERR(c, WB_LEASE_TOKEN_MISMATCH, wb_commit(c, s, bad, &x.list, false, false, NULL));
	ASSERT_ERR(c, WB_LEASE_TOKEN_MISMATCH, wb_extend(c, s, bad, 500, NULL));
	ASSERT_ERR(c, WB_LEASE_TOKEN_MISMATCH, wb_stage(c, s, bad, &x.list));
	ASSERT_ERR(c, WB_LEASE_TOKEN_MISMATCH, wb_release(c, s, bad, NULL));
	/* The lease is untouched by all that. */
	ASSERT_OK(c, wb_commit(c, s, g[0].token, &x.list, false, false, NULL));

	uint64_t next = 0;
	ASSERT_OK(c, wb_watermark(c, NULL, &next));
	uint64_t unknown[] = {0, next, next + 1000, UINT64_MAX};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		uint64_t u = unknown[i];
		ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_commit(c, u, 1, NULL, false, false, NULL));
		ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_commit(c, u, 1, NULL, false, true, NULL));
		ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_extend(c, u, 1, 100, NULL));
		ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_stage(c, u, 1, NULL));
		ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_release(c, u, 1, NULL));
	}
	/* Committed: not found any more, whatever the token. */
	ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_commit(c, s, g[0].token, NULL, false, false, NULL));
	ASSERT_ERR(c, WB_LEASE_NOT_FOUND, wb_commit(c, s, bad, NULL, false, true, NULL));
	ASSERT_OK(c, wb_ping(c));
	e2e_suite_stop_client(c);
}

/* One op in its text form, in storage the caller keeps. */
struct text_op {
	Whizbang__V1__Op op;
	Whizbang__V1__Op *opp;
	Whizbang__V1__OpList list;
};

static const Whizbang__V1__OpList *text_op(struct text_op *t, const char *text)
{
	whizbang__v1__op__init(&t->op);
	t->op.kind_case = WHIZBANG__V1__OP__KIND_TEXT;
	t->op.text = (char *)text;
	t->opp = &t->op;
	whizbang__v1__op_list__init(&t->list);
	t->list.n_ops = 1;
	t->list.ops = &t->opp;
	return &t->list;
}

/* A Commit whose answer was lost is sent again with the same token and
 * ops: it gets the first one's outcome (with ACK_APPLIED, what applying
 * found, explosion and all), and nothing is applied twice. Other ops or
 * another token on the committed sequence stay LEASE_NOT_FOUND.
 * WB_RETRY_E2E_LIE=1 (the negative control, tests/meson.build) retries
 * with other ops and expects the same success, so it must fail. */
Test(lease_e2e, a_retried_commit_is_answered_as_the_first)
{
	struct wb_client *c = start_client(NULL, "retry");
	bool lie = getenv("WB_RETRY_E2E_LIE") != NULL;
	struct wb_lease_grant g[MAX_GRANTS];
	struct text_op t;
	lease(c, "retry", 2, 2000, g);
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token,
	                       text_op(&t, "upsert Counter \"k\" {n: 0, tag: \"t\"}"), true, false,
	                       NULL));
	const char *bump = "update Counter where tag == \"t\" inc n by 1";
	Whizbang__V1__CommitResult *first, *again;
	ASSERT_OK(c, wb_commit_full(c, g[1].sequence, g[1].token, text_op(&t, bump), true, false,
	                            &first));
	cr_assert_eq(first->results[0]->matched, 1u);
	/* Again, twice, with either ack. */
	for (int i = 0; i < 2; i++) {
		ASSERT_OK(c, wb_commit_full(
		                     c, g[1].sequence, g[1].token,
		                     text_op(&t, lie ? "update Counter where tag == \"t\" inc n "
		                                       "by 2"
		                                     : bump),
		                     i == 0, false, &again));
		cr_assert_eq(again->sequence, first->sequence);
		cr_assert_eq(again->apply_error, first->apply_error);
		if (i == 0) {
			cr_assert_eq(again->n_results, 1u);
			cr_assert_eq(again->results[0]->matched, 1u);
		}
		wb_commit_result_free(again);
	}
	wb_commit_result_free(first);
	/* Applied once. */
	Whizbang__V1__Entity *e;
	ASSERT_OK(c, wb_get_entity(c, "Counter", "k", &e));
	for (size_t i = 0; i < e->n_fields; i++)
		if (strcmp(e->fields[i]->name, "n") == 0)
			cr_assert_eq(e->fields[i]->value->int_value, 1);
	cr_assert_eq(e->version, 2u);
	wb_entity_free(e);
	/* Other ops, another token: not the same Commit. */
	ASSERT_ERR(c, WB_LEASE_NOT_FOUND,
	           wb_commit(c, g[1].sequence, g[1].token,
	                     text_op(&t, "update Counter where tag == \"t\" inc n by 2"), true,
	                     false, NULL));
	ASSERT_ERR(
	        c, WB_LEASE_NOT_FOUND,
	        wb_commit(c, g[1].sequence, g[1].token ^ 1u, text_op(&t, bump), true, false, NULL));
	e2e_suite_stop_client(c);
}

Test(lease_e2e, extend_renews_until_the_lifetime_cap)
{
	struct wb_client *c =
	        start_client((const char *[]){"--lease-max-lifetime", "1s", NULL}, "extend");
	struct wb_lease_grant g[MAX_GRANTS];
	lease(c, "ext", 1, 300, g);
	uint64_t until = 0;
	ASSERT_OK(c, wb_extend(c, g[0].sequence, g[0].token, 600, &until));
	cr_assert_gt(until, g[0].expires_at_ms, "the extend did not move the expiry");
	/* 2 s from now passes the 1 s lifetime. */
	ASSERT_ERR(c, WB_RESOURCE_EXHAUSTED, wb_extend(c, g[0].sequence, g[0].token, 2000, NULL));
	cr_assert(strstr(wb_errmsg(c), "lifetime") != NULL, "message: %s", wb_errmsg(c));
	Whizbang__V1__ServerStats *s = stats(c);
	cr_assert_eq(s->lease_overrun, 1);
	cr_assert_eq(s->leases_active, 1, "a refused extend ended the lease");
	wb_stats_free(s);
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token, NULL, false, false, NULL));
	e2e_suite_stop_client(c);
}

Test(lease_e2e, closing_connection_releases_release_leases_and_keeps_keep_leases)
{
	start(NULL);
	struct wb_client *c1 = client("closer"), *c2 = client("survivor");
	struct wb_lease_grant rel[MAX_GRANTS], keep[MAX_GRANTS];
	size_t n;
	struct wb_lease_args a = {
	        .projection = "disc",
	        .duration_ms = 2000,
	        .count = 2,
	        .release_on_disconnect = true,
	};
	ASSERT_OK(c1, wb_lease(c1, &a, rel, MAX_GRANTS, &n));
	a.release_on_disconnect = false;
	a.count = 1;
	ASSERT_OK(c1, wb_lease(c1, &a, keep, MAX_GRANTS, &n));
	wb_close(c1);

	await_watermark(c2, rel[1].sequence, 2000);
	Whizbang__V1__ReadLedgerResult *res = ledger(c2, rel[0].sequence);
	for (int i = 0; i < 2; i++)
		expect_entry(entry(res, rel[i].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
		             WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED);
	wb_ledger_free(res);

	/* The KEEP lease is still open: another connection commits it. */
	cr_assert_eq(watermark(c2), keep[0].sequence - 1);
	struct test_ops x;
	make_ops(&x, "Order", "o-kept", "Done");
	struct wb_commit_result r;
	ASSERT_OK(c2, wb_commit(c2, keep[0].sequence, keep[0].token, &x.list, true, false, &r));
	cr_assert_eq(r.sequence, keep[0].sequence);
	res = ledger(c2, keep[0].sequence);
	expect_entry(entry(res, keep[0].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	             WHIZBANG__V1__ENTRY_REASON__REASON_NONE);
	wb_ledger_free(res);
	wb_close(c2);
	e2e_suite_stop();
}

Test(lease_e2e, stats_figures_move)
{
	struct wb_client *c = start_client(NULL, "figures");
	Whizbang__V1__ServerStats *s = stats(c);
	cr_assert_eq(s->leases_active, 0);
	cr_assert_eq(s->leases_committed, 0);
	cr_assert_float_eq(s->lease_efficiency, 1.0, 1e-9);
	cr_assert_str_eq(s->health, "ok");
	uint64_t next0 = s->next_sequence;
	wb_stats_free(s);

	struct wb_lease_grant g[MAX_GRANTS], e[MAX_GRANTS];
	lease(c, "figs", 2, 2000, g);
	lease(c, "figs", 1, 150, e);
	s = stats(c);
	cr_assert_eq(s->leases_active, 3);
	cr_assert_eq(s->next_sequence, next0 + 3);
	cr_assert_geq(s->lease_ceiling, s->next_sequence - 1);
	wb_stats_free(s);
	ASSERT_OK(c, wb_commit(c, g[1].sequence, g[1].token, NULL, false, false, NULL));
	s = stats(c);
	cr_assert_eq(s->entries_waiting, 1);
	wb_stats_free(s);
	ASSERT_OK(c, wb_commit(c, g[0].sequence, g[0].token, NULL, false, false, NULL));
	await_watermark(c, e[0].sequence, 3000);

	s = stats(c);
	cr_assert_eq(s->leases_active, 0);
	cr_assert_eq(s->leases_committed, 2);
	cr_assert_eq(s->leases_expired, 1);
	cr_assert_float_eq(s->lease_efficiency, 2.0 / 3.0, 1e-6);
	cr_assert_eq(s->entries_waiting, 0);
	cr_assert_eq(s->gaps, 1);
	cr_assert_eq(s->watermark, e[0].sequence);
	cr_assert_eq(s->next_sequence, e[0].sequence + 1);
	cr_assert_geq(s->apply_wait_ms_max, 0);
	cr_assert_geq(s->apply_wait_ms_mean, 0.0);
	/* One expiry in three commits-or-expiries is past the 5% rate. */
	cr_assert_str_eq(s->health, "degraded");
	cr_assert(strstr(s->health_reason, "expiry rate") != NULL, "reason: %s", s->health_reason);
	bool found = false;
	for (size_t i = 0; i < s->n_projections; i++) {
		const Whizbang__V1__ProjectionStats *p = s->projections[i];
		if (strcmp(p->projection, "figs") != 0)
			continue;
		found = true;
		cr_assert_eq(p->committed, 2);
		cr_assert_eq(p->expired, 1);
		cr_assert_eq(p->leases_active, 0);
		cr_assert_float_eq(p->efficiency, 2.0 / 3.0, 1e-6);
	}
	cr_assert(found, "no figures for projection figs");
	wb_stats_free(s);
	e2e_suite_stop_client(c);
}

Test(lease_e2e, lease_limits_answer_errors)
{
	const char *extra[] = {"--max-lease-count",
	                       "4",
	                       "--max-leases",
	                       "6",
	                       "--max-leases-per-connection",
	                       "4",
	                       NULL};
	start(extra);
	struct wb_client *c1 = client("limits-1"), *c2 = client("limits-2"),
	                 *c3 = client("limits-3");
	struct wb_lease_grant g1[MAX_GRANTS], g2[MAX_GRANTS], g3[MAX_GRANTS];
	struct wb_lease_args a = {.projection = "lim", .duration_ms = 2000, .count = 5};
	size_t n;
	ASSERT_ERR(c1, WB_BAD_REQUEST, wb_lease(c1, &a, g1, MAX_GRANTS, &n));
	lease(c1, "lim", 4, 2000, g1);
	/* Per connection. */
	a.count = 1;
	ASSERT_ERR(c1, WB_RESOURCE_EXHAUSTED, wb_lease(c1, &a, g1 + 4, MAX_GRANTS, &n));
	/* In total. */
	lease(c2, "lim", 2, 2000, g2);
	ASSERT_ERR(c2, WB_RESOURCE_EXHAUSTED, wb_lease(c2, &a, g2 + 2, MAX_GRANTS, &n));
	ASSERT_ERR(c3, WB_RESOURCE_EXHAUSTED, wb_lease(c3, &a, g3, MAX_GRANTS, &n));
	/* A refused grant hands out nothing: the next one follows on. */
	ASSERT_OK(c1, wb_release(c1, g1[0].sequence, g1[0].token, NULL));
	lease(c3, "lim", 1, 2000, g3);
	cr_assert_eq(g3[0].sequence, g2[1].sequence + 1, "a refused grant used up sequences");
	Whizbang__V1__ServerStats *s = stats(c3);
	cr_assert_eq(s->leases_active, 6);
	wb_stats_free(s);
	wb_close(c1);
	wb_close(c2);
	wb_close(c3);
	e2e_suite_stop();
}

/* ---------------------------------------------------------------- SIGKILL and restart */

Test(lease_e2e, sigkill_with_leases_outstanding_then_restart_recovers)
{
	struct wb_client *c =
	        start_client((const char *[]){"--lease-reserve-chunk", "8", NULL}, "crash");
	struct wb_lease_grant base[MAX_GRANTS], g[MAX_GRANTS];
	struct test_ops x, y, z, w;
	make_ops(&x, "Order", "o-x", "StagedX");
	make_ops(&y, "Order", "o-y", "CommittedY");
	make_ops(&z, "Order", "o-z", "StagedZ");
	make_ops(&w, "Order", "o-w", "CommittedW");
	lease(c, "crash", 1, 2000, base);
	ASSERT_OK(c, wb_commit(c, base[0].sequence, base[0].token, &w.list, true, false, NULL));
	lease(c, "crash", 6, 2000, g);
	/* g0 pending, g1 staged, g2 committed above the pending g0, g3 staged,
	 * g4 released, g5 committed. */
	ASSERT_OK(c, wb_stage(c, g[1].sequence, g[1].token, &x.list));
	struct wb_commit_result r;
	ASSERT_OK(c, wb_commit(c, g[2].sequence, g[2].token, &y.list, false, false, &r));
	cr_assert_eq(r.watermark, base[0].sequence, "the commit above a pending lease waited");
	ASSERT_OK(c, wb_stage(c, g[3].sequence, g[3].token, &z.list));
	ASSERT_OK(c, wb_release(c, g[4].sequence, g[4].token, NULL));
	ASSERT_OK(c, wb_commit(c, g[5].sequence, g[5].token, &w.list, false, false, &r));
	Whizbang__V1__ServerStats *s = stats(c);
	uint64_t old_ceiling = s->lease_ceiling;
	cr_assert_eq(s->watermark, base[0].sequence);
	cr_assert_geq(old_ceiling, g[5].sequence);
	wb_stats_free(s);
	wb_close(c);

	e2e_kill(&e2e_srv);
	e2e_suite_restart();
	c = client("after-crash");

	/* Everything up to the old ceiling is final at once. */
	uint64_t wm = watermark(c);
	cr_assert_geq(wm, old_ceiling, "watermark %" PRIu64 " after restart, old ceiling %" PRIu64,
	              wm, old_ceiling);
	Whizbang__V1__ReadLedgerResult *res = ledger(c, 1);
	cr_assert_eq(res->n_entries, wm, "the ledger has holes below the watermark");
	expect_entry(entry(res, base[0].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	             WHIZBANG__V1__ENTRY_REASON__REASON_NONE);
	expect_entry(entry(res, g[0].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	             WHIZBANG__V1__ENTRY_REASON__GAP_RESTART);
	const Whizbang__V1__LedgerEntry *e = entry(res, g[1].sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED,
	             WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED);
	cr_assert(same_ops(e, &x), "staged work was not recovered as staged");
	e = entry(res, g[2].sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	             WHIZBANG__V1__ENTRY_REASON__REASON_NONE);
	cr_assert(same_ops(e, &y), "an acknowledged commit lost its ops");
	e = entry(res, g[3].sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_RECOVERED,
	             WHIZBANG__V1__ENTRY_REASON__RECOVERED_STAGED);
	cr_assert(same_ops(e, &z), "staged work was not recovered as staged");
	expect_entry(entry(res, g[4].sequence), WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
	             WHIZBANG__V1__ENTRY_REASON__GAP_RELEASED);
	e = entry(res, g[5].sequence);
	expect_entry(e, WHIZBANG__V1__ENTRY_KIND__ENTRY_COMMITTED,
	             WHIZBANG__V1__ENTRY_REASON__REASON_NONE);
	cr_assert(same_ops(e, &w), "an acknowledged commit lost its ops");
	for (uint64_t q = g[5].sequence + 1; q <= wm; q++)
		expect_entry(entry(res, q), WHIZBANG__V1__ENTRY_KIND__ENTRY_GAP,
		             WHIZBANG__V1__ENTRY_REASON__GAP_RESTART);
	wb_ledger_free(res);

	/* The old leases are gone; a commit on one names the restart gap. */
	ASSERT_ERR(c, WB_LEASE_EXPIRED,
	           wb_commit(c, g[0].sequence, g[0].token, NULL, false, false, NULL));
	cr_assert(strstr(wb_errmsg(c), "restart") != NULL, "message: %s", wb_errmsg(c));

	/* No sequence is handed out twice: new leases start above the old ceiling. */
	struct wb_lease_grant after[MAX_GRANTS];
	lease(c, "crash", 2, 2000, after);
	cr_assert_gt(after[0].sequence, old_ceiling, "sequence %" PRIu64 " was handed out again",
	             after[0].sequence);
	ASSERT_OK(c, wb_commit(c, after[0].sequence, after[0].token, &x.list, false, false, &r));
	ASSERT_OK(c, wb_commit(c, after[1].sequence, after[1].token, &y.list, true, false, &r));
	cr_assert_geq(r.watermark, after[1].sequence);
	e2e_suite_stop_client(c);
}

/* ---------------------------------------------------------------- the CLI */

Test(lease_e2e, cli_lease_commit_ledger_watermark_and_stats)
{
	start(NULL);
	struct cli_run r = {0};
	CLI_EXPECT(&r, 0, "lease --json", "--json", "lease", "--projection", "cli", "--count", "2",
	           "--duration-ms", "2000", "--operation-id", "cli-op");
	uint64_t seq[2];
	char tok[2][17];
	const char *line = r.out;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sscanf(line, "{\"sequence\":%" SCNu64 ",\"token\":\"%16[0-9a-f]\"",
		                    &seq[i], tok[i]),
		             2, "lease --json printed: %s", r.out);
		line = strchr(line, '\n');
		cr_assert_not_null(line);
		line++;
	}
	cr_assert_eq(seq[1], seq[0] + 1);
	char s0[24], s1[24], wait_for[24];
	snprintf(s0, sizeof(s0), "%" PRIu64, seq[0]);
	snprintf(s1, sizeof(s1), "%" PRIu64, seq[1]);
	snprintf(wait_for, sizeof(wait_for), "%" PRIu64, seq[1] + 100);

	/* A malformed op is refused before anything is sent. */
	CLI_EXPECT(&r, 1, "commit with a bad --op", "commit", s0, "--token", tok[0], "--op",
	           "upsert Order {");
	cli_expect_has(r.err, "error: INVALID_EXPRESSION: column ", "commit with a bad --op");
	const char *nowhere[] = {"--server", "127.0.0.1:1", "commit",         s0,  "--token",
	                         tok[0],     "--op",        "upsert Order {", NULL};
	cli_run(&r, nowhere);
	cli_expect_status(&r, 1, "commit with a bad --op and no server");
	cli_expect_has(r.err, "INVALID_EXPRESSION", "a bad --op must not contact the server");
	CLI_EXPECT(&r, 2, "a short token", "commit", s0, "--token", "12345");

	/* Two --op make one commit; the second lease commits applied. */
	CLI_EXPECT(&r, 0, "commit above a pending lease", "commit", s1, "--token", tok[1], "--op",
	           "upsert Order \"o-2\" {total: 5}", "--op", "delete Order \"o-9\"");
	cli_expect_has(r.out, "committed ", "commit");
	CLI_EXPECT(&r, 0, "commit applied", "commit", s0, "--token", tok[0], "--ack", "applied",
	           "--op", "upsert Order \"o-1\" {status: \"Paid\"}");
	char want[128];
	snprintf(want, sizeof(want), "committed %s watermark=%s", s0, s1);
	cli_expect_has(r.out, want, "commit applied");
	CLI_EXPECT(&r, 1, "commit twice", "commit", s0, "--token", tok[0]);
	cli_expect_has(r.err, "error: LEASE_NOT_FOUND: ", "commit twice");

	CLI_EXPECT(&r, 0, "ledger", "ledger", "--from", s0);
	snprintf(want, sizeof(want), "%s  committed  cli  cli-op  ", s0);
	CLI_HAS(r.out, "ledger", want, "o-1", "o-2", "o-9");
	CLI_EXPECT(&r, 0, "ledger --json", "--json", "ledger", "--from", s1, "--limit", "1");
	snprintf(want, sizeof(want), "{\"sequence\":%s,\"kind\":\"committed\"", s1);
	CLI_HAS(r.out, "ledger --json", want, "\"ops\":[\"");

	CLI_EXPECT(&r, 0, "watermark", "watermark");
	snprintf(want, sizeof(want), "watermark %s\n", s1);
	cli_expect_has(r.out, want, "watermark");
	CLI_EXPECT(&r, 0, "watermark --wait reached", "watermark", "--wait", s1, "--timeout-ms",
	           "200");
	cli_expect_has(r.out, "reached", "watermark --wait");
	CLI_EXPECT(&r, 1, "watermark --wait timed out", "watermark", "--wait", wait_for,
	           "--timeout-ms", "200");
	cli_expect_has(r.out, "timed out", "watermark --wait");

	/* Release, stage and extend through the CLI. */
	CLI_EXPECT(&r, 0, "lease", "lease", "--projection", "cli", "--duration-ms", "300");
	uint64_t s3;
	char t3[17], s3s[24];
	cr_assert_eq(sscanf(r.out, "%" SCNu64 " %16[0-9a-f] ", &s3, t3), 2, "lease: %s", r.out);
	snprintf(s3s, sizeof(s3s), "%" PRIu64, s3);
	CLI_EXPECT(&r, 0, "extend", "extend", s3s, "--token", t3, "--duration-ms", "400");
	CLI_EXPECT(&r, 0, "stage", "stage", s3s, "--token", t3, "--op",
	           "upsert Order \"o-s\" {n: 1}");
	CLI_EXPECT(&r, 0, "watermark --wait for the staged lease", "watermark", "--wait", s3s,
	           "--timeout-ms", "3000");
	CLI(&r, "ledger", "--from", s3s);
	snprintf(want, sizeof(want), "%s  recovered(staged)  cli", s3s);
	cli_expect_has(r.out, want, "ledger after staged recovery");
	CLI(&r, "lease", "--projection", "cli", "--duration-ms", "2000");
	cr_assert_eq(sscanf(r.out, "%" SCNu64 " %16[0-9a-f] ", &s3, t3), 2, "lease: %s", r.out);
	snprintf(s3s, sizeof(s3s), "%" PRIu64, s3);
	CLI_EXPECT(&r, 0, "release", "release", s3s, "--token", t3, "--reason", "cli test");
	CLI(&r, "ledger", "--from", s3s);
	snprintf(want, sizeof(want), "%s  gap(released)  cli", s3s);
	cli_expect_has(r.out, want, "ledger after release");

	CLI_EXPECT(&r, 0, "stats", "stats");
	CLI_HAS(r.out, "stats", "leases_committed: 2\n", "leases_recovered: 1\n",
	        "lease_efficiency: ", "health: ", "projection cli: ");
	CLI_EXPECT(&r, 0, "stats --json", "--json", "stats");
	cli_expect_has(r.out, "\"projections\":[{\"projection\":\"cli\"", "stats --json");
	cli_suite_stop(&r);
}
