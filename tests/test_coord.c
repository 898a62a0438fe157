/* The lease coordinator (lease/coord.h) on a real store, through a small
 * fake I/O: what the randomized walk of test_ledger_model.c does not reach.
 * Index changes, writes that fail (retries, the reservation queue, staged
 * work), an I/O that cannot take a write, more due leases and more released
 * leases than one batch holds, waits and their one-hour cap, shutdown,
 * freeing with requests still out, and the figures (health, cascades, what
 * the apply hook reports). The fake I/O runs every queued write in one
 * batch (nested transactions, as storage/writer.c), or fails them all. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coord.h"
#include "fixture.h"
#include "ledger.h"
#include "storage.h"

#define T0_US 1700000000000000ull
#define MAX_WRITES 1024
#define MAX_ANSWERS 1024
#define MAX_LOGS 512

struct answer {
	uint64_t id;
	struct coord_answer a;
	char message[512];
	struct coord_grant grants[64];
};

static struct fixture fx;

static struct {
	struct storage *st;
	struct coord *c;
	struct coord_config cfg;
	struct coord_io io;
	struct coord_recovery rec;
	uint64_t now;
	uint64_t rng;
	struct coord_write *q[MAX_WRITES];
	size_t nq;
	struct answer ans[MAX_ANSWERS];
	size_t nans;
	uint64_t deadline;
	struct {
		enum coord_log_level level;
		char event[64];
		char fields[256];
	} logs[MAX_LOGS];
	size_t nlogs;
	int submit_fails; /* the next n submits fail */
	uint64_t applied[MAX_WRITES];
	size_t napplied;
	struct lease_owner owners[2];
} t;

/* ------------------------------------------------------------ the fake I/O */

static int io_submit(struct coord_io *io, struct coord_write *w)
{
	(void)io;
	if (t.submit_fails > 0) {
		t.submit_fails--;
		return WB_E_NOMEM;
	}
	cr_assert_lt(t.nq, MAX_WRITES);
	t.q[t.nq++] = w;
	return 0;
}

static void io_answer(struct coord_io *io, struct coord_req r, const struct coord_answer *a)
{
	(void)io;
	cr_assert_lt(t.nans, MAX_ANSWERS);
	struct answer *x = &t.ans[t.nans++];
	x->id = (uint64_t)(uintptr_t)r.handle;
	x->a = *a;
	if (a->message != NULL)
		snprintf(x->message, sizeof(x->message), "%s", a->message);
	cr_assert_leq(a->n_grants, 64);
	if (a->n_grants > 0)
		memcpy(x->grants, a->grants, a->n_grants * sizeof(*a->grants));
}

static void io_deadline(struct coord_io *io, uint64_t at_ms)
{
	(void)io;
	t.deadline = at_ms;
}

static void io_log(struct coord_io *io, enum coord_log_level level, const char *event,
                   const char *fields)
{
	(void)io;
	cr_assert_lt(t.nlogs, MAX_LOGS);
	t.logs[t.nlogs].level = level;
	snprintf(t.logs[t.nlogs].event, sizeof(t.logs[0].event), "%s", event);
	snprintf(t.logs[t.nlogs].fields, sizeof(t.logs[0].fields), "%s", fields);
	t.nlogs++;
}

/* Counts what it applies; ops starting with 'F' fail as an outcome. */
static int apply_cb(struct storage_txn *txn, const struct ledger_entry *e, void *arg,
                    struct coord_applied *applied)
{
	(void)txn;
	(void)arg;
	cr_assert_lt(t.napplied, MAX_WRITES);
	t.applied[t.napplied++] = e->seq;
	if (e->ops_len > 0) {
		applied->entries++;
		applied->failures += e->ops[0] == 'F';
	}
	return 0;
}

static uint64_t rand_cb(void *arg)
{
	(void)arg;
	return ++t.rng * 0x9E3779B97F4A7C15ull;
}

static struct coord_time now(void)
{
	return (struct coord_time){t.now, T0_US + t.now * 1000};
}

static struct coord_req req(uint64_t id, int owner)
{
	return (struct coord_req){(void *)(uintptr_t)id, &t.owners[owner]};
}

/* Runs every queued write in one batch and hands them back (status 0), or
 * hands them all back failed with status. Writes submitted meanwhile wait
 * for the next batch. */
