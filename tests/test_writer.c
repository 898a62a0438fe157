/* Tests of the writer thread (storage/writer.h): group commit over a real
 * store in a fresh temporary directory. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "fixture.h"
#include "storage.h"
#include "writer.h"

#define KIB ((size_t)1024)
#define MIB (1024 * KIB)

static struct fixture fx;
static struct storage *st;

/* What the notify callback saw. */
static pthread_mutex_t notify_mu = PTHREAD_MUTEX_INITIALIZER;
static struct writer *notify_writer;
static uint64_t notify_calls;
static uint64_t notify_bad; /* calls that came before their batch was counted */

static void open_store(size_t map_size)
{
	st = fixture_open(&fx, NULL, &(struct storage_options){.map_size = map_size});
}

static void setup(void)
{
	fixture_setup(&fx, "writer");
	notify_writer = NULL;
	notify_calls = 0;
	notify_bad = 0;
}

static void teardown(void)
{
	storage_close(st);
	st = NULL;
	fixture_teardown(&fx);
}

TestSuite(writer, .init = setup, .fini = teardown);

/* Counts calls, and checks that the batch being announced is already in the
 * writer's figures, i.e. that notify comes after the batch. */
static void notify_cb(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&notify_mu);
	notify_calls++;
	if (notify_writer != NULL) {
		struct writer_stats s;
		writer_get_stats(notify_writer, &s);
		if (s.batches < notify_calls)
			notify_bad++;
	}
	pthread_mutex_unlock(&notify_mu);
}

static struct writer *start(void)
{
	struct writer *w = NULL;
	cr_assert_eq(writer_start(&w, st, NULL, notify_cb, NULL), 0);
	cr_assert_not_null(w);
	pthread_mutex_lock(&notify_mu);
	notify_writer = w;
	pthread_mutex_unlock(&notify_mu);
	return w;
}

static void stop(struct writer *w)
{
	writer_stop(w);
	pthread_mutex_lock(&notify_mu);
	notify_writer = NULL;
	pthread_mutex_unlock(&notify_mu);
}

/* An operation that writes nkeys keys "k<id>.<j>" of value_len bytes each
 * into the meta database, optionally sleeping first, and then answers
 * fail. */
struct test_op {
	struct writer_op op; /* first: the writer hands this back */
	unsigned id;
	unsigned nkeys;
	size_t value_len;
	int fail;
	unsigned sleep_ms;
	atomic_int runs;
	atomic_bool started;
};

static void key_of(unsigned id, unsigned j, char *out, size_t outlen)
{
	snprintf(out, outlen, "k%06u.%u", id, j);
}

static uint8_t value_byte(unsigned id, unsigned j, size_t i)
{
	return (uint8_t)(id * 7 + j * 3 + i);
}

static int test_apply(struct storage_txn *txn, struct writer_op *base)
{
	struct test_op *op = (struct test_op *)base;
	atomic_fetch_add(&op->runs, 1);
	atomic_store(&op->started, true);
	if (op->sleep_ms > 0) {
		struct timespec ts = {0, (long)op->sleep_ms * 1000000L};
		nanosleep(&ts, NULL);
	}
	uint8_t *val = malloc(op->value_len > 0 ? op->value_len : 1);
	if (val == NULL)
		return WB_E_NOMEM;
	int rc = 0;
	for (unsigned j = 0; j < op->nkeys && rc == 0; j++) {
		char key[32];
		key_of(op->id, j, key, sizeof(key));
		for (size_t i = 0; i < op->value_len; i++)
			val[i] = value_byte(op->id, j, i);
		rc = storage_put(txn, STORAGE_DB_META, (struct storage_val){key, strlen(key)},
		                 (struct storage_val){val, op->value_len}, 0);
	}
	free(val);
	if (rc != 0)
		return rc;
	return op->fail;
}

static struct test_op *new_ops(size_t n, unsigned nkeys, size_t value_len)
{
	struct test_op *ops = calloc(n, sizeof(*ops));
	cr_assert_not_null(ops);
	for (size_t i = 0; i < n; i++) {
		ops[i].op.apply = test_apply;
		ops[i].op.size_hint = nkeys * (value_len + 64);
		ops[i].id = (unsigned)i;
		ops[i].nkeys = nkeys;
		ops[i].value_len = value_len;
	}
	return ops;
}

/* Takes every finished op and checks they come back in submission order,
 * continuing from *next. */