static void flush(int status)
{
	struct coord_write *batch[MAX_WRITES];
	size_t n = t.nq;
	memcpy(batch, t.q, n * sizeof(*batch));
	t.nq = 0;
	if (status == 0) {
		struct storage_txn *txn, *child;
		cr_assert_eq(storage_txn_begin(t.st, NULL, 0, &txn), 0);
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(storage_txn_begin(t.st, txn, 0, &child), 0);
			cr_assert_eq(coord_write_apply(batch[i], child), 0);
			cr_assert_eq(storage_txn_commit(child), 0);
		}
		cr_assert_eq(storage_txn_commit(txn), 0);
	}
	for (size_t i = 0; i < n; i++)
		coord_write_done(t.c, batch[i], status, now());
}

/* The last answer to request id (NULL when none). */
static const struct answer *answer_of(uint64_t id)
{
	for (size_t i = t.nans; i-- > 0;)
		if (t.ans[i].id == id)
			return &t.ans[i];
	return NULL;
}

static size_t answers_to(uint64_t id)
{
	size_t n = 0;
	for (size_t i = 0; i < t.nans; i++)
		n += t.ans[i].id == id;
	return n;
}

static size_t logged(const char *event, enum coord_log_level level)
{
	size_t n = 0;
	for (size_t i = 0; i < t.nlogs; i++)
		n += strcmp(t.logs[i].event, event) == 0 && t.logs[i].level == level;
	return n;
}

static void start(void)
{
	char errmsg[256] = "";
	int rc = coord_start(&t.c, &t.cfg, &t.io, t.st, now(), &t.rec, errmsg, sizeof(errmsg));
	cr_assert_eq(rc, 0, "%s", errmsg);
	t.deadline = UINT64_MAX;
}

/* Leases count sequences for request id of owner, lasting duration_ms,
 * through a reservation when needed; returns the first sequence. */
static uint64_t lease(uint64_t id, int owner, uint32_t count, uint64_t duration_ms,
                      enum lease_on_disconnect od)
{
	struct lease_grant_args args = {
	        .projection = "orders",
	        .duration_ms = duration_ms,
	        .count = count,
	        .on_disconnect = od,
	};
	coord_lease(t.c, req(id, owner), &args, now());
	if (answer_of(id) == NULL)
		flush(0);
	const struct answer *x = answer_of(id);
	cr_assert_not_null(x);
	cr_assert_eq(x->a.kind, COORD_GRANTED, "lease %llu: %s", (unsigned long long)id,
	             x->message);
	cr_assert_eq(x->a.n_grants, count);
	return x->grants[0].seq;
}

static uint64_t token_of(uint64_t lease_id, uint64_t seq)
{
	const struct answer *x = answer_of(lease_id);
	return x->grants[seq - x->grants[0].seq].token;
}

static void commit(uint64_t id, int owner, uint64_t seq, uint64_t token, const char *ops,
                   bool applied)
{
	struct coord_commit_args a = {
	        .seq = seq,
	        .token = token,
	        .ops = (const uint8_t *)ops,
	        .ops_len = strlen(ops),
	        .ack_applied = applied,
	};
	coord_commit(t.c, req(id, owner), &a, now());
}

static void setup(void)
{
	memset(&t, 0, sizeof(t));
	fixture_setup(&fx, "coord");
	t.st = fixture_open(&fx, NULL,
	                    &(struct storage_options){.map_size = 64u << 20, .no_sync = true});
	t.now = 1000000;
	t.cfg = (struct coord_config){
	        .lease =
	                {
	                        .max_lifetime_ms = 10000,
	                        .max_duration_ms = 5000,
	                        .default_duration_ms = 1000,
	                        .cascade_threshold = 1000,
	                        .max_leases = 1000,
	                        .max_leases_per_owner = 1000,
	                        .max_count = 64,
	                        .reserve_chunk = 10,
	                        .max_projections = 8,
	                },
	        .max_waiting_per_owner = 2,
	        .apply = apply_cb,
	        .rand = rand_cb,
	};
	t.io = (struct coord_io){
	        .submit = io_submit,
	        .answer = io_answer,
	        .deadline = io_deadline,
	        .log = io_log,
	};
	start();
}

static void teardown(void)
{
	coord_close(t.c);
	storage_close(t.st);
	fixture_teardown(&fx);
}

TestSuite(coord, .init = setup, .fini = teardown);

/* ------------------------------------------------------------ index changes */

Test(coord, an_index_change_is_leased_committed_and_answered_once_applied)
{
	uint64_t low = lease(1, 0, 1, 1000, LEASE_KEEP);
	coord_index(t.c, req(2, 0), (const uint8_t *)"idx", 3, now());
	flush(0);
	/* Durable at low + 1, but low holds the watermark. */
	cr_assert_null(answer_of(2));
	cr_assert_eq(t.owners[0].waiting, 1);
	struct storage_txn *txn;
	struct ledger_entry e;
	txn = fixture_txn(t.st, NULL, STORAGE_RDONLY);
	cr_assert_eq(ledger_get(txn, low + 1, &e), 0);
	cr_assert_eq(e.kind, LEDGER_COMMITTED);
	cr_assert_eq(e.projection_len, 6);
	cr_assert_eq(memcmp(e.projection, "$index", 6), 0);
	cr_assert_eq(e.ops_len, 3);
	storage_txn_abort(txn);

	coord_release(t.c, req(3, 0), low, token_of(1, low), now());
	flush(0);
	const struct answer *x = answer_of(2);
	cr_assert_not_null(x);
	cr_assert_eq(x->a.kind, COORD_INDEXED);
	cr_assert_eq(x->a.seq, low + 1);
	cr_assert_eq(x->a.watermark, low + 1);
	cr_assert_eq(answer_of(3)->a.kind, COORD_RELEASED);
	cr_assert_eq(t.owners[0].waiting, 0);
}

Test(coord, a_shutdown_answers_what_waits_for_the_watermark)
{
	lease(1, 0, 1, 1000, LEASE_KEEP); /* holds the watermark at 0 */
	coord_index(t.c, req(2, 0), (const uint8_t *)"idx", 3, now());
	uint64_t s2 = lease(3, 0, 2, 1000, LEASE_KEEP);
	commit(4, 0, s2, token_of(3, s2), "ops", true);
	coord_wait(t.c, req(5, 1), s2, 1000, now());
	flush(0);
	cr_assert_eq(t.nq, 0);
	cr_assert_null(answer_of(2));
	cr_assert_null(answer_of(4));
	cr_assert_null(answer_of(5));

	coord_shutdown(t.c);
	cr_assert_eq(answer_of(2)->a.kind, COORD_ERROR);
	cr_assert_eq(answer_of(2)->a.code, WB_SHUTTING_DOWN);
	cr_assert_str_eq(answer_of(2)->message, "the server is shutting down");
	cr_assert_eq(answer_of(4)->a.code, WB_SHUTTING_DOWN);
	cr_assert_str_eq(answer_of(4)->message,
	                 "the commit is durable, but the server is shutting down before the "
	                 "watermark reached it");
	cr_assert_eq(answer_of(5)->a.code, WB_SHUTTING_DOWN);
	cr_assert_str_eq(answer_of(5)->message, "the server is shutting down");
	cr_assert_eq(t.owners[0].waiting + t.owners[1].waiting, 0);
	cr_assert_eq(t.deadline, lease_next_expiry(coord_leases(t.c)));

	/* An APPLIED commit that becomes durable now is told at once. */
	commit(6, 0, s2 + 1, token_of(3, s2 + 1), "ops", true);
	flush(0);
	cr_assert_eq(answer_of(6)->a.code, WB_SHUTTING_DOWN);
	cr_assert_str_eq(answer_of(6)->message,
	                 "the change is durable, but the server is shutting down before the "
	                 "watermark reached it");
}

/* ------------------------------------------------------------ failed writes */

Test(coord, a_final_write_that_fails_is_retried_three_times_then_answered)
{
	uint64_t seq = lease(1, 0, 1, 1000, LEASE_KEEP);
	commit(2, 0, seq, token_of(1, seq), "ops", false);
	for (int i = 0; i < 3; i++) {
		flush(WB_E_IO);
		cr_assert_eq(t.nq, 1, "attempt %d is submitted again", i + 2);
		cr_assert_null(answer_of(2));
	}
	flush(WB_E_IO);
	cr_assert_eq(t.nq, 0);
	const struct answer *x = answer_of(2);
	cr_assert_eq(x->a.kind, COORD_STORAGE_ERROR);
	cr_assert_eq(x->a.code, WB_E_IO);
	cr_assert_str_eq(x->message, "Commit");
	cr_assert_eq(logged("ledger_write_failed", COORD_LOG_WARN), 3);
	cr_assert_eq(logged("ledger_write_failed", COORD_LOG_ERROR), 1);
	/* The lease holds the watermark until a restart recovers it. */
	struct lease_counts lc;
	lease_get_counts(coord_leases(t.c), &lc);
	cr_assert_eq(lc.finishing, 1);
	cr_assert_eq(lease_frontier(coord_leases(t.c)), seq - 1);
}