static size_t take_in_order(struct writer *w, struct test_op *ops, size_t *next)
{
	size_t n = 0;
	for (struct writer_op *op = writer_take_done(w); op != NULL; op = op->next) {
		cr_assert_eq(op, &ops[*next].op, "op %u came back where op %zu belongs",
		             ((struct test_op *)op)->id, *next);
		(*next)++;
		n++;
	}
	return n;
}

/* Returns true when every key of op is stored with the right bytes, false
 * when none is; fails the test for anything in between. */
static bool op_stored(const struct test_op *op)
{
	struct storage_txn *t;
	cr_assert_eq(storage_txn_begin(st, NULL, STORAGE_RDONLY, &t), 0);
	unsigned found = 0;
	for (unsigned j = 0; j < op->nkeys; j++) {
		char key[32];
		struct storage_val v;
		key_of(op->id, j, key, sizeof(key));
		int rc =
		        storage_get(t, STORAGE_DB_META, (struct storage_val){key, strlen(key)}, &v);
		if (rc == WB_E_NOTFOUND)
			continue;
		cr_assert_eq(rc, 0);
		cr_assert_eq(v.len, op->value_len);
		const uint8_t *p = v.data;
		for (size_t i = 0; i < v.len; i++)
			cr_assert_eq(p[i], value_byte(op->id, j, i), "op %u key %u byte %zu",
			             op->id, j, i);
		found++;
	}
	storage_txn_abort(t);
	cr_assert(found == 0 || found == op->nkeys, "op %u: %u of %u keys stored", op->id, found,
	          op->nkeys);
	return found == op->nkeys && op->nkeys > 0;
}

static void wait_started(struct test_op *op)
{
	struct timespec ts = {0, 1000000L};
	for (int i = 0; i < 10000 && !atomic_load(&op->started); i++)
		nanosleep(&ts, NULL);
	cr_assert(atomic_load(&op->started), "the writer never ran the first op");
}

/* ------------------------------------------------------------------ tests */

Test(writer, ops_commit_and_come_back_in_order_with_their_status)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(20, 3, 100);
	for (size_t i = 0; i < 20; i++) {
		if (i % 5 == 3)
			ops[i].fail = WB_WRONG_EXPECTED_VERSION;
		writer_submit(w, &ops[i].op);
	}
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 20);
	cr_assert_null(writer_take_done(w), "ops come back once");
	for (size_t i = 0; i < 20; i++) {
		cr_assert_eq(ops[i].op.status, ops[i].fail, "op %zu: status %d", i,
		             ops[i].op.status);
		cr_assert_eq(op_stored(&ops[i]), ops[i].fail == 0, "op %zu", i);
	}
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.ops, 20);
	cr_assert_geq(s.batches, 1);
	cr_assert_leq(s.ops_max, 20);
	stop(w);
	free(ops);
}

/* A failing op between two good ones in the same batch: the batch is held
 * together by a first op that sleeps while the rest queue up. */
Test(writer, a_failing_op_does_not_affect_its_batch_neighbours)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(5, 4, 50);
	ops[0].sleep_ms = 100;
	ops[2].fail = WB_IDEMPOTENCY_CONFLICT;
	ops[3].fail = WB_E_INVAL;
	writer_submit(w, &ops[0].op);
	wait_started(&ops[0]);
	for (size_t i = 1; i < 5; i++)
		writer_submit(w, &ops[i].op);
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.batches, 2, "ops 1-4 were meant to share one batch");
	cr_assert_eq(s.ops_max, 4);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 5);
	cr_assert_eq(ops[1].op.status, 0);
	cr_assert_eq(ops[2].op.status, WB_IDEMPOTENCY_CONFLICT);
	cr_assert_eq(ops[3].op.status, WB_E_INVAL);
	cr_assert_eq(ops[4].op.status, 0);
	cr_assert(op_stored(&ops[0]));
	cr_assert(op_stored(&ops[1]));
	cr_assert_not(op_stored(&ops[2]), "the failing op's keys were committed");
	cr_assert_not(op_stored(&ops[3]), "the failing op's keys were committed");
	cr_assert(op_stored(&ops[4]));
	stop(w);
	free(ops);
}

Test(writer, ops_submitted_while_busy_are_batched)
{
	open_store(0);
	struct writer *w = start();
	const size_t n = 200;
	struct test_op *ops = new_ops(n, 1, 16);
	ops[0].sleep_ms = 200;
	writer_submit(w, &ops[0].op);
	wait_started(&ops[0]);
	for (size_t i = 1; i < n; i++)
		writer_submit(w, &ops[i].op);
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.ops, n);
	cr_assert_lt(s.batches, n, "no batching: %llu batches for %zu ops",
	             (unsigned long long)s.batches, n);
	cr_assert_leq(s.batches, 3, "%llu batches", (unsigned long long)s.batches);
	cr_assert_geq(s.ops_max, n / 2);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ops[i].op.status, 0);
		cr_assert_eq(atomic_load(&ops[i].runs), 1, "op %zu ran %d times", i,
		             atomic_load(&ops[i].runs));
		cr_assert(op_stored(&ops[i]));
	}
	stop(w);
	free(ops);
}