Test(coord, a_failed_final_write_is_not_retried_once_shutting_down)
{
	uint64_t seq = lease(1, 0, 1, 1000, LEASE_KEEP);
	coord_release(t.c, req(2, 0), seq, token_of(1, seq), now());
	coord_shutdown(t.c);
	flush(WB_E_IO);
	cr_assert_eq(t.nq, 0);
	cr_assert_eq(answer_of(2)->a.kind, COORD_STORAGE_ERROR);
	cr_assert_str_eq(answer_of(2)->message, "Commit");
}

Test(coord, a_failed_reservation_answers_every_queued_request)
{
	struct lease_grant_args args = {.projection = "orders", .duration_ms = 1000, .count = 2};
	coord_lease(t.c, req(1, 0), &args, now());
	coord_lease(t.c, req(2, 1), &args, now());
	cr_assert_eq(t.nq, 1, "one reserve write for the queue");
	cr_assert_eq(t.q[0]->kind, COORD_WRITE_RESERVE);
	cr_assert_eq(t.q[0]->ceiling, 2 + 10);
	flush(WB_E_IO);
	for (uint64_t id = 1; id <= 2; id++) {
		cr_assert_eq(answer_of(id)->a.kind, COORD_STORAGE_ERROR);
		cr_assert_eq(answer_of(id)->a.code, WB_E_IO);
		cr_assert_str_eq(answer_of(id)->message, "Lease");
	}
	cr_assert_eq(logged("reservation_failed", COORD_LOG_ERROR), 1);
	cr_assert_str_eq(t.logs[0].fields, "ceiling=12 error=E_IO");
	/* The next request reserves again. */
	cr_assert_eq(lease(3, 0, 2, 1000, LEASE_KEEP), 1);
}

Test(coord, a_failed_stage_is_answered_as_a_storage_failure)
{
	uint64_t seq = lease(1, 0, 1, 1000, LEASE_KEEP);
	coord_stage(t.c, req(2, 0), seq, token_of(1, seq), (const uint8_t *)"st", 2, now());
	cr_assert_eq(t.q[0]->kind, COORD_WRITE_STAGE);
	flush(WB_E_MAPFULL);
	cr_assert_eq(answer_of(2)->a.kind, COORD_STORAGE_ERROR);
	cr_assert_eq(answer_of(2)->a.code, WB_E_MAPFULL);
	cr_assert_str_eq(answer_of(2)->message, "Stage");
}

Test(coord, an_io_that_cannot_take_a_write)
{
	uint64_t seq = lease(1, 0, 2, 1000, LEASE_KEEP);
	/* The commit's entry cannot be submitted: a released gap takes its
	 * place, and the client hears why. */
	t.submit_fails = 1;
	commit(2, 0, seq, token_of(1, seq), "ops", false);
	cr_assert_eq(answer_of(2)->a.kind, COORD_ERROR);
	cr_assert_eq(answer_of(2)->a.code, WB_RESOURCE_EXHAUSTED);
	cr_assert_str_eq(answer_of(2)->message, "the server is out of memory");
	cr_assert_eq(t.nq, 1);
	cr_assert_eq(t.q[0]->entry.kind, LEDGER_GAP);
	cr_assert_eq(t.q[0]->entry.reason, LEDGER_GAP_RELEASED);
	flush(0);
	cr_assert_eq(coord_watermark(t.c), seq);

	/* A stage that cannot be submitted leaves the lease unstaged. */
	t.submit_fails = 1;
	coord_stage(t.c, req(3, 0), seq + 1, token_of(1, seq + 1), (const uint8_t *)"s", 1, now());
	cr_assert_eq(answer_of(3)->a.code, WB_RESOURCE_EXHAUSTED);
	cr_assert_eq(t.nq, 0);

	/* A reservation that cannot be submitted answers the queue: nothing
	 * would raise the ceiling for it otherwise (found by test_server's
	 * allocation sweep: the lease waited for ever). */
	struct lease_grant_args big = {.projection = "orders", .duration_ms = 1000, .count = 20};
	t.submit_fails = 1;
	coord_lease(t.c, req(4, 0), &big, now());
	cr_assert_eq(logged("reservation_failed", COORD_LOG_ERROR), 1);
	cr_assert_str_eq(t.logs[t.nlogs - 1].fields, "reason=no_memory");
	cr_assert_eq(answer_of(4)->a.kind, COORD_STORAGE_ERROR);
	cr_assert_eq(answer_of(4)->a.code, WB_E_NOMEM);
	cr_assert_eq(t.nq, 0);
	/* The next request reserves again. */
	coord_lease(t.c, req(5, 0), &big, now());
	cr_assert_eq(t.nq, 1);
	flush(0);
	cr_assert_eq(answer_of(5)->a.kind, COORD_GRANTED);
}

/* ------------------------------------------------------------ many at once */

Test(coord, more_due_leases_than_one_batch_expire_in_order)
{
	for (uint64_t id = 1; id <= 3; id++)
		lease(id, 0, 50, 100 + id, LEASE_KEEP);
	cr_assert_eq(t.deadline, t.now + 101);
	t.now += 500;
	coord_tick(t.c, now());
	cr_assert_eq(t.nq, 150);
	for (size_t i = 0; i < t.nq; i++) {
		cr_assert_eq(t.q[i]->seq, i + 1, "expiry %zu is seq %llu", i,
		             (unsigned long long)t.q[i]->seq);
		cr_assert_eq(t.q[i]->entry.reason, LEDGER_GAP_EXPIRED);
		cr_assert_eq(t.q[i]->entry.original_expiry_us,
		             T0_US + (1000000 + 101 + i / 50) * 1000);
	}
	cr_assert_eq(t.deadline, UINT64_MAX);
	flush(0);
	cr_assert_eq(coord_watermark(t.c), 150);

	struct coord_stats s;
	coord_stats(t.c, t.now, &s);
	cr_assert_eq(s.leases.outcomes[LEASE_EXPIRED], 150);
	cr_assert_eq(s.all.gaps, 150);
	cr_assert_str_eq(s.all.health, "degraded");
	cr_assert_str_eq(s.all.health_reason,
	                 "expiry rate 100.0% > 5%; 150 gaps in the last hour > 100");
}

Test(coord, a_closing_connection_releases_its_release_leases_only)
{
	lease(1, 0, 64, 1000, LEASE_RELEASE);
	lease(2, 0, 40, 1000, LEASE_RELEASE);
	uint64_t keep = lease(3, 0, 5, 1000, LEASE_KEEP);
	lease(4, 1, 1, 1000, LEASE_RELEASE);
	coord_owner_closed(t.c, &t.owners[0], now());
	cr_assert_eq(t.nq, 104);
	for (size_t i = 0; i < t.nq; i++) {
		cr_assert_eq(t.q[i]->seq, i + 1);
		cr_assert_eq(t.q[i]->entry.reason, LEDGER_GAP_RELEASED);
		cr_assert_null(t.q[i]->req.handle);
	}
	cr_assert_eq(t.owners[0].count, 0);
	cr_assert_null(t.owners[0].head);
	cr_assert_eq(t.owners[1].count, 1);
	flush(0);
	cr_assert_eq(coord_watermark(t.c), keep - 1);
	struct lease_counts lc;
	lease_get_counts(coord_leases(t.c), &lc);
	cr_assert_eq(lc.active, 6);
	cr_assert_eq(lc.outcomes[LEASE_RELEASED], 104);
}

/* ------------------------------------------------------------ waits */