Test(writer, done_ops_keep_submission_order_across_takes)
{
	open_store(0);
	struct writer *w = start();
	const size_t n = 300;
	struct test_op *ops = new_ops(n, 1, 8);
	size_t next = 0;
	for (size_t i = 0; i < n; i++) {
		writer_submit(w, &ops[i].op);
		if (i % 37 == 0)
			take_in_order(w, ops, &next);
	}
	writer_drain(w);
	take_in_order(w, ops, &next);
	cr_assert_eq(next, n);
	stop(w);
	free(ops);
}

/* The map starts at 1 MiB and the ops write 8 MiB in all. Without size
 * hints only the full-map path (abort, grow, rerun) can make room; with them
 * the writer grows before the batch. */
static void fill_tiny_map(size_t hint_per_op)
{
	open_store(1 * MIB);
	struct storage_stats before;
	cr_assert_eq(storage_stats(st, &before), 0);
	cr_assert_leq(before.map_size, 1 * MIB);
	struct writer *w = start();
	const size_t n = 128;
	struct test_op *ops = new_ops(n, 4, 16 * KIB);
	for (size_t i = 0; i < n; i++) {
		ops[i].op.size_hint = hint_per_op;
		writer_submit(w, &ops[i].op);
	}
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_gt(s.grows, 0);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	stop(w);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(ops[i].op.status, 0, "op %zu: %s", i, wb_error_name(ops[i].op.status));
		cr_assert(op_stored(&ops[i]), "op %zu", i);
	}
	struct storage_stats after;
	cr_assert_eq(storage_stats(st, &after), 0);
	cr_assert_gt(after.map_size, 8 * MIB);
	cr_assert_gt(after.grow_count, 0);

	/* The data survive a reopen with the small configured size. */
	storage_close(st);
	open_store(1 * MIB);
	for (size_t i = 0; i < n; i += 17)
		cr_assert(op_stored(&ops[i]), "op %zu after reopen", i);
	free(ops);
}

Test(writer, full_map_grows_and_reruns_the_batch)
{
	fill_tiny_map(0);
}

Test(writer, size_hints_grow_the_map_before_the_batch)
{
	fill_tiny_map(4 * (16 * KIB + 64));
}

/* One op larger than the whole initial map. */
Test(writer, one_op_larger_than_the_map)
{
	open_store(1 * MIB);
	struct writer *w = start();
	struct test_op *ops = new_ops(2, 64, 64 * KIB);
	ops[0].op.size_hint = 0;
	ops[1].nkeys = 1;
	writer_submit(w, &ops[0].op);
	writer_submit(w, &ops[1].op);
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 2);
	stop(w);
	cr_assert_eq(ops[0].op.status, 0, "%s", wb_error_name(ops[0].op.status));
	cr_assert_eq(ops[1].op.status, 0);
	cr_assert(op_stored(&ops[0]));
	cr_assert(op_stored(&ops[1]));
	free(ops);
}

/* An op that reports a full map on every run: the writer grows a bounded
 * number of times, then fails the whole batch (none of it is durable), and
 * the next batch goes through. */
static int always_full(struct storage_txn *txn, struct writer_op *base)
{
	struct test_op *op = (struct test_op *)base;
	atomic_fetch_add(&op->runs, 1);
	(void)txn;
	return WB_E_MAPFULL;
}

Test(writer, a_batch_that_never_fits_fails_whole_and_the_writer_goes_on)
{
	open_store(1 * MIB);
	struct writer *w = start();
	struct test_op *ops = new_ops(4, 2, 100);
	ops[0].sleep_ms = 50;
	ops[2].op.apply = always_full;
	writer_submit(w, &ops[0].op);
	wait_started(&ops[0]);
	writer_submit(w, &ops[1].op);
	writer_submit(w, &ops[2].op);
	writer_drain(w);
	writer_submit(w, &ops[3].op);
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 4);
	struct writer_stats s;
	writer_get_stats(w, &s);
	stop(w);
	cr_assert_eq(s.batches, 3);
	cr_assert_eq(ops[0].op.status, 0);
	cr_assert(op_stored(&ops[0]));
	/* Op 1 shared the batch: it is not durable and must not say so. */
	cr_assert_eq(ops[1].op.status, WB_E_MAPFULL, "op 1: %s", wb_error_name(ops[1].op.status));
	cr_assert_not(op_stored(&ops[1]));
	cr_assert_eq(ops[2].op.status, WB_E_MAPFULL);
	int runs = atomic_load(&ops[2].runs);
	cr_assert_gt(runs, 1, "the batch was not retried after growing");
	cr_assert_leq(runs, 16, "%d runs: the grow-and-retry loop is not bounded", runs);
	cr_assert_eq(ops[3].op.status, 0);
	cr_assert(op_stored(&ops[3]));
	free(ops);
}