Test(coord, waits_time_out_within_an_hour_and_count_against_the_connection)
{
	coord_wait(t.c, req(1, 0), 0, 1000, now());
	cr_assert_eq(answer_of(1)->a.kind, COORD_WATERMARK);
	cr_assert(answer_of(1)->a.reached);
	cr_assert_eq(answer_of(1)->a.next_seq, 1);
	coord_wait(t.c, req(2, 0), 5, 0, now());
	cr_assert_not(answer_of(2)->a.reached);

	coord_wait(t.c, req(3, 0), 5, 10000000, now());
	cr_assert_eq(t.deadline, t.now + 3600000);
	coord_wait(t.c, req(4, 0), 5, 1000, now());
	cr_assert_eq(t.deadline, t.now + 1000);
	coord_wait(t.c, req(5, 0), 5, 1000, now());
	cr_assert_eq(answer_of(5)->a.code, WB_RESOURCE_EXHAUSTED);
	cr_assert_str_eq(answer_of(5)->message,
	                 "this connection already has 2 requests waiting (--max-inflight)");
	cr_assert_eq(t.owners[0].waiting, 2);

	uint64_t start = t.now;
	t.now = start + 999;
	coord_tick(t.c, now());
	cr_assert_null(answer_of(4));
	t.now = start + 1000;
	coord_tick(t.c, now());
	cr_assert_not(answer_of(4)->a.reached);
	cr_assert_eq(t.deadline, start + 3600000);
	t.now = start + 3600000;
	coord_tick(t.c, now());
	cr_assert_not(answer_of(3)->a.reached);
	cr_assert_eq(t.deadline, UINT64_MAX);
	cr_assert_eq(t.owners[0].waiting, 0);
}

Test(coord, a_closing_connection_gives_its_requests_back)
{
	coord_wait(t.c, req(1, 0), 5, 1000, now());
	struct lease_grant_args args = {.projection = "orders", .duration_ms = 1000, .count = 1};
	coord_lease(t.c, req(2, 0), &args, now()); /* queued behind the reservation */
	coord_lease(t.c, req(3, 1), &args, now());
	coord_owner_closed(t.c, &t.owners[0], now());
	cr_assert_eq(answer_of(1)->a.kind, COORD_DROPPED);
	cr_assert_eq(answer_of(2)->a.kind, COORD_DROPPED);
	cr_assert_null(answer_of(3));
	cr_assert_eq(t.owners[0].waiting, 0);
	cr_assert_eq(t.deadline, UINT64_MAX);
	flush(0);
	cr_assert_eq(answer_of(3)->a.kind, COORD_GRANTED);
	cr_assert_eq(answer_of(3)->grants[0].seq, 1);

	/* A commit's write still out: its answer is given back at once and
	 * the write, when done, answers no one. */
	commit(4, 1, 1, answer_of(3)->grants[0].token, "ops", false);
	coord_owner_closed(t.c, &t.owners[1], now());
	cr_assert_eq(answer_of(4)->a.kind, COORD_DROPPED);
	cr_assert_null(t.q[0]->req.handle);
	flush(0);
	cr_assert_eq(answers_to(4), 1);
	cr_assert_eq(coord_watermark(t.c), 1);
}

Test(coord, freeing_gives_back_what_is_still_out)
{
	uint64_t seq = lease(1, 0, 1, 1000, LEASE_KEEP);
	coord_wait(t.c, req(2, 0), seq, 1000, now());
	commit(3, 1, seq, token_of(1, seq), "ops", true);
	struct lease_grant_args args = {.projection = "orders", .duration_ms = 1000, .count = 20};
	coord_lease(t.c, req(4, 1), &args, now());
	cr_assert_eq(t.nq, 2); /* the final entry and a reservation */
	coord_close(t.c);
	t.c = NULL;
	t.nq = 0;
	for (uint64_t id = 2; id <= 4; id++)
		cr_assert_eq(answer_of(id)->a.kind, COORD_DROPPED, "request %llu",
		             (unsigned long long)id);
}

/* ------------------------------------------------------------ answers and figures */