/* The loop reads the figures (for ServerStats) while the writer works; the
 * counters only grow. Run under -Db_sanitize=thread this also checks that
 * every counter is updated under the writer's lock. */
Test(writer, stats_can_be_read_while_batches_run)
{
	open_store(1 * MIB);
	struct writer *w = start();
	const size_t n = 64;
	struct test_op *ops = new_ops(n, 4, 16 * KIB);
	struct writer_stats prev = {0};
	for (size_t i = 0; i < n; i++) {
		/* Generous hints make the writer grow before batches. */
		ops[i].op.size_hint = 1 * MIB;
		writer_submit(w, &ops[i].op);
		for (int k = 0; k < 50; k++) {
			struct writer_stats s;
			writer_get_stats(w, &s);
			cr_assert_geq(s.batches, prev.batches);
			cr_assert_geq(s.ops, prev.ops);
			cr_assert_geq(s.grows, prev.grows);
			cr_assert_geq(s.commit_us_total, prev.commit_us_total);
			prev = s;
		}
	}
	writer_drain(w);
	writer_get_stats(w, &prev);
	cr_assert_eq(prev.ops, n);
	cr_assert_gt(prev.grows, 0);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	stop(w);
	free(ops);
}

Test(writer, drain_waits_for_every_submitted_op)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(10, 1, 8);
	for (size_t i = 0; i < 10; i++) {
		ops[i].sleep_ms = 10;
		writer_submit(w, &ops[i].op);
	}
	writer_drain(w);
	/* Everything is committed and visible to a new snapshot. */
	for (size_t i = 0; i < 10; i++)
		cr_assert(op_stored(&ops[i]), "op %zu not committed after drain", i);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.ops, 10);
	/* Draining an idle writer returns at once. */
	writer_drain(w);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), 10);
	stop(w);
	free(ops);
}

Test(writer, stop_with_nothing_queued)
{
	open_store(0);
	struct writer *w = start();
	cr_assert_null(writer_take_done(w));
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	cr_assert_eq(s.batches, 0);
	cr_assert_eq(s.ops, 0);
	stop(w);
	cr_assert_eq(notify_calls, 0, "notify fired without a batch");
	writer_stop(NULL);
}

Test(writer, stop_runs_the_ops_queued_so_far)
{
	open_store(0);
	struct writer *w = start();
	struct test_op *ops = new_ops(30, 1, 8);
	ops[0].sleep_ms = 50;
	for (size_t i = 0; i < 30; i++)
		writer_submit(w, &ops[i].op);
	stop(w);
	for (size_t i = 0; i < 30; i++) {
		cr_assert_eq(atomic_load(&ops[i].runs), 1, "op %zu ran %d times", i,
		             atomic_load(&ops[i].runs));
		cr_assert(op_stored(&ops[i]), "op %zu not committed by stop", i);
	}
	free(ops);
}

Test(writer, notify_fires_once_per_batch_after_it)
{
	open_store(0);
	struct writer *w = start();
	const size_t n = 100;
	struct test_op *ops = new_ops(n, 1, 8);
	/* A mix of single-op batches and larger ones. */
	for (size_t i = 0; i < n; i++) {
		if (i % 25 == 0)
			ops[i].sleep_ms = 20;
		writer_submit(w, &ops[i].op);
		if (i % 10 == 0)
			writer_drain(w);
	}
	writer_drain(w);
	struct writer_stats s;
	writer_get_stats(w, &s);
	size_t next = 0;
	cr_assert_eq(take_in_order(w, ops, &next), n);
	/* The notify of the last batch may still be running after drain;
	 * stop joins the thread. */
	stop(w);
	cr_assert_gt(s.batches, 1);
	cr_assert_eq(notify_calls, s.batches, "%llu notifies for %llu batches",
	             (unsigned long long)notify_calls, (unsigned long long)s.batches);
	cr_assert_eq(notify_bad, 0, "notify came before its batch was finished");
	free(ops);
}