Test(coord, commits_answer_durable_at_once_and_applied_with_the_outcome_to_read)
{
	uint64_t s1 = lease(1, 0, 3, 1000, LEASE_KEEP);
	commit(2, 0, s1 + 1, token_of(1, s1 + 1), "a", false);
	commit(3, 0, s1 + 2, token_of(1, s1 + 2), "b", true);
	flush(0);
	cr_assert_eq(answer_of(2)->a.kind, COORD_COMMITTED);
	cr_assert_not(answer_of(2)->a.read_outcome);
	cr_assert_eq(answer_of(2)->a.watermark, 0);
	cr_assert_null(answer_of(3));

	struct coord_stats s;
	coord_stats(t.c, t.now, &s);
	cr_assert_eq(s.all.waiting, 2);
	t.now += 250;
	commit(4, 0, s1, token_of(1, s1), "c", false);
	flush(0);
	cr_assert_eq(answer_of(3)->a.kind, COORD_COMMITTED);
	cr_assert(answer_of(3)->a.read_outcome);
	cr_assert_eq(answer_of(3)->a.seq, s1 + 2);
	cr_assert_eq(answer_of(3)->a.watermark, s1 + 2);
	cr_assert_eq(t.napplied, 3);

	coord_stats(t.c, t.now, &s);
	cr_assert_eq(s.all.waiting, 0);
	cr_assert_eq(s.applied.entries, 3);
	cr_assert_eq(s.all.wait_max_ms, 250);
	cr_assert_float_eq(s.all.wait_mean_ms, 500.0 / 3, 1e-9);
	cr_assert_eq(s.watermark, s1 + 2);
	cr_assert_eq(s.next_seq, s1 + 3);
	cr_assert_eq(s.ceiling, 13);
	cr_assert_str_eq(s.all.health, "ok");
	cr_assert_str_eq(s.all.health_reason, "");
	struct coord_projection_stats ps[8];
	cr_assert_eq(coord_projection_stats(t.c, t.now, ps, 8), 1);
	cr_assert_str_eq(ps[0].lease.name, "orders");
	cr_assert_eq(ps[0].lease.outcomes[LEASE_COMMITTED], 3);
	cr_assert_eq(ps[0].f.wait_max_ms, 250);
	cr_assert_str_eq(ps[0].f.health, "ok");
}

Test(coord, failed_outcomes_and_cascades_are_logged)
{
	uint64_t seq = lease(1, 0, 1, 1000, LEASE_KEEP);
	commit(2, 0, seq, token_of(1, seq), "Fails", false);
	flush(0);
	cr_assert_eq(logged("apply_failed", COORD_LOG_INFO), 1);
	cr_assert_str_eq(t.logs[0].fields, "entries=1 watermark=1");

	coord_close(t.c);
	t.cfg.lease.cascade_threshold = 2;
	start();
	lease(3, 0, 3, 100, LEASE_KEEP);
	t.now += 200;
	coord_tick(t.c, now());
	cr_assert_eq(logged("lease_cascade", COORD_LOG_WARN), 1);
	cr_assert_str_eq(t.logs[t.nlogs - 1].fields, "level=1 previous=0 expired_total=3");
	cr_assert_eq(logged("lease_expired", COORD_LOG_DEBUG), 3);
}

Test(coord, a_count_out_of_bounds_is_refused_at_once_even_behind_a_queue)
{
	struct lease_grant_args args = {.projection = "orders", .duration_ms = 1000, .count = 2};
	coord_lease(t.c, req(1, 0), &args, now());
	cr_assert_null(answer_of(1));
	args.count = 0;
	coord_lease(t.c, req(2, 0), &args, now());
	cr_assert_eq(answer_of(2)->a.code, WB_BAD_REQUEST);
	cr_assert_str_eq(answer_of(2)->message, "count is 0: ask for 1 to 64 sequences");
	args.count = 65;
	coord_lease(t.c, req(3, 0), &args, now());
	cr_assert_eq(answer_of(3)->a.code, WB_BAD_REQUEST);
	cr_assert_eq(t.nq, 1);
}

Test(coord, start_up_recovers_and_counts_what_it_applied)
{
	uint64_t seq = lease(1, 0, 3, 1000, LEASE_KEEP);
	coord_stage(t.c, req(2, 0), seq + 1, token_of(1, seq + 1), (const uint8_t *)"staged", 6,
	            now());
	commit(3, 0, seq + 2, token_of(1, seq + 2), "done", false);
	flush(0);
	/* A crash: the coordinator goes, the store stays. */
	coord_close(t.c);
	t.napplied = 0;
	start();
	cr_assert_eq(t.rec.ledger.gaps, 11); /* seq, and the 10 reserved after the lease */
	cr_assert_eq(t.rec.ledger.recovered, 1);
	cr_assert_eq(t.rec.ledger.watermark, 13);
	cr_assert_eq(t.rec.applied.entries, 2);
	cr_assert_eq(t.napplied, 13);
	struct coord_stats s;
	coord_stats(t.c, t.now, &s);
	cr_assert_eq(s.applied.entries, 2);
	cr_assert_eq(s.all.gaps, t.rec.ledger.gaps);
	cr_assert_eq(s.next_seq, 14);
	cr_assert_eq(coord_watermark(t.c), 13);
}
